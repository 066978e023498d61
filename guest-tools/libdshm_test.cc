// Unit tests for libdshm: device discovery by segment name on a fake sysfs
// tree, and the lock protocol against a fake device.
//
// The fake sysfs tree holds regular files resource0 (a 4 KiB BAR0 with the
// DSM registers) and resource2 (the "shared memory"); libdshm maps them as it
// maps real BARs.  The fake device (FakeDev, tests only) plays QEMU: it
// receives the register writes through libdshm's test hook (a plain buffer
// cannot tell a RELEASE command from the HELD state it overwrites: both are
// 2), changes the lock state at once like QEMU's MMIO handler
// (ACQUIRING / RELEASING, or a refusal counted in ERRORS / LAST_ERROR) and
// completes the request from its own thread after a delay (HELD, FREE, or
// ERROR | status), writing the registers in the shared mapping.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dshm.h"
#include "dshm.hpp"
#include "libdshm_internal.h"

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../tests/unit/check_main.h"

using namespace dshm::guest;

namespace {

std::string g_root;      // fake /sys/bus/pci/devices
std::string g_lock_dir;  // fake /run/dshm
OpenOptions g_opts;

constexpr uint64_t kSeg = 64 << 10;

void WriteFile(const std::string &path, const std::string &text) {
    std::ofstream f(path);
    f << text;
}

struct FakeRegs {
    const char *segment = nullptr;  // nullptr: no DSM registers (MAGIC 0)
    uint32_t version = DSHM_PROTO_VERSION, nlocks = DSHM_MAX_LOCKS, state = DSHM_DEV_READY;
    uint64_t size = kSeg;
};

// One fake PCI function: vendor/device/resource, and resource0/2 files when
// BAR0 is a DSM BAR0.
void AddFunction(const std::string &bdf, const char *vendor, const char *device, uint64_t bar0,
                 uint64_t bar2, const FakeRegs *regs) {
    std::string dir = g_root + "/" + bdf;
    mkdir(dir.c_str(), 0755);
    WriteFile(dir + "/vendor", std::string(vendor) + "\n");
    WriteFile(dir + "/device", std::string(device) + "\n");
    std::string res;
    char line[128];
    uint64_t base = 0xfe000000;
    for (uint64_t size : {bar0, uint64_t(0), bar2}) {
        snprintf(line, sizeof line, "0x%016llx 0x%016llx 0x%016llx\n",
                 size ? (unsigned long long)base : 0ull,
                 size ? (unsigned long long)(base + size - 1) : 0ull, size ? 0x40200ull : 0ull);
        base += size;
        res += line;
    }
    WriteFile(dir + "/resource", res);
    if (!regs)
        return;
    std::vector<uint32_t> r(DSHM_BAR0_SIZE / 4, 0);
    if (regs->segment) {
        r[DSHM_REG_MAGIC / 4] = DSHM_MAGIC;
        r[DSHM_REG_VERSION / 4] = regs->version;
        r[DSHM_REG_NLOCKS / 4] = regs->nlocks;
        r[DSHM_REG_STATE / 4] = regs->state;
        r[DSHM_REG_SIZE_LO / 4] = uint32_t(regs->size);
        r[DSHM_REG_SIZE_HI / 4] = uint32_t(regs->size >> 32);
        strncpy(reinterpret_cast<char *>(&r[DSHM_REG_SEGNAME / 4]), regs->segment,
                DSHM_SEGNAME_LEN);
    }
    WriteFile(dir + "/resource0",
              std::string(reinterpret_cast<const char *>(r.data()), DSHM_BAR0_SIZE));
    int fd = open((dir + "/resource2").c_str(), O_RDWR | O_CREAT, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, bar2), 0);
    close(fd);
}

void SetupTree() {
    char tmpl[] = "/tmp/dshm-libdshm-XXXXXX";
    std::string top = mkdtemp(tmpl);
    g_root = top + "/sys";
    g_lock_dir = top + "/run/dshm";  // created by libdshm
    mkdir(g_root.c_str(), 0755);
    g_opts.sysfs_root = g_root;
    g_opts.lock_dir = g_lock_dir;
    FakeRegs alpha;
    alpha.segment = "alpha";
    FakeRegs beta;
    beta.segment = "beta";
    beta.nlocks = 16;
    beta.size = 32 << 10;
    FakeRegs gamma;
    gamma.segment = "gamma";
    gamma.version = DSHM_PROTO_VERSION + 1;  // a version this libdshm does not speak
    FakeRegs nodsm;                                                     // 4 KiB BAR0 without MAGIC
    AddFunction("0000:00:02.0", "0x1234", "0x1111", 4096, 0, nullptr);  // VGA
    AddFunction("0000:00:03.0", "0x1af4", "0x1110", 256, 1 << 20, nullptr);  // stock ivshmem
    AddFunction("0000:00:04.0", "0x1af4", "0x1110", 4096, kSeg, &alpha);
    AddFunction("0000:00:05.0", "0x1af4", "0x1110", 4096, kSeg, &nodsm);
    AddFunction("0000:00:06.0", "0x1af4", "0x1110", 4096, kSeg, &beta);
    AddFunction("0000:00:07.0", "0x1af4", "0x1110", 4096, kSeg, &gamma);
}

void TeardownTree() {
    std::string top = g_root.substr(0, g_root.rfind('/'));
    std::string cmd = "rm -rf '" + top + "'";
    ck_assert_int_eq(system(cmd.c_str()), 0);
}

uint64_t NowMs() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool Exists(const std::string &path) {
    return access(path.c_str(), F_OK) == 0;
}

// ------------------------------------------------------------------
// The fake device
// ------------------------------------------------------------------

class FakeDev {
  public:
    // Maps resource0 of `bdf` in the fake tree (shared with libdshm's map).
    explicit FakeDev(const std::string &bdf) {
        std::string path = g_root + "/" + bdf + "/resource0";
        int fd = open(path.c_str(), O_RDWR);
        ck_assert_int_ge(fd, 0);
        void *p = mmap(nullptr, DSHM_BAR0_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        ck_assert(p != MAP_FAILED);
        regs_ = static_cast<uint32_t *>(p);
        thread_ = std::thread([this] { Loop(); });
    }
    ~FakeDev() {
        {
            std::lock_guard<std::mutex> g(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
        munmap(regs_, DSHM_BAR0_SIZE);
    }

    // Behaviour, settable at any time.  Delays < 0: never complete.
    std::atomic<int> grant_delay_ms{1}, release_delay_ms{1};
    std::atomic<uint32_t> refuse_acquire{0}, refuse_release{0};  // dshm_status, 0: grant
    std::atomic<int> acquires{0}, releases{0};

    static void Hook(void *ctx, uint32_t off, uint32_t value) {
        static_cast<FakeDev *>(ctx)->Write(off, value);
    }

    uint32_t Reg(uint32_t off) const { return __atomic_load_n(&regs_[off / 4], __ATOMIC_SEQ_CST); }
    void SetReg(uint32_t off, uint32_t v) {
        __atomic_store_n(&regs_[off / 4], v, __ATOMIC_SEQ_CST);
    }
    uint32_t Lock(uint32_t n) const { return Reg(DSHM_REG_LOCK(n)); }
    // Completes later: register `off` := value after delay_ms.
    void Later(uint32_t off, uint32_t value, int delay_ms) {
        if (delay_ms < 0)
            return;
        std::lock_guard<std::mutex> g(mu_);
        events_.push_back({NowMs() + delay_ms, off, value});
        cv_.notify_all();
    }

  private:
    struct Event {
        uint64_t due_ms;
        uint32_t off, value;
    };

    void Refuse(uint32_t n, uint32_t status) {
        SetReg(DSHM_REG_ERRORS, Reg(DSHM_REG_ERRORS) + 1);
        SetReg(DSHM_REG_LAST_ERROR, n << 16 | status);
    }

    // QEMU's MMIO write handler: synchronous state change, async completion.
    void Write(uint32_t off, uint32_t value) {
        std::lock_guard<std::mutex> g(write_mu_);
        uint32_t nlocks = Reg(DSHM_REG_NLOCKS);
        if (off < DSHM_REG_LOCK_BASE || off >= DSHM_REG_LOCK(nlocks) || off % 4) {
            Refuse(0, DSHM_E_PROTO);
            return;
        }
        uint32_t n = (off - DSHM_REG_LOCK_BASE) / 4, st = Reg(off);
        if (value == DSHM_LOCK_CMD_ACQUIRE) {
            if (st != DSHM_LOCK_FREE && !(st & DSHM_LOCK_ERROR)) {
                Refuse(n, st == DSHM_LOCK_HELD ? DSHM_E_ALREADY_HELD : DSHM_E_PENDING);
                return;
            }
            acquires++;
            SetReg(off, DSHM_LOCK_ACQUIRING);
            uint32_t r = refuse_acquire;
            Later(off, r ? uint32_t(DSHM_LOCK_ERROR) | r : uint32_t(DSHM_LOCK_HELD),
                  grant_delay_ms);
        } else if (value == DSHM_LOCK_CMD_RELEASE) {
            if (st != DSHM_LOCK_HELD) {
                Refuse(n, DSHM_E_NOT_HELD);
                return;
            }
            releases++;
            SetReg(off, DSHM_LOCK_RELEASING);
            uint32_t r = refuse_release;
            Later(off, r ? uint32_t(DSHM_LOCK_ERROR) | r : uint32_t(DSHM_LOCK_FREE),
                  release_delay_ms);
        } else {
            Refuse(n, DSHM_E_PROTO);
        }
    }

    void Loop() {
        std::unique_lock<std::mutex> g(mu_);
        while (!stop_) {
            uint64_t now = NowMs();
            for (size_t i = 0; i < events_.size();) {
                if (events_[i].due_ms <= now) {
                    SetReg(events_[i].off, events_[i].value);
                    events_.erase(events_.begin() + i);
                } else {
                    i++;
                }
            }
            cv_.wait_for(g, std::chrono::microseconds(200));
        }
    }

    uint32_t *regs_ = nullptr;
    std::mutex mu_, write_mu_;
    std::condition_variable cv_;
    std::vector<Event> events_;
    bool stop_ = false;
    std::thread thread_;
};

constexpr PollPolicy kFastPolicy = {2000, 20, 300};

// Opens `segment` of the fake tree wired to `fake`.
dshm_dev *OpenFake(const char *segment, FakeDev *fake) {
    dshm_dev *dev = nullptr;
    int rc = OpenSegment(segment, g_opts, &dev);
    ck_assert_msg(rc == DSHM_SUCCESS, "open %s: %s", segment, dshm_errmsg());
    SetRegWriteHook(dev, FakeDev::Hook, fake);
    SetPollPolicy(dev, kFastPolicy);
    return dev;
}

FakeDev *g_fake;  // on "alpha" (0000:00:04.0)
dshm_dev *g_dev;

void SetupLock() {
    SetupTree();
    g_fake = new FakeDev("0000:00:04.0");
    g_dev = OpenFake("alpha", g_fake);
}

void TeardownLock() {
    dshm_close(g_dev);
    delete g_fake;
    TeardownTree();
}

}  // namespace

// ------------------------------------------------------------------
// Discovery
// ------------------------------------------------------------------

START_TEST(list_finds_dsm_devices_only) {
    std::vector<dshm_info> v;
    ck_assert_int_eq(ListDsm(g_opts, &v), DSHM_SUCCESS);
    ck_assert_uint_eq(v.size(), 3);
    ck_assert_str_eq(v[0].segment, "alpha");
    ck_assert_str_eq(v[0].bdf, "0000:00:04.0");
    ck_assert_uint_eq(v[0].size, kSeg);
    ck_assert_uint_eq(v[0].nlocks, DSHM_MAX_LOCKS);
    ck_assert_uint_eq(v[0].state, DSHM_DEV_READY);
    ck_assert_str_eq(v[1].segment, "beta");
    ck_assert_uint_eq(v[1].size, 32 << 10);
    ck_assert_uint_eq(v[1].bar2_size, kSeg);
    ck_assert_str_eq(v[2].segment, "gamma");
    ck_assert_uint_eq(v[2].version, DSHM_PROTO_VERSION + 1);
    // No devices at all.
    OpenOptions none = g_opts;
    none.sysfs_root = g_root + "/nonexistent";
    ck_assert_int_eq(ListDsm(none, &v), DSHM_SUCCESS);
    ck_assert_uint_eq(v.size(), 0);
}
END_TEST

START_TEST(open_by_segment_name) {
    dshm_dev *dev = nullptr;
    ck_assert_int_eq(OpenSegment("beta", g_opts, &dev), DSHM_SUCCESS);
    ck_assert_str_eq(dshm_segment(dev), "beta");
    ck_assert_uint_eq(dshm_size(dev), 32 << 10);  // SIZE, not the BAR2 window
    ck_assert_uint_eq(dshm_nlocks(dev), 16);
    ck_assert_str_eq(Device(dev).bdf.c_str(), "0000:00:06.0");
    ck_assert(dshm_mem(dev) != nullptr);
    dshm_close(dev);

    ck_assert_int_eq(OpenSegment("delta", g_opts, &dev), DSHM_ERR_NO_DEVICE);
    ck_assert(strstr(dshm_errmsg(), "alpha, beta, gamma"));
    ck_assert_int_eq(OpenSegment("gamma", g_opts, &dev), DSHM_ERR_VERSION);
    ck_assert_int_eq(OpenSegment("", g_opts, &dev), DSHM_ERR_INVAL);
    ck_assert_int_eq(OpenSegment(std::string(32, 'x'), g_opts, &dev), DSHM_ERR_INVAL);

    auto devs = FindDevices(g_root);
    ck_assert_uint_eq(devs.size(), 5);
    ck_assert_int_eq(OpenDevice(devs[0], g_opts, &dev), DSHM_ERR_NOT_DSM);  // 256-byte BAR0
    ck_assert_int_eq(OpenDevice(devs[2], g_opts, &dev), DSHM_ERR_NOT_DSM);  // no MAGIC
    ck_assert_int_eq(OpenDevice(devs[1], g_opts, &dev), DSHM_SUCCESS);
    ck_assert_str_eq(dshm_segment(dev), "alpha");
    dshm_close(dev);
}
END_TEST

START_TEST(select_by_index_bdf_or_segment) {
    auto devs = FindDevices(g_root);
    std::string err;
    ck_assert_ptr_eq(SelectDeviceOrSegment(devs, "beta", &err), &devs[3]);
    ck_assert_ptr_eq(SelectDeviceOrSegment(devs, "alpha", &err), &devs[1]);
    ck_assert_ptr_eq(SelectDeviceOrSegment(devs, "2", &err), &devs[2]);
    ck_assert_ptr_eq(SelectDeviceOrSegment(devs, "00:07.0", &err), &devs[4]);
    ck_assert_ptr_eq(SelectDeviceOrSegment(devs, "", &err), &devs[0]);
    ck_assert_ptr_null(SelectDeviceOrSegment(devs, "nope", &err));
    ck_assert(err.find("'nope'") != std::string::npos);
}
END_TEST

START_TEST(read_registers) {
    std::vector<uint32_t> r(DSHM_BAR0_SIZE / 4, 0);
    auto *b = reinterpret_cast<volatile uint8_t *>(r.data());
    DsmInfo info;
    ck_assert(!ReadDsmInfo(b, DSHM_BAR0_SIZE, &info));  // MAGIC 0
    r[DSHM_REG_MAGIC / 4] = DSHM_MAGIC;
    r[DSHM_REG_SIZE_LO / 4] = 0x1000;
    r[DSHM_REG_SIZE_HI / 4] = 2;
    r[DSHM_REG_LAST_ERROR / 4] = 7u << 16 | DSHM_E_PENDING;
    memset(&r[DSHM_REG_SEGNAME / 4], 'a', DSHM_SEGNAME_LEN);  // no NUL: cut at 31
    ck_assert(!ReadDsmInfo(b, 256, &info));                   // too small for DSM
    ck_assert(ReadDsmInfo(b, DSHM_BAR0_SIZE, &info));
    ck_assert_uint_eq(info.size, 0x200001000ull);
    ck_assert_uint_eq(info.segment.size(), DSHM_SEGNAME_LEN - 1);
    ck_assert_uint_eq(info.last_error, 7u << 16 | DSHM_E_PENDING);
}
END_TEST

START_TEST(error_strings) {
    for (int e = DSHM_ERR_NOT_HELD; e <= DSHM_SUCCESS; e++) {
        ck_assert(strcmp(dshm_strerror(e), "unknown libdshm error") != 0);
        for (int f = e + 1; f <= DSHM_SUCCESS; f++) {
            ck_assert(strcmp(dshm_strerror(e), dshm_strerror(f)) != 0);
        }
    }
    ck_assert_str_eq(dshm_strerror(-99), "unknown libdshm error");
    ck_assert_str_eq(dshm_status_name(DSHM_E_OWNER_LOST), "E_OWNER_LOST");
    ck_assert_str_eq(dshm_status_name(DSHM_E_BUSY), "E_BUSY");
    ck_assert_str_eq(dshm_status_name(DSHM_E_NO_QUORUM), "E_NO_QUORUM");
    ck_assert_str_eq(dshm_status_name(DSHM_E_AUTH), "E_AUTH");
    ck_assert_str_eq(dshm_status_name(99), "status 99");
    ck_assert_str_eq(dshm_lock_state_name(DSHM_LOCK_HELD), "HELD");
    ck_assert_str_eq(dshm_lock_state_name(uint32_t(DSHM_LOCK_ERROR) | DSHM_E_PENDING),
                     "ERROR(E_PENDING)");
    ck_assert_str_eq(dshm_lock_state_name(0x1234), "0x1234");
}
END_TEST

// ------------------------------------------------------------------
// Locks
// ------------------------------------------------------------------

START_TEST(acquire_release_roundtrip) {
    g_fake->grant_delay_ms = 20;
    uint64_t t0 = NowMs();
    ck_assert_int_eq(dshm_lock(g_dev, 5, 2000), DSHM_SUCCESS);
    ck_assert_uint_ge(NowMs() - t0, 15);  // waited for the (asynchronous) grant
    ck_assert_uint_eq(dshm_lock_state(g_dev, 5), DSHM_LOCK_HELD);
    ck_assert(Exists(g_lock_dir + "/alpha.5.lock"));
    ck_assert_int_eq(dshm_unlock(g_dev, 5, 2000), DSHM_SUCCESS);
    ck_assert_uint_eq(dshm_lock_state(g_dev, 5), DSHM_LOCK_FREE);
    ck_assert_int_eq(g_fake->acquires, 1);
    ck_assert_int_eq(g_fake->releases, 1);
    ck_assert_uint_eq(g_fake->Reg(DSHM_REG_ERRORS), 0);
    ck_assert_str_eq(dshm_errmsg(), "");
}
END_TEST

START_TEST(refused_acquire) {
    g_fake->refuse_acquire = DSHM_E_OWNER_LOST;
    ck_assert_int_eq(dshm_lock(g_dev, 1, 2000), DSHM_ERR_REFUSED);
    ck_assert_uint_eq(dshm_refusal_status(), DSHM_E_OWNER_LOST);
    ck_assert(strstr(dshm_errmsg(), "E_OWNER_LOST"));
    ck_assert_uint_eq(dshm_lock_state(g_dev, 1), uint32_t(DSHM_LOCK_ERROR) | DSHM_E_OWNER_LOST);
    ck_assert_int_eq(dshm_unlock(g_dev, 1, 100), DSHM_ERR_NOT_HELD);
    // The next command leaves the ERROR state; the flock was dropped.
    g_fake->refuse_acquire = 0;
    ck_assert_int_eq(dshm_lock(g_dev, 1, 2000), DSHM_SUCCESS);
    ck_assert_int_eq(dshm_unlock(g_dev, 1, 2000), DSHM_SUCCESS);
}
END_TEST

START_TEST(refused_release) {
    ck_assert_int_eq(dshm_lock(g_dev, 2, 2000), DSHM_SUCCESS);
    g_fake->refuse_release = DSHM_E_INTERNAL;
    ck_assert_int_eq(dshm_unlock(g_dev, 2, 2000), DSHM_ERR_REFUSED);
    ck_assert_uint_eq(dshm_refusal_status(), DSHM_E_INTERNAL);
    ck_assert_int_eq(dshm_unlock(g_dev, 2, 2000), DSHM_ERR_NOT_HELD);  // no longer ours
    g_fake->refuse_release = 0;
    ck_assert_int_eq(dshm_lock(g_dev, 2, 2000), DSHM_SUCCESS);
    ck_assert_int_eq(dshm_unlock(g_dev, 2, 2000), DSHM_SUCCESS);
}
END_TEST

START_TEST(timeout_then_adopt) {
    g_fake->grant_delay_ms = -1;  // granted below
    uint64_t t0 = NowMs();
    ck_assert_int_eq(dshm_lock(g_dev, 3, 30), DSHM_ERR_TIMEOUT);
    uint64_t took = NowMs() - t0;
    ck_assert_uint_ge(took, 25);
    ck_assert_uint_lt(took, 1000);
    ck_assert(strstr(dshm_errmsg(), "stays queued"));
    ck_assert_uint_eq(dshm_lock_state(g_dev, 3), DSHM_LOCK_ACQUIRING);
    g_fake->Later(DSHM_REG_LOCK(3), DSHM_LOCK_HELD, 20);
    // The next locker adopts the queued request instead of issuing another.
    ck_assert_int_eq(dshm_lock(g_dev, 3, 2000), DSHM_SUCCESS);
    ck_assert_int_eq(g_fake->acquires, 1);
    ck_assert_uint_eq(g_fake->Reg(DSHM_REG_ERRORS), 0);
    ck_assert_int_eq(dshm_unlock(g_dev, 3, 2000), DSHM_SUCCESS);
}
END_TEST

START_TEST(orphans_adopted_or_waited_for) {
    // HELD with nobody holding the flock: a process died in its critical section.
    g_fake->SetReg(DSHM_REG_LOCK(4), DSHM_LOCK_HELD);
    ck_assert_int_eq(dshm_lock(g_dev, 4, 2000), DSHM_SUCCESS);
    ck_assert_int_eq(g_fake->acquires, 0);
    ck_assert_int_eq(dshm_unlock(g_dev, 4, 2000), DSHM_SUCCESS);
    // RELEASING: waited for, then acquired.
    g_fake->SetReg(DSHM_REG_LOCK(4), DSHM_LOCK_RELEASING);
    g_fake->Later(DSHM_REG_LOCK(4), DSHM_LOCK_FREE, 20);
    uint64_t t0 = NowMs();
    ck_assert_int_eq(dshm_lock(g_dev, 4, 2000), DSHM_SUCCESS);
    ck_assert_uint_ge(NowMs() - t0, 15);
    ck_assert_int_eq(g_fake->acquires, 1);
    ck_assert_uint_eq(g_fake->Reg(DSHM_REG_ERRORS), 0);
}
END_TEST

START_TEST(bad_lock_ids) {
    ck_assert_int_eq(dshm_lock(g_dev, DSHM_MAX_LOCKS, 100), DSHM_ERR_BAD_LOCK);
    ck_assert_int_eq(dshm_unlock(g_dev, 1000, 100), DSHM_ERR_BAD_LOCK);
    ck_assert_int_eq(dshm_lock(nullptr, 0, 100), DSHM_ERR_INVAL);
    FakeDev beta_fake("0000:00:06.0");
    dshm_dev *beta = OpenFake("beta", &beta_fake);
    ck_assert_int_eq(dshm_lock(beta, 16, 100), DSHM_ERR_BAD_LOCK);
    ck_assert(strstr(dshm_errmsg(), "0..15"));
    ck_assert_int_eq(dshm_lock(beta, 15, 2000), DSHM_SUCCESS);
    dshm_close(beta);  // releases lock 15
    ck_assert_uint_eq(beta_fake.Lock(15), DSHM_LOCK_FREE);
}
END_TEST

START_TEST(device_states) {
    g_fake->SetReg(DSHM_REG_STATE, DSHM_DEV_DETACHED);
    ck_assert_int_eq(dshm_lock(g_dev, 0, 100), DSHM_ERR_NOT_READY);
    g_fake->SetReg(DSHM_REG_STATE, DSHM_DEV_FAILED);
    ck_assert_int_eq(dshm_lock(g_dev, 0, 100), DSHM_ERR_DEV_FAILED);
    ck_assert_uint_eq(dshm_dev_state(g_dev), DSHM_DEV_FAILED);
    // The device fails while the request is queued.
    g_fake->SetReg(DSHM_REG_STATE, DSHM_DEV_READY);
    g_fake->grant_delay_ms = -1;
    g_fake->Later(DSHM_REG_STATE, DSHM_DEV_FAILED, 20);
    ck_assert_int_eq(dshm_lock(g_dev, 0, 2000), DSHM_ERR_DEV_FAILED);
}
END_TEST

START_TEST(not_held_and_not_recursive) {
    ck_assert_int_eq(dshm_unlock(g_dev, 6, 100), DSHM_ERR_NOT_HELD);
    ck_assert_int_eq(dshm_lock(g_dev, 6, 2000), DSHM_SUCCESS);
    ck_assert_int_eq(dshm_lock(g_dev, 6, 100), DSHM_ERR_ALREADY_HELD);
    ck_assert_int_eq(g_fake->acquires, 1);
    ck_assert_int_eq(dshm_unlock(g_dev, 6, 2000), DSHM_SUCCESS);
}
END_TEST

START_TEST(release_timeout_leaves_orphan_release) {
    ck_assert_int_eq(dshm_lock(g_dev, 7, 2000), DSHM_SUCCESS);
    g_fake->release_delay_ms = -1;
    ck_assert_int_eq(dshm_unlock(g_dev, 7, 30), DSHM_ERR_TIMEOUT);
    ck_assert_uint_eq(dshm_lock_state(g_dev, 7), DSHM_LOCK_RELEASING);
    // The flock went with the failed unlock: the next locker waits for FREE.
    g_fake->Later(DSHM_REG_LOCK(7), DSHM_LOCK_FREE, 20);
    ck_assert_int_eq(dshm_lock(g_dev, 7, 2000), DSHM_SUCCESS);
    g_fake->release_delay_ms = 1;
    ck_assert_int_eq(dshm_unlock(g_dev, 7, 2000), DSHM_SUCCESS);
}
END_TEST

// Threads increment a BAR2 counter non-atomically under lock 9; `inside`
// catches two of them in the critical section at once.
struct Crowd {
    std::atomic<int> inside{0}, overlaps{0}, failures{0};
    volatile uint64_t *counter = nullptr;

    void Work(dshm_dev *dev, int iterations) {
        for (int i = 0; i < iterations; i++) {
            if (dshm_lock(dev, 9, 5000) != DSHM_SUCCESS) {
                failures++;
                return;
            }
            if (inside.fetch_add(1) != 0)
                overlaps++;
            uint64_t v = *counter;
            std::this_thread::yield();
            *counter = v + 1;
            inside.fetch_sub(1);
            if (dshm_unlock(dev, 9, 5000) != DSHM_SUCCESS)
                failures++;
        }
    }
};

START_TEST(processes_of_a_vm_exclude_each_other) {
    // One handle per thread: each has its own flock file description, as
    // separate processes would.
    g_fake->grant_delay_ms = 0;
    g_fake->release_delay_ms = 0;
    Crowd crowd;
    crowd.counter = static_cast<volatile uint64_t *>(dshm_mem(g_dev));
    constexpr int kThreads = 4, kIters = 40;
    std::vector<dshm_dev *> devs;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; t++)
        devs.push_back(OpenFake("alpha", g_fake));
    for (int t = 0; t < kThreads; t++)
        threads.emplace_back([&, t] { crowd.Work(devs[t], kIters); });
    for (auto &th : threads)
        th.join();
    for (auto *d : devs)
        dshm_close(d);
    ck_assert_int_eq(crowd.failures, 0);
    ck_assert_int_eq(crowd.overlaps, 0);
    ck_assert_uint_eq(*crowd.counter, kThreads * kIters);
    // Nobody ever sent ACQUIRE while the VM held or was acquiring the lock.
    ck_assert_uint_eq(g_fake->Reg(DSHM_REG_ERRORS), 0);
    ck_assert_int_eq(g_fake->acquires, kThreads * kIters);
}
END_TEST

START_TEST(threads_sharing_a_handle_exclude_each_other) {
    g_fake->grant_delay_ms = 0;
    g_fake->release_delay_ms = 0;
    Crowd crowd;
    crowd.counter = static_cast<volatile uint64_t *>(dshm_mem(g_dev)) + 8;
    constexpr int kThreads = 3, kIters = 40;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; t++)
        threads.emplace_back([&] { crowd.Work(g_dev, kIters); });
    for (auto &th : threads)
        th.join();
    ck_assert_int_eq(crowd.failures, 0);
    ck_assert_int_eq(crowd.overlaps, 0);
    ck_assert_uint_eq(*crowd.counter, kThreads * kIters);
    ck_assert_uint_eq(g_fake->Reg(DSHM_REG_ERRORS), 0);
}
END_TEST

START_TEST(script_held_locks) {
    const std::string held = g_lock_dir + "/alpha.8.held";
    ck_assert_int_eq(AcquireDetached(g_dev, 8, 2000, "test-script"), DSHM_SUCCESS);
    ck_assert(Exists(held));
    ck_assert(DetachedHolder(g_dev, 8).find("test-script") != std::string::npos);
    ck_assert_uint_eq(dshm_lock_state(g_dev, 8), DSHM_LOCK_HELD);
    // A libdshm user of this VM (here: another handle) waits for the script.
    dshm_dev *other = OpenFake("alpha", g_fake);
    ck_assert_int_eq(dshm_lock(other, 8, 40), DSHM_ERR_TIMEOUT);
    ck_assert(strstr(dshm_errmsg(), "held by a script"));
    // So does a second script.
    ck_assert_int_eq(AcquireDetached(other, 8, 40, "second"), DSHM_ERR_TIMEOUT);
    // A lock taken by dshm_lock is not the script's to release.
    ck_assert_int_eq(dshm_lock(other, 10, 2000), DSHM_SUCCESS);
    ck_assert_int_eq(ReleaseDetached(g_dev, 10, 2000, false), DSHM_ERR_NOT_HELD);
    ck_assert_uint_eq(dshm_lock_state(g_dev, 10), DSHM_LOCK_HELD);
    // release (from any process) ends it; the waiting user gets the lock.
    std::thread waiter([other] { ck_assert_int_eq(dshm_lock(other, 8, 3000), DSHM_SUCCESS); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ck_assert_int_eq(ReleaseDetached(g_dev, 8, 2000, false), DSHM_SUCCESS);
    waiter.join();
    ck_assert(!Exists(held));
    ck_assert_uint_eq(dshm_lock_state(g_dev, 8), DSHM_LOCK_HELD);  // now other's
    dshm_close(other);
    ck_assert_uint_eq(dshm_lock_state(g_dev, 8), DSHM_LOCK_FREE);
    ck_assert_uint_eq(dshm_lock_state(g_dev, 10), DSHM_LOCK_FREE);
    ck_assert_int_eq(ReleaseDetached(g_dev, 8, 2000, false), DSHM_ERR_NOT_HELD);
    ck_assert_uint_eq(g_fake->Reg(DSHM_REG_ERRORS), 0);
}
END_TEST

START_TEST(forced_release_recovers_orphans) {
    // A timed-out acquire left a queued request: --force waits for the
    // grant and gives the lock back.
    g_fake->grant_delay_ms = -1;  // granted below
    ck_assert_int_eq(dshm_lock(g_dev, 11, 5), DSHM_ERR_TIMEOUT);
    ck_assert_int_eq(ReleaseDetached(g_dev, 11, 2000, false), DSHM_ERR_NOT_HELD);
    g_fake->Later(DSHM_REG_LOCK(11), DSHM_LOCK_HELD, 20);
    ck_assert_int_eq(ReleaseDetached(g_dev, 11, 2000, true), DSHM_SUCCESS);
    ck_assert_uint_eq(dshm_lock_state(g_dev, 11), DSHM_LOCK_FREE);
    ck_assert_int_eq(ReleaseDetached(g_dev, 11, 2000, true), DSHM_ERR_NOT_HELD);
}
END_TEST

START_TEST(cpp_wrapper) {
    dshm_dev *raw = OpenFake("alpha", g_fake);
    dshm::Device dev(raw);
    std::string seg = dev.segment();
    ck_assert_str_eq(seg.c_str(), "alpha");
    {
        dshm::LockGuard g(dev, 12, std::chrono::seconds(2));
        ck_assert(g.owns_lock());
        ck_assert_uint_eq(dshm_lock_state(raw, 12), DSHM_LOCK_HELD);
        reinterpret_cast<volatile uint64_t *>(dev.mem())[100] = 42;
    }
    ck_assert_uint_eq(dshm_lock_state(raw, 12), DSHM_LOCK_FREE);
    g_fake->refuse_acquire = DSHM_E_OWNER_LOST;
    bool thrown = false;
    try {
        dshm::LockGuard g(dev, 12, std::chrono::seconds(2));
    } catch (const dshm::Error &e) {
        thrown = true;
        ck_assert_int_eq(e.code(), DSHM_ERR_REFUSED);
        ck_assert_uint_eq(e.status(), DSHM_E_OWNER_LOST);
        ck_assert(strstr(e.what(), "E_OWNER_LOST"));
    }
    ck_assert(thrown);
    g_fake->refuse_acquire = 0;
    dshm::LockGuard g(dev, 12);
    g.unlock();
    ck_assert(!g.owns_lock());
    dshm::Device moved = std::move(dev);
    ck_assert(!dev);
    ck_assert(moved);
}
END_TEST

int main() {
    Suite *s = suite_create("guest-tools/libdshm");
    TCase *disc = NewTCase("discovery", 20);
    tcase_add_checked_fixture(disc, SetupTree, TeardownTree);
    tcase_add_test(disc, list_finds_dsm_devices_only);
    tcase_add_test(disc, open_by_segment_name);
    tcase_add_test(disc, select_by_index_bdf_or_segment);
    tcase_add_test(disc, read_registers);
    tcase_add_test(disc, error_strings);
    suite_add_tcase(s, disc);

    TCase *locks = NewTCase("locks", 30);
    tcase_add_checked_fixture(locks, SetupLock, TeardownLock);
    tcase_add_test(locks, acquire_release_roundtrip);
    tcase_add_test(locks, refused_acquire);
    tcase_add_test(locks, refused_release);
    tcase_add_test(locks, timeout_then_adopt);
    tcase_add_test(locks, orphans_adopted_or_waited_for);
    tcase_add_test(locks, bad_lock_ids);
    tcase_add_test(locks, device_states);
    tcase_add_test(locks, not_held_and_not_recursive);
    tcase_add_test(locks, release_timeout_leaves_orphan_release);
    tcase_add_test(locks, processes_of_a_vm_exclude_each_other);
    tcase_add_test(locks, threads_sharing_a_handle_exclude_each_other);
    tcase_add_test(locks, script_held_locks);
    tcase_add_test(locks, forced_release_recovers_orphans);
    tcase_add_test(locks, cpp_wrapper);
    suite_add_tcase(s, locks);
    return RunSuite(s);
}

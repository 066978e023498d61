// libdshm: see dshm.h (contract) and libdshm_internal.h (tool/test hooks).
//
// Lock protocol with the device (wire.h, "Guest interface"): a command
// written to LOCK[n] changes the lock's state synchronously (QEMU's MMIO
// write handler) and is queued to dshmd; the outcome shows up later in the
// same register.  A command that is not valid in the current state is
// refused WITHOUT changing the state (only ERRORS / LAST_ERROR record it), so
// the state is checked before a command is written and ERRORS is compared
// afterwards when the state did not move.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "libdshm_internal.h"

using dshm::guest::IvshmemDevice;
using dshm::guest::Mapping;
using dshm::guest::OpenOptions;
using dshm::guest::PollPolicy;
using dshm::guest::ReadReg;

struct dshm_dev {
    IvshmemDevice pci;
    OpenOptions opts;
    Mapping bar0, bar2;
    std::string segment;
    uint64_t size = 0;
    uint32_t nlocks = 0;
    PollPolicy policy;
    dshm::guest::RegWriteHook hook = nullptr;
    void *hook_ctx = nullptr;

    // Locks held through this handle: the flock fd (one open file per
    // dshm_lock call) and the thread that took it.  Guarded by mu, which is
    // never held while waiting.
    struct Slot {
        int fd = -1;
        std::thread::id owner;
    };
    std::mutex mu;
    Slot slots[DSHM_MAX_LOCKS];
};

namespace dshm::guest {
namespace {

thread_local std::string t_errmsg;
thread_local uint32_t t_refusal = 0;

void ClearError() {
    t_errmsg.clear();
}

int Fail(int code, std::string msg) {
    t_errmsg = std::move(msg);
    return code;
}

int FailErrno(const std::string &what) {
    int e = errno;
    t_errmsg = what + ": " + strerror(e);
    errno = e;
    return DSHM_ERR_SYSTEM;
}

uint64_t NowNs() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

void SleepUs(uint64_t us) {
    struct timespec ts = {time_t(us / 1000000), long(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// A point in time after which waits give up; timeout_ms < 0: never.
struct Deadline {
    explicit Deadline(int timeout_ms)
        : forever(timeout_ms < 0), at(forever ? 0 : NowNs() + uint64_t(timeout_ms) * 1000000ull) {}
    bool Expired(uint64_t now) const { return !forever && now >= at; }
    bool forever;
    uint64_t at;
};

// Paces a polling loop: spin, then sleep with exponential backoff.
class Waiter {
  public:
    Waiter(const PollPolicy &p, const Deadline &d) : p_(p), d_(d), start_(NowNs()) {
        sleep_us_ = std::max<uint32_t>(p.sleep_min_us, 1);
    }
    // Waits before the next poll.  Returns false once the deadline passed;
    // *slept is set when it slept (a good time for slower checks).
    bool Pause(bool *slept) {
        uint64_t now = NowNs();
        if (d_.Expired(now))
            return false;
        if (now - start_ < p_.spin_ns) {
            CpuRelax();
            *slept = false;
            return true;
        }
        uint64_t us = sleep_us_;
        if (!d_.forever)
            us = std::min<uint64_t>(us, (d_.at - now + 999) / 1000);
        SleepUs(us);
        sleep_us_ = std::min<uint64_t>(sleep_us_ * 2, std::max(p_.sleep_max_us, p_.sleep_min_us));
        *slept = true;
        return true;
    }

  private:
    PollPolicy p_;
    Deadline d_;
    uint64_t start_;
    uint64_t sleep_us_;
};

// Guest-local waits (flock, script holder) are slower paced: the other side
// is a process of this VM running a critical section or a shell script.
constexpr PollPolicy kLocalPolicy = {0, 50, 2000};

uint32_t Reg(const dshm_dev *dev, uint32_t off) {
    return ReadReg(dev->bar0.data(), off);
}

void WriteReg(dshm_dev *dev, uint32_t off, uint32_t value) {
    if (dev->hook) {
        dev->hook(dev->hook_ctx, off, value);
        return;
    }
    *reinterpret_cast<volatile uint32_t *>(dev->bar0.data() + off) = value;
}

uint32_t LockReg(const dshm_dev *dev, uint32_t n) {
    return Reg(dev, DSHM_REG_LOCK(n));
}

bool IsError(uint32_t st) {
    return (st & DSHM_LOCK_ERROR) != 0;
}
uint32_t ErrorStatus(uint32_t st) {
    return st & ~uint32_t(DSHM_LOCK_ERROR);
}

std::string LockName(const dshm_dev *dev, uint32_t n) {
    return "lock " + std::to_string(n) + " of segment '" + dev->segment + "'";
}

int Refused(const dshm_dev *dev, uint32_t n, uint32_t status, const char *what) {
    t_refusal = status;
    return Fail(DSHM_ERR_REFUSED, std::string(what) + " of " + LockName(dev, n) +
                                      " refused: " + dshm_status_name(status));
}

// Checks STATE before and while talking to dshmd.
int CheckDevState(const dshm_dev *dev) {
    uint32_t s = Reg(dev, DSHM_REG_STATE);
    if (s == DSHM_DEV_READY)
        return DSHM_SUCCESS;
    if (s == DSHM_DEV_DETACHED) {
        return Fail(DSHM_ERR_NOT_READY, "device " + dev->pci.bdf + " (segment '" + dev->segment +
                                            "') is not attached to dshmd");
    }
    return Fail(DSHM_ERR_DEV_FAILED, "device " + dev->pci.bdf + " (segment '" + dev->segment +
                                         "') lost its connection to dshmd");
}

// Did the device refuse our last command to lock n (ERRORS moved and
// LAST_ERROR names n)?  Best effort: ERRORS is shared by every lock.
bool RefusedSince(const dshm_dev *dev, uint32_t n, uint32_t errors_before, uint32_t *status) {
    if (Reg(dev, DSHM_REG_ERRORS) == errors_before)
        return false;
    uint32_t le = Reg(dev, DSHM_REG_LAST_ERROR);
    if ((le >> 16) != n)
        return false;
    *status = le & 0xffff;
    return true;
}

// One pause of a VM-level lock loop: 0 to poll again, or the error to
// return (the deadline passed: `what_timed_out()` says what; or the device
// failed, checked whenever the wait slept).
template <typename F>
int PauseForDevice(const dshm_dev *dev, Waiter &w, F what_timed_out) {
    bool slept = false;
    if (!w.Pause(&slept))
        return Fail(DSHM_ERR_TIMEOUT, what_timed_out());
    return slept ? CheckDevState(dev) : 0;
}

// VM-level acquire of lock n (the caller holds the guest-local flock).
int VmAcquire(dshm_dev *dev, uint32_t n, const Deadline &d) {
    if (int rc = CheckDevState(dev))
        return rc;
    Waiter w(dev->policy, d);
    bool issued = false;
    uint32_t errors_before = 0, st = 0;
    for (;;) {
        st = LockReg(dev, n);
        if (st == DSHM_LOCK_HELD) {
            // Granted (or an orphan grant adopted): nothing of the critical
            // section may be hoisted above this point.
            std::atomic_thread_fence(std::memory_order_seq_cst);
            return DSHM_SUCCESS;
        }
        if (!issued) {
            if (st == DSHM_LOCK_FREE || IsError(st)) {
                errors_before = Reg(dev, DSHM_REG_ERRORS);
                WriteReg(dev, DSHM_REG_LOCK(n), DSHM_LOCK_CMD_ACQUIRE);
                issued = true;
                continue;
            }
            if (st == DSHM_LOCK_ACQUIRING) {  // an orphan request: adopt it
                errors_before = Reg(dev, DSHM_REG_ERRORS);
                issued = true;
            }
            // RELEASING: an orphan release; wait for FREE, then acquire.
        } else if (IsError(st)) {
            return Refused(dev, n, ErrorStatus(st), "acquire");
        } else if (st == DSHM_LOCK_FREE) {
            uint32_t status;
            if (RefusedSince(dev, n, errors_before, &status)) {
                return Refused(dev, n, status, "acquire");
            }
        }
        if (int rc = PauseForDevice(dev, w, [&] {
                return "timed out waiting for " + LockName(dev, n) + " (state " +
                       dshm_lock_state_name(st) + ")" +
                       (issued ? "; the request stays queued: the next lock of it in this "
                                 "VM adopts the grant"
                               : "");
            }))
            return rc;
    }
}

// VM-level release of lock n.  With wait_pending, a lock still ACQUIRING is
// waited for until granted, then released.
int VmRelease(dshm_dev *dev, uint32_t n, const Deadline &d, bool wait_pending) {
    if (int rc = CheckDevState(dev))
        return rc;
    Waiter w(dev->policy, d);
    bool issued = false;
    uint32_t errors_before = 0, st = 0;
    for (;;) {
        st = LockReg(dev, n);
        if (!issued) {
            if (st == DSHM_LOCK_HELD) {
                // Every access of the critical section happens before the
                // release command.
                std::atomic_thread_fence(std::memory_order_seq_cst);
                errors_before = Reg(dev, DSHM_REG_ERRORS);
                WriteReg(dev, DSHM_REG_LOCK(n), DSHM_LOCK_CMD_RELEASE);
                issued = true;
                continue;
            }
            if (st != DSHM_LOCK_ACQUIRING || !wait_pending) {
                return Fail(
                    DSHM_ERR_NOT_HELD,
                    LockName(dev, n) + " is " + dshm_lock_state_name(st) + " in this VM, not HELD");
            }
        } else if (st == DSHM_LOCK_FREE) {
            return DSHM_SUCCESS;
        } else if (IsError(st)) {
            return Refused(dev, n, ErrorStatus(st), "release");
        } else if (st == DSHM_LOCK_HELD) {
            uint32_t status;
            if (RefusedSince(dev, n, errors_before, &status)) {
                return Refused(dev, n, status, "release");
            }
        }
        if (int rc = PauseForDevice(dev, w, [&] {
                return "timed out " + std::string(issued ? "releasing " : "waiting for ") +
                       LockName(dev, n) + " (state " + dshm_lock_state_name(st) + ")";
            }))
            return rc;
    }
}

// <lock_dir>/<segment>.<n><suffix>; the segment name is made file-name safe.
std::string LocalPath(const dshm_dev *dev, uint32_t n, const char *suffix) {
    std::string seg = dev->segment;
    for (char &c : seg) {
        if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
            c = '_';
    }
    return dev->opts.lock_dir + "/" + seg + "." + std::to_string(n) + suffix;
}

int EnsureDir(const std::string &dir) {
    for (size_t pos = 1; pos <= dir.size(); pos++) {
        if (pos != dir.size() && dir[pos] != '/')
            continue;
        std::string part = dir.substr(0, pos);
        if (mkdir(part.c_str(), 0755) < 0 && errno != EEXIST)
            return FailErrno("mkdir " + part);
    }
    return DSHM_SUCCESS;
}

// Takes the guest-local flock of lock n; *fd receives the open lock file.
int TakeFlock(dshm_dev *dev, uint32_t n, const Deadline &d, int *fd) {
    if (int rc = EnsureDir(dev->opts.lock_dir))
        return rc;
    std::string path = LocalPath(dev, n, ".lock");
    int f = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0)
        return FailErrno("open " + path);
    if (d.forever) {
        while (flock(f, LOCK_EX) < 0) {
            if (errno != EINTR) {
                int rc = FailErrno("flock " + path);
                close(f);
                return rc;
            }
        }
    } else {
        Waiter w(kLocalPolicy, d);
        while (flock(f, LOCK_EX | LOCK_NB) < 0) {
            bool slept;
            if (errno != EWOULDBLOCK && errno != EINTR) {
                int rc = FailErrno("flock " + path);
                close(f);
                return rc;
            }
            if (!w.Pause(&slept)) {
                close(f);
                return Fail(DSHM_ERR_TIMEOUT,
                            "timed out waiting for another process of this VM "
                            "to release " +
                                LockName(dev, n) + " (" + path + ")");
            }
        }
    }
    *fd = f;
    return DSHM_SUCCESS;
}

std::string ReadText(const std::string &path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string s = ss.str();
    while (!s.empty() && s.back() == '\n')
        s.pop_back();
    return s;
}

// Waits while a script holds lock n (dshm-lock acquire registration).
int WaitNoScriptHolder(const dshm_dev *dev, uint32_t n, const Deadline &d) {
    std::string path = LocalPath(dev, n, ".held");
    Waiter w(kLocalPolicy, d);
    while (access(path.c_str(), F_OK) == 0) {
        bool slept;
        if (!w.Pause(&slept)) {
            return Fail(DSHM_ERR_TIMEOUT, "timed out: " + LockName(dev, n) +
                                              " is held by a script (" + ReadText(path) + ")");
        }
    }
    return DSHM_SUCCESS;
}

// Guest-local exclusion, then the VM-level lock.  On success *fd holds the
// flock.
int LockLocalThenVm(dshm_dev *dev, uint32_t n, const Deadline &d, int *fd) {
    if (int rc = TakeFlock(dev, n, d, fd))
        return rc;
    int rc = WaitNoScriptHolder(dev, n, d);
    if (rc == DSHM_SUCCESS)
        rc = VmAcquire(dev, n, d);
    if (rc != DSHM_SUCCESS) {
        int e = errno;
        close(*fd);
        *fd = -1;
        errno = e;
    }
    return rc;
}

int CheckLockArgs(const dshm_dev *dev, uint32_t n) {
    if (!dev)
        return Fail(DSHM_ERR_INVAL, "NULL device");
    if (n >= dev->nlocks) {
        return Fail(DSHM_ERR_BAD_LOCK, "lock id " + std::to_string(n) + " out of range: segment '" +
                                           dev->segment + "' has locks 0.." +
                                           std::to_string(dev->nlocks - 1));
    }
    return DSHM_SUCCESS;
}

}  // namespace

bool ReadDsmInfo(const volatile uint8_t *bar0, uint64_t bar0_size, DsmInfo *out) {
    if (!bar0 || bar0_size < DSHM_BAR0_SIZE)
        return false;
    if (ReadReg(bar0, DSHM_REG_MAGIC) != DSHM_MAGIC)
        return false;
    out->version = ReadReg(bar0, DSHM_REG_VERSION);
    out->nlocks = ReadReg(bar0, DSHM_REG_NLOCKS);
    out->state = ReadReg(bar0, DSHM_REG_STATE);
    out->size = uint64_t(ReadReg(bar0, DSHM_REG_SIZE_HI)) << 32 | ReadReg(bar0, DSHM_REG_SIZE_LO);
    out->errors = ReadReg(bar0, DSHM_REG_ERRORS);
    out->last_error = ReadReg(bar0, DSHM_REG_LAST_ERROR);
    char name[DSHM_SEGNAME_LEN];
    for (uint32_t i = 0; i < DSHM_SEGNAME_LEN; i += 4) {
        uint32_t w = ReadReg(bar0, DSHM_REG_SEGNAME + i);
        memcpy(name + i, &w, 4);
    }
    name[DSHM_SEGNAME_LEN - 1] = 0;
    out->segment = name;
    return true;
}

int InspectDevice(const IvshmemDevice &dev, DsmInfo *out, std::string *error) {
    if (dev.bar0_size && dev.bar0_size < DSHM_BAR0_SIZE) {
        *error = dev.bdf + ": BAR0 is " + std::to_string(dev.bar0_size) +
                 " bytes: a stock ivshmem device";
        return DSHM_ERR_NOT_DSM;
    }
    Mapping m;
    if (!m.Open(dev, 0, error))
        return DSHM_ERR_SYSTEM;
    if (!ReadDsmInfo(m.data(), m.size(), out)) {
        *error = dev.bdf + ": no dshm MAGIC in BAR0 (dsm=off?)";
        return DSHM_ERR_NOT_DSM;
    }
    return DSHM_SUCCESS;
}

const IvshmemDevice *SelectDeviceOrSegment(const std::vector<IvshmemDevice> &devices,
                                           const std::string &selector, std::string *error) {
    if (const IvshmemDevice *d = SelectDevice(devices, selector, error))
        return d;
    if (devices.empty() || selector.empty())
        return nullptr;
    std::string first_error;
    for (const auto &d : devices) {
        DsmInfo info;
        std::string err;
        int rc = InspectDevice(d, &info, &err);
        if (rc == DSHM_SUCCESS && info.segment == selector)
            return &d;
        if (rc == DSHM_ERR_SYSTEM && first_error.empty())
            first_error = err;
    }
    *error = "no ivshmem device at, or dshm segment named, '" + selector + "'" +
             (first_error.empty() ? "" : " (" + first_error + ")");
    return nullptr;
}

int ListDsm(const OpenOptions &opts, std::vector<dshm_info> *out) {
    ClearError();
    out->clear();
    std::string first_error;
    for (const auto &d : FindDevices(opts.sysfs_root)) {
        DsmInfo info;
        std::string err;
        int rc = InspectDevice(d, &info, &err);
        if (rc == DSHM_ERR_SYSTEM && first_error.empty())
            first_error = err;
        if (rc != DSHM_SUCCESS)
            continue;
        dshm_info i = {};
        snprintf(i.segment, sizeof i.segment, "%s", info.segment.c_str());
        snprintf(i.bdf, sizeof i.bdf, "%s", d.bdf.c_str());
        i.size = info.size;
        i.bar2_size = d.bar2_size;
        i.version = info.version;
        i.nlocks = info.nlocks;
        i.state = info.state;
        out->push_back(i);
    }
    if (out->empty() && !first_error.empty())
        return Fail(DSHM_ERR_SYSTEM, first_error);
    return DSHM_SUCCESS;
}

int OpenDevice(const IvshmemDevice &pci, const OpenOptions &opts, dshm_dev **out) {
    ClearError();
    if (!out)
        return Fail(DSHM_ERR_INVAL, "NULL out");
    auto dev = std::make_unique<dshm_dev>();
    dev->pci = pci;
    dev->opts = opts;
    std::string err;
    if (pci.bar0_size && pci.bar0_size < DSHM_BAR0_SIZE) {
        return Fail(DSHM_ERR_NOT_DSM, pci.bdf + ": a stock ivshmem device (BAR0 is " +
                                          std::to_string(pci.bar0_size) + " bytes)");
    }
    if (!dev->bar0.Open(pci, 0, &err))
        return Fail(DSHM_ERR_SYSTEM, err);
    DsmInfo info;
    if (!ReadDsmInfo(dev->bar0.data(), dev->bar0.size(), &info)) {
        return Fail(DSHM_ERR_NOT_DSM, pci.bdf + ": not a dshm device (no MAGIC in BAR0)");
    }
    if (info.version != DSHM_PROTO_VERSION) {
        return Fail(DSHM_ERR_VERSION, pci.bdf + ": DSM register version " +
                                          std::to_string(info.version) + ", this libdshm speaks " +
                                          std::to_string(DSHM_PROTO_VERSION));
    }
    if (!dev->bar2.Open(pci, 2, &err))
        return Fail(DSHM_ERR_SYSTEM, err);
    dev->segment = info.segment;
    dev->nlocks = std::min<uint32_t>(info.nlocks, DSHM_MAX_LOCKS);
    dev->size = info.size ? std::min<uint64_t>(info.size, dev->bar2.size()) : dev->bar2.size();
    *out = dev.release();
    return DSHM_SUCCESS;
}

int OpenSegment(const std::string &segment, const OpenOptions &opts, dshm_dev **out) {
    ClearError();
    if (!out)
        return Fail(DSHM_ERR_INVAL, "NULL out");
    if (segment.empty() || segment.size() >= DSHM_SEGNAME_LEN) {
        return Fail(DSHM_ERR_INVAL, "bad segment name '" + segment + "' (1.." +
                                        std::to_string(DSHM_SEGNAME_LEN - 1) + " characters)");
    }
    std::string first_error, found;
    for (const auto &d : FindDevices(opts.sysfs_root)) {
        DsmInfo info;
        std::string err;
        int rc = InspectDevice(d, &info, &err);
        if (rc == DSHM_ERR_SYSTEM && first_error.empty())
            first_error = err;
        if (rc != DSHM_SUCCESS)
            continue;
        if (info.segment == segment)
            return OpenDevice(d, opts, out);
        found += (found.empty() ? "" : ", ") + info.segment;
    }
    if (!first_error.empty())
        return Fail(DSHM_ERR_SYSTEM, first_error);
    return Fail(DSHM_ERR_NO_DEVICE, "no dshm device carries segment '" + segment + "'" +
                                        (found.empty() ? " (no dshm device in this guest)"
                                                       : " (segments here: " + found + ")"));
}

void SetRegWriteHook(dshm_dev *dev, RegWriteHook hook, void *ctx) {
    dev->hook = hook;
    dev->hook_ctx = ctx;
}

void SetPollPolicy(dshm_dev *dev, const PollPolicy &policy) {
    dev->policy = policy;
}

const volatile uint8_t *Bar0(const dshm_dev *dev) {
    return dev->bar0.data();
}

const IvshmemDevice &Device(const dshm_dev *dev) {
    return dev->pci;
}

int AcquireDetached(dshm_dev *dev, uint32_t n, int timeout_ms, const std::string &note) {
    ClearError();
    if (int rc = CheckLockArgs(dev, n))
        return rc;
    Deadline d(timeout_ms);
    int fd = -1;
    if (int rc = LockLocalThenVm(dev, n, d, &fd))
        return rc;
    std::string path = LocalPath(dev, n, ".held");
    FILE *f = fopen(path.c_str(), "we");
    int rc = DSHM_SUCCESS;
    if (!f || fprintf(f, "pid=%d ppid=%d since=%lld %s\n", int(getpid()), int(getppid()),
                      (long long)time(nullptr), note.c_str()) < 0) {
        rc = FailErrno("write " + path);
    }
    if (f && fclose(f) != 0 && rc == DSHM_SUCCESS)
        rc = FailErrno("write " + path);
    if (rc != DSHM_SUCCESS) {
        std::string msg = t_errmsg;
        unlink(path.c_str());
        VmRelease(dev, n, Deadline(10000), false);
        t_errmsg = msg;
    }
    close(fd);  // the registration, not the flock, now marks the holder
    return rc;
}

int ReleaseDetached(dshm_dev *dev, uint32_t n, int timeout_ms, bool force) {
    ClearError();
    if (int rc = CheckLockArgs(dev, n))
        return rc;
    std::string path = LocalPath(dev, n, ".held");
    bool registered = access(path.c_str(), F_OK) == 0;
    if (!registered && !force) {
        return Fail(DSHM_ERR_NOT_HELD, LockName(dev, n) +
                                           " was not taken by `dshm-lock acquire` (state " +
                                           dshm_lock_state_name(LockReg(dev, n)) +
                                           "); --force releases whatever this VM holds");
    }
    int rc = VmRelease(dev, n, Deadline(timeout_ms), force);
    // The registration goes in every case: the lock is released or being
    // released, or this VM does not hold it at all.  (A forced release still
    // waiting for a queued grant keeps it.)
    if (registered && !(rc == DSHM_ERR_TIMEOUT && LockReg(dev, n) == DSHM_LOCK_ACQUIRING)) {
        unlink(path.c_str());
    }
    return rc;
}

std::string DetachedHolder(const dshm_dev *dev, uint32_t n) {
    return ReadText(LocalPath(dev, n, ".held"));
}

}  // namespace dshm::guest

using namespace dshm::guest;

extern "C" {

int dshm_list(dshm_info *out, size_t max, size_t *count) {
    std::vector<dshm_info> v;
    int rc = ListDsm(OpenOptions(), &v);
    if (rc != DSHM_SUCCESS)
        return rc;
    if (max && !out)
        return Fail(DSHM_ERR_INVAL, "NULL out");
    for (size_t i = 0; i < v.size() && i < max; i++)
        out[i] = v[i];
    if (count)
        *count = v.size();
    return DSHM_SUCCESS;
}

int dshm_open(const char *segment, dshm_dev **out) {
    if (!segment)
        return Fail(DSHM_ERR_INVAL, "NULL segment name");
    return OpenSegment(segment, OpenOptions(), out);
}

void dshm_close(dshm_dev *dev) {
    if (!dev)
        return;
    for (uint32_t n = 0; n < dev->nlocks; n++) {
        if (dev->slots[n].fd >= 0)
            dshm_unlock(dev, n, 10000);
    }
    delete dev;
}

volatile void *dshm_mem(const dshm_dev *dev) {
    return dev ? dev->bar2.data() : nullptr;
}
uint64_t dshm_size(const dshm_dev *dev) {
    return dev ? dev->size : 0;
}
const char *dshm_segment(const dshm_dev *dev) {
    return dev ? dev->segment.c_str() : "";
}
uint32_t dshm_nlocks(const dshm_dev *dev) {
    return dev ? dev->nlocks : 0;
}

int dshm_lock(dshm_dev *dev, uint32_t n, int timeout_ms) {
    ClearError();
    if (int rc = CheckLockArgs(dev, n))
        return rc;
    Deadline d(timeout_ms);
    {
        std::lock_guard<std::mutex> g(dev->mu);
        if (dev->slots[n].fd >= 0 && dev->slots[n].owner == std::this_thread::get_id()) {
            return Fail(DSHM_ERR_ALREADY_HELD,
                        LockName(dev, n) + " is already held by this thread (not recursive)");
        }
    }
    int fd = -1;
    if (int rc = LockLocalThenVm(dev, n, d, &fd))
        return rc;
    std::lock_guard<std::mutex> g(dev->mu);
    dev->slots[n].fd = fd;
    dev->slots[n].owner = std::this_thread::get_id();
    return DSHM_SUCCESS;
}

int dshm_unlock(dshm_dev *dev, uint32_t n, int timeout_ms) {
    ClearError();
    if (int rc = CheckLockArgs(dev, n))
        return rc;
    int fd;
    {
        std::lock_guard<std::mutex> g(dev->mu);
        fd = dev->slots[n].fd;
        if (fd < 0) {
            return Fail(DSHM_ERR_NOT_HELD, LockName(dev, n) + " is not held through this handle");
        }
        dev->slots[n].fd = -1;
    }
    int rc = VmRelease(dev, n, Deadline(timeout_ms), false);
    int e = errno;
    close(fd);  // the flock goes only after the VM-level release
    errno = e;
    return rc;
}

uint32_t dshm_lock_state(const dshm_dev *dev, uint32_t n) {
    if (!dev || n >= dev->nlocks)
        return uint32_t(DSHM_LOCK_ERROR) | uint32_t(DSHM_E_BAD_LOCK);
    return LockReg(dev, n);
}

uint32_t dshm_dev_state(const dshm_dev *dev) {
    return dev ? Reg(dev, DSHM_REG_STATE) : uint32_t(DSHM_DEV_FAILED);
}

const char *dshm_strerror(int err) {
    switch (err) {
        case DSHM_SUCCESS:
            return "success";
        case DSHM_ERR_SYSTEM:
            return "system error";
        case DSHM_ERR_INVAL:
            return "invalid argument";
        case DSHM_ERR_NO_DEVICE:
            return "no dshm device carries that segment";
        case DSHM_ERR_NOT_DSM:
            return "not a dshm device (stock ivshmem, or dsm=off)";
        case DSHM_ERR_VERSION:
            return "unsupported DSM register version";
        case DSHM_ERR_BAD_LOCK:
            return "lock id out of range";
        case DSHM_ERR_NOT_READY:
            return "device not attached to dshmd";
        case DSHM_ERR_DEV_FAILED:
            return "device lost its connection to dshmd";
        case DSHM_ERR_TIMEOUT:
            return "timed out";
        case DSHM_ERR_REFUSED:
            return "refused by dshmd";
        case DSHM_ERR_ALREADY_HELD:
            return "lock already held by this thread";
        case DSHM_ERR_NOT_HELD:
            return "lock not held";
        default:
            return "unknown libdshm error";
    }
}

const char *dshm_status_name(uint32_t status) {
    static const char *const kNames[] = {
        "OK",         "E_PROTO",    "E_VERSION",      "E_NO_SEGMENT", "E_BAD_LOCK",
        "E_NOT_HELD", "E_PENDING",  "E_ALREADY_HELD", "E_OWNER_LOST", "E_NOT_ATTACHED",
        "E_UFFD",     "E_INTERNAL", "E_NOT_OWNER",    "E_BUSY",       "E_NO_QUORUM",
        "E_AUTH",
    };
    if (status < sizeof kNames / sizeof kNames[0])
        return kNames[status];
    static thread_local char buf[32];
    snprintf(buf, sizeof buf, "status %u", status);
    return buf;
}

const char *dshm_lock_state_name(uint32_t st) {
    static thread_local char buf[48];
    switch (st) {
        case DSHM_LOCK_FREE:
            return "FREE";
        case DSHM_LOCK_ACQUIRING:
            return "ACQUIRING";
        case DSHM_LOCK_HELD:
            return "HELD";
        case DSHM_LOCK_RELEASING:
            return "RELEASING";
    }
    if (IsError(st) && ErrorStatus(st) < 0x80) {
        snprintf(buf, sizeof buf, "ERROR(%s)", dshm_status_name(ErrorStatus(st)));
    } else {
        snprintf(buf, sizeof buf, "0x%x", st);
    }
    return buf;
}

uint32_t dshm_refusal_status(void) {
    return t_refusal;
}

const char *dshm_errmsg(void) {
    return t_errmsg.c_str();
}

}  // extern "C"

// dshm-tool: inspect and fill ivshmem / dshm segments from inside a guest.
//
//   dshm-tool list
//   dshm-tool regs     [-d DEV] [--all]
//   dshm-tool reg-write [-d DEV] < LINES   each line "OFFSET VALUE [WIDTH]":
//                      write VALUE to BAR0 at OFFSET with an 8, 16 or 32
//                      (default) bit access (debugging, device tests)
//   dshm-tool count    SEGMENT --iterations N [--lock L] [--offset O] [--exclusive]
//   dshm-tool fill     [-d DEV] [--offset N] [--length N] (--pattern SEED | --byte V)
//   dshm-tool verify   [-d DEV] [--offset N] [--length N] --pattern SEED
//   dshm-tool checksum [-d DEV] [--offset N] [--length N]
//   dshm-tool dump     [-d DEV] [--offset N] [--length N]
//   dshm-tool peek     [-d DEV] --offset N
//   dshm-tool poke     [-d DEV] --offset N --value V
//   dshm-tool wait     [-d DEV] --offset N --value V [--timeout SECONDS]
//
// DEV is a list index, a PCI address, or the segment name of a dshm (dsm=on)
// device; `-d DEV`, `--segment NAME` or a bare DEV after the command.
//
// Exit status (include/dshm/exit_codes.h, the table of every dshm tool): 0
// success, 1 failed (verify mismatch, wait timed out, count saw a stale value,
// a system call failed), 2 usage error, 3 no such device or segment, 4 a
// lock timed out, 5 a lock was refused by dshmd, 6 the device is not
// attached to dshmd or lost it.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dshm.h"
#include "ivshmem_dev.h"
#include "libdshm_internal.h"
#include "pattern.h"

using namespace dshm::guest;

namespace {

constexpr int kExitOk = DSHM_EXIT_OK, kExitCheckFailed = DSHM_EXIT_FAILED,
              kExitSystem = DSHM_EXIT_FAILED, kExitUsage = DSHM_EXIT_USAGE,
              kExitNoDevice = DSHM_EXIT_UNAVAILABLE;

// The commands, for the unknown-command check made before any device lookup.
const char *const kCommands[] = {"list", "regs", "reg-write", "count", "fill", "verify",
                                 "checksum", "dump", "peek", "poke", "wait"};

const char kUsage[] =
    "usage: dshm-tool COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  list                         list ivshmem devices (PCI 1af4:1110); for dshm\n"
    "                               devices also segment, size, state, busy locks\n"
    "  regs      [--all]            dump the DSM registers of BAR0 (--all: every lock)\n"
    "  reg-write                    BAR0 writes read from stdin: OFFSET VALUE [8|16|32]\n"
    "  count     SEGMENT --iterations N [--lock L] [--offset O] [--exclusive]\n"
    "                               N times: acquire L, add 1 to the u64 at O,\n"
    "                               release; prints `count done ...` with timings\n"
    "                               (--exclusive: fail if another writer is seen)\n"
    "  fill      --pattern SEED | --byte V   write a pattern or a byte value\n"
    "  verify    --pattern SEED     check a range against a pattern\n"
    "  checksum                     FNV-1a 64 of a range\n"
    "  dump                         hex dump of a range (default 256 bytes)\n"
    "  peek      --offset N         print the 64-bit word at N\n"
    "  poke      --offset N --value V   write the 64-bit word at N\n"
    "  wait      --offset N --value V [--timeout S]   wait until the word at N is V\n"
    "\n"
    "options:\n"
    "  -d, --device SEL   device: list index, BDF such as 00:04.0, or segment name\n"
    "                     (default: first); a bare SEL after the command also works\n"
    "  --segment NAME     device by dshm segment name\n"
    "  --lock L           lock id for count (default 0)\n"
    "  --iterations N     count: number of increments\n"
    "  --offset N         start of the range in BAR2 (default 0); K/M/G suffixes\n"
    "  --length N         length of the range (default: to the end of BAR2)\n"
    "  --timeout S        seconds for wait (default 30), per lock operation for\n"
    "                     count (default 60)\n"
    "  --version          print the version and exit\n"
    "\n"
    "exit status (the table of every dshm tool, dshm(7)): 0 ok, 1 failed (verify,\n"
    "wait, count --exclusive, or a system error), 2 usage, 3 no such device or\n"
    "segment, 4 lock timed out, 5 lock refused by dshmd, 6 device not attached\n";

int Usage(const std::string &msg) {
    if (!msg.empty())
        fprintf(stderr, "dshm-tool: %s\n", msg.c_str());
    fputs(kUsage, stderr);
    return kExitUsage;
}

struct Args {
    std::string command;
    std::string device;
    std::map<std::string, std::string> opts;  // --name -> value
};

// Parses "--name value" / "--name=value" pairs after the command.
std::optional<Args> Parse(int argc, char **argv, std::string *err) {
    static const char *const kKnown[] = {"device", "offset",     "length",    "pattern",
                                         "byte",   "value",      "timeout",   "segment",
                                         "lock",   "iterations", "exclusive", "all"};
    static const char *const kFlags[] = {"exclusive", "all"};
    Args a;
    if (argc < 2) {
        *err = "missing command";
        return std::nullopt;
    }
    a.command = argv[1];
    if (std::none_of(std::begin(kCommands), std::end(kCommands),
                     [&](const char *c) { return a.command == c; })) {
        *err = "unknown command '" + a.command + "'";
        return std::nullopt;
    }
    for (int i = 2; i < argc; i++) {
        std::string arg = argv[i], name, value;
        if (arg == "-d") {
            name = "device";
        } else if (arg.rfind("--", 0) == 0) {
            name = arg.substr(2);
            auto eq = name.find('=');
            if (eq != std::string::npos) {
                value = name.substr(eq + 1);
                name.resize(eq);
            }
        } else if (!a.opts.count("positional")) {
            a.opts["positional"] = arg;  // DEV / SEGMENT
            continue;
        } else {
            *err = "unexpected argument '" + arg + "'";
            return std::nullopt;
        }
        bool known = false;
        for (const char *k : kKnown)
            known |= name == k;
        if (!known) {
            *err = "unknown option '" + arg + "'";
            return std::nullopt;
        }
        bool flag = false;
        for (const char *f : kFlags)
            flag |= name == f;
        if (flag) {
            a.opts[name] = "1";
            continue;
        }
        if (value.empty() && arg.find('=') == std::string::npos) {
            if (i + 1 >= argc) {
                *err = "option '" + arg + "' needs a value";
                return std::nullopt;
            }
            value = argv[++i];
        }
        a.opts[name] = value;
    }
    int selectors = int(a.opts.count("device")) + int(a.opts.count("segment")) +
                    int(a.opts.count("positional"));
    if (selectors > 1) {
        *err = "give the device once (-d DEV, --segment NAME or a bare DEV)";
        return std::nullopt;
    }
    for (const char *k : {"device", "segment", "positional"}) {
        if (a.opts.count(k))
            a.device = a.opts[k];
    }
    return a;
}

// Resolves --offset/--length against the BAR size.
bool Range(const Args &a, uint64_t bar_size, uint64_t default_len, uint64_t *off, uint64_t *len,
           std::string *err) {
    *off = 0;
    if (auto it = a.opts.find("offset"); it != a.opts.end()) {
        auto v = ParseSize(it->second);
        if (!v)
            return *err = "bad --offset '" + it->second + "'", false;
        *off = *v;
    }
    if (*off > bar_size)
        return *err = "--offset is past the end of BAR2 (" + std::to_string(bar_size) + " bytes)",
               false;
    *len = default_len ? std::min(default_len, bar_size - *off) : bar_size - *off;
    if (auto it = a.opts.find("length"); it != a.opts.end()) {
        auto v = ParseSize(it->second);
        if (!v)
            return *err = "bad --length '" + it->second + "'", false;
        if (*v > bar_size - *off) {
            return *err = "range [" + std::to_string(*off) + ", +" + std::to_string(*v) +
                          ") exceeds BAR2 (" + std::to_string(bar_size) + " bytes)",
                   false;
        }
        *len = *v;
    }
    return true;
}

std::optional<uint64_t> NumOpt(const Args &a, const char *name, std::string *err) {
    auto it = a.opts.find(name);
    if (it == a.opts.end()) {
        *err = std::string("missing --") + name;
        return std::nullopt;
    }
    auto v = ParseSize(it->second);
    if (!v)
        *err = std::string("bad --") + name + " '" + it->second + "'";
    return v;
}

double Now() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

const char *DevStateName(uint32_t state) {
    switch (state) {
        case DSHM_DEV_DETACHED:
            return "detached";
        case DSHM_DEV_READY:
            return "ready";
        case DSHM_DEV_FAILED:
            return "failed";
        default:
            return "unknown";
    }
}

// " 3=HELD 7=ACQUIRING", or " none" when every lock is FREE.
std::string BusyLocks(const volatile uint8_t *bar0, uint32_t nlocks) {
    std::string out;
    for (uint32_t i = 0; i < std::min<uint32_t>(nlocks, DSHM_MAX_LOCKS); i++) {
        uint32_t st = ReadReg(bar0, DSHM_REG_LOCK(i));
        if (st != DSHM_LOCK_FREE)
            out += " " + std::to_string(i) + "=" + dshm_lock_state_name(st);
    }
    return out.empty() ? " none" : out;
}

int List() {
    auto devs = FindDevices();
    if (devs.empty()) {
        printf("no ivshmem devices\n");
        return kExitOk;
    }
    for (size_t i = 0; i < devs.size(); i++) {
        const auto &d = devs[i];
        printf("ivshmem[%zu] %s vendor=0x%04x device=0x%04x bar0=%llu bar2=%llu (%llu MiB) %s\n", i,
               d.bdf.c_str(), kIvshmemVendor, kIvshmemDevice,
               static_cast<unsigned long long>(d.bar0_size),
               static_cast<unsigned long long>(d.bar2_size),
               static_cast<unsigned long long>(d.bar2_size >> 20),
               d.msix ? "doorbell(msix)" : "plain");
        if (d.bar0_size && d.bar0_size < DSHM_BAR0_SIZE)
            continue;  // stock BAR0: no DSM
        Mapping bar0;
        std::string err;
        DsmInfo info;
        if (!bar0.Open(d, 0, &err)) {
            printf("  dsm: cannot inspect BAR0: %s\n", err.c_str());
        } else if (ReadDsmInfo(bar0.data(), bar0.size(), &info)) {
            printf(
                "  dsm segment=%s size=%llu (%llu MiB) state=%s version=%u nlocks=%u errors=%u "
                "locks:%s\n",
                info.segment.c_str(), (unsigned long long)info.size,
                (unsigned long long)(info.size >> 20), DevStateName(info.state), info.version,
                info.nlocks, info.errors, BusyLocks(bar0.data(), info.nlocks).c_str());
        }
    }
    return kExitOk;
}

// Picks the device of the command: --segment NAME by segment name only,
// otherwise index, BDF or segment name.
const IvshmemDevice *Select(const Args &a, const std::vector<IvshmemDevice> &devs,
                            std::string *err) {
    if (!a.opts.count("segment"))
        return SelectDeviceOrSegment(devs, a.device, err);
    for (const auto &d : devs) {
        DsmInfo info;
        std::string e;
        if (InspectDevice(d, &info, &e) == DSHM_SUCCESS && info.segment == a.device)
            return &d;
    }
    *err = "no dshm device carries segment '" + a.device + "'";
    return nullptr;
}

int Regs(const Args &a, const IvshmemDevice &dev) {
    std::string err;
    Mapping bar0;
    if (!bar0.Open(dev, 0, &err)) {
        fprintf(stderr, "dshm-tool: %s\n", err.c_str());
        return kExitSystem;
    }
    const volatile uint8_t *r = bar0.data();
    printf("%s BAR0 %llu bytes\n", dev.bdf.c_str(), (unsigned long long)bar0.size());
    // INTRSTATUS (0x04) is read-to-clear and DOORBELL (0x0C) write-only: not read.
    printf("  0x000 INTRMASK    0x%08x\n", ReadReg(r, 0x00));
    printf("  0x008 IVPOSITION  %d\n", static_cast<int32_t>(ReadReg(r, 0x08)));
    DsmInfo info;
    if (!ReadDsmInfo(r, bar0.size(), &info)) {
        printf("  not a dshm device (no DSM MAGIC at 0x%03x)\n", DSHM_REG_MAGIC);
        return kExitOk;
    }
    printf("  0x%03x MAGIC       0x%08x\n", DSHM_REG_MAGIC, ReadReg(r, DSHM_REG_MAGIC));
    printf("  0x%03x VERSION     %u\n", DSHM_REG_VERSION, info.version);
    printf("  0x%03x NLOCKS      %u\n", DSHM_REG_NLOCKS, info.nlocks);
    printf("  0x%03x STATE       %u (%s)\n", DSHM_REG_STATE, info.state, DevStateName(info.state));
    printf("  0x%03x SIZE        %llu\n", DSHM_REG_SIZE_LO, (unsigned long long)info.size);
    printf("  0x%03x ERRORS      %u\n", DSHM_REG_ERRORS, info.errors);
    printf("  0x%03x LAST_ERROR  0x%08x (lock %u, %s)\n", DSHM_REG_LAST_ERROR, info.last_error,
           info.last_error >> 16, dshm_status_name(info.last_error & 0xffff));
    printf("  0x%03x SEGNAME     \"%s\"\n", DSHM_REG_SEGNAME, info.segment.c_str());
    uint32_t n = std::min<uint32_t>(info.nlocks, DSHM_MAX_LOCKS), shown = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t st = ReadReg(r, DSHM_REG_LOCK(i));
        if (st == DSHM_LOCK_FREE && !a.opts.count("all"))
            continue;
        printf("  0x%03x LOCK[%u]%*s %s\n", DSHM_REG_LOCK(i), i,
               i < 10    ? 3
               : i < 100 ? 2
                         : 1,
               "", dshm_lock_state_name(st));
        shown++;
    }
    if (!shown)
        printf("  LOCK[0..%u] all FREE\n", n - 1);
    return kExitOk;
}

int LockExit(int rc) {
    fprintf(stderr, "dshm-tool: count: %s\n", *dshm_errmsg() ? dshm_errmsg() : dshm_strerror(rc));
    return ExitStatusFor(rc);
}

double Percentile(const std::vector<double> &sorted, double p) {
    if (sorted.empty())
        return 0;
    size_t i = static_cast<size_t>(p * (sorted.size() - 1) + 0.5);
    return sorted[std::min(i, sorted.size() - 1)];
}

// The counter workload: N x (acquire, read u64, write +1, release).
int Count(const Args &a, const IvshmemDevice &pci) {
    std::string err;
    auto iters = NumOpt(a, "iterations", &err);
    if (!iters)
        return Usage(err);
    uint64_t lock = 0, off = 0;
    if (a.opts.count("lock")) {
        auto v = NumOpt(a, "lock", &err);
        if (!v)
            return Usage(err);
        lock = *v;
    }
    if (a.opts.count("offset")) {
        auto v = NumOpt(a, "offset", &err);
        if (!v)
            return Usage(err);
        off = *v;
    }
    int timeout_ms = 60000;
    if (a.opts.count("timeout")) {
        auto t = NumOpt(a, "timeout", &err);
        if (!t)
            return Usage(err);
        timeout_ms = static_cast<int>(std::min<uint64_t>(*t * 1000, 0x7fffffff));
    }
    dshm_dev *dev = nullptr;
    if (int rc = OpenDevice(pci, OpenOptions(), &dev)) {
        fprintf(stderr, "dshm-tool: count: %s\n",
                *dshm_errmsg() ? dshm_errmsg() : dshm_strerror(rc));
        return ExitStatusFor(rc);
    }
    if (off % 8 || off + 8 > dshm_size(dev)) {
        dshm_close(dev);
        return Usage("--offset must be 8-byte aligned and inside the segment");
    }
    if (lock >= dshm_nlocks(dev)) {
        dshm_close(dev);
        return Usage("--lock must be below " + std::to_string(dshm_nlocks(dev)));
    }
    auto *word =
        reinterpret_cast<volatile uint64_t *>(static_cast<volatile uint8_t *>(dshm_mem(dev)) + off);
    const bool exclusive = a.opts.count("exclusive");
    std::vector<double> rtt, acq, rel;
    rtt.reserve(*iters);
    acq.reserve(*iters);
    rel.reserve(*iters);
    uint64_t last = 0, stale = 0;
    int rc = DSHM_SUCCESS;
    double start = Now();
    for (uint64_t i = 0; i < *iters; i++) {
        double t0 = Now();
        if ((rc = dshm_lock(dev, static_cast<uint32_t>(lock), timeout_ms)))
            break;
        double t1 = Now();
        uint64_t seen = *word;
        // With --exclusive nobody else writes this counter: anything but our
        // own last value is a coherence failure.
        if (exclusive && i > 0 && seen != last) {
            fprintf(stderr, "STALE iteration=%llu read=%llu expected=%llu\n", (unsigned long long)i,
                    (unsigned long long)seen, (unsigned long long)last);
            stale++;
        }
        last = seen + 1;
        *word = last;
        double t2 = Now();
        if ((rc = dshm_unlock(dev, static_cast<uint32_t>(lock), timeout_ms)))
            break;
        double t3 = Now();
        acq.push_back((t1 - t0) * 1e6);
        rel.push_back((t3 - t2) * 1e6);
        rtt.push_back((t1 - t0 + t3 - t2) * 1e6);
    }
    double secs = Now() - start;
    dshm_close(dev);
    if (rc)
        return LockExit(rc);
    auto stats = [](std::vector<double> v, const char *name) {
        double sum = 0;
        for (double x : v)
            sum += x;
        std::sort(v.begin(), v.end());
        char buf[160];
        snprintf(buf, sizeof buf, " %s_mean_us=%.1f %s_p50_us=%.1f %s_p99_us=%.1f", name,
                 v.empty() ? 0.0 : sum / v.size(), name, Percentile(v, 0.5), name,
                 Percentile(v, 0.99));
        return std::string(buf);
    };
    printf("count done iterations=%llu last=%llu seconds=%.3f%s%s%s stale=%llu\n",
           (unsigned long long)*iters, (unsigned long long)last, secs, stats(rtt, "rtt").c_str(),
           stats(acq, "acquire").c_str(), stats(rel, "release").c_str(), (unsigned long long)stale);
    return stale ? kExitCheckFailed : kExitOk;
}

// Raw BAR0 writes, one per line of stdin: "OFFSET VALUE [WIDTH]".
int RegWrite(const IvshmemDevice &dev) {
    std::string err;
    Mapping bar0;
    if (!bar0.Open(dev, 0, &err)) {
        fprintf(stderr, "dshm-tool: %s\n", err.c_str());
        return kExitSystem;
    }
    char line[256];
    unsigned long n = 0, lineno = 0;
    while (fgets(line, sizeof line, stdin)) {
        lineno++;
        char off_s[64] = "", val_s[64] = "", width_s[16] = "32";
        int got = sscanf(line, "%63s %63s %15s", off_s, val_s, width_s);
        if (got <= 0) continue;
        auto off = ParseU64(off_s), val = ParseU64(val_s), width = ParseU64(width_s);
        if (got < 2 || !off || !val || !width || (*width != 8 && *width != 16 && *width != 32) ||
            *off + *width / 8 > bar0.size()) {
            fprintf(stderr, "dshm-tool: reg-write line %lu: want OFFSET VALUE [8|16|32] inside BAR0 (%llu bytes)\n",
                    lineno, (unsigned long long)bar0.size());
            return kExitUsage;
        }
        volatile uint8_t *r = bar0.data() + *off;
        if (*width == 8) {
            *r = static_cast<uint8_t>(*val);
        } else if (*width == 16) {
            *reinterpret_cast<volatile uint16_t *>(r) = static_cast<uint16_t>(*val);
        } else {
            *reinterpret_cast<volatile uint32_t *>(r) = static_cast<uint32_t>(*val);
        }
        n++;
    }
    printf("reg-write %s: %lu writes\n", dev.bdf.c_str(), n);
    return kExitOk;
}

int Run(const Args &a) {
    if (a.command == "list")
        return List();

    std::string err;
    auto devs = FindDevices();
    const IvshmemDevice *dev = Select(a, devs, &err);
    if (!dev) {
        fprintf(stderr, "dshm-tool: %s\n", err.c_str());
        return kExitNoDevice;
    }
    if (a.command == "regs")
        return Regs(a, *dev);
    if (a.command == "reg-write")
        return RegWrite(*dev);
    if (a.command == "count")
        return Count(a, *dev);
    Mapping bar2;
    if (!bar2.Open(*dev, 2, &err)) {
        fprintf(stderr, "dshm-tool: %s\n", err.c_str());
        return kExitSystem;
    }
    volatile uint8_t *mem = bar2.data();
    uint64_t off, len;
    const bool is_word = a.command == "peek" || a.command == "poke" || a.command == "wait";
    if (!Range(a, bar2.size(), a.command == "dump" ? 256 : is_word ? 8 : 0, &off, &len, &err)) {
        return Usage(err);
    }
    if (is_word && (off % 8 != 0 || len < 8))
        return Usage("--offset must be 8-byte aligned and inside BAR2");
    volatile uint64_t *word = reinterpret_cast<volatile uint64_t *>(mem + off);

    if (a.command == "fill") {
        if (a.opts.count("pattern")) {
            auto seed = NumOpt(a, "pattern", &err);
            if (!seed)
                return Usage(err);
            FillPattern(mem + off, off, len, *seed);
        } else if (a.opts.count("byte")) {
            auto b = NumOpt(a, "byte", &err);
            if (!b || *b > 255)
                return Usage(err.empty() ? "--byte must be 0..255" : err);
            for (uint64_t i = 0; i < len; i++)
                mem[off + i] = static_cast<uint8_t>(*b);
        } else {
            return Usage("fill needs --pattern SEED or --byte V");
        }
        printf("filled %s offset=%llu length=%llu checksum=%016llx\n", dev->bdf.c_str(),
               (unsigned long long)off, (unsigned long long)len,
               (unsigned long long)Checksum(mem + off, len));
        return kExitOk;
    }
    if (a.command == "verify") {
        auto seed = NumOpt(a, "pattern", &err);
        if (!seed)
            return Usage(err);
        uint64_t first = 0;
        size_t bad = VerifyPattern(mem + off, off, len, *seed, &first);
        if (bad) {
            printf("verify FAILED %s offset=%llu length=%llu: %zu bytes differ, first at %llu\n",
                   dev->bdf.c_str(), (unsigned long long)off, (unsigned long long)len, bad,
                   (unsigned long long)first);
            return kExitCheckFailed;
        }
        printf("verify OK %s offset=%llu length=%llu checksum=%016llx\n", dev->bdf.c_str(),
               (unsigned long long)off, (unsigned long long)len,
               (unsigned long long)Checksum(mem + off, len));
        return kExitOk;
    }
    if (a.command == "checksum") {
        // The elapsed time includes the faults the reads take: the first read
        // of pages a dshm host does not have fetches them from the owner.
        const double t0 = Now();
        const uint64_t sum = Checksum(mem + off, len);
        const double us = (Now() - t0) * 1e6;
        printf("checksum %s offset=%llu length=%llu fnv1a64=%016llx elapsed_us=%.0f\n", dev->bdf.c_str(),
               (unsigned long long)off, (unsigned long long)len, (unsigned long long)sum, us);
        return kExitOk;
    }
    if (a.command == "dump") {
        fputs(HexDump(mem + off, len, off).c_str(), stdout);
        return kExitOk;
    }
    if (a.command == "peek") {
        printf("%llu\n", (unsigned long long)*word);
        return kExitOk;
    }
    if (a.command == "poke") {
        auto v = NumOpt(a, "value", &err);
        if (!v)
            return Usage(err);
        *word = *v;
        return kExitOk;
    }
    if (a.command == "wait") {
        auto v = NumOpt(a, "value", &err);
        if (!v)
            return Usage(err);
        double timeout = 30;
        if (a.opts.count("timeout")) {
            auto t = NumOpt(a, "timeout", &err);
            if (!t)
                return Usage(err);
            timeout = static_cast<double>(*t);
        }
        double deadline = Now() + timeout;
        while (*word != *v) {
            if (Now() > deadline) {
                printf("wait TIMEOUT offset=%llu: value %llu, wanted %llu\n",
                       (unsigned long long)off, (unsigned long long)*word, (unsigned long long)*v);
                return kExitCheckFailed;
            }
            usleep(1000);
        }
        printf("wait OK offset=%llu value=%llu\n", (unsigned long long)off, (unsigned long long)*v);
        return kExitOk;
    }
    return Usage("unknown command '" + a.command + "'");
}

}  // namespace

int main(int argc, char **argv) {
    if (argc >= 2 &&
        (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help"))) {
        fputs(kUsage, stdout);
        return kExitOk;
    }
    if (argc >= 2 && !strcmp(argv[1], "--version")) {
        printf("dshm-tool %s\n", DSHM_VERSION);
        return kExitOk;
    }
    std::string err;
    auto args = Parse(argc, argv, &err);
    if (!args)
        return Usage(err);
    return Run(*args);
}

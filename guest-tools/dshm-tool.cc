// dshm-tool: inspect and fill ivshmem / dshm segments from inside a guest.
//
//   dshm-tool list
//   dshm-tool fill     [-d DEV] [--offset N] [--length N] (--pattern SEED | --byte V)
//   dshm-tool verify   [-d DEV] [--offset N] [--length N] --pattern SEED
//   dshm-tool checksum [-d DEV] [--offset N] [--length N]
//   dshm-tool dump     [-d DEV] [--offset N] [--length N]
//   dshm-tool peek     [-d DEV] --offset N
//   dshm-tool poke     [-d DEV] --offset N --value V
//   dshm-tool wait     [-d DEV] --offset N --value V [--timeout SECONDS]
//
// Exit status: 0 success, 1 the check failed (verify mismatch, wait timed
// out), 2 usage error, 3 device or system error.
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ivshmem_dev.h"
#include "pattern.h"

using namespace dshm::guest;

namespace {

constexpr int kExitOk = 0, kExitCheckFailed = 1, kExitUsage = 2, kExitSystem = 3;

const char kUsage[] =
    "usage: dshm-tool COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  list                         list ivshmem devices (PCI 1af4:1110)\n"
    "  fill      --pattern SEED | --byte V   write a pattern or a byte value\n"
    "  verify    --pattern SEED     check a range against a pattern\n"
    "  checksum                     FNV-1a 64 of a range\n"
    "  dump                         hex dump of a range (default 256 bytes)\n"
    "  peek      --offset N         print the 64-bit word at N\n"
    "  poke      --offset N --value V   write the 64-bit word at N\n"
    "  wait      --offset N --value V [--timeout S]   wait until the word at N is V\n"
    "\n"
    "options:\n"
    "  -d, --device SEL   device: list index, or BDF such as 00:04.0 (default: first)\n"
    "  --offset N         start of the range in BAR2 (default 0); K/M/G suffixes\n"
    "  --length N         length of the range (default: to the end of BAR2)\n"
    "  --timeout S        seconds for wait (default 30)\n";

int Usage(const std::string &msg) {
    if (!msg.empty()) fprintf(stderr, "dshm-tool: %s\n", msg.c_str());
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
    static const char *const kKnown[] = {"device", "offset", "length", "pattern",
                                         "byte",   "value",  "timeout"};
    Args a;
    if (argc < 2) {
        *err = "missing command";
        return std::nullopt;
    }
    a.command = argv[1];
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
        } else {
            *err = "unexpected argument '" + arg + "'";
            return std::nullopt;
        }
        bool known = false;
        for (const char *k : kKnown) known |= name == k;
        if (!known) {
            *err = "unknown option '" + arg + "'";
            return std::nullopt;
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
    if (a.opts.count("device")) a.device = a.opts["device"];
    return a;
}

// Resolves --offset/--length against the BAR size.
bool Range(const Args &a, uint64_t bar_size, uint64_t default_len, uint64_t *off, uint64_t *len,
           std::string *err) {
    *off = 0;
    if (auto it = a.opts.find("offset"); it != a.opts.end()) {
        auto v = ParseSize(it->second);
        if (!v) return *err = "bad --offset '" + it->second + "'", false;
        *off = *v;
    }
    if (*off > bar_size) return *err = "--offset is past the end of BAR2 (" + std::to_string(bar_size) + " bytes)", false;
    *len = default_len ? std::min(default_len, bar_size - *off) : bar_size - *off;
    if (auto it = a.opts.find("length"); it != a.opts.end()) {
        auto v = ParseSize(it->second);
        if (!v) return *err = "bad --length '" + it->second + "'", false;
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
    if (!v) *err = std::string("bad --") + name + " '" + it->second + "'";
    return v;
}

double Now() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
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
    }
    return kExitOk;
}

int Run(const Args &a) {
    if (a.command == "list") return List();

    std::string err;
    auto devs = FindDevices();
    const IvshmemDevice *dev = SelectDevice(devs, a.device, &err);
    if (!dev) {
        fprintf(stderr, "dshm-tool: %s\n", err.c_str());
        return kExitSystem;
    }
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
    if (is_word && (off % 8 != 0 || len < 8)) return Usage("--offset must be 8-byte aligned and inside BAR2");
    volatile uint64_t *word = reinterpret_cast<volatile uint64_t *>(mem + off);

    if (a.command == "fill") {
        if (a.opts.count("pattern")) {
            auto seed = NumOpt(a, "pattern", &err);
            if (!seed) return Usage(err);
            FillPattern(mem + off, off, len, *seed);
        } else if (a.opts.count("byte")) {
            auto b = NumOpt(a, "byte", &err);
            if (!b || *b > 255) return Usage(err.empty() ? "--byte must be 0..255" : err);
            for (uint64_t i = 0; i < len; i++) mem[off + i] = static_cast<uint8_t>(*b);
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
        if (!seed) return Usage(err);
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
        printf("checksum %s offset=%llu length=%llu fnv1a64=%016llx\n", dev->bdf.c_str(),
               (unsigned long long)off, (unsigned long long)len,
               (unsigned long long)Checksum(mem + off, len));
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
        if (!v) return Usage(err);
        *word = *v;
        return kExitOk;
    }
    if (a.command == "wait") {
        auto v = NumOpt(a, "value", &err);
        if (!v) return Usage(err);
        double timeout = 30;
        if (a.opts.count("timeout")) {
            auto t = NumOpt(a, "timeout", &err);
            if (!t) return Usage(err);
            timeout = static_cast<double>(*t);
        }
        double deadline = Now() + timeout;
        while (*word != *v) {
            if (Now() > deadline) {
                printf("wait TIMEOUT offset=%llu: value %llu, wanted %llu\n", (unsigned long long)off,
                       (unsigned long long)*word, (unsigned long long)*v);
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
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help"))) {
        fputs(kUsage, stdout);
        return kExitOk;
    }
    std::string err;
    auto args = Parse(argc, argv, &err);
    if (!args) return Usage(err);
    return Run(*args);
}

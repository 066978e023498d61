// dshm-attach: attach to a segment through the local dshmd, as QEMU does,
// and work on it.  Used by tests and benchmarks, and handy for operators.
//
//   dshm-attach [--socket PATH] [--name NAME] [--uuid UUID] SEGMENT COMMAND [args]
//
// Commands:
//   count --offset N --iterations K [--lock L] [--exclusive 1]
//         K times: acquire L, increment the u64 at N, release L.  With
//         --exclusive (this client is the counter's only writer) every read
//         must return its own last write; a mismatch is reported (STALE ...)
//         and makes the exit status 1.
//   read --offset N                   print the u64 at N (no lock)
//   write --offset N --value V [--lock L]
//   fill --offset N --length LEN --pattern SEED [--lock L]
//   verify --offset N --length LEN --pattern SEED [--lock L]
//   hold --lock L [--offset N --value V] [--seconds S]
//         acquire, optionally write, then sleep holding the lock (default forever)
//   script        commands on stdin, one per line, answers on stdout:
//         acquire L | release L | read OFF | write OFF VAL | fill OFF LEN SEED |
//         verify OFF LEN SEED | touch OFF LEN | sleep MS | echo TEXT | quit |
//         migrate-out (prints the hand-off token H:C:I) | adopt H:C:I
//         (takes over the locks of a migrated-out client, as a migrated
//         VM's destination does; prints the locks held and queued)
//         each answered by one line: "ok ...", "value V", or "error ...".
//
// Options are parsed with GOption: unknown options are refused (exit 2),
// --help prints them all, --version prints "dshm-attach VERSION".
//
// Exit status (exit_codes.h): 0 ok, 1 a check failed (verify, count
// --exclusive), 2 usage, 3 dshmd unreachable or refused (no such segment).
#include <glib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "dshm_client.h"
#include "exit_codes.h"
#include "pattern.h"

using dshm::Client;
using dshm::Status;
namespace g = dshm::guest;

namespace {

int Usage(const std::string &m) {
    fprintf(stderr,
            "dshm-attach: %s\nusage: dshm-attach [--socket PATH] [--name NAME] SEGMENT COMMAND "
            "[options]\n"
            "commands: count read write fill verify hold script (dshm-attach --help)\n",
            m.c_str());
    return dshm::kExitUsage;
}

volatile uint64_t *Word(Client &c, uint64_t off) {
    return reinterpret_cast<volatile uint64_t *>(c.data() + off);
}

bool InRange(Client &c, uint64_t off, uint64_t len) {
    return off <= c.size() && len <= c.size() - off;
}

// Runs one script line; returns the answer.
std::string RunLine(Client &c, const std::string &line, bool *quit) {
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    std::vector<std::string> a;
    for (std::string w; in >> w;)
        a.push_back(w);
    auto num = [&](size_t i) -> std::optional<uint64_t> {
        return i < a.size() ? g::ParseSize(a[i]) : std::nullopt;
    };
    if (cmd.empty())
        return "error empty line";
    if (cmd == "quit") {
        *quit = true;
        return "ok";
    }
    if (cmd == "echo")
        return "ok " + line.substr(std::min(line.size(), size_t(5)));
    if (cmd == "acquire" || cmd == "release") {
        auto l = num(0);
        if (!l)
            return "error usage: " + cmd + " LOCK";
        dshm::ReleaseInfo info;
        Status st = cmd == "acquire" ? c.Acquire(*l) : c.Release(*l, &info);
        if (!st.ok())
            return "error " + st.ToString();
        if (cmd == "release") {
            return "ok pages=" + std::to_string(info.pages_written) +
                   " bytes=" + std::to_string(info.bytes_written);
        }
        return "ok";
    }
    if (cmd == "migrate-out") {
        dshm_handoff t;
        Status st = c.MigrateOut(&t);
        if (!st.ok())
            return "error " + st.ToString();
        return "ok token=" + std::to_string(t.host_id) + ":" + std::to_string(t.client_id) + ":" +
               std::to_string(t.incarnation) + " pages=" + std::to_string(t.pages_written) +
               " bytes=" + std::to_string(t.bytes_written);
    }
    if (cmd == "adopt") {
        dshm_handoff t = {};
        unsigned long long inc = 0;
        if (a.size() != 1 ||
            sscanf(a[0].c_str(), "%u:%u:%llu", &t.host_id, &t.client_id, &inc) != 3)
            return "error usage: adopt HOST:CLIENT:INCARNATION (a migrate-out token)";
        t.incarnation = inc;
        dshm_adopted r;
        Status st = c.Adopt(t, &r);
        if (!st.ok())
            return "error " + st.ToString();
        std::string held, queued;
        for (uint32_t l = 0; l < DSHM_MAX_LOCKS; l++) {
            if (r.held[l / 8] & (1u << (l % 8)))
                held += (held.empty() ? "" : ",") + std::to_string(l);
            if (r.queued[l / 8] & (1u << (l % 8)))
                queued += (queued.empty() ? "" : ",") + std::to_string(l);
        }
        return "ok held=" + (held.empty() ? "-" : held) +
               " queued=" + (queued.empty() ? "-" : queued);
    }
    if (cmd == "read") {
        auto o = num(0);
        if (!o || *o % 8 || !InRange(c, *o, 8))
            return "error usage: read OFFSET (8-aligned, in range)";
        return "value " + std::to_string(*Word(c, *o));
    }
    if (cmd == "write") {
        auto o = num(0), v = num(1);
        if (!o || !v || *o % 8 || !InRange(c, *o, 8))
            return "error usage: write OFFSET VALUE";
        *Word(c, *o) = *v;
        return "ok";
    }
    if (cmd == "fill" || cmd == "verify") {
        auto o = num(0), l = num(1), s = num(2);
        if (!o || !l || !s || !InRange(c, *o, *l))
            return "error usage: " + cmd + " OFFSET LENGTH SEED";
        if (cmd == "fill") {
            g::FillPattern(c.data() + *o, *o, *l, *s);
            return "ok";
        }
        uint64_t first = 0;
        size_t bad = g::VerifyPattern(c.data() + *o, *o, *l, *s, &first);
        return bad ? "error verify: " + std::to_string(bad) + " bytes differ, first at " +
                         std::to_string(first)
                   : "ok verified";
    }
    if (cmd == "touch") {
        auto o = num(0), l = num(1);
        if (!o || !l || !InRange(c, *o, *l))
            return "error usage: touch OFFSET LENGTH";
        uint64_t sum = 0;
        for (uint64_t p = *o; p < *o + *l; p += 4096)
            sum += c.data()[p];
        return "ok sum=" + std::to_string(sum);
    }
    if (cmd == "sleep") {
        auto ms = num(0);
        if (!ms)
            return "error usage: sleep MS";
        usleep(*ms * 1000);
        return "ok";
    }
    return "error unknown command '" + cmd + "'";
}

constexpr char kCommands[] =
    "Attaches to SEGMENT through the local dshmd, as QEMU does, and runs COMMAND:\n"
    "  count --offset N --iterations K [--lock L] [--exclusive 1]\n"
    "                       K times: acquire L, increment the u64 at N, release L\n"
    "                       (--exclusive: every read must see this client's last write)\n"
    "  read --offset N      print the u64 at N (no lock)\n"
    "  write --offset N --value V [--lock L]\n"
    "  fill --offset N --length LEN --pattern SEED [--lock L]\n"
    "  verify --offset N --length LEN --pattern SEED [--lock L]\n"
    "  hold --lock L [--offset N --value V] [--seconds S]\n"
    "                       acquire, optionally write, sleep holding the lock\n"
    "  script               commands on stdin, one per line (see dshm-attach.cc)";

}  // namespace

int main(int argc, char **argv) {
    std::string socket = "/run/dshm/dshmd.sock", name = "dshm-attach";
    std::vector<std::string> pos;
    std::map<std::string, std::string> opt;
    // Every option takes a value; each is kept as text in `opt`.
    const char *const kValued[][3] = {
        {"socket", "dshmd's client socket (default /run/dshm/dshmd.sock)", "PATH"},
        {"name", "this client's name, as dshmctl shows it (default dshm-attach)", "NAME"},
        {"uuid", "the VM UUID the ATTACH names (a segment's allow list checks it)", "UUID"},
        {"offset", "byte offset in the segment (K/M/G suffixes)", "N"},
        {"length", "length in bytes (fill, verify)", "LEN"},
        {"pattern", "seed of the pattern (fill, verify)", "SEED"},
        {"value", "u64 to write (write, hold)", "V"},
        {"lock", "lock id (default 0)", "L"},
        {"iterations", "number of increments (count)", "K"},
        {"seconds", "how long to hold the lock (hold; default forever)", "S"},
        {"exclusive", "1: this client is the counter's only writer (count)", "1"},
    };
    constexpr size_t kN = sizeof kValued / sizeof kValued[0];
    gchar *values[kN] = {};
    gboolean version = FALSE;
    std::vector<GOptionEntry> entries;
    for (size_t i = 0; i < kN; i++) {
        entries.push_back(
            {kValued[i][0], 0, 0, G_OPTION_ARG_STRING, &values[i], kValued[i][1], kValued[i][2]});
    }
    entries.push_back(
        {"version", 0, 0, G_OPTION_ARG_NONE, &version, "print the version and exit", nullptr});
    entries.push_back({nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr});
    GOptionContext *ctx = g_option_context_new("SEGMENT COMMAND");
    g_option_context_set_summary(ctx, kCommands);
    g_option_context_set_description(ctx,
                                     "Exit status: 0 ok, 1 a check failed, 2 usage, 3 dshmd "
                                     "unreachable or refused (e.g. no such segment).\n");
    g_option_context_add_main_entries(ctx, entries.data(), nullptr);
    GError *err = nullptr;
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        std::string m = err->message;
        g_error_free(err);
        g_option_context_free(ctx);
        return Usage(m);
    }
    g_option_context_free(ctx);
    if (version) {
        printf("dshm-attach %s\n", DSHM_VERSION);
        return dshm::kExitOk;
    }
    for (size_t i = 0; i < kN; i++) {
        if (values[i])
            opt[kValued[i][0]] = values[i];
        g_free(values[i]);
    }
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && strcmp(argv[i], "-") != 0 && strcmp(argv[i], "--") != 0)
            return Usage(std::string("unknown option ") + argv[i]);
        if (strcmp(argv[i], "--") != 0)
            pos.push_back(argv[i]);
    }
    if (opt.count("socket"))
        socket = opt["socket"];
    if (opt.count("name"))
        name = opt["name"];
    if (pos.size() != 2)
        return Usage("need SEGMENT and COMMAND");
    auto num = [&](const char *k,
                   std::optional<uint64_t> dflt = std::nullopt) -> std::optional<uint64_t> {
        auto it = opt.find(k);
        if (it == opt.end())
            return dflt;
        return g::ParseSize(it->second);
    };

    Client c;
    Status st = c.Attach(socket, pos[0], name, opt.count("uuid") ? opt["uuid"] : "");
    if (!st.ok()) {
        fprintf(stderr, "dshm-attach: %s\n", st.ToString().c_str());
        return dshm::kExitUnavailable;
    }
    const std::string &cmd = pos[1];
    auto lock = num("lock", 0);
    auto fail = [](const Status &s) {
        fprintf(stderr, "dshm-attach: %s\n", s.ToString().c_str());
        return dshm::kExitUnavailable;
    };
    if (cmd == "script") {
        setvbuf(stdout, nullptr, _IOLBF, 0);
        printf("ok attached client=%u size=%llu owner=%u\n", c.client_id(),
               (unsigned long long)c.size(), c.owner_host());
        bool quit = false;
        for (std::string line; !quit && std::getline(std::cin, line);) {
            printf("%s\n", RunLine(c, line, &quit).c_str());
        }
        return 0;
    }
    if (cmd == "count") {
        auto off = num("offset", 0), iters = num("iterations");
        if (!off || !iters || !lock || *off % 8 || !InRange(c, *off, 8))
            return Usage("count --offset N --iterations K [--lock L]");
        uint64_t pages = 0, bytes = 0, last = 0, stale = 0;
        for (uint64_t i = 0; i < *iters; i++) {
            if (!(st = c.Acquire(*lock)).ok())
                return fail(st);
            uint64_t seen = *Word(c, *off);
            // With --exclusive, nobody else writes this counter: anything but
            // our own last value is a coherence failure, reported at once.
            if (opt.count("exclusive") && i > 0 && seen != last) {
                fprintf(stderr, "STALE iteration=%llu read=%llu expected=%llu\n",
                        (unsigned long long)i, (unsigned long long)seen, (unsigned long long)last);
                stale++;
            }
            last = seen + 1;
            *Word(c, *off) = last;
            dshm::ReleaseInfo info;
            if (!(st = c.Release(*lock, &info)).ok())
                return fail(st);
            pages += info.pages_written;
            bytes += info.bytes_written;
        }
        printf(
            "count done iterations=%llu last=%llu pages_written=%llu bytes_written=%llu "
            "bytes_per_release=%.1f\n",
            (unsigned long long)*iters, (unsigned long long)last, (unsigned long long)pages,
            (unsigned long long)bytes, *iters ? double(bytes) / *iters : 0.0);
        return stale ? 1 : 0;
    }
    if (cmd == "read") {
        auto off = num("offset", 0);
        if (!off || *off % 8 || !InRange(c, *off, 8))
            return Usage("read --offset N");
        printf("%llu\n", (unsigned long long)*Word(c, *off));
        return 0;
    }
    bool locked = opt.count("lock") && cmd != "hold";
    if (locked && !(st = c.Acquire(*lock)).ok())
        return fail(st);
    int rc = 0;
    if (cmd == "write") {
        auto off = num("offset", 0), v = num("value");
        if (!off || !v || *off % 8 || !InRange(c, *off, 8))
            return Usage("write --offset N --value V");
        *Word(c, *off) = *v;
    } else if (cmd == "fill" || cmd == "verify") {
        auto off = num("offset", 0), len = num("length"), seed = num("pattern");
        if (!off || !len || !seed || !InRange(c, *off, *len))
            return Usage(cmd + " --offset N --length L --pattern SEED");
        if (cmd == "fill") {
            g::FillPattern(c.data() + *off, *off, *len, *seed);
            printf("filled offset=%llu length=%llu\n", (unsigned long long)*off,
                   (unsigned long long)*len);
        } else {
            uint64_t first = 0;
            size_t bad = g::VerifyPattern(c.data() + *off, *off, *len, *seed, &first);
            if (bad) {
                printf("verify FAILED: %zu bytes differ, first at %llu\n", bad,
                       (unsigned long long)first);
                rc = 1;
            } else {
                printf("verify OK offset=%llu length=%llu\n", (unsigned long long)*off,
                       (unsigned long long)*len);
            }
        }
    } else if (cmd == "hold") {
        if (!(st = c.Acquire(*lock)).ok())
            return fail(st);
        if (auto v = num("value")) {
            auto off = num("offset", 0);
            if (!off || *off % 8 || !InRange(c, *off, 8))
                return Usage("hold --offset N --value V");
            *Word(c, *off) = *v;
        }
        printf("holding lock %llu\n", (unsigned long long)*lock);
        fflush(stdout);
        auto secs = num("seconds", 0);
        if (*secs) {
            sleep(*secs);
            if (!(st = c.Release(*lock)).ok())
                return fail(st);
        } else {
            for (;;)
                pause();
        }
    } else {
        return Usage("unknown command '" + cmd + "'");
    }
    if (locked && !(st = c.Release(*lock)).ok())
        return fail(st);
    return rc;
}

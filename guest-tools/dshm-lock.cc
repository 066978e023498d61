// dshm-lock: take dshm segment locks from shell scripts inside a guest.
//
//   dshm-lock SEGMENT [--lock N] [--timeout SEC] -- COMMAND [ARG...]
//   dshm-lock SEGMENT acquire [--lock N] [--timeout SEC]
//   dshm-lock SEGMENT release [--lock N] [--timeout SEC] [--force]
//   dshm-lock SEGMENT status
//
// Built on libdshm (dshm.h).  The exit statuses are documented in kUsage.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dshm.h"
#include "libdshm_internal.h"
#include "pattern.h"

using namespace dshm::guest;

namespace {

// Exit statuses: include/dshm/exit_codes.h (the table of every dshm tool).
enum Exit {
    kOk = DSHM_EXIT_OK,
    kSystem = DSHM_EXIT_FAILED,
    kUsageError = DSHM_EXIT_USAGE,
    kNoSegment = DSHM_EXIT_UNAVAILABLE,
    kTimeout = DSHM_EXIT_TIMEOUT,
    kRefused = DSHM_EXIT_REFUSED,
    kDeviceDown = DSHM_EXIT_DEVICE_DOWN,
    kReleaseFailed = DSHM_EXIT_RELEASE_FAILED,
    kNotHeld = DSHM_EXIT_NOT_HELD,
};

const char kUsage[] =
    "usage: dshm-lock SEGMENT [--lock N] [--timeout SEC] -- COMMAND [ARG...]\n"
    "       dshm-lock SEGMENT acquire [--lock N] [--timeout SEC]\n"
    "       dshm-lock SEGMENT release [--lock N] [--timeout SEC] [--force]\n"
    "       dshm-lock SEGMENT status\n"
    "\n"
    "Takes lock N (default 0) of the dshm segment SEGMENT for this VM.  Writes to the\n"
    "segment made while holding the lock reach the other VMs when it is released.\n"
    "\n"
    "  -- COMMAND   acquire, run COMMAND, release (also when COMMAND fails or is\n"
    "               killed), exit with COMMAND's status.  Processes of this VM using\n"
    "               dshm-lock / libdshm for the same lock exclude each other.\n"
    "  acquire      acquire and exit, leaving the lock held by this VM for the\n"
    "               script: it is registered in /run/dshm/SEGMENT.N.held, and other\n"
    "               dshm-lock / libdshm users of this VM wait until `release`.\n"
    "               The script MUST run `release` (from any process); nothing\n"
    "               releases the lock if the script dies.\n"
    "  release      release a lock taken by `acquire`.  --force releases the lock\n"
    "               whatever holds it in this VM (waiting for a queued request to be\n"
    "               granted first): for recovery only.\n"
    "  status       the segment and every lock that is not FREE in this VM.\n"
    "\n"
    "options:\n"
    "  --version         print the version and exit\n"
    "  -l, --lock N      lock id, 0..NLOCKS-1 (default 0)\n"
    "  -t, --timeout SEC give up after SEC seconds (decimals allowed; default: wait\n"
    "                    forever).  On timeout the request stays queued at dshmd: the\n"
    "                    next user of the lock in this VM adopts the grant, or\n"
    "                    `release --force` returns it.\n"
    "\n"
    "exit status (the table of every dshm tool, dshm(7)):\n"
    "  0    success (with -- COMMAND: COMMAND exited 0)\n"
    "  1    system error (not root? /run/dshm not writable?)\n"
    "  2    usage error, or lock id out of range\n"
    "  3    no dshm device carries SEGMENT (or it is not a DSM device)\n"
    "  4    timed out\n"
    "  5    refused by dshmd (the status is printed, e.g. E_OWNER_LOST)\n"
    "  6    the device is not attached to dshmd, or lost it\n"
    "  7    -- COMMAND ran but the release failed: its writes may not have\n"
    "       reached the other VMs\n"
    "  8    release: the lock was not taken by `acquire` (or not held at all)\n"
    "  with -- COMMAND, any other status is COMMAND's: its exit status, 126/127\n"
    "  if it could not be run, 128+N if it was killed by signal N.  (COMMAND's own\n"
    "  statuses 1..8 are passed through unchanged: they overlap the codes above.)\n";

int Usage(const std::string &msg) {
    if (!msg.empty())
        fprintf(stderr, "dshm-lock: %s\n", msg.c_str());
    fputs(kUsage, stderr);
    return kUsageError;
}

int ExitFor(int rc) { return ExitStatusFor(rc); }

int Report(int rc, const char *what) {
    fprintf(stderr, "dshm-lock: %s: %s\n", what,
            *dshm_errmsg() ? dshm_errmsg() : dshm_strerror(rc));
    return ExitFor(rc);
}

volatile sig_atomic_t g_child = 0;

void Forward(int sig) {
    if (g_child > 0)
        kill(g_child, sig);
}

// Runs argv, forwarding termination signals to it; returns a shell-style
// status (exit status, 126/127, 128+signal).
int RunCommand(const std::vector<char *> &argv) {
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    struct sigaction sa = {}, old[4];
    sa.sa_handler = Forward;
    sigemptyset(&sa.sa_mask);
    fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "dshm-lock: fork: %s\n", strerror(errno));
        return 126;
    }
    if (pid == 0) {
        execvp(argv[0], argv.data());
        int e = errno;
        fprintf(stderr, "dshm-lock: %s: %s\n", argv[0], strerror(e));
        _exit(e == ENOENT ? 127 : 126);
    }
    g_child = pid;
    for (int i = 0; i < 4; i++)
        sigaction(sigs[i], &sa, &old[i]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            status = -1;
            break;
        }
    }
    g_child = 0;
    for (int i = 0; i < 4; i++)
        sigaction(sigs[i], &old[i], nullptr);
    if (status == -1)
        return 126;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 126;
}

int Status(dshm_dev *dev) {
    const IvshmemDevice &pci = Device(dev);
    DsmInfo info;
    ReadDsmInfo(Bar0(dev), DSHM_BAR0_SIZE, &info);
    const char *states[] = {"detached", "ready", "failed"};
    printf("segment %s device %s size %llu state %s nlocks %u errors %u", dshm_segment(dev),
           pci.bdf.c_str(), (unsigned long long)dshm_size(dev),
           info.state < 3 ? states[info.state] : "unknown", info.nlocks, info.errors);
    if (info.errors) {
        printf(" last_error lock=%u %s", info.last_error >> 16,
               dshm_status_name(info.last_error & 0xffff));
    }
    printf("\n");
    int shown = 0;
    for (uint32_t n = 0; n < dshm_nlocks(dev); n++) {
        uint32_t st = dshm_lock_state(dev, n);
        std::string holder = DetachedHolder(dev, n);
        if (st == DSHM_LOCK_FREE && holder.empty())
            continue;
        printf("lock %u %s", n, dshm_lock_state_name(st));
        if (!holder.empty())
            printf(" script-held %s", holder.c_str());
        printf("\n");
        shown++;
    }
    if (!shown)
        printf("all locks FREE\n");
    return kOk;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2)
        return Usage("missing SEGMENT");
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        fputs(kUsage, stdout);
        return kOk;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("dshm-lock %s\n", DSHM_VERSION);
        return kOk;
    }
    if (argv[1][0] == '-')
        return Usage(std::string("unknown option '") + argv[1] + "' (the first argument is the SEGMENT)");
    std::string segment = argv[1], sub;
    uint32_t lock = 0;
    int timeout_ms = -1;
    bool force = false;
    std::vector<char *> command;
    for (int i = 2; i < argc; i++) {
        std::string a = argv[i], value;
        bool has_value = false;
        if (a == "--") {
            for (int j = i + 1; j < argc; j++)
                command.push_back(argv[j]);
            if (command.empty())
                return Usage("no COMMAND after --");
            break;
        }
        if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
            value = a.substr(a.find('=') + 1);
            a.resize(a.find('='));
            has_value = true;
        }
        auto need = [&](std::string *out) {
            if (has_value)
                return *out = value, true;
            if (i + 1 >= argc)
                return false;
            *out = argv[++i];
            return true;
        };
        if (a == "-l" || a == "--lock") {
            std::string v;
            if (!need(&v))
                return Usage("--lock needs a value");
            auto n = ParseU64(v);
            if (!n || *n >= DSHM_MAX_LOCKS) {
                return Usage("bad lock id '" + v + "' (0.." + std::to_string(DSHM_MAX_LOCKS - 1) +
                             ")");
            }
            lock = static_cast<uint32_t>(*n);
        } else if (a == "-t" || a == "--timeout") {
            std::string v;
            if (!need(&v))
                return Usage("--timeout needs a value");
            char *end = nullptr;
            double s = strtod(v.c_str(), &end);
            if (v.empty() || *end || !std::isfinite(s) || s < 0 || s > 2e6) {
                return Usage("bad --timeout '" + v + "' (seconds)");
            }
            timeout_ms = static_cast<int>(std::lround(s * 1000));
        } else if (a == "--force") {
            force = true;
        } else if (a == "acquire" || a == "release" || a == "status") {
            if (!sub.empty())
                return Usage("more than one subcommand");
            sub = a;
        } else {
            return Usage("unexpected argument '" + std::string(argv[i]) + "'");
        }
    }
    if (segment.empty() || segment[0] == '-')
        return Usage("the first argument is the SEGMENT");
    if (command.empty() && sub.empty()) {
        return Usage("nothing to do: give -- COMMAND, acquire, release or status");
    }
    if (!command.empty() && !sub.empty())
        return Usage("-- COMMAND and " + sub + " exclude each other");
    if (force && sub != "release")
        return Usage("--force goes with release");

    dshm_dev *dev = nullptr;
    if (int rc = dshm_open(segment.c_str(), &dev))
        return Report(rc, "open");
    int rc;
    if (sub == "status") {
        rc = Status(dev);
    } else if (sub == "acquire") {
        rc = AcquireDetached(dev, lock, timeout_ms, "dshm-lock acquire");
        rc = rc ? Report(rc, "acquire") : kOk;
    } else if (sub == "release") {
        rc = ReleaseDetached(dev, lock, timeout_ms, force);
        rc = rc ? Report(rc, "release") : kOk;
    } else {
        int lrc = dshm_lock(dev, lock, timeout_ms);
        if (lrc) {
            rc = Report(lrc, "acquire");
        } else {
            rc = RunCommand(command);
            // Release with a generous bound even when the acquire had a short
            // timeout: the command's writes must get out.
            int urc = dshm_unlock(dev, lock, timeout_ms < 0 ? -1 : std::max(timeout_ms, 60000));
            if (urc) {
                Report(urc, "release");
                fprintf(stderr, "dshm-lock: the command exited with status %d\n", rc);
                rc = kReleaseFailed;
            }
        }
    }
    dshm_close(dev);
    return rc;
}

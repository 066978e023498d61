// uffd_floor: the bare latency floor of "a userfaultfd missing fault on shmem
// resolved by another process on the same host" (docs/protocol.md section 2),
// i.e. what every dshm page fault costs before any networking.
//
// A forked child maps a segment memfd MAP_SHARED, creates a uffd exactly like
// a dshm client (MISSING_SHMEM | WP_HUGETLBFS_SHMEM, registered MISSING|WP),
// passes it to the parent over a socketpair, then reads the first byte of
// each of N pages (one fault per page), timing each access with
// clock_gettime(CLOCK_MONOTONIC).  The parent resolves each fault with
// UFFDIO_COPY (MODE_WP, as dshmd does), waking the child.
//
// Resolver modes, measured in the same run on fresh memfds:
//   blocking  the resolver sleeps in poll() between faults;
//   busypoll  the resolver spins on a non-blocking read() of the uffd;
//   loop      the resolver sleeps in dshmd's own loop: a GLib main context
//             iteration with the uffd watched through hostd/watch.h, the
//             events read and resolved in the watch's callback as dshmd's
//             OnUffdEvent does.  loop - blocking is what dshmd's loop adds
//             to each wake-up (not a floor: a diagnostic).
// Plus a reference line: the same registered mapping, but every page is
// already present in the memfd, so each touch is a plain shmem minor fault
// with no uffd event.  (A uffd-registered VMA gets no fault-around: every
// page of a dshm client mapping faults once, even when present.)
//
// Output (one line per mode, stable and grep-able):
//   uffd_fault mode=blocking n=4096 p50_us=.. p90_us=.. p99_us=.. mean_us=..
//   uffd_fault mode=busypoll n=4096 ...
//   uffd_fault mode=loop n=4096 ...                      (--mode loop or all)
//   shmem_minor_fault mode=present n=4096 ...
//
// Usage: uffd_floor [--pages N] [--mode blocking|busypoll|loop|both|all]
//                   [--cpus RESOLVER,TOUCHER]
// Needs root (or vm.unprivileged_userfaultfd=1).  Every wait is bounded: the
// child has an alarm and PR_SET_PDEATHSIG; the parent kills and reaps it.
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <glib.h>

#include "stats.h"
#include "watch.h"
#include "os/memfd.h"
#include "os/uffd.h"
#include "os/unix_socket.h"

using namespace dshm::os;

namespace {

constexpr unsigned kChildAlarmSec = 60;
constexpr int kFaultWaitMs = 5000;

enum class Mode { kBlocking, kBusyPoll, kLoop, kPresent };

const char *ModeName(Mode m) {
    switch (m) {
        case Mode::kBlocking:
            return "blocking";
        case Mode::kBusyPoll:
            return "busypoll";
        case Mode::kLoop:
            return "loop";
        case Mode::kPresent:
            return "present";
    }
    return "?";
}

uint64_t NowNs() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void Die(const std::string &msg) {
    fprintf(stderr, "uffd_floor: %s\n", msg.c_str());
    exit(1);
}

void Pin(int cpu) {
    if (cpu < 0) {
        return;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
        Die("sched_setaffinity(" + std::to_string(cpu) + "): " + strerror(errno));
    }
}

using dshm::bench::Stats;
using dshm::bench::Summarize;

// Child: map, register, hand the uffd over, wait for "go", touch every page.
[[noreturn]] void Toucher(int memfd, size_t pages, int sock, uint64_t *times, int cpu) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(kChildAlarmSec);
    Pin(cpu);
    size_t size = pages * kPageSize;
    void *m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (m == MAP_FAILED) {
        _exit(10);
    }
    auto base = reinterpret_cast<uintptr_t>(m);
    auto uffd = CreateUffd(kClientUffdFeatures, nullptr);
    if (!uffd.ok()) {
        fprintf(stderr, "uffd_floor child: %s\n", uffd.error().what.c_str());
        _exit(11);
    }
    if (!RegisterRange(uffd->get(), base, size, kClientRegisterModes).ok()) {
        _exit(12);
    }
    int fd = uffd->get();
    if (!SendWithFds(sock, &base, sizeof base, &fd, 1).ok()) {
        _exit(13);
    }
    char go;
    if (read(sock, &go, 1) != 1) {
        _exit(14);
    }
    unsigned sum = 0;
    for (size_t i = 0; i < pages; i++) {
        uint64_t t0 = NowNs();
        sum += *reinterpret_cast<volatile unsigned char *>(base + i * kPageSize);
        uint64_t t1 = NowNs();
        times[i] = t1 - t0;
    }
    // Report the sum so the reads cannot be optimized away.
    if (write(sock, &sum, sizeof sum) != sizeof sum) {
        _exit(15);
    }
    _exit(0);
}

// Mode::kLoop: resolves `pages` faults from dshmd's kind of loop.
struct LoopState {
    const unsigned char *src;
    size_t *resolved;
    size_t at_last_tick = 0;  // *resolved at the guard's previous tick
    std::string error;
};

gboolean OnLoopUffd(gint fd, GIOCondition, gpointer p) {
    auto *st = static_cast<LoopState *>(p);
    uffd_msg msgs[16];
    for (;;) {
        auto got = ReadEvents(fd, msgs, 16);
        if (!got.ok()) {
            st->error = got.error().what;
            return G_SOURCE_REMOVE;
        }
        for (size_t i = 0; i < *got; i++) {
            if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
                continue;
            uint64_t addr = msgs[i].arg.pagefault.address & ~(uint64_t{kPageSize} - 1);
            auto r = CopyPage(fd, addr, st->src, true, false);
            if (!r.ok()) {
                st->error = r.error().what;
                return G_SOURCE_REMOVE;
            }
            (*st->resolved)++;
        }
        if (*got < 16)
            return G_SOURCE_CONTINUE;
    }
}

// The guard: one periodic timer (as dshmd has timers of its own in its
// context), not one per wait; a tick with no fault resolved since the last
// one ends the run.
gboolean OnLoopTick(gpointer p) {
    auto *st = static_cast<LoopState *>(p);
    if (*st->resolved == st->at_last_tick) {
        st->error = "no fault within " + std::to_string(kFaultWaitMs) + " ms";
        return G_SOURCE_REMOVE;
    }
    st->at_last_tick = *st->resolved;
    return G_SOURCE_CONTINUE;
}

std::string LoopResolve(int uffd, const unsigned char *src, size_t pages, size_t *resolved) {
    LoopState st{src, resolved, 0, {}};
    guint watch = dshm::WatchFd(uffd, G_IO_IN, &OnLoopUffd, &st);
    guint guard = g_timeout_add(kFaultWaitMs, &OnLoopTick, &st);
    while (*resolved < pages && st.error.empty())
        g_main_context_iteration(nullptr, TRUE);
    if (st.error.empty())
        g_source_remove(guard);
    dshm::UnwatchFd(watch);
    return st.error;
}

Stats RunMode(Mode mode, size_t pages, int toucher_cpu) {
    auto memfd = CreateSegmentMemfd("uffd-floor", pages * kPageSize);
    if (!memfd.ok()) {
        Die(memfd.error().what);
    }
    std::vector<unsigned char> src(kPageSize, 0x5a);
    if (mode == Mode::kPresent) {
        for (size_t i = 0; i < pages; i++) {
            if (!WritePage(memfd->get(), i * kPageSize, src.data()).ok()) {
                Die("WritePage");
            }
        }
    }
    // Per-access times, written by the child, read by the parent.
    size_t times_size = pages * sizeof(uint64_t);
    void *tm = mmap(nullptr, times_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (tm == MAP_FAILED) {
        Die(std::string("mmap: ") + strerror(errno));
    }
    auto *times = static_cast<uint64_t *>(tm);
    memset(times, 0, times_size);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        Die(std::string("socketpair: ") + strerror(errno));
    }
    pid_t pid = fork();
    if (pid < 0) {
        Die(std::string("fork: ") + strerror(errno));
    }
    if (pid == 0) {
        close(sv[0]);
        Toucher(memfd->get(), pages, sv[1], times, toucher_cpu);
    }
    close(sv[1]);
    UniqueFd sock(sv[0]);
    auto kill_child = [&](const std::string &why) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        Die(std::string(ModeName(mode)) + ": " + why);
    };

    uint64_t base = 0;
    std::vector<int> fds;
    auto n = RecvWithFds(sock.get(), &base, sizeof base, &fds);
    if (!n.ok() || *n != sizeof base) {
        kill_child("child setup failed (see its message above)");
    }
    UniqueFd uffd(fds.empty() ? -1 : fds[0]);
    if (!uffd.valid() || !SetNonBlocking(uffd.get()).ok()) {
        kill_child("no uffd from child");
    }
    if (write(sock.get(), "g", 1) != 1) {
        kill_child("go");
    }

    size_t resolved = 0;
    if (mode == Mode::kLoop) {
        std::string error = LoopResolve(uffd.get(), src.data(), pages, &resolved);
        if (!error.empty())
            kill_child(error);
    }
    uffd_msg msgs[16];
    while ((mode == Mode::kBlocking || mode == Mode::kBusyPoll) && resolved < pages) {
        Result<size_t> got = size_t{0};
        if (mode == Mode::kBlocking) {
            got = WaitEvents(uffd.get(), msgs, 16, kFaultWaitMs);
            if (got.ok() && *got == 0) {
                kill_child("no fault within " + std::to_string(kFaultWaitMs) + " ms");
            }
        } else {
            uint64_t deadline = NowNs() + kFaultWaitMs * 1000000ull;
            unsigned spins = 0;
            for (;;) {
                got = ReadEvents(uffd.get(), msgs, 16);
                if (!got.ok() || *got > 0) {
                    break;
                }
                if ((++spins & 0xfff) == 0 && NowNs() > deadline) {
                    kill_child("no fault within " + std::to_string(kFaultWaitMs) + " ms");
                }
            }
        }
        if (!got.ok()) {
            kill_child(got.error().what);
        }
        for (size_t i = 0; i < *got; i++) {
            if (msgs[i].event != UFFD_EVENT_PAGEFAULT) {
                continue;
            }
            uint64_t addr = msgs[i].arg.pagefault.address & ~(uint64_t{kPageSize} - 1);
            auto r = CopyPage(uffd.get(), addr, src.data(), true, false);
            if (!r.ok()) {
                kill_child(r.error().what);
            }
            resolved++;
        }
    }

    pollfd pfd{sock.get(), POLLIN, 0};
    unsigned sum = 0;
    if (poll(&pfd, 1, kFaultWaitMs) != 1 || read(sock.get(), &sum, sizeof sum) != sizeof sum) {
        kill_child("child did not finish");
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        Die(std::string(ModeName(mode)) + ": child failed");
    }
    if (sum != pages * 0x5a) {
        Die(std::string(ModeName(mode)) + ": child read wrong data");
    }
    std::vector<uint64_t> v(times, times + pages);
    munmap(tm, times_size);
    return Summarize(std::move(v));
}

void Print(const char *what, Mode mode, const Stats &s) {
    printf("%s mode=%s n=%zu p50_us=%.2f p90_us=%.2f p99_us=%.2f mean_us=%.2f\n", what,
           ModeName(mode), s.n, s.p50, s.p90, s.p99, s.mean);
    fflush(stdout);
}

void Usage() {
    fprintf(stderr,
            "usage: uffd_floor [--pages N] [--mode blocking|busypoll|loop|both|all] "
            "[--cpus RESOLVER,TOUCHER]\n");
    exit(2);
}

}  // namespace

int main(int argc, char **argv) {
    size_t pages = 4096;
    bool blocking = true, busypoll = true, loop = false;
    int resolver_cpu = -1, toucher_cpu = -1;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                Usage();
            }
            return argv[++i];
        };
        if (a == "--pages") {
            pages = strtoull(next().c_str(), nullptr, 0);
            if (pages == 0 || pages > (1u << 24)) {
                Usage();
            }
        } else if (a == "--mode") {
            std::string m = next();
            blocking = m == "blocking" || m == "both" || m == "all";
            busypoll = m == "busypoll" || m == "both" || m == "all";
            loop = m == "loop" || m == "all";
            if (!blocking && !busypoll && !loop) {
                Usage();
            }
        } else if (a == "--cpus") {
            std::string c = next();
            if (sscanf(c.c_str(), "%d,%d", &resolver_cpu, &toucher_cpu) != 2) {
                Usage();
            }
        } else {
            Usage();
        }
    }
    // Probe early for a clear message.
    auto probe = CreateUffd(kClientUffdFeatures, nullptr);
    if (!probe.ok()) {
        Die("userfaultfd unavailable (need root or vm.unprivileged_userfaultfd=1): " +
            probe.error().what);
    }
    Pin(resolver_cpu);
    if (blocking) {
        Print("uffd_fault", Mode::kBlocking, RunMode(Mode::kBlocking, pages, toucher_cpu));
    }
    if (busypoll) {
        Print("uffd_fault", Mode::kBusyPoll, RunMode(Mode::kBusyPoll, pages, toucher_cpu));
    }
    if (loop) {
        Print("uffd_fault", Mode::kLoop, RunMode(Mode::kLoop, pages, toucher_cpu));
    }
    Print("shmem_minor_fault", Mode::kPresent, RunMode(Mode::kPresent, pages, toucher_cpu));
    return 0;
}

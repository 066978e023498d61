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
//   io        the resolver waits as dshmd does by default: the uffd
//             watched by dshmd's I/O thread (hostd/watch.h, WatchFdIo),
//             the events read and resolved in the watch's callback as
//             dshmd's OnUffdEvent does, while this thread iterates a GLib
//             main context as dshmd's loop thread does.  io - blocking is
//             what dshmd's way of waiting adds to each wake-up (not a
//             floor: a diagnostic);
//   relay     (--relay ADDR:PORT, a tcp_floor server on another host) as
//             blocking, but before each copy the resolver sends a 64 B
//             request and blocks until the server's 4 KiB reply, which it
//             copies in: a remote fault's structure (the same four wake-ups
//             as dshm's blocking fault: resolver, server, resolver, toucher)
//             with none of dshmd's software.  Not a floor either: how much
//             more than the sum of the two floors their composition costs;
//   io-relay  the same, the resolver waiting as in io for the uffd event
//             and, through a second watch of the I/O thread, for the reply
//             (dshmd's client host without dshmd's own handling);
//   dshmd-relay (--relay-dshmd ADDR:PORT,SEGMENT,HOST_ID) the blocking
//             resolver as peer host HOST_ID of a real dshmd that owns
//             SEGMENT: a FETCH per fault, the PAGE copied in (dshmd on the
//             owner side only; bench/decompose.sh).
// Plus a reference line: the same registered mapping, but every page is
// already present in the memfd, so each touch is a plain shmem minor fault
// with no uffd event.  (A uffd-registered VMA gets no fault-around: every
// page of a dshm client mapping faults once, even when present.)
//
// Output (one line per mode, stable and grep-able):
//   uffd_fault mode=blocking n=4096 p50_us=.. p90_us=.. p99_us=.. mean_us=.. resolver_cpu_us=..
//   uffd_fault mode=busypoll n=4096 ...
//   uffd_fault mode=io n=4096 ...                        (--mode io or all)
//   uffd_fault mode=relay n=4096 ...                     (--relay)
//   uffd_fault mode=io-relay n=4096 ...                  (--relay)
//   uffd_fault mode=dshmd-relay n=4096 ...               (--relay-dshmd)
//   shmem_minor_fault mode=present n=4096 ...
//
// Usage: uffd_floor [--pages N] [--mode blocking|busypoll|io|both|all|none]
//                   [--cpus RESOLVER,TOUCHER] [--relay ADDR:PORT]
//                   [--relay-dshmd ADDR:PORT,SEGMENT,HOST_ID]
// resolver_cpu_us: the resolver process's CPU time per fault (the toucher's
// not counted), as dshmd's own is counted by run-dshmd.sh.
// Needs root (or vm.unprivileged_userfaultfd=1).  Every wait is bounded: the
// child has an alarm and PR_SET_PDEATHSIG; the parent kills and reaps it.
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <deque>
#include <string>
#include <vector>

#include <glib.h>

#include "floor_proto.h"
#include "frame.h"
#include "stats.h"
#include "watch.h"
#include "os/memfd.h"
#include "os/uffd.h"
#include "os/unix_socket.h"

using namespace dshm::os;

namespace {

constexpr unsigned kChildAlarmSec = 60;
constexpr int kFaultWaitMs = 5000;

enum class Mode { kBlocking, kBusyPoll, kIo, kRelay, kIoRelay, kDshmdRelay, kPresent };

const char *ModeName(Mode m) {
    switch (m) {
        case Mode::kBlocking:
            return "blocking";
        case Mode::kBusyPoll:
            return "busypoll";
        case Mode::kIo:
            return "io";
        case Mode::kRelay:
            return "relay";
        case Mode::kIoRelay:
            return "io-relay";
        case Mode::kDshmdRelay:
            return "dshmd-relay";
        case Mode::kPresent:
            return "present";
    }
    return "?";
}

uint64_t ClockNs(clockid_t clock) {
    timespec ts;
    clock_gettime(clock, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}
uint64_t NowNs() {
    return ClockNs(CLOCK_MONOTONIC);
}
uint64_t CpuNs() {
    return ClockNs(CLOCK_PROCESS_CPUTIME_ID);
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

// Starts a blocking rtt phase of `count` exchanges (64 B request, kPageSize
// reply) on a tcp_floor session.
void RelayPhase(int fd, uint64_t count) {
    dshm::bench::Phase ph = {};
    ph.magic = dshm::bench::kFloorMagic;
    ph.kind = dshm::bench::kRtt;
    ph.mode = dshm::bench::kBlocking;
    ph.request = 64;
    ph.reply = kPageSize;
    ph.count = count;
    if (send(fd, &ph, sizeof ph, MSG_NOSIGNAL) != sizeof ph) {
        Die("--relay: sending the phase: " + std::string(strerror(errno)));
    }
}

// Modes kRelay and kIoRelay: the connection to the tcp_floor server, in
// an rtt phase of `count` exchanges.
int RelayConnect(const std::string &spec, uint64_t count) {
    std::string err;
    addrinfo *ai = dshm::bench::ResolveNumeric(spec, false, &err);
    if (ai == nullptr) {
        Die("--relay: " + err);
    }
    const int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        Die("--relay: connect " + spec + ": " + strerror(errno));
    }
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    RelayPhase(fd, count);
    return fd;
}

// Whole buffer, blocking; false on an error or EOF.
bool RelayIo(int fd, void *buf, size_t len, bool in) {
    auto *p = static_cast<uint8_t *>(buf);
    while (len > 0) {
        const ssize_t n = in ? recv(fd, p, len, 0) : send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= static_cast<size_t>(n);
    }
    return true;
}

// One exchange: the reply (kPageSize bytes) lands in `page`.
bool RelayExchange(int fd, uint8_t *page) {
    uint8_t request[64] = {};
    return RelayIo(fd, request, sizeof request, false) && RelayIo(fd, page, kPageSize, true);
}

// Mode::kDshmdRelay: the resolver is a peer host of a real dshmd that owns
// SEGMENT (--relay-dshmd ADDR:PORT,SEGMENT,HOST_ID; HOST_ID must be in that
// dshmd's peer list and not connected): per fault one FETCH of the same
// page index, the PAGE's data copied in.  dshm's remote fault with a bare
// resolver on the client host and dshmd on the owner.
struct DshmdPeer {
    int fd = -1;
    std::string segment;
    dshm::FrameReader reader{dshm::Channel::kPeer, dshm::Receiver::kDaemon,
                             dshm::ClientRole::kUnknown};
    std::vector<uint8_t> buf = std::vector<uint8_t>(256 << 10);

    // The next frame from the owner; nullopt on EOF or an error (printed).
    std::optional<dshm::Frame> Next() {
        for (;;) {
            std::optional<dshm::Frame> f;
            dshm::Status st = reader.Next(&f);
            if (!st.ok()) {
                fprintf(stderr, "uffd_floor: from dshmd: %s\n", st.ToString().c_str());
                return std::nullopt;
            }
            if (f)
                return f;
            const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
            if (n <= 0)
                return std::nullopt;
            reader.Feed(buf.data(), static_cast<size_t>(n));
        }
    }

    bool Fetch(uint32_t page, uint8_t *out) {
        dshm_fetch m = {};
        dshm::SetName(m.segment, segment);
        m.page = page;
        std::vector<uint8_t> msg = dshm::EncodeMsg(DSHM_MSG_FETCH, page, m);
        if (!RelayIo(fd, msg.data(), msg.size(), false))
            return false;
        for (;;) {
            std::optional<dshm::Frame> f = Next();
            if (!f)
                return false;
            if (f->hdr.type != DSHM_MSG_PAGE || f->Fixed<dshm_page>().page != page)
                continue;  // e.g. the owner's own periodic messages
            if (f->Fixed<dshm_page>().status != DSHM_OK)
                return false;
            memcpy(out, f->Extra(sizeof(dshm_page)).data(), kPageSize);
            return true;
        }
    }
};

// Connects as peer HOST_ID and waits for the owner's HELLO.
void DshmdConnect(DshmdPeer *p, const std::string &spec) {
    const size_t c1 = spec.find(','), c2 = spec.rfind(',');
    if (c1 == std::string::npos || c2 == c1)
        Die("--relay-dshmd wants ADDR:PORT,SEGMENT,HOST_ID");
    const std::string addr = spec.substr(0, c1);
    p->segment = spec.substr(c1 + 1, c2 - c1 - 1);
    std::string err;
    addrinfo *ai = dshm::bench::ResolveNumeric(addr, false, &err);
    if (ai == nullptr)
        Die("--relay-dshmd: " + err);
    p->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->fd < 0 || connect(p->fd, ai->ai_addr, ai->ai_addrlen) != 0)
        Die("--relay-dshmd: connect " + addr + ": " + strerror(errno));
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    dshm_hello h = {};
    h.version = DSHM_PROTO_VERSION;
    h.role = DSHM_ROLE_PEER;
    h.host_id = static_cast<uint32_t>(strtoul(spec.substr(c2 + 1).c_str(), nullptr, 10));
    h.incarnation = static_cast<uint64_t>(getpid());
    dshm::SetName(h.name, "uffd_floor");
    std::vector<uint8_t> msg = dshm::EncodeMsg(DSHM_MSG_HELLO, 0, h);
    if (!RelayIo(p->fd, msg.data(), msg.size(), false))
        Die("--relay-dshmd: sending HELLO failed");
    for (;;) {
        std::optional<dshm::Frame> f = p->Next();
        if (!f)
            Die("--relay-dshmd: no HELLO from dshmd (is host " + std::to_string(h.host_id) +
                " one of its peers, and not connected?)");
        if (f->hdr.type == DSHM_MSG_HELLO)
            return;
    }
}

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

// Mode::kIo: resolves `pages` faults as dshmd waits, on its I/O thread
// (this thread iterating the loop as dshmd's loop thread does); with a
// relay (Mode::kIoRelay), as dshmd does: the uffd event sends the request
// and returns, the reply's arrival (a second watch) copies the page in.
// The state is the callbacks' and this thread's, under the loop mutex.
struct IoState {
    unsigned char *src;
    size_t *resolved;
    size_t pages;  // to resolve
    int uffd = -1;
    int relay = -1;
    std::deque<uint64_t> waiting;  // relay: faulting addresses, in request order
    size_t at_last_tick = 0;        // *resolved at the guard's previous tick
    std::string error;
};

// One more fault resolved; the loop thread, asleep in its poll while the
// I/O thread resolves, is woken when the last one is.
void CountResolved(IoState *st) {
    if (++*st->resolved == st->pages)
        g_main_context_wakeup(nullptr);
}

// A callback's failure: recorded, and the loop thread woken to see it.
gboolean Failed(IoState *st, std::string what) {
    st->error = std::move(what);
    g_main_context_wakeup(nullptr);
    return G_SOURCE_REMOVE;
}

gboolean OnIoUffd(gint fd, GIOCondition, gpointer p) {
    auto *st = static_cast<IoState *>(p);
    uffd_msg msgs[16];
    for (;;) {
        auto got = ReadEvents(fd, msgs, 16);
        if (!got.ok()) {
            return Failed(st, got.error().what);
        }
        for (size_t i = 0; i < *got; i++) {
            if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
                continue;
            uint64_t addr = msgs[i].arg.pagefault.address & ~(uint64_t{kPageSize} - 1);
            if (st->relay >= 0) {
                uint8_t request[64] = {};
                if (!RelayIo(st->relay, request, sizeof request, false)) {
                    return Failed(st, "relay: sending a request failed");
                }
                st->waiting.push_back(addr);
                continue;
            }
            auto r = CopyPage(fd, addr, st->src, true, false);
            if (!r.ok()) {
                return Failed(st, r.error().what);
            }
            CountResolved(st);
        }
        if (*got < 16)
            return G_SOURCE_CONTINUE;
    }
}

gboolean OnIoRelay(gint fd, GIOCondition, gpointer p) {
    auto *st = static_cast<IoState *>(p);
    if (st->waiting.empty() || !RelayIo(fd, st->src, kPageSize, true)) {
        return Failed(st, "relay: a reply without a request, or the server failed");
    }
    const uint64_t addr = st->waiting.front();
    st->waiting.pop_front();
    auto r = CopyPage(st->uffd, addr, st->src, true, false);
    if (!r.ok()) {
        return Failed(st, r.error().what);
    }
    CountResolved(st);
    return G_SOURCE_CONTINUE;
}

// The guard: one periodic timer (as dshmd has timers of its own in its
// context), not one per wait; a tick with no fault resolved since the last
// one ends the run.
gboolean OnIoTick(gpointer p) {
    auto *st = static_cast<IoState *>(p);
    if (*st->resolved == st->at_last_tick) {
        st->error = "no fault within " + std::to_string(kFaultWaitMs) + " ms";
        return G_SOURCE_REMOVE;
    }
    st->at_last_tick = *st->resolved;
    return G_SOURCE_CONTINUE;
}

std::string IoResolve(int uffd, unsigned char *src, size_t pages, size_t *resolved, int relay) {
    IoState st{src, resolved, pages, uffd, relay, {}, 0, {}};
    dshm::loop_mutex.AssertHeld();  // this thread iterates the default context
    dshm::EnableIoThread();  // (once per process; the loop thread holds the loop mutex from here)
    guint watch = dshm::WatchFdIo(uffd, G_IO_IN, &OnIoUffd, &st);
    guint relay_watch = relay >= 0 ? dshm::WatchFdIo(relay, G_IO_IN, &OnIoRelay, &st) : 0;
    guint guard = g_timeout_add(kFaultWaitMs, &OnIoTick, &st);
    while (*resolved < pages && st.error.empty())
        g_main_context_iteration(nullptr, TRUE);
    if (st.error.empty())
        g_source_remove(guard);
    dshm::UnwatchFd(watch);
    dshm::UnwatchFd(relay_watch);
    return st.error;
}

// `relay`: the tcp_floor connection (kRelay, kIoRelay); `owner`: the
// dshmd peer connection (kDshmdRelay).
// One mode's run: the toucher's access times, and the resolver's CPU time
// per fault (the toucher's not counted).
struct ModeRun {
    Stats lat;
    double resolver_cpu_us = 0;
};

ModeRun RunMode(Mode mode, size_t pages, int toucher_cpu, int relay = -1,
              DshmdPeer *owner = nullptr) {
    auto memfd = CreateSegmentMemfd("uffd-floor", pages * kPageSize);
    if (!memfd.ok()) {
        Die(memfd.error().what);
    }
    // The byte every page holds (a tcp_floor server's reply is all 'r').
    const bool relayed = mode == Mode::kRelay || mode == Mode::kIoRelay;
    // (The owner's segment pages read as zeros: never written.)
    const unsigned char fill = mode == Mode::kDshmdRelay ? 0 : relayed ? 'r' : 0x5a;
    std::vector<unsigned char> src(kPageSize, fill);
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
    const uint64_t cpu0 = CpuNs();
    if (mode == Mode::kIo || mode == Mode::kIoRelay) {
        std::string error =
            IoResolve(uffd.get(), src.data(), pages, &resolved, mode == Mode::kIo ? -1 : relay);
        if (!error.empty())
            kill_child(error);
    }
    uffd_msg msgs[16];
    while ((mode == Mode::kBlocking || mode == Mode::kBusyPoll || mode == Mode::kRelay ||
            mode == Mode::kDshmdRelay) &&
           resolved < pages) {
        Result<size_t> got = size_t{0};
        if (mode != Mode::kBusyPoll) {
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
            if (mode == Mode::kRelay && !RelayExchange(relay, src.data())) {
                kill_child("relay: the exchange with the tcp_floor server failed");
            }
            if (mode == Mode::kDshmdRelay &&
                !owner->Fetch(static_cast<uint32_t>((addr - base) / kPageSize), src.data())) {
                kill_child("dshmd-relay: the FETCH was not answered");
            }
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
    if (sum != pages * fill) {
        Die(std::string(ModeName(mode)) + ": child read wrong data");
    }
    const double cpu_us = static_cast<double>(CpuNs() - cpu0) / 1e3 / static_cast<double>(pages);
    std::vector<uint64_t> v(times, times + pages);
    munmap(tm, times_size);
    return {Summarize(std::move(v)), cpu_us};
}

void Print(const char *what, Mode mode, const ModeRun &r) {
    const Stats &s = r.lat;
    printf(
        "%s mode=%s n=%zu p50_us=%.2f p90_us=%.2f p99_us=%.2f mean_us=%.2f resolver_cpu_us=%.2f\n",
        what, ModeName(mode), s.n, s.p50, s.p90, s.p99, s.mean, r.resolver_cpu_us);
    fflush(stdout);
}

void Usage() {
    fprintf(stderr,
            "usage: uffd_floor [--pages N] [--mode blocking|busypoll|io|both|all|none] "
            "[--cpus RESOLVER,TOUCHER] [--relay ADDR:PORT] "
            "[--relay-dshmd ADDR:PORT,SEGMENT,HOST_ID]\n");
    exit(2);
}

}  // namespace

int main(int argc, char **argv) {
    size_t pages = 4096;
    bool blocking = true, busypoll = true, io = false;
    int resolver_cpu = -1, toucher_cpu = -1;
    std::string relay, relay_dshmd;
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
            io = m == "io" || m == "all";
            if (!blocking && !busypoll && !io && m != "none") {
                Usage();
            }
        } else if (a == "--relay") {
            relay = next();
        } else if (a == "--relay-dshmd") {
            relay_dshmd = next();
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
    if (io) {
        Print("uffd_fault", Mode::kIo, RunMode(Mode::kIo, pages, toucher_cpu));
    }
    if (!relay.empty()) {
        // One tcp_floor session: two rtt phases, then its end.
        const int fd = RelayConnect(relay, pages);
        Print("uffd_fault", Mode::kRelay, RunMode(Mode::kRelay, pages, toucher_cpu, fd));
        RelayPhase(fd, pages);
        Print("uffd_fault", Mode::kIoRelay, RunMode(Mode::kIoRelay, pages, toucher_cpu, fd));
        dshm::bench::Phase end{dshm::bench::kFloorMagic, dshm::bench::kEnd, 0, 1, 0, 0, 0};
        (void)RelayIo(fd, &end, sizeof end, false);
        close(fd);
    }
    if (!relay_dshmd.empty()) {
        DshmdPeer owner;
        DshmdConnect(&owner, relay_dshmd);
        Print("uffd_fault", Mode::kDshmdRelay,
              RunMode(Mode::kDshmdRelay, pages, toucher_cpu, -1, &owner));
        close(owner.fd);
    }
    Print("shmem_minor_fault", Mode::kPresent, RunMode(Mode::kPresent, pages, toucher_cpu));
    return 0;
}

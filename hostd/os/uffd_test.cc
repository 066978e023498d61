// Kernel-behaviour tests for uffd.h on REAL userfaultfd (need root, or
// vm.unprivileged_userfaultfd=1, or access to /dev/userfaultfd).
//
// Each test plays dshmd: it creates the segment memfd and forks "clients".
// A client maps the memfd MAP_SHARED, creates its own uffd with
// kClientUffdFeatures, registers the whole mapping MISSING|WP and sends the
// uffd (plus its mapping address) back over a socketpair, exactly like the
// client channel.  The client then executes READ/WRITE commands from the
// test, one at a time, and replies when the access completed; the test sees
// the faults on the client's uffd and resolves them.  Every wait is bounded
// (poll timeouts, alarm() in test and clients, PR_SET_PDEATHSIG in clients),
// so a broken kernel path fails a test instead of hanging it.
//
// What these tests establish (docs/protocol.md section 2 relies on it):
//   (a) missing_fault_copy_wp: a missing fault on a hole is resolved by
//       CopyPage(wp=true) and the client reads the data;
//   (b) first_write_faults_wp: the first write to that page raises a WP fault
//       (UFFD_PAGEFAULT_FLAG_WP); unprotecting lets it land;
//   (c) punch_faults_missing_again: after PunchPage the next access faults
//       MISSING again;
//   (d) wp_marker_catches_write_to_page_filled_by_other: with the whole range
//       write-protected right after registration, a client's write to a page
//       another client filled faults WP in the writer's uffd;
//   (e) wp_survives_punch_and_refill: see the test for what the kernel does.
#include "uffd.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "memfd.h"
#include "unix_socket.h"

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../../tests/unit/check_main.h"

using namespace dshm::os;

namespace {

constexpr size_t kPages = 8;
constexpr size_t kSegSize = kPages * kPageSize;
constexpr int kWaitMs = 5000;       // a fault or reply that should come
constexpr int kQuietMs = 150;       // "nothing happens" window
constexpr unsigned kAlarmSec = 25;  // per test and per client

enum Op : uint32_t { kRead = 1, kWrite = 2, kExit = 3 };
struct Cmd {
    uint32_t op;
    uint32_t page;
    uint64_t value;
};
struct Hello {
    uint64_t base;
    int32_t err;
    char what[244];
};

// ---- client side (runs in the forked child; never returns) -----------------

[[noreturn]] void ClientMain(int memfd, int sock) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(kAlarmSec);
    Hello hello{};
    auto fail_hello = [&](const OsError &e) {
        hello.err = e.err;
        snprintf(hello.what, sizeof hello.what, "%s", e.what.c_str());
        (void)SendWithFds(sock, &hello, sizeof hello, nullptr, 0);
        _exit(2);
    };
    void *m = mmap(nullptr, kSegSize, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (m == MAP_FAILED) {
        fail_hello(OsError::FromErrno(errno, "mmap"));
    }
    hello.base = reinterpret_cast<uintptr_t>(m);
    auto uffd = CreateUffd(kClientUffdFeatures, nullptr);
    if (!uffd.ok()) {
        fail_hello(uffd.error());
    }
    auto ioctls = RegisterRange(uffd->get(), hello.base, kSegSize, kClientRegisterModes);
    if (!ioctls.ok()) {
        fail_hello(ioctls.error());
    }
    int fd = uffd->get();
    if (!SendWithFds(sock, &hello, sizeof hello, &fd, 1).ok()) {
        _exit(3);
    }
    // Keep our copy of the uffd open (it must stay alive with our mm).
    for (;;) {
        Cmd cmd;
        if (read(sock, &cmd, sizeof cmd) != static_cast<ssize_t>(sizeof cmd)) {
            _exit(0);
        }
        auto *word = reinterpret_cast<volatile uint64_t *>(hello.base + cmd.page * kPageSize);
        uint64_t reply = 0;
        switch (cmd.op) {
            case kRead:
                reply = *word;
                break;
            case kWrite:
                *word = cmd.value;
                reply = cmd.value;
                break;
            default:
                _exit(0);
        }
        if (write(sock, &reply, sizeof reply) != static_cast<ssize_t>(sizeof reply)) {
            _exit(4);
        }
    }
}

// ---- daemon side (the test process) ----------------------------------------

struct Client {
    pid_t pid = -1;
    UniqueFd sock;
    UniqueFd uffd;
    uint64_t base = 0;

    ~Client() {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
    }
    uint64_t Addr(uint32_t page) const { return base + page * kPageSize; }
};

// Fails the test (a "skip-style" failure) if this process cannot create a
// userfaultfd with the features dshm needs.
void RequireUffd() {
    alarm(kAlarmSec);
    uint64_t got = 0;
    auto uffd = CreateUffd(kClientUffdFeatures, &got);
    ck_assert_msg(uffd.ok(),
                  "SKIPPED-AS-FAILURE: userfaultfd unavailable (%s). These tests need root, "
                  "vm.unprivileged_userfaultfd=1 or access to /dev/userfaultfd, and a kernel "
                  "with UFFD_FEATURE_MISSING_SHMEM|UFFD_FEATURE_WP_HUGETLBFS_SHMEM.",
                  uffd.ok() ? "" : uffd.error().what.c_str());
}

std::unique_ptr<Client> StartClient(int memfd, bool protect_all) {
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(sv[0]);
        ClientMain(memfd, sv[1]);
    }
    close(sv[1]);
    auto c = std::make_unique<Client>();
    c->pid = pid;
    c->sock.reset(sv[0]);
    pollfd pfd{c->sock.get(), POLLIN, 0};
    ck_assert_msg(poll(&pfd, 1, kWaitMs) == 1, "client did not say hello");
    Hello hello{};
    std::vector<int> fds;
    auto n = RecvWithFds(c->sock.get(), &hello, sizeof hello, &fds);
    ck_assert(n.ok());
    ck_assert_uint_eq(*n, sizeof hello);
    ck_assert_msg(hello.err == 0, "client setup failed: %s", hello.what);
    ck_assert_uint_eq(fds.size(), 1);
    c->uffd.reset(fds[0]);
    c->base = hello.base;
    ck_assert(SetNonBlocking(c->uffd.get()).ok());
    if (protect_all) {
        // What dshmd does before READY: installs uffd-wp markers on the
        // never-touched shmem PTEs of this client.
        VoidResult s = WriteProtect(c->uffd.get(), c->base, kSegSize, true);
        ck_assert_msg(s.ok(), "%s", s.ok() ? "" : s.error().what.c_str());
    }
    return c;
}

void Send(Client &c, Op op, uint32_t page, uint64_t value = 0) {
    Cmd cmd{op, page, value};
    ck_assert_int_eq(write(c.sock.get(), &cmd, sizeof cmd), sizeof cmd);
}

// Waits for the reply to the last command (the access completed).
uint64_t ExpectReply(Client &c, const char *what) {
    pollfd pfd{c.sock.get(), POLLIN, 0};
    ck_assert_msg(poll(&pfd, 1, kWaitMs) == 1, "%s: client access did not complete", what);
    uint64_t v = 0;
    ck_assert_int_eq(read(c.sock.get(), &v, sizeof v), sizeof v);
    return v;
}

// Asserts the client is still blocked in its access (no reply for kQuietMs).
void ExpectBlocked(Client &c, const char *what) {
    pollfd pfd{c.sock.get(), POLLIN, 0};
    ck_assert_msg(poll(&pfd, 1, kQuietMs) == 0, "%s: client access completed unexpectedly", what);
}

enum class Kind { kMissing, kWp };

// Waits for exactly one page fault on c's uffd and checks kind and address.
uffd_msg ExpectFault(Client &c, Kind kind, uint32_t page, bool write, const char *what) {
    uffd_msg msg[4];
    auto n = WaitEvents(c.uffd.get(), msg, 4, kWaitMs);
    ck_assert_msg(n.ok(), "%s: %s", what, n.ok() ? "" : n.error().what.c_str());
    ck_assert_msg(*n == 1, "%s: expected 1 fault event, got %zu", what, *n);
    ck_assert_uint_eq(msg[0].event, UFFD_EVENT_PAGEFAULT);
    uint64_t flags = msg[0].arg.pagefault.flags;
    ck_assert_msg(msg[0].arg.pagefault.address == c.Addr(page),
                  "%s: fault at 0x%llx, expected 0x%llx", what,
                  static_cast<unsigned long long>(msg[0].arg.pagefault.address),
                  static_cast<unsigned long long>(c.Addr(page)));
    bool wp = (flags & UFFD_PAGEFAULT_FLAG_WP) != 0;
    ck_assert_msg(wp == (kind == Kind::kWp), "%s: expected a %s fault, got flags 0x%llx", what,
                  kind == Kind::kWp ? "WP" : "MISSING", static_cast<unsigned long long>(flags));
    ck_assert_msg(((flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0) == write,
                  "%s: WRITE flag mismatch, flags 0x%llx", what,
                  static_cast<unsigned long long>(flags));
    return msg[0];
}

void ExpectNoFault(Client &c, const char *what) {
    uffd_msg msg[4];
    auto n = WaitEvents(c.uffd.get(), msg, 4, kQuietMs);
    ck_assert(n.ok());
    ck_assert_msg(*n == 0, "%s: unexpected fault (flags 0x%llx at 0x%llx)", what,
                  static_cast<unsigned long long>(msg[0].arg.pagefault.flags),
                  static_cast<unsigned long long>(msg[0].arg.pagefault.address));
}

std::vector<uint64_t> PageOf(uint64_t first_word) {
    std::vector<uint64_t> p(kPageSize / sizeof(uint64_t), 0x0101010101010101ull);
    p[0] = first_word;
    return p;
}

void Fill(Client &c, uint32_t page, uint64_t first_word, bool wp) {
    auto p = PageOf(first_word);
    VoidResult r = CopyPage(c.uffd.get(), c.Addr(page), p.data(), wp, false);
    ck_assert_msg(r.ok(), "%s", r.ok() ? "" : r.error().what.c_str());
}

void Unprotect(Client &c, uint32_t page) {
    VoidResult s = WriteProtect(c.uffd.get(), c.Addr(page), kPageSize, false);
    ck_assert_msg(s.ok(), "%s", s.ok() ? "" : s.error().what.c_str());
}

uint64_t MemfdWord(int memfd, uint32_t page) {
    std::vector<uint64_t> buf(kPageSize / sizeof(uint64_t));
    ck_assert(ReadPage(memfd, page * kPageSize, buf.data()).ok());
    return buf[0];
}

UniqueFd Segment() {
    auto fd = CreateSegmentMemfd("uffd-test", kSegSize);
    ck_assert(fd.ok());
    return std::move(*fd);
}

}  // namespace

// ---- API-level checks -------------------------------------------------------

START_TEST(create_handshake_and_register) {
    RequireUffd();
    uint64_t got = 0;
    auto uffd = CreateUffd(kClientUffdFeatures, &got);
    ck_assert(uffd.ok());
    ck_assert_uint_eq(got & kClientUffdFeatures, kClientUffdFeatures);
    int fl = fcntl(uffd->get(), F_GETFL);
    ck_assert_int_ne(fl & O_NONBLOCK, 0);
    ck_assert_int_ne(fcntl(uffd->get(), F_GETFD) & FD_CLOEXEC, 0);

    UniqueFd memfd = Segment();
    void *m = mmap(nullptr, kSegSize, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
    ck_assert(m != MAP_FAILED);
    auto base = reinterpret_cast<uintptr_t>(m);
    auto ioctls = RegisterRange(uffd->get(), base, kSegSize, kClientRegisterModes);
    ck_assert_msg(ioctls.ok(), "%s", ioctls.ok() ? "" : ioctls.error().what.c_str());
    for (int bit : {_UFFDIO_COPY, _UFFDIO_WAKE, _UFFDIO_WRITEPROTECT, _UFFDIO_ZEROPAGE}) {
        ck_assert_msg((*ioctls & (1ull << bit)) != 0, "ioctl bit %d missing from 0x%llx", bit,
                      static_cast<unsigned long long>(*ioctls));
    }
    // Nothing pending.
    uffd_msg msg[2];
    auto n = ReadEvents(uffd->get(), msg, 2);
    ck_assert(n.ok());
    ck_assert_uint_eq(*n, 0);
    ck_assert(UnregisterRange(uffd->get(), base, kSegSize).ok());
    // Unaligned / unregistered ranges are errors as values.
    ck_assert_int_eq(RegisterRange(uffd->get(), base + 1, kSegSize, kClientRegisterModes).err(),
                     EINVAL);
    munmap(m, kSegSize);
}
END_TEST

START_TEST(device_fallback_path_works) {
    RequireUffd();
    uint64_t got = 0;
    auto dev = CreateUffd(kClientUffdFeatures, &got, UffdSource::kDevice);
    if (!dev.ok() && (dev.err() == ENOENT || dev.err() == ENODEV)) {
        // Kernel without /dev/userfaultfd (< 6.1): nothing to test.
        return;
    }
    ck_assert_msg(dev.ok(), "%s", dev.ok() ? "" : dev.error().what.c_str());
    ck_assert_int_ne(fcntl(dev->get(), F_GETFL) & O_NONBLOCK, 0);
    auto sys = CreateUffd(kClientUffdFeatures, nullptr, UffdSource::kSyscall);
    ck_assert(sys.ok());
}
END_TEST

START_TEST(unknown_feature_is_eopnotsupp) {
    RequireUffd();
    auto r = CreateUffd(kClientUffdFeatures | (1ull << 62), nullptr);
    ck_assert_int_eq(r.err(), EOPNOTSUPP);
    ck_assert(r.error().what.find("lacks features") != std::string::npos);
}
END_TEST

START_TEST(blocking_uffd_polls_pollerr_until_nonblocking) {
    // The trap from the design notes: a uffd without O_NONBLOCK polls POLLERR.
    RequireUffd();
    auto uffd = CreateUffd(kClientUffdFeatures, nullptr);
    ck_assert(uffd.ok());
    int fl = fcntl(uffd->get(), F_GETFL);
    ck_assert_int_eq(fcntl(uffd->get(), F_SETFL, fl & ~O_NONBLOCK), 0);
    pollfd pfd{uffd->get(), POLLIN, 0};
    ck_assert_int_eq(poll(&pfd, 1, 0), 1);
    ck_assert_int_ne(pfd.revents & POLLERR, 0);
    uffd_msg msg;
    ck_assert_int_eq(WaitEvents(uffd->get(), &msg, 1, 0).err(), EINVAL);
    ck_assert(SetNonBlocking(uffd->get()).ok());
    pfd.revents = 0;
    ck_assert_int_eq(poll(&pfd, 1, 0), 0);
}
END_TEST

// ---- (a), (b), (c): one client ---------------------------------------------

START_TEST(missing_fault_copy_wp) {
    RequireUffd();
    UniqueFd memfd = Segment();
    auto a = StartClient(memfd.get(), false);

    Send(*a, kRead, 1);
    ExpectFault(*a, Kind::kMissing, 1, false, "(a) read of a hole");
    ExpectBlocked(*a, "(a) before resolution");
    ck_assert(!*PageIsPresent(memfd.get(), kPageSize));
    Fill(*a, 1, 0xa1a1, true);
    ck_assert_uint_eq(ExpectReply(*a, "(a) after CopyPage"), 0xa1a1);
    ck_assert(*PageIsPresent(memfd.get(), kPageSize));
    // Present now: a second read does not fault.
    Send(*a, kRead, 1);
    ck_assert_uint_eq(ExpectReply(*a, "(a) second read"), 0xa1a1);
    ExpectNoFault(*a, "(a) second read");
}
END_TEST

START_TEST(first_write_faults_wp) {
    RequireUffd();
    UniqueFd memfd = Segment();
    auto a = StartClient(memfd.get(), false);
    Send(*a, kRead, 2);
    ExpectFault(*a, Kind::kMissing, 2, false, "(b) read of a hole");
    Fill(*a, 2, 0xb0, true);
    ck_assert_uint_eq(ExpectReply(*a, "(b) fill"), 0xb0);

    Send(*a, kWrite, 2, 0xb1);
    ExpectFault(*a, Kind::kWp, 2, true, "(b) first write to a WP-copied page");
    ExpectBlocked(*a, "(b) write before unprotect");
    ck_assert_uint_eq(MemfdWord(memfd.get(), 2), 0xb0);
    Unprotect(*a, 2);  // mode 0: clears WP and wakes
    ck_assert_uint_eq(ExpectReply(*a, "(b) after unprotect"), 0xb1);
    ck_assert_uint_eq(MemfdWord(memfd.get(), 2), 0xb1);
    // Writable now: the second write does not fault.
    Send(*a, kWrite, 2, 0xb2);
    ck_assert_uint_eq(ExpectReply(*a, "(b) second write"), 0xb2);
    ExpectNoFault(*a, "(b) second write");
    // Re-protect (what a release does): the next write faults again.
    ck_assert(WriteProtect(a->uffd.get(), a->Addr(2), kPageSize, true).ok());
    Send(*a, kWrite, 2, 0xb3);
    ExpectFault(*a, Kind::kWp, 2, true, "(b) write after re-protect");
    Unprotect(*a, 2);
    ck_assert_uint_eq(ExpectReply(*a, "(b) after second unprotect"), 0xb3);

    // A write to a hole faults MISSING (with WRITE); CopyPage(wp=false) then
    // lets the write through without a second fault.
    Send(*a, kWrite, 3, 0xb4);
    ExpectFault(*a, Kind::kMissing, 3, true, "(b) write to a hole");
    Fill(*a, 3, 0, false);
    ck_assert_uint_eq(ExpectReply(*a, "(b) write to a hole, filled without WP"), 0xb4);
    ExpectNoFault(*a, "(b) write to a hole, filled without WP");
    ck_assert_uint_eq(MemfdWord(memfd.get(), 3), 0xb4);
}
END_TEST

START_TEST(punch_faults_missing_again) {
    RequireUffd();
    UniqueFd memfd = Segment();
    auto a = StartClient(memfd.get(), false);
    Send(*a, kRead, 4);
    ExpectFault(*a, Kind::kMissing, 4, false, "(c) first read");
    Fill(*a, 4, 0xc0, true);
    ck_assert_uint_eq(ExpectReply(*a, "(c) first read"), 0xc0);

    ck_assert(PunchPage(memfd.get(), 4 * kPageSize).ok());
    ck_assert(!*PageIsPresent(memfd.get(), 4 * kPageSize));
    Send(*a, kRead, 4);
    ExpectFault(*a, Kind::kMissing, 4, false, "(c) read after punch");
    ExpectBlocked(*a, "(c) read after punch");
    Fill(*a, 4, 0xc1, true);
    ck_assert_uint_eq(ExpectReply(*a, "(c) refill"), 0xc1);

    // Same for a page the client had made writable (dirty) before the punch:
    // a write after the punch faults MISSING (with WRITE).
    Send(*a, kWrite, 4, 0xc2);
    ExpectFault(*a, Kind::kWp, 4, true, "(c) first write after refill");
    Unprotect(*a, 4);
    ck_assert_uint_eq(ExpectReply(*a, "(c) unprotect"), 0xc2);
    ck_assert(PunchPage(memfd.get(), 4 * kPageSize).ok());
    Send(*a, kWrite, 4, 0xc3);
    ExpectFault(*a, Kind::kMissing, 4, true, "(c) write after punching a writable page");
    Fill(*a, 4, 0, true);
    // Filled with WP: the blocked write retries and now faults WP.
    ExpectFault(*a, Kind::kWp, 4, true, "(c) write retried on a WP-filled page");
    Unprotect(*a, 4);
    ck_assert_uint_eq(ExpectReply(*a, "(c) write after refill"), 0xc3);
}
END_TEST

// ---- (d): two clients, one memfd --------------------------------------------

START_TEST(wp_marker_catches_write_to_page_filled_by_other) {
    RequireUffd();
    UniqueFd memfd = Segment();
    auto a = StartClient(memfd.get(), true);
    auto b = StartClient(memfd.get(), true);

    Send(*a, kRead, 5);
    ExpectFault(*a, Kind::kMissing, 5, false, "(d) A reads a hole");
    Fill(*a, 5, 0xd0, true);
    ck_assert_uint_eq(ExpectReply(*a, "(d) A filled"), 0xd0);

    // B never touched page 5; its PTE holds only the uffd-wp marker.
    Send(*b, kWrite, 5, 0xd1);
    ExpectFault(*b, Kind::kWp, 5, true, "(d) B writes a page A filled");
    ExpectNoFault(*a, "(d) A's uffd during B's write");
    ExpectBlocked(*b, "(d) B's write before unprotect");
    ck_assert_uint_eq(MemfdWord(memfd.get(), 5), 0xd0);
    Unprotect(*b, 5);
    ck_assert_uint_eq(ExpectReply(*b, "(d) B after unprotect"), 0xd1);
    ck_assert_uint_eq(MemfdWord(memfd.get(), 5), 0xd1);

    // A sees B's write (same memfd page) and A's own first write still faults
    // WP in A: protection is per client.
    Send(*a, kRead, 5);
    ck_assert_uint_eq(ExpectReply(*a, "(d) A reads B's write"), 0xd1);
    Send(*a, kWrite, 5, 0xd2);
    ExpectFault(*a, Kind::kWp, 5, true, "(d) A writes after B");
    Unprotect(*a, 5);
    ck_assert_uint_eq(ExpectReply(*a, "(d) A after unprotect"), 0xd2);

    // B READING a page A filled does not fault (it is present) and maps it
    // write-protected: B's write afterwards faults WP.
    Send(*a, kRead, 6);
    ExpectFault(*a, Kind::kMissing, 6, false, "(d) A reads page 6");
    Fill(*a, 6, 0xd6, true);
    ck_assert_uint_eq(ExpectReply(*a, "(d) A page 6"), 0xd6);
    Send(*b, kRead, 6);
    ck_assert_uint_eq(ExpectReply(*b, "(d) B reads page 6"), 0xd6);
    ExpectNoFault(*b, "(d) B reads a present page");
    Send(*b, kWrite, 6, 0xd7);
    ExpectFault(*b, Kind::kWp, 6, true, "(d) B writes page 6 after reading it");
    Unprotect(*b, 6);
    ck_assert_uint_eq(ExpectReply(*b, "(d) B page 6 write"), 0xd7);
}
END_TEST

// Control for (d): WITHOUT the write-protect after registration, a write to a
// page another client filled is NOT seen at all.  This is why dshmd MUST
// write-protect the whole range of every client before answering READY.
START_TEST(without_initial_protect_write_is_missed) {
    RequireUffd();
    UniqueFd memfd = Segment();
    auto a = StartClient(memfd.get(), true);
    auto b = StartClient(memfd.get(), false);  // no WriteProtect after register
    Send(*a, kRead, 5);
    ExpectFault(*a, Kind::kMissing, 5, false, "(d-control) A reads a hole");
    Fill(*a, 5, 0xe0, true);
    ck_assert_uint_eq(ExpectReply(*a, "(d-control) A filled"), 0xe0);
    Send(*b, kWrite, 5, 0xe1);
    ck_assert_uint_eq(ExpectReply(*b, "(d-control) B's write lands unseen"), 0xe1);
    ExpectNoFault(*b, "(d-control) B");
    ck_assert_uint_eq(MemfdWord(memfd.get(), 5), 0xe1);
}
END_TEST

// Two clients fault on the same hole.  Filling through A's uffd wakes only A;
// CopyPage through B's uffd fails with EEXIST and wakes
// nobody; Wake on B's uffd lets B's access retry and map the page,
// write-protected by its marker.
START_TEST(concurrent_missing_eexist_then_wake) {
    RequireUffd();
    UniqueFd memfd = Segment();
    auto a = StartClient(memfd.get(), true);
    auto b = StartClient(memfd.get(), true);
    Send(*a, kRead, 0);
    ExpectFault(*a, Kind::kMissing, 0, false, "A reads a hole");
    Send(*b, kRead, 0);
    ExpectFault(*b, Kind::kMissing, 0, false, "B reads the same hole");
    Fill(*a, 0, 0xf0, true);
    ck_assert_uint_eq(ExpectReply(*a, "A after fill"), 0xf0);
    ExpectBlocked(*b, "B is not woken by a fill through A's uffd");

    auto again = PageOf(0xbad);
    VoidResult r = CopyPage(b->uffd.get(), b->Addr(0), again.data(), true, false);
    ck_assert_int_eq(r.err(), EEXIST);
    ExpectBlocked(*b, "B is not woken by an EEXIST copy");
    ck_assert(Wake(b->uffd.get(), b->Addr(0), kPageSize).ok());
    ck_assert_uint_eq(ExpectReply(*b, "B after wake"), 0xf0);  // A's content
    ExpectNoFault(*b, "B's retried read maps the present page");
    Send(*b, kWrite, 0, 0xf1);
    ExpectFault(*b, Kind::kWp, 0, true, "B's write after wake");
    Unprotect(*b, 0);
    ck_assert_uint_eq(ExpectReply(*b, "B write"), 0xf1);
}
END_TEST

// ---- (e): write protection across punch + refill ----------------------------
//
// Observed on kernel 6.18: uffd-wp survives a punch.  fallocate(PUNCH_HOLE)
// first unmaps the range from every mapping (unmap_mapping_range, without
// ZAP_FLAG_DROP_MARKER), and zapping a uffd-wp PTE of a file mapping leaves a
// uffd-wp marker in its place; untouched marker PTEs are kept.  So a page
// that was write-protected in B before the punch is still write-protected in
// B after A refills it, and B's write faults WP.
// A page that was WRITABLE in B (B dirtied it and was unprotected) loses
// nothing to protect: after punch + refill through A, B's write goes through
// WITHOUT any fault.  dshmd only punches CLEAN pages, which are write-
// protected in every client (Invariant W), so this is consistent with the
// protocol; but if dshmd ever punches a page some client may hold writable
// (e.g. rollback of a dead client), it MUST re-protect that page in every
// client right after the punch.  The re-protect after punching in
// docs/protocol.md section 3 is therefore cheap insurance, not a necessity
// for CLEAN pages.
START_TEST(wp_survives_punch_and_refill) {
    RequireUffd();
    UniqueFd memfd = Segment();
    auto a = StartClient(memfd.get(), true);
    auto b = StartClient(memfd.get(), true);

    // Page 3: B has it MAPPED write-protected (read after A's fill).
    Send(*a, kRead, 3);
    ExpectFault(*a, Kind::kMissing, 3, false, "(e) A fills page 3");
    Fill(*a, 3, 0x30, true);
    ck_assert_uint_eq(ExpectReply(*a, "(e) A page 3"), 0x30);
    Send(*b, kRead, 3);
    ck_assert_uint_eq(ExpectReply(*b, "(e) B maps page 3"), 0x30);
    // Page 4: B never touched it (marker only).
    Send(*a, kRead, 4);
    ExpectFault(*a, Kind::kMissing, 4, false, "(e) A fills page 4");
    Fill(*a, 4, 0x40, true);
    ck_assert_uint_eq(ExpectReply(*a, "(e) A page 4"), 0x40);
    // Page 7: B holds it WRITABLE (dirty in B).
    Send(*a, kRead, 7);
    ExpectFault(*a, Kind::kMissing, 7, false, "(e) A fills page 7");
    Fill(*a, 7, 0x70, true);
    ck_assert_uint_eq(ExpectReply(*a, "(e) A page 7"), 0x70);
    Send(*b, kWrite, 7, 0x71);
    ExpectFault(*b, Kind::kWp, 7, true, "(e) B dirties page 7");
    Unprotect(*b, 7);
    ck_assert_uint_eq(ExpectReply(*b, "(e) B page 7"), 0x71);

    for (uint32_t page : {3u, 4u, 7u}) {
        ck_assert(PunchPage(memfd.get(), page * kPageSize).ok());
        // Refill through A.
        Send(*a, kRead, page);
        ExpectFault(*a, Kind::kMissing, page, false, "(e) A refaults after punch");
        Fill(*a, page, 0x100 + page, true);
        ck_assert_uint_eq(ExpectReply(*a, "(e) A refilled"), 0x100 + page);
    }

    // Pages 3 and 4: B's write faults WP on B's uffd (markers survived).
    for (uint32_t page : {3u, 4u}) {
        Send(*b, kWrite, page, 0x200 + page);
        ExpectFault(*b, Kind::kWp, page, true, "(e) B writes a punched+refilled page");
        ExpectNoFault(*a, "(e) A during B's write");
        Unprotect(*b, page);
        ck_assert_uint_eq(ExpectReply(*b, "(e) B write after unprotect"), 0x200 + page);
    }

    // Page 7 (was writable in B): B's write is NOT caught.
    Send(*b, kWrite, 7, 0x277);
    ck_assert_uint_eq(ExpectReply(*b, "(e) B writes page 7 unseen"), 0x277);
    ExpectNoFault(*b, "(e) page 7 was writable in B before the punch");

    // The fix: re-protect after punching.  Punch 7 again, re-protect in B,
    // refill through A: B's write faults WP.
    ck_assert(PunchPage(memfd.get(), 7 * kPageSize).ok());
    ck_assert(WriteProtect(b->uffd.get(), b->Addr(7), kPageSize, true).ok());
    Send(*a, kRead, 7);
    ExpectFault(*a, Kind::kMissing, 7, false, "(e) A refaults page 7");
    Fill(*a, 7, 0x170, true);
    ck_assert_uint_eq(ExpectReply(*a, "(e) A page 7 refilled"), 0x170);
    Send(*b, kWrite, 7, 0x278);
    ExpectFault(*b, Kind::kWp, 7, true, "(e) B writes page 7 after punch+re-protect");
    Unprotect(*b, 7);
    ck_assert_uint_eq(ExpectReply(*b, "(e) B page 7 after re-protect"), 0x278);
}
END_TEST

// ZeroPage has no WP mode: it maps the page writable, bypassing the marker.
// Asserts that observation so that nobody uses ZeroPage for dshm clients.
START_TEST(zeropage_maps_writable) {
    RequireUffd();
    UniqueFd memfd = Segment();
    auto a = StartClient(memfd.get(), true);
    Send(*a, kRead, 1);
    ExpectFault(*a, Kind::kMissing, 1, false, "zeropage: read of a hole");
    VoidResult r = ZeroPage(a->uffd.get(), a->Addr(1), false);
    ck_assert_msg(r.ok(), "%s", r.ok() ? "" : r.error().what.c_str());
    ck_assert_uint_eq(ExpectReply(*a, "zeropage: read"), 0);
    Send(*a, kWrite, 1, 0x2e);
    ck_assert_uint_eq(ExpectReply(*a, "zeropage: write not caught"), 0x2e);
    ExpectNoFault(*a, "zeropage: page mapped writable");
    // And a second ZeroPage on the now-present page reports EEXIST.
    ck_assert_int_eq(ZeroPage(a->uffd.get(), a->Addr(1), false).err(), EEXIST);
}
END_TEST

START_TEST(client_exit_makes_ioctls_fail_as_values) {
    RequireUffd();
    UniqueFd memfd = Segment();
    auto a = StartClient(memfd.get(), true);
    Send(*a, kExit, 0);
    waitpid(a->pid, nullptr, 0);
    a->pid = -1;
    auto p = PageOf(1);
    VoidResult r = CopyPage(a->uffd.get(), a->Addr(0), p.data(), true, false);
    ck_assert(!r.ok());
    // ESRCH once the mm is gone (ENOENT on some kernels: vma gone).
    ck_assert_msg(r.err() == ESRCH || r.err() == ENOENT, "%s", r.error().what.c_str());
    uffd_msg msg;
    auto n = ReadEvents(a->uffd.get(), &msg, 1);
    ck_assert(n.ok());
    ck_assert_uint_eq(*n, 0);
}
END_TEST

int main() {
    Suite *s = suite_create("hostd/os/uffd");
    TCase *api = NewTCase("api", 30);
    tcase_add_test(api, create_handshake_and_register);
    tcase_add_test(api, device_fallback_path_works);
    tcase_add_test(api, unknown_feature_is_eopnotsupp);
    tcase_add_test(api, blocking_uffd_polls_pollerr_until_nonblocking);
    suite_add_tcase(s, api);
    TCase *kernel = NewTCase("kernel-behaviour", 30);
    tcase_add_test(kernel, missing_fault_copy_wp);
    tcase_add_test(kernel, first_write_faults_wp);
    tcase_add_test(kernel, punch_faults_missing_again);
    tcase_add_test(kernel, wp_marker_catches_write_to_page_filled_by_other);
    tcase_add_test(kernel, without_initial_protect_write_is_missed);
    tcase_add_test(kernel, concurrent_missing_eexist_then_wake);
    tcase_add_test(kernel, wp_survives_punch_and_refill);
    tcase_add_test(kernel, zeropage_maps_writable);
    tcase_add_test(kernel, client_exit_makes_ioctls_fail_as_values);
    suite_add_tcase(s, kernel);
    return RunSuite(s);
}

// In-process tests of the owner's and the cache's roles: three hosts'
// Daemons in one process, their peer connections socketpairs handed to
// Peers::Attach (the transport seam: no TCP, no namespaces), their clients
// real libdshm-client clients on real unix sockets, with real memfds and
// userfaultfds.  The test thread runs the one GLib loop of all three
// daemons (no I/O thread); each client's work runs on a thread of its own,
// since its page faults are resolved by the loop.
//
// Covered (one test also with the I/O thread): a remote read fault fetches the owner's released
// content; a release on the owner invalidates the other hosts' copies, which fault and fetch the
// new content; a remote writer's release is applied at the owner and invalidates the third host's
// copy; a lost host's lock passes to the next in line, its clean copies are punched, its lock
// requests fail, and what it released before stays at the owner; read-ahead: a sequential scan
// fetches ahead, a page read ahead and invalidated before use is read with the released value
// (also with the FETCH in flight during the release), random access and read-ahead-pages = 0 read
// nothing ahead.
#include "daemon.h"

#include <glib-unix.h>
#include <glib.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent.h"
#include "auth.h"
#include "clients.h"
#include "dshm_client.h"
#include "frame.h"
#include "handoff.h"
#include "lockq.h"
#include "membership.h"
#include "mover.h"
#include "msgs.h"
#include "peers.h"
#include "watch.h"
#include "writer.h"

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../tests/unit/check_main.h"

using namespace dshm;

namespace {

constexpr uint32_t kPage = DSHM_PAGE_SIZE;
constexpr uint64_t kSegSize = 64 * kPage;
constexpr int kHosts = 3;

// Runs the loop until done() (or 60 s: a failure).
bool RunUntil(const std::function<bool()> &done) {
    const gint64 deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
    guint timer = g_timeout_add(
        1000, [](gpointer) -> gboolean { return G_SOURCE_CONTINUE; },
        nullptr);  // re-checks the deadline at least every second
    while (!done() && g_get_monotonic_time() < deadline)
        g_main_context_iteration(nullptr, TRUE);
    g_source_remove(timer);
    return done();
}

// Runs the loop until done() or for `ms`, whichever comes first.
bool RunFor(uint32_t ms, const std::function<bool()> &done) {
    const gint64 deadline = g_get_monotonic_time() + gint64(ms) * 1000;
    guint timer = g_timeout_add(
        10, [](gpointer) -> gboolean { return G_SOURCE_CONTINUE; }, nullptr);
    while (!done() && g_get_monotonic_time() < deadline)
        g_main_context_iteration(nullptr, TRUE);
    g_source_remove(timer);
    return done();
}

// Runs fn on a thread of its own while the loop runs here; false if it did
// not end within RunUntil's limit (the thread is then left behind).
bool OffLoop(std::function<void()> fn) {
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::thread t([fn = std::move(fn), done] {
        fn();
        *done = true;
        g_main_context_wakeup(nullptr);
    });
    if (!RunUntil([&] { return done->load(); })) {
        t.detach();
        return false;
    }
    t.join();
    return true;
}

uint64_t Read(const Client &c, uint32_t pg) {
    uint64_t v;
    memcpy(&v, const_cast<const uint8_t *>(c.data()) + uint64_t(pg) * kPage, 8);
    return v;
}

void Write(Client &c, uint32_t pg, uint64_t v) {
    memcpy(const_cast<uint8_t *>(c.data()) + uint64_t(pg) * kPage, &v, 8);
}

// The cluster's key in these tests.
const std::vector<uint8_t> &TestKey() {
    static const std::vector<uint8_t> key(32, 0x6b);
    return key;
}

std::vector<uint8_t> HelloMsg(uint32_t host, uint64_t incarnation) {
    dshm_hello h = {};
    h.version = DSHM_PEER_VERSION;
    h.role = DSHM_ROLE_PEER;
    h.host_id = host;
    h.incarnation = incarnation;
    SetName(h.name, "h" + std::to_string(host));
    return EncodeMsg(DSHM_MSG_HELLO, 0, h);
}

// A forged peer: host f as the test plays it on its connection to one
// daemon.  The test writes raw frames (Send) and reads what the daemon
// sends (`in`, validated by a FrameReader as a dshmd would); `closed` once
// the daemon closed the connection.  Start() sends HELLO and
// AUTH_CHALLENGE; the daemon's AUTH_CHALLENGE is answered with the proof
// made with `key` (none when `prove` is false), and the daemon's proof is
// checked (`daemon_proved`) before the reader takes the daemon's other
// messages.
struct Forged {
    int fd = -1;
    guint watch = 0;
    bool closed = false;
    FrameReader reader{Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown};
    std::vector<Frame> in;
    // The handshake as host `host` with `incarnation`, to daemon `daemon`.
    std::vector<uint8_t> key = TestKey();
    bool prove = true;
    uint32_t host = 0, daemon = 0;
    uint64_t incarnation = 0, daemon_incarnation = 0;
    AuthNonce nonce{}, daemon_nonce{};
    bool daemon_proved = false;
    std::vector<uint8_t> proof_sent;  // our AUTH_PROOF as sent

    ~Forged() {
        if (watch)
            g_source_remove(watch);
        if (fd >= 0)
            close(fd);
    }
    // Watches `sock` and sends HELLO and AUTH_CHALLENGE (nonce: `fill`
    // repeated) as host h to daemon host d.
    void Start(int sock, uint32_t h, uint64_t inc, uint32_t d, uint8_t fill = 0x11) {
        fd = sock;
        host = h;
        incarnation = inc;
        daemon = d;
        nonce.fill(fill);
        watch = g_unix_fd_add(fd, G_IO_IN, &Forged::OnReadable, this);
        Send(HelloMsg(h, inc));
        dshm_auth_challenge c;
        memcpy(c.nonce, nonce.data(), nonce.size());
        Send(EncodeMsg(DSHM_MSG_AUTH_CHALLENGE, 0, c));
    }
    std::vector<uint8_t> Proof() const {
        dshm_auth_proof p;
        AuthMac mac =
            AuthProof(key, host, daemon, incarnation, daemon_incarnation, nonce, daemon_nonce);
        memcpy(p.mac, mac.data(), mac.size());
        return EncodeMsg(DSHM_MSG_AUTH_PROOF, 0, p);
    }
    void OnFrame(Frame &&f) {
        if (f.hdr.type == DSHM_MSG_HELLO) {
            daemon_incarnation = f.Fixed<dshm_hello>().incarnation;
        } else if (f.hdr.type == DSHM_MSG_AUTH_CHALLENGE) {
            memcpy(daemon_nonce.data(), f.Fixed<dshm_auth_challenge>().nonce, daemon_nonce.size());
            if (prove) {
                proof_sent = Proof();
                Send(proof_sent);
            }
        } else if (f.hdr.type == DSHM_MSG_AUTH_PROOF) {
            const AuthMac want = AuthProof(TestKey(), daemon, host, daemon_incarnation,
                                           incarnation, daemon_nonce, nonce);
            daemon_proved = ConstantTimeEqual(f.Fixed<dshm_auth_proof>().mac, want.data(),
                                              want.size());
            if (daemon_proved)
                reader.SetAuthenticated();
        }
        in.push_back(std::move(f));
    }
    static gboolean OnReadable(gint fd, GIOCondition, gpointer p) {
        auto *fg = static_cast<Forged *>(p);
        uint8_t buf[65536];
        for (;;) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EAGAIN)
                return G_SOURCE_CONTINUE;
            if (n <= 0) {
                fg->closed = true;
                fg->watch = 0;
                return G_SOURCE_REMOVE;
            }
            fg->reader.Feed(buf, static_cast<size_t>(n));
            std::optional<Frame> f;
            while (fg->reader.Next(&f).ok() && f)
                fg->OnFrame(std::move(*f));
        }
    }
    // Writes msg whole (the loop runs while the socket is full).  A
    // connection the daemon closed (EPIPE, ECONNRESET) ends it quietly.
    void Send(const std::vector<uint8_t> &msg) {
        size_t off = 0;
        while (off < msg.size()) {
            ssize_t n = send(fd, msg.data() + off, msg.size() - off, MSG_NOSIGNAL);
            if (n > 0) {
                off += static_cast<size_t>(n);
            } else if (n < 0 && errno == EAGAIN) {
                g_main_context_iteration(nullptr, FALSE);
            } else if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
                return;
            } else {
                ck_abort_msg("writing a forged frame: %s", strerror(errno));
            }
        }
    }
    // The frames of `type` received so far.
    size_t Count(uint16_t type) const {
        size_t n = 0;
        for (const Frame &f : in)
            n += f.hdr.type == type;
        return n;
    }
};

// How a test's Cluster is made.  io_thread: as below; nforged: hosts
// kHosts+1.. that are raw sockets the test writes; report_ms: the access
// monitor's report interval (0: the default); read_ahead: read-ahead-pages
// of every host (-1: the default); seg_size: of the segment "seg".
struct ClusterOptions {
    bool io_thread = false;
    int nforged = 0;
    uint32_t report_ms = 0;
    int read_ahead = -1;
    uint64_t seg_size = kSegSize;
    std::vector<std::string> allow = {};  // of "seg" (none: any client)
    uint32_t owner = 1;            // of "seg" (a forged host may be it, e.g. one that never answers)
    uint32_t peer_timeout_ms = 0;  // (0: the default)
    uint32_t ack_timeout_ms = 0;   // (0: the default)
};

// Three hosts h1..h3; h1 owns segment "seg".  With `forged` > 0, hosts
// 4..3+forged are configured peers of every daemon too, played by the test
// (Forged) on a socketpair to each daemon.
struct Cluster {
    char dir[64] = "/tmp/dshm-daemon-test-XXXXXX";
    std::unique_ptr<Daemon> d[kHosts + 1];
    // (daemon i, forged host f) -> the test's end of that connection.
    std::map<std::pair<int, int>, std::unique_ptr<Forged>> forged;

    // io_thread: the daemons' connections and userfaultfds on the I/O
    // thread (watch.h), as dshmd runs by default; the test thread is then
    // the loop thread, holding the loop mutex except while it polls.
    explicit Cluster(const ClusterOptions &o = {}) {
        const bool io_thread = o.io_thread;
        const int nforged = o.nforged;
        loop_mutex.AssertHeld();  // the test thread iterates the loop
        if (io_thread)
            EnableIoThread();
        ck_assert_ptr_nonnull(mkdtemp(dir));
        for (int i = 1; i <= kHosts; i++) {
            Config c;
            c.host_id = i;
            c.host_name = "h" + std::to_string(i);
            c.socket_path = Sock(i);
            c.io_thread = io_thread;
            if (o.read_ahead >= 0)
                c.read_ahead_pages = static_cast<uint32_t>(o.read_ahead);
            if (o.report_ms)
                c.policy.report_ms = o.report_ms;
            if (o.peer_timeout_ms)
                c.peer_timeout_ms = o.peer_timeout_ms;
            if (o.ack_timeout_ms)
                c.ack_timeout_ms = o.ack_timeout_ms;
            for (int j = 1; j <= kHosts + nforged; j++) {
                if (j != i)
                    c.peers.push_back(PeerConfig{"h" + std::to_string(j), uint32_t(j), ""});
            }
            c.segments.push_back(SegmentConfig{"seg", o.seg_size, o.owner, o.allow});
            c.auth_key = TestKey();
            d[i] = std::make_unique<Daemon>(std::move(c));
            Status st = d[i]->Start();
            ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
        }
        for (int i = 1; i <= kHosts; i++) {
            for (int j = i + 1; j <= kHosts; j++) {
                int sv[2];
                ck_assert_int_eq(
                    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
                ck_assert(d[i]->peers().Attach(j, os::UniqueFd(sv[0])));
                ck_assert(d[j]->peers().Attach(i, os::UniqueFd(sv[1])));
            }
            for (int f = kHosts + 1; f <= kHosts + nforged; f++)
                Forge(i, f, 1);
        }
        ck_assert(RunUntil([&]() REQUIRES(loop_mutex) {
            for (int i = 1; i <= kHosts; i++) {
                for (const auto &[id, p] : d[i]->peers().all()) {
                    if (!p->up)
                        return false;
                }
            }
            return true;
        }));
    }
    ~Cluster() {
        forged.clear();
        for (int i = kHosts; i >= 1; i--)
            d[i].reset();
        std::string cmd = std::string("rm -rf ") + dir;
        (void)!system(cmd.c_str());
    }
    // A new connection of forged host f to daemon i (replacing any other),
    // with its HELLO of `incarnation` sent.
    Forged &Forge(int i, int f, uint64_t incarnation) REQUIRES(loop_mutex) {
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        ck_assert(d[i]->peers().Attach(f, os::UniqueFd(sv[0])));
        auto fg = std::make_unique<Forged>();
        fg->Start(sv[1], f, incarnation, i);
        Forged &out = *fg;
        forged[{i, f}] = std::move(fg);
        // Authenticated both ways before the test forges anything.
        ck_assert(RunUntil([&]() REQUIRES(loop_mutex) {
            return out.daemon_proved && d[i]->peers().Find(f)->up;
        }));
        return out;
    }
    Forged &Fake(int i, int f) { return *forged.at({i, f}); }
    std::string Sock(int i) const { return std::string(dir) + "/h" + std::to_string(i) + ".sock"; }
    Segment *Seg(int i) REQUIRES(loop_mutex) { return d[i]->FindSegment("seg"); }
    const SegmentStats &Stats(int i) REQUIRES(loop_mutex) { return Seg(i)->stats; }
    PageTable::State State(int i, uint32_t pg) REQUIRES(loop_mutex) {
        return Seg(i)->pages->state(pg);
    }
    LocalClient *Local(int i, const Client &c) REQUIRES(loop_mutex) {
        return d[i]->clients().Find(c.client_id());
    }
};

// A client's ACQUIRE that waits at the owner: c.Acquire(lock) runs on a
// thread of its own (it blocks until granted or refused) while the loop
// runs here.
struct QueuedAcquire {
    std::shared_ptr<Status> status = std::make_shared<Status>();
    std::shared_ptr<std::atomic<bool>> done = std::make_shared<std::atomic<bool>>(false);
    std::thread t;
    ~QueuedAcquire() {
        if (t.joinable())
            t.detach();  // a failed assertion left it blocked
    }
    bool ended() const { return done->load(); }
    // Runs the loop until the ACQUIRE has returned; its status.
    Status Wait() {
        ck_assert(RunUntil([&] { return done->load(); }));
        t.join();
        return *status;
    }
};

// Starts c.Acquire(lock) and returns once host i's dshmd has it pending.
void QueueAcquire(Cluster &cl, int i, Client &c, uint32_t lock, QueuedAcquire *q)
    REQUIRES(loop_mutex) {
    q->t = std::thread([&c, lock, status = q->status, done = q->done] {
        *status = c.Acquire(lock);
        *done = true;
        g_main_context_wakeup(nullptr);
    });
    ck_assert(RunUntil([&]() REQUIRES(loop_mutex) {
        const LocalClient *l = cl.Local(i, c);
        return l && l->pending.count(lock) == 1;
    }));
}

// A client of host i attached to "seg" (on a thread: ATTACH waits for the loop).
void AttachOn(Cluster &cl, int i, Client &c, const char *name) {
    Status st;
    ck_assert(OffLoop([&] { st = c.Attach(cl.Sock(i), "seg", name); }));
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
}

// vm-a on h1 (the owner), vm-b on h2, vm-c on h3.
void AttachThree(Cluster &cl, Client &a, Client &b, Client &c) {
    AttachOn(cl, 1, a, "vm-a");
    AttachOn(cl, 2, b, "vm-b");
    AttachOn(cl, 3, c, "vm-c");
}

// Lock `lock`, write v to each page, release; returns the pages written back.
uint32_t WriteUnderLock(Client &c, uint32_t lock, std::vector<uint32_t> pages, uint64_t v) {
    Status a, r;
    ReleaseInfo info;
    ck_assert(OffLoop([&] {
        a = c.Acquire(lock);
        if (!a.ok())
            return;
        for (uint32_t pg : pages)
            Write(c, pg, v);
        r = c.Release(lock, &info);
    }));
    ck_assert_msg(a.ok(), "%s", a.ToString().c_str());
    ck_assert_msg(r.ok(), "%s", r.ToString().c_str());
    return info.pages_written;
}

uint64_t ReadOff(Client &c, uint32_t pg) {
    uint64_t v = 0;
    ck_assert(OffLoop([&] { v = Read(c, pg); }));
    return v;
}

}  // namespace

// A remote fault, then an owner's release invalidating two copies.
void FaultAndInvalidate(bool io_thread) REQUIRES(loop_mutex) {
    Cluster cl({.io_thread = io_thread});
    Client a, b, c;
    AttachThree(cl, a, b, c);
    ck_assert_uint_eq(WriteUnderLock(a, 0, {3}, 0x1111), 1);

    // A remote read fault: h2 fetches page 3 from the owner, once.
    ck_assert_uint_eq(ReadOff(b, 3), 0x1111);
    ck_assert_uint_eq(ReadOff(c, 3), 0x1111);
    ck_assert_uint_eq(cl.Stats(2).fetches_sent, 1);
    ck_assert_uint_eq(cl.Stats(3).fetches_sent, 1);
    ck_assert_uint_eq(cl.Stats(1).fetches_served, 2);
    ck_assert_int_eq(cl.State(2, 3), PageTable::kValid);
    ck_assert_uint_eq(ReadOff(b, 3), 0x1111);  // valid now: no second fetch
    ck_assert_uint_eq(cl.Stats(2).fetches_sent, 1);

    // The owner's own release invalidates both copies before it completes.
    ck_assert_uint_eq(WriteUnderLock(a, 0, {3}, 0x2222), 1);
    ck_assert_uint_eq(cl.Stats(1).invalidations_sent, 2);
    ck_assert_uint_eq(cl.Stats(2).invalidations_received, 1);
    ck_assert_uint_eq(cl.Stats(3).invalidations_received, 1);
    ck_assert_int_eq(cl.State(2, 3), PageTable::kInvalid);
    ck_assert_int_eq(cl.State(3, 3), PageTable::kInvalid);

    // The next access faults and fetches the latest version.
    ck_assert_uint_eq(ReadOff(b, 3), 0x2222);
    ck_assert_uint_eq(cl.Stats(2).fetches_sent, 2);
}

START_TEST(remote_fault_and_owner_release_invalidates) {
    loop_mutex.AssertHeld();
    FaultAndInvalidate(false);
}
END_TEST

// The same with the I/O thread: its callbacks and the loop's share the
// daemons' state under the loop mutex (the TSan build checks it).
START_TEST(remote_fault_and_owner_release_invalidates_io_thread) {
    loop_mutex.AssertHeld();
    FaultAndInvalidate(true);
}
END_TEST

START_TEST(remote_release_applied_at_owner_and_invalidates_third) {
    loop_mutex.AssertHeld();
    Cluster cl;
    Client a, b, c;
    AttachThree(cl, a, b, c);
    ck_assert_uint_eq(ReadOff(c, 5), 0);  // h3 holds a copy of page 5 (zeros)
    ck_assert_int_eq(cl.State(3, 5), PageTable::kValid);

    // h2 writes pages 5 and 6 under lock 1: both reach the owner before the
    // release completes, and h3's copy of page 5 is invalidated.
    ck_assert_uint_eq(WriteUnderLock(b, 1, {5, 6}, 0x5555), 2);
    ck_assert_uint_eq(cl.Stats(1).writebacks_applied, 2);
    ck_assert_uint_eq(cl.Stats(2).pages_written_back, 2);
    ck_assert_uint_eq(cl.Stats(1).invalidations_sent, 1);
    ck_assert_int_eq(cl.State(3, 5), PageTable::kInvalid);
    uint64_t at_owner;
    memcpy(&at_owner, cl.Seg(1)->Page(5), 8);  // the owner's memory (dshmd's mapping)
    ck_assert_uint_eq(at_owner, 0x5555);
    ck_assert_uint_eq(ReadOff(a, 6), 0x5555);
    ck_assert_uint_eq(ReadOff(c, 5), 0x5555);
}
END_TEST

START_TEST(lost_host) {
    loop_mutex.AssertHeld();
    Cluster cl;
    Client a, b;
    AttachOn(cl, 1, a, "vm-a");
    AttachOn(cl, 2, b, "vm-b");
    ck_assert_uint_eq(WriteUnderLock(b, 0, {7}, 0x7777), 1);  // released before the loss
    ck_assert_uint_eq(ReadOff(b, 8), 0);                      // a clean copy at h2
    ck_assert_int_eq(cl.State(2, 8), PageTable::kValid);

    // b holds lock 2; a queues for it at the owner.
    Status held;
    ck_assert(OffLoop([&] { held = b.Acquire(2); }));
    ck_assert(held.ok());
    QueuedAcquire qa;
    QueueAcquire(cl, 1, a, 2, &qa);
    ck_assert(!qa.ended());
    LocalClient *lb = cl.Local(2, b);
    ck_assert_ptr_nonnull(lb);

    // h1 and h2 lose each other.
    cl.d[1]->peers().Find(2)->conn->Close(Status::OK());
    ck_assert(RunUntil([&]() REQUIRES(loop_mutex) {
        return !cl.d[1]->peers().Find(2)->up && !cl.d[2]->peers().Find(1)->up;
    }));

    // Owner side: the lost host's lock passes to the next in line.
    const Status a_status = qa.Wait();
    ck_assert_msg(a_status.ok(), "%s", a_status.ToString().c_str());
    // Cache side: the clean copy is punched, the lock is no longer held.
    ck_assert_int_eq(cl.State(2, 8), PageTable::kInvalid);
    ck_assert(lb->held.empty());
    Status rel;
    ck_assert(OffLoop([&] { rel = b.Release(2); }));
    ck_assert_int_eq(rel.code(), DSHM_E_NOT_HELD);
    // Nothing released is lost: h2's write is at the owner.
    ck_assert_uint_eq(ReadOff(a, 7), 0x7777);
}
END_TEST

// --- read-ahead (protocol.md section 3) ---

namespace {
constexpr uint32_t kRaPages = 512;  // the read-ahead tests' segment
volatile uint64_t sink;             // reads whose value does not matter, kept

// Reads pages [first, first + n) in order on c's thread; returns their values.
std::vector<uint64_t> Scan(Client &c, uint32_t first, uint32_t n) {
    std::vector<uint64_t> v(n);
    ck_assert(OffLoop([&] {
        for (uint32_t i = 0; i < n; i++)
            v[i] = Read(c, first + i);
    }));
    return v;
}

std::vector<uint32_t> Range(uint32_t first, uint32_t n) {
    std::vector<uint32_t> v(n);
    for (uint32_t i = 0; i < n; i++)
        v[i] = first + i;
    return v;
}

// Runs the loop until no fetch is outstanding at host i.
void Settle(Cluster &cl, int i) REQUIRES(loop_mutex) {
    ck_assert(RunUntil([&]() REQUIRES(loop_mutex) { return cl.Seg(i)->pages->fetching() == 0; }));
}
}  // namespace

// A sequential scan on a non-owner fetches ahead of its faults: fewer
// faults than pages, every page read right.
START_TEST(read_ahead_sequential_scan) {
    loop_mutex.AssertHeld();
    Cluster cl({.read_ahead = 64, .seg_size = uint64_t(kRaPages) * kPage});
    Client a, b;
    AttachOn(cl, 1, a, "vm-a");
    AttachOn(cl, 2, b, "vm-b");
    for (uint32_t pg = 0; pg < 256; pg += 64) {
        Status st;
        ck_assert(OffLoop([&] {
            st = a.Acquire(0);
            if (!st.ok())
                return;
            for (uint32_t q = pg; q < pg + 64; q++)
                Write(a, q, 0xa000 + q);
            st = a.Release(0);
        }));
        ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    }
    std::vector<uint64_t> v = Scan(b, 0, 256);
    for (uint32_t q = 0; q < 256; q++)
        ck_assert_uint_eq(v[q], 0xa000 + q);
    Settle(cl, 2);
    const SegmentStats &st = cl.Stats(2);
    ck_assert_uint_gt(st.read_ahead, 0);
    ck_assert_uint_lt(st.missing_faults, 256);  // the pages read ahead took no fault
    ck_assert_uint_gt(st.read_ahead_used, 0);
    ck_assert_uint_le(st.read_ahead_used + st.read_ahead_unused, st.read_ahead);
    ck_assert_uint_eq(st.fetches_sent, cl.Stats(1).fetches_served);
    // Every page fetched once, on demand or ahead: as many fetches as pages now valid.
    uint32_t valid = 0;
    for (uint32_t q = 0; q < kRaPages; q++)
        valid += cl.State(2, q) == PageTable::kValid;
    ck_assert_uint_eq(st.fetches_sent, valid);
    ck_assert_uint_le(st.read_ahead, 64 + 256);  // never more than a window past the scan
    // Pages read ahead are copies like any other: h2 is in their copy sets.
    for (uint32_t q = 0; q < 256; q++)
        ck_assert_uint_ne(cl.Seg(1)->pages->copyset(q) & (1u << 2), 0);
}
END_TEST

// A page read ahead and invalidated (the owner's release of a write) before
// its client reads it is read with the released value, never stale; so is
// one whose FETCH is in flight while the owner releases (a writer on the
// owner racing a scan, several rounds).
START_TEST(read_ahead_invalidated_before_use) {
    loop_mutex.AssertHeld();
    Cluster cl({.read_ahead = 64, .seg_size = uint64_t(kRaPages) * kPage});
    Client a, b;
    AttachOn(cl, 1, a, "vm-a");
    AttachOn(cl, 2, b, "vm-b");
    ck_assert_uint_eq(WriteUnderLock(a, 0, Range(0, 16), 0x1111), 16);

    // Pages 0 and 1 read in sequence: pages 2..5 come ahead, unread.
    std::vector<uint64_t> v = Scan(b, 0, 2);
    ck_assert_uint_eq(v[0], 0x1111);
    ck_assert_uint_eq(v[1], 0x1111);
    Settle(cl, 2);
    ck_assert_uint_eq(cl.Stats(2).read_ahead, 4);
    for (uint32_t q = 2; q < 6; q++) {
        ck_assert_int_eq(cl.State(2, q), PageTable::kValid);
        ck_assert(cl.Seg(2)->pages->ahead(q));
    }
    // The owner rewrites page 4: h2's copy, read ahead and never read, is
    // invalidated before the release completes.
    ck_assert_uint_eq(WriteUnderLock(a, 0, {4}, 0x2222), 1);
    ck_assert_int_eq(cl.State(2, 4), PageTable::kInvalid);
    ck_assert_uint_eq(cl.Stats(2).read_ahead_unused, 1);
    ck_assert_uint_eq(ReadOff(b, 3), 0x1111);
    ck_assert_uint_eq(ReadOff(b, 4), 0x2222);
    ck_assert_uint_eq(ReadOff(b, 5), 0x1111);

    // Races: the owner rewrites the pages ahead of a scan while the scan's
    // read-ahead FETCHes are in flight.  Whatever the interleaving, a page
    // read after the release completed has the released value.
    for (uint32_t round = 0; round < 8; round++) {
        const uint32_t first = 16 + round * 48;
        const uint64_t val = 0x5000 + round;
        std::atomic<bool> released{false};
        Status st;
        std::vector<uint64_t> after;
        ck_assert(OffLoop([&] {
            std::thread writer([&] {
                st = a.Acquire(1);
                if (st.ok()) {
                    for (uint32_t q = first; q < first + 48; q++)
                        Write(a, q, val);
                    st = a.Release(1);
                }
                released = true;
            });
            for (uint32_t q = first; q < first + 24; q++)
                sink = Read(b, q);  // old or new: the release is concurrent
            writer.join();
            for (uint32_t q = first; q < first + 48; q++)
                after.push_back(Read(b, q));
        }));
        ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
        ck_assert(released.load());
        for (uint32_t i = 0; i < after.size(); i++)
            ck_assert_msg(after[i] == val, "round %u page %u: %#lx, not %#lx", round, first + i,
                          static_cast<unsigned long>(after[i]), static_cast<unsigned long>(val));
    }
    ck_assert_uint_gt(cl.Stats(2).read_ahead, 4);
}
END_TEST

// Random access (no fault right after another, none inside a window) reads
// nothing ahead.
START_TEST(read_ahead_random_access_none) {
    loop_mutex.AssertHeld();
    Cluster cl({.read_ahead = 64, .seg_size = uint64_t(kRaPages) * kPage});
    Client a, b;
    AttachOn(cl, 1, a, "vm-a");
    AttachOn(cl, 2, b, "vm-b");
    std::vector<uint32_t> order;
    for (uint32_t i = 0; i < 100; i++)
        order.push_back((i * 197 + 11) % kRaPages);  // a permutation step of 197 pages
    ck_assert(OffLoop([&] {
        for (uint32_t pg : order)
            sink = Read(b, pg);
    }));
    Settle(cl, 2);
    ck_assert_uint_eq(cl.Stats(2).read_ahead, 0);
    ck_assert_uint_eq(cl.Stats(2).fetches_sent, order.size());
    ck_assert_uint_eq(cl.Stats(2).missing_faults, order.size());
}
END_TEST

// read-ahead-pages = 0: a sequential scan fetches page by page.
START_TEST(read_ahead_off) {
    loop_mutex.AssertHeld();
    Cluster cl({.read_ahead = 0, .seg_size = uint64_t(kRaPages) * kPage});
    Client a, b;
    AttachOn(cl, 1, a, "vm-a");
    AttachOn(cl, 2, b, "vm-b");
    (void)Scan(b, 0, 64);
    ck_assert_uint_eq(cl.Stats(2).read_ahead, 0);
    ck_assert_uint_eq(cl.Stats(2).fetches_sent, 64);
}
END_TEST

// P_STATS of DSHM_MAX_STATS_VMS VMs from each of three hosts: the owner's
// merged view makes a CTL_REPLY beyond DSHM_MAX_PAYLOAD, which used to abort
// dshmd (Encode's assertion).  The lists are cut and marked instead.
START_TEST(ctl_reply_of_large_merged_view_is_truncated) {
    loop_mutex.AssertHeld();
    // report-ms 60 s: the owner forgets a host's report after 5 report
    // periods (at least 10 s), which under the sanitizers passed before the
    // queries below were done.
    Cluster cl({.nforged = 3, .report_ms = 60000});
    for (int f = 4; f <= 6; f++) {
        std::vector<dshm_vm_activity> vms(DSHM_MAX_STATS_VMS);
        for (uint32_t i = 0; i < vms.size(); i++) {
            std::string name = "host" + std::to_string(f) + "-vm" + std::to_string(i) + "-";
            name.resize(DSHM_VMNAME_LEN - 1, 'x');
            SetName(vms[i].vm_name, name);
            vms[i].host_id = f;
            vms[i].attached = 1;
            vms[i].read_faults = 1000 + i;
            vms[i].acquires = i;
        }
        dshm_stats m = {};
        SetName(m.segment, "seg");
        m.count = DSHM_MAX_STATS_VMS;
        cl.Fake(1, f).Send(
            EncodeMsg(DSHM_MSG_P_STATS, 0, m, vms.data(), vms.size() * sizeof(dshm_vm_activity)));
    }
    // Each report is answered with the merged view.
    ck_assert(RunUntil([&]() REQUIRES(loop_mutex) {
        for (int f = 4; f <= 6; f++) {
            if (cl.Fake(1, f).Count(DSHM_MSG_P_STATS) == 0)
                return false;
        }
        return true;
    }));
    ck_assert_uint_ge(cl.d[1]->agent().MergedView(cl.Seg(1)).size(), 3 * DSHM_MAX_STATS_VMS);
    for (uint32_t what : {DSHM_CTL_STATS, DSHM_CTL_SEGMENTS}) {
        std::string json;
        Status st;
        ck_assert(OffLoop([&] { st = CtlQuery(cl.Sock(1), what, &json); }));
        ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
        ck_assert_uint_le(json.size(), DSHM_MAX_PAYLOAD);
        ck_assert(json.find("\"truncated\":true") != std::string::npos);
    }
    // A small reply is whole.
    std::string peers;
    Status st;
    ck_assert(OffLoop([&] { st = CtlQuery(cl.Sock(1), DSHM_CTL_PEERS, &peers); }));
    ck_assert(st.ok());
    ck_assert(peers.find("truncated") == std::string::npos);
}
END_TEST

// ASan keeps freed blocks in quarantine and pads every block, and TSan
// maps shadow memory for every byte touched (several times the memory
// itself) beside its allocator's metadata: resident memory bounds are
// looser under them (a peer that never reads grew TSan's peak by 440 MiB
// against 64 MiB queued).
#if defined(__SANITIZE_THREAD__)
constexpr uint64_t kRssFactor = 8;
#elif defined(__SANITIZE_ADDRESS__)
constexpr uint64_t kRssFactor = 2;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr uint64_t kRssFactor = 8;
#elif __has_feature(address_sanitizer)
constexpr uint64_t kRssFactor = 2;
#else
constexpr uint64_t kRssFactor = 1;
#endif
#else
constexpr uint64_t kRssFactor = 1;
#endif

// This process's resident memory (VmRSS; peak: VmHWM), in bytes.
uint64_t ResidentBytes(bool peak = false) {
    FILE *f = fopen("/proc/self/status", "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, peak ? "VmHWM: %" SCNu64 : "VmRSS: %" SCNu64, &kb) == 1)
            break;
    }
    fclose(f);
    return kb << 10;
}

// Sends msg whole on fd, running the loop while the socket is full; false
// once the other side closed (EPIPE, ECONNRESET; no SIGPIPE).
bool SendUnlessClosed(int fd, const std::vector<uint8_t> &msg) {
    for (size_t off = 0; off < msg.size();) {
        ssize_t n = send(fd, msg.data() + off, msg.size() - off, MSG_NOSIGNAL);
        if (n > 0)
            off += static_cast<size_t>(n);
        else if (n < 0 && (errno == EAGAIN || errno == EINTR))
            g_main_context_iteration(nullptr, FALSE);
        else
            return false;
    }
    return true;
}

// A peer that never reads (protocol.md section 2, "dshmd's memory under
// abuse"): it sends FETCHes whose PAGEs pile up in the owner's output queue
// until the queue's bound (64 MiB) closes the connection.  The owner's
// peak resident memory grows by the bound and a little more, whatever the
// peer sends after.
START_TEST(peer_that_never_reads_is_cut_off_at_the_queue_bound) {
    loop_mutex.AssertHeld();
    const uint32_t npages = 32768;  // 128 MiB of PAGEs asked for, holes: served as zeros
    Cluster cl({.nforged = 1, .seg_size = uint64_t(npages) * kPage});
    Forged &f = cl.Fake(1, 4);
    g_source_remove(f.watch);  // from here on it never reads
    f.watch = 0;
    const uint64_t peak_before = ResidentBytes(true);
    dshm_fetch fe = {};
    SetName(fe.segment, "seg");
    bool open = true;
    uint32_t sent = 0;
    for (; sent < npages && open; sent++) {
        fe.page = sent;
        open = SendUnlessClosed(f.fd, EncodeMsg(DSHM_MSG_FETCH, sent, fe));
    }
    ck_assert_msg(!open || RunUntil([&]() REQUIRES(loop_mutex) {
        const Peer *p = cl.d[1]->peers().Find(4);
        return p && !p->Live();
    }),
                  "the owner kept a connection that never reads open (%u FETCHes)", sent);
    ck_assert_uint_lt(sent, npages);  // cut off before all of them
    const uint64_t grown = ResidentBytes(true) - std::min(peak_before, ResidentBytes(true));
    ck_assert_msg(grown < kRssFactor * Conn::kMaxQueuedBytes + (uint64_t(32) << 20),
                  "peak resident memory grew by %" PRIu64 " MiB", grown >> 20);
}
END_TEST

// Idle metadata (protocol.md section 2): a 64 GiB segment costs its hosts
// memory in proportion to the pages in use, not to its size.  Three
// daemons in this process, each with the segment (16 M pages), one client
// per host faulting and writing a few pages, the counters dshmctl shows
// queried on each: together under 64 MiB.  (The per-page table of 56
// bytes a page cost 900 MB per host and 13-29 s to build.)
START_TEST(idle_64g_segment_costs_no_per_page_memory) {
    loop_mutex.AssertHeld();
    const uint64_t before = ResidentBytes();
    Cluster cl({.read_ahead = 0, .seg_size = uint64_t(64) << 30});
    Client a, b, c;
    AttachThree(cl, a, b, c);
    const uint32_t last = cl.Seg(1)->npages - 1;
    ck_assert_uint_eq(WriteUnderLock(b, 0, {0, 7, last}, 42), 3);
    ck_assert_uint_eq(ReadOff(c, last), 42);
    for (int i = 1; i <= kHosts; i++) {
        std::string json;
        Status st;
        ck_assert(OffLoop([&] { st = CtlQuery(cl.Sock(i), DSHM_CTL_SEGMENTS, &json); }));
        ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    }
    // Kept as the states change, equal to a count of the pages touched.
    ck_assert_uint_eq(cl.Seg(2)->pages->valid_pages(), 3);  // b wrote them: still valid
    ck_assert_uint_eq(cl.Seg(3)->pages->valid_pages(), 1);
    ck_assert_uint_eq(cl.Seg(1)->pages->copies(), 4);  // h2: 3 pages, h3: 1
    ck_assert_uint_le(cl.Seg(1)->pages->chunks(), 3);
    const uint64_t grown = ResidentBytes() - std::min(before, ResidentBytes());
    ck_assert_msg(grown < kRssFactor * (uint64_t(64) << 20),
                  "resident memory grew by %" PRIu64 " MiB", grown >> 20);
}
END_TEST

// A release larger than a connection may queue is streamed, not buffered
// whole (protocol.md section 2): 8192 pages rewritten whole (32 MiB of
// WRITEBACKs, four times Conn::kStreamQueueBytes) leave the releasing host
// one chunk at a time, diffed as the queue drains; every byte arrives.
START_TEST(large_release_is_streamed_not_buffered) {
    loop_mutex.AssertHeld();
    const uint32_t npages = 8192;
    Cluster cl({.read_ahead = 0, .seg_size = uint64_t(npages) * kPage});
    Client a, b, c;
    AttachThree(cl, a, b, c);
    Status acq, rel;
    ReleaseInfo info;
    ck_assert(OffLoop([&] {
        acq = b.Acquire(0);
        if (!acq.ok())
            return;
        for (uint32_t pg = 0; pg < npages; pg++)
            memset(const_cast<uint8_t *>(b.data()) + uint64_t(pg) * kPage, uint8_t(pg % 255 + 1),
                   kPage);
        rel = b.Release(0, &info);
    }));
    ck_assert_msg(acq.ok() && rel.ok(), "%s %s", acq.ToString().c_str(), rel.ToString().c_str());
    ck_assert_uint_eq(info.pages_written, npages);
    ck_assert_uint_eq(cl.Stats(1).writebacks_applied, npages);
    // Held on h2 at once: one chunk (and a page, and the P_RELEASE), not
    // the 24 MiB past the stream threshold.
    ck_assert_uint_gt(cl.d[2]->writer().rest_peak(), 0);
    ck_assert_uint_le(cl.d[2]->writer().rest_peak(), Writer::kWritebackChunk + 2 * kPage);
    std::vector<uint8_t> got(kPage);
    for (uint32_t pg : {0u, 4095u, npages - 1}) {
        ck_assert(OffLoop([&] {
            memcpy(got.data(), const_cast<const uint8_t *>(c.data()) + uint64_t(pg) * kPage, kPage);
        }));
        ck_assert(std::all_of(got.begin(), got.end(),
                              [pg](uint8_t x) { return x == uint8_t(pg % 255 + 1); }));
        ck_assert(OffLoop([&] {
            memcpy(got.data(), const_cast<const uint8_t *>(a.data()) + uint64_t(pg) * kPage, kPage);
        }));
        ck_assert_uint_eq(got[kPage - 1], uint8_t(pg % 255 + 1));
    }
}
END_TEST

// The owner's connection lost while a release's rest is streamed: the
// release fails, and the pages not diffed yet go back to the client's
// dirty set with their twins (its next release carries them), never left
// twinned and dirty for nobody.
START_TEST(large_release_cut_off_gives_its_rest_back) {
    loop_mutex.AssertHeld();
    const uint32_t npages = 8192;
    Cluster cl({.read_ahead = 0, .seg_size = uint64_t(npages) * kPage});
    Client a, b;
    AttachOn(cl, 1, a, "vm-a");
    AttachOn(cl, 2, b, "vm-b");
    Status acq;
    ck_assert(OffLoop([&] {
        acq = b.Acquire(0);
        for (uint32_t pg = 0; acq.ok() && pg < npages; pg++)
            memset(const_cast<uint8_t *>(b.data()) + uint64_t(pg) * kPage, 0x5a, kPage);
    }));
    ck_assert(acq.ok());
    auto rel = std::make_shared<Status>();
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::thread releaser([&b, rel, done] {
        *rel = b.Release(0);
        *done = true;
        g_main_context_wakeup(nullptr);
    });
    const Segment *s2 = cl.Seg(2);
    ck_assert(RunUntil([&]() REQUIRES(loop_mutex) { return cl.d[2]->writer().rest_pending(s2); }));
    cl.d[2]->peers().Find(1)->conn->Close(Status::Internal("cut by the test"));
    ck_assert(RunUntil([&] { return done->load(); }));
    releaser.join();
    ck_assert(!rel->ok());
    const LocalClient *lb = cl.Local(2, b);
    ck_assert_ptr_nonnull(lb);
    ck_assert_uint_gt(lb->dirty.size(), 0);
    ck_assert_uint_lt(lb->dirty.size(), npages);
    ck_assert_uint_eq(s2->pages->twinned_pages(), lb->dirty.size());
    for (uint32_t pg : lb->dirty)
        ck_assert_uint_eq(s2->pages->dirtiers(pg), 1);
}
END_TEST

// Bounded resources (protocol.md section 2): the lock table a move brings
// (OWN_LOCKS, before OWN_COMMIT) holds at most what a table can hold; an
// old owner that sends more fails its connection instead of growing the
// new owner's list.
START_TEST(own_locks_of_a_move_are_bounded) {
    loop_mutex.AssertHeld();
    Cluster cl({.nforged = 1, .owner = 4});
    Forged &f = cl.Fake(2, 4);
    dshm_seg_note mv = {};
    SetName(mv.segment, "seg");
    mv.host_id = 2;  // h2 becomes the owner
    f.Send(EncodeMsg(DSHM_MSG_OWN_MOVING, 0, mv));
    ck_assert(
        RunUntil([&]() REQUIRES(loop_mutex) { return f.Count(DSHM_MSG_OWN_MOVING_ACK) == 1; }));
    std::vector<dshm_lock_entry> entries(DSHM_MAX_LOCK_ENTRIES);
    for (uint32_t i = 0; i < entries.size(); i++)
        entries[i] = dshm_lock_entry{i % DSHM_MAX_LOCKS, 4, i, 0};
    dshm_pagelist pl = {};
    SetName(pl.segment, "seg");
    pl.count = DSHM_MAX_LOCK_ENTRIES;
    const std::vector<uint8_t> msg = EncodeMsg(DSHM_MSG_OWN_LOCKS, 0, pl, entries.data(),
                                               entries.size() * sizeof(dshm_lock_entry));
    const size_t nmsgs = Mover::kMaxLockEntries / DSHM_MAX_LOCK_ENTRIES + 2;
    for (size_t i = 0; i < nmsgs && SendUnlessClosed(f.fd, msg); i++) {
    }
    ck_assert(RunUntil([&]() REQUIRES(loop_mutex) { return f.closed; }));
    ck_assert_uint_eq(f.Count(DSHM_MSG_ERROR), 1);
    const Segment *s = cl.Seg(2);
    ck_assert(!s->move || !s->move->in || s->move->in->locks.size() <= Mover::kMaxLockEntries);
}
END_TEST

// A second connection claiming a host that has a live session: refused
// unless its incarnation is newer (the host restarted); the real session
// goes on meanwhile.
START_TEST(second_hello_does_not_end_a_live_session) {
    loop_mutex.AssertHeld();
    Cluster cl;
    Client a, c;
    AttachOn(cl, 1, a, "vm-a");
    AttachOn(cl, 3, c, "vm-c");
    Peer *p1 = cl.d[3]->peers().Find(1);
    Conn *live = p1->conn.get();
    const uint64_t inc = p1->incarnation;
    ck_assert_uint_eq(inc, cl.d[1]->incarnation());
    // h1's id with h1's incarnation, and with an older one: refused.
    for (uint64_t claimed : {inc, inc - 1}) {
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        cl.d[3]->peers().Accept(os::UniqueFd(sv[0]));
        Forged fake;
        fake.Start(sv[1], 1, claimed, 3);
        ck_assert(RunUntil([&] { return fake.closed; }));
        ck_assert_ptr_eq(p1->conn.get(), live);
        ck_assert(p1->Live());
    }
    // The real session still works: h3 fetches from h1.
    ck_assert_uint_eq(WriteUnderLock(a, 0, {2}, 0x2222), 1);
    ck_assert_uint_eq(ReadOff(c, 2), 0x2222);
    // A newer incarnation is a restarted h1: it replaces the session.
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    cl.d[3]->peers().Accept(os::UniqueFd(sv[0]));
    Forged fake;
    fake.Start(sv[1], 1, inc + 1, 3);
    ck_assert(RunUntil([&]() REQUIRES(loop_mutex) { return p1->incarnation == inc + 1; }));
    ck_assert(p1->conn.get() != live);
    ck_assert(!fake.closed);
}
END_TEST

// Messages only a segment's owner sends, forged by another peer (host 4)
// to h2: each is a protocol error from that peer (its connection closes)
// and changes nothing.  Before, h2 believed them: a forged P_GRANT handed
// a client a lock another client held, a forged UPDATE wrote into h2's copy,
// a forged OWN_MOVED made host 4 the owner.
START_TEST(owner_messages_from_a_non_owner_are_refused) {
    loop_mutex.AssertHeld();
    Cluster cl({.nforged = 1});
    Client a, b;
    AttachOn(cl, 1, a, "vm-a");
    AttachOn(cl, 2, b, "vm-b");
    ck_assert_uint_eq(ReadOff(b, 0), 0);  // h2 holds a copy of page 0
    // a holds lock 3; b waits for it.
    Status held;
    ck_assert(OffLoop([&] { held = a.Acquire(3); }));
    ck_assert(held.ok());
    QueuedAcquire qb;
    QueueAcquire(cl, 2, b, 3, &qb);
    const uint32_t bid = b.client_id();

    dshm_writeback u = {};
    SetName(u.segment, "seg");
    u.page = 0;
    u.encoding = DSHM_ENC_RUNS;
    const uint8_t run[] = {0, 0, 1, 0, 0xff};  // offset 0, length 1, 0xff
    dshm_page pg = {};
    SetName(pg.segment, "seg");
    pg.page = 5;
    std::vector<uint8_t> page_msg = EncodeMsg(DSHM_MSG_PAGE, 0, pg, ZeroPage(), kPage);
    dshm_p_adopted ad = {};
    SetName(ad.segment, "seg");
    ad.to_client = bid;
    ad.held[0] = 0xff;
    dshm_stats st = {};
    SetName(st.segment, "seg");
    const std::vector<std::vector<uint8_t>> forged = {
        LockMsg(DSHM_MSG_P_GRANT, "seg", 3, 2, bid),
        EncodeMsg(DSHM_MSG_UPDATE, 0, u, run, sizeof run),
        page_msg,
        ReleaseAckMsg(DSHM_MSG_P_RELEASE_ACK, 0, "seg", 3, bid, DSHM_OK),
        ReleaseAckMsg(DSHM_MSG_P_FLUSH_ACK, 0, "seg", 0, bid, DSHM_OK),
        EncodeMsg(DSHM_MSG_P_ADOPTED, 0, ad),
    };
    for (const auto &msg : forged) {
        Forged &fake = cl.Forge(2, 4, 1);
        ck_assert(RunUntil([&]() REQUIRES(loop_mutex) { return cl.d[2]->peers().Find(4)->up; }));
        fake.Send(msg);
        ck_assert(RunUntil([&] { return fake.closed; }));
    }
    // OWN_MOVED naming the sender, once the connection carried something
    // else about the segment (so it is no catch-up after HELLO).
    {
        Forged &fake = cl.Forge(2, 4, 1);
        fake.Send(EncodeMsg(DSHM_MSG_P_STATS, 0, st));
        fake.Send(SegNoteMsg(DSHM_MSG_OWN_MOVED, "seg", 4, 0, "forged"));
        ck_assert(RunUntil([&] { return fake.closed; }));
    }
    ck_assert_uint_eq(cl.Seg(2)->owner, 1);
    const LocalClient *lb = cl.Local(2, b);
    ck_assert(!lb->held.count(3));
    ck_assert_uint_eq(lb->pending.count(3), 1);
    ck_assert(!qb.ended());
    ck_assert_uint_eq(ReadOff(b, 0), 0);
    // The real owner's grant still comes.
    Status rel;
    ck_assert(OffLoop([&] { rel = a.Release(3); }));
    ck_assert(rel.ok());
    const Status b_status = qb.Wait();
    ck_assert_msg(b_status.ok(), "%s", b_status.ToString().c_str());
}
END_TEST

// A client frame as its connection would deliver it.
Frame ClientFrame(uint16_t type, uint32_t tag, const void *payload, size_t len) {
    Frame f;
    f.hdr = dshm_hdr{DSHM_MAGIC, type, 0, static_cast<uint32_t>(len), tag};
    const auto *p = static_cast<const uint8_t *>(payload);
    f.payload.assign(p, p + len);
    return f;
}

// While the owner is down, a non-owner queues no P_STATS for it (one per
// segment and report round would pile up in Peer::queued).
START_TEST(no_reports_queued_for_a_down_owner) {
    loop_mutex.AssertHeld();
    Cluster cl({.report_ms = 5});
    Client b;
    AttachOn(cl, 2, b, "vm-b");
    cl.d[2]->peers().Find(1)->conn->Close(Status::OK());
    ck_assert(RunUntil([&]() REQUIRES(loop_mutex) { return !cl.d[2]->peers().Find(1)->up; }));
    const uint64_t from = cl.d[2]->agent().report_rounds();
    ck_assert(RunUntil(
        [&]() REQUIRES(loop_mutex) { return cl.d[2]->agent().report_rounds() >= from + 10; }));
    ck_assert_uint_eq(cl.d[2]->peers().Find(1)->queued.size(), 0);
}
END_TEST

// A client adopting (its ADOPT at the owner): lock commands are held back,
// at most Clients::kMaxHeldBack, the others refused; when the owner is lost
// the adopt fails and the held-back commands with it, instead of waiting
// forever for an answer that cannot come.
START_TEST(held_back_bounded_and_failed_when_owner_lost) {
    loop_mutex.AssertHeld();
    Cluster cl;
    Client b;
    AttachOn(cl, 2, b, "vm-b");
    LocalClient *c = cl.Local(2, b);
    dshm_handoff token = {};
    token.host_id = 3;
    token.client_id = 77;
    Clients &clients = cl.d[2]->clients();
    // No loop iteration in between: the owner's answer cannot come yet.
    clients.OnFrame(c, ClientFrame(DSHM_MSG_ADOPT, 1, &token, sizeof token));
    ck_assert(c->mig.adopting);
    auto sent = [c]()
                    REQUIRES(loop_mutex) { return c->conn->bytes_out() + c->conn->queued_bytes(); };
    const uint64_t out_before = sent();
    for (uint32_t i = 0; i < Clients::kMaxHeldBack + 10; i++) {
        dshm_lock_req r = {i % DSHM_MAX_LOCKS, 0};
        clients.OnFrame(c, ClientFrame(DSHM_MSG_ACQUIRE, 100 + i, &r, sizeof r));
    }
    ck_assert_uint_eq(c->held_back.size(), Clients::kMaxHeldBack);
    const uint64_t refused = sent() - out_before;  // ten LOCK_FAILED
    ck_assert_uint_eq(refused, 10 * (sizeof(dshm_hdr) + sizeof(dshm_lock_reply)));
    // The owner is lost before it answered.
    cl.d[2]->peers().Find(1)->conn->Close(Status::OK());
    ck_assert(!c->mig.adopting);
    ck_assert(c->held_back.empty());
    ck_assert(c->pending.empty());
    ck_assert_uint_eq(sent() - out_before,
                      refused +
                          Clients::kMaxHeldBack * (sizeof(dshm_hdr) + sizeof(dshm_lock_reply)) +
                          sizeof(dshm_hdr) + sizeof(dshm_adopted));
}
END_TEST

// --- liveness (protocol.md section 8) ---

namespace {
// fn on a thread of its own, joined by the destructor (the loop must have
// let it finish: Wait); done once it returned.
struct Worker {
    std::shared_ptr<std::atomic<bool>> done = std::make_shared<std::atomic<bool>>(false);
    std::thread t;
    explicit Worker(std::function<void()> fn)
        : t([fn = std::move(fn), d = done] {
              fn();
              *d = true;
              g_main_context_wakeup(nullptr);
          }) {}
    ~Worker() {
        if (t.joinable())
            t.join();
    }
    bool Wait(uint32_t ms) {
        return RunFor(ms, [&] { return done->load(); });
    }
};

std::vector<uint8_t> PageMsg(uint32_t pg, uint64_t v) {
    dshm_page m = {};
    SetName(m.segment, "seg");
    m.page = pg;
    std::vector<uint8_t> data(kPage, 0);
    memcpy(data.data(), &v, sizeof v);
    return Encode(DSHM_MSG_PAGE, 0, &m, sizeof m, data.data(), data.size());
}
constexpr uint32_t kPeerTimeoutMs = 500;
}  // namespace

// An owner that is connected but never answers a FETCH (a hung dshmd; TCP
// alone would wait for ever) is lost after 2 x peer-timeout-ms, through
// the close path; the fault waits (no zero page) and its fetch goes again
// on the owner's next connection, whose PAGE completes it.
START_TEST(silent_owner_fetch_times_out) {
    loop_mutex.AssertHeld();
    Cluster cl({.nforged = 1, .owner = 4, .peer_timeout_ms = kPeerTimeoutMs});
    Client c;
    AttachOn(cl, 3, c, "vm-c");
    Forged &owner = cl.Fake(3, 4);
    uint64_t got = 0;
    const gint64 t0 = g_get_monotonic_time();
    Worker reader([&] { got = Read(c, 5); });
    ck_assert(RunFor(10000, [&] { return owner.Count(DSHM_MSG_FETCH) == 1; }));
    // The owner never answers: h3 gives up on it (ERROR, close).
    ck_assert_msg(RunFor(10000, [&] { return owner.closed; }), "h3 still waits for the owner");
    const gint64 ms = (g_get_monotonic_time() - t0) / 1000;
    ck_assert_int_ge(ms, 2 * kPeerTimeoutMs);
    ck_assert(owner.in.back().hdr.type == DSHM_MSG_ERROR);
    ck_assert(!cl.d[3]->peers().Find(4)->up);
    ck_assert(!reader.done->load());  // the fault waits: no zero page
    // The owner's next connection: the fetch goes again and is answered.
    Forged &again = cl.Forge(3, 4, 2);
    ck_assert(RunFor(10000, [&] { return again.Count(DSHM_MSG_FETCH) >= 1; }));
    again.Send(PageMsg(5, 0x5555));
    ck_assert(reader.Wait(10000));
    ck_assert_uint_eq(got, 0x5555);
}
END_TEST

// A fault whose owner stays unreachable: after the owner was declared lost
// (2 x peer-timeout-ms without a PAGE) and peer-timeout-ms more without a
// new connection, h3 fails the client (ERROR E_OWNER_LOST, closed), which
// makes QEMU release its vCPUs; the page is never filled with zeros.
START_TEST(stranded_fault_fails_its_client) {
    loop_mutex.AssertHeld();
    Cluster cl({.nforged = 1, .owner = 4, .peer_timeout_ms = kPeerTimeoutMs});
    // Left behind on purpose: its fault is never resolved, and its thread
    // ends with the test's process.
    auto *c = new Client;
    AttachOn(cl, 3, *c, "vm-c");
    const uint32_t id = c->client_id();
    Forged &owner = cl.Fake(3, 4);
    const gint64 t0 = g_get_monotonic_time();
    std::thread([c] { sink = Read(*c, 5); }).detach();
    ck_assert(RunFor(10000, [&] { return owner.Count(DSHM_MSG_FETCH) == 1; }));
    auto gone = [&]() REQUIRES(loop_mutex) { return cl.d[3]->clients().Find(id) == nullptr; };
    ck_assert_msg(RunFor(10000, gone), "the client still waits for an owner that is gone");
    const gint64 ms = (g_get_monotonic_time() - t0) / 1000;
    ck_assert(owner.closed);
    ck_assert_int_ge(ms, 3 * kPeerTimeoutMs);
    ck_assert_int_ne(cl.State(3, 5), PageTable::kValid);
}
END_TEST

// A release whose owner never acknowledges it fails with E_OWNER_LOST after
// ack-timeout-ms + peer-timeout-ms (the owner was declared lost), instead
// of holding its client for ever.
START_TEST(silent_owner_release_times_out) {
    loop_mutex.AssertHeld();
    Cluster cl(
        {.nforged = 1, .owner = 4, .peer_timeout_ms = kPeerTimeoutMs, .ack_timeout_ms = 200});
    Client c;
    AttachOn(cl, 3, c, "vm-c");
    Forged &owner = cl.Fake(3, 4);
    Status acq, rel;
    Worker w([&] {
        acq = c.Acquire(0);
        if (!acq.ok())
            return;
        Write(c, 2, 0x2222);
        rel = c.Release(0);
    });
    ck_assert(RunFor(10000, [&] { return owner.Count(DSHM_MSG_P_ACQUIRE) == 1; }));
    owner.Send(LockMsg(DSHM_MSG_P_GRANT, "seg", 0, 3, c.client_id()));
    ck_assert(RunFor(10000, [&] { return owner.Count(DSHM_MSG_FETCH) == 1; }));
    owner.Send(PageMsg(2, 0));
    ck_assert(RunFor(10000, [&] { return owner.Count(DSHM_MSG_P_RELEASE) == 1; }));
    const gint64 t0 = g_get_monotonic_time();
    ck_assert_msg(w.Wait(10000), "the release still waits for the owner");
    const gint64 ms = (g_get_monotonic_time() - t0) / 1000;
    ck_assert_msg(acq.ok(), "%s", acq.ToString().c_str());
    ck_assert_int_eq(rel.code(), DSHM_E_OWNER_LOST);
    ck_assert_int_ge(ms, 200 + kPeerTimeoutMs - 50);
    ck_assert(RunFor(10000, [&] { return owner.closed; }));
}
END_TEST

// An ACQUIRE while the owner is not connected fails at once with
// E_OWNER_LOST and is not queued: on the owner's next connection nothing
// replays it, so the lock is not granted to a client that was told it
// failed (another host's client gets it at once).
START_TEST(acquire_while_owner_down_fails_and_is_not_replayed) {
    loop_mutex.AssertHeld();
    Cluster cl;
    Client b, c;
    AttachOn(cl, 2, b, "vm-b");
    AttachOn(cl, 3, c, "vm-c");
    cl.d[3]->peers().Find(1)->conn->Close(Status::OK());
    ck_assert(RunUntil([&]() REQUIRES(loop_mutex) {
        return !cl.d[1]->peers().Find(3)->up && !cl.d[3]->peers().Find(1)->up;
    }));
    Status st;
    {
        Worker w([&] { st = c.Acquire(5); });
        ck_assert_msg(w.Wait(5000), "an ACQUIRE with the owner down waits");
    }
    ck_assert_int_eq(st.code(), DSHM_E_OWNER_LOST);
    ck_assert_uint_eq(cl.d[3]->peers().Find(1)->queued.size(), 0);
    // The owner comes back.
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert(cl.d[1]->peers().Attach(3, os::UniqueFd(sv[0])));
    ck_assert(cl.d[3]->peers().Attach(1, os::UniqueFd(sv[1])));
    ck_assert(RunUntil([&]() REQUIRES(loop_mutex) {
        return cl.d[1]->peers().Find(3)->up && cl.d[3]->peers().Find(1)->up;
    }));
    Status sb;
    {
        Worker w([&] { sb = b.Acquire(5); });
        ck_assert_msg(w.Wait(5000), "lock 5 was granted to the client told it failed");
    }
    ck_assert_msg(sb.ok(), "%s", sb.ToString().c_str());
}
END_TEST

// ADOPT renames only a client that migrated out, with its token's secret:
// a token made up from a live client's host and id (its host's
// incarnation, as tokens carried before) used to steal its locks.
START_TEST(adopt_needs_the_secret_of_a_migrated_out_client) {
    loop_mutex.AssertHeld();
    Cluster cl;
    Client b, thief, src, dst;
    AttachOn(cl, 2, b, "vm-b");
    AttachOn(cl, 1, thief, "thief");  // on the owner host: the local path
    Status st;
    ck_assert(OffLoop([&] { st = b.Acquire(1); }));
    ck_assert(st.ok());
    dshm_handoff forged = {};
    forged.host_id = 2;
    forged.client_id = b.client_id();
    forged.incarnation = cl.d[2]->incarnation();
    dshm_adopted out = {};
    ck_assert(OffLoop([&] { st = thief.Adopt(forged, &out); }));
    ck_assert_int_eq(st.code(), DSHM_E_OWNER_LOST);
    ck_assert((cl.Seg(1)->home->locks.HolderOf(1) == Holder{2, b.client_id()}));
    ck_assert(OffLoop([&] { st = b.Release(1); }));
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());

    // A real migration from h2 to h3 (the P_ADOPT path): a guessed secret
    // is refused, the token's is taken, once.
    AttachOn(cl, 2, src, "vm-src");
    AttachOn(cl, 3, dst, "vm-src");
    ck_assert(OffLoop([&] { st = src.Acquire(2); }));
    ck_assert(st.ok());
    dshm_handoff token = {};
    ck_assert(OffLoop([&] { st = src.MigrateOut(&token); }));
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert(token.incarnation != cl.d[2]->incarnation());
    dshm_handoff guess = token;
    guess.incarnation ^= 1;
    ck_assert(OffLoop([&] { st = dst.Adopt(guess, &out); }));
    ck_assert_int_eq(st.code(), DSHM_E_OWNER_LOST);
    ck_assert(OffLoop([&] { st = dst.Adopt(token, &out); }));
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert(out.held[0] & (1u << 2));
    ck_assert((cl.Seg(1)->home->locks.HolderOf(2) == Holder{3, dst.client_id()}));
    ck_assert(OffLoop([&] { st = thief.Adopt(token, &out); }));  // used up
    ck_assert_int_eq(st.code(), DSHM_E_OWNER_LOST);
    ck_assert(OffLoop([&] { st = dst.Release(2); }));
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
}
END_TEST

// Membership (membership.h), its events played as libcpg and libquorum
// deliver them.  Without quorum the owner grants no lock: a local ACQUIRE
// and a remote one get E_NO_QUORUM, and a lock released to a waiter is
// refused to it (and ends free) instead of granted; with quorum back locks
// are granted again.  A member that leaves the group is lost through the
// one peer-loss path: its session closes on both sides and its locks at
// the owner pass on.
START_TEST(membership_quorum_and_leave) {
    loop_mutex.AssertHeld();
    Cluster cl;
    Client a, b, w;
    AttachOn(cl, 1, a, "vm-a");
    AttachOn(cl, 2, b, "vm-b");
    AttachOn(cl, 1, w, "vm-w");
    Membership &m1 = cl.d[1]->membership();
    Status st;
    // b holds lock 1; w waits for it.
    ck_assert(OffLoop([&] { st = b.Acquire(1); }));
    ck_assert(st.ok());
    QueuedAcquire qw;
    QueueAcquire(cl, 1, w, 1, &qw);

    m1.OnQuorum(false);
    ck_assert(!m1.Quorate());
    ck_assert(OffLoop([&] { st = a.Acquire(0); }));
    ck_assert_int_eq(st.code(), DSHM_E_NO_QUORUM);
    ck_assert(OffLoop([&] { st = b.Acquire(0); }));
    ck_assert_int_eq(st.code(), DSHM_E_NO_QUORUM);
    // b releases lock 1: w is refused it, and it ends free.
    ck_assert(OffLoop([&] { st = b.Release(1); }));
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert_int_eq(qw.Wait().code(), DSHM_E_NO_QUORUM);
    ck_assert(!cl.Seg(1)->home->locks.HolderOf(1));
    ck_assert_uint_eq(m1.refused_total(), 3);

    m1.OnQuorum(true);
    ck_assert(OffLoop([&] { st = a.Acquire(0); }));
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert(OffLoop([&] { st = b.Acquire(1); }));
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());

    // h2 announces itself in h1's group, then its dshmd leaves it.
    const CpgMember p1{1, 100, 0}, p2{2, 200, 0}, p3{3, 300, 0};
    m1.SetSelf(p1);
    m1.OnConfChange({p1, p2, p3}, {}, {p1, p2, p3});
    MemberAnnounce an = {};
    an.magic = kAnnounceMagic;
    an.version = 1;
    an.type = 1;
    an.host_id = 2;
    an.incarnation = cl.d[2]->incarnation();
    SetName(an.name, "h2");
    SetName(an.address, "127.0.0.1:9");
    m1.OnMessage(p2, &an, sizeof an - 1);  // malformed: ignored
    ck_assert(m1.members().empty());
    m1.OnMessage(p2, &an, sizeof an);
    ck_assert_uint_eq(m1.members().size(), 1);
    ck_assert(m1.members().at(2).address == "127.0.0.1:9");
    ck_assert(cl.d[1]->peers().Find(2)->up);
    ck_assert(cl.Seg(1)->home->locks.HolderOf(1).has_value());

    m1.OnConfChange({p1, p3}, {CpgMember{2, 200, 5}}, {});
    ck_assert(m1.members().empty());
    ck_assert(!cl.d[1]->peers().Find(2)->up);
    ck_assert(RunUntil([&]() REQUIRES(loop_mutex) { return !cl.d[2]->peers().Find(1)->up; }));
    // The owner's peer-loss path ran: h2's lock is free.
    ck_assert(!cl.Seg(1)->home->locks.HolderOf(1));
    ck_assert(OffLoop([&] { st = a.Release(0); }));
    ck_assert(st.ok());
}
END_TEST

// Peer authentication (protocol.md section 2.1).  What a connection that
// did not prove the key sends right behind its handshake: a FETCH of
// page 0, a WRITEBACK of 0xff into it with its P_RELEASE, a P_ACQUIRE of
// lock 0 and a catch-up OWN_MOVED naming itself.  None may reach a
// handler: h1 (the owner) sends no PAGE and no P_GRANT, page 0 stays as
// released, lock 0 stays free, the owner stays h1, and the forged host is
// never up.
std::vector<uint8_t> Intrusion() {
    dshm_writeback w = {};
    SetName(w.segment, "seg");
    w.page = 0;
    w.encoding = DSHM_ENC_RUNS;
    const uint8_t run[] = {0, 0, 8, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    dshm_p_release r = {};
    SetName(r.segment, "seg");
    r.host_id = 4;
    r.client_id = 1;
    r.npages = 1;
    std::vector<uint8_t> out;
    for (const auto &m :
         {FetchMsg("seg", 0), EncodeMsg(DSHM_MSG_WRITEBACK, 0, w, run, sizeof run),
          EncodeMsg(DSHM_MSG_P_RELEASE, 0, r), LockMsg(DSHM_MSG_P_ACQUIRE, "seg", 0, 4, 1),
          SegNoteMsg(DSHM_MSG_OWN_MOVED, "seg", 4, 0, "forged")}) {
        out.insert(out.end(), m.begin(), m.end());
    }
    return out;
}

// Asserts that forged host 4 on `fake` got nothing from h1 and changed
// nothing there (page 0 holds `page0`).
// `connections`: host 4's sessions at h1 before (none more).
void ExpectNothingGot(Cluster &cl, Forged &fake, uint64_t page0, uint64_t connections)
    REQUIRES(loop_mutex) {
    ck_assert(RunUntil([&] { return fake.closed; }));
    ck_assert_uint_eq(fake.Count(DSHM_MSG_PAGE), 0);
    ck_assert_uint_eq(fake.Count(DSHM_MSG_P_GRANT), 0);
    ck_assert_uint_eq(fake.Count(DSHM_MSG_P_RELEASE_ACK), 0);
    ck_assert(!cl.d[1]->peers().Find(4)->up);
    ck_assert_uint_eq(cl.d[1]->peers().Find(4)->connections, connections);
    uint64_t v;
    memcpy(&v, cl.Seg(1)->map, 8);
    ck_assert_uint_eq(v, page0);
    ck_assert_uint_eq(cl.Seg(1)->owner, 1);
    ck_assert(cl.d[1]->IsOwner(cl.Seg(1)));
    ck_assert_uint_eq(cl.Stats(1).writebacks_applied, 0);
}

// A connection of host 4 to h1 without its HELLO sent yet.
int Dial4(Cluster &cl) REQUIRES(loop_mutex) {
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    ck_assert(cl.d[1]->peers().Attach(4, os::UniqueFd(sv[0])));
    return sv[1];
}

// Another key: the proof does not verify; what follows it in the same
// write is not served either (it was already in h1's read buffer).
START_TEST(auth_wrong_key_is_refused) {
    loop_mutex.AssertHeld();
    Cluster cl({.nforged = 1});
    cl.forged.clear();  // the authenticated host 4s: closed
    const uint64_t n = cl.d[1]->peers().Find(4)->connections;
    Client a;
    AttachOn(cl, 1, a, "vm-a");
    WriteUnderLock(a, 1, {0}, 0x1234);  // the owner's own write
    Forged fake;
    fake.key = std::vector<uint8_t>(32, 0x6c);
    fake.Start(Dial4(cl), 4, 7, 1);
    ck_assert(RunUntil([&] { return !fake.proof_sent.empty() || fake.closed; }));
    fake.Send(Intrusion());
    ExpectNothingGot(cl, fake, 0x1234, n);
    ck_assert(fake.daemon_proved);  // h1 proved itself: the key of the test is h1's
    ck_assert_uint_eq(fake.Count(DSHM_MSG_ERROR), 1);
    ck_assert_int_eq(fake.in.back().Fixed<dshm_error>().status, DSHM_E_AUTH);
}
END_TEST

// No key: a HELLO and a challenge but no proof, then the data path.
START_TEST(auth_no_proof_is_refused) {
    loop_mutex.AssertHeld();
    Cluster cl({.nforged = 1});
    cl.forged.clear();
    const uint64_t n = cl.d[1]->peers().Find(4)->connections;
    Forged fake;
    fake.prove = false;
    fake.Start(Dial4(cl), 4, 7, 1);
    fake.Send(Intrusion());
    ExpectNothingGot(cl, fake, 0, n);
    ck_assert_int_eq(fake.in.back().Fixed<dshm_error>().status, DSHM_E_AUTH);
}
END_TEST

// A message before the handshake is over: straight after HELLO (no
// challenge), so not even h1's challenge is answered.
START_TEST(auth_message_before_auth_is_refused) {
    loop_mutex.AssertHeld();
    Cluster cl({.nforged = 1});
    cl.forged.clear();
    const uint64_t n = cl.d[1]->peers().Find(4)->connections;
    Forged fake;
    fake.prove = false;
    int fd = Dial4(cl);
    fake.fd = fd;
    fake.watch = g_unix_fd_add(fd, G_IO_IN, &Forged::OnReadable, &fake);
    fake.Send(HelloMsg(4, 7));
    fake.Send(Intrusion());
    ExpectNothingGot(cl, fake, 0, n);
}
END_TEST

// A proof recorded on one connection, replayed on the next with the same
// HELLO and nonce: h1's nonce is new, so it does not verify.
START_TEST(auth_replayed_proof_is_refused) {
    loop_mutex.AssertHeld();
    Cluster cl({.nforged = 1});
    Forged &first = cl.Fake(1, 4);  // authenticated with the key
    const std::vector<uint8_t> recorded = first.proof_sent;
    ck_assert(!recorded.empty());
    cl.forged.clear();
    ck_assert(RunUntil([&]() REQUIRES(loop_mutex) { return !cl.d[1]->peers().Find(4)->up; }));
    const uint64_t connections = cl.d[1]->peers().Find(4)->connections;
    Forged fake;
    fake.prove = false;
    fake.Start(Dial4(cl), 4, 1, 1);  // Forge's incarnation and nonce
    fake.Send(recorded);
    fake.Send(Intrusion());
    ck_assert(RunUntil([&] { return fake.closed; }));
    ck_assert_uint_eq(fake.Count(DSHM_MSG_PAGE), 0);
    ck_assert(!cl.d[1]->peers().Find(4)->up);
    ck_assert_uint_eq(cl.d[1]->peers().Find(4)->connections, connections);
    uint64_t v;
    memcpy(&v, cl.Seg(1)->map, 8);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(fake.in.back().Fixed<dshm_error>().status, DSHM_E_AUTH);
}
END_TEST

// A segment's allow list (protocol.md section 14): only a client whose
// ATTACH names an allowed VM UUID gets the memfd, on the owner and
// elsewhere; another UUID, or none, is refused (E_AUTH) and attaches
// nothing.
START_TEST(attach_only_with_an_allowed_uuid) {
    loop_mutex.AssertHeld();
    const std::string vm = "0f8fad5b-d9cb-469f-a165-70867728950e";
    Cluster cl({.allow = {vm}});
    for (int h : {1, 2}) {
        for (const std::string &uuid : {std::string(), std::string("1b4e28ba-2fa1-11d2-883f-0016d3cca427")}) {
            Client x;
            Status st;
            ck_assert(OffLoop([&] { st = x.Attach(cl.Sock(h), "seg", "intruder", uuid); }));
            ck_assert_int_eq(st.code(), DSHM_E_AUTH);
            ck_assert(x.data() == nullptr);
        }
        ck_assert(cl.Seg(h)->clients.empty());
    }
    Client ok;
    Status st;
    ck_assert(OffLoop([&] { st = ok.Attach(cl.Sock(2), "seg", "vm", vm); }));
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert_uint_eq(cl.Seg(2)->clients.size(), 1);
    ck_assert(cl.Local(2, ok)->uuid[0] == 0x0f);
}
END_TEST

int main() {
    Suite *s = suite_create("daemon");
    TCase *tc = NewTCase("roles", 180);
    tcase_add_test(tc, remote_fault_and_owner_release_invalidates);
    tcase_add_test(tc, remote_fault_and_owner_release_invalidates_io_thread);
    tcase_add_test(tc, remote_release_applied_at_owner_and_invalidates_third);
    tcase_add_test(tc, lost_host);
    tcase_add_test(tc, read_ahead_sequential_scan);
    tcase_add_test(tc, read_ahead_invalidated_before_use);
    tcase_add_test(tc, read_ahead_random_access_none);
    tcase_add_test(tc, read_ahead_off);
    tcase_add_test(tc, ctl_reply_of_large_merged_view_is_truncated);
    tcase_add_test(tc, idle_64g_segment_costs_no_per_page_memory);
    tcase_add_test(tc, own_locks_of_a_move_are_bounded);
    tcase_add_test(tc, large_release_is_streamed_not_buffered);
    tcase_add_test(tc, large_release_cut_off_gives_its_rest_back);
    tcase_add_test(tc, peer_that_never_reads_is_cut_off_at_the_queue_bound);
    tcase_add_test(tc, second_hello_does_not_end_a_live_session);
    tcase_add_test(tc, owner_messages_from_a_non_owner_are_refused);
    tcase_add_test(tc, no_reports_queued_for_a_down_owner);
    tcase_add_test(tc, held_back_bounded_and_failed_when_owner_lost);
    tcase_add_test(tc, adopt_needs_the_secret_of_a_migrated_out_client);
    tcase_add_test(tc, silent_owner_fetch_times_out);
    tcase_add_test(tc, silent_owner_release_times_out);
    tcase_add_test(tc, stranded_fault_fails_its_client);
    tcase_add_test(tc, acquire_while_owner_down_fails_and_is_not_replayed);
    tcase_add_test(tc, membership_quorum_and_leave);
    tcase_add_test(tc, auth_wrong_key_is_refused);
    tcase_add_test(tc, auth_no_proof_is_refused);
    tcase_add_test(tc, auth_message_before_auth_is_refused);
    tcase_add_test(tc, auth_replayed_proof_is_refused);
    tcase_add_test(tc, attach_only_with_an_allowed_uuid);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}

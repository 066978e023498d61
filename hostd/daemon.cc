#include "daemon.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <json-glib/json-glib.h>
#include <linux/userfaultfd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "diff.h"
#include "os/memfd.h"
#include "os/uffd.h"
#include "pages.h"

namespace dshm {
namespace {

constexpr uint32_t kPage = DSHM_PAGE_SIZE;
// An ownership snapshot keeps at most this much queued on the connection to
// the new owner (far below Conn::kMaxQueuedBytes) and resumes at a quarter.
constexpr size_t kSnapshotQueueBytes = 8u << 20;
// A connection that has not completed its HELLO by then is dropped.
constexpr guint kHelloDeadlineMs = 2000;

FILE *g_trace = nullptr;  // DSHMD_TRACE: page-event trace for debugging

// Trace line with the first 8 u64 of the page (e.g. 8 counters) when given.
void Trace(const char *what, uint32_t a, uint32_t b, uint32_t c, const uint8_t *page = nullptr,
           const uint8_t *twin = nullptr) {
    if (!g_trace)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    fprintf(g_trace, "%ld.%09ld %s %u %u %u", ts.tv_sec, ts.tv_nsec, what, a, b, c);
    for (const uint8_t *q : {page, twin}) {
        if (!q)
            continue;
        fprintf(g_trace, " |");
        for (int i = 0; i < 8; i++) {
            uint64_t v;
            memcpy(&v, q + 8 * i, 8);
            fprintf(g_trace, " %llu", (unsigned long long)v);
        }
    }
    fputc('\n', g_trace);
}

uint64_t NowNs() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

FILE *g_phases = nullptr;  // DSHMD_PHASES: release and fault phases (bench/phases.sh)

// One line per phase of a release: CLOCK_MONOTONIC ns, the phase, two
// numbers, the CPU time this thread has used (ns: the part of a step
// spent running, not waiting) and the thread's id (a step may start on
// one of dshmd's two threads and end on the other).  Cheap enough to
// leave on while benchmarking (a few lines per release, buffered), unlike
// the per-page trace.
void Phase(const char *what, uint32_t a, uint64_t b) {
    if (!g_phases)
        return;
    struct timespec cpu;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
    fprintf(g_phases, "%llu %s %u %llu %llu %d\n", static_cast<unsigned long long>(NowNs()), what,
            a, static_cast<unsigned long long>(b),
            static_cast<unsigned long long>(cpu.tv_sec * 1000000000ull + cpu.tv_nsec),
            static_cast<int>(gettid()));
}

// Which pages of a memfd hold data (os::PresentPages); none on an error,
// which is logged.
std::vector<bool> PresentPages(int memfd, uint32_t npages, const std::string &segment) {
    auto r = os::PresentPages(memfd, npages);
    if (r.ok())
        return std::move(*r);
    g_warning("segment %s: reading which pages are present: %s", segment.c_str(),
              r.error().what.c_str());
    return std::vector<bool>(npages, false);
}

std::string SegOf(const char (&name)[DSHM_SEGNAME_LEN]) {
    return std::string(NameOf(name));
}

void SetNoDelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Resolves host:port to a sockaddr (numeric or via the resolver).
bool Resolve(const std::string &addr, sockaddr_storage *out, socklen_t *len) {
    std::string host;
    uint16_t port;
    if (!SplitHostPort(addr, &host, &port))
        return false;
    struct addrinfo hints = {}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res) {
        return false;
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return true;
}

}  // namespace

// Checks that a peer message names a known segment and a page inside it;
// closes the connection otherwise.  Returns the segment or nullptr.
#define PEER_SEGMENT(var, msg, needs_owner)                                                       \
    Segment *var = FindSegment(NameOf((msg).segment));                                            \
    if (!var) {                                                                                   \
        return p->conn->Fail(Status::NoSegment("unknown segment '" + SegOf((msg).segment) + "'"), \
                             f.hdr.type);                                                         \
    }                                                                                             \
    if ((needs_owner) && !IsOwner(var)) {                                                         \
        return p->conn->Fail(Status::NotOwner("this host does not own " + var->cfg.name),         \
                             f.hdr.type);                                                         \
    }

#define PEER_PAGE(seg, page)                                                                  \
    if ((page) >= (seg)->npages) {                                                            \
        return p->conn->Fail(Status::Proto("page " + std::to_string(page) + " out of range"), \
                             f.hdr.type);                                                     \
    }

namespace {
// The page numbers of a validated page list (INVALIDATE, EXCL_*), each
// checked against the segment's size.
Status PagesOf(const Frame &f, uint32_t npages, std::vector<uint32_t> *out) {
    auto m = f.Fixed<dshm_pagelist>();
    out->resize(m.count);
    memcpy(out->data(), f.Extra(sizeof m).data(), 4 * size_t(m.count));
    for (uint32_t pg : *out) {
        if (pg >= npages)
            return Status::Proto("page " + std::to_string(pg) + " out of range");
    }
    return Status::OK();
}
}  // namespace

Daemon::Daemon(Config config)
    : cfg_(std::move(config)), zero_page_(kPage, 0), monitor_(cfg_.policy.window_s) {
    for (auto [env, file] : {std::pair{"DSHMD_TRACE", &g_trace}, {"DSHMD_PHASES", &g_phases}}) {
        const char *t = getenv(env);
        *file = t && *t ? fopen(t, "w") : nullptr;
        if (*file)
            setvbuf(*file, nullptr, _IOFBF, 1 << 20);
    }
    incarnation_ = (static_cast<uint64_t>(time(nullptr)) << 20) ^ getpid();
    ctx_ = g_main_context_default();
    for (const auto &sc : cfg_.segments) {
        auto s = std::make_unique<Segment>();
        s->cfg = sc;
        s->npages = static_cast<uint32_t>(sc.size / kPage);
        s->owner = sc.owner;
        s->pages = std::make_unique<PageTable>(s->npages, sc.owner == cfg_.host_id);
        s->owner_reason = "configured owner (dshmd.conf)";
        segments_[sc.name] = std::move(s);
    }
    for (const auto &pc : cfg_.peers) {
        auto p = std::make_unique<Peer>();
        p->cfg = pc;
        p->daemon = this;
        peers_[pc.host_id] = std::move(p);
    }
}

Daemon::~Daemon() {
    for (FILE **file : {&g_trace, &g_phases}) {
        if (*file)
            fclose(*file);
        *file = nullptr;
    }
    for (auto &[id, c] : clients_) {
        if (c->uffd_watch)
            UnwatchFd(c->uffd_watch);
    }
    for (auto &[id, p] : peers_) {
        if (p->retry_timer)
            g_source_remove(p->retry_timer);
        if (p->connect_watch)
            UnwatchFd(p->connect_watch);
        if (p->connecting_fd >= 0)
            close(p->connecting_fd);
    }
    for (auto &[id, r] : releases_) {
        if (r->timer)
            g_source_remove(r->timer);
    }
    for (auto &[id, t] : tombstones_)
        g_source_remove(t.second);
    if (report_timer_)
        g_source_remove(report_timer_);
    if (log_timer_)
        g_source_remove(log_timer_);
    if (graveyard_idle_)
        g_source_remove(graveyard_idle_);
    if (client_listen_watch_)
        UnwatchFd(client_listen_watch_);
    if (peer_listen_watch_)
        UnwatchFd(peer_listen_watch_);
    for (guint w : signal_watches_)
        g_source_remove(w);
    for (auto &[n, s] : segments_) {
        if (s->map)
            munmap(s->map, s->cfg.size);
    }
    if (!cfg_.socket_path.empty())
        unlink(cfg_.socket_path.c_str());
}

// ---------------------------------------------------------------- set-up

Status Daemon::Start() {
    for (auto &[name, s] : segments_) {
        if (IsOwner(s.get())) {
            Status st = EnsureMemfd(s.get());
            if (!st.ok())
                return st;
        }
    }
    Status st = ListenClients();
    if (st.ok())
        st = ListenPeers();
    if (!st.ok())
        return st;
    for (auto &[id, p] : peers_) {
        if (id > cfg_.host_id)
            DialPeer(p.get());
    }
    auto quit = [](gpointer self) -> gboolean {
        static_cast<Daemon *>(self)->Quit();
        return G_SOURCE_CONTINUE;
    };
    report_timer_ = g_timeout_add(cfg_.policy.report_ms, &Daemon::OnReportTimer, this);
    if (cfg_.policy.log_s)
        log_timer_ = g_timeout_add_seconds(cfg_.policy.log_s, &Daemon::OnLogTimer, this);
    signal_watches_.push_back(g_unix_signal_add(SIGINT, quit, this));
    signal_watches_.push_back(g_unix_signal_add(SIGTERM, quit, this));
    g_message(
        "dshmd host %u (%s): peers on %s, clients on %s, %zu segment(s), poll-us %u, "
        "I/O thread %s",
        cfg_.host_id, cfg_.host_name.c_str(), cfg_.listen.c_str(), cfg_.socket_path.c_str(),
        segments_.size(), cfg_.poll_us, cfg_.UsesIoThread() ? "on" : "off");
    return Status::OK();
}

Status Daemon::EnsureMemfd(Segment *s) {
    if (s->memfd.valid())
        return Status::OK();
    auto fd = os::CreateSegmentMemfd(s->cfg.name, s->cfg.size);
    if (!fd.ok())
        return Status::Internal("memfd for " + s->cfg.name + ": " + fd.error().what);
    void *m = mmap(nullptr, s->cfg.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd->get(), 0);
    if (m == MAP_FAILED)
        return Status::Internal("mmap segment " + s->cfg.name + ": " + strerror(errno));
    s->memfd = std::move(*fd);
    s->map = static_cast<uint8_t *>(m);
    return Status::OK();
}

Status Daemon::ListenClients() {
    std::string dir = cfg_.socket_path.substr(0, cfg_.socket_path.rfind('/'));
    if (!dir.empty())
        g_mkdir_with_parents(dir.c_str(), 0755);
    struct sockaddr_un sa = {};
    sa.sun_family = AF_UNIX;
    if (cfg_.socket_path.size() >= sizeof sa.sun_path)
        return Status::Proto("socket path too long");
    strcpy(sa.sun_path, cfg_.socket_path.c_str());
    os::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    // A stale socket of a dead dshmd is replaced; a live one is not.
    if (connect(fd.get(), reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0) {
        return Status::Internal("another dshmd is listening on " + cfg_.socket_path);
    }
    fd.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    unlink(cfg_.socket_path.c_str());
    if (bind(fd.get(), reinterpret_cast<sockaddr *>(&sa), sizeof sa) < 0 ||
        listen(fd.get(), 64) < 0) {
        return Status::Internal("listen on " + cfg_.socket_path + ": " + strerror(errno));
    }
    chmod(cfg_.socket_path.c_str(), 0660);
    client_listen_ = std::move(fd);
    client_listen_watch_ =
        WatchFd(client_listen_.get(), G_IO_IN, &Daemon::OnClientAccept, this);
    return Status::OK();
}

Status Daemon::ListenPeers() {
    sockaddr_storage ss;
    socklen_t len;
    if (!Resolve(cfg_.listen, &ss, &len))
        return Status::Proto("cannot resolve listen address " + cfg_.listen);
    os::UniqueFd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0 || listen(fd.get(), 64) < 0) {
        return Status::Internal("listen on " + cfg_.listen + ": " + strerror(errno));
    }
    peer_listen_ = std::move(fd);
    peer_listen_watch_ = WatchFd(peer_listen_.get(), G_IO_IN, &Daemon::OnPeerAccept, this);
    return Status::OK();
}

void Daemon::Run() {
    const uint64_t window = static_cast<uint64_t>(cfg_.poll_us) * 1000;
    if (cfg_.UsesIoThread())
        EnableIoThread();
    while (!quit_) {
        if (window) {
            // Bounded busy-polling: keep dispatching without sleeping while
            // events keep coming, up to `window` after the last one.
            uint64_t last = NowNs();
            while (!quit_ && NowNs() - last < window) {
                if (g_main_context_iteration(ctx_, FALSE)) {
                    last = NowNs();
                } else {
                    // Nothing ready: let any other runnable thread of this
                    // CPU (the client we just woke, the peer daemon on a
                    // shared machine) run first.  Without this, on 2 cores
                    // poll-us = 200 made remote faults ~5x SLOWER (p50
                    // ~500 µs vs ~100 µs; bench/README.md).
                    sched_yield();
                }
            }
            if (quit_)
                break;
        }
        g_main_context_iteration(ctx_, TRUE);
    }
    g_message("dshmd host %u: shutting down", cfg_.host_id);
}

void Daemon::Quit() {
    quit_ = true;
    g_main_context_wakeup(ctx_);
}

void Daemon::DeferDelete(std::unique_ptr<Conn> conn) {
    if (!conn)
        return;
    graveyard_.push_back(std::move(conn));
    if (!graveyard_idle_) {
        graveyard_idle_ = g_idle_add(
            [](gpointer p) -> gboolean {
                auto *d = static_cast<Daemon *>(p);
                d->graveyard_.clear();
                d->graveyard_idle_ = 0;
                return G_SOURCE_REMOVE;
            },
            this);
    }
}

Daemon::Segment *Daemon::FindSegment(std::string_view name) {
    auto it = segments_.find(name);
    return it == segments_.end() ? nullptr : it->second.get();
}

Daemon::Client *Daemon::FindClient(uint32_t id) {
    auto it = clients_.find(id);
    return it == clients_.end() ? nullptr : it->second.get();
}

Daemon::Peer *Daemon::FindPeer(uint32_t host) {
    auto it = peers_.find(host);
    return it == peers_.end() ? nullptr : it->second.get();
}

// ---------------------------------------------------------------- client channel

gboolean Daemon::OnClientAccept(gint lfd, GIOCondition, gpointer p) {
    auto *d = static_cast<Daemon *>(p);
    for (;;) {
        int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            break;
        auto c = std::make_unique<Client>();
        c->id = d->next_client_id_++;
        c->daemon = d;
        c->conn = std::make_unique<Conn>(os::UniqueFd(fd), Channel::kClient, Receiver::kDaemon,
                                         ClientRole::kUnknown, "client " + std::to_string(c->id));
        Client *raw = c.get();
        d->clients_[c->id] = std::move(c);
        raw->conn->Start([d, raw](Frame &&f) { d->OnClientFrame(raw, std::move(f)); },
                         [d, raw](const Status &why) { d->OnClientClosed(raw, why); });
        raw->conn->SetHelloDeadline(kHelloDeadlineMs);
    }
    return G_SOURCE_CONTINUE;
}

bool Daemon::HoldBack(Client *c, Frame &f) {
    switch (f.hdr.type) {
        case DSHM_MSG_ACQUIRE:
        case DSHM_MSG_RELEASE:
        case DSHM_MSG_MIGRATE_OUT:
        case DSHM_MSG_ADOPT:
            break;
        default:
            return false;
    }
    if (!c->adopting && !(c->seg && c->seg->moving) && c->held_back.empty())
        return false;
    c->held_back.push_back(std::move(f));
    return true;
}

void Daemon::ReplayHeldBack(Client *c) {
    const uint32_t id = c->id;
    while (!c->held_back.empty() && !c->adopting && !(c->seg && c->seg->moving)) {
        Frame f = std::move(c->held_back.front());
        c->held_back.pop_front();
        DispatchClientFrame(c, std::move(f));
        if (!FindClient(id))
            return;  // the frame closed the client
    }
}

void Daemon::OnClientFrame(Client *c, Frame &&f) {
    if (!HoldBack(c, f))
        DispatchClientFrame(c, std::move(f));
}

void Daemon::DispatchClientFrame(Client *c, Frame &&f) {
    switch (f.hdr.type) {
        case DSHM_MSG_HELLO:
            return OnClientHello(c, f);
        case DSHM_MSG_ERROR:
            return c->conn->Close(Status::OK());
        case DSHM_MSG_ATTACH:
            return OnAttach(c, f);
        case DSHM_MSG_UFFD:
            return OnUffd(c, f);
        case DSHM_MSG_ACQUIRE:
            return OnAcquire(c, f);
        case DSHM_MSG_RELEASE:
            return OnRelease(c, f);
        case DSHM_MSG_DETACH:
            return c->conn->Close(Status::OK());
        case DSHM_MSG_CTL_QUERY:
            return OnCtlQuery(c, f);
        case DSHM_MSG_MIGRATE_OUT:
            return OnMigrateOut(c, f);
        case DSHM_MSG_ADOPT:
            return OnAdopt(c, f);
        default:
            return c->conn->Fail(Status::Proto("unexpected " + MsgTypeName(f.hdr.type)),
                                 f.hdr.type);
    }
}

void Daemon::OnClientHello(Client *c, const Frame &f) {
    auto h = f.Fixed<dshm_hello>();
    c->name = std::string(NameOf(h.name));
    c->conn->set_label("client " + std::to_string(c->id) + " (" + c->name + ")");
    dshm_hello r = {};
    r.version = DSHM_PROTO_VERSION;
    r.role = h.role;
    r.host_id = cfg_.host_id;
    r.incarnation = incarnation_;
    SetName(r.name, cfg_.host_name.substr(0, DSHM_VMNAME_LEN - 1));
    c->conn->Send(EncodeMsg(DSHM_MSG_HELLO, f.hdr.tag, r));
}

void Daemon::OnAttach(Client *c, const Frame &f) {
    if (c->seg)
        return c->conn->Fail(Status::Proto("second ATTACH on one connection"), f.hdr.type);
    auto a = f.Fixed<dshm_attach>();
    Segment *s = FindSegment(NameOf(a.segment));
    if (!s) {
        return c->conn->Fail(
            Status::NoSegment("no segment '" + SegOf(a.segment) + "' on host " + cfg_.host_name),
            f.hdr.type);
    }
    Status st = EnsureMemfd(s);
    if (!st.ok())
        return c->conn->Fail(st, f.hdr.type);
    if (std::string vm(NameOf(a.vm_name)); !vm.empty()) {
        c->name = vm;
        c->conn->set_label("client " + std::to_string(c->id) + " (" + c->name + ")");
    }
    c->seg = s;
    std::copy(std::begin(a.vm_uuid), std::end(a.vm_uuid), c->uuid.begin());
    s->clients.push_back(c->id);
    dshm_attached r = {};
    r.size = s->cfg.size;
    r.page_size = kPage;
    r.nlocks = DSHM_MAX_LOCKS;
    r.client_id = c->id;
    r.owner_host = s->owner;
    r.uffd_features = os::kClientUffdFeatures;
    r.uffd_ioctls = os::kClientRegisterModes;
    c->conn->Send(EncodeMsg(DSHM_MSG_ATTACHED, f.hdr.tag, r), s->memfd.get());
    g_message("%s attached to segment %s", c->conn->label().c_str(), s->cfg.name.c_str());
}

void Daemon::OnUffd(Client *c, Frame &f) {
    if (!c->seg || c->uffd.valid()) {
        return c->conn->Fail(Status::Proto("UFFD before ATTACH, or twice"), f.hdr.type);
    }
    auto u = f.Fixed<dshm_uffd>();
    os::UniqueFd uffd(f.TakeFd(0));
    if (u.length != c->seg->cfg.size || u.base % kPage != 0) {
        return c->conn->Fail(Status::Uffd("UFFD range does not match the segment"), f.hdr.type);
    }
    int fl = fcntl(uffd.get(), F_GETFL);
    if (fl < 0 || fcntl(uffd.get(), F_SETFL, fl | O_NONBLOCK) < 0) {
        return c->conn->Fail(Status::Uffd("received fd is unusable"), f.hdr.type);
    }
    // Invariant W for the new client: every page write-protected, including
    // never-mapped ones (uffd-wp markers on shmem).
    auto wp = os::WriteProtect(uffd.get(), u.base, u.length, true);
    if (!wp.ok()) {
        return c->conn->Fail(Status::Uffd("write-protecting the mapping: " + wp.error().what),
                             f.hdr.type);
    }
    c->uffd = std::move(uffd);
    c->base = u.base;
    c->ready = true;
    c->uffd_watch = WatchFdIo(c->uffd.get(), G_IO_IN, &Daemon::OnUffdEvent, c);
    monitor_.SetAttached(c->seg->cfg.name, c->vm(), true);
    c->conn->Send(EncodeEmpty(DSHM_MSG_READY, f.hdr.tag));
}

void Daemon::LockFailed(Client *c, uint32_t lock, uint32_t tag, const Status &st) {
    dshm_lock_reply r = {};
    r.lock_id = lock;
    r.status = st.code();
    c->conn->Send(EncodeMsg(DSHM_MSG_LOCK_FAILED, tag, r));
}

Status Daemon::CheckLockRequest(const Client *c, uint32_t lock, bool release) const {
    if (!c->ready)
        return Status::NotAttached("lock request before READY");
    if (lock >= DSHM_MAX_LOCKS)
        return Status::BadLock("lock id " + std::to_string(lock));
    if (c->pending.count(lock))
        return Status::Pending("a request for this lock is pending");
    if (release && !c->held.count(lock))
        return Status::NotHeld("lock not held");
    if (!release && c->held.count(lock))
        return Status::AlreadyHeld("lock already held");
    return Status::OK();
}

void Daemon::OnAcquire(Client *c, const Frame &f) {
    const uint32_t L = f.Fixed<dshm_lock_req>().lock_id;
    if (Status st = CheckLockRequest(c, L, false); !st.ok())
        return LockFailed(c, L, f.hdr.tag, st);
    c->migrating_out = false;  // it runs again (a migration that failed)
    Segment *s = c->seg;
    c->pending[L] = PendingLock{false, f.hdr.tag};
    Holder who{cfg_.host_id, c->id};
    if (IsOwner(s)) {
        bool now = false;
        Status st = s->locks.Acquire(L, who, &now);
        if (!st.ok()) {
            c->pending.erase(L);
            return LockFailed(c, L, f.hdr.tag, st);
        }
        if (now)
            Grant(s, L, who);
        return;
    }
    dshm_p_lock m = {};
    SetName(m.segment, s->cfg.name);
    m.lock_id = L;
    m.host_id = cfg_.host_id;
    m.client_id = c->id;
    SendPeer(s->owner, EncodeMsg(DSHM_MSG_P_ACQUIRE, 0, m));
}

namespace {
// Calls fn(first, count) for each run of consecutive pages of `pages`
// (increasing).
template <typename Fn>
void ForEachRun(const std::vector<uint32_t> &pages, Fn fn) {
    for (size_t i = 0; i < pages.size();) {
        size_t j = i + 1;
        while (j < pages.size() && pages[j] == pages[j - 1] + 1)
            j++;
        fn(pages[i], static_cast<uint32_t>(j - i));
        i = j;
    }
}
}  // namespace

void Daemon::ProtectRuns(Client *c, const std::vector<uint32_t> &pages, const char *why) {
    // One ioctl per run: a per-page ioctl, each with its own TLB flush, cost
    // ~1.3 µs a page.
    ForEachRun(pages, [&](uint32_t first, uint32_t n) {
        auto wp = os::WriteProtect(c->uffd.get(), c->base + uint64_t(first) * kPage,
                                   uint64_t(n) * kPage, true);
        if (!wp.ok() && wp.err() != ESRCH)  // ESRCH: the client exited, its close is queued
            g_warning("%s: %s pages %u..%u: %s", c->conn->label().c_str(), why, first,
                      first + n - 1, wp.error().what.c_str());
    });
}

std::vector<uint32_t> Daemon::ProtectDirty(Client *c) {
    // Invariant W first: write-protect all of c's dirty pages, then diff
    // them in page order.  A write by c after this faults and waits for this
    // handler, then re-dirties the page against the new twin, exactly as
    // after a per-page protect.
    std::vector<uint32_t> pages(c->dirty.begin(), c->dirty.end());
    std::sort(pages.begin(), pages.end());
    ProtectRuns(c, pages, "re-protecting");
    c->dirty.clear();
    return pages;
}

void Daemon::AccountWriteback(Client *c, uint64_t pages, uint64_t bytes) {
    Segment *s = c->seg;
    s->stats.pages_written_back += pages;
    s->stats.bytes_written_back += bytes;
    c->stats.pages_written_back += pages;
    c->stats.bytes_written_back += bytes;
    Record(c, Activity{.pages_written_back = pages, .bytes_written_back = bytes});
}

std::vector<Daemon::Diff> Daemon::CollectDirty(Client *c, uint32_t *bytes) {
    Segment *s = c->seg;
    std::vector<Diff> out;
    std::vector<uint32_t> pages = ProtectDirty(c);
    out.reserve(pages.size());
    for (uint32_t p : pages) {
        Diff d;
        d.page = p;
        Trace("release-pre", c->id, p, s->pages->dirtiers(p), s->Page(p), s->pages->twin(p));
        d.encoding = s->pages->ReleaseDirty(p, s->Page(p), &d.data);
        Trace("release-diff", c->id, p, static_cast<uint32_t>(d.data.size()));
        if (d.encoding)
            out.push_back(std::move(d));
    }
    *bytes = 0;
    for (const auto &d : out)
        *bytes += d.data.size();
    AccountWriteback(c, out.size(), *bytes);
    return out;
}

std::vector<Daemon::DiffRef> Daemon::RefsOf(const std::vector<Diff> &diffs) {
    std::vector<Daemon::DiffRef> refs;
    refs.reserve(diffs.size());
    for (const auto &d : diffs)
        refs.push_back({d.page, d.encoding, d.data});
    return refs;
}

void Daemon::OnRelease(Client *c, const Frame &f) {
    const uint32_t L = f.Fixed<dshm_lock_req>().lock_id;
    if (Status st = CheckLockRequest(c, L, true); !st.ok())
        return LockFailed(c, L, f.hdr.tag, st);
    c->migrating_out = false;  // it runs again (a migration that failed)
    Segment *s = c->seg;
    if (IsOwner(s)) {
        uint32_t bytes = 0;
        std::vector<Diff> diffs = CollectDirty(c, &bytes);
        c->pending[L] = PendingLock{true, f.hdr.tag, static_cast<uint32_t>(diffs.size()), bytes};
        StartOwnerRelease(s, L, Holder{cfg_.host_id, c->id}, f.hdr.tag, RefsOf(diffs));
        return;
    }
    // Pending before the burst: an owner lost during it fails the release.
    c->pending[L] = PendingLock{true, f.hdr.tag, 0, 0};
    const uint32_t id = c->id;
    uint32_t pages = 0, bytes = 0;
    SendWritebacks(c, DSHM_MSG_P_RELEASE, L, &pages, &bytes);
    if (Client *still = FindClient(id)) {
        auto it = still->pending.find(L);
        if (it != still->pending.end() && it->second.release) {
            it->second.pages = pages;
            it->second.bytes = bytes;
        }
    }
}

void Daemon::SendWritebacks(Client *c, uint16_t type, uint32_t lock, uint32_t *pages_out,
                            uint32_t *bytes_out) {
    Segment *s = c->seg;
    const uint32_t client_id = c->id;
    Phase("rel-start", client_id, lock);
    const std::vector<uint32_t> pages = ProtectDirty(c);
    Phase("rel-protected", client_id, pages.size());
    // The connection the burst starts on: if it closes during the burst,
    // the owner never sees this release's P_RELEASE (OnPeerClosed failed
    // the request); the rest is not queued for a later connection, where a
    // partial release would be a protocol error.  The Conn outlives a close
    // inside the burst (deferred deletion).
    Peer *op = FindPeer(s->owner);
    Conn *conn = op && op->up && op->conn && !op->conn->closed() ? op->conn.get() : nullptr;
    dshm_writeback w = {};
    SetName(w.segment, s->cfg.name);
    constexpr size_t kHdr = sizeof(dshm_hdr);
    // Frames are built in `chunk`, except the data of a page this client
    // alone rewrote as a whole: that is sent from the segment's memory
    // (PageTable::ReleaseDirty's `whole`), and `borrowed` says where in the
    // chunk it goes.  Every chunk is sent or copied before this returns.
    struct Borrowed {
        size_t at;
        const uint8_t *page;
    };
    std::vector<uint8_t> chunk, diff(kMaxEncodedDiff);
    std::vector<Borrowed> borrowed;
    std::vector<struct iovec> iov;
    chunk.reserve(kWritebackChunk);
    // Chunks go out at once while the connection's queue is short; past
    // Conn::kStreamQueueBytes the rest waits here and is handed over as a
    // stream (Conn::SendStream) that refills the queue as it drains: a
    // release may carry the whole segment, far more than a connection may
    // queue.  Whatever is sent to the owner afterwards follows it.
    auto rest = std::make_shared<std::deque<std::vector<uint8_t>>>();
    auto flush = [&]() {
        if (chunk.empty())
            return;
        iov.clear();
        size_t from = 0;
        for (const Borrowed &b : borrowed) {
            iov.push_back({chunk.data() + from, b.at - from});
            iov.push_back({const_cast<uint8_t *>(b.page), kPage});
            from = b.at;
        }
        iov.push_back({chunk.data() + from, chunk.size() - from});
        if (conn && conn->closed()) {
            // Lost during the burst: the release has failed (OnPeerClosed),
            // which punched the pages released so far (clean now): the
            // borrowed ones must not be read any more.
        } else if (conn && rest->empty() && conn->queued_bytes() < Conn::kStreamQueueBytes) {
            conn->SendGather(iov);
        } else if (conn) {
            rest->push_back(Gathered(iov));
        } else {
            SendPeer(s->owner, Gathered(iov));
        }
        chunk.clear();
        borrowed.clear();
    };
    uint32_t n = 0, bytes = 0;
    constexpr size_t kSampleAhead = 8;  // pages
    auto prefetch = [&](size_t k) {
        if (k < pages.size() && s->pages->excl(pages[k]) >= 0 && s->pages->twin(pages[k]))
            PrefetchSample(s->Page(pages[k]), s->pages->twin(pages[k]));
    };
    for (size_t k = 0; k < kSampleAhead; k++)
        prefetch(k);
    for (size_t k = 0; k < pages.size(); k++) {
        const uint32_t p = pages[k];
        prefetch(k + kSampleAhead);
        size_t len = 0;
        bool whole = false;
        Trace("release-pre", client_id, p, s->pages->dirtiers(p), s->Page(p), s->pages->twin(p));
        // Under this host's mark a densely rewritten page goes whole
        // without the compare (protocol.md section 6.1).
        const bool unchecked = s->pages->excl(p) >= 0 && s->pages->dirtiers(p) == 1 &&
                               SampledAllBytesChanged(s->Page(p), s->pages->twin(p));
        w.encoding = s->pages->ReleaseDirty(p, s->Page(p), diff.data(), &len, &whole, unchecked);
        Trace("release-diff", client_id, p, static_cast<uint32_t>(len));
        if (unchecked)
            s->stats.whole_unchecked++;
        if (!w.encoding)
            continue;
        w.page = p;
        const dshm_hdr hdr = {DSHM_MAGIC, DSHM_MSG_WRITEBACK, 0,
                              static_cast<uint32_t>(sizeof w + len), 0};
        const auto *h = reinterpret_cast<const uint8_t *>(&hdr);
        const auto *wb = reinterpret_cast<const uint8_t *>(&w);
        chunk.insert(chunk.end(), h, h + kHdr);
        chunk.insert(chunk.end(), wb, wb + sizeof w);
        if (whole)
            borrowed.push_back({chunk.size(), s->Page(p)});
        else
            chunk.insert(chunk.end(), diff.data(), diff.data() + len);
        n++;
        bytes += static_cast<uint32_t>(len);
        if (chunk.size() + borrowed.size() * kPage >= kWritebackChunk)
            flush();
    }
    dshm_p_release m = {};
    SetName(m.segment, s->cfg.name);
    m.lock_id = lock;
    m.host_id = cfg_.host_id;
    m.client_id = client_id;
    m.npages = n;
    const std::vector<uint8_t> tail = EncodeMsg(type, 0, m);
    chunk.insert(chunk.end(), tail.begin(), tail.end());
    flush();
    if (!rest->empty() && !conn->closed()) {
        conn->SendStream([rest]() -> std::optional<std::vector<uint8_t>> {
            if (rest->empty())
                return std::nullopt;
            std::vector<uint8_t> next = std::move(rest->front());
            rest->pop_front();
            return next;
        });
    }
    Phase("rel-sent", client_id, conn ? conn->queued_bytes() : 0);
    *pages_out = n;
    *bytes_out = bytes;
    if (Client *still = FindClient(client_id))
        AccountWriteback(still, n, bytes);
}

// ---------------------------------------------------------------- migration

void Daemon::OnMigrateOut(Client *c, const Frame &f) {
    if (!c->ready)
        return c->conn->Fail(Status::NotAttached("MIGRATE_OUT before READY"), f.hdr.type);
    if (c->migrate_tag || c->flushing)
        return c->conn->Fail(Status::Pending("a MIGRATE_OUT is already pending"), f.hdr.type);
    c->migrating_out = true;
    c->migrate_tag = f.hdr.tag;
    g_message("%s migrates out: writing its changes back, keeping %zu lock(s) for the "
              "destination",
              c->conn->label().c_str(), c->held.size());
    MaybeFlush(c);
}

// The flush starts once the client's own releases are done (their
// completions must not race with the lock hand-over).
void Daemon::MaybeFlush(Client *c) {
    if (!c->migrate_tag || c->flushing)
        return;
    for (const auto &[lock, pl] : c->pending) {
        if (pl.release)
            return;
    }
    Segment *s = c->seg;
    c->flushing = true;
    if (IsOwner(s)) {
        uint32_t bytes = 0;
        std::vector<Diff> diffs = CollectDirty(c, &bytes);
        c->flush_pages = static_cast<uint32_t>(diffs.size());
        c->flush_bytes = bytes;
        StartOwnerRelease(s, 0, Holder{cfg_.host_id, c->id}, *c->migrate_tag, RefsOf(diffs), true);
        return;
    }
    c->flush_pages = c->flush_bytes = 0;
    const uint32_t id = c->id;
    uint32_t pages = 0, bytes = 0;
    SendWritebacks(c, DSHM_MSG_P_FLUSH, 0, &pages, &bytes);
    if (Client *still = FindClient(id); still && still->flushing) {
        still->flush_pages = pages;
        still->flush_bytes = bytes;
    }
}

void Daemon::FlushDone(Client *c, uint32_t status) {
    if (!c->flushing)
        return;
    c->flushing = false;
    if (c->flush_timer) {
        g_source_remove(c->flush_timer);
        c->flush_timer = 0;
    }
    const uint32_t tag = c->migrate_tag.value_or(0);
    c->migrate_tag.reset();
    if (status != DSHM_OK) {
        // The writes did not reach the owner: the migration must fail.  The
        // VM stays here with its device failed (the connection closes):
        // its locks go as at a death, not to a destination.
        c->migrating_out = false;
        return c->conn->Fail(
            Status::FromCode(status, "writing the migrating VM's changes back failed"),
            DSHM_MSG_MIGRATE_OUT);
    }
    dshm_handoff t = {};
    t.host_id = cfg_.host_id;
    t.client_id = c->id;
    t.incarnation = incarnation_;
    t.pages_written = c->flush_pages;
    t.bytes_written = c->flush_bytes;
    g_message("%s: %u page(s), %u byte(s) written back; ready to migrate", c->conn->label().c_str(),
              t.pages_written, t.bytes_written);
    c->conn->Send(EncodeMsg(DSHM_MSG_MIGRATE_READY, tag, t));
}

void Daemon::AwaitFlushAck(Client *c) {
    if (!c->flushing || c->flush_timer)
        return;
    g_message(
        "%s: owner lost while writing the migrating VM's changes back: waiting up to "
        "%u ms for its acknowledgement",
        c->conn->label().c_str(), cfg_.ack_timeout_ms);
    c->flush_timer = AddTimer(cfg_.ack_timeout_ms, c->id, &Daemon::OnFlushTimeout);
}

void Daemon::OnFlushTimeout(uint32_t client) {
    Client *c = FindClient(client);
    if (!c)
        return;
    c->flush_timer = 0;  // this source ends here (FlushDone must not remove it)
    g_warning(
        "%s: no acknowledgement of its write-back from the owner within %u ms: the "
        "migration fails",
        c->conn->label().c_str(), cfg_.ack_timeout_ms);
    FlushDone(c, DSHM_E_OWNER_LOST);
}

guint Daemon::AddTimer(uint32_t ms, uint32_t id, void (Daemon::*fn)(uint32_t)) {
    struct Ctx {
        Daemon *d;
        uint32_t id;
        void (Daemon::*fn)(uint32_t);
    };
    return g_timeout_add_full(
        G_PRIORITY_DEFAULT, ms,
        [](gpointer p) -> gboolean {
            auto *x = static_cast<Ctx *>(p);
            (x->d->*x->fn)(x->id);
            return G_SOURCE_REMOVE;
        },
        new Ctx{this, id, fn}, [](gpointer p) { delete static_cast<Ctx *>(p); });
}

void Daemon::OnPFlushAck(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_p_release_ack>();
    PEER_SEGMENT(s, m, false);
    if (m.status != DSHM_OK)
        s->pages->DropExcl(-1);  // (as for a refused release, OnPReleaseAck)
    Client *c = FindClient(m.client_id);
    if (!c || c->seg != s)
        return;
    FlushDone(c, m.status);
}

void Daemon::OnAdopt(Client *c, const Frame &f) {
    if (!c->ready)
        return c->conn->Fail(Status::NotAttached("ADOPT before READY"), f.hdr.type);
    if (!c->held.empty() || !c->pending.empty())
        return c->conn->Fail(Status::Proto("ADOPT by a client that already uses locks"),
                             f.hdr.type);
    auto t = f.Fixed<dshm_handoff>();
    Segment *s = c->seg;
    c->adopting = true;
    c->adopt_tag = f.hdr.tag;
    g_message("%s adopts client %u of host %u (a VM that migrated here)", c->conn->label().c_str(),
              t.client_id, t.host_id);
    if (IsOwner(s)) {
        uint8_t held[DSHM_MAX_LOCKS / 8] = {}, queued[DSHM_MAX_LOCKS / 8] = {};
        RenameHolder(s, Holder{t.host_id, t.client_id}, Holder{cfg_.host_id, c->id}, held,
                     queued);
        AdoptDone(c, DSHM_OK, held, queued);
        OnVmArrived(s, c->vm(), t.host_id, cfg_.host_id);
        return;
    }
    dshm_p_adopt m = {};
    SetName(m.segment, s->cfg.name);
    m.from_host = t.host_id;
    m.from_client = t.client_id;
    m.to_host = cfg_.host_id;
    m.to_client = c->id;
    SetName(m.vm_name, c->name.substr(0, DSHM_VMNAME_LEN - 1));
    std::copy(c->uuid.begin(), c->uuid.end(), m.vm_uuid);
    SendPeer(s->owner, EncodeMsg(DSHM_MSG_P_ADOPT, 0, m));
}

void Daemon::RenameHolder(Segment *s, Holder from, Holder to, uint8_t *held, uint8_t *queued) {
    std::vector<uint32_t> h, q;
    s->locks.Rename(from, to, &h, &q);
    for (uint32_t l : h)
        held[l / 8] |= 1u << (l % 8);
    for (uint32_t l : q)
        queued[l / 8] |= 1u << (l % 8);
    g_message("segment %s: client %u of host %u continues as client %u of host %u: %zu lock(s) "
              "held, %zu queued",
              s->cfg.name.c_str(), from.client, from.host, to.client, to.host, h.size(), q.size());
}

void Daemon::AdoptDone(Client *c, uint32_t status, const uint8_t *held, const uint8_t *queued) {
    if (!c->adopting)
        return;
    c->adopting = false;
    dshm_adopted r = {};
    r.status = status;
    r.owner_host = c->seg->owner;
    for (uint32_t l = 0; status == DSHM_OK && l < DSHM_MAX_LOCKS; l++) {
        if (held[l / 8] & (1u << (l % 8))) {
            c->held.insert(l);
            c->held_since[l] = NowNs();
            r.held[l / 8] |= 1u << (l % 8);
        } else if (queued[l / 8] & (1u << (l % 8))) {
            c->pending[l] = PendingLock{false, 0};
            r.queued[l / 8] |= 1u << (l % 8);
        }
    }
    c->conn->Send(EncodeMsg(DSHM_MSG_ADOPTED, c->adopt_tag, r));
    ReplayHeldBack(c);
}

void Daemon::OnPAdopt(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_p_adopt>();
    PEER_SEGMENT(s, m, true);
    if (m.to_host != p->cfg.host_id)
        return p->conn->Fail(Status::Proto("P_ADOPT for another host"), f.hdr.type);
    dshm_p_adopted r = {};
    SetName(r.segment, s->cfg.name);
    r.to_client = m.to_client;
    RenameHolder(s, Holder{m.from_host, m.from_client}, Holder{m.to_host, m.to_client}, r.held,
                 r.queued);
    p->conn->Send(EncodeMsg(DSHM_MSG_P_ADOPTED, 0, r));
    VmId vm{std::string(NameOf(m.vm_name)), {}};
    std::copy(std::begin(m.vm_uuid), std::end(m.vm_uuid), vm.uuid.begin());
    OnVmArrived(s, vm, m.from_host, m.to_host);
}

void Daemon::OnPAdopted(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_p_adopted>();
    PEER_SEGMENT(s, m, false);
    Client *c = FindClient(m.to_client);
    if (!c || c->seg != s)
        return;  // gone meanwhile: the owner drops it on CLIENT_GONE
    AdoptDone(c, m.status, m.held, m.queued);
}

void Daemon::Tombstone(Client *c) {
    tombstones_[c->id] = {c->seg,
                          AddTimer(cfg_.adopt_timeout_ms, c->id, &Daemon::OnTombstoneTimeout)};
}

void Daemon::OnTombstoneTimeout(uint32_t id) {
    auto it = tombstones_.find(id);
    if (it == tombstones_.end())
        return;
    Segment *s = it->second.first;
    tombstones_.erase(it);
    g_message(
        "segment %s: no destination adopted migrated client %u within %u ms: "
        "dropping its locks",
        s->cfg.name.c_str(), id, cfg_.adopt_timeout_ms);
    Defer(s, [this, s, id] { ForgetClientLocks(s, id); });
}

void Daemon::DropLocalCopy(Segment *s) {
    // Not during a move: this host may be about to own the segment (the
    // pages streaming in are then the only copy), or be handing it over
    // (its pages are the snapshot).  EndMove calls again.
    if (IsOwner(s) || s->moving || !s->clients.empty() || !s->memfd.valid())
        return;
    for (uint32_t p = 0; p < s->npages; p++) {
        if (s->pages->dirtiers(p))
            return;  // cannot happen without clients; never lose a write
    }
    munmap(s->map, s->cfg.size);
    s->map = nullptr;
    s->memfd.reset();
    s->pages = std::make_unique<PageTable>(s->npages, false);
    g_message("segment %s: no local VM uses it any more: local copy dropped", s->cfg.name.c_str());
    Defer(s, [this, s] {
        dshm_seg_note m = {};
        SetName(m.segment, s->cfg.name);
        m.host_id = cfg_.host_id;
        SendPeer(s->owner, EncodeMsg(DSHM_MSG_DROP_COPY, 0, m));
    });
}

void Daemon::OnDropCopy(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_seg_note>();
    PEER_SEGMENT(s, m, true);
    if (m.host_id != p->cfg.host_id)
        return p->conn->Fail(Status::Proto("DROP_COPY for another host"), f.hdr.type);
    s->pages->DropHost(p->cfg.host_id);
    // Its marks went with its copy (after every write-back it sent: FIFO).
    RunExclWaiting(s, s->pages->DropExcl(static_cast<int>(p->cfg.host_id)));
}

void Daemon::OnClientClosed(Client *c, const Status &why) {
    if (!why.ok())
        g_warning("%s: closed: %s", c->conn->label().c_str(), why.ToString().c_str());
    if (Segment *s = c->seg) {
        // Unreleased writes never leave the host: pages only this client
        // dirtied go back to their twin (others are write-protected in every
        // other client, so nobody writes them meanwhile).
        for (uint32_t p : c->dirty)
            s->pages->DropDirtier(p, s->Page(p));
        c->dirty.clear();
        s->pages->ForgetClient(c->id);
        std::erase(s->clients, c->id);
        const bool migrated = c->migrating_out && !c->migrate_tag && !c->flushing;
        if (migrated) {
            // The VM runs on elsewhere: its locks wait for the destination.
            g_message("%s migrated away holding %zu lock(s): kept for the destination",
                      c->conn->label().c_str(), c->held.size());
            Tombstone(c);
        } else {
            if (!c->held.empty() || !c->pending.empty()) {
                g_message("%s died holding %zu lock(s), %zu request(s) pending: dropping them",
                          c->conn->label().c_str(), c->held.size(), c->pending.size());
            }
            const uint32_t id = c->id;
            Defer(s, [this, s, id] { ForgetClientLocks(s, id); });
        }
        if (c->ready) {
            c->ready = false;
            UpdateAttached(s, c->vm());
        }
        DropLocalCopy(s);
    }
    if (c->uffd_watch)
        UnwatchFd(c->uffd_watch);
    if (c->flush_timer)
        g_source_remove(c->flush_timer);
    auto it = clients_.find(c->id);
    if (it != clients_.end()) {
        DeferDelete(std::move(it->second->conn));
        clients_.erase(it);  // frees c; the Conn lives until idle
    }
}

void Daemon::ForgetClientLocks(Segment *s, uint32_t client) {
    Holder who{cfg_.host_id, client};
    if (IsOwner(s))
        return DropClientLocks(s, who);
    dshm_p_lock m = {};
    SetName(m.segment, s->cfg.name);
    m.host_id = who.host;
    m.client_id = who.client;
    SendPeer(s->owner, EncodeMsg(DSHM_MSG_CLIENT_GONE, 0, m));
}

void Daemon::DropClientLocks(Segment *s, Holder who) {
    for (const auto &[lock, next] : s->locks.DropClient(who))
        Grant(s, lock, next);
}

void Daemon::OnCtlQuery(Client *c, const Frame &f) {
    auto q = f.Fixed<dshm_ctl_query>();
    std::string json = StatusJson(q.what);
    c->conn->Send(Encode(DSHM_MSG_CTL_REPLY, f.hdr.tag, json.data(), json.size()));
}

// ---------------------------------------------------------------- faults

gboolean Daemon::OnUffdEvent(gint fd, GIOCondition, gpointer p) {
    auto *c = static_cast<Client *>(p);
    Daemon *d = c->daemon;
    uffd_msg msgs[16];
    for (;;) {
        auto n = os::ReadEvents(fd, msgs, 16);
        if (!n.ok()) {
            g_warning("%s: reading its userfaultfd: %s", c->conn->label().c_str(),
                      n.error().what.c_str());
            c->uffd_watch = 0;
            c->conn->Close(Status::Uffd("userfaultfd unreadable"));
            return G_SOURCE_REMOVE;
        }
        if (*n == 0)
            break;
        for (size_t i = 0; i < *n; i++) {
            if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
                continue;
            uint64_t addr = msgs[i].arg.pagefault.address & ~uint64_t(kPage - 1);
            if (addr < c->base || addr >= c->base + c->seg->cfg.size)
                continue;
            uint32_t page = static_cast<uint32_t>((addr - c->base) / kPage);
            if (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
                d->HandleWriteFault(c, page, addr);
            } else {
                d->HandleMissing(c, page, addr);
            }
        }
        if (*n < 16)
            break;
    }
    return G_SOURCE_CONTINUE;
}

void Daemon::HandleMissing(Client *c, uint32_t page, uint64_t addr) {
    Phase("flt-event", page, 0);
    Segment *s = c->seg;
    s->stats.missing_faults++;
    c->stats.missing_faults++;
    Record(c, Activity{.read_faults = 1});
    Trace("missing", c->id, page, s->pages->state(page));
    switch (s->pages->OnMissingFault(page, c->id, addr)) {
        case PageTable::MissingAction::kFillZero:
            return FillZero(c, addr);
        case PageTable::MissingAction::kWake:
            (void)os::Wake(c->uffd.get(), addr, kPage);
            return;
        case PageTable::MissingAction::kWait:
            return;
        case PageTable::MissingAction::kFetch: {
            if (s->moving)
                return;  // sent to whichever host owns the segment after the move
            dshm_fetch m = {};
            SetName(m.segment, s->cfg.name);
            m.page = page;
            s->stats.fetches_sent++;
            SendPeer(s->owner, EncodeMsg(DSHM_MSG_FETCH, 0, m));
            Phase("flt-fetched", page, 0);
            return;
        }
    }
}

void Daemon::FillZero(Client *c, uint64_t addr) {
    // A hole at the owner reads as zeros (write-protected: Invariant W).
    auto r = os::CopyPage(c->uffd.get(), addr, zero_page_.data(), true, false);
    if (!r.ok() && r.err() == EEXIST)
        (void)os::Wake(c->uffd.get(), addr, kPage);
}

void Daemon::HandleWriteFault(Client *c, uint32_t page, uint64_t addr) {
    Segment *s = c->seg;
    // A page another host holds the mark of: this client writes it once
    // the mark is given up (protocol.md section 6.1).
    if (IsOwner(s) && MarkedForOther(s, page, cfg_.host_id)) {
        return AfterExclRevoked(s, page, [this, id = c->id, page, addr] {
            if (Client *again = FindClient(id); again && again->uffd.valid())
                HandleWriteFault(again, page, addr);
        });
    }
    if (s->pages->state(page) != PageTable::kValid) {
        // Punched after the fault was raised: let it fault MISSING.
        (void)os::Wake(c->uffd.get(), addr, kPage);
        return;
    }
    Trace("wp-fault", c->id, page, s->pages->dirtiers(page), s->Page(page), s->pages->twin(page));
    const bool first = c->dirty.insert(page);
    if (first) {
        s->stats.wp_faults++;
        c->stats.wp_faults++;
        Record(c, Activity{.write_faults = 1});
    }
    s->pages->OnWriteFault(page, first, s->Page(page));
    const uint32_t ahead = first ? WriteAhead(c, page) : 0;
    auto r = os::WriteProtect(c->uffd.get(), addr, uint64_t(1 + ahead) * kPage, false);
    if (!r.ok())
        g_warning("%s: unprotecting pages %u..%u: %s", c->conn->label().c_str(), page, page + ahead,
                  r.error().what.c_str());
}

uint32_t Daemon::WriteAhead(Client *c, uint32_t page) {
    // A client that writes page p after p-1 is likely to write p+1 next:
    // the pages after p that are valid here and clean for c join c's dirty
    // set now (twins taken as for a fault), so that one ioctl makes them
    // writable with p.  Invariant W holds: each is in c's dirty set before
    // it is writable.  A page c then leaves unchanged costs a compare at
    // the release and sends nothing.
    Segment *s = c->seg;
    if (cfg_.write_ahead_pages == 0 || page == 0 || !c->dirty.contains(page - 1))
        return 0;
    uint32_t n = 0;
    for (uint32_t q = page + 1; q < s->npages && n < cfg_.write_ahead_pages; q++, n++) {
        if (s->pages->state(q) != PageTable::kValid || c->dirty.contains(q) ||
            (IsOwner(s) && s->pages->excl(q) >= 0))
            break;
        c->dirty.insert(q);
        s->pages->OnWriteFault(q, true, s->Page(q));
    }
    s->stats.write_ahead += n;
    c->stats.write_ahead += n;
    return n;
}

void Daemon::PunchLocal(Segment *s, const std::vector<uint32_t> &pages) {
    if (pages.empty())
        return;
    ForEachRun(pages, [&](uint32_t first, uint32_t n) {
        for (uint32_t p = first; p < first + n; p++)
            Trace("punch", p, s->pages->dirtiers(p), 0, s->Page(p));
        auto r = os::PunchPage(s->memfd.get(), uint64_t(first) * kPage, uint64_t(n) * kPage);
        if (!r.ok())
            g_warning("segment %s: punching pages %u..%u: %s", s->cfg.name.c_str(), first,
                      first + n - 1, r.error().what.c_str());
        for (uint32_t p = first; p < first + n; p++)
            s->pages->Punched(p);
    });
    s->stats.invalidations_received += pages.size();
    for (uint32_t cid : s->clients) {
        Client *c = FindClient(cid);
        if (c && c->uffd.valid())
            ProtectRuns(c, pages, "protecting punched");
    }
}

// ---------------------------------------------------------------- peers

void Daemon::SendPeer(uint32_t host, std::vector<uint8_t> msg) {
    Peer *p = FindPeer(host);
    if (!p) {
        g_warning("no peer with host id %u", host);
        return;
    }
    if (p->up && p->conn && !p->conn->closed()) {
        p->conn->Send(std::move(msg));
    } else {
        p->queued.push_back(std::move(msg));
    }
}

void Daemon::DialPeer(Peer *p) {
    sockaddr_storage ss;
    socklen_t len;
    if (!Resolve(p->cfg.address, &ss, &len)) {
        g_warning("peer %s: cannot resolve %s", p->cfg.name.c_str(), p->cfg.address.c_str());
        p->retry_timer = g_timeout_add(1000, &Daemon::OnRetryTimer, p);
        return;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (connect(fd, reinterpret_cast<sockaddr *>(&ss), len) < 0 && errno != EINPROGRESS) {
        close(fd);
        p->retry_timer = g_timeout_add(200, &Daemon::OnRetryTimer, p);
        return;
    }
    p->connecting_fd = fd;
    p->connect_watch = WatchFd(fd, G_IO_OUT, &Daemon::OnDialReady, p);
}

gboolean Daemon::OnRetryTimer(gpointer pp) {
    auto *p = static_cast<Peer *>(pp);
    p->retry_timer = 0;
    p->daemon->DialPeer(p);
    return G_SOURCE_REMOVE;
}

gboolean Daemon::OnDialReady(gint fd, GIOCondition, gpointer pp) {
    auto *p = static_cast<Peer *>(pp);
    p->connect_watch = 0;
    p->connecting_fd = -1;
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        close(fd);
        p->retry_timer = g_timeout_add(200, &Daemon::OnRetryTimer, p);
        return G_SOURCE_REMOVE;
    }
    SetNoDelay(fd);
    p->daemon->AttachPeerConn(
        p, std::make_unique<Conn>(os::UniqueFd(fd), Channel::kPeer, Receiver::kDaemon,
                                  ClientRole::kUnknown, "peer " + p->cfg.name));
    return G_SOURCE_REMOVE;
}

gboolean Daemon::OnPeerAccept(gint lfd, GIOCondition, gpointer pd) {
    auto *d = static_cast<Daemon *>(pd);
    for (;;) {
        int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            break;
        SetNoDelay(fd);
        // Unidentified until its HELLO names a configured peer.
        auto conn = std::make_unique<Conn>(os::UniqueFd(fd), Channel::kPeer, Receiver::kDaemon,
                                           ClientRole::kUnknown, "incoming peer");
        Conn *raw = conn.get();
        d->unidentified_.push_back(std::move(conn));
        auto take = [d, raw]() -> std::unique_ptr<Conn> {
            for (auto &u : d->unidentified_) {
                if (u.get() == raw) {
                    auto out = std::move(u);
                    std::erase(d->unidentified_, nullptr);
                    return out;
                }
            }
            return nullptr;
        };
        raw->Start(
            [d, raw, take](Frame &&f) {
                if (f.hdr.type != DSHM_MSG_HELLO)
                    return raw->Close(Status::OK());
                auto h = f.Fixed<dshm_hello>();
                Peer *p = d->FindPeer(h.host_id);
                if (!p || h.host_id >= d->cfg_.host_id) {
                    return raw->Fail(Status::Proto("host id " + std::to_string(h.host_id) +
                                                   " is not a peer that dials this host"),
                                     DSHM_MSG_HELLO);
                }
                auto conn = take();
                d->AttachPeerConn(p, std::move(conn));
                d->OnPeerFrame(p, std::move(f));
            },
            [d, take](const Status &why) {
                if (!why.ok())
                    g_warning("incoming peer connection: %s", why.ToString().c_str());
                d->DeferDelete(take());
            });
        raw->SetHelloDeadline(kHelloDeadlineMs);
    }
    return G_SOURCE_CONTINUE;
}

void Daemon::AttachPeerConn(Peer *p, std::unique_ptr<Conn> conn) {
    if (p->conn) {
        Conn *old = p->conn.get();
        old->Close(Status::OK());  // the peer restarted: the old session is over
    }
    p->conn = std::move(conn);
    p->up = false;
    p->conn->set_label("peer " + p->cfg.name);
    Conn *raw = p->conn.get();
    raw->Start(
        [this, p, raw](Frame &&f) {
            if (p->conn.get() == raw)
                OnPeerFrame(p, std::move(f));
        },
        [this, p, raw](const Status &why) {
            if (p->conn.get() == raw)
                OnPeerClosed(p, why);
        });
    dshm_hello h = {};
    h.version = DSHM_PROTO_VERSION;
    h.role = DSHM_ROLE_PEER;
    h.host_id = cfg_.host_id;
    h.incarnation = incarnation_;
    SetName(h.name, cfg_.host_name.substr(0, DSHM_VMNAME_LEN - 1));
    raw->Send(EncodeMsg(DSHM_MSG_HELLO, 0, h));
}

void Daemon::OnPeerClosed(Peer *p, const Status &why) {
    g_warning("peer %s (host %u) lost: %s", p->cfg.name.c_str(), p->cfg.host_id,
              why.ok() ? "connection closed" : why.ToString().c_str());
    bool was_up = p->up;
    p->up = false;
    DeferDelete(std::move(p->conn));
    const uint32_t host = p->cfg.host_id;
    if (was_up) {
        for (auto &[name, s] : segments_) {
            if (IsOwner(s.get()))
                DropInFlight(s.get(), host);  // a release cut off before its P_RELEASE
            if (IsOwner(s.get()) && s->moving) {
                // A move waits for no acknowledgement from a lost host; a
                // lost new owner ends it (ownership stays here).
                s->move_acks.erase(host);
                MaybeSendSnapshot(s.get());
            } else if (s->moving && s->owner == host) {
                EndMove(s.get());  // the move cannot complete any more
            }
            if (IsOwner(s.get())) {
                // Its copies, its marks and its locks are gone (its
                // write-backs: above).
                s->pages->DropHost(host);
                RunExclWaiting(s.get(), s->pages->DropExcl(static_cast<int>(host)));
                for (const auto &[lock, next] : s->locks.DropHost(host))
                    Grant(s.get(), lock, next);
            } else if (s->owner == host) {
                // Invalidations may be missed while disconnected: drop every
                // clean copy and every mark; fail lock requests in flight.
                s->pages->DropExcl(-1);
                std::vector<uint32_t> clean;
                for (uint32_t pg = 0; pg < s->npages; pg++) {
                    if (s->pages->state(pg) == PageTable::kValid && s->pages->dirtiers(pg) == 0)
                        clean.push_back(pg);
                }
                PunchLocal(s.get(), clean);
                for (uint32_t cid : s->clients) {
                    Client *c = FindClient(cid);
                    if (!c)
                        continue;
                    for (auto &[lock, pl] : c->pending) {
                        LockFailed(c, lock, pl.tag, Status::OwnerLost("owner host lost"));
                    }
                    c->pending.clear();
                    c->held.clear();
                    AwaitFlushAck(c);
                }
            }
        }
        std::vector<uint32_t> ids;
        for (auto &[id, r] : releases_) {
            if (r->outstanding.count(host))
                ids.push_back(id);
        }
        for (uint32_t id : ids)
            AckOwnerRelease(id, host, -1000000);
    }
    // Messages queued while the peer was not up stay queued for the next
    // connection.
    if (host > cfg_.host_id && !p->retry_timer) {
        p->retry_timer = g_timeout_add(200, &Daemon::OnRetryTimer, p);
    }
}

void Daemon::OnPeerFrame(Peer *p, Frame &&f) {
    if (f.hdr.type == DSHM_MSG_HELLO) {
        auto h = f.Fixed<dshm_hello>();
        if (h.host_id != p->cfg.host_id) {
            return p->conn->Fail(Status::Proto("HELLO from host " + std::to_string(h.host_id) +
                                               ", expected " + std::to_string(p->cfg.host_id)),
                                 f.hdr.type);
        }
        p->up = true;
        p->incarnation = h.incarnation;
        p->connections++;
        g_message("peer %s (host %u) up", p->cfg.name.c_str(), p->cfg.host_id);
        // Tell it where ownership moved since the configuration was
        // written; re-request pages whose FETCH may have been lost with a
        // previous connection; then send what was queued.
        for (auto &[name, s] : segments_) {
            if (IsOwner(s.get()) && s->owner != s->cfg.owner && !s->moving)
                SendOwnMoved(p, s.get(), s->owner_reason);
            if (s->owner != p->cfg.host_id || s->moving)
                continue;
            for (uint32_t pg : s->pages->Fetching()) {
                dshm_fetch m = {};
                SetName(m.segment, s->cfg.name);
                m.page = pg;
                p->conn->Send(EncodeMsg(DSHM_MSG_FETCH, 0, m));
            }
        }
        auto q = std::move(p->queued);
        p->queued.clear();
        for (auto &m : q)
            p->conn->Send(std::move(m));
        return;
    }
    if (!p->up)
        return p->conn->Fail(Status::Proto("message before HELLO"), f.hdr.type);
    switch (f.hdr.type) {
        case DSHM_MSG_ERROR:
            return p->conn->Close(Status::Proto("peer sent ERROR"));
        case DSHM_MSG_FETCH:
            return OnFetch(p, f);
        case DSHM_MSG_PAGE:
            return OnPage(p, f);
        case DSHM_MSG_P_ACQUIRE:
            return OnPAcquire(p, f);
        case DSHM_MSG_P_GRANT:
            return OnPGrant(p, f);
        case DSHM_MSG_WRITEBACK:
            return OnWriteback(p, std::move(f));
        case DSHM_MSG_P_RELEASE:
            return OnPRelease(p, f, false);
        case DSHM_MSG_P_FLUSH:
            return OnPRelease(p, f, true);
        case DSHM_MSG_P_FLUSH_ACK:
            return OnPFlushAck(p, f);
        case DSHM_MSG_P_ADOPT:
            return OnPAdopt(p, f);
        case DSHM_MSG_P_ADOPTED:
            return OnPAdopted(p, f);
        case DSHM_MSG_DROP_COPY:
            return OnDropCopy(p, f);
        case DSHM_MSG_P_STATS:
            return OnPStats(p, f);
        case DSHM_MSG_OWN_MOVING:
            return OnOwnMoving(p, f);
        case DSHM_MSG_OWN_MOVING_ACK:
            return OnOwnMovingAck(p, f);
        case DSHM_MSG_OWN_PAGE:
            return OnOwnPage(p, f);
        case DSHM_MSG_OWN_LOCKS:
            return OnOwnLocks(p, f);
        case DSHM_MSG_OWN_COPYSETS:
            return OnOwnCopysets(p, f);
        case DSHM_MSG_OWN_COMMIT:
            return OnOwnCommit(p, f);
        case DSHM_MSG_OWN_MOVED:
            return OnOwnMoved(p, f);
        case DSHM_MSG_P_RELEASE_ACK:
            return OnPReleaseAck(p, f);
        case DSHM_MSG_INVALIDATE:
            return OnInvalidate(p, f);
        case DSHM_MSG_INVAL_ACK:
            return OnInvalAck(p, f);
        case DSHM_MSG_UPDATE:
            return OnUpdate(p, f);
        case DSHM_MSG_UPDATE_ACK:
            return OnUpdateAck(p, f);
        case DSHM_MSG_CLIENT_GONE:
            return OnClientGone(p, f);
        case DSHM_MSG_EXCL_GRANT:
        case DSHM_MSG_EXCL_REVOKE:
            return OnExclFromOwner(p, f);
        case DSHM_MSG_EXCL_REVOKED:
            return OnExclRevoked(p, f);
        default:
            return p->conn->Fail(Status::Proto("unexpected " + MsgTypeName(f.hdr.type)),
                                 f.hdr.type);
    }
}

void Daemon::OnFetch(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_fetch>();
    Phase("own-fetch", m.page, 0);
    PEER_SEGMENT(s, m, true);
    PEER_PAGE(s, m.page);
    // Another host's mark on the page: served once the holder has given it
    // up, after every write-back it sent before (protocol.md section 6.1).
    const uint32_t host = p->cfg.host_id, page = m.page, tag = f.hdr.tag;
    if (!MarkedForOther(s, page, host))
        return ServeFetch(p, s, page, tag);
    AfterExclRevoked(s, page, [this, s, host, page, tag] {
        Peer *q = FindPeer(host);
        if (q && q->up && q->conn && !q->conn->closed() && IsOwner(s))
            ServeFetch(q, s, page, tag);  // (a host that reconnected fetches again)
    });
}

void Daemon::ServeFetch(Peer *p, Segment *s, uint32_t page, uint32_t tag) {
    dshm_page r = {};
    SetName(r.segment, s->cfg.name);
    r.page = page;
    // Locally dirty: the last released content (the twin) is served.
    const uint8_t *src = s->pages->ServeFetch(page, p->cfg.host_id, s->Page(page));
    std::vector<uint8_t> before;
    if (s->pages->inflight(page) > 0)
        src = InFlightPreImage(s, page, src, &before);
    else if (src == s->Page(page) && IsHole(s, page))
        src = zero_page_.data();  // never written: zeros, without allocating the page here
    Trace("serve", p->cfg.host_id, page, src == s->Page(page) ? 0 : 1, src);
    s->stats.fetches_served++;
    SendPage(p->conn.get(), DSHM_MSG_PAGE, tag, r, src);
    Phase("own-page", page, 0);
}

void Daemon::AfterExclRevoked(Segment *s, uint32_t p, std::function<void()> then) {
    const int holder = s->pages->excl(p);
    auto [it, first] = s->excl_waiting.try_emplace(p);
    it->second.push_back(std::move(then));
    if (first) {
        dshm_pagelist m = {};
        SetName(m.segment, s->cfg.name);
        m.count = 1;
        SendPeer(static_cast<uint32_t>(holder), EncodeMsg(DSHM_MSG_EXCL_REVOKE, 0, m, &p, 4));
        s->stats.excl_revoked++;
    }
}

void Daemon::RunExclWaiting(Segment *s, const std::vector<uint32_t> &pages) {
    for (uint32_t pg : pages) {
        auto it = s->excl_waiting.find(pg);
        if (it == s->excl_waiting.end())
            continue;
        std::vector<std::function<void()>> work = std::move(it->second);
        s->excl_waiting.erase(it);
        for (auto &fn : work)
            fn();
    }
    MaybeSendSnapshot(s);  // a move waits for revokes under way
}

void Daemon::GrantExcl(OwnerRelease *r) {
    Segment *s = r->seg;
    const uint32_t h = r->who.host;
    if (!cfg_.exclusive_pages || r->flush || s->moving || h == cfg_.host_id || r->whole.empty())
        return;
    std::vector<uint32_t> grant;
    for (uint32_t pg : r->whole) {
        if (s->pages->excl(pg) < 0 && !s->excl_waiting.contains(pg) &&
            s->pages->OtherHolders(pg, cfg_.host_id, h) == 0 && s->pages->dirtiers(pg) == 0) {
            s->pages->SetExcl(pg, static_cast<int>(h));
            grant.push_back(pg);
        }
    }
    for (size_t i = 0; i < grant.size(); i += DSHM_MAX_INVAL_PAGES) {
        const size_t n = std::min<size_t>(DSHM_MAX_INVAL_PAGES, grant.size() - i);
        dshm_pagelist m = {};
        SetName(m.segment, s->cfg.name);
        m.count = static_cast<uint32_t>(n);
        SendPeer(h, EncodeMsg(DSHM_MSG_EXCL_GRANT, 0, m, grant.data() + i, n * 4));
    }
    s->stats.excl_granted += grant.size();
}

void Daemon::OnExclFromOwner(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_pagelist>();
    PEER_SEGMENT(s, m, false);
    if (s->owner != p->cfg.host_id || IsOwner(s)) {
        return p->conn->Fail(Status::NotOwner(MsgTypeName(f.hdr.type) + " from a non-owner"),
                             f.hdr.type);
    }
    std::vector<uint32_t> pages;
    if (Status st = PagesOf(f, s->npages, &pages); !st.ok())
        return p->conn->Fail(st, f.hdr.type);
    if (f.hdr.type == DSHM_MSG_EXCL_REVOKE) {
        for (uint32_t pg : pages)
            s->pages->SetExcl(pg, -1);
        // After every write-back this host sent before: same connection, FIFO.
        p->conn->Send(
            EncodeMsg(DSHM_MSG_EXCL_REVOKED, f.hdr.tag, m, pages.data(), pages.size() * 4));
        return;
    }
    if (s->moving)
        return;  // (no grant is sent during a move)
    // Only for pages this host holds: a grant that crossed this host's
    // DROP_COPY on the wire finds them gone, and is ignored (a page fetched
    // again since is answered after the grant: same connection).
    for (uint32_t pg : pages) {
        if (s->pages->state(pg) == PageTable::kValid)
            s->pages->SetExcl(pg, static_cast<int>(cfg_.host_id));
    }
}

void Daemon::OnExclRevoked(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_pagelist>();
    PEER_SEGMENT(s, m, true);
    std::vector<uint32_t> pages;
    if (Status st = PagesOf(f, s->npages, &pages); !st.ok())
        return p->conn->Fail(st, f.hdr.type);
    std::vector<uint32_t> dropped;
    for (uint32_t pg : pages) {
        if (s->pages->excl(pg) == static_cast<int>(p->cfg.host_id)) {
            s->pages->SetExcl(pg, -1);
            dropped.push_back(pg);
        }
    }
    RunExclWaiting(s, dropped);
}

void Daemon::SendPage(Conn *conn, uint16_t type, uint32_t tag, const dshm_page &m,
                      const uint8_t *page) {
    const std::vector<uint8_t> head = EncodeHead(type, tag, m, kPage);
    const struct iovec iov[2] = {{const_cast<uint8_t *>(head.data()), head.size()},
                                 {const_cast<uint8_t *>(page), kPage}};
    conn->SendGather(iov);
}

bool Daemon::IsHole(Segment *s, uint32_t page) {
    if (s->known_present.size() != s->npages)
        s->known_present.assign(s->npages, false);
    if (s->known_present[page])
        return false;
    auto r = os::PageIsPresent(s->memfd.get(), uint64_t(page) * kPage);
    if (!r.ok() || *r) {
        s->known_present[page] = true;  // (on an error: read it as before)
        return false;
    }
    return true;
}

const uint8_t *Daemon::InFlightPreImage(Segment *s, uint32_t page, const uint8_t *src,
                                        std::vector<uint8_t> *buf) {
    buf->assign(src, src + kPage);
    for (auto &[host, frames] : s->buffered) {
        for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
            auto wb = it->Fixed<dshm_writeback>();
            if (wb.page != page)
                continue;
            auto pre = it->Extra(sizeof wb);  // the pre-image (ApplyInFlight)
            (void)ApplyDiff(buf->data(), wb.encoding, pre.data(), pre.size());
        }
    }
    return buf->data();
}

void Daemon::OnPage(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_page>();
    Phase("flt-page", m.page, 0);
    PEER_SEGMENT(s, m, false);
    PEER_PAGE(s, m.page);
    if (m.status != DSHM_OK) {
        g_warning("segment %s page %u: owner refused the fetch: %s", s->cfg.name.c_str(), m.page,
                  StatusCodeName(m.status));
        return;
    }
    if (s->pages->state(m.page) != PageTable::kFetching)
        return;  // a late duplicate (after a reconnect or an ownership move)
    // With no waiter left (the clients that faulted have gone) the page is
    // installed all the same, through dshmd's mapping: the owner counts
    // this host in the page's copy set, and a page left FETCHING would
    // hold every later fault on it here.
    std::vector<PageTable::Waiter> waiters = s->pages->TakeWaiters(m.page);
    const uint8_t *data = f.Extra(sizeof m).data();
    Trace("page-in", m.page, static_cast<uint32_t>(waiters.size()), 0, data);
    InstallPage(s, m.page, data, waiters);
    Phase("flt-done", m.page, 0);
}

void Daemon::InstallPage(Segment *s, uint32_t page, const uint8_t *data,
                         const std::vector<PageTable::Waiter> &waiters) {
    // Invariant W holds for every other local client without a protect
    // here: the hole has carried its uffd-wp marker since the attach or
    // since PunchLocal; the copy below protects the waiter's PTE itself.
    bool installed = false;
    for (const auto &[cid, addr] : waiters) {
        Client *c = FindClient(cid);
        if (!c || !c->uffd.valid())
            continue;
        if (!installed) {
            auto r = os::CopyPage(c->uffd.get(), addr, data, true, false);
            if (r.ok() || r.err() == EEXIST) {
                installed = true;
                if (!r.ok())
                    (void)os::Wake(c->uffd.get(), addr, kPage);
            }
        } else {
            (void)os::Wake(c->uffd.get(), addr, kPage);
        }
    }
    if (!installed && s->map) {
        // Nobody waits: fill it through dshmd's own mapping.
        memcpy(s->Page(page), data, kPage);
        installed = true;
    }
    s->pages->Installed(page, installed);
}

void Daemon::OnPAcquire(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_p_lock>();
    PEER_SEGMENT(s, m, true);
    if (m.host_id != p->cfg.host_id)
        return p->conn->Fail(Status::Proto("P_ACQUIRE for another host"), f.hdr.type);
    bool now = false;
    Holder who{m.host_id, m.client_id};
    Status st = s->locks.Acquire(m.lock_id, who, &now);
    if (!st.ok()) {
        m.status = st.code();
        p->conn->Send(EncodeMsg(DSHM_MSG_P_GRANT, 0, m));
        return;
    }
    if (now)
        Grant(s, m.lock_id, who);
}

void Daemon::Grant(Segment *s, uint32_t lock, Holder who) {
    if (who.host == cfg_.host_id) {
        Client *c = FindClient(who.client);
        if (!c) {
            // Migrated away: the lock waits for the destination's ADOPT.
            if (tombstones_.count(who.client))
                return;
            // Gone meanwhile: pass the lock on.
            DropClientLocks(s, who);
            return;
        }
        auto it = c->pending.find(lock);
        uint32_t tag = it == c->pending.end() ? 0 : it->second.tag;
        if (it != c->pending.end())
            c->pending.erase(it);
        c->held.insert(lock);
        s->stats.acquires++;
        c->stats.acquires++;
        RecordGrant(c, lock);
        dshm_lock_reply r = {};
        r.lock_id = lock;
        c->conn->Send(EncodeMsg(DSHM_MSG_GRANTED, tag, r));
        return;
    }
    dshm_p_lock m = {};
    SetName(m.segment, s->cfg.name);
    m.lock_id = lock;
    m.host_id = who.host;
    m.client_id = who.client;
    SendPeer(who.host, EncodeMsg(DSHM_MSG_P_GRANT, 0, m));
}

void Daemon::OnPGrant(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_p_lock>();
    PEER_SEGMENT(s, m, false);
    Client *c = FindClient(m.client_id);
    if (!c || c->seg != s)
        return;  // died meanwhile; the owner drops it on CLIENT_GONE
    auto it = c->pending.find(m.lock_id);
    if (it == c->pending.end() || it->second.release)
        return;
    uint32_t tag = it->second.tag;
    c->pending.erase(it);
    if (m.status != DSHM_OK)
        return LockFailed(c, m.lock_id, tag, Status::FromCode(m.status, "owner refused"));
    c->held.insert(m.lock_id);
    s->stats.acquires++;
    c->stats.acquires++;
    RecordGrant(c, m.lock_id);
    dshm_lock_reply r = {};
    r.lock_id = m.lock_id;
    c->conn->Send(EncodeMsg(DSHM_MSG_GRANTED, tag, r));
}

void Daemon::OnWriteback(Peer *p, Frame &&f) {
    auto m = f.Fixed<dshm_writeback>();
    PEER_SEGMENT(s, m, true);
    PEER_PAGE(s, m.page);
    auto &buf = s->buffered[p->cfg.host_id];
    if (buf.empty())
        Phase("own-first-wb", p->cfg.host_id, m.page);
    if (buf.size() >= s->npages) {
        return p->conn->Fail(Status::Proto("more write-backs than pages before a P_RELEASE"),
                             f.hdr.type);
    }
    // Applied now, while the rest of the release is still on the wire; the
    // frame keeps the pre-image until the verdict (protocol.md section 6).
    Trace("apply-inflight", p->cfg.host_id, m.page, s->pages->dirtiers(m.page), s->Page(m.page),
          s->pages->twin(m.page));
    std::span<uint8_t> data = f.MutableExtra(sizeof m);
    Status st =
        s->pages->ApplyInFlight(m.page, m.encoding, data.data(), data.size(), s->Page(m.page));
    if (!st.ok()) {  // the FrameReader validated the diff: not expected
        return p->conn->Fail(st, f.hdr.type);
    }
    buf.push_back(std::move(f));
}

void Daemon::CommitFrames(Segment *s, std::vector<Frame> &frames, uint32_t writer,
                          std::vector<DiffRef> *diffs) {
    diffs->reserve(frames.size());
    for (Frame &w : frames) {
        auto wb = w.Fixed<dshm_writeback>();
        std::span<uint8_t> data = w.MutableExtra(sizeof wb);
        // The diff goes out again only as UPDATE, to hosts with a copy.
        const bool want = s->pages->OtherHolders(wb.page, cfg_.host_id, writer) != 0;
        s->pages->CommitInFlight(wb.page, wb.encoding, data.data(), data.size(),
                                 s->Page(wb.page), want);
        diffs->push_back(DiffRef{wb.page, wb.encoding, data});
    }
}

void Daemon::RevertFrames(Segment *s, std::vector<Frame> &frames, uint32_t writer) {
    if (frames.empty())
        return;
    for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
        auto wb = it->Fixed<dshm_writeback>();
        std::span<uint8_t> data = it->MutableExtra(sizeof wb);
        s->pages->RevertInFlight(wb.page, wb.encoding, data.data(), data.size(),
                                 s->Page(wb.page));
    }
    g_message("segment %s: %zu write-back(s) of host %u reverted (release not accepted)",
              s->cfg.name.c_str(), frames.size(), writer);
    s->stats.writebacks_reverted += frames.size();
    frames.clear();
}

void Daemon::DropInFlight(Segment *s, uint32_t host) {
    auto it = s->buffered.find(host);
    if (it == s->buffered.end())
        return;
    std::vector<Frame> frames = std::move(it->second);
    s->buffered.erase(it);
    RevertFrames(s, frames, host);
    MaybeSendSnapshot(s);
}

void Daemon::OnPRelease(Peer *p, const Frame &f, bool flush) {
    auto m = f.Fixed<dshm_p_release>();
    Phase("own-p-release", p->cfg.host_id, m.npages);
    PEER_SEGMENT(s, m, true);
    const uint32_t host = p->cfg.host_id;
    auto bit = s->buffered.find(host);
    const size_t nframes = bit == s->buffered.end() ? 0 : bit->second.size();
    if (m.host_id != host || nframes != m.npages) {
        // Failing the connection reverts what was applied (OnPeerClosed).
        return p->conn->Fail(Status::Proto("P_RELEASE does not match the write-backs before it"),
                             f.hdr.type);
    }
    std::vector<Frame> frames;
    if (bit != s->buffered.end()) {
        frames = std::move(bit->second);
        s->buffered.erase(bit);
    }
    Holder who{host, m.client_id};
    if (!flush && s->locks.HolderOf(m.lock_id) != std::optional<Holder>(who)) {
        // Not (or no longer) the holder: its writes must not stay.
        RevertFrames(s, frames, host);
        dshm_p_release_ack ack = {};
        SetName(ack.segment, s->cfg.name);
        ack.lock_id = m.lock_id;
        ack.client_id = m.client_id;
        ack.status = DSHM_E_NOT_HELD;
        p->conn->Send(EncodeMsg(DSHM_MSG_P_RELEASE_ACK, f.hdr.tag, ack));
        MaybeSendSnapshot(s);
        return;
    }
    std::vector<DiffRef> diffs;
    CommitFrames(s, frames, host, &diffs);
    s->stats.writebacks_applied += diffs.size();
    Phase("own-applied", host, diffs.size());
    StartOwnerRelease(s, m.lock_id, who, f.hdr.tag, diffs, flush);
}

void Daemon::StartOwnerRelease(Segment *s, uint32_t lock, Holder who, uint32_t reply_tag,
                               std::span<const DiffRef> diffs, bool flush) {
    auto r = std::make_unique<OwnerRelease>();
    r->id = next_release_id_++;
    r->seg = s;
    r->flush = flush;
    r->lock = lock;
    r->who = who;
    r->reply_tag = reply_tag;
    r->pages = static_cast<uint32_t>(diffs.size());
    if (Peer *wp = who.host != cfg_.host_id ? FindPeer(who.host) : nullptr)
        r->writer_conn = wp->connections;
    std::map<uint32_t, std::vector<uint32_t>> inval;
    for (const DiffRef &d : diffs) {
        const uint32_t pgno = d.page;
        r->bytes += d.data.size();
        if (d.encoding == DSHM_ENC_FULL && who.host != cfg_.host_id)
            r->whole.push_back(pgno);
        const uint64_t targets = s->pages->InvalidationTargets(pgno, cfg_.host_id, who.host);
        if (targets == 0)
            continue;
        // Another host has a copy: if it keeps the page (local writers), it
        // gets this diff as UPDATE (OnInvalAck).
        r->diffs[pgno] = {d.encoding, std::vector<uint8_t>(d.data.begin(), d.data.end())};
        for (uint32_t h = 0; h < DSHM_MAX_HOSTS; h++) {
            if (targets & (uint64_t(1) << h))
                inval[h].push_back(pgno);
        }
    }
    for (auto &[h, pages] : inval) {
        Peer *p = FindPeer(h);
        if (!p || !p->up)
            continue;  // its copy is void anyway (punched when it lost us)
        for (size_t i = 0; i < pages.size(); i += DSHM_MAX_INVAL_PAGES) {
            size_t n = std::min<size_t>(DSHM_MAX_INVAL_PAGES, pages.size() - i);
            dshm_pagelist m = {};
            SetName(m.segment, s->cfg.name);
            m.count = static_cast<uint32_t>(n);
            p->conn->Send(EncodeMsg(DSHM_MSG_INVALIDATE, r->id, m, pages.data() + i, n * 4));
            r->outstanding[h]++;
        }
        s->stats.invalidations_sent += pages.size();
    }
    OwnerRelease *raw = r.get();
    releases_[r->id] = std::move(r);
    if (raw->outstanding.empty())
        return FinishOwnerRelease(raw);
    raw->timer = AddTimer(cfg_.ack_timeout_ms, raw->id, &Daemon::OnReleaseTimeout);
}

void Daemon::OnReleaseTimeout(uint32_t id) {
    auto it = releases_.find(id);
    if (it == releases_.end())
        return;
    it->second->timer = 0;
    std::vector<uint32_t> late;
    for (auto &[h, n] : it->second->outstanding)
        late.push_back(h);
    for (uint32_t h : late) {
        Peer *p = FindPeer(h);
        g_warning("peer host %u did not acknowledge invalidations within %u ms: disconnecting it",
                  h, cfg_.ack_timeout_ms);
        if (p && p->conn)
            p->conn->Close(Status::Proto("acknowledgement timeout"));
    }
}

void Daemon::AckOwnerRelease(uint32_t id, uint32_t host, int delta) {
    auto it = releases_.find(id);
    if (it == releases_.end())
        return;
    OwnerRelease *r = it->second.get();
    auto o = r->outstanding.find(host);
    if (o == r->outstanding.end())
        return;
    o->second += delta;
    if (o->second <= 0)
        r->outstanding.erase(o);
    if (r->outstanding.empty())
        FinishOwnerRelease(r);
}

void Daemon::FinishOwnerRelease(OwnerRelease *r) {
    Segment *s = r->seg;
    Status st;
    if (!r->flush) {
        std::optional<Holder> next;
        st = s->locks.Release(r->lock, r->who, &next);
        if (next)
            Grant(s, r->lock, *next);
    }
    if (r->who.host == cfg_.host_id) {
        if (Client *c = FindClient(r->who.client); c && r->flush) {
            FlushDone(c, st.code());
        } else if (c) {
            c->pending.erase(r->lock);
            c->held.erase(r->lock);
            RecordRelease(c, r->lock);
            s->stats.releases++;
            c->stats.releases++;
            dshm_lock_reply rep = {};
            rep.lock_id = r->lock;
            rep.status = st.code();
            rep.pages_written = r->pages;
            rep.bytes_written = r->bytes;
            c->conn->Send(
                EncodeMsg(st.ok() ? DSHM_MSG_RELEASED : DSHM_MSG_LOCK_FAILED, r->reply_tag, rep));
            MaybeFlush(c);
        }
    } else if (Peer *wp = FindPeer(r->who.host);
               !r->flush && (!wp || !wp->up || wp->connections != r->writer_conn)) {
        // The connection its P_RELEASE came on is gone: the release stays
        // (it was complete), and the host failed the request when it lost
        // that connection.  No mark, and no acknowledgement for whatever
        // connection comes next (protocol.md section 8).  (A flush's
        // acknowledgement is queued for the next connection: the host's
        // migrating client still waits for it.)
        g_message(
            "segment %s: release of lock %u by host %u completed after that host was "
            "lost: kept, not acknowledged",
            s->cfg.name.c_str(), r->lock, r->who.host);
    } else {
        if (st.ok())
            GrantExcl(r);  // before the acknowledgement: the writer's next release may use them
        dshm_p_release_ack ack = {};
        SetName(ack.segment, s->cfg.name);
        ack.lock_id = r->lock;
        ack.client_id = r->who.client;
        ack.status = st.code();
        SendPeer(r->who.host, EncodeMsg(r->flush ? DSHM_MSG_P_FLUSH_ACK : DSHM_MSG_P_RELEASE_ACK,
                                        r->reply_tag, ack));
        Phase("own-acked", r->who.host, r->pages);
    }
    if (r->timer)
        g_source_remove(r->timer);
    releases_.erase(r->id);
    MaybeSendSnapshot(s);  // an ownership move waits for releases in flight
}

void Daemon::OnPReleaseAck(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_p_release_ack>();
    Phase("rel-acked", m.client_id, m.status);
    PEER_SEGMENT(s, m, false);
    // A refused release leaves bytes here that the owner reverted: a page
    // sent whole unchecked would carry them back, so every page is compared
    // from now on (the owner revokes the marks when it needs them).
    if (m.status != DSHM_OK)
        s->pages->DropExcl(-1);
    Client *c = FindClient(m.client_id);
    if (!c || c->seg != s)
        return;
    auto it = c->pending.find(m.lock_id);
    if (it == c->pending.end() || !it->second.release)
        return;
    PendingLock pl = it->second;
    c->pending.erase(it);
    c->held.erase(m.lock_id);
    RecordRelease(c, m.lock_id);
    dshm_lock_reply r = {};
    r.lock_id = m.lock_id;
    r.status = m.status;
    r.pages_written = pl.pages;
    r.bytes_written = pl.bytes;
    if (m.status == DSHM_OK) {
        s->stats.releases++;
        c->stats.releases++;
    }
    c->conn->Send(
        EncodeMsg(m.status == DSHM_OK ? DSHM_MSG_RELEASED : DSHM_MSG_LOCK_FAILED, pl.tag, r));
    MaybeFlush(c);
}

void Daemon::OnInvalidate(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_pagelist>();
    PEER_SEGMENT(s, m, false);
    if (s->owner != p->cfg.host_id)
        return p->conn->Fail(Status::NotOwner("INVALIDATE from a non-owner"), f.hdr.type);
    // Every page number is checked before any is acted on: a page marked
    // invalid must be punched in the same handler.
    std::vector<uint32_t> pages;
    if (Status st = PagesOf(f, s->npages, &pages); !st.ok())
        return p->conn->Fail(st, f.hdr.type);
    std::vector<uint32_t> kept;  // INVAL_ACK entries
    std::vector<uint32_t> punch;
    for (uint32_t pgno : pages) {
        Trace("inval", pgno, f.hdr.tag, s->pages->dirtiers(pgno));
        switch (s->pages->OnInvalidate(pgno)) {
            case PageTable::InvalAction::kNotHere:  // none here, or a FETCH answered later
                break;
            case PageTable::InvalAction::kKeep:  // local writers: apply the UPDATE instead
                kept.push_back(pgno | DSHM_INVAL_KEPT);
                break;
            case PageTable::InvalAction::kPunch:
                punch.push_back(pgno);
                kept.push_back(pgno);
                break;
        }
    }
    std::sort(punch.begin(), punch.end());  // no duplicates: a page punched once is INVALID
    PunchLocal(s, punch);
    dshm_pagelist r = {};
    SetName(r.segment, s->cfg.name);
    r.count = static_cast<uint32_t>(kept.size());
    p->conn->Send(EncodeMsg(DSHM_MSG_INVAL_ACK, f.hdr.tag, r, kept.data(), kept.size() * 4));
}

void Daemon::OnInvalAck(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_pagelist>();
    PEER_SEGMENT(s, m, true);
    auto extra = f.Extra(sizeof m);
    auto it = releases_.find(f.hdr.tag);
    if (it == releases_.end() || !it->second->outstanding.count(p->cfg.host_id)) {
        return p->conn->Fail(Status::Proto("INVAL_ACK for no invalidation in flight"), f.hdr.type);
    }
    OwnerRelease *r = it->second.get();
    int more = 0;
    for (uint32_t i = 0; i < m.count; i++) {
        uint32_t entry;
        memcpy(&entry, extra.data() + 4 * i, 4);
        const uint32_t pgno = entry & ~DSHM_INVAL_KEPT;
        PEER_PAGE(s, pgno);
        if (!(entry & DSHM_INVAL_KEPT)) {
            s->pages->LeftCopyset(pgno, p->cfg.host_id);  // punched there
            continue;
        }
        auto d = r->diffs.find(pgno);
        if (d == r->diffs.end()) {
            return p->conn->Fail(Status::Proto("INVAL_ACK keeps page " + std::to_string(pgno) +
                                               ", which this release did not invalidate"),
                                 f.hdr.type);
        }
        // The page is dirty there: send exactly this release's bytes, which
        // the host applies under its own writers (multiple-writer protocol).
        dshm_writeback u = {};
        SetName(u.segment, s->cfg.name);
        u.page = pgno;
        u.encoding = d->second.first;
        p->conn->Send(EncodeMsg(DSHM_MSG_UPDATE, f.hdr.tag, u, d->second.second.data(),
                                d->second.second.size()));
        more++;
    }
    AckOwnerRelease(f.hdr.tag, p->cfg.host_id, more - 1);
}

void Daemon::OnUpdate(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_writeback>();
    PEER_SEGMENT(s, m, false);
    PEER_PAGE(s, m.page);
    // Another host's released bytes: applied to the page (only those bytes
    // are written; local writers own other bytes) and to the twin, so that
    // they are not sent back as local changes.
    auto data = f.Extra(sizeof m);
    Trace("update-pre", m.page, f.hdr.tag, s->pages->dirtiers(m.page), s->Page(m.page),
          s->pages->twin(m.page));
    bool applied = false;
    Status st =
        s->pages->OnUpdate(m.page, m.encoding, data.data(), data.size(), s->Page(m.page), &applied);
    if (!st.ok())
        g_warning("segment %s: applying update: %s", s->cfg.name.c_str(), st.ToString().c_str());
    if (applied)
        s->stats.updates++;
    dshm_page r = {};
    SetName(r.segment, s->cfg.name);
    r.page = m.page;
    p->conn->Send(EncodeMsg(DSHM_MSG_UPDATE_ACK, f.hdr.tag, r));
}

void Daemon::OnUpdateAck(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_page>();
    PEER_SEGMENT(s, m, true);
    AckOwnerRelease(f.hdr.tag, p->cfg.host_id, -1);
}

void Daemon::OnClientGone(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_p_lock>();
    PEER_SEGMENT(s, m, true);
    if (m.host_id != p->cfg.host_id)
        return p->conn->Fail(Status::Proto("CLIENT_GONE for another host"), f.hdr.type);
    DropClientLocks(s, Holder{m.host_id, m.client_id});
}

// ---------------------------------------------------------------- ownership

void Daemon::Defer(Segment *s, std::function<void()> fn) {
    if (s->moving)
        s->deferred.push_back(std::move(fn));
    else
        fn();
}

void Daemon::RefetchPending(Segment *s) {
    if (IsOwner(s))
        return;
    for (uint32_t pg : s->pages->Fetching()) {
        dshm_fetch m = {};
        SetName(m.segment, s->cfg.name);
        m.page = pg;
        s->stats.fetches_sent++;
        SendPeer(s->owner, EncodeMsg(DSHM_MSG_FETCH, 0, m));
    }
}

void Daemon::EndMove(Segment *s) {
    s->moving = false;
    s->snap_next = 0;
    s->snap_sent = 0;
    s->snap_present.clear();
    s->move_acks.clear();
    s->incoming_copysets.clear();
    s->incoming_locks.clear();
    RefetchPending(s);
    auto deferred = std::move(s->deferred);
    s->deferred.clear();
    for (auto &fn : deferred)
        fn();
    for (uint32_t cid : std::vector<uint32_t>(s->clients)) {
        if (Client *c = FindClient(cid))
            ReplayHeldBack(c);
    }
    DropLocalCopy(s);  // its last VM may have left during the move
}

void Daemon::SendOwnMoved(Peer *p, Segment *s, const std::string &reason) {
    if (!p->up || !p->conn || p->conn->closed())
        return;
    dshm_seg_note n = {};
    SetName(n.segment, s->cfg.name);
    n.host_id = cfg_.host_id;
    const size_t len = std::min<size_t>(reason.size(), DSHM_ERROR_TEXT_MAX);
    p->conn->Send(EncodeMsg(DSHM_MSG_OWN_MOVED, 0, n, reason.data(), len));
}

void Daemon::StartMove(Segment *s, uint32_t to, const std::string &reason) {
    Peer *np = FindPeer(to);
    if (!IsOwner(s) || s->moving || !np || !np->up)
        return;
    g_message("segment %s: moving ownership from host %u to host %u: %s", s->cfg.name.c_str(),
              cfg_.host_id, to, reason.c_str());
    s->moving = true;
    s->moving_to = to;
    s->move_reason = reason;
    dshm_seg_note m = {};
    SetName(m.segment, s->cfg.name);
    m.host_id = to;
    for (auto &[id, p] : peers_) {
        if (!p->up || !p->conn || p->conn->closed())
            continue;
        p->conn->Send(EncodeMsg(DSHM_MSG_OWN_MOVING, 0, m));
        s->move_acks.insert(id);
    }
    MaybeSendSnapshot(s);
}

void Daemon::OnOwnMoving(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_seg_note>();
    PEER_SEGMENT(s, m, false);
    if (s->owner != p->cfg.host_id)
        return p->conn->Fail(Status::NotOwner("OWN_MOVING from a non-owner"), f.hdr.type);
    // From here on nothing for the owner leaves this host until the move is
    // over; the acknowledgement follows everything sent before (FIFO).
    s->moving = true;
    s->moving_to = m.host_id;
    // Marks are the old owner's: from here on every page is compared.
    s->pages->DropExcl(-1);
    if (m.host_id == cfg_.host_id) {
        s->incoming_copysets.assign(s->npages, 0);
        s->incoming_locks.clear();
        Status st = EnsureMemfd(s);
        if (!st.ok())
            g_warning("segment %s: %s", s->cfg.name.c_str(), st.ToString().c_str());
    }
    p->conn->Send(EncodeMsg(DSHM_MSG_OWN_MOVING_ACK, 0, m));
}

void Daemon::OnOwnMovingAck(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_seg_note>();
    PEER_SEGMENT(s, m, true);
    if (!s->moving)
        return p->conn->Fail(Status::Proto("OWN_MOVING_ACK without a move"), f.hdr.type);
    s->move_acks.erase(p->cfg.host_id);
    MaybeSendSnapshot(s);
}

void Daemon::MaybeSendSnapshot(Segment *s) {
    if (!s->moving || !IsOwner(s) || !s->move_acks.empty())
        return;
    for (const auto &[id, r] : releases_) {
        if (r->seg == s)
            return;  // its invalidations are still being acknowledged
    }
    if (!s->buffered.empty())
        return;  // a release in flight (not expected: OWN_MOVING_ACKs follow them)
    if (!s->excl_waiting.empty())
        return;  // a mark being revoked: the work waiting for it runs here first
    Peer *np = FindPeer(s->moving_to);
    if (!np || !np->up || !np->conn || np->conn->closed()) {
        // The new owner went away before the hand-over: this host stays.
        g_warning("segment %s: host %u is gone: ownership stays here", s->cfg.name.c_str(),
                  s->moving_to);
        for (auto &[id, p] : peers_)
            SendOwnMoved(p.get(), s, "stays: the move to host " + std::to_string(s->moving_to) +
                                         " failed (host lost)");
        return EndMove(s);
    }
    const uint32_t to = s->moving_to;
    Conn *nc = np->conn.get();
    if (!SendSnapshotPages(s, nc))
        return;
    const uint32_t sent = s->snap_sent;
    // Presence is read now, after the stream: a local fault on a hole may
    // have zero-filled a page behind the cursor meanwhile (zeros, which is
    // what the new owner holds there too), and this host must be in that
    // page's copy set or it would never be invalidated.
    const std::vector<bool> present = PresentPages(s->memfd.get(), s->npages, s->cfg.name);
    nc->Cork();
    // Copy sets as the new owner will keep them: this host holds what is
    // present here; the new owner is no member of its own copy sets.
    std::vector<uint64_t> cs(s->npages);
    for (uint32_t pg = 0; pg < s->npages; pg++) {
        cs[pg] = (s->pages->copyset(pg) & ~(uint64_t(1) << to)) |
                 (present[pg] ? uint64_t(1) << cfg_.host_id : 0);
    }
    for (uint32_t first = 0; first < s->npages; first += DSHM_MAX_COPYSETS) {
        dshm_copysets m = {};
        SetName(m.segment, s->cfg.name);
        m.first_page = first;
        m.count = std::min<uint32_t>(DSHM_MAX_COPYSETS, s->npages - first);
        nc->Send(EncodeMsg(DSHM_MSG_OWN_COPYSETS, 0, m, cs.data() + first, m.count * 8));
    }
    std::vector<LockTable::Entry> entries = s->locks.Export();
    std::vector<dshm_lock_entry> wire;
    for (const auto &e : entries)
        wire.push_back(dshm_lock_entry{e.lock, e.who.host, e.who.client, e.pos});
    for (size_t i = 0; i < wire.size(); i += DSHM_MAX_INVAL_PAGES) {
        dshm_pagelist m = {};
        SetName(m.segment, s->cfg.name);
        m.count = static_cast<uint32_t>(std::min<size_t>(DSHM_MAX_INVAL_PAGES, wire.size() - i));
        nc->Send(EncodeMsg(DSHM_MSG_OWN_LOCKS, 0, m, wire.data() + i,
                           m.count * sizeof(dshm_lock_entry)));
    }
    dshm_seg_note c = {};
    SetName(c.segment, s->cfg.name);
    c.host_id = to;
    c.value = sent;
    std::string why = s->move_reason.substr(0, DSHM_ERROR_TEXT_MAX);
    nc->Send(EncodeMsg(DSHM_MSG_OWN_COMMIT, 0, c, why.data(), why.size()));
    nc->Uncork();
    if (nc->closed())
        return;  // the COMMIT did not get out whole: OnPeerClosed kept ownership here
    // This host is a host like the others from now on: what it holds stays
    // valid (it is in the copy sets sent above); requests go to the new
    // owner, after the COMMIT on the same connection.
    s->owner = to;
    s->owner_reason = s->move_reason;
    s->pages->BecomeNonOwner(present);
    s->locks = LockTable();
    cluster_.ForgetSegment(s->cfg.name);
    g_message("segment %s: ownership handed to host %u (%u page(s), %zu lock entries sent)",
              s->cfg.name.c_str(), to, sent, entries.size());
    EndMove(s);
}

bool Daemon::SendSnapshotPages(Segment *s, Conn *nc) {
    // Every page that holds data: the released content (the twin while a
    // local client is writing the page).  Holes read as zeros anywhere.
    // Nothing changes the released content while the stream runs: no
    // release starts during a move (lock frames are held back everywhere),
    // and a local writer's changes stay out of the twin until its release.
    // Which pages hold data is read once, when the stream starts: a hole
    // zero-filled for a local fault later holds zeros, as the new owner's
    // hole does.
    const uint32_t to = s->moving_to;
    if (s->snap_next == 0)
        s->snap_present = PresentPages(s->memfd.get(), s->npages, s->cfg.name);
    nc->Cork();
    while (s->snap_next < s->npages && !nc->closed() &&
           nc->queued_bytes() < kSnapshotQueueBytes) {
        const uint32_t pg = s->snap_next++;
        if (s->pages->copyset(pg) & (uint64_t(1) << to))
            continue;  // the new owner holds the current content already
        if (!s->snap_present[pg])
            continue;
        dshm_page m = {};
        SetName(m.segment, s->cfg.name);
        m.page = pg;
        const uint8_t *src = s->pages->twin(pg) ? s->pages->twin(pg) : s->Page(pg);
        SendPage(nc, DSHM_MSG_OWN_PAGE, 0, m, src);
        s->snap_sent++;
    }
    nc->Uncork();
    if (nc->closed())
        return false;
    if (s->snap_next < s->npages) {
        nc->WhenDrained(kSnapshotQueueBytes / 4, [this, name = s->cfg.name] {
            if (Segment *seg = FindSegment(name))
                MaybeSendSnapshot(seg);
        });
        return false;
    }
    return true;
}

// The new owner's side: pages, copy sets and locks arrive, then COMMIT.
#define FROM_OWNER_TO_ME(s)                                                                \
    if (!(s)->moving || (s)->moving_to != cfg_.host_id || (s)->owner != p->cfg.host_id) { \
        return p->conn->Fail(Status::Proto("ownership transfer message out of place"),   \
                             f.hdr.type);                                                 \
    }

void Daemon::OnOwnPage(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_page>();
    PEER_SEGMENT(s, m, false);
    PEER_PAGE(s, m.page);
    FROM_OWNER_TO_ME(s);
    if (s->pages->state(m.page) == PageTable::kValid)
        return;  // this host's copy is current (it is in the copy set)
    std::vector<PageTable::Waiter> waiters = s->pages->TakeWaiters(m.page);
    InstallPage(s, m.page, f.Extra(sizeof m).data(), waiters);
}

void Daemon::OnOwnCopysets(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_copysets>();
    PEER_SEGMENT(s, m, false);
    FROM_OWNER_TO_ME(s);
    if (m.first_page >= s->npages || m.count > s->npages - m.first_page)
        return p->conn->Fail(Status::Proto("OWN_COPYSETS out of range"), f.hdr.type);
    memcpy(s->incoming_copysets.data() + m.first_page, f.Extra(sizeof m).data(), m.count * 8);
}

void Daemon::OnOwnLocks(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_pagelist>();
    PEER_SEGMENT(s, m, false);
    FROM_OWNER_TO_ME(s);
    auto extra = f.Extra(sizeof m);
    for (uint32_t i = 0; i < m.count; i++) {
        dshm_lock_entry e;
        memcpy(&e, extra.data() + i * sizeof e, sizeof e);
        s->incoming_locks.push_back(LockTable::Entry{e.lock_id, Holder{e.host_id, e.client_id},
                                                     e.pos});
    }
}

void Daemon::OnOwnCommit(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_seg_note>();
    PEER_SEGMENT(s, m, false);
    FROM_OWNER_TO_ME(s);
    auto text = f.Extra(sizeof m);
    const std::string why(text.begin(), text.end());
    LockTable locks;
    Status st = locks.Import(s->incoming_locks);
    if (!st.ok())
        return p->conn->Fail(st, f.hdr.type);
    // Faults that waited for the move on pages that hold no data anywhere:
    // zeros, as on any owner.
    std::vector<std::pair<uint32_t, PageTable::Waiter>> zero_fill;
    for (uint32_t pg : s->pages->Fetching()) {
        for (const auto &w : s->pages->TakeWaiters(pg))
            zero_fill.emplace_back(pg, w);
    }
    s->incoming_copysets.resize(s->npages);
    for (auto &cs : s->incoming_copysets)
        cs &= ~(uint64_t(1) << cfg_.host_id);
    s->pages->BecomeOwner(s->incoming_copysets);
    s->known_present.clear();
    s->locks = std::move(locks);
    const uint32_t old = s->owner;
    s->owner = cfg_.host_id;
    s->owner_reason = why;
    for (const auto &[pg, w] : zero_fill) {
        if (Client *c = FindClient(w.client); c && c->uffd.valid())
            FillZero(c, w.addr);
    }
    // Everybody learns the new owner from the new owner itself, before any
    // message it sends as owner (FIFO per connection).
    for (auto &[id, peer] : peers_)
        SendOwnMoved(peer.get(), s, why);
    g_message("segment %s: this host is the owner now (was host %u; %u page(s) received): %s",
              s->cfg.name.c_str(), old, m.value, why.c_str());
    EndMove(s);
}

void Daemon::OnOwnMoved(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_seg_note>();
    PEER_SEGMENT(s, m, false);
    if (m.host_id != p->cfg.host_id && !(s->moving && s->owner == p->cfg.host_id))
        return p->conn->Fail(Status::Proto("OWN_MOVED from a host that does not own the segment"),
                             f.hdr.type);
    auto text = f.Extra(sizeof m);
    if (IsOwner(s) && m.host_id != cfg_.host_id) {
        g_warning("segment %s: host %u claims ownership, which this host holds: ignored",
                  s->cfg.name.c_str(), m.host_id);
        return;
    }
    if (s->owner != m.host_id)
        g_message("segment %s: owner is now host %u", s->cfg.name.c_str(), m.host_id);
    s->owner = m.host_id;
    s->owner_reason.assign(text.begin(), text.end());
    if (s->moving)
        EndMove(s);
}

// ---------------------------------------------------------------- monitor

void Daemon::Record(Client *c, const Activity &delta) {
    if (c->seg)
        monitor_.Record(c->seg->cfg.name, c->vm(), delta, NowNs());
}

void Daemon::RecordGrant(Client *c, uint32_t lock) {
    c->held_since[lock] = NowNs();
    Record(c, Activity{.acquires = 1});
}

void Daemon::RecordRelease(Client *c, uint32_t lock) {
    auto it = c->held_since.find(lock);
    if (it == c->held_since.end())
        return;
    Record(c, Activity{.hold_ns = NowNs() - it->second});
    c->held_since.erase(it);
}

void Daemon::UpdateAttached(Segment *s, const VmId &vm) {
    bool attached = false;
    for (uint32_t cid : s->clients) {
        Client *o = FindClient(cid);
        if (o && o->ready && o->vm().Key() == vm.Key())
            attached = true;
    }
    monitor_.SetAttached(s->cfg.name, vm, attached);
}

namespace {

dshm_vm_activity ToWire(const VmId &vm, uint32_t host, bool attached, const Activity &a) {
    dshm_vm_activity w = {};
    SetName(w.vm_name, vm.name.substr(0, DSHM_VMNAME_LEN - 1));
    std::copy(vm.uuid.begin(), vm.uuid.end(), w.vm_uuid);
    w.host_id = host;
    w.attached = attached ? 1 : 0;
    w.read_faults = a.read_faults;
    w.write_faults = a.write_faults;
    w.pages_written_back = a.pages_written_back;
    w.bytes_written_back = a.bytes_written_back;
    w.acquires = a.acquires;
    w.hold_ns = a.hold_ns;
    return w;
}

Activity FromWire(const dshm_vm_activity &w) {
    return Activity{w.read_faults,        w.write_faults, w.pages_written_back,
                    w.bytes_written_back, w.acquires,     w.hold_ns};
}

// Entry i of a validated P_STATS payload.
dshm_vm_activity EntryAt(std::span<const uint8_t> extra, uint32_t i, VmId *vm) {
    dshm_vm_activity w;
    memcpy(&w, extra.data() + i * sizeof w, sizeof w);
    vm->name = std::string(NameOf(w.vm_name));
    std::copy(std::begin(w.vm_uuid), std::end(w.vm_uuid), vm->uuid.begin());
    return w;
}

}  // namespace

gboolean Daemon::OnReportTimer(gpointer self) {
    auto *d = static_cast<Daemon *>(self);
    const uint64_t now = NowNs();
    d->monitor_.Prune(now);
    d->cluster_.Expire(now, std::max<uint64_t>(10'000'000'000ull,
                                               5ull * d->cfg_.policy.report_ms * 1'000'000));
    for (auto &[name, s] : d->segments_) {
        std::vector<VmReport> report = MakeReport(d->monitor_.Snapshot(name, now));
        if (d->IsOwner(s.get())) {
            d->cluster_.Report(name, d->cfg_.host_id, std::move(report), now);
            continue;
        }
        if (s->moving)
            continue;
        if (report.size() > DSHM_MAX_STATS_VMS)
            report.resize(DSHM_MAX_STATS_VMS);
        std::vector<dshm_vm_activity> wire;
        for (const auto &r : report)
            wire.push_back(ToWire(r.vm, d->cfg_.host_id, r.attached, r.window));
        dshm_stats m = {};
        SetName(m.segment, name);
        m.count = static_cast<uint32_t>(wire.size());
        d->SendPeer(s->owner, EncodeMsg(DSHM_MSG_P_STATS, 0, m, wire.data(),
                                        wire.size() * sizeof(dshm_vm_activity)));
    }
    return G_SOURCE_CONTINUE;
}

gboolean Daemon::OnLogTimer(gpointer self) {
    auto *d = static_cast<Daemon *>(self);
    const uint64_t now = NowNs();
    for (const std::string &seg : d->monitor_.Segments()) {
        for (const VmActivity &v : d->monitor_.Snapshot(seg, now)) {
            const std::string vm = v.vm.ToString();
            const std::string window = v.window.ToString();
            g_log_structured(G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "DSHM_SEGMENT", seg.c_str(),
                             "DSHM_VM", vm.c_str(), "DSHM_WINDOW_S",
                             std::to_string(d->cfg_.policy.window_s).c_str(), "MESSAGE",
                             "monitor: segment %s VM %s%s: last %us: %s", seg.c_str(), vm.c_str(),
                             v.attached ? "" : " (detached)", d->cfg_.policy.window_s,
                             window.c_str());
        }
    }
    return G_SOURCE_CONTINUE;
}

void Daemon::OnPStats(Peer *p, const Frame &f) {
    auto m = f.Fixed<dshm_stats>();
    PEER_SEGMENT(s, m, false);
    auto extra = f.Extra(sizeof m);
    if (m.flags & DSHM_STATS_MERGED) {
        if (s->owner != p->cfg.host_id)
            return;  // a stale answer of a former owner
        s->merged.clear();
        std::map<std::string, MergedVm> by_key;
        for (uint32_t i = 0; i < m.count; i++) {
            VmId vm;
            dshm_vm_activity w = EntryAt(extra, i, &vm);
            MergedVm &mv = by_key[vm.Key()];
            mv.vm = vm;
            mv.window += FromWire(w);
            mv.hosts.push_back(HostActivity{w.host_id, w.attached != 0, FromWire(w)});
        }
        for (auto &[k, mv] : by_key)
            s->merged.push_back(std::move(mv));
        return;
    }
    if (!IsOwner(s))
        return;  // reports race with a move: the next one goes to the new owner
    std::vector<VmReport> report;
    for (uint32_t i = 0; i < m.count; i++) {
        VmReport r;
        dshm_vm_activity w = EntryAt(extra, i, &r.vm);
        r.attached = w.attached != 0;
        r.window = FromWire(w);
        report.push_back(std::move(r));
    }
    cluster_.Report(s->cfg.name, p->cfg.host_id, std::move(report), NowNs());
    // Answer with the merged view: every host then knows the classification.
    std::vector<dshm_vm_activity> wire;
    for (const MergedVm &mv : cluster_.Merged(s->cfg.name)) {
        for (const HostActivity &h : mv.hosts) {
            if (wire.size() < DSHM_MAX_STATS_VMS)
                wire.push_back(ToWire(mv.vm, h.host, h.attached, h.window));
        }
    }
    dshm_stats r = {};
    SetName(r.segment, s->cfg.name);
    r.count = static_cast<uint32_t>(wire.size());
    r.flags = DSHM_STATS_MERGED;
    p->conn->Send(EncodeMsg(DSHM_MSG_P_STATS, 0, r, wire.data(),
                            wire.size() * sizeof(dshm_vm_activity)));
}

std::vector<MergedVm> Daemon::MergedView(Segment *s) {
    if (!IsOwner(s))
        return s->merged;
    const uint64_t now = NowNs();
    cluster_.Report(s->cfg.name, cfg_.host_id, MakeReport(monitor_.Snapshot(s->cfg.name, now)),
                    now);
    return cluster_.Merged(s->cfg.name);
}

void Daemon::OnVmArrived(Segment *s, const VmId &vm, uint32_t from, uint32_t host) {
    if (s->moving)
        return;
    std::vector<MergedVm> view = MergedView(s);
    MarkAttached(&view, vm, host);  // it is there now, whatever the last reports say
    std::vector<Classification> cls = Classify(view, cfg_.policy);
    Decision d = DecideOnMigration(s->cfg.name, vm, from, host, s->owner, cls,
                                   cfg_.policy);
    g_log_structured(G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "DSHM_SEGMENT", s->cfg.name.c_str(),
                     "DSHM_VM", vm.ToString().c_str(), "DSHM_DECISION",
                     d.move ? "move" : "stay", "MESSAGE", "policy: %s", d.reason.c_str());
    if (d.move) {
        StartMove(s, host, d.reason);
    } else {
        s->owner_reason = d.reason;
    }
}

// ---------------------------------------------------------------- dshmctl

std::string Daemon::StatusJson(uint32_t what) {
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "host_id");
    json_builder_add_int_value(b, cfg_.host_id);
    json_builder_set_member_name(b, "host_name");
    json_builder_add_string_value(b, cfg_.host_name.c_str());
    if (what == DSHM_CTL_SEGMENTS || what == DSHM_CTL_STATS) {
        json_builder_set_member_name(b, "segments");
        json_builder_begin_array(b);
        for (auto &[name, s] : segments_) {
            uint64_t valid = 0, dirty = 0, copies = 0;
            for (uint32_t i = 0; i < s->npages; i++) {
                if (s->pages->state(i) == PageTable::kValid && s->memfd.valid() &&
                    !IsOwner(s.get()))
                    valid++;
                if (s->pages->twin(i))
                    dirty++;
                copies += __builtin_popcountll(s->pages->copyset(i));
            }
            if (IsOwner(s.get()) && s->memfd.valid()) {
                // Present pages of the owner's memfd.
                for (bool present : PresentPages(s->memfd.get(), s->npages, s->cfg.name))
                    valid += present;
            }
            json_builder_begin_object(b);
            json_builder_set_member_name(b, "name");
            json_builder_add_string_value(b, name.c_str());
            json_builder_set_member_name(b, "size");
            json_builder_add_int_value(b, s->cfg.size);
            json_builder_set_member_name(b, "owner");
            json_builder_add_int_value(b, s->owner);
            json_builder_set_member_name(b, "local_copy");
            json_builder_add_boolean_value(b, s->memfd.valid());
            json_builder_set_member_name(b, "valid_pages");
            json_builder_add_int_value(b, valid);
            json_builder_set_member_name(b, "dirty_pages");
            json_builder_add_int_value(b, dirty);
            json_builder_set_member_name(b, "remote_copies");
            json_builder_add_int_value(b, copies);
            auto add = [b](const char *k, uint64_t v) {
                json_builder_set_member_name(b, k);
                json_builder_add_int_value(b, v);
            };
            auto str = [b](const char *k, const std::string &v) {
                json_builder_set_member_name(b, k);
                json_builder_add_string_value(b, v.c_str());
            };
            str("owner_reason", s->owner_reason);
            json_builder_set_member_name(b, "moving");
            json_builder_add_boolean_value(b, s->moving);
            auto activity = [b, &add](const char *k, const Activity &a) {
                json_builder_set_member_name(b, k);
                json_builder_begin_object(b);
                add("read_faults", a.read_faults);
                add("write_faults", a.write_faults);
                add("pages_written_back", a.pages_written_back);
                add("bytes_written_back", a.bytes_written_back);
                add("acquires", a.acquires);
                add("hold_ms", a.hold_ns / 1000000);
                add("events", a.events());
                json_builder_end_object(b);
            };
            // The access monitor: this host's VMs (window and totals) ...
            json_builder_set_member_name(b, "monitor");
            json_builder_begin_object(b);
            add("window_s", cfg_.policy.window_s);
            json_builder_set_member_name(b, "vms");
            json_builder_begin_array(b);
            for (const VmActivity &v : monitor_.Snapshot(name, NowNs())) {
                json_builder_begin_object(b);
                str("name", v.vm.name);
                str("uuid", v.vm.has_uuid() ? v.vm.UuidString() : "");
                json_builder_set_member_name(b, "attached");
                json_builder_add_boolean_value(b, v.attached);
                activity("window", v.window);
                activity("total", v.total);
                json_builder_end_object(b);
            }
            json_builder_end_array(b);
            json_builder_end_object(b);
            // ... and the classification of every host's VMs (the owner's view).
            std::vector<MergedVm> merged = MergedView(s.get());
            json_builder_set_member_name(b, "cluster");
            json_builder_begin_array(b);
            for (const Classification &cl : Classify(merged, cfg_.policy)) {
                json_builder_begin_object(b);
                str("name", cl.vm.name);
                str("uuid", cl.vm.has_uuid() ? cl.vm.UuidString() : "");
                for (const MergedVm &mv : merged) {
                    if (mv.vm.Key() == cl.vm.Key()) {
                        auto at = mv.At();
                        json_builder_set_member_name(b, "host");
                        json_builder_add_int_value(b, at ? int64_t(*at) : -1);
                        activity("window", mv.window);
                    }
                }
                add("events", cl.events);
                json_builder_set_member_name(b, "share");
                json_builder_add_double_value(b, cl.share);
                str("link", cl.gone ? "gone" : cl.strong ? "strong" : "weak");
                json_builder_set_member_name(b, "most_active");
                json_builder_add_boolean_value(b, cl.most_active);
                str("reason", cl.reason);
                json_builder_end_object(b);
            }
            json_builder_end_array(b);
            json_builder_set_member_name(b, "advice");
            json_builder_begin_array(b);
            for (const Advice &a : Advise(name, merged, s->owner, cfg_.policy)) {
                json_builder_begin_object(b);
                str("vm", a.vm.ToString());
                str("name", a.vm.name);
                str("kind", a.kind == Advice::Kind::kMoveVm ? "move-vm" : "move-ownership");
                add("from_host", a.from_host);
                add("to_host", a.to_host);
                add("score", a.score);
                str("reason", a.reason);
                json_builder_end_object(b);
            }
            json_builder_end_array(b);
            json_builder_set_member_name(b, "stats");
            json_builder_begin_object(b);
            const SegmentStats &st = s->stats;
            add("missing_faults", st.missing_faults);
            add("wp_faults", st.wp_faults);
            add("write_ahead", st.write_ahead);
            add("fetches_sent", st.fetches_sent);
            add("fetches_served", st.fetches_served);
            add("pages_written_back", st.pages_written_back);
            add("bytes_written_back", st.bytes_written_back);
            add("writebacks_applied", st.writebacks_applied);
            size_t inflight = 0;
            for (const auto &[host, frames] : s->buffered)
                inflight += frames.size();
            add("writebacks_inflight", inflight);
            add("writebacks_reverted", st.writebacks_reverted);
            add("invalidations_sent", st.invalidations_sent);
            add("invalidations_received", st.invalidations_received);
            add("updates", st.updates);
            add("acquires", st.acquires);
            add("releases", st.releases);
            add("excl_granted", st.excl_granted);
            add("excl_revoked", st.excl_revoked);
            size_t marked = 0;
            for (uint32_t pg = 0; pg < s->npages; pg++)
                marked += s->pages->excl(pg) >= 0;
            add("excl_marked", marked);
            add("whole_unchecked", st.whole_unchecked);
            json_builder_end_object(b);
            json_builder_set_member_name(b, "clients");
            json_builder_begin_array(b);
            for (uint32_t cid : s->clients) {
                Client *c = FindClient(cid);
                if (!c)
                    continue;
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "id");
                json_builder_add_int_value(b, c->id);
                json_builder_set_member_name(b, "name");
                json_builder_add_string_value(b, c->name.c_str());
                add("locks_held", c->held.size());
                add("missing_faults", c->stats.missing_faults);
                add("wp_faults", c->stats.wp_faults);
                add("write_ahead", c->stats.write_ahead);
                add("pages_written_back", c->stats.pages_written_back);
                add("bytes_written_back", c->stats.bytes_written_back);
                add("acquires", c->stats.acquires);
                add("releases", c->stats.releases);
                json_builder_end_object(b);
            }
            json_builder_end_array(b);
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
    }
    if (what == DSHM_CTL_PEERS || what == DSHM_CTL_STATS) {
        json_builder_set_member_name(b, "peers");
        json_builder_begin_array(b);
        for (auto &[id, p] : peers_) {
            json_builder_begin_object(b);
            json_builder_set_member_name(b, "host_id");
            json_builder_add_int_value(b, id);
            json_builder_set_member_name(b, "name");
            json_builder_add_string_value(b, p->cfg.name.c_str());
            json_builder_set_member_name(b, "address");
            json_builder_add_string_value(b, p->cfg.address.c_str());
            json_builder_set_member_name(b, "connected");
            json_builder_add_boolean_value(b, p->up);
            json_builder_set_member_name(b, "bytes_in");
            json_builder_add_int_value(b, p->conn ? p->conn->bytes_in() : 0);
            json_builder_set_member_name(b, "bytes_out");
            json_builder_add_int_value(b, p->conn ? p->conn->bytes_out() : 0);
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
    }
    json_builder_end_object(b);
    JsonGenerator *g = json_generator_new();
    JsonNode *root = json_builder_get_root(b);
    json_generator_set_root(g, root);
    gchar *text = json_generator_to_data(g, nullptr);
    std::string out(text);
    g_free(text);
    json_node_unref(root);
    g_object_unref(g);
    g_object_unref(b);
    return out;
}

}  // namespace dshm

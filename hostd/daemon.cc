#include "daemon.h"

#include <glib-unix.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <set>
#include <sstream>

#include "agent.h"
#include "auth.h"
#include "cache.h"
#include "clients.h"
#include "handoff.h"
#include "home.h"
#include "liveness.h"
#include "locker.h"
#include "marks.h"
#include "membership.h"
#include "mover.h"
#include "notify.h"
#include "os/memfd.h"
#include "peers.h"
#include "trace.h"
#include "watch.h"
#include "writer.h"

namespace dshm {

guint AddTimer(uint32_t ms, std::function<void()> fn) {
    using Fn = std::function<void()>;
    return g_timeout_add_full(
        G_PRIORITY_DEFAULT, ms,
        [](gpointer p) -> gboolean {
            (*static_cast<Fn *>(p))();
            return G_SOURCE_REMOVE;
        },
        new Fn(std::move(fn)), [](gpointer p) { delete static_cast<Fn *>(p); });
}

const uint8_t *ZeroPage() {
    alignas(64) static const uint8_t zeros[DSHM_PAGE_SIZE] = {};
    return zeros;
}

Daemon::Daemon(Config config) : cfg_(std::move(config)) {
    OpenTraces();
    incarnation_ = (static_cast<uint64_t>(time(nullptr)) << 20) ^ getpid();
    ctx_ = g_main_context_default();
    for (const auto &sc : cfg_.segments) {
        auto s = std::make_unique<Segment>();
        s->cfg = sc;
        s->npages = static_cast<uint32_t>(sc.size / DSHM_PAGE_SIZE);
        s->owner = sc.owner;
        s->pages = std::make_unique<PageTable>(s->npages, sc.owner == cfg_.host_id);
        if (sc.owner == cfg_.host_id)
            s->home = std::make_unique<HomeState>();
        s->owner_reason = "configured owner (dshmd.conf)";
        segments_[sc.name] = std::move(s);
    }
    peers_ = std::make_unique<Peers>(*this);
    clients_ = std::make_unique<Clients>(*this);
    cache_ = std::make_unique<Cache>(*this);
    writer_ = std::make_unique<Writer>(*this);
    home_ = std::make_unique<Home>(*this);
    locker_ = std::make_unique<Locker>(*this);
    marks_ = std::make_unique<Marks>(*this);
    handoff_ = std::make_unique<Handoff>(*this);
    mover_ = std::make_unique<Mover>(*this);
    agent_ = std::make_unique<Agent>(*this);
    liveness_ = std::make_unique<Liveness>(*this);
    membership_ = std::make_unique<Membership>(*this);
}

Daemon::~Daemon() {
    // Clients first (their watches and timers), then the rest, then the
    // segments' mappings.
    clients_.reset();
    liveness_.reset();
    membership_.reset();
    agent_.reset();
    mover_.reset();
    handoff_.reset();
    marks_.reset();
    locker_.reset();
    home_.reset();
    writer_.reset();
    cache_.reset();
    peers_.reset();
    if (graveyard_idle_)
        g_source_remove(graveyard_idle_);
    for (guint w : signal_watches_)
        g_source_remove(w);
    for (auto &[n, s] : segments_) {
        if (s->map)
            munmap(s->map, s->cfg.size);
    }
    CloseTraces();
}

Status Daemon::Start() {
    // Signals first: from the first socket on, a SIGTERM must end the loop
    // (and unlink the socket) rather than kill the process.
    auto quit = [](gpointer self) -> gboolean {
        loop_mutex.AssertHeld();
        static_cast<Daemon *>(self)->Quit();
        return G_SOURCE_CONTINUE;
    };
    auto reload = [](gpointer self) -> gboolean {
        loop_mutex.AssertHeld();
        static_cast<Daemon *>(self)->Reload();
        return G_SOURCE_CONTINUE;
    };
    signal_watches_.push_back(g_unix_signal_add(SIGINT, quit, this));
    signal_watches_.push_back(g_unix_signal_add(SIGTERM, quit, this));
    signal_watches_.push_back(g_unix_signal_add(SIGHUP, reload, this));
    for (auto &[name, s] : segments_) {
        if (IsOwner(s.get())) {
            Status st = EnsureMemfd(s.get());
            if (!st.ok())
                return st;
        }
    }
    // The peers' key (auth.h) before the first peer connection.
    if (!cfg_.auth) {
        cfg_.auth_key = NoAuthKey();
        g_warning(
            "auth = off: peers are NOT authenticated; any process that reaches %s can read and "
            "overwrite every segment (docs/protocol.md section 14)",
            cfg_.listen.empty() ? "the peer port" : cfg_.listen.c_str());
    } else if (cfg_.auth_key.empty() &&
               (!cfg_.peers.empty() || cfg_.membership == MembershipMode::kCorosync)) {
        Status k = LoadAuthKey(cfg_.auth_key_file, &cfg_.auth_key);
        if (!k.ok())
            return k;
    }
    Status st = membership_->Start();
    if (st.ok())
        st = clients_->Listen();
    if (st.ok())
        st = peers_->Listen();
    if (!st.ok())
        return st;
    peers_->DialAll();
    agent_->StartTimers();
    liveness_->StartTimer();
    g_message(
        "dshmd host %u (%s): peers on %s, clients on %s, %zu segment(s), poll-us %u, "
        "I/O thread %s, membership %s",
        cfg_.host_id, cfg_.host_name.c_str(), cfg_.listen.empty() ? "(none)" : cfg_.listen.c_str(),
        cfg_.socket_path.c_str(), segments_.size(), cfg_.poll_us,
        cfg_.UsesIoThread() ? "on" : "off", MembershipModeName(cfg_.membership));
    return Status::OK();
}

namespace {

// The key lines of FormatConfig(c) with no default marks: comparable.
std::set<std::string> KeyLines(Config c) {
    c.given.clear();
    std::set<std::string> lines;
    std::istringstream in(FormatConfig(c));
    std::string group;
    for (std::string l; std::getline(in, l);) {
        if (!l.empty() && l[0] == '[')
            group = l;
        else if (l.rfind("# ", 0) == 0 && l.find(" = ") != std::string::npos)
            lines.insert(group + " " + l.substr(2, l.find("  (default)") - 2));
        else if (l.find(" = ") != std::string::npos)
            lines.insert(group + " " + l);
    }
    return lines;
}

}  // namespace

std::string Daemon::Reload() {
    NotifyReloading("reloading " + config_path_);
    std::string what;
    Config fresh;
    Status st = config_path_.empty() ? Status::Proto("no configuration file to read")
                                     : LoadConfig(config_path_, &fresh);
    if (!st.ok()) {
        what = "reload failed, nothing changed: " + st.message();
        g_warning("SIGHUP: %s", what.c_str());
    } else {
        // What can change now: the thresholds read at every decision.
        PolicyConfig &p = cfg_.policy;
        p.strong_min_events = fresh.policy.strong_min_events;
        p.strong_min_share = fresh.policy.strong_min_share;
        p.move_ownership = fresh.policy.move_ownership;
        // Everything else that differs needs a restart.
        std::set<std::string> now = KeyLines(cfg_), want = KeyLines(fresh);
        int restart = 0;
        for (const auto &l : want) {
            if (!now.count(l)) {
                g_warning(
                    "SIGHUP: %s: %s differs from the running configuration: it takes "
                    "effect at the next restart",
                    config_path_.c_str(), l.c_str());
                restart++;
            }
        }
        for (const auto &l : now) {
            // A peer or segment the file no longer has.
            if (l.rfind("[peer ", 0) == 0 || l.rfind("[segment ", 0) == 0) {
                std::string group = l.substr(0, l.find(']') + 1);
                bool kept = false;
                for (const auto &w : want)
                    kept = kept || w.rfind(group, 0) == 0;
                if (!kept) {
                    g_warning(
                        "SIGHUP: %s: %s is gone from the file: it stays until the next "
                        "restart",
                        config_path_.c_str(), group.c_str());
                    restart++;
                }
            }
        }
        what = "reloaded " + config_path_ + ": policy thresholds applied" +
               (restart ? ", " + std::to_string(restart) + " change(s) need a restart"
                        : ", nothing needs a restart");
        g_message("SIGHUP: %s", what.c_str());
    }
    NotifyReady(what);
    return what;
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
    NotifyStopping("shutting down");
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
                loop_mutex.AssertHeld();
                auto *d = static_cast<Daemon *>(p);
                d->graveyard_.clear();
                d->graveyard_idle_ = 0;
                return G_SOURCE_REMOVE;
            },
            this);
    }
}

Segment *Daemon::FindSegment(std::string_view name) {
    auto it = segments_.find(name);
    return it == segments_.end() ? nullptr : it->second.get();
}

Segment *Daemon::PeerSegment(Peer *peer, const Frame &f, std::string_view name, bool owned) {
    Segment *s = FindSegment(name);
    if (!s) {
        peer->conn->Fail(Status::NoSegment("unknown segment '" + std::string(name) + "'"),
                         f.hdr.type);
        return nullptr;
    }
    if (owned && !IsOwner(s)) {
        peer->conn->Fail(Status::NotOwner("this host does not own " + s->cfg.name), f.hdr.type);
        return nullptr;
    }
    if (f.hdr.type != DSHM_MSG_OWN_MOVED)
        peer->heard.insert(s);
    return s;
}

bool Daemon::FromOwner(Peer *peer, const Frame &f, const Segment *s, bool former) {
    const uint32_t host = peer->cfg.host_id;
    if (!IsOwner(s) && s->owner == host)
        return true;
    if (former && s->former_owner == host)
        return true;
    peer->conn->Fail(
        Status::NotOwner(MsgTypeName(f.hdr.type) + " for segment " + s->cfg.name + " from host " +
                         std::to_string(host) + ", which does not own it"),
        f.hdr.type);
    return false;
}

bool Daemon::PageInRange(Peer *peer, const Frame &f, const Segment *s, uint32_t pg) {
    if (pg < s->npages)
        return true;
    peer->conn->Fail(Status::Proto("page " + std::to_string(pg) + " out of range"), f.hdr.type);
    return false;
}

// ---------------------------------------------------------------- routers

void Daemon::RouteClientFrame(LocalClient *c, Frame &&f) {
    switch (f.hdr.type) {
        case DSHM_MSG_HELLO:
            return clients_->OnHello(c, f);
        case DSHM_MSG_ERROR:
        case DSHM_MSG_DETACH:
            return c->conn->Close(Status::OK());
        case DSHM_MSG_ATTACH:
            return clients_->OnAttach(c, f);
        case DSHM_MSG_UFFD:
            return clients_->OnUffd(c, f);
        case DSHM_MSG_ACQUIRE:
            return locker_->OnAcquire(c, f);
        case DSHM_MSG_RELEASE:
            return writer_->OnRelease(c, f);
        case DSHM_MSG_CTL_QUERY:
            return clients_->OnCtlQuery(c, f);
        case DSHM_MSG_MIGRATE_OUT:
            return handoff_->OnMigrateOut(c, f);
        case DSHM_MSG_ADOPT:
            return handoff_->OnAdopt(c, f);
        default:
            return c->conn->Fail(Status::Proto("unexpected " + MsgTypeName(f.hdr.type)),
                                 f.hdr.type);
    }
}

void Daemon::RoutePeerFrame(Peer *peer, Frame &&f) {
    switch (f.hdr.type) {
        case DSHM_MSG_ERROR:
            return peer->conn->Close(Status::Proto("peer sent ERROR"));
        // The cache side of any host.
        case DSHM_MSG_PAGE:
            return cache_->OnPage(peer, f);
        case DSHM_MSG_INVALIDATE:
            return cache_->OnInvalidate(peer, f);
        case DSHM_MSG_UPDATE:
            return cache_->OnUpdate(peer, f);
        // The owner.
        case DSHM_MSG_FETCH:
            return home_->OnFetch(peer, f);
        case DSHM_MSG_WRITEBACK:
            return home_->OnWriteback(peer, std::move(f));
        case DSHM_MSG_P_RELEASE:
            return home_->OnPRelease(peer, f, ReleaseKind::kRelease);
        case DSHM_MSG_P_FLUSH:
            return home_->OnPRelease(peer, f, ReleaseKind::kFlush);
        case DSHM_MSG_INVAL_ACK:
            return home_->OnInvalAck(peer, f);
        case DSHM_MSG_UPDATE_ACK:
            return home_->OnUpdateAck(peer, f);
        case DSHM_MSG_DROP_COPY:
            return home_->OnDropCopy(peer, f);
        // The writer.
        case DSHM_MSG_P_RELEASE_ACK:
            return writer_->OnPReleaseAck(peer, f);
        // Locks.
        case DSHM_MSG_P_ACQUIRE:
            return locker_->OnPAcquire(peer, f);
        case DSHM_MSG_P_GRANT:
            return locker_->OnPGrant(peer, f);
        case DSHM_MSG_CLIENT_GONE:
            return locker_->OnClientGone(peer, f);
        // Single-writer marks.
        case DSHM_MSG_EXCL_GRANT:
        case DSHM_MSG_EXCL_REVOKE:
            return marks_->OnFromOwner(peer, f);
        case DSHM_MSG_EXCL_REVOKED:
            return marks_->OnRevoked(peer, f);
        // Live migration.
        case DSHM_MSG_P_FLUSH_ACK:
            return handoff_->OnPFlushAck(peer, f);
        case DSHM_MSG_P_ADOPT:
            return handoff_->OnPAdopt(peer, f);
        case DSHM_MSG_P_ADOPTED:
            return handoff_->OnPAdopted(peer, f);
        // Ownership moves.
        case DSHM_MSG_OWN_MOVING:
            return mover_->OnOwnMoving(peer, f);
        case DSHM_MSG_OWN_MOVING_ACK:
            return mover_->OnOwnMovingAck(peer, f);
        case DSHM_MSG_OWN_PAGE:
            return mover_->OnOwnPage(peer, f);
        case DSHM_MSG_OWN_LOCKS:
            return mover_->OnOwnLocks(peer, f);
        case DSHM_MSG_OWN_COPYSETS:
            return mover_->OnOwnCopysets(peer, f);
        case DSHM_MSG_OWN_COMMIT:
            return mover_->OnOwnCommit(peer, f);
        case DSHM_MSG_OWN_MOVED:
            return mover_->OnOwnMoved(peer, f);
        // The access monitor.
        case DSHM_MSG_P_STATS:
            return agent_->OnPStats(peer, f);
        default:
            return peer->conn->Fail(Status::Proto("unexpected " + MsgTypeName(f.hdr.type)),
                                    f.hdr.type);
    }
}

void Daemon::OnPeerUp(Peer *peer) {
    for (auto &[name, s] : segments_) {
        mover_->OnPeerUp(peer, s.get());
        cache_->OnPeerUp(peer, s.get());
    }
}

void Daemon::OnPeerLost(uint32_t host) {
    for (auto &[name, sp] : segments_) {
        Segment *s = sp.get();
        if (IsOwner(s))
            home_->DropInFlight(s, host);  // a release cut off before its P_RELEASE
        mover_->OnHostLost(s, host);
        if (IsOwner(s))
            home_->OnHostLost(s, host);
        else if (s->owner == host)
            cache_->OnOwnerLost(s);
    }
    home_->OnHostLostReleases(host);
}

}  // namespace dshm

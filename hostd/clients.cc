#include "clients.h"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent.h"
#include "cache.h"
#include "ctl.h"
#include "daemon.h"
#include "handoff.h"
#include "locker.h"
#include "mover.h"
#include "os/uffd.h"
#include "watch.h"

namespace dshm {
namespace {
// A client that has not completed its HELLO by then is dropped.
constexpr guint kHelloDeadlineMs = 2000;
}  // namespace

Clients::Clients(Daemon &d) : d_(d) {}

Clients::~Clients() {
    for (auto &[id, c] : clients_) {
        if (c->uffd_watch)
            UnwatchFd(c->uffd_watch);
    }
    if (listen_watch_)
        UnwatchFd(listen_watch_);
    const std::string &path = d_.cfg().socket_path;
    if (listen_.valid() && !path.empty())
        unlink(path.c_str());
}

Status Clients::Listen() {
    const std::string &path = d_.cfg().socket_path;
    std::string dir = path.substr(0, path.rfind('/'));
    if (!dir.empty())
        g_mkdir_with_parents(dir.c_str(), 0755);
    struct sockaddr_un sa = {};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path)
        return Status::Proto("socket path too long");
    strcpy(sa.sun_path, path.c_str());
    os::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    // A stale socket of a dead dshmd is replaced; a live one is not.
    if (connect(fd.get(), reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0)
        return Status::Internal("another dshmd is listening on " + path);
    fd.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    const Config &cfg = d_.cfg();
    gid_t gid = gid_t(-1);
    if (!cfg.socket_group.empty()) {
        const struct group *g = getgrnam(cfg.socket_group.c_str());
        guint64 n = 0;
        if (g)
            gid = g->gr_gid;
        else if (g_ascii_string_to_unsigned(cfg.socket_group.c_str(), 10, 0, G_MAXUINT32 - 1, &n,
                                            nullptr))
            gid = static_cast<gid_t>(n);
        else
            return Status::Internal("socket-group: no group '" + cfg.socket_group + "'");
    }
    unlink(path.c_str());
    // The socket is created owner-only (the umask covers bind: no window in
    // which others could connect), then given its group, then its mode
    // (socket-mode, default 0600); at start-up, before any thread but this
    // one creates files, so the process-wide umask change is safe.
    const mode_t old_mask = umask(0177);
    const int brc = bind(fd.get(), reinterpret_cast<sockaddr *>(&sa), sizeof sa);
    const int berr = errno;
    umask(old_mask);
    if (brc < 0 || listen(fd.get(), 64) < 0)
        return Status::Internal("listen on " + path + ": " + strerror(brc < 0 ? berr : errno));
    if (gid != gid_t(-1) && chown(path.c_str(), uid_t(-1), gid) < 0)
        return Status::Internal("socket-group " + cfg.socket_group + ": chown " + path + ": " +
                                strerror(errno));
    if (chmod(path.c_str(), cfg.socket_mode) < 0)
        return Status::Internal("socket-mode: chmod " + path + ": " + strerror(errno));
    for (const auto &sc : cfg.segments) {
        if (sc.allow.empty()) {
            g_warning("segment %s has no allow list: any local process that may open %s can "
                      "attach it (docs/protocol.md section 14)",
                      sc.name.c_str(), path.c_str());
        }
    }
    listen_ = std::move(fd);
    listen_watch_ = WatchFd(listen_.get(), G_IO_IN, &Clients::OnAccept, this);
    return Status::OK();
}

LocalClient *Clients::Find(uint32_t id) {
    auto it = clients_.find(id);
    return it == clients_.end() ? nullptr : it->second.get();
}

const LocalClient *Clients::Find(uint32_t id) const {
    auto it = clients_.find(id);
    return it == clients_.end() ? nullptr : it->second.get();
}

gboolean Clients::OnAccept(gint lfd, GIOCondition, gpointer self) {
    loop_mutex.AssertHeld();
    auto *cs = static_cast<Clients *>(self);
    for (;;) {
        int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            break;
        auto c = std::make_unique<LocalClient>();
        c->id = cs->next_id_++;
        // Who connected, for the log and dshmctl (access control belongs
        // to the cluster's authentication, docs/protocol.md section 14).
        socklen_t len = sizeof c->cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0)
            c->cred = {0, uid_t(-1), gid_t(-1)};
        c->daemon = &cs->d_;
        c->conn = std::make_unique<Conn>(os::UniqueFd(fd), Channel::kClient, Receiver::kDaemon,
                                         ClientRole::kUnknown, "client " + std::to_string(c->id));
        LocalClient *raw = c.get();
        cs->clients_[c->id] = std::move(c);
        raw->conn->Start(
            [cs, raw](Frame &&f) REQUIRES(loop_mutex) { cs->OnFrame(raw, std::move(f)); },
            [cs, raw](const Status &why) REQUIRES(loop_mutex) { cs->OnClosed(raw, why); });
        raw->conn->SetHelloDeadline(kHelloDeadlineMs);
    }
    return G_SOURCE_CONTINUE;
}

bool Clients::HoldBack(LocalClient *c, Frame &f) {
    switch (f.hdr.type) {
        case DSHM_MSG_ACQUIRE:
        case DSHM_MSG_RELEASE:
        case DSHM_MSG_MIGRATE_OUT:
        case DSHM_MSG_ADOPT:
            break;
        default:
            return false;
    }
    if (!c->mig.adopting && !(c->seg && c->seg->move) && c->held_back.empty())
        return false;
    if (c->held_back.size() >= kMaxHeldBack) {
        // Refused, not dropped: the client learns it (E_BUSY).
        Status busy =
            Status::Busy("more than " + std::to_string(kMaxHeldBack) + " lock commands held back");
        if (f.hdr.type == DSHM_MSG_ACQUIRE || f.hdr.type == DSHM_MSG_RELEASE)
            LockFailed(c, f.Fixed<dshm_lock_req>().lock_id, f.hdr.tag, busy);
        else
            c->conn->Fail(busy, f.hdr.type);
        return true;
    }
    c->held_back.push_back(std::move(f));
    return true;
}

void Clients::ReplayHeldBack(LocalClient *c) {
    const uint32_t id = c->id;
    while (!c->held_back.empty() && !c->mig.adopting && !(c->seg && c->seg->move)) {
        Frame f = std::move(c->held_back.front());
        c->held_back.pop_front();
        d_.RouteClientFrame(c, std::move(f));
        if (!Find(id))
            return;  // the frame closed the client
    }
}

void Clients::OnFrame(LocalClient *c, Frame &&f) {
    if (!HoldBack(c, f))
        d_.RouteClientFrame(c, std::move(f));
}

void Clients::OnHello(LocalClient *c, const Frame &f) {
    auto h = f.Fixed<dshm_hello>();
    c->name = std::string(NameOf(h.name));
    c->conn->set_label("client " + std::to_string(c->id) + " (" + c->name + ")");
    dshm_hello r = {};
    r.version = DSHM_PROTO_VERSION;
    r.role = h.role;
    r.host_id = d_.host_id();
    r.incarnation = d_.incarnation();
    SetName(r.name, d_.cfg().host_name.substr(0, DSHM_VMNAME_LEN - 1));
    c->conn->Send(EncodeMsg(DSHM_MSG_HELLO, f.hdr.tag, r));
}

void Clients::OnAttach(LocalClient *c, const Frame &f) {
    if (c->seg)
        return c->conn->Fail(Status::Proto("second ATTACH on one connection"), f.hdr.type);
    auto a = f.Fixed<dshm_attach>();
    Segment *s = d_.FindSegment(NameOf(a.segment));
    if (!s) {
        return c->conn->Fail(Status::NoSegment("no segment '" + std::string(NameOf(a.segment)) +
                                               "' on host " + d_.cfg().host_name),
                             f.hdr.type);
    }
    if (!s->cfg.allow.empty()) {
        // The VM UUID the client names (QEMU: its -uuid), as 8-4-4-4-12.
        char id[37];
        const uint8_t *u = a.vm_uuid;
        snprintf(id, sizeof id,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
                 u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
                 u[14], u[15]);
        if (std::find(s->cfg.allow.begin(), s->cfg.allow.end(), id) == s->cfg.allow.end()) {
            g_warning("%s (pid %d, uid %d, gid %d): refused segment %s: VM UUID %s is not in its "
                      "allow list",
                      c->conn->label().c_str(), int(c->cred.pid), int(c->cred.uid),
                      int(c->cred.gid), s->cfg.name.c_str(), id);
            return c->conn->Fail(Status::Auth("VM UUID " + std::string(id) +
                                              " may not attach segment " + s->cfg.name),
                                 f.hdr.type);
        }
    }
    Status st = d_.EnsureMemfd(s);
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
    r.page_size = DSHM_PAGE_SIZE;
    r.nlocks = DSHM_MAX_LOCKS;
    r.client_id = c->id;
    r.owner_host = s->owner;
    r.uffd_features = os::kClientUffdFeatures;
    r.uffd_ioctls = os::kClientRegisterModes;
    c->conn->Send(EncodeMsg(DSHM_MSG_ATTACHED, f.hdr.tag, r), s->memfd.get());
    g_message("%s attached to segment %s (pid %d, uid %d, gid %d)", c->conn->label().c_str(),
              s->cfg.name.c_str(), int(c->cred.pid), int(c->cred.uid), int(c->cred.gid));
}

void Clients::OnUffd(LocalClient *c, Frame &f) {
    if (!c->seg || c->uffd.valid())
        return c->conn->Fail(Status::Proto("UFFD before ATTACH, or twice"), f.hdr.type);
    auto u = f.Fixed<dshm_uffd>();
    os::UniqueFd uffd(f.TakeFd(0));
    if (u.length != c->seg->cfg.size || u.base % DSHM_PAGE_SIZE != 0)
        return c->conn->Fail(Status::Uffd("UFFD range does not match the segment"), f.hdr.type);
    if (!os::SetNonBlocking(uffd.get()).ok())
        return c->conn->Fail(Status::Uffd("received fd is unusable"), f.hdr.type);
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
    c->uffd_watch = d_.cache().WatchUffd(c);
    d_.agent().SetAttached(c);
    c->conn->Send(EncodeEmpty(DSHM_MSG_READY, f.hdr.tag));
}

void Clients::OnCtlQuery(LocalClient *c, const Frame &f) {
    auto q = f.Fixed<dshm_ctl_query>();
    std::string json = CtlJson(d_, q.what);
    auto msg = EncodeBounded(DSHM_MSG_CTL_REPLY, f.hdr.tag, json.data(), json.size());
    if (!msg) {
        return c->conn->Fail(Status::Internal("the reply (" + std::to_string(json.size()) +
                                              " bytes) exceeds the payload bound"),
                             f.hdr.type);
    }
    c->conn->Send(std::move(*msg));
}

Status Clients::CheckLockRequest(const LocalClient *c, uint32_t lock, LockOp op) const {
    const bool release = op == LockOp::kRelease;
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

std::optional<uint32_t> Clients::TakeLockRequest(LocalClient *c, const Frame &f, LockOp op) {
    const uint32_t lock = f.Fixed<dshm_lock_req>().lock_id;
    if (Status st = CheckLockRequest(c, lock, op); !st.ok()) {
        LockFailed(c, lock, f.hdr.tag, st);
        return std::nullopt;
    }
    c->mig.migrating_out = false;  // it runs again (a migration that failed)
    return lock;
}

void Clients::LockFailed(LocalClient *c, uint32_t lock, uint32_t tag, const Status &st) {
    dshm_lock_reply r = {};
    r.lock_id = lock;
    r.status = st.code();
    c->conn->Send(EncodeMsg(DSHM_MSG_LOCK_FAILED, tag, r));
}

void Clients::DeliverGranted(LocalClient *c, uint32_t lock, uint32_t tag) {
    c->pending.erase(lock);
    c->held.insert(lock);
    c->seg->stats.acquires++;
    c->stats.acquires++;
    d_.agent().RecordGrant(c, lock);
    dshm_lock_reply r = {};
    r.lock_id = lock;
    c->conn->Send(EncodeMsg(DSHM_MSG_GRANTED, tag, r));
}

void Clients::DeliverReleased(LocalClient *c, uint32_t lock, uint32_t status, uint32_t tag,
                              uint32_t pages, uint32_t bytes) {
    c->pending.erase(lock);
    c->held.erase(lock);
    d_.agent().RecordRelease(c, lock);
    if (status == DSHM_OK) {
        c->seg->stats.releases++;
        c->stats.releases++;
    }
    dshm_lock_reply r = {};
    r.lock_id = lock;
    r.status = status;
    r.pages_written = pages;
    r.bytes_written = bytes;
    c->conn->Send(EncodeMsg(status == DSHM_OK ? DSHM_MSG_RELEASED : DSHM_MSG_LOCK_FAILED, tag, r));
    d_.handoff().MaybeFlush(c);
}

void Clients::OnClosed(LocalClient *c, const Status &why) {
    if (!why.ok())
        g_warning("%s: closed: %s", c->conn->label().c_str(), why.ToString().c_str());
    if (Segment *s = c->seg) {
        d_.cache().ForgetClient(c);
        std::erase(s->clients, c->id);
        if (c->mig.migrating_out && !c->mig.migrate_tag && !c->mig.flushing) {
            // The VM runs on elsewhere: its locks wait for the destination.
            g_message("%s migrated away holding %zu lock(s): kept for the destination",
                      c->conn->label().c_str(), c->held.size());
            d_.handoff().Tombstone(c);
        } else {
            if (!c->held.empty() || !c->pending.empty()) {
                g_message("%s died holding %zu lock(s), %zu request(s) pending: dropping them",
                          c->conn->label().c_str(), c->held.size(), c->pending.size());
            }
            const uint32_t id = c->id;
            d_.mover().Defer(
                s, [this, s, id]() REQUIRES(loop_mutex) { d_.locker().ForgetClientLocks(s, id); });
        }
        if (c->ready) {
            c->ready = false;
            d_.agent().UpdateAttached(s, c->vm());
        }
        d_.cache().DropLocalCopy(s);
    }
    if (c->uffd_watch)
        UnwatchFd(c->uffd_watch);
    if (c->mig.flush_timer)
        g_source_remove(c->mig.flush_timer);
    auto it = clients_.find(c->id);
    if (it != clients_.end()) {
        d_.DeferDelete(std::move(it->second->conn));
        clients_.erase(it);  // frees c; the Conn lives until idle
    }
}

}  // namespace dshm

#include "locker.h"

#include "clients.h"
#include "daemon.h"
#include "handoff.h"
#include "msgs.h"
#include "peers.h"

namespace dshm {

void Locker::OnAcquire(LocalClient *c, const Frame &f) {
    const std::optional<uint32_t> req =
        d_.clients().TakeLockRequest(c, f, Clients::LockOp::kAcquire);
    if (!req)
        return;
    const uint32_t lock = *req;
    Segment *s = c->seg;
    c->pending[lock] = PendingLock{false, f.hdr.tag};
    Holder who{d_.host_id(), c->id};
    if (d_.IsOwner(s)) {
        ForgetMigrated(s, who);
        bool now = false;
        Status st = s->home->locks.Acquire(lock, who, &now);
        if (!st.ok()) {
            c->pending.erase(lock);
            return d_.clients().LockFailed(c, lock, f.hdr.tag, st);
        }
        if (now)
            Grant(s, lock, who);
        return;
    }
    // Never queued for an owner that is not connected: it fails now.  (A
    // P_ACQUIRE queued for the next connection, e.g. one held back during
    // a move that ended with the owner's loss, was granted there after
    // OnOwnerLost had answered E_OWNER_LOST: the owner then kept the lock
    // for a client that believed it failed; protocol.md section 8.)
    Peer *op = d_.peers().Find(s->owner);
    if (!op || !op->Live()) {
        c->pending.erase(lock);
        return d_.clients().LockFailed(c, lock, f.hdr.tag,
                                       Status::OwnerLost("owner host not connected"));
    }
    op->Live()->Send(LockMsg(DSHM_MSG_P_ACQUIRE, s->cfg.name, lock, who.host, who.client));
}

void Locker::OnPAcquire(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_p_lock>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), true);
    if (!s)
        return;
    if (m.host_id != peer->cfg.host_id)
        return peer->conn->Fail(Status::Proto("P_ACQUIRE for another host"), f.hdr.type);
    bool now = false;
    Holder who{m.host_id, m.client_id};
    ForgetMigrated(s, who);
    Status st = s->home->locks.Acquire(m.lock_id, who, &now);
    if (!st.ok()) {
        m.status = st.code();
        peer->conn->Send(EncodeMsg(DSHM_MSG_P_GRANT, 0, m));
        return;
    }
    if (now)
        Grant(s, m.lock_id, who);
}

void Locker::Grant(Segment *s, uint32_t lock, Holder who) {
    if (who.host != d_.host_id()) {
        d_.peers().Send(who.host,
                        LockMsg(DSHM_MSG_P_GRANT, s->cfg.name, lock, who.host, who.client));
        return;
    }
    LocalClient *c = d_.clients().Find(who.client);
    if (!c) {
        // Migrated away: the lock waits for the destination's ADOPT.
        if (d_.handoff().IsTombstone(who.client))
            return;
        // Gone meanwhile: pass the lock on.
        return DropClientLocks(s, who);
    }
    auto it = c->pending.find(lock);
    d_.clients().DeliverGranted(c, lock, it == c->pending.end() ? 0 : it->second.tag);
}

void Locker::OnPGrant(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_p_lock>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s || !d_.FromOwner(peer, f, s, true))
        return;
    if (m.host_id != d_.host_id())
        return peer->conn->Fail(Status::Proto("P_GRANT for another host"), f.hdr.type);
    LocalClient *c = d_.clients().Find(m.client_id);
    if (!c || c->seg != s)
        return;  // died meanwhile; the owner drops it on CLIENT_GONE
    auto it = c->pending.find(m.lock_id);
    if (it == c->pending.end() || it->second.release)
        return;
    const uint32_t tag = it->second.tag;
    if (m.status != DSHM_OK) {
        c->pending.erase(it);
        return d_.clients().LockFailed(c, m.lock_id, tag,
                                       Status::FromCode(m.status, "owner refused"));
    }
    d_.clients().DeliverGranted(c, m.lock_id, tag);
}

void Locker::DropClientLocks(Segment *s, Holder who) {
    ForgetMigrated(s, who);
    for (const auto &[lock, next] : s->home->locks.DropClient(who))
        Grant(s, lock, next);
}

void Locker::ForgetClientLocks(Segment *s, uint32_t client) {
    Holder who{d_.host_id(), client};
    if (d_.IsOwner(s))
        return DropClientLocks(s, who);
    d_.peers().Send(s->owner, LockMsg(DSHM_MSG_CLIENT_GONE, s->cfg.name, 0, who.host, who.client));
}

void Locker::OnClientGone(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_p_lock>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), true);
    if (!s)
        return;
    if (m.host_id != peer->cfg.host_id)
        return peer->conn->Fail(Status::Proto("CLIENT_GONE for another host"), f.hdr.type);
    DropClientLocks(s, Holder{m.host_id, m.client_id});
}

void Locker::NoteMigratedOut(Segment *s, Holder who, uint64_t token) {
    s->home->migrated[who.Key()] = token;
}

void Locker::ForgetMigrated(Segment *s, Holder who) {
    s->home->migrated.erase(who.Key());
}

bool Locker::RenameHolder(Segment *s, Holder from, uint64_t token, Holder to, uint8_t *held,
                          uint8_t *queued) {
    auto it = s->home->migrated.find(from.Key());
    if (it == s->home->migrated.end() || it->second != token) {
        g_warning(
            "segment %s: refusing to hand client %u of host %u over to client %u of host %u: "
            "%s",
            s->cfg.name.c_str(), from.client, from.host, to.client, to.host,
            it == s->home->migrated.end() ? "it did not migrate out (or its locks were dropped)"
                                          : "wrong hand-off token");
        return false;
    }
    s->home->migrated.erase(it);
    std::vector<uint32_t> h, q;
    s->home->locks.Rename(from, to, &h, &q);
    for (uint32_t l : h)
        held[l / 8] |= 1u << (l % 8);
    for (uint32_t l : q)
        queued[l / 8] |= 1u << (l % 8);
    g_message(
        "segment %s: client %u of host %u continues as client %u of host %u: %zu lock(s) "
        "held, %zu queued",
        s->cfg.name.c_str(), from.client, from.host, to.client, to.host, h.size(), q.size());
    return true;
}

void Locker::OnHostLost(Segment *s, uint32_t host) {
    std::erase_if(s->home->migrated,
                  [host](const auto &e) { return static_cast<uint32_t>(e.first >> 32) == host; });
    for (const auto &[lock, next] : s->home->locks.DropHost(host))
        Grant(s, lock, next);
}

}  // namespace dshm

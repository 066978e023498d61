#include "mover.h"

#include <algorithm>
#include <cstring>

#include "agent.h"
#include "cache.h"
#include "clients.h"
#include "daemon.h"
#include "home.h"
#include "marks.h"
#include "msgs.h"
#include "os/memfd.h"
#include "peers.h"

namespace dshm {
namespace {

// An ownership snapshot keeps at most this much queued on the connection to
// the new owner (far below Conn::kMaxQueuedBytes) and resumes at a quarter.
constexpr size_t kSnapshotQueueBytes = 8u << 20;

}  // namespace

void Mover::Defer(Segment *s, std::function<void()> fn) {
    if (s->move)
        s->move->deferred.push_back(std::move(fn));
    else
        fn();
}

void Mover::EndMove(Segment *s) {
    std::vector<std::function<void()>> deferred;
    if (s->move)
        deferred = std::move(s->move->deferred);
    s->move.reset();
    d_.cache().RefetchPending(s);
    for (auto &fn : deferred)
        fn();
    for (uint32_t cid : std::vector<uint32_t>(s->clients)) {
        if (LocalClient *c = d_.clients().Find(cid))
            d_.clients().ReplayHeldBack(c);
    }
    d_.cache().DropLocalCopy(s);  // its last VM may have left during the move
}

void Mover::SendOwnMoved(Peer *peer, Segment *s, const std::string &reason) {
    if (Conn *c = peer->Live())
        c->Send(SegNoteMsg(DSHM_MSG_OWN_MOVED, s->cfg.name, d_.host_id(), 0, reason));
}

void Mover::OnPeerUp(Peer *peer, Segment *s) {
    if (d_.IsOwner(s) && s->owner != s->cfg.owner && !s->move)
        SendOwnMoved(peer, s, s->owner_reason);
}

void Mover::OnHostLost(Segment *s, uint32_t host) {
    if (d_.IsOwner(s) && s->move) {
        // A move waits for no acknowledgement from a lost host; a lost new
        // owner ends it (ownership stays here).
        if (s->move->out)
            s->move->out->acks.erase(host);
        MaybeSendSnapshot(s);
    } else if (s->move && s->owner == host) {
        EndMove(s);  // the move cannot complete any more
    }
}

void Mover::StartMove(Segment *s, uint32_t to, const std::string &reason) {
    Peer *np = d_.peers().Find(to);
    if (!d_.IsOwner(s) || s->move || !np || !np->up)
        return;
    g_message("segment %s: moving ownership from host %u to host %u: %s", s->cfg.name.c_str(),
              d_.host_id(), to, reason.c_str());
    s->move = std::make_unique<MoveState>();
    s->move->to = to;
    MoveHandover &out = s->move->out.emplace();
    out.reason = reason;
    for (const auto &[id, peer] : d_.peers().all()) {
        if (Conn *c = peer->Live()) {
            c->Send(SegNoteMsg(DSHM_MSG_OWN_MOVING, s->cfg.name, to));
            out.acks.insert(id);
        }
    }
    MaybeSendSnapshot(s);
}

void Mover::OnOwnMoving(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_seg_note>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s)
        return;
    if (s->owner != peer->cfg.host_id)
        return peer->conn->Fail(Status::NotOwner("OWN_MOVING from a non-owner"), f.hdr.type);
    // From here on nothing for the owner leaves this host until the move is
    // over; the acknowledgement follows everything sent before (FIFO).
    if (!s->move)
        s->move = std::make_unique<MoveState>();
    s->move->to = m.host_id;
    // Marks are the old owner's: from here on every page is compared.
    s->pages->DropExcl(-1);
    if (m.host_id == d_.host_id()) {
        MoveTakeover &in = s->move->in.emplace();
        in.copysets.assign(s->npages, 0);
        Status st = d_.EnsureMemfd(s);
        if (!st.ok())
            g_warning("segment %s: %s", s->cfg.name.c_str(), st.ToString().c_str());
    }
    peer->conn->Send(EncodeMsg(DSHM_MSG_OWN_MOVING_ACK, 0, m));
}

void Mover::OnOwnMovingAck(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_seg_note>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), true);
    if (!s)
        return;
    if (!s->move || !s->move->out)
        return peer->conn->Fail(Status::Proto("OWN_MOVING_ACK without a move"), f.hdr.type);
    s->move->out->acks.erase(peer->cfg.host_id);
    MaybeSendSnapshot(s);
}

void Mover::MaybeSendSnapshot(Segment *s) {
    if (!s->move || !s->move->out || !d_.IsOwner(s) || !s->move->out->acks.empty())
        return;
    if (d_.home().ReleasesInFlight(s))
        return;  // its invalidations are still being acknowledged
    if (!s->home->buffered.empty())
        return;  // a release in flight (not expected: OWN_MOVING_ACKs follow them)
    if (d_.marks().Revoking(s))
        return;  // a mark being revoked: the work waiting for it runs here first
    const uint32_t me = d_.host_id();
    const uint32_t to = s->move->to;
    Peer *np = d_.peers().Find(to);
    Conn *nc = np ? np->Live() : nullptr;
    if (!nc) {
        // The new owner went away before the hand-over: this host stays.
        g_warning("segment %s: host %u is gone: ownership stays here", s->cfg.name.c_str(), to);
        for (const auto &[id, peer] : d_.peers().all())
            SendOwnMoved(peer.get(), s,
                         "stays: the move to host " + std::to_string(to) + " failed (host lost)");
        return EndMove(s);
    }
    if (!SendSnapshotPages(s, nc))
        return;
    const uint32_t sent = s->move->out->sent;
    const std::string reason = s->move->out->reason;
    // Presence is read now, after the stream: a local fault on a hole may
    // have zero-filled a page behind the cursor meanwhile (zeros, which is
    // what the new owner holds there too), and this host must be in that
    // page's copy set or it would never be invalidated.
    const std::vector<bool> present = PresentPages(*s);
    nc->Cork();
    // Copy sets as the new owner will keep them: this host holds what is
    // present here; the new owner is no member of its own copy sets.
    std::vector<uint64_t> cs(s->npages);
    for (uint32_t pg = 0; pg < s->npages; pg++) {
        cs[pg] =
            (s->pages->copyset(pg) & ~(uint64_t(1) << to)) | (present[pg] ? uint64_t(1) << me : 0);
    }
    for (uint32_t first = 0; first < s->npages; first += DSHM_MAX_COPYSETS) {
        dshm_copysets m = {};
        SetName(m.segment, s->cfg.name);
        m.first_page = first;
        m.count = std::min<uint32_t>(DSHM_MAX_COPYSETS, s->npages - first);
        nc->Send(EncodeMsg(DSHM_MSG_OWN_COPYSETS, 0, m, cs.data() + first, m.count * 8));
    }
    std::vector<LockTable::Entry> entries = s->home->locks.Export();
    std::vector<dshm_lock_entry> wire;
    for (const auto &e : entries)
        wire.push_back(dshm_lock_entry{e.lock, e.who.host, e.who.client, e.pos});
    for (auto &msg :
         ListMsgs<dshm_lock_entry>(DSHM_MSG_OWN_LOCKS, 0, s->cfg.name, wire, DSHM_MAX_LOCK_ENTRIES))
        nc->Send(std::move(msg));
    nc->Send(SegNoteMsg(DSHM_MSG_OWN_COMMIT, s->cfg.name, to, sent, reason));
    nc->Uncork();
    if (nc->closed())
        return;  // the COMMIT did not get out whole: OnPeerLost kept ownership here
    // This host is a host like the others from now on: what it holds stays
    // valid (it is in the copy sets sent above); requests go to the new
    // owner, after the COMMIT on the same connection.
    s->SetOwner(to);
    s->owner_reason = reason;
    s->pages->BecomeNonOwner(present);
    s->home.reset();
    d_.agent().ForgetSegment(s->cfg.name);
    g_message("segment %s: ownership handed to host %u (%u page(s), %zu lock entries sent)",
              s->cfg.name.c_str(), to, sent, entries.size());
    EndMove(s);
}

bool Mover::SendSnapshotPages(Segment *s, Conn *nc) {
    // Every page that holds data: the released content (the twin while a
    // local client is writing the page).  Holes read as zeros anywhere.
    // Nothing changes the released content while the stream runs: no
    // release starts during a move (lock frames are held back everywhere),
    // and a local writer's changes stay out of the twin until its release.
    // Which pages hold data is read once, when the stream starts: a hole
    // zero-filled for a local fault later holds zeros, as the new owner's
    // hole does.
    const uint32_t to = s->move->to;
    MoveHandover &out = *s->move->out;
    if (out.next == 0)
        out.present = PresentPages(*s);
    nc->Cork();
    while (out.next < s->npages && !nc->closed() && nc->queued_bytes() < kSnapshotQueueBytes) {
        const uint32_t pg = out.next++;
        if (s->pages->copyset(pg) & (uint64_t(1) << to))
            continue;  // the new owner holds the current content already
        if (!out.present[pg])
            continue;
        dshm_page m = {};
        SetName(m.segment, s->cfg.name);
        m.page = pg;
        const uint8_t *src = s->pages->twin(pg) ? s->pages->twin(pg) : s->Page(pg);
        SendPageMsg(nc, DSHM_MSG_OWN_PAGE, 0, m, src);
        out.sent++;
    }
    nc->Uncork();
    if (nc->closed())
        return false;
    if (out.next < s->npages) {
        nc->WhenDrained(kSnapshotQueueBytes / 4, [this, name = s->cfg.name]() REQUIRES(loop_mutex) {
            if (Segment *seg = d_.FindSegment(name))
                MaybeSendSnapshot(seg);
        });
        return false;
    }
    return true;
}

// ---------------------------------------------------------------- new owner

bool Mover::FromOwnerToMe(Peer *peer, const Frame &f, const Segment *s) {
    if (s->move && s->move->in && s->owner == peer->cfg.host_id)
        return true;
    peer->conn->Fail(Status::Proto("ownership transfer message out of place"), f.hdr.type);
    return false;
}

void Mover::OnOwnPage(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_page>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s || !d_.PageInRange(peer, f, s, m.page) || !FromOwnerToMe(peer, f, s))
        return;
    if (s->pages->state(m.page) == PageTable::kValid)
        return;  // this host's copy is current (it is in the copy set)
    std::vector<PageTable::Waiter> waiters = s->pages->TakeWaiters(m.page);
    d_.cache().InstallPage(s, m.page, f.Extra(sizeof m).data(), waiters);
}

void Mover::OnOwnCopysets(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_copysets>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s || !FromOwnerToMe(peer, f, s))
        return;
    if (m.first_page >= s->npages || m.count > s->npages - m.first_page)
        return peer->conn->Fail(Status::Proto("OWN_COPYSETS out of range"), f.hdr.type);
    memcpy(s->move->in->copysets.data() + m.first_page, f.Extra(sizeof m).data(), m.count * 8);
}

void Mover::OnOwnLocks(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_pagelist>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s || !FromOwnerToMe(peer, f, s))
        return;
    auto extra = f.Extra(sizeof m);
    // No more entries than a lock table can hold (a holder per lock and its
    // waiters, protocol.md section 2): an old owner cannot grow this list
    // without limit before its OWN_COMMIT.
    if (s->move->in->locks.size() + m.count > kMaxLockEntries) {
        return peer->conn->Fail(Status::Proto("OWN_LOCKS: more entries than a lock table holds"),
                                f.hdr.type);
    }
    for (uint32_t i = 0; i < m.count; i++) {
        dshm_lock_entry e;
        memcpy(&e, extra.data() + i * sizeof e, sizeof e);
        s->move->in->locks.push_back(
            LockTable::Entry{e.lock_id, Holder{e.host_id, e.client_id}, e.pos});
    }
}

void Mover::OnOwnCommit(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_seg_note>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s || !FromOwnerToMe(peer, f, s))
        return;
    const uint32_t me = d_.host_id();
    auto text = f.Extra(sizeof m);
    const std::string why(text.begin(), text.end());
    MoveTakeover &in = *s->move->in;
    auto home = std::make_unique<HomeState>();
    Status st = home->locks.Import(in.locks);
    if (!st.ok())
        return peer->conn->Fail(st, f.hdr.type);
    // Faults that waited for the move on pages that hold no data anywhere:
    // zeros, as on any owner.
    std::vector<std::pair<uint32_t, PageTable::Waiter>> zero_fill;
    for (uint32_t pg : s->pages->Fetching()) {
        for (const auto &w : s->pages->TakeWaiters(pg))
            zero_fill.emplace_back(pg, w);
    }
    in.copysets.resize(s->npages);
    for (auto &cs : in.copysets)
        cs &= ~(uint64_t(1) << me);
    s->pages->BecomeOwner(in.copysets);
    s->home = std::move(home);
    const uint32_t old = s->owner;
    s->SetOwner(me);
    s->owner_reason = why;
    for (const auto &[pg, w] : zero_fill) {
        LocalClient *c = d_.clients().Find(w.client);
        if (c && c->uffd.valid())
            d_.cache().FillZero(c, w.addr);
    }
    // Everybody learns the new owner from the new owner itself, before any
    // message it sends as owner (FIFO per connection).
    for (const auto &[id, p] : d_.peers().all())
        SendOwnMoved(p.get(), s, why);
    g_message("segment %s: this host is the owner now (was host %u; %u page(s) received): %s",
              s->cfg.name.c_str(), old, m.value, why.c_str());
    EndMove(s);
}

void Mover::OnOwnMoved(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_seg_note>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s)
        return;
    const uint32_t me = d_.host_id();
    const uint32_t from = peer->cfg.host_id;
    // Believed only from the host a move pending here goes to (the new
    // owner's announcement) or comes from (the old owner's "stays"), or as
    // the owner's catch-up after HELLO: before any other message about the
    // segment on this connection (OnPeerUp sends it first).  Anything else
    // is a protocol error.
    const bool pending = s->move && (s->move->to == from || s->owner == from);
    const bool catchup = m.host_id == from && !peer->heard.contains(s);
    const bool known = m.host_id == from && s->owner == from;  // changes nothing
    peer->heard.insert(s);
    if (!pending && !catchup && !known)
        return peer->conn->Fail(
            Status::Proto("OWN_MOVED from a host that does not own the segment"), f.hdr.type);
    if (m.host_id != from && !(s->move && s->owner == from))
        return peer->conn->Fail(
            Status::Proto("OWN_MOVED from a host that does not own the segment"), f.hdr.type);
    if (d_.IsOwner(s) && m.host_id != me) {
        g_warning("segment %s: host %u claims ownership, which this host holds: ignored",
                  s->cfg.name.c_str(), m.host_id);
        return;
    }
    if (!d_.IsOwner(s) && m.host_id == me) {
        // Only OWN_COMMIT makes this host the owner (with the lock table).
        return peer->conn->Fail(Status::Proto("OWN_MOVED names this host, which took no "
                                              "ownership over"),
                                f.hdr.type);
    }
    auto text = f.Extra(sizeof m);
    if (s->owner != m.host_id)
        g_message("segment %s: owner is now host %u", s->cfg.name.c_str(), m.host_id);
    s->SetOwner(m.host_id);
    s->owner_reason.assign(text.begin(), text.end());
    if (s->move)
        EndMove(s);
}

}  // namespace dshm

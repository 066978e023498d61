#include "handoff.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>

#include "agent.h"
#include "clients.h"
#include "daemon.h"
#include "home.h"
#include "liveness.h"
#include "locker.h"
#include "mover.h"
#include "peers.h"
#include "trace.h"
#include "writer.h"

namespace dshm {
namespace {

// A hand-off secret: 64 random bits from the kernel's CSPRNG, never 0.
uint64_t RandomToken() {
    uint64_t v = 0;
    while (v == 0) {
        ssize_t n = getrandom(&v, sizeof v, 0);
        if (n != static_cast<ssize_t>(sizeof v) && errno != EINTR)
            g_error("getrandom: %s", g_strerror(errno));  // (no entropy source: cannot go on)
    }
    return v;
}

}  // namespace

Handoff::~Handoff() {
    for (auto &[id, t] : tombstones_)
        g_source_remove(t.second);
}

void Handoff::OnMigrateOut(LocalClient *c, const Frame &f) {
    if (!c->ready)
        return c->conn->Fail(Status::NotAttached("MIGRATE_OUT before READY"), f.hdr.type);
    if (c->mig.migrate_tag || c->mig.flushing)
        return c->conn->Fail(Status::Pending("a MIGRATE_OUT is already pending"), f.hdr.type);
    c->mig.migrating_out = true;
    c->mig.migrate_tag = f.hdr.tag;
    c->mig.token = RandomToken();
    g_message(
        "%s migrates out: writing its changes back, keeping %zu lock(s) for the "
        "destination",
        c->conn->label().c_str(), c->held.size());
    MaybeFlush(c);
}

void Handoff::MaybeFlush(LocalClient *c) {
    if (!c->mig.migrate_tag || c->mig.flushing)
        return;
    for (const auto &[lock, pl] : c->pending) {
        if (pl.release)
            return;
    }
    Segment *s = c->seg;
    c->mig.flushing = true;
    if (d_.IsOwner(s)) {
        uint32_t bytes = 0;
        std::vector<Diff> diffs = d_.writer().CollectDirty(c, &bytes);
        c->mig.flush_pages = static_cast<uint32_t>(diffs.size());
        c->mig.flush_bytes = bytes;
        d_.locker().NoteMigratedOut(s, Holder{d_.host_id(), c->id}, c->mig.token);
        d_.home().StartRelease(s, 0, Holder{d_.host_id(), c->id}, *c->mig.migrate_tag,
                               RefsOf(diffs), ReleaseKind::kFlush);
        return;
    }
    c->mig.flush_pages = c->mig.flush_bytes = 0;
    const uint32_t id = c->id;
    uint32_t pages = 0, bytes = 0;
    d_.writer().SendWritebacks(c, ReleaseKind::kFlush, 0, &pages, &bytes);
    if (LocalClient *still = d_.clients().Find(id); still && still->mig.flushing) {
        still->mig.flush_pages = pages;
        still->mig.flush_bytes = bytes;
        d_.liveness().ReleaseSent(still, Liveness::kFlush);
    }
}

void Handoff::FlushDone(LocalClient *c, uint32_t status) {
    ClientMigration &mig = c->mig;
    if (!mig.flushing)
        return;
    mig.flushing = false;
    if (mig.flush_timer) {
        g_source_remove(mig.flush_timer);
        mig.flush_timer = 0;
    }
    const uint32_t tag = mig.migrate_tag.value_or(0);
    mig.migrate_tag.reset();
    if (status != DSHM_OK) {
        // The writes did not reach the owner: the migration must fail.  The
        // VM stays here with its device failed (the connection closes):
        // its locks go as at a death, not to a destination.
        mig.migrating_out = false;
        return c->conn->Fail(
            Status::FromCode(status, "writing the migrating VM's changes back failed"),
            DSHM_MSG_MIGRATE_OUT);
    }
    dshm_handoff t = {};
    t.host_id = d_.host_id();
    t.client_id = c->id;
    t.incarnation = mig.token;  // the secret (wire.h: the field's old name)
    t.pages_written = mig.flush_pages;
    t.bytes_written = mig.flush_bytes;
    g_message("%s: %u page(s), %u byte(s) written back; ready to migrate", c->conn->label().c_str(),
              t.pages_written, t.bytes_written);
    c->conn->Send(EncodeMsg(DSHM_MSG_MIGRATE_READY, tag, t));
}

void Handoff::AwaitFlushAck(LocalClient *c) {
    if (!c->mig.flushing || c->mig.flush_timer)
        return;
    g_message(
        "%s: owner lost while writing the migrating VM's changes back: waiting up to "
        "%u ms for its acknowledgement",
        c->conn->label().c_str(), d_.cfg().ack_timeout_ms);
    const uint32_t id = c->id;
    c->mig.flush_timer = AddTimer(d_.cfg().ack_timeout_ms,
                                  [this, id]() REQUIRES(loop_mutex) { OnFlushTimeout(id); });
}

void Handoff::OnOwnerLost(LocalClient *c) {
    if (!c->mig.adopting)
        return;
    g_message("%s: owner lost while adopting: the hand-off and %zu held-back command(s) fail",
              c->conn->label().c_str(), c->held_back.size());
    const Status lost = Status::OwnerLost("owner host lost during the adoption");
    bool fail_conn = false;
    for (Frame &f : c->held_back) {
        if (f.hdr.type == DSHM_MSG_ACQUIRE || f.hdr.type == DSHM_MSG_RELEASE)
            d_.clients().LockFailed(c, f.Fixed<dshm_lock_req>().lock_id, f.hdr.tag, lost);
        else
            fail_conn = true;
    }
    c->held_back.clear();
    const uint8_t none[DSHM_MAX_LOCKS / 8] = {};
    AdoptDone(c, DSHM_E_OWNER_LOST, none, none);
    if (fail_conn)
        c->conn->Fail(lost, DSHM_MSG_ADOPT);
}

void Handoff::OnFlushTimeout(uint32_t client) {
    LocalClient *c = d_.clients().Find(client);
    if (!c)
        return;
    c->mig.flush_timer = 0;  // this source ends here (FlushDone must not remove it)
    g_warning(
        "%s: no acknowledgement of its write-back from the owner within %u ms: the "
        "migration fails",
        c->conn->label().c_str(), d_.cfg().ack_timeout_ms);
    FlushDone(c, DSHM_E_OWNER_LOST);
}

void Handoff::OnPFlushAck(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_p_release_ack>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s || !d_.FromOwner(peer, f, s, true))
        return;
    if (m.status != DSHM_OK)
        s->pages->DropExcl(-1);  // (as for a refused release, Writer::OnPReleaseAck)
    LocalClient *c = d_.clients().Find(m.client_id);
    if (!c || c->seg != s)
        return;
    FlushDone(c, m.status);
}

void Handoff::OnAdopt(LocalClient *c, const Frame &f) {
    if (!c->ready)
        return c->conn->Fail(Status::NotAttached("ADOPT before READY"), f.hdr.type);
    if (!c->held.empty() || !c->pending.empty())
        return c->conn->Fail(Status::Proto("ADOPT by a client that already uses locks"),
                             f.hdr.type);
    auto t = f.Fixed<dshm_handoff>();
    Segment *s = c->seg;
    c->mig.adopting = true;
    c->mig.adopt_tag = f.hdr.tag;
    g_message("%s adopts client %u of host %u (a VM that migrated here)", c->conn->label().c_str(),
              t.client_id, t.host_id);
    if (d_.IsOwner(s)) {
        uint8_t held[DSHM_MAX_LOCKS / 8] = {}, queued[DSHM_MAX_LOCKS / 8] = {};
        if (!d_.locker().RenameHolder(s, Holder{t.host_id, t.client_id}, t.incarnation,
                                      Holder{d_.host_id(), c->id}, held, queued)) {
            return AdoptDone(c, DSHM_E_OWNER_LOST, held, queued);
        }
        AdoptDone(c, DSHM_OK, held, queued);
        d_.agent().OnVmArrived(s, c->vm(), t.host_id, d_.host_id());
        return;
    }
    dshm_p_adopt m = {};
    SetName(m.segment, s->cfg.name);
    m.from_host = t.host_id;
    m.from_client = t.client_id;
    m.to_host = d_.host_id();
    m.to_client = c->id;
    m.token = t.incarnation;
    SetName(m.vm_name, c->name.substr(0, DSHM_VMNAME_LEN - 1));
    std::copy(c->uuid.begin(), c->uuid.end(), m.vm_uuid);
    d_.peers().Send(s->owner, EncodeMsg(DSHM_MSG_P_ADOPT, 0, m));
}

void Handoff::AdoptDone(LocalClient *c, uint32_t status, const uint8_t *held,
                        const uint8_t *queued) {
    if (!c->mig.adopting)
        return;
    c->mig.adopting = false;
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
    c->conn->Send(EncodeMsg(DSHM_MSG_ADOPTED, c->mig.adopt_tag, r));
    d_.clients().ReplayHeldBack(c);
}

void Handoff::OnPAdopt(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_p_adopt>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), true);
    if (!s)
        return;
    if (m.to_host != peer->cfg.host_id)
        return peer->conn->Fail(Status::Proto("P_ADOPT for another host"), f.hdr.type);
    dshm_p_adopted r = {};
    SetName(r.segment, s->cfg.name);
    r.to_client = m.to_client;
    if (!d_.locker().RenameHolder(s, Holder{m.from_host, m.from_client}, m.token,
                                  Holder{m.to_host, m.to_client}, r.held, r.queued)) {
        r.status = DSHM_E_OWNER_LOST;  // (no policy: no VM arrived)
        peer->conn->Send(EncodeMsg(DSHM_MSG_P_ADOPTED, 0, r));
        return;
    }
    peer->conn->Send(EncodeMsg(DSHM_MSG_P_ADOPTED, 0, r));
    VmId vm{std::string(NameOf(m.vm_name)), {}};
    std::copy(std::begin(m.vm_uuid), std::end(m.vm_uuid), vm.uuid.begin());
    d_.agent().OnVmArrived(s, vm, m.from_host, m.to_host);
}

void Handoff::OnPAdopted(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_p_adopted>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s || !d_.FromOwner(peer, f, s, true))
        return;
    LocalClient *c = d_.clients().Find(m.to_client);
    if (!c || c->seg != s)
        return;  // gone meanwhile: the owner drops it on CLIENT_GONE
    AdoptDone(c, m.status, m.held, m.queued);
}

void Handoff::Tombstone(LocalClient *c) {
    const uint32_t id = c->id;
    tombstones_[id] = {c->seg,
                       AddTimer(d_.cfg().adopt_timeout_ms,
                                [this, id]() REQUIRES(loop_mutex) { OnTombstoneTimeout(id); })};
}

void Handoff::OnTombstoneTimeout(uint32_t id) {
    auto it = tombstones_.find(id);
    if (it == tombstones_.end())
        return;
    Segment *s = it->second.first;
    tombstones_.erase(it);
    g_message(
        "segment %s: no destination adopted migrated client %u within %u ms: "
        "dropping its locks",
        s->cfg.name.c_str(), id, d_.cfg().adopt_timeout_ms);
    d_.mover().Defer(
        s, [this, s, id]() REQUIRES(loop_mutex) { d_.locker().ForgetClientLocks(s, id); });
}

}  // namespace dshm

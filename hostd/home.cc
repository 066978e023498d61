#include "home.h"

#include <cstring>

#include "clients.h"
#include "daemon.h"
#include "diff.h"
#include "handoff.h"
#include "locker.h"
#include "marks.h"
#include "mover.h"
#include "msgs.h"
#include "os/memfd.h"
#include "peers.h"
#include "trace.h"

namespace dshm {

Home::~Home() {
    for (auto &[id, r] : releases_) {
        if (r->timer)
            g_source_remove(r->timer);
    }
}

// ---------------------------------------------------------------- fetches

void Home::OnFetch(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_fetch>();
    Phase("own-fetch", m.page, 0);
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), true);
    if (!s || !d_.PageInRange(peer, f, s, m.page))
        return;
    // Another host's mark on the page: served once the holder has given it
    // up, after every write-back it sent before (protocol.md section 6.1).
    const uint32_t host = peer->cfg.host_id, pg = m.page, tag = f.hdr.tag;
    if (!d_.marks().MarkedForOther(s, pg, host))
        return ServeFetch(peer, s, pg, tag);
    d_.marks().AfterRevoked(s, pg, [this, s, host, pg, tag]() REQUIRES(loop_mutex) {
        Peer *q = d_.peers().Find(host);
        if (q && q->Live() && d_.IsOwner(s))
            ServeFetch(q, s, pg, tag);  // (a host that reconnected fetches again)
    });
}

void Home::ServeFetch(Peer *peer, Segment *s, uint32_t pg, uint32_t tag) {
    dshm_page r = {};
    SetName(r.segment, s->cfg.name);
    r.page = pg;
    // Locally dirty: the last released content (the twin) is served.
    const uint8_t *src = s->pages->ServeFetch(pg, peer->cfg.host_id, s->Page(pg));
    std::vector<uint8_t> before;
    if (s->pages->inflight(pg) > 0)
        src = InFlightPreImage(s, pg, src, &before);
    else if (src == s->Page(pg) && IsHole(s, pg))
        src = ZeroPage();  // never written: zeros, without allocating the page here
    Trace("serve", peer->cfg.host_id, pg, src == s->Page(pg) ? 0 : 1, src);
    s->stats.fetches_served++;
    SendPageMsg(peer->conn.get(), DSHM_MSG_PAGE, tag, r, src);
    Phase("own-page", pg, 0);
}

bool Home::IsHole(Segment *s, uint32_t pg) {
    std::vector<bool> &known = s->home->known_present;
    if (known.size() != s->npages)
        known.assign(s->npages, false);
    if (known[pg])
        return false;
    auto r = os::PageIsPresent(s->memfd.get(), uint64_t(pg) * DSHM_PAGE_SIZE);
    if (!r.ok() || *r) {
        known[pg] = true;  // (on an error: read it as before)
        return false;
    }
    return true;
}

const uint8_t *Home::InFlightPreImage(Segment *s, uint32_t pg, const uint8_t *src,
                                      std::vector<uint8_t> *buf) {
    buf->assign(src, src + DSHM_PAGE_SIZE);
    for (auto &[host, frames] : s->home->buffered) {
        for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
            auto wb = it->Fixed<dshm_writeback>();
            if (wb.page != pg)
                continue;
            auto pre = it->Extra(sizeof wb);  // the pre-image (ApplyInFlight)
            (void)ApplyDiff(buf->data(), wb.encoding, pre.data(), pre.size());
        }
    }
    return buf->data();
}

// ---------------------------------------------------------------- write-backs

void Home::OnWriteback(Peer *peer, Frame &&f) {
    auto m = f.Fixed<dshm_writeback>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), true);
    if (!s || !d_.PageInRange(peer, f, s, m.page))
        return;
    auto &buf = s->home->buffered[peer->cfg.host_id];
    if (buf.empty())
        Phase("own-first-wb", peer->cfg.host_id, m.page);
    if (buf.size() >= s->npages) {
        return peer->conn->Fail(Status::Proto("more write-backs than pages before a P_RELEASE"),
                                f.hdr.type);
    }
    // Applied now, while the rest of the release is still on the wire; the
    // frame keeps the pre-image until the verdict (protocol.md section 6).
    Trace("apply-inflight", peer->cfg.host_id, m.page, s->pages->dirtiers(m.page), s->Page(m.page),
          s->pages->twin(m.page));
    std::span<uint8_t> data = f.MutableExtra(sizeof m);
    Status st =
        s->pages->ApplyInFlight(m.page, m.encoding, data.data(), data.size(), s->Page(m.page));
    if (!st.ok())  // the FrameReader validated the diff: not expected
        return peer->conn->Fail(st, f.hdr.type);
    buf.push_back(std::move(f));
}

void Home::CommitFrames(Segment *s, std::vector<Frame> &frames, uint32_t writer,
                        std::vector<DiffRef> *diffs) {
    diffs->reserve(frames.size());
    for (Frame &w : frames) {
        auto wb = w.Fixed<dshm_writeback>();
        std::span<uint8_t> data = w.MutableExtra(sizeof wb);
        // The diff goes out again only as UPDATE, to hosts with a copy.
        const bool want = s->pages->OtherHolders(wb.page, d_.host_id(), writer) != 0;
        s->pages->CommitInFlight(wb.page, wb.encoding, data.data(), data.size(), s->Page(wb.page),
                                 want);
        diffs->push_back(DiffRef{wb.page, wb.encoding, data});
    }
}

void Home::RevertFrames(Segment *s, std::vector<Frame> &frames, uint32_t writer) {
    if (frames.empty())
        return;
    for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
        auto wb = it->Fixed<dshm_writeback>();
        std::span<uint8_t> data = it->MutableExtra(sizeof wb);
        s->pages->RevertInFlight(wb.page, wb.encoding, data.data(), data.size(), s->Page(wb.page));
    }
    g_message("segment %s: %zu write-back(s) of host %u reverted (release not accepted)",
              s->cfg.name.c_str(), frames.size(), writer);
    s->stats.writebacks_reverted += frames.size();
    frames.clear();
}

void Home::DropInFlight(Segment *s, uint32_t host) {
    auto it = s->home->buffered.find(host);
    if (it == s->home->buffered.end())
        return;
    std::vector<Frame> frames = std::move(it->second);
    s->home->buffered.erase(it);
    RevertFrames(s, frames, host);
    d_.mover().MaybeSendSnapshot(s);
}

void Home::OnPRelease(Peer *peer, const Frame &f, ReleaseKind kind) {
    auto m = f.Fixed<dshm_p_release>();
    Phase("own-p-release", peer->cfg.host_id, m.npages);
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), true);
    if (!s)
        return;
    const uint32_t host = peer->cfg.host_id;
    auto &buffered = s->home->buffered;
    auto bit = buffered.find(host);
    const size_t nframes = bit == buffered.end() ? 0 : bit->second.size();
    if (m.host_id != host || nframes != m.npages) {
        // Failing the connection reverts what was applied (OnPeerLost).
        return peer->conn->Fail(Status::Proto("P_RELEASE does not match the write-backs before it"),
                                f.hdr.type);
    }
    std::vector<Frame> frames;
    if (bit != buffered.end()) {
        frames = std::move(bit->second);
        buffered.erase(bit);
    }
    Holder who{host, m.client_id};
    if (kind == ReleaseKind::kRelease &&
        s->home->locks.HolderOf(m.lock_id) != std::optional<Holder>(who)) {
        // Not (or no longer) the holder: its writes must not stay.
        RevertFrames(s, frames, host);
        peer->conn->Send(ReleaseAckMsg(DSHM_MSG_P_RELEASE_ACK, f.hdr.tag, s->cfg.name, m.lock_id,
                                       m.client_id, DSHM_E_NOT_HELD));
        d_.mover().MaybeSendSnapshot(s);
        return;
    }
    if (kind == ReleaseKind::kFlush)  // (P_FLUSH: dshm_p_flush, dshm_p_release's fields first)
        d_.locker().NoteMigratedOut(s, who, f.Fixed<dshm_p_flush>().token);
    else
        d_.locker().ForgetMigrated(s, who);
    std::vector<DiffRef> diffs;
    CommitFrames(s, frames, host, &diffs);
    s->stats.writebacks_applied += diffs.size();
    Phase("own-applied", host, diffs.size());
    StartRelease(s, m.lock_id, who, f.hdr.tag, diffs, kind);
}

// ---------------------------------------------------------------- releases

void Home::StartRelease(Segment *s, uint32_t lock, Holder who, uint32_t reply_tag,
                        std::span<const DiffRef> diffs, ReleaseKind kind) {
    const uint32_t me = d_.host_id();
    auto r = std::make_unique<Release>();
    r->id = next_id_++;
    r->seg = s;
    r->kind = kind;
    r->lock = lock;
    r->who = who;
    r->reply_tag = reply_tag;
    r->pages = static_cast<uint32_t>(diffs.size());
    if (Peer *wp = who.host != me ? d_.peers().Find(who.host) : nullptr)
        r->writer_conn = wp->connections;
    std::map<uint32_t, std::vector<uint32_t>> inval;
    for (const DiffRef &d : diffs) {
        const uint32_t pg = d.page;
        r->bytes += d.data.size();
        if (d.encoding == DSHM_ENC_FULL && who.host != me)
            r->whole.push_back(pg);
        const uint64_t targets = s->pages->InvalidationTargets(pg, me, who.host);
        if (targets == 0)
            continue;
        // Another host has a copy: if it keeps the page (local writers), it
        // gets this diff as UPDATE (OnInvalAck).
        r->diffs[pg] = {d.encoding, std::vector<uint8_t>(d.data.begin(), d.data.end())};
        for (uint32_t h = 0; h < DSHM_MAX_HOSTS; h++) {
            if (targets & (uint64_t(1) << h))
                inval[h].push_back(pg);
        }
    }
    for (auto &[h, pages] : inval) {
        Peer *peer = d_.peers().Find(h);
        if (!peer || !peer->up)
            continue;  // its copy is void anyway (punched when it lost us)
        for (auto &msg : ListMsgs<uint32_t>(DSHM_MSG_INVALIDATE, r->id, s->cfg.name, pages,
                                            DSHM_MAX_INVAL_PAGES)) {
            peer->conn->Send(std::move(msg));
            r->outstanding[h]++;
        }
        s->stats.invalidations_sent += pages.size();
    }
    Release *raw = r.get();
    releases_[r->id] = std::move(r);
    if (raw->outstanding.empty())
        return Finish(raw);
    const uint32_t id = raw->id;
    raw->timer =
        AddTimer(d_.cfg().ack_timeout_ms, [this, id]() REQUIRES(loop_mutex) { OnTimeout(id); });
}

bool Home::ReleasesInFlight(const Segment *s) const {
    for (const auto &[id, r] : releases_) {
        if (r->seg == s)
            return true;
    }
    return false;
}

void Home::OnTimeout(uint32_t id) {
    auto it = releases_.find(id);
    if (it == releases_.end())
        return;
    it->second->timer = 0;
    std::vector<uint32_t> late;
    for (auto &[h, n] : it->second->outstanding)
        late.push_back(h);
    for (uint32_t h : late) {
        Peer *peer = d_.peers().Find(h);
        g_warning("peer host %u did not acknowledge invalidations within %u ms: disconnecting it",
                  h, d_.cfg().ack_timeout_ms);
        if (peer && peer->conn)
            peer->conn->Close(Status::Proto("acknowledgement timeout"));
    }
}

void Home::Ack(uint32_t id, uint32_t host, int delta) {
    auto it = releases_.find(id);
    if (it == releases_.end())
        return;
    Release *r = it->second.get();
    auto o = r->outstanding.find(host);
    if (o == r->outstanding.end())
        return;
    o->second += delta;
    if (o->second <= 0)
        r->outstanding.erase(o);
    if (r->outstanding.empty())
        Finish(r);
}

void Home::Finish(Release *r) {
    Segment *s = r->seg;
    const bool flush = r->kind == ReleaseKind::kFlush;
    Status st;
    if (!flush) {
        std::optional<Holder> next;
        st = s->home->locks.Release(r->lock, r->who, &next);
        if (next)
            d_.locker().Grant(s, r->lock, *next);
    }
    if (r->who.host == d_.host_id()) {
        if (LocalClient *c = d_.clients().Find(r->who.client); c && flush)
            d_.handoff().FlushDone(c, st.code());
        else if (c)
            d_.clients().DeliverReleased(c, r->lock, st.code(), r->reply_tag, r->pages, r->bytes);
    } else if (Peer *wp = d_.peers().Find(r->who.host);
               !flush && (!wp || !wp->up || wp->connections != r->writer_conn)) {
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
        if (st.ok() && !flush)  // before the ack: the writer's next release may use them
            d_.marks().GrantAfterRelease(s, r->who.host, r->whole);
        d_.peers().Send(
            r->who.host,
            ReleaseAckMsg(flush ? DSHM_MSG_P_FLUSH_ACK : DSHM_MSG_P_RELEASE_ACK, r->reply_tag,
                          s->cfg.name, r->lock, r->who.client, st.code()));
        Phase("own-acked", r->who.host, r->pages);
    }
    if (r->timer)
        g_source_remove(r->timer);
    releases_.erase(r->id);
    d_.mover().MaybeSendSnapshot(s);  // an ownership move waits for releases in flight
}

void Home::OnInvalAck(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_pagelist>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), true);
    if (!s)
        return;
    auto extra = f.Extra(sizeof m);
    auto it = releases_.find(f.hdr.tag);
    if (it == releases_.end() || !it->second->outstanding.count(peer->cfg.host_id)) {
        return peer->conn->Fail(Status::Proto("INVAL_ACK for no invalidation in flight"),
                                f.hdr.type);
    }
    Release *r = it->second.get();
    int more = 0;
    for (uint32_t i = 0; i < m.count; i++) {
        uint32_t entry;
        memcpy(&entry, extra.data() + 4 * i, 4);
        const uint32_t pg = entry & ~DSHM_INVAL_KEPT;
        if (!d_.PageInRange(peer, f, s, pg))
            return;
        if (!(entry & DSHM_INVAL_KEPT)) {
            s->pages->LeftCopyset(pg, peer->cfg.host_id);  // punched there
            continue;
        }
        auto d = r->diffs.find(pg);
        if (d == r->diffs.end()) {
            return peer->conn->Fail(Status::Proto("INVAL_ACK keeps page " + std::to_string(pg) +
                                                  ", which this release did not invalidate"),
                                    f.hdr.type);
        }
        // The page is dirty there: send exactly this release's bytes, which
        // the host applies under its own writers (multiple-writer protocol).
        dshm_writeback u = {};
        SetName(u.segment, s->cfg.name);
        u.page = pg;
        u.encoding = d->second.first;
        peer->conn->Send(EncodeMsg(DSHM_MSG_UPDATE, f.hdr.tag, u, d->second.second.data(),
                                   d->second.second.size()));
        more++;
    }
    Ack(f.hdr.tag, peer->cfg.host_id, more - 1);
}

void Home::OnUpdateAck(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_page>();
    if (d_.PeerSegment(peer, f, NameOf(m.segment), true))
        Ack(f.hdr.tag, peer->cfg.host_id, -1);
}

void Home::OnDropCopy(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_seg_note>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), true);
    if (!s)
        return;
    if (m.host_id != peer->cfg.host_id)
        return peer->conn->Fail(Status::Proto("DROP_COPY for another host"), f.hdr.type);
    s->pages->DropHost(peer->cfg.host_id);
    // Its marks went with its copy (after every write-back it sent: FIFO).
    d_.marks().OnHostGone(s, peer->cfg.host_id);
}

// ---------------------------------------------------------------- lost hosts

void Home::OnHostLost(Segment *s, uint32_t host) {
    s->pages->DropHost(host);
    d_.marks().OnHostGone(s, host);
    d_.locker().OnHostLost(s, host);
}

void Home::OnHostLostReleases(uint32_t host) {
    std::vector<uint32_t> ids;
    for (auto &[id, r] : releases_) {
        if (r->outstanding.count(host))
            ids.push_back(id);
    }
    for (uint32_t id : ids)
        Ack(id, host, -1000000);
}

}  // namespace dshm

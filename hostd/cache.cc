#include "cache.h"

#include <linux/userfaultfd.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent.h"
#include "clients.h"
#include "daemon.h"
#include "handoff.h"
#include "liveness.h"
#include "marks.h"
#include "mover.h"
#include "msgs.h"
#include "os/uffd.h"
#include "peers.h"
#include "trace.h"
#include "watch.h"

namespace dshm {
namespace {
constexpr uint32_t kPage = DSHM_PAGE_SIZE;
}  // namespace

guint Cache::WatchUffd(LocalClient *c) {
    return WatchFdIo(c->uffd.get(), G_IO_IN, &Cache::OnUffdEvent, c);
}

// ---------------------------------------------------------------- faults

gboolean Cache::OnUffdEvent(gint fd, GIOCondition, gpointer p) {
    loop_mutex.AssertHeld();
    auto *c = static_cast<LocalClient *>(p);
    Cache &cache = c->daemon->cache();
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
            uint32_t pg = static_cast<uint32_t>((addr - c->base) / kPage);
            if (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
                cache.HandleWriteFault(c, pg, addr);
            else
                cache.HandleMissing(c, pg, addr);
        }
        if (*n < 16)
            break;
    }
    return G_SOURCE_CONTINUE;
}

void Cache::HandleMissing(LocalClient *c, uint32_t pg, uint64_t addr) {
    Phase("flt-event", pg, 0);
    Segment *s = c->seg;
    s->stats.missing_faults++;
    c->stats.missing_faults++;
    d_.agent().Record(c, Activity{.read_faults = 1});
    Trace("missing", c->id, pg, s->pages->state(pg));
    if (s->pages->TakeAhead(pg))
        s->stats.read_ahead_used++;  // read ahead, still in flight (or just filled)
    switch (s->pages->OnMissingFault(pg, c->id, addr)) {
        case PageTable::MissingAction::kFillZero:
            return FillZero(c, addr);
        case PageTable::MissingAction::kWake:
            (void)os::Wake(c->uffd.get(), addr, kPage);
            break;
        case PageTable::MissingAction::kWait:
            break;
        case PageTable::MissingAction::kFetch:
            if (s->move)
                return;  // sent to whichever host owns the segment after the move
            SendFetch(s, pg);
            Phase("flt-fetched", pg, 0);
            break;
    }
    ReadAhead(c, pg);
}

void Cache::ReadAhead(LocalClient *c, uint32_t pg) {
    // The kernel's on-demand readahead (mm/readahead.c), on the fault path:
    // a fault right after the previous one, or inside what was read ahead
    // for this client (clustered), continues a stream; anything else is
    // random access and drops the window.  A stream's first read-ahead
    // fetches 4 pages after the fault, each later one twice as many as the
    // one before (up to read-ahead-pages), from where the last one ended:
    // it is started when a fault reaches the newest window (the reader
    // waits on a page of it, or has read past it), so one window is in
    // flight while the reader consumes the one before.  Only INVALID pages
    // are fetched (none present, none in flight).  Reads of a page once it
    // is mapped are invisible to dshmd: a page read ahead counts as used
    // when a client faults on it, or when its stream's reader faults past
    // it.
    Segment *s = c->seg;
    const uint32_t max = d_.cfg().read_ahead_pages;
    if (max == 0 || d_.IsOwner(s) || s->move)
        return;
    ReadAheadState &ra = c->ra;
    const bool seq = ra.last != UINT32_MAX && pg == ra.last + 1;
    const bool in_stream = ra.window > 0 && pg >= ra.first && pg <= ra.end;
    ra.last = pg;
    if (!seq && !in_stream) {
        ra.window = 0;  // random: no read-ahead
        return;
    }
    if (ra.window > 0) {
        for (uint32_t q = std::max(ra.used_to, ra.first); q < pg; q++) {
            if (s->pages->TakeAhead(q))
                s->stats.read_ahead_used++;
        }
        ra.used_to = std::max(ra.used_to, pg);
        if (pg < ra.start)
            return;  // the newest window is still ahead of the reader
    }
    const uint32_t window =
        ra.window == 0 ? std::min<uint32_t>(4, max) : std::min(2 * ra.window, max);
    const uint32_t from = ra.window > 0 && pg < ra.end ? ra.end : pg + 1;
    if (ra.window == 0)
        ra.first = ra.used_to = from;
    const uint32_t to =
        static_cast<uint32_t>(std::min<uint64_t>(uint64_t(from) + window, s->npages));
    ra.window = window;
    ra.start = std::min(from, to);
    ra.end = to;
    // Corked: the window's FETCHes leave in one write (the fault's own
    // FETCH went first, alone).
    Peer *owner = d_.peers().Find(s->owner);
    Conn *conn = owner ? owner->Live() : nullptr;
    if (conn)
        conn->Cork();
    uint32_t n = 0;
    for (uint32_t q = from; q < to; q++) {
        if (s->pages->StartAheadFetch(q)) {
            SendFetch(s, q);
            n++;
        }
    }
    if (conn)
        conn->Uncork();
    if (n > 0)
        s->ahead_client = c->id;
    s->stats.read_ahead += n;
    c->stats.read_ahead += n;
}

void Cache::FillZero(LocalClient *c, uint64_t addr) {
    // A hole at the owner reads as zeros (write-protected: Invariant W).
    auto r = os::CopyPage(c->uffd.get(), addr, ZeroPage(), true, false);
    if (!r.ok() && r.err() == EEXIST)
        (void)os::Wake(c->uffd.get(), addr, kPage);
}

void Cache::HandleWriteFault(LocalClient *c, uint32_t pg, uint64_t addr) {
    Segment *s = c->seg;
    // A page another host holds the mark of: this client writes it once
    // the mark is given up (protocol.md section 6.1).
    if (d_.IsOwner(s) && d_.marks().MarkedForOther(s, pg, d_.host_id())) {
        return d_.marks().AfterRevoked(s, pg, [this, id = c->id, pg, addr]() REQUIRES(loop_mutex) {
            LocalClient *again = d_.clients().Find(id);
            if (again && again->uffd.valid())
                HandleWriteFault(again, pg, addr);
        });
    }
    Trace("wp-fault", c->id, pg, s->pages->dirtiers(pg), s->Page(pg), s->pages->twin(pg));
    const bool first = !c->dirty.contains(pg);
    if (s->pages->OnWriteFault(pg, first, s->Page(pg)) == PageTable::WriteAction::kRefault) {
        // Punched after the fault was raised: let it fault MISSING.
        (void)os::Wake(c->uffd.get(), addr, kPage);
        return;
    }
    if (first) {
        c->dirty.insert(pg);
        s->stats.wp_faults++;
        c->stats.wp_faults++;
        d_.agent().Record(c, Activity{.write_faults = 1});
    }
    const uint32_t ahead = first ? WriteAhead(c, pg) : 0;
    auto r = os::WriteProtect(c->uffd.get(), addr, uint64_t(1 + ahead) * kPage, false);
    if (!r.ok())
        g_warning("%s: unprotecting pages %u..%u: %s", c->conn->label().c_str(), pg, pg + ahead,
                  r.error().what.c_str());
}

uint32_t Cache::WriteAhead(LocalClient *c, uint32_t pg) {
    // A client that writes page p after p-1 is likely to write p+1 next:
    // the pages after p that are valid here and clean for c join c's dirty
    // set now (twins taken as for a fault), so that one ioctl makes them
    // writable with p.  Invariant W holds: each is in c's dirty set before
    // it is writable.  A page c then leaves unchanged costs a compare at
    // the release and sends nothing.
    Segment *s = c->seg;
    const uint32_t max = d_.cfg().write_ahead_pages;
    if (max == 0 || pg == 0 || !c->dirty.contains(pg - 1))
        return 0;
    uint32_t n = 0;
    for (uint32_t q = pg + 1; q < s->npages && n < max; q++, n++) {
        if (s->pages->state(q) != PageTable::kValid || c->dirty.contains(q) ||
            (d_.IsOwner(s) && s->pages->excl(q) >= 0))
            break;
        c->dirty.insert(q);
        (void)s->pages->OnWriteFault(q, true, s->Page(q));  // kValid: kUnprotect
    }
    s->stats.write_ahead += n;
    c->stats.write_ahead += n;
    return n;
}

// ---------------------------------------------------------------- fetches

void Cache::SendFetch(Segment *s, uint32_t pg) {
    s->stats.fetches_sent++;
    d_.peers().Send(s->owner, FetchMsg(s->cfg.name, pg));
    d_.liveness().FetchSent(s, pg);
}

void Cache::RefetchPending(Segment *s) {
    if (d_.IsOwner(s))
        return;
    for (uint32_t pg : s->pages->Fetching())
        SendFetch(s, pg);
}

void Cache::OnPeerUp(Peer *peer, Segment *s) {
    if (s->owner == peer->cfg.host_id && !s->move)
        RefetchPending(s);  // (the peer is up: they go out before its queue)
}

void Cache::OnPage(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_page>();
    Phase("flt-page", m.page, 0);
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s || !d_.PageInRange(peer, f, s, m.page))
        return;
    if (s->former_owner == peer->cfg.host_id && s->owner != peer->cfg.host_id)
        return;  // the old owner's late answer: fetched again from the new one (EndMove)
    if (!d_.FromOwner(peer, f, s, false))
        return;
    if (m.status != DSHM_OK) {
        // An owner never refuses a fetch (it fails the connection instead):
        // the fetch is sent again when the owner is back (OnPeerUp).
        return peer->conn->Fail(Status::Proto("PAGE for page " + std::to_string(m.page) +
                                              " with status " + StatusCodeName(m.status)),
                                f.hdr.type);
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
    if (s->clients.empty() && s->pages->fetching() == 0)
        DropLocalCopy(s);  // the last client left while fetches were outstanding
}

void Cache::InstallPage(Segment *s, uint32_t pg, const uint8_t *data,
                        const std::vector<PageTable::Waiter> &waiters) {
    // Invariant W holds for every other local client without a protect
    // here: the hole has carried its uffd-wp marker since the attach or
    // since PunchLocal; the copy below protects the waiter's PTE itself.
    bool installed = false;
    for (const auto &[cid, addr] : waiters) {
        LocalClient *c = d_.clients().Find(cid);
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
    if (!installed && s->pages->state(pg) == PageTable::kFetching) {
        // Nobody waits (a page read ahead, or its waiters died): filled all
        // the same with one UFFDIO_COPY, atomically (a client reading the
        // page meanwhile faults and is woken by the copy, and never sees it
        // half written), through the userfaultfd of the client that read
        // it ahead (its mapping then has it without a fault), else of any
        // local client.
        LocalClient *via = d_.clients().Find(s->ahead_client);
        if (!via || via->seg != s || !via->uffd.valid()) {
            via = nullptr;
            for (uint32_t cid : s->clients) {
                LocalClient *o = d_.clients().Find(cid);
                if (o && o->uffd.valid()) {
                    via = o;
                    break;
                }
            }
        }
        if (via) {
            auto r =
                os::CopyPage(via->uffd.get(), via->base + uint64_t(pg) * kPage, data, true, false);
            installed = r.ok() || r.err() == EEXIST;
        }
    }
    if (!installed && s->map) {
        // Nobody to copy through: fill it through dshmd's own mapping.
        memcpy(s->Page(pg), data, kPage);
        installed = true;
    }
    s->pages->Installed(pg, installed);
}

// ---------------------------------------------------------------- coherence

void Cache::ProtectRuns(LocalClient *c, const std::vector<uint32_t> &pages, const char *why) {
    // One ioctl per run: a per-page ioctl, each with its own TLB flush, cost
    // ~1.3 µs a page.
    ForEachRun(pages, [&](uint32_t first, uint32_t n) {
        loop_mutex.AssertHeld();  // (ForEachRun is no function of the loop's)
        auto wp = os::WriteProtect(c->uffd.get(), c->base + uint64_t(first) * kPage,
                                   uint64_t(n) * kPage, true);
        if (!wp.ok() && wp.err() != ESRCH)  // ESRCH: the client exited, its close is queued
            g_warning("%s: %s pages %u..%u: %s", c->conn->label().c_str(), why, first,
                      first + n - 1, wp.error().what.c_str());
    });
}

void Cache::PunchLocal(Segment *s, const std::vector<uint32_t> &pages) {
    if (pages.empty())
        return;
    ForEachRun(pages, [&](uint32_t first, uint32_t n) {
        for (uint32_t pg = first; pg < first + n; pg++)
            Trace("punch", pg, s->pages->dirtiers(pg), 0, s->Page(pg));
        auto r = os::PunchPage(s->memfd.get(), uint64_t(first) * kPage, uint64_t(n) * kPage);
        if (!r.ok())
            g_warning("segment %s: punching pages %u..%u: %s", s->cfg.name.c_str(), first,
                      first + n - 1, r.error().what.c_str());
        for (uint32_t pg = first; pg < first + n; pg++) {
            if (s->pages->TakeAhead(pg))
                s->stats.read_ahead_unused++;
            s->pages->Punched(pg);
        }
    });
    s->stats.invalidations_received += pages.size();
    for (uint32_t cid : s->clients) {
        LocalClient *c = d_.clients().Find(cid);
        if (c && c->uffd.valid())
            ProtectRuns(c, pages, "protecting punched");
    }
}

void Cache::OnInvalidate(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_pagelist>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s)
        return;
    if (s->owner != peer->cfg.host_id)
        return peer->conn->Fail(Status::NotOwner("INVALIDATE from a non-owner"), f.hdr.type);
    // Every page number is checked before any is acted on: a page marked
    // invalid must be punched in the same handler.
    std::vector<uint32_t> pages;
    if (Status st = PagesOf(f, s->npages, &pages); !st.ok())
        return peer->conn->Fail(st, f.hdr.type);
    std::vector<uint32_t> kept;  // INVAL_ACK entries
    std::vector<uint32_t> punch;
    for (uint32_t pg : pages) {
        Trace("inval", pg, f.hdr.tag, s->pages->dirtiers(pg));
        switch (s->pages->OnInvalidate(pg)) {
            case PageTable::InvalAction::kNotHere:  // none here, or a FETCH answered later
                break;
            case PageTable::InvalAction::kKeep:  // local writers: apply the UPDATE instead
                kept.push_back(pg | DSHM_INVAL_KEPT);
                break;
            case PageTable::InvalAction::kPunch:
                punch.push_back(pg);
                kept.push_back(pg);
                break;
        }
    }
    std::sort(punch.begin(), punch.end());  // no duplicates: a page punched once is INVALID
    PunchLocal(s, punch);
    peer->conn->Send(PageListMsg(DSHM_MSG_INVAL_ACK, f.hdr.tag, s->cfg.name, kept));
}

void Cache::OnUpdate(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_writeback>();
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s || !d_.PageInRange(peer, f, s, m.page) || !d_.FromOwner(peer, f, s, false))
        return;
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
    peer->conn->Send(EncodeMsg(DSHM_MSG_UPDATE_ACK, f.hdr.tag, r));
}

// ---------------------------------------------------------------- the copy

void Cache::ForgetClient(LocalClient *c) {
    Segment *s = c->seg;
    // Pages only this client dirtied go back to their twin (others are
    // write-protected in every other client, so nobody writes them
    // meanwhile).
    for (uint32_t pg : c->dirty)
        s->pages->DropDirtier(pg, s->Page(pg));
    c->dirty.clear();
    s->pages->ForgetClient(c->id);
}

void Cache::DropLocalCopy(Segment *s) {
    // Not during a move: this host may be about to own the segment (the
    // pages streaming in are then the only copy), or be handing it over
    // (its pages are the snapshot).  EndMove calls again.
    if (d_.IsOwner(s) || s->move || !s->clients.empty() || !s->memfd.valid())
        return;
    // Not while fetches are outstanding (pages read ahead, mostly): their
    // PAGEs, served before the owner reads DROP_COPY, would otherwise land
    // in the next copy, whose own fetches of those pages they would answer
    // with content the owner no longer invalidates here.  OnPage calls
    // again when the last one is in.  (With the owner's connection gone no
    // PAGE of it can come any more.)
    if (s->pages->fetching() > 0) {
        Peer *owner = d_.peers().Find(s->owner);
        if (owner && owner->Live())
            return;
    }
    uint64_t unused = 0;
    for (uint32_t pg = 0; pg < s->npages; pg++) {
        if (s->pages->dirtiers(pg))
            return;  // cannot happen without clients; never lose a write
        unused += s->pages->ahead(pg);
    }
    s->stats.read_ahead_unused += unused;
    munmap(s->map, s->cfg.size);
    s->map = nullptr;
    s->memfd.reset();
    s->pages = std::make_unique<PageTable>(s->npages, false);
    g_message("segment %s: no local VM uses it any more: local copy dropped", s->cfg.name.c_str());
    d_.mover().Defer(s, [this, s]() REQUIRES(loop_mutex) {
        d_.peers().Send(s->owner, SegNoteMsg(DSHM_MSG_DROP_COPY, s->cfg.name, d_.host_id()));
    });
}

void Cache::OnOwnerLost(Segment *s) {
    // Invalidations may be missed while disconnected: drop every clean copy
    // and every mark; fail lock requests in flight.
    s->pages->DropExcl(-1);
    std::vector<uint32_t> clean;
    for (uint32_t pg = 0; pg < s->npages; pg++) {
        if (s->pages->state(pg) == PageTable::kValid && s->pages->dirtiers(pg) == 0)
            clean.push_back(pg);
    }
    PunchLocal(s, clean);
    for (uint32_t cid : std::vector<uint32_t>(s->clients)) {  // (a failed adopt may close one)
        LocalClient *c = d_.clients().Find(cid);
        if (!c)
            continue;
        for (auto &[lock, pl] : c->pending)
            d_.clients().LockFailed(c, lock, pl.tag, Status::OwnerLost("owner host lost"));
        c->pending.clear();
        c->held.clear();
        d_.handoff().AwaitFlushAck(c);
        d_.handoff().OnOwnerLost(c);
    }
}

}  // namespace dshm

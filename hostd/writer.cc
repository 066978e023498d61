#include "writer.h"

#include <sys/uio.h>

#include <algorithm>
#include <deque>
#include <memory>

#include "agent.h"
#include "cache.h"
#include "clients.h"
#include "daemon.h"
#include "diff.h"
#include "home.h"
#include "liveness.h"
#include "peers.h"
#include "trace.h"

namespace dshm {
namespace {
constexpr uint32_t kPage = DSHM_PAGE_SIZE;
}  // namespace

std::vector<DiffRef> RefsOf(const std::vector<Diff> &diffs) {
    std::vector<DiffRef> refs;
    refs.reserve(diffs.size());
    for (const auto &d : diffs)
        refs.push_back({d.page, d.encoding, d.data});
    return refs;
}

std::vector<uint32_t> Writer::ProtectDirty(LocalClient *c) {
    // Invariant W first: write-protect all of c's dirty pages, then diff
    // them in page order.  A write by c after this faults and waits for this
    // handler, then re-dirties the page against the new twin, exactly as
    // after a per-page protect.
    std::vector<uint32_t> pages(c->dirty.begin(), c->dirty.end());
    std::sort(pages.begin(), pages.end());
    d_.cache().ProtectRuns(c, pages, "re-protecting");
    c->dirty.clear();
    return pages;
}

void Writer::AccountWriteback(LocalClient *c, uint64_t pages, uint64_t bytes) {
    Segment *s = c->seg;
    s->stats.pages_written_back += pages;
    s->stats.bytes_written_back += bytes;
    c->stats.pages_written_back += pages;
    c->stats.bytes_written_back += bytes;
    d_.agent().Record(c, Activity{.pages_written_back = pages, .bytes_written_back = bytes});
}

std::vector<Diff> Writer::CollectDirty(LocalClient *c, uint32_t *bytes) {
    Segment *s = c->seg;
    std::vector<Diff> out;
    std::vector<uint32_t> pages = ProtectDirty(c);
    out.reserve(pages.size());
    for (uint32_t pg : pages) {
        Diff d;
        d.page = pg;
        Trace("release-pre", c->id, pg, s->pages->dirtiers(pg), s->Page(pg), s->pages->twin(pg));
        d.encoding = s->pages->ReleaseDirty(pg, s->Page(pg), &d.data);
        Trace("release-diff", c->id, pg, static_cast<uint32_t>(d.data.size()));
        if (d.encoding)
            out.push_back(std::move(d));
    }
    *bytes = 0;
    for (const auto &d : out)
        *bytes += d.data.size();
    AccountWriteback(c, out.size(), *bytes);
    return out;
}

void Writer::OnRelease(LocalClient *c, const Frame &f) {
    const std::optional<uint32_t> req =
        d_.clients().TakeLockRequest(c, f, Clients::LockOp::kRelease);
    if (!req)
        return;
    const uint32_t lock = *req;
    Segment *s = c->seg;
    if (d_.IsOwner(s)) {
        uint32_t bytes = 0;
        std::vector<Diff> diffs = CollectDirty(c, &bytes);
        c->pending[lock] = PendingLock{true, f.hdr.tag, static_cast<uint32_t>(diffs.size()), bytes};
        d_.home().StartRelease(s, lock, Holder{d_.host_id(), c->id}, f.hdr.tag, RefsOf(diffs),
                               ReleaseKind::kRelease);
        return;
    }
    // No owner to send it to (it was lost, and with it this host's locks,
    // while this request was held back): it fails now, sending nothing, its
    // pages still dirty here; never queued for a later connection, where
    // the owner would refuse it anyway (protocol.md section 8).
    Peer *op = d_.peers().Find(s->owner);
    if (!op || !op->Live()) {
        c->held.erase(lock);
        return d_.clients().LockFailed(c, lock, f.hdr.tag,
                                       Status::OwnerLost("owner host not connected"));
    }
    // Pending before the burst: an owner lost during it fails the release.
    c->pending[lock] = PendingLock{true, f.hdr.tag, 0, 0};
    const uint32_t id = c->id;
    uint32_t pages = 0, bytes = 0;
    SendWritebacks(c, ReleaseKind::kRelease, lock, &pages, &bytes);
    if (LocalClient *still = d_.clients().Find(id)) {
        auto it = still->pending.find(lock);
        if (it != still->pending.end() && it->second.release) {
            it->second.pages += pages;  // (a stream adds its part when it ends)
            it->second.bytes += bytes;
            d_.liveness().ReleaseSent(still, lock);
        }
    }
}

namespace {
// One page's WRITEBACK appended to `chunk` (nothing when the page did not
// change); `borrowed` (or nullptr: copy it) receives where a page sent
// whole from the segment's memory goes.  Counts it in *n and *bytes.
struct Borrowed {
    size_t at;
    const uint8_t *page;
};
void AppendWriteback(Segment *s, uint32_t client_id, uint32_t pg, dshm_writeback *w,
                     std::vector<uint8_t> *diff, std::vector<uint8_t> *chunk,
                     std::vector<Borrowed> *borrowed, uint32_t *n, uint32_t *bytes) {
    size_t len = 0;
    bool whole = false;
    Trace("release-pre", client_id, pg, s->pages->dirtiers(pg), s->Page(pg), s->pages->twin(pg));
    // Under this host's mark a densely rewritten page goes whole
    // without the compare (protocol.md section 6.1).
    const bool unchecked = s->pages->excl(pg) >= 0 && s->pages->dirtiers(pg) == 1 &&
                           SampledAllBytesChanged(s->Page(pg), s->pages->twin(pg));
    w->encoding = s->pages->ReleaseDirty(pg, s->Page(pg), diff->data(), &len, &whole, unchecked);
    Trace("release-diff", client_id, pg, static_cast<uint32_t>(len));
    if (unchecked)
        s->stats.whole_unchecked++;
    if (!w->encoding)
        return;
    w->page = pg;
    const dshm_hdr hdr = {DSHM_MAGIC, DSHM_MSG_WRITEBACK, 0, static_cast<uint32_t>(sizeof *w + len),
                          0};
    const auto *h = reinterpret_cast<const uint8_t *>(&hdr);
    const auto *wb = reinterpret_cast<const uint8_t *>(w);
    chunk->insert(chunk->end(), h, h + sizeof hdr);
    chunk->insert(chunk->end(), wb, wb + sizeof *w);
    if (whole && borrowed)
        borrowed->push_back({chunk->size(), s->Page(pg)});
    else if (whole)
        chunk->insert(chunk->end(), s->Page(pg), s->Page(pg) + kPage);
    else
        chunk->insert(chunk->end(), diff->data(), diff->data() + len);
    (*n)++;
    *bytes += static_cast<uint32_t>(len);
}
}  // namespace

// The pages of a release not diffed yet, once its connection's queue is
// full (protocol.md section 2): each is diffed when the queue has room
// (Next, called by Conn::Refill), so that a release of any size costs this
// host a chunk at a time.  Until then a page stays write-protected with its
// twin and its dirtier; a write meanwhile re-dirties it (its client counts
// twice among the dirtiers, and the later diff carries the new bytes too,
// as step 2 of section 6 allows).  Dropped unfinished (the connection
// closed: the release failed), the pages go back to their client's dirty
// set, or are rolled back as a dead client's (Cache::OnClientGone).
struct Writer::Rest {
    Daemon *d = nullptr;
    std::shared_ptr<bool> alive;  // the Writer's
    Segment *s = nullptr;
    uint32_t client_id = 0;
    ReleaseKind kind = ReleaseKind::kRelease;
    uint32_t lock = 0;
    uint32_t burst_bytes = 0;  // diff bytes sent before the rest began
    std::vector<uint32_t> pages;
    size_t next = 0;                          // pages[next..] are not diffed yet
    uint32_t n = 0;                           // WRITEBACKs of the whole release
    uint32_t bytes = 0;                       // and their diff bytes
    uint32_t rest_n = 0;                      // of those, made here
    size_t *peak = nullptr;                   // Writer::rest_peak_
    size_t held = 0;                          // bytes in `diffed`
    dshm_p_flush tail = {};                   // P_RELEASE (or P_FLUSH), npages filled at the end
    bool ended = false;                       // the tail was produced
    std::deque<std::vector<uint8_t>> diffed;  // DiffAll's chunks

    // The next chunk of WRITEBACKs (the last one ending with the tail).
    std::optional<std::vector<uint8_t>> Next() REQUIRES(loop_mutex) {
        if (!diffed.empty()) {
            std::vector<uint8_t> c = std::move(diffed.front());
            diffed.pop_front();
            held -= c.size();
            return c;
        }
        if (ended)
            return std::nullopt;
        return Chunk(kWritebackChunk);
    }
    // Diffs every page left now (another release of the segment must not
    // overtake them), into `diffed`.
    void DiffAll() REQUIRES(loop_mutex) {
        while (!ended) {
            diffed.push_back(Chunk(kWritebackChunk));
            held += diffed.back().size();
            if (*alive)
                *peak = std::max(*peak, held);
        }
    }
    std::vector<uint8_t> Chunk(size_t max) REQUIRES(loop_mutex) {
        std::vector<uint8_t> chunk, diff(kMaxEncodedDiff);
        chunk.reserve(max + kMaxEncodedDiff + 64);
        dshm_writeback w = {};
        SetName(w.segment, s->cfg.name);
        while (next < pages.size() && chunk.size() < max) {
            const uint32_t before = n;
            AppendWriteback(s, client_id, pages[next++], &w, &diff, &chunk, nullptr, &n, &bytes);
            rest_n += n - before;
        }
        if (*alive)
            *peak = std::max(*peak, held + chunk.size());
        if (next == pages.size() && !ended) {
            ended = true;
            tail.npages = n;
            const std::vector<uint8_t> t =
                kind == ReleaseKind::kFlush
                    ? EncodeMsg(DSHM_MSG_P_FLUSH, 0, tail)
                    : Encode(DSHM_MSG_P_RELEASE, 0, &tail, sizeof(dshm_p_release));
            chunk.insert(chunk.end(), t.begin(), t.end());
            Finished();
        }
        return chunk;
    }
    // Counts what was made here with the client's request.
    void Finished() REQUIRES(loop_mutex) {
        if (!*alive)
            return;
        LocalClient *c = d->clients().Find(client_id);
        if (!c)
            return;
        const uint32_t diff_bytes = bytes - burst_bytes;
        if (kind == ReleaseKind::kFlush) {
            if (c->mig.flushing) {
                c->mig.flush_pages += rest_n;
                c->mig.flush_bytes += diff_bytes;
            }
        } else if (auto it = c->pending.find(lock); it != c->pending.end() && it->second.release) {
            it->second.pages += rest_n;
            it->second.bytes += diff_bytes;
        }
        d->writer().AccountWriteback(c, rest_n, diff_bytes);
    }

    ~Rest() {
        loop_mutex.AssertHeld();  // (destroyed by Conn, under the loop mutex)
        if (!*alive || next >= pages.size() || !s->pages)
            return;
        LocalClient *c = d->clients().Find(client_id);
        for (size_t k = next; k < pages.size(); k++) {
            const uint32_t pg = pages[k];
            if (c && c->seg == s && c->dirty.insert(pg))
                continue;  // dirty again for its next release
            // Written again meanwhile (counted twice: once is enough), or
            // its client is gone: as a dead client's page.
            if (s->Page(pg))
                s->pages->DropDirtier(pg, s->Page(pg));
        }
    }
};

Writer::Writer(Daemon &d) : d_(d), alive_(std::make_shared<bool>(true)) {}

Writer::~Writer() {
    *alive_ = false;
}

void Writer::FinishRest(Segment *s) {
    auto it = rests_.find(s);
    if (it == rests_.end())
        return;
    if (std::shared_ptr<Rest> r = it->second.lock())
        r->DiffAll();
    rests_.erase(it);
}

void Writer::SendWritebacks(LocalClient *c, ReleaseKind kind, uint32_t lock, uint32_t *pages_out,
                            uint32_t *bytes_out) {
    Segment *s = c->seg;
    const uint32_t client_id = c->id;
    const uint64_t token = kind == ReleaseKind::kFlush ? c->mig.token : 0;  // (P_FLUSH)
    // An earlier release's pages not diffed yet go first: this one's diffs
    // must not overtake theirs.
    FinishRest(s);
    Phase("rel-start", client_id, lock);
    std::vector<uint32_t> pages = ProtectDirty(c);
    Phase("rel-protected", client_id, pages.size());
    // The connection the burst starts on: if it closes during the burst,
    // the owner never sees this release's P_RELEASE (OnOwnerLost failed
    // the request); the rest is not queued for a later connection, where a
    // partial release would be a protocol error.  The Conn outlives a close
    // inside the burst (deferred deletion).
    Peer *op = d_.peers().Find(s->owner);
    Conn *conn = op ? op->Live() : nullptr;
    dshm_writeback w = {};
    SetName(w.segment, s->cfg.name);
    // Frames are built in `chunk`, except the data of a page this client
    // alone rewrote as a whole: that is sent from the segment's memory
    // (PageTable::ReleaseDirty's `whole`), and `borrowed` says where in the
    // chunk it goes.  Every chunk is sent or copied before this returns.
    std::vector<uint8_t> chunk, diff(kMaxEncodedDiff);
    std::vector<Borrowed> borrowed;
    std::vector<struct iovec> iov;
    chunk.reserve(kWritebackChunk);
    // Chunks go out at once while the connection's queue is short; past
    // Conn::kStreamQueueBytes the pages left are handed to the connection
    // as a stream (Conn::SendStream, Rest) that diffs them as the queue
    // drains: a release may carry the whole segment, far more than a
    // connection may queue.  Whatever is sent to the owner afterwards
    // follows it.
    auto flush = [&]() REQUIRES(loop_mutex) {
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
            // Lost during the burst: the release has failed (OnOwnerLost),
            // which punched the pages released so far (clean now): the
            // borrowed ones must not be read any more.
        } else if (conn) {
            conn->SendGather(iov);
        } else {
            d_.peers().Send(s->owner, Gathered(iov));
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
    size_t k = 0;
    for (; k < pages.size(); k++) {
        prefetch(k + kSampleAhead);
        AppendWriteback(s, client_id, pages[k], &w, &diff, &chunk, &borrowed, &n, &bytes);
        if (chunk.size() + borrowed.size() * kPage >= kWritebackChunk) {
            flush();
            if (conn && !conn->closed() && conn->queued_bytes() >= Conn::kStreamQueueBytes) {
                k++;
                break;
            }
        }
    }
    dshm_p_flush m = {};  // P_RELEASE: its dshm_p_release part
    SetName(m.segment, s->cfg.name);
    m.lock_id = lock;
    m.host_id = d_.host_id();
    m.client_id = client_id;
    m.token = token;
    static_assert(offsetof(dshm_p_flush, token) == sizeof(dshm_p_release));
    if (k < pages.size() && conn && !conn->closed()) {
        flush();
        auto rest = std::make_shared<Rest>();
        rest->d = &d_;
        rest->alive = alive_;
        rest->s = s;
        rest->client_id = client_id;
        rest->kind = kind;
        rest->lock = lock;
        rest->pages = std::move(pages);
        rest->next = k;
        rest->n = n;
        rest->bytes = bytes;
        rest->burst_bytes = bytes;
        rest->peak = &rest_peak_;
        rest->tail = m;
        rests_[s] = rest;
        conn->SendStream([rest]() REQUIRES(loop_mutex) { return rest->Next(); });
    } else {
        m.npages = n;
        const std::vector<uint8_t> tail =
            kind == ReleaseKind::kFlush ? EncodeMsg(DSHM_MSG_P_FLUSH, 0, m)
                                        : Encode(DSHM_MSG_P_RELEASE, 0, &m, sizeof(dshm_p_release));
        chunk.insert(chunk.end(), tail.begin(), tail.end());
        flush();
    }
    Phase("rel-sent", client_id, conn ? conn->queued_bytes() : 0);
    *pages_out = n;
    *bytes_out = bytes;
    if (LocalClient *still = d_.clients().Find(client_id))
        AccountWriteback(still, n, bytes);
}

void Writer::OnPReleaseAck(Peer *peer, const Frame &f) {
    auto m = f.Fixed<dshm_p_release_ack>();
    Phase("rel-acked", m.client_id, m.status);
    Segment *s = d_.PeerSegment(peer, f, NameOf(m.segment), false);
    if (!s || !d_.FromOwner(peer, f, s, true))
        return;
    // A refused release leaves bytes here that the owner reverted: a page
    // sent whole unchecked would carry them back, so every page is compared
    // from now on (the owner revokes the marks when it needs them).
    if (m.status != DSHM_OK)
        s->pages->DropExcl(-1);
    LocalClient *c = d_.clients().Find(m.client_id);
    if (!c || c->seg != s)
        return;
    auto it = c->pending.find(m.lock_id);
    if (it == c->pending.end() || !it->second.release)
        return;
    const PendingLock pl = it->second;
    d_.clients().DeliverReleased(c, m.lock_id, m.status, pl.tag, pl.pages, pl.bytes);
}

}  // namespace dshm

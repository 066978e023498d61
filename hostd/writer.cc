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
            it->second.pages = pages;
            it->second.bytes = bytes;
            d_.liveness().ReleaseSent(still, lock);
        }
    }
}

void Writer::SendWritebacks(LocalClient *c, ReleaseKind kind, uint32_t lock, uint32_t *pages_out,
                            uint32_t *bytes_out) {
    Segment *s = c->seg;
    const uint32_t client_id = c->id;
    const uint64_t token = kind == ReleaseKind::kFlush ? c->mig.token : 0;  // (P_FLUSH)
    Phase("rel-start", client_id, lock);
    const std::vector<uint32_t> pages = ProtectDirty(c);
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
        } else if (conn && rest->empty() && conn->queued_bytes() < Conn::kStreamQueueBytes) {
            conn->SendGather(iov);
        } else if (conn) {
            rest->push_back(Gathered(iov));
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
    for (size_t k = 0; k < pages.size(); k++) {
        const uint32_t pg = pages[k];
        prefetch(k + kSampleAhead);
        size_t len = 0;
        bool whole = false;
        Trace("release-pre", client_id, pg, s->pages->dirtiers(pg), s->Page(pg),
              s->pages->twin(pg));
        // Under this host's mark a densely rewritten page goes whole
        // without the compare (protocol.md section 6.1).
        const bool unchecked = s->pages->excl(pg) >= 0 && s->pages->dirtiers(pg) == 1 &&
                               SampledAllBytesChanged(s->Page(pg), s->pages->twin(pg));
        w.encoding = s->pages->ReleaseDirty(pg, s->Page(pg), diff.data(), &len, &whole, unchecked);
        Trace("release-diff", client_id, pg, static_cast<uint32_t>(len));
        if (unchecked)
            s->stats.whole_unchecked++;
        if (!w.encoding)
            continue;
        w.page = pg;
        const dshm_hdr hdr = {DSHM_MAGIC, DSHM_MSG_WRITEBACK, 0,
                              static_cast<uint32_t>(sizeof w + len), 0};
        const auto *h = reinterpret_cast<const uint8_t *>(&hdr);
        const auto *wb = reinterpret_cast<const uint8_t *>(&w);
        chunk.insert(chunk.end(), h, h + kHdr);
        chunk.insert(chunk.end(), wb, wb + sizeof w);
        if (whole)
            borrowed.push_back({chunk.size(), s->Page(pg)});
        else
            chunk.insert(chunk.end(), diff.data(), diff.data() + len);
        n++;
        bytes += static_cast<uint32_t>(len);
        if (chunk.size() + borrowed.size() * kPage >= kWritebackChunk)
            flush();
    }
    dshm_p_flush m = {};  // P_RELEASE: its dshm_p_release part
    SetName(m.segment, s->cfg.name);
    m.lock_id = lock;
    m.host_id = d_.host_id();
    m.client_id = client_id;
    m.npages = n;
    m.token = token;
    static_assert(offsetof(dshm_p_flush, token) == sizeof(dshm_p_release));
    const std::vector<uint8_t> tail =
        kind == ReleaseKind::kFlush ? EncodeMsg(DSHM_MSG_P_FLUSH, 0, m)
                                    : Encode(DSHM_MSG_P_RELEASE, 0, &m, sizeof(dshm_p_release));
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

// Writer: the releasing side of eager release consistency (protocol.md
// sections 6 and 8): at a client's RELEASE its dirty pages are
// write-protected (Invariant W), diffed against their twins and sent to the
// owner before the lock goes; the owner's P_RELEASE_ACK completes it.  On
// the owner host itself the diffs go straight to Home.
//
// Thread safety: every method REQUIRES the loop mutex.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "segment.h"
#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

class Daemon;
struct Peer;

// A diff made here (the owner host's own release).
struct Diff {
    uint32_t page;
    uint16_t encoding;
    std::vector<uint8_t> data;
};
// A diff held elsewhere (a Diff, or a buffered WRITEBACK frame).
struct DiffRef {
    uint32_t page;
    uint16_t encoding;
    std::span<const uint8_t> data;
};
std::vector<DiffRef> RefsOf(const std::vector<Diff> &diffs);

// A write-back that releases a lock, or a migrating client's flush (no
// lock is released: protocol.md section 11).
enum class ReleaseKind { kRelease, kFlush };

class Writer {
  public:
    explicit Writer(Daemon &d);
    ~Writer();
    Writer(const Writer &) = delete;
    Writer &operator=(const Writer &) = delete;

    // A client's RELEASE.
    void OnRelease(LocalClient *c, const Frame &f) REQUIRES(loop_mutex);
    // The owner's answer to this host's P_RELEASE.
    void OnPReleaseAck(Peer *peer, const Frame &f) REQUIRES(loop_mutex);

    // The owner host's own write-back: ProtectDirty, diffs, AccountWriteback;
    // *bytes = their encoded size.
    std::vector<Diff> CollectDirty(LocalClient *c, uint32_t *bytes) REQUIRES(loop_mutex);
    // Non-owner: ProtectDirty, then each page diffed into its WRITEBACK
    // frame (a page c alone rewrote as a whole is not copied: the frame's
    // data is written from the segment, Conn::SendGather, before this
    // returns); frames go to the owner in chunks of kWritebackChunk
    // bytes as they fill, so the owner receives the first pages while the
    // rest are diffed; once Conn::kStreamQueueBytes are queued, the pages
    // left are handed to the connection as a stream (Conn::SendStream) that
    // diffs them as it drains (Rest: a release of any size holds one chunk
    // here at a time); then P_RELEASE (or P_FLUSH: `kind`).  Accounts the
    // write-back; *pages and *bytes = pages and diff bytes written back so
    // far (the stream adds the rest to c's request when it ends).
    // The caller records its pending request BEFORE the call: losing the
    // owner during the burst fails it (Cache::OnOwnerLost), and the rest of
    // the burst is then dropped, not queued for the next connection (its
    // pages not diffed yet go back to c's dirty set).  c may be gone when
    // this returns (a client closed by a failed send).
    static constexpr size_t kWritebackChunk = 256u << 10;
    void SendWritebacks(LocalClient *c, ReleaseKind kind, uint32_t lock, uint32_t *pages,
                        uint32_t *bytes) REQUIRES(loop_mutex);
    // The most bytes of WRITEBACKs a release's rest held at once (one chunk,
    // kWritebackChunk and a page, unless another release of the segment
    // made it diff everything left at once): for the tests.
    size_t rest_peak() const REQUIRES(loop_mutex) { return rest_peak_; }
    // Whether a release's rest of s is still being streamed.
    bool rest_pending(const Segment *s) const REQUIRES(loop_mutex) {
        auto it = rests_.find(s);
        return it != rests_.end() && !it->second.expired();
    }

  private:
    // Write-protects c's dirty pages (Invariant W), one ioctl per run of
    // consecutive pages, and empties c's dirty set; returns the pages in
    // increasing order.  Each must then go through ReleaseDirty.
    std::vector<uint32_t> ProtectDirty(LocalClient *c) REQUIRES(loop_mutex);
    // Counts a write-back of c (segment and client counters, access monitor).
    void AccountWriteback(LocalClient *c, uint64_t pages, uint64_t bytes) REQUIRES(loop_mutex);

    // The pages of a release left to diff once its connection's queue is
    // full, diffed as it drains (writer.cc).
    struct Rest;
    // Diffs now whatever a rest of s has left (a new release of s must not
    // overtake it).
    void FinishRest(Segment *s) REQUIRES(loop_mutex);

    Daemon &d_;
    std::shared_ptr<bool> alive_;  // false once destroyed (a Rest may outlive it)
    std::map<const Segment *, std::weak_ptr<Rest>> rests_;
    size_t rest_peak_ = 0;
};

}  // namespace dshm

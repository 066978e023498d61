// Marks: single-writer marks (protocol.md section 6.1), both halves.
//
// The owner marks the pages of a finished remote release that one host
// alone rewrote whole and nobody else holds (GrantAfterRelease: EXCL_GRANT
// before the release's acknowledgement).  The holder then sends such a page
// whole at its next releases without comparing it.  Before anyone else may
// read or write a marked page the owner revokes the mark (EXCL_REVOKE) and
// queues the work until the holder's EXCL_REVOKED, which follows every
// write-back the holder sent before (same connection, FIFO).
//
// Thread safety: every method REQUIRES the loop mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "segment.h"
#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

class Daemon;
struct Peer;

class Marks {
  public:
    explicit Marks(Daemon &d) : d_(d) {}
    Marks(const Marks &) = delete;
    Marks &operator=(const Marks &) = delete;

    // Owner: whether page pg carries the mark of a host other than `host`
    // (a check on every fetch and local write fault: no allocation).
    bool MarkedForOther(const Segment *s, uint32_t pg, uint32_t host) const REQUIRES(loop_mutex) {
        const int holder = s->pages->excl(pg);
        return holder >= 0 && static_cast<uint32_t>(holder) != host;
    }
    // Owner: revokes pg's mark (once while a revoke is under way) and queues
    // `then` until the holder's EXCL_REVOKED (or its loss).
    // REQUIRES: pg is marked (MarkedForOther).
    void AfterRevoked(Segment *s, uint32_t pg, std::function<void()> then) REQUIRES(loop_mutex);
    // Owner: marks, for `host`, the pages of its finished release that it
    // sent whole and that qualify.  REQUIRES: the connection that carried
    // its P_RELEASE is still up (Home::Finish checks).
    void GrantAfterRelease(Segment *s, uint32_t host, const std::vector<uint32_t> &whole)
        REQUIRES(loop_mutex);
    // Owner: `host`'s marks are gone (it dropped its copy or was lost);
    // the work waiting for them runs now.
    void OnHostGone(Segment *s, uint32_t host) REQUIRES(loop_mutex);
    // Owner: true while a revoke is under way (a move waits for it).
    bool Revoking(const Segment *s) const REQUIRES(loop_mutex) {
        return !s->home->excl_waiting.empty();
    }

    // --- peer messages ---
    void OnFromOwner(Peer *peer, const Frame &f)
        REQUIRES(loop_mutex);  // EXCL_GRANT, EXCL_REVOKE (holder)
    void OnRevoked(Peer *peer, const Frame &f) REQUIRES(loop_mutex);  // EXCL_REVOKED (owner)

  private:
    // Owner: the work waiting for the marks of `pages` runs now.
    void RunWaiting(Segment *s, const std::vector<uint32_t> &pages) REQUIRES(loop_mutex);

    Daemon &d_;
};

}  // namespace dshm

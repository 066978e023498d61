// Cache: the copy of a segment that any host keeps for its local clients
// (protocol.md sections 2, 3, 5 and 7): faults, FETCH and the PAGE that
// answers it, installing and punching pages, INVALIDATE and UPDATE,
// dropping the copy when the last local client leaves, and what the
// owner's loss does to the copy.
//
// Faults: a client's userfaultfd is watched on the I/O thread (WatchUffd);
// a missing fault on an invalid page queues the client and sends one FETCH
// per page (PageTable decides); the PAGE is installed with one UFFDIO_COPY
// in write-protect mode and wakes every waiter.  A first write (a
// write-protect fault) adds the page to the client's dirty set, takes the
// twin, and unprotects it, with up to write-ahead-pages more pages for a
// sequential writer.  A sequential reader's missing faults fetch up to
// read-ahead-pages more pages ahead (ReadAhead); they are fetches and
// copies like any other.  On the owner the same code serves local clients:
// their misses read the owner's memfd (or zeros).
//
// Thread safety: every method REQUIRES the loop mutex.
#pragma once

#include <glib.h>

#include <cstdint>
#include <vector>

#include "pages.h"
#include "segment.h"
#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

class Daemon;
struct Peer;

class Cache {
  public:
    explicit Cache(Daemon &d) : d_(d) {}
    Cache(const Cache &) = delete;
    Cache &operator=(const Cache &) = delete;

    // Watches c's userfaultfd (on the I/O thread when there is one).
    guint WatchUffd(LocalClient *c) REQUIRES(loop_mutex);

    // --- peer messages ---
    void OnPage(Peer *peer, const Frame &f) REQUIRES(loop_mutex);
    void OnInvalidate(Peer *peer, const Frame &f) REQUIRES(loop_mutex);
    void OnUpdate(Peer *peer, const Frame &f) REQUIRES(loop_mutex);

    // FETCH of pg to s's owner (counted in fetches_sent).
    void SendFetch(Segment *s, uint32_t pg) REQUIRES(loop_mutex);
    // Sends FETCH to the owner for every page with a fetch outstanding
    // (after a move: the new owner answers them).
    void RefetchPending(Segment *s) REQUIRES(loop_mutex);
    // A peer is up: when it owns s (and no move is under way), the fetches
    // outstanding here may have been lost with the previous connection.
    void OnPeerUp(Peer *peer, Segment *s) REQUIRES(loop_mutex);
    // s's owner is lost: invalidations may be missed while disconnected, so
    // every clean copy and every mark goes; lock requests in flight fail
    // with E_OWNER_LOST; a flushing client waits for its ack (Handoff).
    void OnOwnerLost(Segment *s) REQUIRES(loop_mutex);

    // Fills page pg (a hole, write-protected in every local client since
    // the attach or its punch: PunchLocal) from `data`, through the first
    // waiter's uffd (UFFDIO_COPY in write-protect mode) or, with no waiter
    // left, through dshmd's mapping, and wakes `waiters`.  Costs
    // O(waiters), not O(local clients).
    void InstallPage(Segment *s, uint32_t pg, const uint8_t *data,
                     const std::vector<PageTable::Waiter> &waiters) REQUIRES(loop_mutex);
    // Owner: fills a hole with zeros for c's fault at addr.
    void FillZero(LocalClient *c, uint64_t addr) REQUIRES(loop_mutex);
    // Punches `pages` (increasing) out of this host's copy, one fallocate
    // per run of consecutive pages, then write-protects them again in every
    // local client, one ioctl per client and run (Invariant W: a punch keeps
    // the uffd-wp marker of a protected PTE, but drops it when a client
    // mapped the page during the punch; once the pages are holes nobody can
    // map them but dshmd's own UFFDIO_COPY, so the markers set now hold
    // until the page is filled).  REQUIRES: every page clean (no dirtier).
    void PunchLocal(Segment *s, const std::vector<uint32_t> &pages) REQUIRES(loop_mutex);
    // Write-protects `pages` (increasing) in c's mapping, one
    // UFFDIO_WRITEPROTECT per run of consecutive pages; failures are logged
    // with `why` (ESRCH, a client whose close is queued, silently).
    void ProtectRuns(LocalClient *c, const std::vector<uint32_t> &pages, const char *why)
        REQUIRES(loop_mutex);
    // c is closing: pages only it dirtied go back to their twin (its
    // unreleased writes never leave the host), and it waits for no page.
    void ForgetClient(LocalClient *c) REQUIRES(loop_mutex);
    // No local client uses s any more: drop this host's copy (not on the
    // owner, not during a move: EndMove calls again) and tell the owner.
    void DropLocalCopy(Segment *s) REQUIRES(loop_mutex);

  private:
    static gboolean OnUffdEvent(gint fd, GIOCondition, gpointer client);
    void HandleMissing(LocalClient *c, uint32_t pg, uint64_t addr) REQUIRES(loop_mutex);
    void HandleWriteFault(LocalClient *c, uint32_t pg, uint64_t addr) REQUIRES(loop_mutex);
    // c took a first-write fault on pg: if it wrote pg-1 before it (a
    // sequential writer), adds up to write-ahead-pages following pages
    // that are valid here and clean for c to c's dirty set (with twins).
    // Returns how many; the caller makes pg and those writable in one ioctl.
    uint32_t WriteAhead(LocalClient *c, uint32_t pg) REQUIRES(loop_mutex);
    // c took a missing fault on pg (non-owner): grows c's read-ahead window
    // for a sequential or clustered reader and fetches the next window's
    // INVALID pages (FETCHes corked into one write); random access drops
    // the window (read-ahead-pages, protocol.md section 3).
    void ReadAhead(LocalClient *c, uint32_t pg) REQUIRES(loop_mutex);

    Daemon &d_;
};

// Calls fn(first, count) for each run of consecutive pages of `pages`
// (increasing).
template <typename Fn>
void ForEachRun(const std::vector<uint32_t> &pages, Fn fn) {
    for (size_t i = 0; i < pages.size();) {
        size_t j = i + 1;
        while (j < pages.size() && pages[j] == pages[j - 1] + 1)
            j++;
        fn(pages[i], static_cast<uint32_t>(j - i));
        i = j;
    }
}

}  // namespace dshm

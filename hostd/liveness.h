// Liveness: the deadlines of the requests this host sends a segment's owner
// (protocol.md section 8).  TCP keepalive and TCP_USER_TIMEOUT (peers.cc)
// find a peer that is partitioned away or whose host died; this role finds
// an owner that is connected but does not answer: a FETCH or a P_RELEASE /
// P_FLUSH outstanding on the owner's live connection longer than it can
// legitimately take fails that connection (ERROR E_OWNER_LOST), and the
// close path (Peers::OnClosed, Daemon::OnPeerLost) does the rest exactly
// as for a TCP close: clients' lock requests fail with E_OWNER_LOST, faults
// wait for the next connection, which re-sends their fetches.
//
//   - A FETCH may wait at the owner for a revoke of a single-writer mark
//     from a third host (section 6.1), which the owner's own peer-timeout
//     bounds: its deadline is 2 x peer-timeout-ms.
//   - A release or flush may wait at the owner for the other hosts'
//     acknowledgements, which ack-timeout-ms bounds: its deadline is
//     ack-timeout-ms + peer-timeout-ms.
//   - A P_ACQUIRE has none: it waits for the lock's holder, for as long as
//     the holder holds it; the transport's bound finds a lost owner.
//
// A fault cannot be failed alone (a vCPU's access has no error to return),
// and it is never filled with zeros: it waits for the owner's next
// connection, which fetches its page again.  But when the owner has been
// unreachable for peer-timeout-ms more (after the time it took to declare
// it lost), each client with a fault waiting on it is failed: ERROR
// E_OWNER_LOST, its connection closed.  QEMU then marks its device FAILED
// and closes its userfaultfd, which releases the vCPUs (protocol.md
// section 8, "dshmd lost, seen from QEMU").
//
// While the segment's ownership moves no deadline is judged (the move's
// own bounds apply, protocol.md section 13).
//
// Requests are stamped when sent on a live connection; one timer checks
// them every quarter of peer-timeout-ms (so a deadline is met within a
// quarter of peer-timeout-ms).  A stamp of an earlier connection, or of a
// request answered meanwhile, is dropped at the check.
//
// Thread safety: every method REQUIRES the loop mutex.
#pragma once

#include <glib.h>

#include <cstdint>
#include <map>
#include <utility>

#include "segment.h"
#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

class Daemon;

class Liveness {
  public:
    explicit Liveness(Daemon &d) : d_(d) {}
    ~Liveness();
    Liveness(const Liveness &) = delete;
    Liveness &operator=(const Liveness &) = delete;

    // Starts the periodic check (Daemon::Start).
    void StartTimer() REQUIRES(loop_mutex);
    // A FETCH of s's page pg went to s's owner (or was queued for it).
    void FetchSent(const Segment *s, uint32_t pg) REQUIRES(loop_mutex);
    // Client c's release of `lock` (kFlush: its flush) went to its
    // segment's owner, all of it (P_RELEASE / P_FLUSH last).
    static constexpr uint32_t kFlush = UINT32_MAX;
    void ReleaseSent(const LocalClient *c, uint32_t lock) REQUIRES(loop_mutex);
    // Checks every deadline now (the timer's work; tests call it).
    void Check() REQUIRES(loop_mutex);

    uint64_t fetch_deadline_ms() const REQUIRES(loop_mutex);
    uint64_t release_deadline_ms() const REQUIRES(loop_mutex);

  private:
    struct Stamp {
        uint64_t ns = 0;
        uint32_t host = 0;
        uint64_t connection = 0;  // Peer::connections when sent
    };
    // The stamp of a request to `host` sent now, if its connection is live.
    bool StampNow(uint32_t host, Stamp *out) REQUIRES(loop_mutex);
    // Whether st's connection is still the peer's live one.
    bool Current(const Stamp &st) REQUIRES(loop_mutex);
    static gboolean OnTimer(gpointer self);

    Daemon &d_;
    std::map<std::pair<const Segment *, uint32_t>, Stamp> fetches_ GUARDED_BY(loop_mutex);
    // (client id, lock or kFlush)
    std::map<std::pair<uint32_t, uint32_t>, Stamp> releases_ GUARDED_BY(loop_mutex);
    // Peers not connected, since when (seen by Check).
    std::map<uint32_t, uint64_t> down_since_ GUARDED_BY(loop_mutex);
    // Fails the clients with faults waiting on an owner that has been
    // unreachable for peer-timeout-ms.
    void FailStrandedFaults(uint64_t now) REQUIRES(loop_mutex);
    guint timer_ GUARDED_BY(loop_mutex) = 0;
};

}  // namespace dshm

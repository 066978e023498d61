// Mover: moving a segment's ownership (protocol.md section 13).
//
// Old owner (StartMove, on the policy's word): OWN_MOVING to every peer
// that is up; each acknowledges after everything it sent before (FIFO),
// and holds back its owner-bound requests until the move is over.  Once
// every acknowledgement is in and no release, write-back or revoke is in
// flight, the pages the new owner lacks stream to it (OWN_PAGE, flow-
// controlled), then the copy sets (OWN_COPYSETS), the lock table
// (OWN_LOCKS) and OWN_COMMIT; from the COMMIT on this host is a host like
// the others.  New owner: installs the pages, takes copy sets and locks at
// OWN_COMMIT, and tells everybody with OWN_MOVED before it sends anything
// as owner.  Everyone: EndMove re-sends fetches to the new owner, runs the
// deferred work and replays held-back lock frames.  A lost new owner ends
// the move with ownership where it was; a lost old owner ends it too.
//
// Thread safety: every method REQUIRES the loop mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "segment.h"
#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

class Daemon;
struct Peer;

class Mover {
  public:
    // The most lock-table entries a move may carry (OWN_LOCKS): one holder
    // per lock and every waiter a table admits (lockq.h).
    static constexpr size_t kMaxLockEntries = DSHM_MAX_LOCKS + LockTable::kMaxWaiters;

    explicit Mover(Daemon &d) : d_(d) {}
    Mover(const Mover &) = delete;
    Mover &operator=(const Mover &) = delete;

    // Owner: starts moving s to host `to` (nothing if a move is under way
    // or `to` is not up).
    void StartMove(Segment *s, uint32_t to, const std::string &reason) REQUIRES(loop_mutex);
    // Runs `fn` now, or after the move when s is moving.
    void Defer(Segment *s, std::function<void()> fn) REQUIRES(loop_mutex);
    // Old owner: sends the snapshot and the COMMIT once nothing is waited
    // for any more; a no-op otherwise (called whenever a wait may be over).
    void MaybeSendSnapshot(Segment *s) REQUIRES(loop_mutex);

    // --- peer messages ---
    void OnOwnMoving(Peer *peer, const Frame &f) REQUIRES(loop_mutex);
    void OnOwnMovingAck(Peer *peer, const Frame &f) REQUIRES(loop_mutex);
    void OnOwnPage(Peer *peer, const Frame &f) REQUIRES(loop_mutex);
    void OnOwnCopysets(Peer *peer, const Frame &f) REQUIRES(loop_mutex);
    void OnOwnLocks(Peer *peer, const Frame &f) REQUIRES(loop_mutex);
    void OnOwnCommit(Peer *peer, const Frame &f) REQUIRES(loop_mutex);
    void OnOwnMoved(Peer *peer, const Frame &f) REQUIRES(loop_mutex);

    // A peer is up: tell it where ownership moved since dshmd.conf.
    void OnPeerUp(Peer *peer, Segment *s) REQUIRES(loop_mutex);
    // `host` is lost: the move waits for no acknowledgement of it; a move to
    // it or by it ends.
    void OnHostLost(Segment *s, uint32_t host) REQUIRES(loop_mutex);

  private:
    // The move is over (this host learnt the owner): requests flow again.
    void EndMove(Segment *s) REQUIRES(loop_mutex);
    // OWN_MOVED(this host, reason) to peer if it is up.
    void SendOwnMoved(Peer *peer, Segment *s, const std::string &reason) REQUIRES(loop_mutex);
    // Old owner, acknowledgements in: streams the pages the new owner lacks
    // from out->next on while `nc`'s output queue stays under
    // kSnapshotQueueBytes.  True once every page is sent; false when it
    // resumes later (the queue drained: MaybeSendSnapshot again) or the
    // connection closed under it (OnPeerLost has ended the move).
    bool SendSnapshotPages(Segment *s, Conn *nc) REQUIRES(loop_mutex);
    // A takeover message (OWN_PAGE, _COPYSETS, _LOCKS, _COMMIT) is only
    // valid at the new owner of a move, from the old owner; else the
    // connection fails and this returns false.
    bool FromOwnerToMe(Peer *peer, const Frame &f, const Segment *s) REQUIRES(loop_mutex);

    Daemon &d_;
};

}  // namespace dshm

// Locker: the lock protocol (protocol.md section 4).  The owner keeps each
// segment's FIFO lock table (HomeState::locks, lockq.h); a client on the
// owner host asks it directly, a client elsewhere through P_ACQUIRE, and
// is answered by Grant (locally, or with P_GRANT).  A release reaches the
// table through Home (after its write-backs and invalidations); a lock of
// a client that is gone is dropped and passed on (ForgetClientLocks,
// CLIENT_GONE, a lost host).
//
// Thread safety: every method REQUIRES the loop mutex.
#pragma once

#include <cstdint>
#include <vector>

#include "lockq.h"
#include "segment.h"
#include "status.h"
#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

class Daemon;
struct Peer;

class Locker {
  public:
    explicit Locker(Daemon &d) : d_(d) {}
    Locker(const Locker &) = delete;
    Locker &operator=(const Locker &) = delete;

    // A client's ACQUIRE.
    void OnAcquire(LocalClient *c, const Frame &f) REQUIRES(loop_mutex);
    // --- peer messages ---
    void OnPAcquire(Peer *peer, const Frame &f) REQUIRES(loop_mutex);    // owner
    void OnPGrant(Peer *peer, const Frame &f) REQUIRES(loop_mutex);      // the client's host
    void OnClientGone(Peer *peer, const Frame &f) REQUIRES(loop_mutex);  // owner

    // Owner: `lock` is `who`'s now; tell it.
    void Grant(Segment *s, uint32_t lock, Holder who) REQUIRES(loop_mutex);
    // Owner: drops every lock and request of `who`, passing locks on.
    void DropClientLocks(Segment *s, Holder who) REQUIRES(loop_mutex);
    // A local client is gone for good: its locks are dropped at the owner
    // (locally, or with CLIENT_GONE).
    void ForgetClientLocks(Segment *s, uint32_t client) REQUIRES(loop_mutex);
    // Owner: `who`'s flush arrived (it migrates out) with hand-off secret
    // `token`: an ADOPT with that token may rename it.
    void NoteMigratedOut(Segment *s, Holder who, uint64_t token) REQUIRES(loop_mutex);
    // Owner: `who` is no migrated-out client any more (dropped, or it uses
    // locks again: its migration failed).
    void ForgetMigrated(Segment *s, Holder who) REQUIRES(loop_mutex);
    // Owner: renames `from` to `to` in the lock table (a migrated VM) and
    // sets the bits of the locks `to` now holds and queues for, if `from`
    // migrated out with secret `token` (NoteMigratedOut; once).  False, and
    // nothing changes, otherwise: a token nobody migrated with (forged, or
    // its client's locks were dropped meanwhile).
    bool RenameHolder(Segment *s, Holder from, uint64_t token, Holder to, uint8_t *held,
                      uint8_t *queued) REQUIRES(loop_mutex);
    // Owner: `host` is lost: its locks go to the next in line.
    void OnHostLost(Segment *s, uint32_t host) REQUIRES(loop_mutex);

  private:
    // Without quorum (membership.h): the status a refused request gets
    // (counted; the first one after quorum was lost is logged), and the
    // P_GRANT that refuses one of host who.host.
    Status NoQuorum() REQUIRES(loop_mutex);
    std::vector<uint8_t> RefusedGrantMsg(const Segment *s, uint32_t lock, Holder who)
        REQUIRES(loop_mutex);
    // Grant() without quorum: `who` and every waiter after it are refused
    // the lock, which ends free.
    void RefuseGrants(Segment *s, uint32_t lock, Holder who) REQUIRES(loop_mutex);

    Daemon &d_;
};

}  // namespace dshm

// Handoff: a VM's live migration as dshm sees it (protocol.md section 11).
//
// Source: the VM's QEMU sends MIGRATE_OUT from its pre_save; once the
// client's own releases are done its dirty pages are written back (a
// flush: P_FLUSH, or Home directly on the owner) while it keeps its locks,
// and MIGRATE_READY returns the hand-off token.  When its connection then
// closes, a tombstone keeps its locks for adopt-timeout-ms.
// Destination: the new QEMU's client presents the token with ADOPT; the
// owner renames the source client's locks to it (P_ADOPT/P_ADOPTED) and
// the policy decides on the segment's ownership (Agent::OnVmArrived).
// A flush whose owner is lost waits ack-timeout-ms for its acknowledgement
// on a later connection, then fails with E_OWNER_LOST (the VM stays).
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
struct Peer;

class Handoff {
  public:
    explicit Handoff(Daemon &d) : d_(d) {}
    ~Handoff();
    Handoff(const Handoff &) = delete;
    Handoff &operator=(const Handoff &) = delete;

    // --- client messages ---
    void OnMigrateOut(LocalClient *c, const Frame &f) REQUIRES(loop_mutex);
    void OnAdopt(LocalClient *c, const Frame &f) REQUIRES(loop_mutex);
    // --- peer messages ---
    void OnPFlushAck(Peer *peer, const Frame &f) REQUIRES(loop_mutex);  // the source's host
    void OnPAdopt(Peer *peer, const Frame &f) REQUIRES(loop_mutex);     // owner
    void OnPAdopted(Peer *peer, const Frame &f) REQUIRES(loop_mutex);   // the destination's host

    // The flush starts once c's own releases are done (their completions
    // must not race with the lock hand-over).
    void MaybeFlush(LocalClient *c) REQUIRES(loop_mutex);
    // c's flush is over with `status`: MIGRATE_READY, or the migration fails.
    void FlushDone(LocalClient *c, uint32_t status) REQUIRES(loop_mutex);
    // The owner was lost while c was flushing: its P_FLUSH_ACK may still
    // come on the next connection (the P_FLUSH arrived); without it within
    // ack-timeout-ms the flush fails with E_OWNER_LOST.
    void AwaitFlushAck(LocalClient *c) REQUIRES(loop_mutex);
    // The owner was lost while c's ADOPT was at it: the adopt fails
    // (ADOPTED E_OWNER_LOST) and the lock commands held back behind it
    // fail with E_OWNER_LOST (a held-back MIGRATE_OUT or ADOPT fails the
    // connection); no answer would come for them.
    void OnOwnerLost(LocalClient *c) REQUIRES(loop_mutex);
    // A migrated-out client's connection closed: its locks wait for the
    // destination's ADOPT (or adopt-timeout-ms, then they are dropped).
    void Tombstone(LocalClient *c) REQUIRES(loop_mutex);
    bool IsTombstone(uint32_t client) const REQUIRES(loop_mutex) {
        return tombstones_.count(client) != 0;
    }

  private:
    void OnFlushTimeout(uint32_t client) REQUIRES(loop_mutex);
    void OnTombstoneTimeout(uint32_t client) REQUIRES(loop_mutex);
    void AdoptDone(LocalClient *c, uint32_t status, const uint8_t *held, const uint8_t *queued)
        REQUIRES(loop_mutex);

    Daemon &d_;
    // Migrated-out clients whose connection closed: id -> (segment, timer).
    std::map<uint32_t, std::pair<Segment *, guint>> tombstones_ GUARDED_BY(loop_mutex);
};

}  // namespace dshm

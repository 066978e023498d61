// Clients: the local clients of dshmd (QEMU's ivshmem device in DSM mode,
// dshm-attach, dshmctl) on its unix socket (protocol.md sections 2-4).
//
// A client says HELLO, ATTACHes to one segment (it gets the memfd), sends
// its UFFD (dshmd write-protects the whole mapping: Invariant W) and is
// READY; from then on its lock requests go to Locker (ACQUIRE), Writer
// (RELEASE) and Handoff (MIGRATE_OUT, ADOPT), through Daemon's router.
//
// Hold-back: while the client's adopt is in flight or its segment's
// ownership moves, its lock frames are queued in order and replayed after
// (ReplayHeldBack), so no owner-bound request leaves meanwhile.  At most
// kMaxHeldBack: a lock frame beyond is refused (LOCK_FAILED E_BUSY), a
// MIGRATE_OUT or ADOPT beyond fails the connection (E_BUSY).
//
// Answers: DeliverGranted and DeliverReleased are the one way a lock
// answer reaches a client, whether the owner is this host or another.
//
// A closed client (OnClosed): Cache drops its unreleased writes and its
// waits; Handoff keeps its locks for a destination (a migrated VM) or
// Locker drops them (after any move); Agent marks it detached; Cache drops
// the local copy when it was the segment's last client.
//
// Thread safety: every method REQUIRES the loop mutex.
#pragma once

#include <glib.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>

#include "os/result.h"
#include "segment.h"
#include "status.h"
#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

class Daemon;

class Clients {
  public:
    static constexpr size_t kMaxHeldBack = 512;

    explicit Clients(Daemon &d);
    ~Clients();
    Clients(const Clients &) = delete;
    Clients &operator=(const Clients &) = delete;

    // Listens on cfg().socket_path (a stale socket of a dead dshmd is
    // replaced; a live one is an error).
    Status Listen() REQUIRES(loop_mutex);

    LocalClient *Find(uint32_t id) REQUIRES(loop_mutex);
    const LocalClient *Find(uint32_t id) const REQUIRES(loop_mutex);

    // Frames in: held back (above) or routed.
    void OnFrame(LocalClient *c, Frame &&f) REQUIRES(loop_mutex);
    // Routes the held-back frames while nothing holds them any more.
    void ReplayHeldBack(LocalClient *c) REQUIRES(loop_mutex);

    void OnHello(LocalClient *c, const Frame &f) REQUIRES(loop_mutex);
    void OnAttach(LocalClient *c, const Frame &f) REQUIRES(loop_mutex);
    void OnUffd(LocalClient *c, Frame &f) REQUIRES(loop_mutex);
    void OnCtlQuery(LocalClient *c, const Frame &f) REQUIRES(loop_mutex);

    // The refusal (E_NOT_ATTACHED, E_BAD_LOCK, E_PENDING, E_NOT_HELD,
    // E_ALREADY_HELD) of a client's ACQUIRE (kAcquire) or RELEASE.
    enum class LockOp { kAcquire, kRelease };
    Status CheckLockRequest(const LocalClient *c, uint32_t lock, LockOp op) const
        REQUIRES(loop_mutex);
    // A lock request frame (ACQUIRE, RELEASE): its lock id when it may go
    // on (the client runs again: a migration that failed is over), else
    // nullopt after LOCK_FAILED with CheckLockRequest's refusal.
    std::optional<uint32_t> TakeLockRequest(LocalClient *c, const Frame &f, LockOp op)
        REQUIRES(loop_mutex);
    // LOCK_FAILED(lock, st) for request `tag`.
    void LockFailed(LocalClient *c, uint32_t lock, uint32_t tag, const Status &st)
        REQUIRES(loop_mutex);
    // `lock` is c's now: GRANTED for request `tag` (0: a lock c queued for
    // before it migrated here).
    void DeliverGranted(LocalClient *c, uint32_t lock, uint32_t tag) REQUIRES(loop_mutex);
    // c's release of `lock` (request `tag`) is over: RELEASED with the pages
    // and bytes written back, or LOCK_FAILED(status); then a migration
    // waiting for c's releases may flush.
    void DeliverReleased(LocalClient *c, uint32_t lock, uint32_t status, uint32_t tag,
                         uint32_t pages, uint32_t bytes) REQUIRES(loop_mutex);

  private:
    static gboolean OnAccept(gint fd, GIOCondition, gpointer self);
    bool HoldBack(LocalClient *c, Frame &f) REQUIRES(loop_mutex);
    void OnClosed(LocalClient *c, const Status &why) REQUIRES(loop_mutex);

    Daemon &d_;
    std::map<uint32_t, std::unique_ptr<LocalClient>> clients_ GUARDED_BY(loop_mutex);
    uint32_t next_id_ GUARDED_BY(loop_mutex) = 1;
    os::UniqueFd listen_ GUARDED_BY(loop_mutex);
    guint listen_watch_ GUARDED_BY(loop_mutex) = 0;
};

}  // namespace dshm

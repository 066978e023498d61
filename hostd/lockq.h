// LockTable: the lock state of one segment, kept by the segment's owner
// (docs/protocol.md section 4).  Each lock id 0..nlocks-1 is either free or
// held by exactly one client, identified by (host id, client id), and has a
// FIFO queue of waiting clients.
//
// Thread safety: a LockTable is not synchronized (a plain value, unannotated
// inside).  Const methods may run concurrently with each other; everything
// else needs external synchronization.  In dshmd the table belongs to its
// segment on the owner, which the loop mutex guards (watch.h): whichever
// thread holds the loop mutex (the loop thread or the I/O thread) uses it.
//
// Invariants, for every lock L:
//   - the queue of L is empty whenever L is free (a release or a drop hands
//     the lock to the head of the queue at once: no lock is free while
//     someone waits for it);
//   - a client appears at most once in {holder of L} + queue of L;
//   - grants happen strictly in arrival order (FIFO fairness).
// Locks are independent: nothing done to one lock changes another.
//
// Bounds (docs/protocol.md section 2): at most kMaxWaitersPerLock clients
// wait for one lock and kMaxWaiters for all the locks of the table; a
// request over either is refused with E_BUSY.  The requests come from other
// hosts (P_ACQUIRE), which choose the client ids: without the bounds one
// peer could queue without limit.
//
// The table only decides; replying to clients (GRANTED, P_GRANT, ...) and the
// write-back work of a release belong to the caller.  Cost: Acquire and
// Release O(1) (a hash set beside each queue answers "is it queued?");
// DropClient/DropHost/Rename visit every lock and waiter.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

#include "dshm/wire.h"
#include "status.h"

namespace dshm {

// A lock holder or waiter: a client of some host.
struct Holder {
    uint32_t host;    // host id, < DSHM_MAX_HOSTS
    uint32_t client;  // client id, unique within `host`

    bool operator==(const Holder &) const = default;
    uint64_t Key() const { return uint64_t(host) << 32 | client; }
};

class LockTable {
  public:
    static constexpr size_t kMaxWaitersPerLock = 1024;
    static constexpr size_t kMaxWaiters = 16384;

    // A table of `nlocks` free locks with ids 0..nlocks-1.
    // REQUIRES: 1 <= nlocks <= DSHM_MAX_LOCKS.
    explicit LockTable(uint32_t nlocks = DSHM_MAX_LOCKS);

    uint32_t nlocks() const { return static_cast<uint32_t>(locks_.size()); }

    // Requests `lock` for `who`.  If the lock is free it is granted at once
    // (*granted_now = true); otherwise `who` is queued behind the current
    // waiters (*granted_now = false) and will be returned by a later Release
    // or Drop* as the next holder.
    // Errors (nothing changes, *granted_now = false): E_BAD_LOCK if
    // lock >= nlocks(); E_ALREADY_HELD if `who` holds it; E_PENDING if `who`
    // is already queued for it; E_BUSY if `who` would have to wait and
    // kMaxWaitersPerLock wait for `lock` already, or kMaxWaiters in all.
    Status Acquire(uint32_t lock, Holder who, bool *granted_now);

    // Releases `lock` held by `who` and grants it to the first waiter, if
    // any: *next_holder is that waiter (now the holder), or nullopt when the
    // lock became free.
    // Errors (nothing changes, *next_holder = nullopt): E_BAD_LOCK if
    // lock >= nlocks(); E_NOT_HELD if `who` does not hold it (even if `who`
    // is queued for it).
    Status Release(uint32_t lock, Holder who, std::optional<Holder> *next_holder);

    // Forgets client `who` (its connection closed): removes it from every
    // queue and releases every lock it holds.  Returns the resulting grants,
    // (lock, new holder), in increasing lock order.
    std::vector<std::pair<uint32_t, Holder>> DropClient(Holder who);

    // Forgets every client of `host` (the host is gone): as DropClient for
    // each of them.  A lock held by a client of `host` goes to its first
    // waiter that is not on `host`.  Returns the grants in increasing lock
    // order.
    std::vector<std::pair<uint32_t, Holder>> DropHost(uint32_t host);

    // A client moved (a VM migrated to another host and became client `to`
    // there): `to` takes `from`'s place in every hold and every queue, so it
    // keeps the locks `from` held and its queue positions.  Appends the
    // locks `to` now holds to *held and those it waits for to *queued.
    // REQUIRES: `to` appears nowhere in the table (it is a new client).
    void Rename(Holder from, Holder to, std::vector<uint32_t> *held, std::vector<uint32_t> *queued);

    // The whole table as (lock, client, position) entries, position 0 being
    // the holder and 1.. the waiters in FIFO order, in lock order: what
    // moves to a new owner host (docs/protocol.md section 13).
    struct Entry {
        uint32_t lock;
        Holder who;
        uint32_t pos;
    };
    std::vector<Entry> Export() const;
    // Rebuilds the table from Export()'s entries (in that order).
    // Errors (E_PROTO, the table is then left empty): a lock id out of
    // range, a waiter before its holder or out of order, a client twice in
    // one lock, more waiters than the bounds allow.  REQUIRES: the table is empty (every lock
    // free).
    Status Import(const std::vector<Entry> &entries);

    // The holder of `lock`, or nullopt if it is free or lock >= nlocks().
    std::optional<Holder> HolderOf(uint32_t lock) const;

    // The number of clients queued for `lock` (0 if lock >= nlocks()).
    size_t Waiters(uint32_t lock) const;
    // The number of clients queued for any lock.
    size_t TotalWaiters() const { return total_waiters_; }

    // For status display: (lock, holder, number of waiters) for every held
    // lock, in increasing lock order.
    std::vector<std::tuple<uint32_t, Holder, size_t>> Snapshot() const;

  private:
    struct Lock {
        std::optional<Holder> holder;
        std::deque<Holder> waiters;           // FIFO; front is granted next
        std::unordered_set<uint64_t> queued;  // Key() of every waiter
    };
    // Hands `l` to its first waiter, if any (the holder was removed).
    std::optional<Holder> GrantNext(Lock &l);

    // Removes from every queue and every hold the clients matching `match`,
    // handing over freed locks; returns the grants in lock order.
    template <typename Match>
    std::vector<std::pair<uint32_t, Holder>> Drop(Match match);

    std::vector<Lock> locks_;
    size_t total_waiters_ = 0;  // sum of every lock's waiters.size()
};

}  // namespace dshm

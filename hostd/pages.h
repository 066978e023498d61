// PageTable: the page state machine of one segment at one host
// (docs/protocol.md section 4), without any I/O.
//
// The daemon reports events (a missing fault, a write fault, a PAGE, an
// INVALIDATE, an UPDATE, a release, a client's death) and performs the
// system calls the answers call for (fetch, UFFDIO_COPY, wake, protect,
// punch); the table decides and keeps the state: per page INVALID /
// FETCHING / VALID, the number of local dirtiers, the twin, the queue of
// clients waiting for a fetch, and — on the owner — the copy set.
//
// `content` arguments point at the page in the host's memfd mapping (the
// live page shared with the clients).  The table reads it to take twins and
// diffs and writes it only to apply diffs (exactly the changed bytes) or to
// roll back a dead client's writes.
//
// Invariants:
//   - twin(p) != nullptr  <=>  dirtiers(p) > 0;
//   - waiters(p) non-empty =>  state(p) == kFetching (non-owner);
//   - on the owner every page is kValid and never has waiters;
//   - inflight(p) > 0 only on the owner;
//   - on the owner, excl(p) >= 0 => no other host is in p's copy set
//     unless a revoke of the mark is under way (the daemon keeps it so).
//
// Thread safety: none of its own (a plain value, unannotated inside).  In
// dshmd a PageTable belongs to its segment, which the loop mutex guards
// (watch.h): it is used by whichever thread holds the loop mutex, the loop
// thread or the I/O thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "status.h"

namespace dshm {

// A set of page numbers with O(1) insert and no allocation per element:
// a client's dirty set (inserted at each first write fault, walked and
// emptied at each release).  Iterates in insertion order.
class PageSet {
  public:
    // Returns true if p was not in the set.
    bool insert(uint32_t p) {
        if (p >= in_.size())
            in_.resize(std::max<size_t>(p + 1, 2 * in_.size()), false);
        if (in_[p])
            return false;
        in_[p] = true;
        pages_.push_back(p);
        return true;
    }
    void clear() {
        for (uint32_t p : pages_)
            in_[p] = false;
        pages_.clear();
    }
    bool contains(uint32_t p) const { return p < in_.size() && in_[p]; }
    bool empty() const { return pages_.empty(); }
    size_t size() const { return pages_.size(); }
    auto begin() const { return pages_.begin(); }
    auto end() const { return pages_.end(); }

  private:
    std::vector<uint32_t> pages_;
    std::vector<bool> in_;
};

class PageTable {
  public:
    enum State : uint8_t { kInvalid, kFetching, kValid };
    struct Waiter {
        uint32_t client;
        uint64_t addr;
    };

    // All pages kValid when `owner`, else kInvalid.
    PageTable(uint32_t npages, bool owner);

    uint32_t size() const { return static_cast<uint32_t>(pages_.size()); }
    State state(uint32_t p) const { return pages_[p].state; }
    uint32_t dirtiers(uint32_t p) const { return pages_[p].ndirtiers; }
    const uint8_t *twin(uint32_t p) const { return pages_[p].twin.get(); }
    uint64_t copyset(uint32_t p) const { return pages_[p].copyset; }
    size_t waiters(uint32_t p) const { return pages_[p].waiters.size(); }
    const std::vector<Waiter> &WaitersOf(uint32_t p) const { return pages_[p].waiters; }

    // --- faults ---
    enum class MissingAction {
        kFillZero,  // owner: fill with zeros (write-protected)
        kWake,      // the page is present already: wake the client
        kWait,      // a fetch is outstanding: the client was queued
        kFetch,     // send FETCH now: the client was queued
    };
    MissingAction OnMissingFault(uint32_t p, uint32_t client, uint64_t addr);

    enum class WriteAction {
        kRefault,    // the page is not valid any more: wake, it refaults missing
        kUnprotect,  // unprotect for the client (twin taken if needed)
    };
    // `first`: the page was not yet in the client's dirty set.
    // REQUIRES: content valid when state(p) == kValid.
    WriteAction OnWriteFault(uint32_t p, bool first, const uint8_t *content);

    // --- fetches (non-owner) ---
    // PAGE arrived: returns the queued waiters (state stays kFetching until
    // Installed).  Empty when no fetch was outstanding (a late duplicate).
    std::vector<Waiter> TakeWaiters(uint32_t p);
    // The page was filled (kValid) or could not be (kInvalid: nobody left).
    void Installed(uint32_t p, bool ok);
    // A client died: forget it in every wait queue.
    void ForgetClient(uint32_t client);
    // Pages with a fetch outstanding (to send again after a reconnect).
    std::vector<uint32_t> Fetching() const;
    // How many (O(1)).
    uint32_t fetching() const { return nfetching_; }

    // --- read-ahead (non-owner; protocol.md section 3) ---
    // A fetch of p ahead of a sequential reader: an INVALID page becomes
    // FETCHING with no waiter, flagged `ahead` (returns true: send FETCH);
    // any other page is left as it is (false).  From here on the page is a
    // fetch and then a copy like any other: PAGE, INVALIDATE and UPDATE
    // treat it exactly as a demand fetch.
    bool StartAheadFetch(uint32_t p);
    // Whether p was read ahead and no client is known to have used it yet.
    bool ahead(uint32_t p) const { return pages_[p].ahead; }
    // Clears the flag; returns whether it was set.
    bool TakeAhead(uint32_t p) {
        const bool was = pages_[p].ahead;
        pages_[p].ahead = false;
        return was;
    }

    // --- releases ---
    // One dirtier of p releases: encodes into *out the bytes of `content`
    // that differ from the twin (returns the encoding, 0 if none), then
    // drops the twin if it was the last dirtier, else advances the twin by
    // exactly that diff (never by a copy: another dirtier may be writing).
    uint16_t ReleaseDirty(uint32_t p, const uint8_t *content, std::vector<uint8_t> *out);
    // The same, encoding into out[0, *len) (EncodeDiffTo: a WRITEBACK built
    // in place).  REQUIRES: out has kMaxEncodedDiff (diff.h) writable bytes.
    uint16_t ReleaseDirty(uint32_t p, const uint8_t *content, uint8_t *out, size_t *len);
    // The same, except that when `whole` is given, this is p's only dirtier
    // and every byte of `content` differs from the twin, nothing is copied:
    // returns FULL with *len = kPageSize and *whole = true, the diff being
    // `content` itself (else *whole = false and the diff is in out[0, *len)
    // as above).
    // `unchecked`: p is this host's only dirtier's and carries this host's
    // exclusive mark, so it is sent whole without comparing it with the
    // twin (protocol.md section 6.1; *whole = true).
    // REQUIRES: as above; and the caller sends `content` before anything can
    // write it again (the releasing client's mapping is write-protected and
    // no other local client may write p, so: before returning to the main
    // loop, whose handlers are the only other writers).
    uint16_t ReleaseDirty(uint32_t p, const uint8_t *content, uint8_t *out, size_t *len,
                          bool *whole, bool unchecked = false);
    // A dirtier died without releasing: if it was the only one, rolls
    // `content` back to the twin and returns true.
    bool DropDirtier(uint32_t p, uint8_t *content);

    // --- invalidations and updates (non-owner) ---
    enum class InvalAction {
        kNotHere,  // invalid or fetching: nothing to do, not reported
        kPunch,    // clean: state is now kInvalid; punch the page
        kKeep,     // dirty: keep; the owner sends the diff as UPDATE
    };
    InvalAction OnInvalidate(uint32_t p);
    // The page was dropped for another reason (owner lost).  REQUIRES: clean.
    void Punched(uint32_t p);
    // An UPDATE (another writer's released diff): applied to `content` and
    // the twin when the page is valid (*applied = true), else ignored.
    Status OnUpdate(uint32_t p, uint16_t encoding, const uint8_t *data, size_t len,
                    uint8_t *content, bool *applied);

    // --- owner side ---
    // FETCH from `host`: the content to send (the twin while local clients
    // write the page: the last released content); `host` joins the copy set.
    const uint8_t *ServeFetch(uint32_t p, uint32_t host, const uint8_t *content);
    // --- another host's release, applied as it arrives (protocol.md section 6) ---
    // A WRITEBACK of a release whose verdict (P_RELEASE) is still to come:
    // applied to `content` and, while local clients write the page, to the
    // twin (the released content).  data[0, len) becomes the pre-image of
    // `content` (SwapDiff), so that RevertInFlight can undo it; inflight(p)
    // counts such write-backs until they are committed or reverted.
    // An invalid diff is refused and changes nothing.  REQUIRES: data is
    // writable.
    Status ApplyInFlight(uint32_t p, uint16_t encoding, uint8_t *data, size_t len,
                         uint8_t *content);
    // The release was accepted.  When `want_diff`, data[0, len) is turned
    // back into the applied diff (ExtractDiff from `content`: exact unless a
    // racing writer wrote the same bytes meanwhile), to be sent as UPDATE.
    // REQUIRES: a matching ApplyInFlight.
    void CommitInFlight(uint32_t p, uint16_t encoding, uint8_t *data, size_t len,
                        const uint8_t *content, bool want_diff);
    // The release failed (not the holder, or its host vanished before its
    // P_RELEASE): the bytes it covered get their pre-image back in `content`
    // and in the twin if there is one now (a local client that started
    // writing the page meanwhile took the applied bytes into its twin).
    // Several in-flight write-backs of one page are reverted newest first.
    // REQUIRES: a matching ApplyInFlight.
    void RevertInFlight(uint32_t p, uint16_t encoding, uint8_t *data, size_t len,
                        uint8_t *content);
    uint32_t inflight(uint32_t p) const { return pages_[p].inflight; }
    // The hosts to invalidate for a release of p by `writer` (the copy set
    // minus `self` and `writer`); the writer joins the copy set.  Hosts leave
    // it only through LeftCopyset.
    uint64_t InvalidationTargets(uint32_t p, uint32_t self, uint32_t writer);
    // The same hosts, without changing the copy set.
    uint64_t OtherHolders(uint32_t p, uint32_t self, uint32_t writer) const;
    // `host` reported the page punched.
    void LeftCopyset(uint32_t p, uint32_t host);
    // `host` is gone: it leaves every copy set.
    void DropHost(uint32_t host);

    // --- single-writer marks (docs/protocol.md section 6.1) ---
    // The host that holds p's exclusive mark, as this host knows it (-1:
    // none).  On the owner: the host it granted the mark to.  On another
    // host: its own id while it holds the mark (Punched drops it).
    int excl(uint32_t p) const { return pages_[p].excl; }
    // REQUIRES: host < DSHM_MAX_HOSTS, or -1.
    void SetExcl(uint32_t p, int host) { pages_[p].excl = static_cast<int8_t>(host); }
    // Drops the marks `host` holds (-1: every mark); returns their pages.
    std::vector<uint32_t> DropExcl(int host);

    // --- ownership transfer (docs/protocol.md section 13) ---
    bool owner() const { return owner_; }
    // This host becomes the owner: every page kValid (the caller has put
    // every page it lacked into the memfd; holes read as zeros), copy sets
    // as given.  Twins and dirtiers stay.  REQUIRES: no page has waiters;
    // copysets.size() == size().
    void BecomeOwner(const std::vector<uint64_t> &copysets);
    // This host hands ownership on: pages present in the memfd stay kValid,
    // holes become kInvalid; copy sets are dropped.  REQUIRES:
    // present.size() == size().
    void BecomeNonOwner(const std::vector<bool> &present);

  private:
    struct Page {
        State state = kInvalid;
        uint16_t ndirtiers = 0;
        uint16_t inflight = 0;  // write-backs applied, verdict pending
        std::unique_ptr<uint8_t[]> twin;
        uint64_t copyset = 0;
        int8_t excl = -1;    // see excl()
        bool ahead = false;  // see ahead()
        std::vector<Waiter> waiters;
    };
    // Twins come from and go back to a free list (a release frees as many
    // twins as its next critical section takes again: malloc and free of
    // each were ~7% of a large release's CPU).  It keeps at most
    // kMaxSpareTwins (4 MiB) per segment.
    static constexpr size_t kMaxSpareTwins = 1024;
    std::unique_ptr<uint8_t[]> TakeTwin();
    void DropTwin(Page *pg);  // pg->twin becomes null
    std::vector<std::unique_ptr<uint8_t[]>> spare_twins_;

    std::vector<Page> pages_;
    uint32_t nfetching_ = 0;  // pages in kFetching
    bool owner_;
};

}  // namespace dshm

// segment: what a host knows of one segment, and of one local client.
//
// Every host has a Segment for each configured segment.  Two parts exist
// only some of the time, and their types say when:
//   - HomeState, `home`: present exactly while this host owns the segment
//     (s->owner == this host).  The lock table, the write-backs of releases
//     in flight, and the single-writer work waiting for a revoke live here;
//     a host that hands ownership over drops them with it.
//   - MoveState, `move`: present exactly while an ownership move of the
//     segment is under way as this host sees it (protocol.md section 13),
//     from OWN_MOVING (or the old owner's StartMove) to EndMove.  Its
//     Handover part exists on the old owner only, its Takeover part on the
//     new owner only.
//
// Thread safety: all of it is guarded by the loop mutex (watch.h); the
// roles (hostd/README.md) touch it from their callbacks only.
//
// Invariants:
//   - home != nullptr <=> owner == this host's id (Daemon::IsOwner);
//   - one memfd per segment per host; every local client maps it; map is
//     dshmd's own mapping of it, nullptr once the local copy was dropped;
//   - at a non-owner host, a page in state kValid is present in the memfd,
//     kInvalid/kFetching pages are holes; dshmd touches a page through its
//     own mapping only when it is present (or when it owns the segment).
#pragma once

#include <glib.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config.h"
#include "conn.h"
#include "lockq.h"
#include "monitor.h"
#include "os/memfd.h"
#include "os/result.h"
#include "pages.h"

namespace dshm {

// Counters shown by dshmctl (and used by the tests to prove behaviour).
struct SegmentStats {
    uint64_t missing_faults = 0;       // local missing faults
    uint64_t wp_faults = 0;            // local write-protect faults (first writes)
    uint64_t write_ahead = 0;          // pages made writable ahead of a sequential writer
    uint64_t fetches_sent = 0;         // FETCH sent to the owner
    uint64_t fetches_served = 0;       // FETCH answered (owner)
    uint64_t pages_written_back = 0;   // pages in releases sent (non-owner) or made (owner-local)
    uint64_t bytes_written_back = 0;   // encoded diff bytes
    uint64_t writebacks_applied = 0;   // pages applied from other hosts (owner)
    uint64_t writebacks_reverted = 0;  // of those, undone: release refused or cut off
    uint64_t invalidations_sent = 0;   // pages invalidated at other hosts (owner)
    uint64_t invalidations_received = 0;  // pages punched here
    uint64_t updates = 0;                 // dirty pages merged with UPDATE
    uint64_t acquires = 0;                // locks granted to local clients
    uint64_t releases = 0;                // releases completed for local clients
    uint64_t excl_granted = 0;            // owner: single-writer marks granted (pages)
    uint64_t excl_revoked = 0;            // owner: marks revoked (pages)
    uint64_t whole_unchecked = 0;         // pages a release sent whole under a mark, not compared
    uint64_t read_ahead = 0;              // pages fetched ahead of a sequential reader (non-owner)
    uint64_t read_ahead_used = 0;    // of those, seen used: faulted on, or passed by its reader
    uint64_t read_ahead_unused = 0;  // of those, invalidated or dropped before seen used
};

// A client's read-ahead window (Cache::ReadAhead), as the kernel keeps one
// per open file (file_ra_state): the last missing fault, the window's size
// (0: random access, no read-ahead), the last window fetched [start, end),
// where the stream's read-ahead began, and up to where its pages are
// accounted used.
struct ReadAheadState {
    uint32_t last = UINT32_MAX;
    uint32_t window = 0;
    uint32_t start = 0, end = 0;
    uint32_t first = 0;
    uint32_t used_to = 0;
};

// The owner's state of a segment (Home, Locker, Marks).
struct HomeState {
    LockTable locks;
    // Each host's write-backs of its release in flight, applied as they
    // arrived; each frame holds its page's pre-image (SwapDiff) until
    // P_RELEASE commits them or they are reverted.
    std::map<uint32_t, std::vector<Frame>> buffered;
    // Pages known to be present in the memfd (Home::IsHole).  An owner
    // never punches, so a page once present stays so.
    std::vector<bool> known_present;
    // Pages whose single-writer mark is being revoked, and the work
    // (another host's FETCH, a local client's write fault) that waits for
    // the holder's EXCL_REVOKED (protocol.md section 6.1).
    std::map<uint32_t, std::vector<std::function<void()>>> excl_waiting;
    // Clients that migrated out (their flush arrived: MIGRATE_OUT at their
    // host), Holder::Key() -> the hand-off secret of their token.  An ADOPT
    // renames only such a client, with that secret (Locker::RenameHolder);
    // dropped at the adoption, when the client is dropped (CLIENT_GONE:
    // its tombstone expired; its host lost) or uses a lock again (the
    // migration failed and it runs on).
    std::map<uint64_t, uint64_t> migrated;
};

// The old owner's side of a move: the OWN_MOVING_ACKs awaited, then the
// snapshot streaming page by page (flow-controlled: Mover::SendSnapshotPages).
struct MoveHandover {
    std::string reason;
    std::set<uint32_t> acks;
    uint32_t next = 0;          // the next page to consider
    uint32_t sent = 0;          // pages sent so far
    std::vector<bool> present;  // which pages held data when the stream started
};

// The new owner's side of a move: what OWN_COPYSETS and OWN_LOCKS brought.
struct MoveTakeover {
    std::vector<uint64_t> copysets;
    std::vector<LockTable::Entry> locks;
};

// An ownership move as one host sees it (Mover).  While it exists no
// owner-bound request leaves this host for the segment: client lock frames
// are held back, fetches wait, other work waits in `deferred`.
struct MoveState {
    uint32_t to = 0;  // the new owner
    std::vector<std::function<void()>> deferred;
    std::optional<MoveHandover> out;  // on the old owner only
    std::optional<MoveTakeover> in;   // on the new owner only
};

struct Segment {
    SegmentConfig cfg;
    uint32_t npages = 0;
    uint32_t owner = 0;  // the owner's host id
    // The owner before the last move, while it is another host: its replies
    // sent before its OWN_COMMIT (P_GRANT, PAGE, P_RELEASE_ACK, P_FLUSH_ACK,
    // P_ADOPTED) may arrive after the new owner's OWN_MOVED, on another
    // connection (protocol.md section 13).
    std::optional<uint32_t> former_owner;
    std::string owner_reason;  // why the owner is where it is (dshmctl segments)
    os::UniqueFd memfd;
    uint8_t *map = nullptr;  // dshmd's own mapping of the memfd
    std::unique_ptr<PageTable> pages;
    std::vector<uint32_t> clients;  // attached local clients
    // The client whose read-ahead fetched last: pages read ahead with no
    // waiter are installed through its userfaultfd (Cache::InstallPage).
    uint32_t ahead_client = 0;
    SegmentStats stats;
    std::unique_ptr<HomeState> home;  // while this host owns it
    std::unique_ptr<MoveState> move;  // while ownership moves

    // The owner changes to `host` (a move ended): the old one becomes the
    // former owner.
    void SetOwner(uint32_t host) {
        if (host != owner)
            former_owner = owner;
        owner = host;
    }

    // Only while mapped: a host that dropped its copy has map == nullptr.
    uint8_t *Page(uint32_t pg) const {
        return map ? map + static_cast<uint64_t>(pg) * DSHM_PAGE_SIZE : nullptr;
    }
};

// Which pages of s's memfd hold data (os::PresentPages); none on an error,
// which is logged.
inline std::vector<bool> PresentPages(const Segment &s) {
    auto r = os::PresentPages(s.memfd.get(), s.npages);
    if (r.ok())
        return std::move(*r);
    g_warning("segment %s: reading which pages are present: %s", s.cfg.name.c_str(),
              r.error().what.c_str());
    return std::vector<bool>(s.npages, false);
}

class Daemon;

// A lock request of a local client waiting for its answer.
struct PendingLock {
    bool release = false;
    uint32_t tag = 0;    // the client's request tag, echoed in the reply
    uint32_t pages = 0;  // release: pages and diff bytes written back
    uint32_t bytes = 0;
};

// Live migration of a local client (protocol.md section 11): Handoff's
// state of it.
struct ClientMigration {
    bool migrating_out = false;           // MIGRATE_OUT seen: keep locks when it closes
    std::optional<uint32_t> migrate_tag;  // MIGRATE_OUT awaiting its flush
    bool flushing = false;                // the flush is at the owner
    uint32_t flush_pages = 0, flush_bytes = 0;
    guint flush_timer = 0;  // owner lost while flushing: how long its ack may take
    uint64_t token = 0;     // the hand-off secret drawn at MIGRATE_OUT
    bool adopting = false;  // ADOPT sent to the owner, no answer yet
    uint32_t adopt_tag = 0;
};

// One local client (a QEMU, dshm-attach, dshmctl) on dshmd's socket.
struct LocalClient {
    uint32_t id = 0;
    std::unique_ptr<Conn> conn;
    std::string name;
    Segment *seg = nullptr;
    os::UniqueFd uffd;
    guint uffd_watch = 0;
    uint64_t base = 0;
    bool ready = false;
    std::set<uint32_t> held;
    std::map<uint32_t, PendingLock> pending;
    PageSet dirty;  // pages written since their last release
    ReadAheadState ra;
    SegmentStats stats;
    std::array<uint8_t, 16> uuid{};  // the VM's UUID from ATTACH (zero: none)
    struct ucred cred = {0, uid_t(-1), gid_t(-1)};  // SO_PEERCRED at accept (pid 0: unknown)
    ClientMigration mig;
    std::deque<Frame> held_back;              // lock frames waiting for adopt / a move
    std::map<uint32_t, uint64_t> held_since;  // lock -> grant time (ns), for hold_ns
    Daemon *daemon = nullptr;
    VmId vm() const { return VmId{name, uuid}; }
};

}  // namespace dshm

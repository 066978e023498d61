// Daemon: the whole of dshmd behind main.cc (docs/architecture.md).
//
// Threading: one callback at a time.  The GLib main loop of the daemon's
// GMainContext dispatches the listeners, timers and signals.  With
// poll-us = 0 and io-thread = true (the defaults) every connection (peers
// and clients) and every client's userfaultfd is watched by the I/O
// thread, which sleeps in an epoll set of them and runs their callbacks
// itself (watch.h): a remote fault's wake-ups go straight to the thread
// that handles them.  Otherwise the main loop watches them too.
// Every callback, on whichever thread, runs under the loop mutex, which the
// loop thread gives up only while it sleeps in poll(); so all state below
// is GUARDED_BY(the loop mutex) and the code reads as single-threaded: a
// handler runs to its end before any other starts.  Ordering guarantees of
// the protocol (docs/protocol.md section 6) follow from handling each
// connection's messages in order, by the one thread that reads it.
//
// Waiting: with poll-us = 0 every thread blocks as soon as it is idle.
// With poll-us = N the loop thread alone keeps polling without sleeping for
// N µs after the last event (bounded busy-polling, as NAPI busy-poll does;
// no I/O thread then), which saves the wake-up cost on fault and lock
// round trips at the price of CPU time while traffic flows.
//
// Invariants (checked by the tests in tests/):
//   - one memfd per segment per host; every local client maps it;
//   - Invariant W (protocol.md section 2): a page is writable in a client's
//     mapping only while it is in that client's dirty set;
//   - a page with a twin has ndirtiers > 0, and conversely;
//   - at a non-owner host, a page in state kValid is present in the memfd,
//     kInvalid/kFetching pages are holes; dshmd touches a page through its
//     own mapping only when it is present (or when it owns the segment).
#pragma once

#include <glib.h>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "config.h"
#include "conn.h"
#include "lockq.h"
#include "monitor.h"
#include "os/result.h"
#include "pages.h"

namespace dshm {

// Counters shown by dshmctl (and used by the tests to prove behaviour).
struct SegmentStats {
    uint64_t missing_faults = 0;      // local missing faults
    uint64_t wp_faults = 0;           // local write-protect faults (first writes)
    uint64_t write_ahead = 0;         // pages made writable ahead of a sequential writer
    uint64_t fetches_sent = 0;        // FETCH sent to the owner
    uint64_t fetches_served = 0;      // FETCH answered (owner)
    uint64_t pages_written_back = 0;  // pages in releases sent (non-owner) or made (owner-local)
    uint64_t bytes_written_back = 0;  // encoded diff bytes
    uint64_t writebacks_applied = 0;  // pages applied from other hosts (owner)
    uint64_t writebacks_reverted = 0;  // of those, undone: release refused or cut off
    uint64_t invalidations_sent = 0;  // pages invalidated at other hosts (owner)
    uint64_t invalidations_received = 0;  // pages punched here
    uint64_t updates = 0;                 // dirty pages merged with UPDATE
    uint64_t acquires = 0;                // locks granted to local clients
    uint64_t releases = 0;                // releases completed for local clients
    uint64_t excl_granted = 0;            // owner: single-writer marks granted (pages)
    uint64_t excl_revoked = 0;            // owner: marks revoked (pages)
    uint64_t whole_unchecked = 0;         // pages a release sent whole under a mark, not compared
};

class Daemon {
  public:
    explicit Daemon(Config config);
    ~Daemon();
    Daemon(const Daemon &) = delete;
    Daemon &operator=(const Daemon &) = delete;

    // Creates the sockets and the owned segments' memfds.
    Status Start();
    // Runs the main loop until Quit() (or SIGINT/SIGTERM).
    void Run();
    void Quit();

  private:
    struct Client;
    struct Segment;
    struct Peer;
    struct OwnerRelease;

    struct Segment {
        SegmentConfig cfg;
        uint32_t npages = 0;
        uint32_t owner = 0;
        os::UniqueFd memfd;
        uint8_t *map = nullptr;  // dshmd's own mapping of the memfd
        std::unique_ptr<PageTable> pages;
        std::vector<uint32_t> clients;  // attached local clients
        LockTable locks;                // meaningful on the owner only
        // owner: each host's write-backs of its release in flight, applied
        // as they arrived; each frame holds its page's pre-image (SwapDiff)
        // until P_RELEASE commits them or they are reverted.
        std::map<uint32_t, std::vector<Frame>> buffered;
        // owner: pages known to be present in the memfd (IsHole); cleared
        // when this host becomes the owner.  An owner never punches.
        std::vector<bool> known_present;
        SegmentStats stats;
        std::string owner_reason;  // why the owner is where it is (dshmctl segments)
        // Ownership transfer (protocol.md section 13).  While `moving`, no
        // owner-bound request leaves this host for the segment: client lock
        // frames are held back, fetches wait, other work is in `deferred`.
        bool moving = false;
        uint32_t moving_to = 0;
        std::string move_reason;
        std::set<uint32_t> move_acks;            // old owner: OWN_MOVING_ACKs awaited
        // Old owner: the snapshot streams page by page (flow-controlled, see
        // SendSnapshotPages); the next page to consider, pages sent so far,
        // and which pages held data when the stream started.
        uint32_t snap_next = 0;
        uint32_t snap_sent = 0;
        std::vector<bool> snap_present;
        std::vector<uint64_t> incoming_copysets;  // new owner: from OWN_COPYSETS
        std::vector<LockTable::Entry> incoming_locks;  // new owner: from OWN_LOCKS
        std::vector<std::function<void()>> deferred;
        // Owner: pages whose single-writer mark is being revoked, and the
        // work (another host's FETCH, a local client's write fault) that
        // waits for the holder's EXCL_REVOKED (protocol.md section 6.1).
        std::map<uint32_t, std::vector<std::function<void()>>> excl_waiting;
        // Non-owner: the owner's merged view of every host's VMs (its last
        // answer to our P_STATS), for dshmctl stats/advise.
        std::vector<MergedVm> merged;
        // Only while mapped: a host that dropped its copy has map == nullptr.
        uint8_t *Page(uint32_t p) const {
            return map ? map + static_cast<uint64_t>(p) * DSHM_PAGE_SIZE : nullptr;
        }
    };

    struct PendingLock {
        bool release = false;
        uint32_t tag = 0;    // the client's request tag, echoed in the reply
        uint32_t pages = 0;  // release: pages and diff bytes written back
        uint32_t bytes = 0;
    };

    struct Client {
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
        SegmentStats stats;
        std::array<uint8_t, 16> uuid{};  // the VM's UUID from ATTACH (zero: none)
        // Live migration (protocol.md section 11).
        bool migrating_out = false;   // MIGRATE_OUT seen: keep locks when it closes
        std::optional<uint32_t> migrate_tag;  // MIGRATE_OUT awaiting its flush
        bool flushing = false;        // the flush is at the owner
        uint32_t flush_pages = 0, flush_bytes = 0;
        guint flush_timer = 0;        // owner lost while flushing: how long its ack may take
        bool adopting = false;        // ADOPT sent to the owner, no answer yet
        uint32_t adopt_tag = 0;
        std::deque<Frame> held_back;  // lock frames waiting for adopt / a move
        std::map<uint32_t, uint64_t> held_since;  // lock -> grant time (ns), for hold_ns
        VmId vm() const { return VmId{name, uuid}; }
        Daemon *daemon = nullptr;
    };

    struct Peer {
        PeerConfig cfg;
        std::unique_ptr<Conn> conn;
        bool up = false;  // HELLO received on conn
        uint64_t incarnation = 0;
        uint64_t connections = 0;  // HELLOs received: which connection a request came on
        std::vector<std::vector<uint8_t>> queued;  // sent before the peer was up
        guint retry_timer = 0;
        int connecting_fd = -1;
        guint connect_watch = 0;
        Daemon *daemon = nullptr;
    };

    struct OwnerRelease {
        uint32_t id = 0;
        // The release's diff of each changed page that other hosts had
        // copies of: forwarded as UPDATE to those that keep the page dirty.
        std::map<uint32_t, std::pair<uint16_t, std::vector<uint8_t>>> diffs;
        Segment *seg = nullptr;
        bool flush = false;  // a migrating client's write-back: no lock released
        uint32_t lock = 0;
        Holder who;
        uint32_t reply_tag = 0;
        uint32_t pages = 0, bytes = 0;
        std::vector<uint32_t> whole;          // pages a remote writer sent whole (FULL)
        uint64_t writer_conn = 0;             // a remote writer's Peer::connections at P_RELEASE
        std::map<uint32_t, int> outstanding;  // host -> acks still expected
        guint timer = 0;
    };

    // --- set-up ---
    Status ListenClients();
    Status ListenPeers();
    Status EnsureMemfd(Segment *s);
    static gboolean OnClientAccept(gint fd, GIOCondition, gpointer self);
    static gboolean OnPeerAccept(gint fd, GIOCondition, gpointer self);
    void DialPeer(Peer *p);
    static gboolean OnDialReady(gint fd, GIOCondition, gpointer peer);
    static gboolean OnRetryTimer(gpointer peer);

    // --- client channel ---
    void OnClientFrame(Client *c, Frame &&f);
    void DispatchClientFrame(Client *c, Frame &&f);
    void OnClientHello(Client *c, const Frame &f);
    void OnAttach(Client *c, const Frame &f);
    void OnUffd(Client *c, Frame &f);
    void OnAcquire(Client *c, const Frame &f);
    void OnRelease(Client *c, const Frame &f);
    void OnCtlQuery(Client *c, const Frame &f);
    void OnMigrateOut(Client *c, const Frame &f);
    void OnAdopt(Client *c, const Frame &f);
    // Frames that must wait (an adopt in flight, an ownership move) are
    // queued in c->held_back, in order; true when f was queued.
    bool HoldBack(Client *c, Frame &f);
    void ReplayHeldBack(Client *c);
    void MaybeFlush(Client *c);
    void FlushDone(Client *c, uint32_t status);
    // The owner was lost while `c` was flushing: its P_FLUSH_ACK may still
    // come on the next connection (the P_FLUSH arrived); without it within
    // ack-timeout-ms the flush fails with E_OWNER_LOST.
    void AwaitFlushAck(Client *c);
    void OnFlushTimeout(uint32_t client);
    void AdoptDone(Client *c, uint32_t status, const uint8_t *held, const uint8_t *queued);
    // A migrated-out client's connection closed: its locks wait for the
    // destination's ADOPT (or adopt-timeout-ms, then they are dropped).
    void Tombstone(Client *c);
    void OnTombstoneTimeout(uint32_t client);
    // No local client uses the segment any more: drop this host's copy.
    void DropLocalCopy(Segment *s);
    void OnClientClosed(Client *c, const Status &why);
    void LockFailed(Client *c, uint32_t lock, uint32_t tag, const Status &st);
    // The refusal (E_NOT_ATTACHED, E_BAD_LOCK, E_PENDING, E_NOT_HELD,
    // E_ALREADY_HELD) of a client's ACQUIRE (release=false) or RELEASE.
    Status CheckLockRequest(const Client *c, uint32_t lock, bool release) const;
    static gboolean OnUffdEvent(gint fd, GIOCondition, gpointer client);
    void HandleMissing(Client *c, uint32_t page, uint64_t addr);
    void HandleWriteFault(Client *c, uint32_t page, uint64_t addr);

    // --- peer channel ---
    void AttachPeerConn(Peer *p, std::unique_ptr<Conn> conn);
    void OnPeerFrame(Peer *p, Frame &&f);
    void OnPeerClosed(Peer *p, const Status &why);
    void SendPeer(uint32_t host, std::vector<uint8_t> msg);
    void OnFetch(Peer *p, const Frame &f);
    void OnPage(Peer *p, const Frame &f);
    void OnPAcquire(Peer *p, const Frame &f);
    void OnPGrant(Peer *p, const Frame &f);
    void OnWriteback(Peer *p, Frame &&f);
    // Single-writer marks (protocol.md section 6.1).
    void OnExclFromOwner(Peer *p, const Frame &f);  // EXCL_GRANT, EXCL_REVOKE
    void OnExclRevoked(Peer *p, const Frame &f);
    // Owner: whether page p carries the mark of a host other than `host`
    // (a check on every fetch and local write fault: no allocation).
    bool MarkedForOther(const Segment *s, uint32_t p, uint32_t host) const {
        const int holder = s->pages->excl(p);
        return holder >= 0 && static_cast<uint32_t>(holder) != host;
    }
    // Owner: revokes p's mark (once while a revoke is under way) and queues
    // `then` until the holder's EXCL_REVOKED (or its loss).
    // REQUIRES: p is marked (MarkedForOther).
    void AfterExclRevoked(Segment *s, uint32_t p, std::function<void()> then);
    // Owner: the work waiting for the marks of `pages` runs now.
    void RunExclWaiting(Segment *s, const std::vector<uint32_t> &pages);
    // Owner: marks the pages of a finished remote release that qualify.
    // REQUIRES: the connection that carried its P_RELEASE is still up
    // (FinishOwnerRelease checks; a flush is never granted marks).
    void GrantExcl(OwnerRelease *r);
    void ServeFetch(Peer *p, Segment *s, uint32_t page, uint32_t tag);
    void OnPReleaseAck(Peer *p, const Frame &f);
    void OnInvalidate(Peer *p, const Frame &f);
    void OnInvalAck(Peer *p, const Frame &f);
    void OnUpdate(Peer *p, const Frame &f);
    void OnUpdateAck(Peer *p, const Frame &f);
    void OnClientGone(Peer *p, const Frame &f);
    void OnPFlushAck(Peer *p, const Frame &f);
    void OnPAdopt(Peer *p, const Frame &f);
    void OnPAdopted(Peer *p, const Frame &f);
    void OnDropCopy(Peer *p, const Frame &f);
    void OnOwnMoving(Peer *p, const Frame &f);
    void OnOwnMovingAck(Peer *p, const Frame &f);
    void OnOwnPage(Peer *p, const Frame &f);
    void OnOwnLocks(Peer *p, const Frame &f);
    void OnOwnCopysets(Peer *p, const Frame &f);
    void OnOwnCommit(Peer *p, const Frame &f);
    void OnOwnMoved(Peer *p, const Frame &f);

    // --- live migration and ownership (protocol.md sections 11 and 13) ---
    // Owner: renames (from) to (to) in the lock table; the held and queued
    // locks of `to` as bitmaps.
    void RenameHolder(Segment *s, Holder from, Holder to, uint8_t *held, uint8_t *queued);
    // Owner: the policy's verdict on a VM that arrived at `host`.
    void OnVmArrived(Segment *s, const VmId &vm, uint32_t from, uint32_t host);
    // --- access monitor (protocol.md section 12) ---
    void Record(Client *c, const Activity &delta);
    void RecordGrant(Client *c, uint32_t lock);
    void RecordRelease(Client *c, uint32_t lock);
    void UpdateAttached(Segment *s, const VmId &vm);
    static gboolean OnReportTimer(gpointer self);
    static gboolean OnLogTimer(gpointer self);
    void OnPStats(Peer *p, const Frame &f);
    // The merged view of a segment: the owner's own, or the owner's last answer.
    std::vector<MergedVm> MergedView(Segment *s);
    void StartMove(Segment *s, uint32_t to, const std::string &reason);
    // Old owner, acknowledgements in: streams the pages the new owner lacks
    // from s->snap_next on while `nc`'s output queue stays under
    // kSnapshotQueueBytes.  Returns true once every page is sent; false when
    // it resumes later (the queue drained: MaybeSendSnapshot again) or the
    // connection closed under it (OnPeerClosed has ended the move).
    bool SendSnapshotPages(Segment *s, Conn *nc);
    void MaybeSendSnapshot(Segment *s);
    // The move is over (this host learnt the owner): requests flow again.
    void EndMove(Segment *s);
    // Runs `fn` now, or after the move when the segment is moving.
    void Defer(Segment *s, std::function<void()> fn);
    // Sends FETCH to the owner for every page with a fetch outstanding.
    void RefetchPending(Segment *s);
    // Fills page p (a hole, write-protected in every local client since
    // the attach or its punch: PunchLocal) from `data`, through the first
    // waiter's uffd (UFFDIO_COPY in write-protect mode) or, with no waiter
    // left, through dshmd's mapping, and wakes `waiters`.  Costs
    // O(waiters), not O(local clients).
    void InstallPage(Segment *s, uint32_t page, const uint8_t *data,
                     const std::vector<PageTable::Waiter> &waiters);

    // --- coherence ---
    // Write-protects and diffs c's dirty pages; returns the encoded diffs.
    struct Diff {
        uint32_t page;
        uint16_t encoding;
        std::vector<uint8_t> data;
    };
    // A diff held elsewhere (a Diff, or a buffered WRITEBACK frame).
    struct DiffRef {
        uint32_t page;
        uint16_t encoding;
        std::span<const uint8_t> data;
    };
    static std::vector<DiffRef> RefsOf(const std::vector<Diff> &diffs);
    // Write-protects c's dirty pages (Invariant W), one ioctl per run of
    // consecutive pages, and empties c's dirty set; returns the pages in
    // increasing order.  Each must then go through ReleaseDirty.
    std::vector<uint32_t> ProtectDirty(Client *c);
    // c took a first-write fault on `page`: if it wrote page-1 before it
    // (a sequential writer), adds up to write-ahead-pages following pages
    // that are valid here and clean for c to c's dirty set (with twins).
    // Returns how many; the caller makes page and those writable in one
    // ioctl.
    uint32_t WriteAhead(Client *c, uint32_t page);
    // Counts a write-back of c (segment and client counters, access monitor).
    void AccountWriteback(Client *c, uint64_t pages, uint64_t bytes);
    // The owner host's own release: ProtectDirty, diffs, AccountWriteback;
    // *bytes = their encoded size.
    std::vector<Diff> CollectDirty(Client *c, uint32_t *bytes);
    // Invalidates the released pages' other copies and completes the release
    // when they are acknowledged.  The diffs are only read during the call
    // (those of pages with copies elsewhere are kept for UPDATEs).
    void StartOwnerRelease(Segment *s, uint32_t lock, Holder who, uint32_t reply_tag,
                           std::span<const DiffRef> diffs, bool flush = false);
    // Non-owner: ProtectDirty, then each page diffed into its WRITEBACK
    // frame (a page c alone rewrote as a whole is not copied: the frame's
    // data is written from the segment, Conn::SendGather, before this
    // returns); frames go to the owner in chunks of kWritebackChunk
    // bytes as they fill, so the owner receives the first pages while the
    // rest are diffed; once Conn::kStreamQueueBytes are queued, the rest is
    // handed to the connection as a stream (Conn::SendStream) sent as it
    // drains; then P_RELEASE (or P_FLUSH: `type`).  Accounts the
    // write-back; *pages and *bytes = pages and diff bytes written back.
    // The caller records its pending request BEFORE the call: losing the
    // owner during the burst fails it (OnPeerClosed), and the rest of the
    // burst is then dropped, not queued for the next connection.  c may be
    // gone when this returns (a client closed by a failed send).
    static constexpr size_t kWritebackChunk = 256u << 10;
    void SendWritebacks(Client *c, uint16_t type, uint32_t lock, uint32_t *pages, uint32_t *bytes);
    // The owner's side of P_RELEASE and P_FLUSH: commits the host's
    // in-flight write-backs if the release is accepted, else reverts them.
    void OnPRelease(Peer *p, const Frame &f, bool flush);
    // The in-flight write-backs of `writer` (OnWriteback applied them) are
    // accepted: appends a DiffRef per frame to *diffs, pointing into
    // `frames`.  Where another host holds the page (exactly the pages
    // StartOwnerRelease invalidates and may send an UPDATE) its data is the
    // applied diff again; elsewhere it still holds the pre-image and only
    // its size means anything.
    void CommitFrames(Segment *s, std::vector<Frame> &frames, uint32_t writer,
                      std::vector<DiffRef> *diffs);
    // They are not accepted: reverted newest first; `frames` is emptied.
    void RevertFrames(Segment *s, std::vector<Frame> &frames, uint32_t writer);
    // Reverts `host`'s in-flight write-backs to s (its connection is gone).
    void DropInFlight(Segment *s, uint32_t host);
    // Sends a message carrying one page (PAGE, OWN_PAGE): header and `m`,
    // then the page straight from where it lies (Conn::SendGather).
    void SendPage(Conn *conn, uint16_t type, uint32_t tag, const dshm_page &m,
                  const uint8_t *page);
    // Owner: true when `page` is a hole in the memfd (it reads as zeros;
    // reading it through the mapping would allocate it).  One lseek per
    // page until it is seen present.
    bool IsHole(Segment *s, uint32_t page);
    // What a FETCH of `page` must be answered with while write-backs of it
    // are in flight: `src` (the page or the twin) with their pre-images
    // put back, built in *buf.  Returns buf->data().
    const uint8_t *InFlightPreImage(Segment *s, uint32_t page, const uint8_t *src,
                                    std::vector<uint8_t> *buf);
    void AckOwnerRelease(uint32_t id, uint32_t host, int delta);
    void FinishOwnerRelease(OwnerRelease *r);
    void OnReleaseTimeout(uint32_t release);
    // A one-shot timer: (this->*fn)(id) after `ms` unless g_source_remove()d
    // first.  Its context is freed either way.
    guint AddTimer(uint32_t ms, uint32_t id, void (Daemon::*fn)(uint32_t));
    void Grant(Segment *s, uint32_t lock, Holder who);
    void DropClientLocks(Segment *s, Holder who);
    // A local client is gone for good: its locks are dropped at the owner
    // (locally, or with CLIENT_GONE).
    void ForgetClientLocks(Segment *s, uint32_t client);
    // Owner: fills a hole with zeros for c's fault at addr.
    void FillZero(Client *c, uint64_t addr);
    // OWN_MOVED(this host, reason) to p if it is up.
    void SendOwnMoved(Peer *p, Segment *s, const std::string &reason);
    // Punches `pages` (increasing) out of this host's copy, one fallocate
    // per run of consecutive pages, then write-protects them again in every
    // local client, one ioctl per client and run (Invariant W: a punch keeps
    // the uffd-wp marker of a protected PTE, but drops it when a client
    // mapped the page during the punch; once the pages are holes nobody can
    // map them but dshmd's own UFFDIO_COPY, so the markers set now hold
    // until the page is filled).  REQUIRES: every page clean (no dirtier).
    void PunchLocal(Segment *s, const std::vector<uint32_t> &pages);
    // Write-protects (protect=true) `pages` (increasing) in c's mapping, one
    // UFFDIO_WRITEPROTECT per run of consecutive pages; failures are logged
    // with `why` (ESRCH, a client whose close is queued, silently).
    void ProtectRuns(Client *c, const std::vector<uint32_t> &pages, const char *why);

    // --- helpers ---
    Segment *FindSegment(std::string_view name);
    Client *FindClient(uint32_t id);
    Peer *FindPeer(uint32_t host);
    bool IsOwner(const Segment *s) const { return s->owner == cfg_.host_id; }
    std::string StatusJson(uint32_t what);
    void DeferDelete(std::unique_ptr<Conn> conn);

    Config cfg_;
    uint64_t incarnation_;
    GMainContext *ctx_ = nullptr;
    bool quit_ = false;
    os::UniqueFd client_listen_, peer_listen_;
    guint client_listen_watch_ = 0, peer_listen_watch_ = 0;
    std::vector<guint> signal_watches_;
    std::map<std::string, std::unique_ptr<Segment>, std::less<>> segments_;
    std::map<uint32_t, std::unique_ptr<Client>> clients_;
    std::map<uint32_t, std::unique_ptr<Peer>> peers_;
    std::vector<std::unique_ptr<Conn>> unidentified_;  // accepted peer conns before HELLO
    std::map<uint32_t, std::unique_ptr<OwnerRelease>> releases_;
    std::vector<std::unique_ptr<Conn>> graveyard_;  // closed conns, freed when idle
    guint graveyard_idle_ = 0;
    uint32_t next_client_id_ = 1;
    uint32_t next_release_id_ = 1;
    std::vector<uint8_t> zero_page_;
    // Migrated-out clients whose connection closed: id -> (segment, timer).
    std::map<uint32_t, std::pair<Segment *, guint>> tombstones_;
    Monitor monitor_;
    ClusterView cluster_;  // segments this host owns: every host's reports
    guint report_timer_ = 0, log_timer_ = 0;
};

}  // namespace dshm

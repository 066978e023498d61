// Home: the owner's side of coherence (protocol.md sections 5, 6 and 8).
//
// Fetches: a FETCH is answered with the page's last released content (the
// twin when a local client is writing it, the pre-images put back while
// another host's write-backs of it are in flight, zeros for a hole),
// after the holder of a single-writer mark has given it up (Marks).
//
// Releases: a remote writer's WRITEBACK frames are applied as they arrive
// (each keeps its page's pre-image); its P_RELEASE (or P_FLUSH) commits
// them if the writer holds the lock (else reverts them); then every other
// copy of the released pages is invalidated, a host that keeps a page
// dirty gets the release's diff as UPDATE, and once every INVAL_ACK and
// UPDATE_ACK is in the release completes: the lock passes on (Locker), and
// the writer is acknowledged (P_RELEASE_ACK, or DeliverReleased for a
// local client).  A host that does not acknowledge within ack-timeout-ms is
// disconnected.  The owner host's own releases enter at StartRelease.
//
// A lost host (OnHostLost): its in-flight write-backs are reverted, its
// copies, marks and locks dropped, and releases stop waiting for it.
//
// Thread safety: every method REQUIRES the loop mutex.
#pragma once

#include <glib.h>

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "lockq.h"
#include "segment.h"
#include "thread_annotations.h"
#include "watch.h"
#include "writer.h"

namespace dshm {

class Daemon;
struct Peer;

class Home {
  public:
    explicit Home(Daemon &d) : d_(d) {}
    ~Home();
    Home(const Home &) = delete;
    Home &operator=(const Home &) = delete;

    // --- peer messages (on the owner) ---
    void OnFetch(Peer *peer, const Frame &f) REQUIRES(loop_mutex);
    void OnWriteback(Peer *peer, Frame &&f) REQUIRES(loop_mutex);
    // P_RELEASE (kRelease) and P_FLUSH (kFlush): commits the host's
    // in-flight write-backs if the release is accepted, else reverts them.
    void OnPRelease(Peer *peer, const Frame &f, ReleaseKind kind) REQUIRES(loop_mutex);
    void OnInvalAck(Peer *peer, const Frame &f) REQUIRES(loop_mutex);
    void OnUpdateAck(Peer *peer, const Frame &f) REQUIRES(loop_mutex);
    void OnDropCopy(Peer *peer, const Frame &f) REQUIRES(loop_mutex);

    // Invalidates the released pages' other copies and completes the
    // release when they are acknowledged.  The diffs are only read during
    // the call (those of pages with copies elsewhere are kept for UPDATEs).
    void StartRelease(Segment *s, uint32_t lock, Holder who, uint32_t reply_tag,
                      std::span<const DiffRef> diffs, ReleaseKind kind) REQUIRES(loop_mutex);
    // True while a release of s waits for acknowledgements (a move waits).
    bool ReleasesInFlight(const Segment *s) const REQUIRES(loop_mutex);

    // --- a lost host (Daemon::OnPeerLost) ---
    // Reverts `host`'s in-flight write-backs to s (its connection is gone).
    void DropInFlight(Segment *s, uint32_t host) REQUIRES(loop_mutex);
    // Its copies, its marks and its locks are gone.
    void OnHostLost(Segment *s, uint32_t host) REQUIRES(loop_mutex);
    // Releases stop waiting for its acknowledgements.
    void OnHostLostReleases(uint32_t host) REQUIRES(loop_mutex);

  private:
    struct Release {
        uint32_t id = 0;
        // The release's diff of each changed page that other hosts had
        // copies of: forwarded as UPDATE to those that keep the page dirty.
        std::map<uint32_t, std::pair<uint16_t, std::vector<uint8_t>>> diffs;
        Segment *seg = nullptr;
        ReleaseKind kind = ReleaseKind::kRelease;
        uint32_t lock = 0;
        Holder who;
        uint32_t reply_tag = 0;
        uint32_t pages = 0, bytes = 0;
        std::vector<uint32_t> whole;          // pages a remote writer sent whole (FULL)
        uint64_t writer_conn = 0;             // a remote writer's Peer::connections at P_RELEASE
        std::map<uint32_t, int> outstanding;  // host -> acks still expected
        guint timer = 0;
    };

    void ServeFetch(Peer *peer, Segment *s, uint32_t pg, uint32_t tag) REQUIRES(loop_mutex);
    // True when pg is a hole in the memfd (it reads as zeros; reading it
    // through the mapping would allocate it).  One lseek per page until it
    // is seen present.
    bool IsHole(Segment *s, uint32_t pg) REQUIRES(loop_mutex);
    // What a FETCH of pg must be answered with while write-backs of it are
    // in flight: `src` (the page or the twin) with their pre-images put
    // back, built in *buf.  Returns buf->data().
    const uint8_t *InFlightPreImage(Segment *s, uint32_t pg, const uint8_t *src,
                                    std::vector<uint8_t> *buf) REQUIRES(loop_mutex);
    // The in-flight write-backs of `writer` (OnWriteback applied them) are
    // accepted: appends a DiffRef per frame to *diffs, pointing into
    // `frames`.  Where another host holds the page (exactly the pages
    // StartRelease invalidates and may send an UPDATE) its data is the
    // applied diff again; elsewhere it still holds the pre-image and only
    // its size means anything.
    void CommitFrames(Segment *s, std::vector<Frame> &frames, uint32_t writer,
                      std::vector<DiffRef> *diffs) REQUIRES(loop_mutex);
    // They are not accepted: reverted newest first; `frames` is emptied.
    void RevertFrames(Segment *s, std::vector<Frame> &frames, uint32_t writer) REQUIRES(loop_mutex);
    void Ack(uint32_t id, uint32_t host, int delta) REQUIRES(loop_mutex);
    void Finish(Release *r) REQUIRES(loop_mutex);
    void OnTimeout(uint32_t id) REQUIRES(loop_mutex);

    Daemon &d_;
    std::map<uint32_t, std::unique_ptr<Release>> releases_ GUARDED_BY(loop_mutex);
    uint32_t next_id_ GUARDED_BY(loop_mutex) = 1;
};

}  // namespace dshm

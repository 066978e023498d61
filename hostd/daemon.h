// Daemon: dshmd behind main.cc: builds the roles, routes every frame to the
// role that handles it, and runs the loop (docs/architecture.md).
//
// The roles (one class and file each; hostd/README.md lists them):
//   Peers     peer transport: listen, dial, HELLO, retry, queue, send, loss
//   Clients   local clients: accept, HELLO, ATTACH, UFFD, hold-back/replay,
//             delivering lock answers
//   Cache     any host's copy: faults, FETCH, install, punch,
//             INVALIDATE/UPDATE, dropping the copy, the owner's loss
//   Writer    the releasing side: protect, collect, diff, send, the ack
//   Home      the owner: serving fetches, applying/committing/reverting
//             write-backs, invalidation, acknowledgements, a host's loss
//   Locker    the lock protocol (owner's lock table, grants)
//   Marks     single-writer marks (protocol.md section 6.1, both halves)
//   Handoff   live migration: MIGRATE_OUT, flush, ADOPT, tombstones
//   Mover     ownership moves (protocol.md section 13)
//   Agent     the access monitor: records, reports, merged view, policy
//   Liveness  the deadlines of requests to an owner (a silent one is lost)
//   ctl.h     dshmctl's JSON over a read-only view
// The roles call each other through the Daemon's accessors, as Ceph's MDS
// roles do through MDSRank; the state of a role lives in the role, the
// state of a segment in segment.h.
//
// Threading: one callback at a time.  The GLib main loop of the default
// GMainContext dispatches listeners, timers and signals.  With poll-us = 0
// and io-thread = true (the defaults) every connection (peers and clients)
// and every client's userfaultfd is watched by the I/O thread, which
// sleeps in an epoll set of them and runs their callbacks itself (watch.h).
// Every callback, on whichever thread, runs under the loop mutex, which
// the loop thread gives up only while it sleeps in poll(); so all state of
// the Daemon and of every role is GUARDED_BY(loop_mutex) and the code reads
// as single-threaded: a handler runs to its end before any other starts.
// Ordering guarantees of the protocol (docs/protocol.md section 6) follow
// from handling each connection's messages in order, by the one thread
// that reads it.
//
// Waiting: with poll-us = 0 every thread blocks as soon as it is idle.
// With poll-us = N the loop thread alone keeps polling without sleeping
// for N µs after the last event (bounded busy-polling, as NAPI busy-poll
// does; no I/O thread then).
//
// Invariants (checked by the tests in tests/ and by daemon_test):
//   - segment.h's: one memfd per segment per host, home <=> owner;
//   - Invariant W (protocol.md section 2): a page is writable in a client's
//     mapping only while it is in that client's dirty set;
//   - a page with a twin has ndirtiers > 0, and conversely.
//
// In process (daemon_test.cc): a Daemon whose Config has an empty `listen`
// opens no peer listener, and peers with an empty address are not dialled:
// the caller connects them with Peers::Attach (a socketpair, say).
#pragma once

#include <glib.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config.h"
#include "conn.h"
#include "segment.h"
#include "status.h"
#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

class Peers;
struct Peer;
class Clients;
class Cache;
class Writer;
class Home;
class Locker;
class Marks;
class Handoff;
class Mover;
class Agent;
class Liveness;

// A one-shot timer on the default context: fn() after `ms` unless
// g_source_remove()d first.  Its closure is freed either way.
guint AddTimer(uint32_t ms, std::function<void()> fn);

// A page of zeros (what a hole reads as).
const uint8_t *ZeroPage();

class Daemon {
  public:
    explicit Daemon(Config config);
    ~Daemon();
    Daemon(const Daemon &) = delete;
    Daemon &operator=(const Daemon &) = delete;

    // Installs the handlers of SIGINT, SIGTERM (Quit) and SIGHUP (Reload)
    // first, so that a signal that comes once a socket exists ends the loop
    // cleanly instead of killing the process (the default action, exit
    // 143); then creates the sockets and the owned segments' memfds, dials
    // the peers.  A signal that came during Start is handled when Run starts.
    Status Start() REQUIRES(loop_mutex);
    // Runs the main loop until Quit() (or SIGINT/SIGTERM); tells systemd
    // STOPPING=1 (notify.h) as it leaves.
    void Run() REQUIRES(loop_mutex);
    void Quit() REQUIRES(loop_mutex);

    // The file Reload() reads (main.cc sets it; empty: SIGHUP only logs).
    void SetConfigPath(std::string path) { config_path_ = std::move(path); }
    // SIGHUP: reads the configuration file again and applies what can
    // change while dshmd runs: the [policy] thresholds read at every
    // decision (strong-min-events, strong-min-share, move-ownership).  Every
    // other difference ([dshmd] keys, peers, segments, and the policy's
    // window-s, report-ms and log-s, which size the monitor and its timers)
    // is logged as needing a restart and not applied.  An invalid file is
    // logged and changes nothing.  Tells systemd RELOADING=1 before and
    // READY=1 after (notify.h).  Returns what it did, one line.
    std::string Reload() REQUIRES(loop_mutex);

    // --- routers: a validated frame to the role that handles it ---
    void RouteClientFrame(LocalClient *c, Frame &&f) REQUIRES(loop_mutex);
    // After the peer's HELLO (Peers checks it).
    void RoutePeerFrame(Peer *peer, Frame &&f) REQUIRES(loop_mutex);
    // Peer `peer` completed its HELLO: per segment, Mover tells it where
    // ownership moved, then Cache re-sends the fetches it owes an answer;
    // then Peers sends what was queued for it.
    void OnPeerUp(Peer *peer) REQUIRES(loop_mutex);
    // Peer `peer` (which had completed its HELLO) is lost.  Per segment, in
    // this order: Home reverts its release cut off before its P_RELEASE;
    // Mover forgets its acknowledgement or ends a move to or by it; then on
    // the owner Home drops its copies, Marks its marks, Locker its locks,
    // and where it was the owner Cache drops every clean copy and fails
    // the lock requests in flight.  Last, Home counts it out of every
    // release waiting for its acknowledgements.
    void OnPeerLost(uint32_t host) REQUIRES(loop_mutex);

    // --- the shared state and the roles ---
    const Config &cfg() const { return cfg_; }
    uint32_t host_id() const { return cfg_.host_id; }
    uint64_t incarnation() const { return incarnation_; }
    Segment *FindSegment(std::string_view name) REQUIRES(loop_mutex);
    const std::map<std::string, std::unique_ptr<Segment>, std::less<>> &segments() const
        REQUIRES(loop_mutex) {
        return segments_;
    }
    bool IsOwner(const Segment *s) const REQUIRES(loop_mutex) { return s->home != nullptr; }
    // Maps a segment's memfd (created here if it has none yet).
    Status EnsureMemfd(Segment *s) REQUIRES(loop_mutex);

    // A peer message's segment, or nullptr after failing the connection
    // (E_NO_SEGMENT; E_NOT_OWNER when `owned` and this host does not own
    // it).  Callers return at once on nullptr.
    Segment *PeerSegment(Peer *peer, const Frame &f, std::string_view name, bool owned)
        REQUIRES(loop_mutex);
    // True if `peer` may send a message that only s's owner sends (P_GRANT,
    // PAGE, UPDATE, P_RELEASE_ACK, P_FLUSH_ACK, P_ADOPTED): it is s's owner,
    // or with `former` the former owner (Segment::former_owner).  Else the
    // message is a protocol error (E_NOT_OWNER): the connection fails and
    // this returns false; callers return at once.
    bool FromOwner(Peer *peer, const Frame &f, const Segment *s, bool former) REQUIRES(loop_mutex);
    // False after failing the connection when pg is outside s.
    bool PageInRange(Peer *peer, const Frame &f, const Segment *s, uint32_t pg)
        REQUIRES(loop_mutex);

    // A closed connection, freed once the loop is idle (its callbacks may
    // still be on the stack).
    void DeferDelete(std::unique_ptr<Conn> conn) REQUIRES(loop_mutex);

    Peers &peers() { return *peers_; }
    Clients &clients() { return *clients_; }
    Cache &cache() { return *cache_; }
    Writer &writer() { return *writer_; }
    Home &home() { return *home_; }
    Locker &locker() { return *locker_; }
    Marks &marks() { return *marks_; }
    Handoff &handoff() { return *handoff_; }
    Mover &mover() { return *mover_; }
    Agent &agent() { return *agent_; }
    Liveness &liveness() { return *liveness_; }
    const Peers &peers() const { return *peers_; }
    const Clients &clients() const { return *clients_; }
    const Agent &agent() const { return *agent_; }

  private:
    // Set at construction, then only read, except the policy thresholds
    // Reload() changes on the loop thread under the loop mutex (whose
    // readers are all callbacks, under the loop mutex too).
    Config cfg_;
    std::string config_path_;
    uint64_t incarnation_;
    GMainContext *ctx_ = nullptr;
    std::atomic<bool> quit_ = false;  // Quit() may come from a signal handler's thread
    std::vector<guint> signal_watches_ GUARDED_BY(loop_mutex);
    std::map<std::string, std::unique_ptr<Segment>, std::less<>> segments_ GUARDED_BY(loop_mutex);
    std::vector<std::unique_ptr<Conn>> graveyard_;  // closed conns, freed when idle
    guint graveyard_idle_ GUARDED_BY(loop_mutex) = 0;
    // The roles: made at construction, freed at destruction.
    std::unique_ptr<Peers> peers_;
    std::unique_ptr<Clients> clients_;
    std::unique_ptr<Cache> cache_;
    std::unique_ptr<Writer> writer_;
    std::unique_ptr<Home> home_;
    std::unique_ptr<Locker> locker_;
    std::unique_ptr<Marks> marks_;
    std::unique_ptr<Handoff> handoff_;
    std::unique_ptr<Mover> mover_;
    std::unique_ptr<Agent> agent_;
    std::unique_ptr<Liveness> liveness_;
};

}  // namespace dshm

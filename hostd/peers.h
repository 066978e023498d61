// Peers: the peer transport of dshmd.  One TCP connection per pair of
// hosts: the host with the smaller id dials, the other accepts; each side
// sends HELLO (its host id, incarnation and name) and AUTH_CHALLENGE
// first, and AUTH_PROOF once it has the other's (auth.h, protocol.md
// section 2.1).  A connection is "up" once the peer's HELLO named the
// expected host and its AUTH_PROOF verified; a proof that does not verify
// closes the connection with a log line naming the address, and nothing
// the peer sent reaches Daemon's router (the FrameReader lets nothing else
// through before SetAuthenticated).  An accepted connection is
// unidentified, and touches no session, until it is authenticated.
//
//   - Send(host, msg) sends on the live connection, or queues the message
//     until the next connection is up (messages are never dropped here; a
//     role that must not send on a later connection checks Live() first).
//   - Once authenticated: Daemon::OnPeerUp (the roles' catch-up), then the
//     queue.  An incoming connection for a host with a live session
//     replaces it only with a greater incarnation, once authenticated
//     (Accept); a same or older one is refused at its HELLO.
//   - On a close: Daemon::OnPeerLost (the roles, in the order documented
//     there), then a redial after 200 ms when this host dials the peer.
//   - Frames of an up peer go to Daemon::RoutePeerFrame.
//
// The transport seam: Attach(host, fd) takes any connected stream socket
// for peer `host`, as the dial and the accept paths do; an in-process test
// hands it one end of a socketpair.  A peer with an empty address is never
// dialled, and Listen() with an empty `listen` address opens no listener.
//
// Thread safety: every method REQUIRES the loop mutex.
#pragma once

#include <glib.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "auth.h"
#include "config.h"
#include "conn.h"
#include "os/result.h"
#include "status.h"
#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

class Daemon;
class Peers;
struct Segment;

struct Peer {
    PeerConfig cfg;
    std::unique_ptr<Conn> conn;
    bool up = false;  // HELLO received and authenticated on conn
    std::unique_ptr<Handshake> hs;  // conn's, until it is up
    uint64_t incarnation = 0;
    uint64_t connections = 0;  // HELLOs received: which connection a request came on
    // Segments this connection (since its HELLO) carried a message about,
    // but OWN_MOVED: an OWN_MOVED before any other is the owner's catch-up
    // at HELLO (Mover::OnOwnMoved).
    std::set<const Segment *> heard;
    std::vector<std::vector<uint8_t>> queued;  // sent before the peer was up
    guint retry_timer = 0;
    int connecting_fd = -1;
    guint connect_watch = 0;
    guint connect_timer = 0;  // a dial not connected by then is tried again
    Peers *peers = nullptr;

    // The connection if the peer is up and it is open, else nullptr.
    Conn *Live() const REQUIRES(loop_mutex) {
        return up && conn && !conn->closed() ? conn.get() : nullptr;
    }
};

class Peers {
  public:
    explicit Peers(Daemon &d);
    ~Peers();
    Peers(const Peers &) = delete;
    Peers &operator=(const Peers &) = delete;

    // Listens on cfg().listen (nothing when it is empty).
    Status Listen() REQUIRES(loop_mutex);
    // Dials every configured peer with a greater host id and an address.
    void DialAll() REQUIRES(loop_mutex);
    // Uses connected stream socket `fd` as the connection to peer `host`
    // (replacing any other); sends our HELLO.  False for an unknown host.
    bool Attach(uint32_t host, os::UniqueFd fd) REQUIRES(loop_mutex);
    // Takes connected stream socket `fd` as an incoming connection, as the
    // listener does with an accepted one: unidentified until its HELLO
    // names a configured peer with a lower host id.  If that peer has a
    // live session, the newcomer replaces it only with a greater
    // incarnation (the peer restarted); otherwise it is refused (ERROR
    // E_PROTO, closed) and the live session goes on.
    void Accept(os::UniqueFd fd) REQUIRES(loop_mutex);

    Peer *Find(uint32_t host) REQUIRES(loop_mutex);
    const std::map<uint32_t, std::unique_ptr<Peer>> &all() const REQUIRES(loop_mutex) {
        return peers_;
    }
    // Sends on the live connection, else queues for the next one.
    void Send(uint32_t host, std::vector<uint8_t> msg) REQUIRES(loop_mutex);

    // membership = corosync (membership.h): host `host` announced itself
    // with `name` and data-path `address` (empty ones: a Peer only, for a
    // segment's owner before it is a member): makes or updates its Peer and
    // dials it when this host dials it.  Peers dial and accept only hosts
    // that Membership::Admits.
    void AddMember(uint32_t host, const std::string &name, const std::string &address)
        REQUIRES(loop_mutex);
    // Host `host` left the group: its session, if any, is closed (the one
    // peer-loss path, OnClosed -> Daemon::OnPeerLost, when it was up) and
    // it is not dialled again until it is admitted again.
    void Lose(uint32_t host, const std::string &why) REQUIRES(loop_mutex);

  private:
    void Dial(Peer *peer) REQUIRES(loop_mutex);
    void Redial(Peer *peer, guint ms) REQUIRES(loop_mutex);
    static gboolean OnRetryTimer(gpointer peer);
    static gboolean OnDialReady(gint fd, GIOCondition, gpointer peer);
    static gboolean OnConnectTimeout(gpointer peer);
    static gboolean OnAccept(gint fd, GIOCondition, gpointer self);
    // Makes `conn` peer's connection; unless it is authenticated already
    // (an accepted one), sends our HELLO and AUTH_CHALLENGE.
    void AttachConn(Peer *peer, std::unique_ptr<Conn> conn) REQUIRES(loop_mutex);
    std::vector<uint8_t> HelloMsg() const REQUIRES(loop_mutex);
    void OnIncoming(Conn *raw, Handshake &hs, Frame &&f) REQUIRES(loop_mutex);
    // peer's connection authenticated: up, OnPeerUp, the queue.
    void PeerUp(Peer *peer, uint64_t incarnation) REQUIRES(loop_mutex);
    std::unique_ptr<Conn> TakeUnidentified(Conn *raw) REQUIRES(loop_mutex);
    void OnFrame(Peer *peer, Frame &&f) REQUIRES(loop_mutex);
    void OnHello(Peer *peer, const Frame &f) REQUIRES(loop_mutex);
    void OnClosed(Peer *peer, const Status &why) REQUIRES(loop_mutex);

    Daemon &d_;
    std::map<uint32_t, std::unique_ptr<Peer>> peers_ GUARDED_BY(loop_mutex);
    std::vector<std::unique_ptr<Conn>> unidentified_ GUARDED_BY(loop_mutex);  // before HELLO
    os::UniqueFd listen_ GUARDED_BY(loop_mutex);
    guint listen_watch_ GUARDED_BY(loop_mutex) = 0;
};

}  // namespace dshm

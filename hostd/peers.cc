#include "peers.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "daemon.h"
#include "membership.h"
#include "watch.h"

namespace dshm {
namespace {

// A connection that has not completed its HELLO by then is dropped.
constexpr guint kHelloDeadlineMs = 2000;

// A dial that has not connected by then is abandoned and tried again: a
// SYN lost to a partition is otherwise retried with exponential back-off
// for about two minutes, and the connection would come back that late
// after the path healed.  Never longer than peer-timeout-ms.
constexpr uint32_t kConnectDeadlineMs = 3000;

// TCP_NODELAY, and the liveness of a peer's connection (protocol.md
// section 8): keepalive probes after a third of peer-timeout-ms idle, then
// every sixth, and TCP_USER_TIMEOUT = peer-timeout-ms, which bounds both
// data left unacknowledged and unanswered probes: a peer partitioned away
// errors the socket (ETIMEDOUT) within about peer-timeout-ms whether or
// not anything is being sent, and the close path (OnClosed) declares it
// lost.  Best effort: a socket that is not TCP (a test's socketpair)
// refuses them, harmlessly.
void SetPeerSocketOptions(int fd, uint32_t peer_timeout_ms) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int idle = std::max<int>(1, static_cast<int>(peer_timeout_ms / 3000));
    int intvl = std::max<int>(1, static_cast<int>(peer_timeout_ms / 6000));
    int cnt = 6;
    unsigned int user_timeout = peer_timeout_ms;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
}

// Resolves host:port to a sockaddr (numeric or via the resolver).
bool Resolve(const std::string &addr, sockaddr_storage *out, socklen_t *len) {
    std::string host;
    uint16_t port;
    if (!SplitHostPort(addr, &host, &port))
        return false;
    struct addrinfo hints = {}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res) {
        return false;
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return true;
}

// "ADDRESS:PORT" of a connected socket's other end (for the log).
std::string RemoteAddress(int fd) {
    sockaddr_storage ss = {};
    socklen_t len = sizeof ss;
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getpeername(fd, reinterpret_cast<sockaddr *>(&ss), &len) < 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) ||
        getnameinfo(reinterpret_cast<sockaddr *>(&ss), len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        return "a local socket";
    }
    return ss.ss_family == AF_INET6 ? "[" + std::string(host) + "]:" + serv
                                    : std::string(host) + ":" + serv;
}

std::unique_ptr<Conn> PeerConn(int fd, const std::string &label) {
    return std::make_unique<Conn>(os::UniqueFd(fd), Channel::kPeer, Receiver::kDaemon,
                                  ClientRole::kUnknown, label);
}

}  // namespace

Peers::Peers(Daemon &d) : d_(d) {
    for (const auto &pc : d_.cfg().peers) {
        auto p = std::make_unique<Peer>();
        p->cfg = pc;
        p->peers = this;
        peers_[pc.host_id] = std::move(p);
    }
}

Peers::~Peers() {
    for (auto &[id, p] : peers_) {
        if (p->retry_timer)
            g_source_remove(p->retry_timer);
        if (p->connect_watch)
            UnwatchFd(p->connect_watch);
        if (p->connect_timer)
            g_source_remove(p->connect_timer);
        if (p->connecting_fd >= 0)
            close(p->connecting_fd);
    }
    if (listen_watch_)
        UnwatchFd(listen_watch_);
}

Status Peers::Listen() {
    const std::string &addr = d_.cfg().listen;
    if (addr.empty())
        return Status::OK();
    sockaddr_storage ss;
    socklen_t len;
    if (!Resolve(addr, &ss, &len))
        return Status::Proto("cannot resolve listen address " + addr);
    os::UniqueFd fd(socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0 || listen(fd.get(), 64) < 0) {
        return Status::Internal("listen on " + addr + ": " + strerror(errno));
    }
    listen_ = std::move(fd);
    listen_watch_ = WatchFd(listen_.get(), G_IO_IN, &Peers::OnAccept, this);
    return Status::OK();
}

void Peers::DialAll() {
    for (auto &[id, p] : peers_) {
        if (id > d_.host_id() && !p->cfg.address.empty() && d_.membership().Admits(id))
            Dial(p.get());
    }
}

void Peers::AddMember(uint32_t host, const std::string &name, const std::string &address) {
    auto &p = peers_[host];
    if (!p) {
        p = std::make_unique<Peer>();
        p->cfg.host_id = host;
        p->cfg.name = "host" + std::to_string(host);
        p->peers = this;
    }
    if (!name.empty())
        p->cfg.name = name;
    if (!address.empty())
        p->cfg.address = address;
    if (host > d_.host_id() && !p->cfg.address.empty() && !p->conn && !p->retry_timer &&
        !p->connect_watch && d_.membership().Admits(host))
        Dial(p.get());
}

void Peers::Lose(uint32_t host, const std::string &why) {
    Peer *p = Find(host);
    if (!p)
        return;
    if (p->retry_timer) {
        g_source_remove(p->retry_timer);
        p->retry_timer = 0;
    }
    if (p->connect_watch) {
        UnwatchFd(p->connect_watch);
        p->connect_watch = 0;
        close(p->connecting_fd);
        p->connecting_fd = -1;
    }
    if (p->conn && !p->conn->closed())
        p->conn->Close(Status::OwnerLost(why));  // -> OnClosed
}

Peer *Peers::Find(uint32_t host) {
    auto it = peers_.find(host);
    return it == peers_.end() ? nullptr : it->second.get();
}

void Peers::Send(uint32_t host, std::vector<uint8_t> msg) {
    Peer *p = Find(host);
    if (!p) {
        g_warning("no peer with host id %u", host);
        return;
    }
    if (Conn *c = p->Live())
        c->Send(std::move(msg));
    else
        p->queued.push_back(std::move(msg));
}

void Peers::Redial(Peer *peer, guint ms) {
    peer->retry_timer = g_timeout_add(ms, &Peers::OnRetryTimer, peer);
}

void Peers::Dial(Peer *peer) {
    sockaddr_storage ss;
    socklen_t len;
    if (!Resolve(peer->cfg.address, &ss, &len)) {
        g_warning("peer %s: cannot resolve %s", peer->cfg.name.c_str(), peer->cfg.address.c_str());
        return Redial(peer, 1000);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    // Before connect: TCP_USER_TIMEOUT also bounds the SYN's retries.
    SetPeerSocketOptions(fd, d_.cfg().peer_timeout_ms);
    if (connect(fd, reinterpret_cast<sockaddr *>(&ss), len) < 0 && errno != EINPROGRESS) {
        close(fd);
        return Redial(peer, 200);
    }
    peer->connecting_fd = fd;
    peer->connect_watch = WatchFd(fd, G_IO_OUT, &Peers::OnDialReady, peer);
    peer->connect_timer = g_timeout_add(std::min(kConnectDeadlineMs, d_.cfg().peer_timeout_ms),
                                        &Peers::OnConnectTimeout, peer);
}

gboolean Peers::OnConnectTimeout(gpointer pp) {
    loop_mutex.AssertHeld();
    auto *p = static_cast<Peer *>(pp);
    p->connect_timer = 0;
    if (p->connect_watch) {
        UnwatchFd(p->connect_watch);
        p->connect_watch = 0;
    }
    if (p->connecting_fd >= 0) {
        close(p->connecting_fd);
        p->connecting_fd = -1;
    }
    p->peers->Redial(p, 200);
    return G_SOURCE_REMOVE;
}

gboolean Peers::OnRetryTimer(gpointer pp) {
    loop_mutex.AssertHeld();
    auto *p = static_cast<Peer *>(pp);
    p->retry_timer = 0;
    if (!p->peers->d_.membership().Admits(p->cfg.host_id))
        return G_SOURCE_REMOVE;  // left the group meanwhile
    p->peers->Dial(p);
    return G_SOURCE_REMOVE;
}

gboolean Peers::OnDialReady(gint fd, GIOCondition, gpointer pp) {
    loop_mutex.AssertHeld();
    auto *p = static_cast<Peer *>(pp);
    p->connect_watch = 0;
    p->connecting_fd = -1;
    if (p->connect_timer) {
        g_source_remove(p->connect_timer);
        p->connect_timer = 0;
    }
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        close(fd);
        p->peers->Redial(p, 200);
        return G_SOURCE_REMOVE;
    }
    p->peers->AttachConn(p, PeerConn(fd, "peer " + p->cfg.name + " at " + p->cfg.address));
    return G_SOURCE_REMOVE;
}

gboolean Peers::OnAccept(gint lfd, GIOCondition, gpointer self) {
    loop_mutex.AssertHeld();
    auto *ps = static_cast<Peers *>(self);
    for (;;) {
        int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            break;
        SetPeerSocketOptions(fd, ps->d_.cfg().peer_timeout_ms);
        ps->Accept(os::UniqueFd(fd));
    }
    return G_SOURCE_CONTINUE;
}

void Peers::Accept(os::UniqueFd fd) {
    // Unidentified until its HELLO names a configured peer and its proof
    // verifies.
    const std::string addr = RemoteAddress(fd.get());
    std::unique_ptr<Conn> conn = PeerConn(fd.release(), "incoming peer connection from " + addr);
    Conn *raw = conn.get();
    unidentified_.push_back(std::move(conn));
    auto hs = std::make_shared<Handshake>(d_.cfg().auth_key, d_.host_id(), d_.incarnation());
    raw->Start(
        [this, raw, hs](Frame &&f) REQUIRES(loop_mutex) { OnIncoming(raw, *hs, std::move(f)); },
        [this, raw](const Status &why) REQUIRES(loop_mutex) {
            if (!why.ok())
                g_warning("%s: %s", raw->label().c_str(), why.ToString().c_str());
            d_.DeferDelete(TakeUnidentified(raw));
        });
    raw->SetHelloDeadline(kHelloDeadlineMs);
}

std::unique_ptr<Conn> Peers::TakeUnidentified(Conn *raw) {
    for (auto &u : unidentified_) {
        if (u.get() == raw) {
            auto out = std::move(u);
            std::erase(unidentified_, nullptr);
            return out;
        }
    }
    return nullptr;
}

void Peers::OnIncoming(Conn *raw, Handshake &hs, Frame &&f) {
    if (f.hdr.type == DSHM_MSG_ERROR)
        return raw->Close(Status::OK());
    if (f.hdr.type == DSHM_MSG_AUTH_CHALLENGE)
        return raw->Send(hs.OnChallenge(f));
    const uint32_t host = f.hdr.type == DSHM_MSG_HELLO ? f.Fixed<dshm_hello>().host_id
                                                       : hs.peer_host();
    const uint64_t incarnation = f.hdr.type == DSHM_MSG_HELLO
                                     ? f.Fixed<dshm_hello>().incarnation
                                     : hs.peer_incarnation();
    Peer *p = Find(host);
    if (!p || host >= d_.host_id()) {
        return raw->Fail(Status::Proto("host id " + std::to_string(host) +
                                       " is not a peer that dials this host"),
                         DSHM_MSG_HELLO);
    }
    // With corosync, only a member (the incarnation it announced) is a peer.
    if (!d_.membership().Admits(host, incarnation)) {
        return raw->Fail(
            Status::Proto("host " + std::to_string(host) + " incarnation " +
                          std::to_string(incarnation) + " is not a member of the group (yet)"),
            DSHM_MSG_HELLO);
    }
    // A live session is replaced only by a newer incarnation of that host
    // (its dshmd restarted and our side has not seen the old connection
    // close yet).  Anything else claiming the id — a second connection of
    // the same dshmd, an older one, an impersonator — is refused: it must
    // not end the real session (protocol.md section 2).  Checked at the
    // HELLO and again once authenticated.
    if (p->Live() && incarnation <= p->incarnation) {
        g_warning("peer %s (host %u): refusing a second connection (incarnation %" G_GUINT64_FORMAT
                  ", the live session's %" G_GUINT64_FORMAT ")",
                  p->cfg.name.c_str(), p->cfg.host_id, static_cast<guint64>(incarnation),
                  static_cast<guint64>(p->incarnation));
        return raw->Fail(Status::Proto("host " + std::to_string(host) +
                                       " has a live session of the same or a newer incarnation"),
                         f.hdr.type);
    }
    if (f.hdr.type == DSHM_MSG_HELLO) {
        hs.OnHello(f.Fixed<dshm_hello>());
        raw->Send(HelloMsg());
        return raw->Send(hs.ChallengeMsg());
    }
    // AUTH_PROOF (the reader yields nothing else here).
    Status st = hs.Verify(f);
    if (!st.ok()) {
        g_warning("%s (claims to be peer %s, host %u): %s; closed", raw->label().c_str(),
                  p->cfg.name.c_str(), host, st.message().c_str());
        return raw->Fail(Status::Auth("authentication failed"), f.hdr.type);
    }
    raw->SetAuthenticated();
    AttachConn(p, TakeUnidentified(raw));
    PeerUp(p, incarnation);
}

bool Peers::Attach(uint32_t host, os::UniqueFd fd) {
    Peer *p = Find(host);
    if (!p)
        return false;
    AttachConn(p, PeerConn(fd.release(), "peer " + p->cfg.name));
    return true;
}

std::vector<uint8_t> Peers::HelloMsg() const {
    dshm_hello h = {};
    h.version = DSHM_PEER_VERSION;
    h.role = DSHM_ROLE_PEER;
    h.host_id = d_.host_id();
    h.incarnation = d_.incarnation();
    SetName(h.name, d_.cfg().host_name.substr(0, DSHM_VMNAME_LEN - 1));
    return EncodeMsg(DSHM_MSG_HELLO, 0, h);
}

void Peers::AttachConn(Peer *peer, std::unique_ptr<Conn> conn) {
    if (peer->conn)
        peer->conn->Close(Status::OK());  // the peer restarted: the old session is over
    peer->conn = std::move(conn);
    peer->up = false;
    peer->hs.reset();
    Conn *raw = peer->conn.get();
    // The address the label names ("... from ADDR" accepted, "... at ADDR"
    // dialled), kept for the log.
    const std::string &l = raw->label();
    const size_t from = l.find(" from "), at = l.find(" at ");
    const std::string where = from != std::string::npos ? l.substr(from + 6)
                              : at != std::string::npos ? l.substr(at + 4)
                                                        : "";
    raw->set_label("peer " + peer->cfg.name + (where.empty() ? "" : " at " + where));
    raw->Start(
        [this, peer, raw](Frame &&f) REQUIRES(loop_mutex) {
            if (peer->conn.get() == raw)
                OnFrame(peer, std::move(f));
        },
        [this, peer, raw](const Status &why) REQUIRES(loop_mutex) {
            if (peer->conn.get() == raw)
                OnClosed(peer, why);
        });
    if (raw->authenticated())
        return;  // accepted: the handshake is done
    peer->hs = std::make_unique<Handshake>(d_.cfg().auth_key, d_.host_id(), d_.incarnation());
    raw->Send(HelloMsg());
    raw->Send(peer->hs->ChallengeMsg());
    raw->SetHelloDeadline(kHelloDeadlineMs);
}

void Peers::OnFrame(Peer *peer, Frame &&f) {
    if (peer->up)
        return d_.RoutePeerFrame(peer, std::move(f));
    // The handshake: the reader yields HELLO, AUTH_CHALLENGE, AUTH_PROOF in
    // this order, or an ERROR, and nothing else before SetAuthenticated.
    switch (f.hdr.type) {
        case DSHM_MSG_HELLO:
            return OnHello(peer, f);
        case DSHM_MSG_AUTH_CHALLENGE:
            return peer->conn->Send(peer->hs->OnChallenge(f));
        case DSHM_MSG_AUTH_PROOF: {
            Status st = peer->hs->Verify(f);
            if (!st.ok()) {
                g_warning("%s: %s; closed", peer->conn->label().c_str(), st.message().c_str());
                return peer->conn->Fail(Status::Auth("authentication failed"), f.hdr.type);
            }
            peer->conn->SetAuthenticated();
            return PeerUp(peer, peer->hs->peer_incarnation());
        }
        case DSHM_MSG_ERROR: {
            const auto e = f.Fixed<dshm_error>();
            const auto text = f.Extra(sizeof e);
            return peer->conn->Close(
                Status::FromCode(e.status, "refused by the peer before the session started: " +
                                               std::string(text.begin(), text.end())));
        }
        default:
            return peer->conn->Fail(Status::Auth("message before authentication"), f.hdr.type);
    }
}

void Peers::OnHello(Peer *peer, const Frame &f) {
    auto h = f.Fixed<dshm_hello>();
    if (h.host_id != peer->cfg.host_id) {
        return peer->conn->Fail(Status::Proto("HELLO from host " + std::to_string(h.host_id) +
                                              ", expected " + std::to_string(peer->cfg.host_id)),
                                f.hdr.type);
    }
    if (!d_.membership().Admits(h.host_id, h.incarnation)) {
        return peer->conn->Fail(Status::Proto("HELLO from host " + std::to_string(h.host_id) +
                                              ", which is not a member of the group (yet)"),
                                f.hdr.type);
    }
    peer->hs->OnHello(h);
}

void Peers::PeerUp(Peer *peer, uint64_t incarnation) {
    peer->hs.reset();
    peer->up = true;
    peer->incarnation = incarnation;
    peer->connections++;
    peer->heard.clear();
    g_message("peer %s (host %u) up (%s)", peer->cfg.name.c_str(), peer->cfg.host_id,
              d_.cfg().auth ? "authenticated" : "auth = off: NOT authenticated");
    d_.OnPeerUp(peer);
    auto q = std::move(peer->queued);
    peer->queued.clear();
    for (auto &m : q)
        peer->conn->Send(std::move(m));
}

void Peers::OnClosed(Peer *peer, const Status &why) {
    g_warning("peer %s (host %u) lost: %s", peer->cfg.name.c_str(), peer->cfg.host_id,
              why.ok() ? "connection closed" : why.ToString().c_str());
    const bool was_up = peer->up;
    peer->up = false;
    d_.DeferDelete(std::move(peer->conn));
    const uint32_t host = peer->cfg.host_id;
    if (was_up)
        d_.OnPeerLost(host);
    // Messages queued while the peer was not up stay queued for the next
    // connection.
    // After a refused authentication (a wrong key will not get right by
    // itself) less often, so that the logs stay readable.
    if (host > d_.host_id() && !peer->retry_timer && !peer->cfg.address.empty() &&
        d_.membership().Admits(host))
        Redial(peer, why.code() == DSHM_E_AUTH ? 2000 : 200);
}

}  // namespace dshm

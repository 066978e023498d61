// The in-process dshmd of fuzz_peer and fuzz_client: host 1 of a three-host
// cluster, built per input as hostd/daemon_test.cc builds its hosts (a real
// Daemon with every role, no I/O thread, peers attached through
// socketpairs), driven by iterating the default GLib main context on the
// fuzzer's thread until nothing is left to do.
//
// Segments (16 pages each): "seg" owned by host 1 (this daemon: Home,
// Locker, Marks serve), "rem" owned by host 2 (the fuzzed peer: Cache,
// Writer as a non-owner) and "far" owned by host 3.
//
// Log output is dropped (dshmd logs every refused message); a GLib
// critical aborts, as it marks a bug.
#pragma once

#include <fcntl.h>
#include <glib.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "auth.h"
#include "daemon.h"
#include "frame.h"
#include "os/uffd.h"
#include "os/unix_socket.h"
#include "peers.h"
#include "watch.h"

// A fresh Daemon per input frees a few large buffers (each connection's
// 256 KiB read buffer) per input; a smaller quarantine than ASan's 256 MiB
// keeps the process's memory flat and runs ~30% more inputs a second, and
// still catches a use after free within an input (a Daemon's life).
extern "C" const char *__asan_default_options() {
    return "quarantine_size_mb=16:max_malloc_fill_size=0";
}

namespace fuzz {

using namespace dshm;

inline constexpr uint64_t kSegSize = 16 * DSHM_PAGE_SIZE;

inline GLogWriterOutput QuietWriter(GLogLevelFlags level, const GLogField *fields, gsize n,
                                    gpointer) {
    if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL)) {
        for (gsize i = 0; i < n; i++) {
            if (strcmp(fields[i].key, "MESSAGE") == 0)
                fprintf(stderr, "GLib critical: %s\n", static_cast<const char *>(fields[i].value));
        }
        abort();
    }
    if (getenv("FUZZ_VERBOSE"))
        return g_log_writer_standard_streams(level, fields, n, nullptr);
    return G_LOG_WRITER_HANDLED;
}

// Once per process: quiet logs, a private directory for the client socket
// (removed at exit; a plain array, which static destructors leave alone).
inline const char *Dir() {
    static char dir[] = "/tmp/dshm-fuzz-XXXXXX";
    static bool made = [] {
        g_log_set_writer_func(QuietWriter, nullptr, nullptr);
        if (!mkdtemp(dir))
            abort();
        atexit([] {
            char cmd[64];
            snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
            (void)!system(cmd);
        });
        return true;
    }();
    (void)made;
    return dir;
}

inline std::string SocketPath() {
    return std::string(Dir()) + "/h1.sock";
}

// The cluster's key of the harness's daemons (they check every peer's
// proof, auth.h): the harness proves it, the fuzzer's streams cannot.
inline const std::vector<uint8_t> &FuzzKey() {
    static const std::vector<uint8_t> key(32, 0x46);
    return key;
}

inline Config HostConfig() {
    Config c;
    c.host_id = 1;
    c.host_name = "h1";
    c.socket_path = SocketPath();
    c.io_thread = false;
    c.peers.push_back(PeerConfig{"h2", 2, ""});
    c.peers.push_back(PeerConfig{"h3", 3, ""});
    c.segments.push_back(SegmentConfig{"seg", kSegSize, 1, {}});
    c.segments.push_back(SegmentConfig{"rem", kSegSize, 2, {}});
    c.segments.push_back(SegmentConfig{"far", kSegSize, 3, {}});
    c.auth_key = FuzzKey();
    return c;
}

// A peer's HELLO as host `host` would send it.
inline std::vector<uint8_t> PeerHello(uint32_t host) {
    dshm_hello h = {};
    h.version = DSHM_PEER_VERSION;
    h.role = DSHM_ROLE_PEER;
    h.host_id = host;
    h.incarnation = 1000 + host;
    SetName(h.name, "h" + std::to_string(host));
    return EncodeMsg(DSHM_MSG_HELLO, 0, h);
}

// Reads and drops whatever is waiting on `fd` (non-blocking).  True if
// anything was read.
inline bool Drain(int fd) {
    bool any = false;
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0)
            return any;
        any = true;
    }
}

// One in-process dshmd with the fuzzer's ends of its peer connections.
struct Host {
    std::unique_ptr<Daemon> d;
    int peer[4] = {-1, -1, -1, -1};  // our end of host i's connection
    // A local client's socket (fuzz_client), drained by Pump into
    // client_in / client_fds while keep_client is set, else dropped.
    int client = -1;
    bool keep_client = false;
    // fuzz_client: host 2 answers as a minimal owner of "rem" (P_GRANT for
    // P_ACQUIRE, the acks for P_RELEASE and P_FLUSH, PAGE of zeros for FETCH).
    bool host2_answers = false;
    std::vector<uint8_t> host2_in;
    std::vector<uint8_t> client_in;
    std::vector<int> client_fds;

    Host() REQUIRES(loop_mutex) {
        Dir();
        d = std::make_unique<Daemon>(HostConfig());
        Status st = d->Start();
        if (!st.ok()) {
            fprintf(stderr, "Daemon::Start: %s\n", st.ToString().c_str());
            abort();
        }
    }
    ~Host() REQUIRES(loop_mutex) {
        for (int &fd : peer) {
            if (fd >= 0)
                close(fd);
            fd = -1;
        }
        if (client >= 0)
            close(client);
        client = -1;
        Pump();
        DropClientFds();
        d.reset();
        Pump();  // nothing of the daemon may be left to run
    }

    // Connects peer `host` through a socketpair (Peers::Attach); when
    // `hello`, authenticates it as a real peer would: its HELLO,
    // AUTH_CHALLENGE and the AUTH_PROOF for the daemon's challenge (which
    // the daemon sent at Attach), so the stream that follows reaches the
    // roles.
    void Connect(uint32_t host, bool hello) REQUIRES(loop_mutex) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
            abort();
        if (!d->peers().Attach(host, os::UniqueFd(sv[0])))
            abort();
        peer[host] = sv[1];
        if (hello)
            Authenticate(host);
    }
    void Authenticate(uint32_t host) REQUIRES(loop_mutex) {
        FrameReader r(Channel::kPeer, Receiver::kDaemon, ClientRole::kUnknown);
        uint8_t buf[4096];
        ssize_t n = recv(peer[host], buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0)
            abort();
        r.Feed(buf, static_cast<size_t>(n));
        std::optional<Frame> hf, cf;
        if (!r.Next(&hf).ok() || !hf || !r.Next(&cf).ok() || !cf ||
            cf->hdr.type != DSHM_MSG_AUTH_CHALLENGE) {
            fprintf(stderr, "harness: no HELLO and AUTH_CHALLENGE from the daemon\n");
            abort();
        }
        const uint64_t inc = 1000 + host;
        AuthNonce ours{}, theirs{};
        ours.fill(0x5a);
        memcpy(theirs.data(), cf->Fixed<dshm_auth_challenge>().nonce, theirs.size());
        dshm_auth_challenge c;
        memcpy(c.nonce, ours.data(), ours.size());
        dshm_auth_proof p;
        const AuthMac mac = AuthProof(FuzzKey(), host, d->host_id(), inc, d->incarnation(), ours,
                                      theirs);
        memcpy(p.mac, mac.data(), mac.size());
        std::vector<uint8_t> m = PeerHello(host);
        for (const auto &x : {EncodeMsg(DSHM_MSG_AUTH_CHALLENGE, 0, c),
                              EncodeMsg(DSHM_MSG_AUTH_PROOF, 0, p)})
            m.insert(m.end(), x.begin(), x.end());
        Write(peer[host], m.data(), m.size());
    }

    // Runs the loop and drains the peers' output until nothing happens.
    void Pump() REQUIRES(loop_mutex) {
        for (int round = 0; round < 100000; round++) {
            bool any = false;
            while (g_main_context_iteration(nullptr, FALSE))
                any = true;
            for (int i = 0; i < 4; i++) {
                if (peer[i] < 0)
                    continue;
                if (i == 2 && host2_answers ? DrainHost2() : Drain(peer[i]))
                    any = true;
            }
            if (client >= 0 && DrainClient())
                any = true;
            if (!any)
                return;
        }
    }

    bool DrainHost2() REQUIRES(loop_mutex) {
        bool any = false;
        uint8_t buf[65536];
        for (;;) {
            ssize_t n = recv(peer[2], buf, sizeof buf, MSG_DONTWAIT);
            if (n <= 0)
                break;
            any = true;
            host2_in.insert(host2_in.end(), buf, buf + n);
        }
        size_t off = 0;
        dshm_hdr hdr;
        while (host2_in.size() - off >= sizeof hdr) {
            memcpy(&hdr, host2_in.data() + off, sizeof hdr);
            if (host2_in.size() - off - sizeof hdr < hdr.len)
                break;
            const uint8_t *p = host2_in.data() + off + sizeof hdr;
            Answer(hdr, p);
            off += sizeof hdr + hdr.len;
        }
        host2_in.erase(host2_in.begin(), host2_in.begin() + off);
        return any;
    }
    void Answer(const dshm_hdr &hdr, const uint8_t *p) REQUIRES(loop_mutex) {
        std::vector<uint8_t> out;
        if (hdr.type == DSHM_MSG_P_ACQUIRE && hdr.len == sizeof(dshm_p_lock)) {
            dshm_p_lock m;
            memcpy(&m, p, sizeof m);
            out = EncodeMsg(DSHM_MSG_P_GRANT, hdr.tag, m);
        } else if ((hdr.type == DSHM_MSG_P_RELEASE || hdr.type == DSHM_MSG_P_FLUSH) &&
                   hdr.len == sizeof(dshm_p_release)) {
            dshm_p_release r;
            memcpy(&r, p, sizeof r);
            dshm_p_release_ack a = {};
            memcpy(a.segment, r.segment, sizeof a.segment);
            a.lock_id = r.lock_id;
            a.client_id = r.client_id;
            out = EncodeMsg(
                hdr.type == DSHM_MSG_P_RELEASE ? DSHM_MSG_P_RELEASE_ACK : DSHM_MSG_P_FLUSH_ACK,
                hdr.tag, a);
        } else if (hdr.type == DSHM_MSG_FETCH && hdr.len == sizeof(dshm_fetch)) {
            dshm_fetch f;
            memcpy(&f, p, sizeof f);
            dshm_page pg = {};
            memcpy(pg.segment, f.segment, sizeof pg.segment);
            pg.page = f.page;
            static const uint8_t zeros[DSHM_PAGE_SIZE] = {};
            out = EncodeMsg(DSHM_MSG_PAGE, hdr.tag, pg, zeros, sizeof zeros);
        }
        if (!out.empty())
            Write(peer[2], out.data(), out.size());
    }

    bool DrainClient() {
        bool any = false;
        uint8_t buf[65536];
        for (;;) {
            std::vector<int> fds;
            auto n = os::RecvWithFds(client, buf, sizeof buf, &fds);
            if (!n.ok() || *n == 0)
                return any;
            any = true;
            if (keep_client) {
                client_in.insert(client_in.end(), buf, buf + *n);
                client_fds.insert(client_fds.end(), fds.begin(), fds.end());
            } else {
                for (int fd : fds)
                    close(fd);
            }
        }
    }
    void DropClientFds() {
        for (int fd : client_fds)
            close(fd);
        client_fds.clear();
    }

    // Writes all of data to fd, running the daemon whenever the socket is
    // full; stops early if the daemon closed the connection.
    void Write(int fd, const uint8_t *data, size_t len) REQUIRES(loop_mutex) {
        size_t off = 0;
        int stalls = 0;
        while (off < len && stalls < 1000) {
            ssize_t n = send(fd, data + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0) {
                off += n;
                continue;
            }
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return;  // EPIPE: the daemon closed it
            stalls++;
            Pump();
        }
    }
};

// A local client of the Host on its unix socket (fuzz_client; fuzz_peer's
// local VMs): sends whole messages (with an fd where the protocol has one),
// and can attach as libdshm-client does.
struct Client {
    Host &h;
    void *map = nullptr;
    uint64_t map_size = 0;
    uint64_t features = 0, ioctls = 0;
    bool registered = false;
    os::UniqueFd uffd;

    explicit Client(Host &host) : h(host) {}
    ~Client() {
        if (map)
            munmap(map, map_size);
    }

    // sendmsg of data with `fd` on the first byte, then the rest.
    void Send(const uint8_t *data, size_t len, int fd) REQUIRES(loop_mutex) {
        if (len == 0)
            return;
        if (fd < 0)
            return h.Write(h.client, data, len);
        for (int tries = 0; tries < 1000; tries++) {
            struct iovec iov = {const_cast<uint8_t *>(data), len};
            alignas(struct cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
            struct msghdr msg = {};
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = ctl;
            msg.msg_controllen = sizeof ctl;
            struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &fd, sizeof fd);
            ssize_t n = sendmsg(h.client, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0)
                return h.Write(h.client, data + n, len - n);
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return;
            h.Pump();
        }
    }

    // The next complete frame from dshmd during the handshake, or nullopt.
    std::optional<Frame> Receive(FrameReader &r) REQUIRES(loop_mutex) {
        h.Pump();
        r.AddFds(h.client_fds);
        h.client_fds.clear();
        r.Feed(h.client_in.data(), h.client_in.size());
        h.client_in.clear();
        std::optional<Frame> f;
        if (!r.Next(&f).ok())
            return std::nullopt;
        return f;
    }

    // HELLO, ATTACH, mmap, uffd, UFFD, READY, as libdshm-client does.  False
    // if the daemon did not go along (a bug: the harness's messages are valid).
    bool Attach(const char *segment) REQUIRES(loop_mutex) {
        h.keep_client = true;
        FrameReader r(Channel::kClient, Receiver::kClient, ClientRole::kClient);
        dshm_hello hello = {};
        hello.version = DSHM_PROTO_VERSION;
        hello.role = DSHM_ROLE_CLIENT;
        SetName(hello.name, "vm-fuzz");
        auto m = EncodeMsg(DSHM_MSG_HELLO, 0, hello);
        Send(m.data(), m.size(), -1);
        auto f = Receive(r);
        if (!f || f->hdr.type != DSHM_MSG_HELLO)
            return false;
        dshm_attach a = {};
        SetName(a.segment, segment);
        SetName(a.vm_name, "vm-fuzz");
        m = EncodeMsg(DSHM_MSG_ATTACH, 1, a);
        Send(m.data(), m.size(), -1);
        f = Receive(r);
        if (!f || f->hdr.type != DSHM_MSG_ATTACHED)
            return false;
        auto at = f->Fixed<dshm_attached>();
        os::UniqueFd memfd(f->TakeFd(0));
        map = mmap(nullptr, at.size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
        if (map == MAP_FAILED) {
            map = nullptr;
            return false;
        }
        map_size = at.size;
        features = at.uffd_features;
        ioctls = at.uffd_ioctls;
        int fd = NewUffd();
        if (fd < 0)
            return false;
        dshm_uffd u = {reinterpret_cast<uint64_t>(map), map_size};
        m = EncodeMsg(DSHM_MSG_UFFD, 2, u);
        Send(m.data(), m.size(), fd);
        f = Receive(r);
        h.keep_client = false;
        h.DropClientFds();
        return f && f->hdr.type == DSHM_MSG_READY;
    }

    // A userfaultfd registered on the mapping (once), else -1.
    int NewUffd() {
        if (!map || registered)
            return -1;
        registered = true;
        auto u = os::CreateUffd(features, nullptr);
        if (!u.ok())
            return -1;
        if (!os::RegisterRange(u->get(), reinterpret_cast<uint64_t>(map), map_size, ioctls).ok())
            return -1;
        uffd = std::move(*u);
        return uffd.get();
    }

    // The stream attached by itself: maps the memfd of the first ATTACHED
    // that dshmd sent, as a client would before its UFFD.
    void LearnAttached() REQUIRES(loop_mutex) {
        h.Pump();
        size_t off = 0;
        dshm_hdr hdr;
        while (!map && h.client_in.size() - off >= sizeof hdr) {
            memcpy(&hdr, h.client_in.data() + off, sizeof hdr);
            if (h.client_in.size() - off - sizeof hdr < hdr.len)
                break;
            if (hdr.type == DSHM_MSG_ATTACHED && hdr.len == sizeof(dshm_attached) &&
                !h.client_fds.empty()) {
                dshm_attached at;
                memcpy(&at, h.client_in.data() + off + sizeof hdr, sizeof at);
                void *m = mmap(nullptr, at.size, PROT_READ | PROT_WRITE, MAP_SHARED,
                               h.client_fds.front(), 0);
                if (m != MAP_FAILED) {
                    map = m;
                    map_size = at.size;
                    features = at.uffd_features;
                    ioctls = at.uffd_ioctls;
                }
            }
            off += sizeof hdr + hdr.len;
        }
        h.client_in.erase(h.client_in.begin(), h.client_in.begin() + off);
        h.DropClientFds();
    }

    void SendStream(const uint8_t *data, size_t size) REQUIRES(loop_mutex) {
        while (size > 0) {
            size_t len = size;
            dshm_hdr hdr;
            if (size >= sizeof hdr) {
                memcpy(&hdr, data, sizeof hdr);
                len = std::min<uint64_t>(size, sizeof hdr + uint64_t(hdr.len));
            }
            if (len >= sizeof hdr && hdr.type == DSHM_MSG_UFFD) {
                LearnAttached();
                std::vector<uint8_t> msg(data, data + len);
                int fd = NewUffd();
                if (fd >= 0 && len >= sizeof hdr + sizeof(dshm_uffd)) {
                    const uint64_t base = reinterpret_cast<uint64_t>(map);
                    memcpy(msg.data() + sizeof hdr + offsetof(dshm_uffd, base), &base, 8);
                }
                int efd = -1;
                if (fd < 0)
                    fd = efd = eventfd(0, EFD_CLOEXEC);
                Send(msg.data(), msg.size(), fd);
                if (efd >= 0)
                    close(efd);
            } else {
                Send(data, len, -1);
            }
            h.Pump();
            data += len;
            size -= len;
        }
    }
};

inline int ConnectClient() {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un sa = {};
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", SocketPath().c_str());
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0)
        abort();
    return fd;
}

}  // namespace fuzz

// fuzz_client: bytes from a local client (QEMU, libdshm-client, dshmctl)
// on dshmd's unix socket.  The input is one client's stream to an
// in-process dshmd (harness.h), read by its Conn through the FrameReader
// and routed by Daemon::RouteClientFrame into Clients, Locker, Writer and
// Handoff; peer hosts 2 and 3 are connected and up (what dshmd sends them
// is read and dropped, and they never answer).  At the end the client
// closes, so the client-loss paths run too.
//
// Input: one flag byte, then the stream, sent one message per sendmsg as
// the header's length cuts it (the rest at the end as it is).
//   bit 0: the harness attaches first, as libdshm-client does: HELLO,
//          ATTACH, mmap of the memfd, a real userfaultfd registered on it,
//          UFFD, READY; the stream then starts with lock requests etc.
//   bit 1: that ATTACH is to "rem" (owned by host 2) rather than "seg"
//          (owned by this host).
//   bit 2: (without bit 0) the harness says HELLO as dshmctl first.
// A UFFD message of the stream carries a file descriptor, as it must: a
// real userfaultfd registered on the harness's mapping (with the message's
// base rewritten to that mapping, its length kept) while the harness has a
// mapping that no uffd registered yet, else an eventfd (not a uffd: the
// daemon must refuse it).  The harness never touches the mapping, so no
// fault ever waits for the loop.
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <optional>

#include "harness.h"
#include "os/uffd.h"

namespace {

using namespace fuzz;

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

int ConnectClient() {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un sa = {};
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", SocketPath().c_str());
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0)
        abort();
    return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    loop_mutex.AssertHeld();  // one thread: it iterates the loop
    const uint8_t flags = data[0];
    data++;
    size--;
    Host h;
    h.host2_answers = true;
    h.Connect(2, true);
    h.Connect(3, true);
    h.Pump();
    h.client = ConnectClient();
    {
        Client c(h);
        if (flags & 1) {
            if (!c.Attach(flags & 2 ? "rem" : "seg")) {
                fprintf(stderr, "fuzz_client: the harness's attach failed\n");
                abort();
            }
        } else {
            h.keep_client = true;  // LearnAttached
        }
        if (!(flags & 1) && (flags & 4)) {
            dshm_hello hello = {};
            hello.version = DSHM_PROTO_VERSION;
            hello.role = DSHM_ROLE_CTL;
            SetName(hello.name, "dshmctl");
            auto m = EncodeMsg(DSHM_MSG_HELLO, 0, hello);
            c.Send(m.data(), m.size(), -1);
        }
        c.SendStream(data, size);
        h.Pump();
        close(h.client);
        h.client = -1;
        h.Pump();
    }
    return 0;
}

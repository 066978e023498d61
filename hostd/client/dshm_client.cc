#include "dshm_client.h"

#include <glib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "os/uffd.h"
#include "os/unix_socket.h"

namespace dshm {
namespace {

Status ConnectUnix(const std::string &path, os::UniqueFd *out) {
    struct sockaddr_un sa = {};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path)
        return Status::Proto("socket path too long: " + path);
    strcpy(sa.sun_path, path.c_str());
    os::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(fd.get(), reinterpret_cast<sockaddr *>(&sa), sizeof sa) < 0) {
        return Status::Internal(
            "cannot connect to dshmd at " + path + ": " + strerror(errno) +
            (errno == ENOENT || errno == ECONNREFUSED ? " (is dshmd running?)" : ""));
    }
    *out = std::move(fd);
    return Status::OK();
}

std::vector<uint8_t> Hello(uint16_t role, const std::string &name) {
    dshm_hello h = {};
    h.version = DSHM_PROTO_VERSION;
    h.role = role;
    SetName(h.name, name.substr(0, DSHM_VMNAME_LEN - 1));
    return EncodeMsg(DSHM_MSG_HELLO, 0, h);
}

// Blocking receive of one frame through `reader`.
Status ReceiveFrame(int sock, FrameReader &reader, Frame *out) {
    for (;;) {
        std::optional<Frame> f;
        Status st = reader.Next(&f);
        if (!st.ok())
            return st;
        if (f) {
            if (f->hdr.type == DSHM_MSG_ERROR) {
                auto e = f->Fixed<dshm_error>();
                auto text = f->Extra(sizeof e);
                return Status::FromCode(e.status,
                                        "dshmd: " + std::string(text.begin(), text.end()));
            }
            *out = std::move(*f);
            return Status::OK();
        }
        uint8_t buf[16384];
        std::vector<int> fds;
        auto n = os::RecvWithFds(sock, buf, sizeof buf, &fds);
        if (!n.ok()) {
            if (n.err() == EINTR)
                continue;
            return Status::Internal("reading from dshmd: " + n.error().what);
        }
        if (*n == 0)
            return Status::Internal("dshmd closed the connection");
        reader.AddFds(fds);
        reader.Feed(buf, *n);
    }
}

}  // namespace

Client::~Client() {
    Detach();
}

void Client::Detach() {
    sock_.reset();
    if (data_)
        munmap(const_cast<uint8_t *>(data_), size_);
    data_ = nullptr;
    uffd_.reset();
}

Status Client::Send(const std::vector<uint8_t> &msg, int fd) {
    auto r = os::SendWithFds(sock_.get(), msg.data(), msg.size(), fd >= 0 ? &fd : nullptr,
                             fd >= 0 ? 1 : 0);
    if (!r.ok())
        return Status::Internal("writing to dshmd: " + r.error().what);
    return Status::OK();
}

Status Client::Receive(Frame *out) {
    return ReceiveFrame(sock_.get(), reader_, out);
}

Status Client::Attach(const std::string &socket_path, const std::string &segment,
                      const std::string &name, const std::string &uuid) {
    if (!IsValidSegmentName(segment))
        return Status::NoSegment("invalid segment name '" + segment + "'");
    uint8_t vm_uuid[16] = {};
    if (!uuid.empty()) {
        std::string hex;
        for (char ch : uuid) {
            if (ch != '-')
                hex += ch;
        }
        if (!g_uuid_string_is_valid(uuid.c_str()) || hex.size() != 32)
            return Status::Proto("'" + uuid + "' is not a UUID");
        for (size_t i = 0; i < 16; i++)
            vm_uuid[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
    }
    Status st = ConnectUnix(socket_path, &sock_);
    if (!st.ok())
        return st;
    st = Send(Hello(DSHM_ROLE_CLIENT, name));
    Frame f;
    if (st.ok())
        st = Receive(&f);
    if (!st.ok())
        return st;
    if (f.hdr.type != DSHM_MSG_HELLO)
        return Status::Proto("expected HELLO from dshmd");

    dshm_attach a = {};
    SetName(a.segment, segment);
    SetName(a.vm_name, name.substr(0, DSHM_VMNAME_LEN - 1));
    memcpy(a.vm_uuid, vm_uuid, sizeof a.vm_uuid);
    st = Send(EncodeMsg(DSHM_MSG_ATTACH, next_tag_++, a));
    if (st.ok())
        st = Receive(&f);
    if (!st.ok())
        return st;
    if (f.hdr.type != DSHM_MSG_ATTACHED)
        return Status::Proto("expected ATTACHED");
    auto at = f.Fixed<dshm_attached>();
    os::UniqueFd memfd(f.TakeFd(0));
    void *m = mmap(nullptr, at.size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
    if (m == MAP_FAILED)
        return Status::Internal(std::string("mmap of the segment: ") + strerror(errno));
    data_ = static_cast<volatile uint8_t *>(m);
    size_ = at.size;
    client_id_ = at.client_id;
    owner_host_ = at.owner_host;

    auto uffd = os::CreateUffd(at.uffd_features, nullptr);
    if (!uffd.ok())
        return Status::Uffd("userfaultfd: " + uffd.error().what);
    auto reg =
        os::RegisterRange(uffd->get(), reinterpret_cast<uint64_t>(m), at.size, at.uffd_ioctls);
    if (!reg.ok())
        return Status::Uffd("registering the mapping: " + reg.error().what);
    uffd_ = std::move(*uffd);
    dshm_uffd u = {};
    u.base = reinterpret_cast<uint64_t>(m);
    u.length = at.size;
    st = Send(EncodeMsg(DSHM_MSG_UFFD, next_tag_++, u), uffd_.get());
    if (st.ok())
        st = Receive(&f);
    if (!st.ok())
        return st;
    if (f.hdr.type != DSHM_MSG_READY)
        return Status::Proto("expected READY");
    return Status::OK();
}

Status Client::LockRequest(uint16_t type, uint32_t lock, uint16_t want, ReleaseInfo *info) {
    if (!sock_.valid())
        return Status::NotAttached("not attached");
    dshm_lock_req q = {};
    q.lock_id = lock;
    uint32_t tag = next_tag_++;
    Status st = Send(EncodeMsg(type, tag, q));
    Frame f;
    if (st.ok())
        st = Receive(&f);
    if (!st.ok())
        return st;
    auto r = f.Fixed<dshm_lock_reply>();
    if (f.hdr.type == DSHM_MSG_LOCK_FAILED) {
        return Status::FromCode(
            r.status, std::string(type == DSHM_MSG_ACQUIRE ? "acquire" : "release") + " of lock " +
                          std::to_string(lock) + " refused");
    }
    if (f.hdr.type != want || r.lock_id != lock || f.hdr.tag != tag) {
        return Status::Proto("unexpected " + MsgTypeName(f.hdr.type) + " from dshmd");
    }
    if (info) {
        info->pages_written = r.pages_written;
        info->bytes_written = r.bytes_written;
    }
    return Status::OK();
}

Status Client::Acquire(uint32_t lock) {
    return LockRequest(DSHM_MSG_ACQUIRE, lock, DSHM_MSG_GRANTED, nullptr);
}

Status Client::Release(uint32_t lock, ReleaseInfo *info) {
    return LockRequest(DSHM_MSG_RELEASE, lock, DSHM_MSG_RELEASED, info);
}

Status Client::MigrateOut(dshm_handoff *token) {
    if (!sock_.valid())
        return Status::NotAttached("not attached");
    uint32_t tag = next_tag_++;
    Status st = Send(EncodeEmpty(DSHM_MSG_MIGRATE_OUT, tag));
    Frame f;
    if (st.ok())
        st = Receive(&f);
    if (!st.ok())
        return st;
    if (f.hdr.type != DSHM_MSG_MIGRATE_READY || f.hdr.tag != tag)
        return Status::Proto("unexpected " + MsgTypeName(f.hdr.type) + " from dshmd");
    *token = f.Fixed<dshm_handoff>();
    return Status::OK();
}

Status Client::Adopt(const dshm_handoff &token, dshm_adopted *out) {
    if (!sock_.valid())
        return Status::NotAttached("not attached");
    uint32_t tag = next_tag_++;
    Status st = Send(EncodeMsg(DSHM_MSG_ADOPT, tag, token));
    Frame f;
    if (st.ok())
        st = Receive(&f);
    if (!st.ok())
        return st;
    if (f.hdr.type != DSHM_MSG_ADOPTED || f.hdr.tag != tag)
        return Status::Proto("unexpected " + MsgTypeName(f.hdr.type) + " from dshmd");
    *out = f.Fixed<dshm_adopted>();
    if (out->status != DSHM_OK)
        return Status::FromCode(out->status, "dshmd could not hand the source's locks over");
    return Status::OK();
}

Status CtlQuery(const std::string &socket_path, uint32_t what, std::string *json) {
    os::UniqueFd sock;
    Status st = ConnectUnix(socket_path, &sock);
    if (!st.ok())
        return st;
    FrameReader reader(Channel::kClient, Receiver::kClient, ClientRole::kCtl);
    auto hello = Hello(DSHM_ROLE_CTL, "dshmctl");
    dshm_ctl_query q = {};
    q.what = what;
    auto query = EncodeMsg(DSHM_MSG_CTL_QUERY, 1, q);
    hello.insert(hello.end(), query.begin(), query.end());
    auto r = os::SendWithFds(sock.get(), hello.data(), hello.size(), nullptr, 0);
    if (!r.ok())
        return Status::Internal("writing to dshmd: " + r.error().what);
    Frame f;
    for (int i = 0; i < 2; i++) {
        st = ReceiveFrame(sock.get(), reader, &f);
        if (!st.ok())
            return st;
        if (f.hdr.type == DSHM_MSG_CTL_REPLY) {
            json->assign(f.payload.begin(), f.payload.end());
            return Status::OK();
        }
    }
    return Status::Proto("no CTL_REPLY from dshmd");
}

}  // namespace dshm

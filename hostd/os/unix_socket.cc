#include "unix_socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace dshm::os {

namespace {

void CloseAll(const std::vector<int> &fds) {
    for (int fd : fds) {
        close(fd);
    }
}

VoidResult WaitWritable(int sock, int timeout_ms) {
    pollfd pfd{sock, POLLOUT, 0};
    int r;
    do {
        r = poll(&pfd, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return OsError::FromErrno(errno, "poll(POLLOUT)");
    }
    if (r == 0) {
        return OsError::FromErrno(ETIMEDOUT, "SendWithFds: socket not writable");
    }
    return Ok();
}

}  // namespace

VoidResult SendWithFds(int sock, const void *buf, size_t len, const int *fds, size_t nfds,
                       int timeout_ms) {
    if (nfds > kMaxRecvFds || (nfds > 0 && (len == 0 || fds == nullptr))) {
        return OsError::FromErrno(EINVAL, "SendWithFds: bad fd count " + std::to_string(nfds));
    }
    // Control buffer for up to kMaxRecvFds fds, suitably aligned for cmsghdr.
    union {
        char buf[CMSG_SPACE(sizeof(int) * kMaxRecvFds)];
        cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);

    const char *p = static_cast<const char *>(buf);
    size_t done = 0;
    bool fds_sent = nfds == 0;
    while (done < len || !fds_sent) {
        iovec iov{const_cast<char *>(p + done), len - done};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        if (!fds_sent) {
            msg.msg_control = control.buf;
            msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
            cmsghdr *c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
            memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
        }
        ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                VoidResult w = WaitWritable(sock, timeout_ms);
                if (!w.ok()) {
                    return w;
                }
                continue;
            }
            return OsError::FromErrno(errno, "sendmsg(" + std::to_string(len - done) + " bytes, " +
                                                 std::to_string(fds_sent ? 0 : nfds) + " fds)");
        }
        // A successful sendmsg with >= 1 byte delivered the fds with it.
        fds_sent = true;
        done += static_cast<size_t>(n);
    }
    return Ok();
}

Result<size_t> RecvWithFds(int sock, void *buf, size_t cap, std::vector<int> *fds) {
    union {
        char buf[CMSG_SPACE(sizeof(int) * kMaxRecvFds)];
        cmsghdr align;
    } control;
    iovec iov{buf, cap};
    msghdr msg{};
    ssize_t n;
    do {
        msg = msghdr{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return OsError::FromErrno(errno, "recvmsg");
    }

    std::vector<int> got;
    for (cmsghdr *c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(c);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof(int), sizeof fd);
            got.push_back(fd);
        }
    }
    if ((msg.msg_flags & MSG_CTRUNC) != 0) {
        // The kernel installed the fds that fit and dropped the rest: close
        // what we got, the message is unusable.
        CloseAll(got);
        return OsError::FromErrno(EMSGSIZE, "recvmsg: control data truncated (more than " +
                                                std::to_string(kMaxRecvFds) + " fds)");
    }
    if (fds == nullptr) {
        CloseAll(got);
    } else {
        fds->insert(fds->end(), got.begin(), got.end());
    }
    return static_cast<size_t>(n);
}

}  // namespace dshm::os

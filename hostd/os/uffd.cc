#include "uffd.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <string>

namespace dshm::os {

namespace {

std::string Range(uint64_t start, uint64_t len) {
    return "[" + Hex(start) + ", +" + Hex(len) + ")";
}

int Ioctl(int fd, unsigned long req, void *arg) {
    int r;
    do {
        r = ioctl(fd, req, arg);
    } while (r < 0 && errno == EINTR);
    return r;
}

Result<UniqueFd> NewUffdSyscall() {
#ifdef __NR_userfaultfd
    UniqueFd fd(static_cast<int>(syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
    if (!fd.valid()) {
        return OsError::FromErrno(errno, "userfaultfd(O_CLOEXEC|O_NONBLOCK)");
    }
    return fd;
#else
    return OsError::FromErrno(ENOSYS, "userfaultfd");
#endif
}

Result<UniqueFd> NewUffdDevice() {
    UniqueFd dev(open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
    if (!dev.valid()) {
        return OsError::FromErrno(errno, "open(/dev/userfaultfd)");
    }
    int fd;
    do {
        fd = ioctl(dev.get(), USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        return OsError::FromErrno(errno, "ioctl(/dev/userfaultfd, USERFAULTFD_IOC_NEW)");
    }
    return UniqueFd(fd);
}

// UFFDIO_API on a fresh fd.  Returns the kernel's feature mask.
Result<uint64_t> ApiHandshake(int fd, uint64_t features) {
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = features;
    if (Ioctl(fd, UFFDIO_API, &api) != 0) {
        return OsError::FromErrno(errno, "UFFDIO_API features=" + Hex(features));
    }
    return static_cast<uint64_t>(api.features);
}

Result<UniqueFd> NewUffd(UffdSource source) {
    if (source == UffdSource::kDevice) {
        return NewUffdDevice();
    }
    auto fd = NewUffdSyscall();
    if (fd.ok() || source == UffdSource::kSyscall) {
        return fd;
    }
    int e = fd.err();
    if (e != EPERM && e != EACCES && e != ENOSYS) {
        return fd;
    }
    auto dev = NewUffdDevice();
    if (!dev.ok()) {
        return OsError{dev.err(), fd.error().what + "; fallback " + dev.error().what};
    }
    return dev;
}

VoidResult FillResult(int rc, int64_t copied, const char *op, uint64_t dst) {
    if (rc == 0) {
        return Ok();
    }
    int e = errno;
    if (copied == -EEXIST) {
        e = EEXIST;
    }
    return OsError::FromErrno(e, std::string(op) + " dst=" + Hex(dst));
}

}  // namespace

Result<UniqueFd> CreateUffd(uint64_t features, uint64_t *got_features, UffdSource source) {
    auto fd = NewUffd(source);
    if (!fd.ok()) {
        return fd;
    }
    auto api = ApiHandshake(fd->get(), features);
    if (!api.ok()) {
        if (api.err() != EINVAL) {
            return api.error();
        }
        // EINVAL: most likely a requested feature the kernel does not have.
        // Ask a fresh uffd (the handshake is one-shot) what it supports.
        auto probe_fd = NewUffd(source);
        if (probe_fd.ok()) {
            auto avail = ApiHandshake(probe_fd->get(), 0);
            if (avail.ok() && (*avail & features) != features) {
                return OsError::FromErrno(
                    EOPNOTSUPP, "UFFDIO_API: kernel lacks features " + Hex(features & ~*avail) +
                                    " (requested " + Hex(features) + ", has " + Hex(*avail) + ")");
            }
        }
        return api.error();
    }
    if ((*api & features) != features) {
        return OsError::FromErrno(EOPNOTSUPP,
                                  "UFFDIO_API: kernel lacks features " + Hex(features & ~*api));
    }
    if (got_features != nullptr) {
        *got_features = *api;
    }
    return fd;
}

Result<uint64_t> RegisterRange(int uffd, uint64_t base, uint64_t len, uint64_t modes) {
    uffdio_register reg{};
    reg.range.start = base;
    reg.range.len = len;
    reg.mode = modes;
    if (Ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
        return OsError::FromErrno(errno,
                                  "UFFDIO_REGISTER " + Range(base, len) + " mode=" + Hex(modes));
    }
    return static_cast<uint64_t>(reg.ioctls);
}

VoidResult UnregisterRange(int uffd, uint64_t base, uint64_t len) {
    uffdio_range range{};
    range.start = base;
    range.len = len;
    if (Ioctl(uffd, UFFDIO_UNREGISTER, &range) != 0) {
        return OsError::FromErrno(errno, "UFFDIO_UNREGISTER " + Range(base, len));
    }
    return Ok();
}

VoidResult SetNonBlocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) {
        return OsError::FromErrno(errno, "fcntl(F_GETFL)");
    }
    if ((flags & O_NONBLOCK) == 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        return OsError::FromErrno(errno, "fcntl(F_SETFL, O_NONBLOCK)");
    }
    return Ok();
}

Result<size_t> ReadEvents(int uffd, uffd_msg *buf, size_t max) {
    if (max == 0) {
        return size_t{0};
    }
    for (;;) {
        ssize_t n = read(uffd, buf, max * sizeof(uffd_msg));
        if (n >= 0) {
            if (n % sizeof(uffd_msg) != 0) {
                return OsError::FromErrno(EIO, "read(uffd): partial uffd_msg");
            }
            return static_cast<size_t>(n) / sizeof(uffd_msg);
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN) {
            return size_t{0};
        }
        return OsError::FromErrno(errno, "read(uffd)");
    }
}

Result<size_t> WaitEvents(int uffd, uffd_msg *buf, size_t max, int timeout_ms) {
    pollfd pfd{uffd, POLLIN, 0};
    int r;
    do {
        r = poll(&pfd, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return OsError::FromErrno(errno, "poll(uffd)");
    }
    if (r == 0) {
        return size_t{0};
    }
    if ((pfd.revents & POLLERR) != 0) {
        // Not O_NONBLOCK, or the handshake was not done.
        return OsError::FromErrno(EINVAL, "poll(uffd): POLLERR (uffd not O_NONBLOCK?)");
    }
    return ReadEvents(uffd, buf, max);
}

VoidResult CopyPage(int uffd, uint64_t dst, const void *src, bool wp, bool dont_wake) {
    uffdio_copy copy{};
    copy.dst = dst;
    copy.src = reinterpret_cast<uintptr_t>(src);
    copy.len = kPageSize;
    copy.mode = (wp ? UFFDIO_COPY_MODE_WP : 0) | (dont_wake ? UFFDIO_COPY_MODE_DONTWAKE : 0);
    int rc = Ioctl(uffd, UFFDIO_COPY, &copy);
    return FillResult(rc, copy.copy, wp ? "UFFDIO_COPY(WP)" : "UFFDIO_COPY", dst);
}

VoidResult ZeroPage(int uffd, uint64_t dst, bool dont_wake) {
    uffdio_zeropage zero{};
    zero.range.start = dst;
    zero.range.len = kPageSize;
    zero.mode = dont_wake ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0;
    int rc = Ioctl(uffd, UFFDIO_ZEROPAGE, &zero);
    return FillResult(rc, zero.zeropage, "UFFDIO_ZEROPAGE", dst);
}

VoidResult WriteProtect(int uffd, uint64_t start, uint64_t len, bool protect, bool dont_wake) {
    uffdio_writeprotect wp{};
    wp.range.start = start;
    wp.range.len = len;
    wp.mode = (protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
              (dont_wake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0);
    if (Ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0) {
        return OsError::FromErrno(errno, std::string("UFFDIO_WRITEPROTECT(") +
                                             (protect ? "protect" : "unprotect") + ") " +
                                             Range(start, len));
    }
    return Ok();
}

VoidResult Wake(int uffd, uint64_t start, uint64_t len) {
    uffdio_range range{};
    range.start = start;
    range.len = len;
    if (Ioctl(uffd, UFFDIO_WAKE, &range) != 0) {
        return OsError::FromErrno(errno, "UFFDIO_WAKE " + Range(start, len));
    }
    return Ok();
}

}  // namespace dshm::os

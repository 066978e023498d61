#include "memfd.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>

namespace dshm::os {

namespace {

bool PageAligned(uint64_t v) {
    return v % kPageSize == 0;
}

}  // namespace

Result<UniqueFd> CreateSegmentMemfd(const std::string &name, uint64_t size) {
    if (size == 0 || !PageAligned(size) || size > static_cast<uint64_t>(INT64_MAX)) {
        return OsError::FromErrno(EINVAL, "CreateSegmentMemfd size=" + Hex(size));
    }
    // memfd names are limited to 249 bytes; longer names fail with EINVAL.
    std::string full = "dshm:" + name;
    UniqueFd fd(memfd_create(full.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd.valid()) {
        return OsError::FromErrno(errno, "memfd_create(" + full + ")");
    }
    if (ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
        return OsError::FromErrno(errno, "ftruncate(" + full + ", " + Hex(size) + ")");
    }
    if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        return OsError::FromErrno(errno, "F_ADD_SEALS(" + full + ")");
    }
    return fd;
}

VoidResult PunchPage(int fd, uint64_t offset, uint64_t len) {
    if (!PageAligned(offset) || !PageAligned(len) || len == 0) {
        return OsError::FromErrno(EINVAL, "PunchPage offset=" + Hex(offset) + " len=" + Hex(len));
    }
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(len)) != 0) {
        return OsError::FromErrno(
            errno, "fallocate(PUNCH_HOLE) offset=" + Hex(offset) + " len=" + Hex(len));
    }
    return Ok();
}

Result<bool> PageIsPresent(int fd, uint64_t offset) {
    if (!PageAligned(offset)) {
        return OsError::FromErrno(EINVAL, "PageIsPresent offset=" + Hex(offset));
    }
    off_t data = lseek(fd, static_cast<off_t>(offset), SEEK_DATA);
    if (data < 0) {
        // ENXIO: no data at or after offset (also: offset at/after EOF).
        if (errno == ENXIO) {
            return false;
        }
        return OsError::FromErrno(errno, "lseek(SEEK_DATA) offset=" + Hex(offset));
    }
    return static_cast<uint64_t>(data) == offset;
}

namespace {
// Calls fn(first, end) for each run [first, end) of present pages.
template <typename Fn>
VoidResult ForEachPresentRun(int fd, uint64_t npages, Fn fn) {
    const uint64_t end = npages * kPageSize;
    for (uint64_t off = 0; off < end;) {
        off_t data = lseek(fd, static_cast<off_t>(off), SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO)
                break;  // no data at or after off
            return OsError::FromErrno(errno, "lseek(SEEK_DATA) offset=" + Hex(off));
        }
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0)
            return OsError::FromErrno(errno, "lseek(SEEK_HOLE) offset=" + Hex(uint64_t(data)));
        const uint64_t last = std::min<uint64_t>(static_cast<uint64_t>(hole), end);
        if (static_cast<uint64_t>(data) >= last)
            break;
        fn(static_cast<uint64_t>(data) / kPageSize, (last + kPageSize - 1) / kPageSize);
        off = last;
    }
    return Ok();
}
}  // namespace

Result<std::vector<bool>> PresentPages(int fd, uint64_t npages) {
    std::vector<bool> present(npages, false);
    auto r = ForEachPresentRun(fd, npages, [&present](uint64_t first, uint64_t end) {
        for (uint64_t p = first; p < end; p++)
            present[p] = true;
    });
    if (!r.ok())
        return r.error();
    return present;
}

Result<uint64_t> CountPresentPages(int fd, uint64_t npages) {
    uint64_t n = 0;
    auto r =
        ForEachPresentRun(fd, npages, [&n](uint64_t first, uint64_t end) { n += end - first; });
    if (!r.ok())
        return r.error();
    return n;
}

VoidResult ReadPage(int fd, uint64_t offset, void *buf) {
    auto *p = static_cast<char *>(buf);
    size_t done = 0;
    while (done < kPageSize) {
        ssize_t n = pread(fd, p + done, kPageSize - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return OsError::FromErrno(errno, "pread offset=" + Hex(offset + done));
        }
        if (n == 0) {
            return OsError::FromErrno(EIO, "pread offset=" + Hex(offset + done) + " (end of file)");
        }
        done += static_cast<size_t>(n);
    }
    return Ok();
}

VoidResult WritePage(int fd, uint64_t offset, const void *buf) {
    const auto *p = static_cast<const char *>(buf);
    size_t done = 0;
    while (done < kPageSize) {
        ssize_t n = pwrite(fd, p + done, kPageSize - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return OsError::FromErrno(errno, "pwrite offset=" + Hex(offset + done));
        }
        if (n == 0) {
            return OsError::FromErrno(EIO, "pwrite offset=" + Hex(offset + done));
        }
        done += static_cast<size_t>(n);
    }
    return Ok();
}

}  // namespace dshm::os

// dshm::os userfaultfd wrappers (docs/protocol.md section 2).
//
// Client side: CreateUffd + RegisterRange.  A client (QEMU, libdshm-client)
// maps the segment memfd MAP_SHARED, creates a uffd with kClientUffdFeatures,
// registers the whole mapping with kClientRegisterModes, sends the uffd to
// dshmd over the client socket (SendWithFds) and keeps its own copy open (the
// uffd is bound to the creating process's mm; the fd only names it).
//
// Daemon side: dshmd owns the received uffd and, for that client's mapping,
// reads fault events (ReadEvents), fills holes (CopyPage; not ZeroPage, see
// there), adds
// or removes write protection (WriteProtect) and wakes waiters (Wake).  All
// addresses are virtual addresses in the CLIENT's address space.
//
// Kernel behaviour relied upon (proved by uffd_test.cc on this kernel):
//   - a missing fault on a memfd hole is resolved by CopyPage(wp=true); the
//     page is then mapped write-protected in the faulting client;
//   - the first write raises a WP fault (UFFD_PAGEFAULT_FLAG_WP) that
//     WriteProtect(protect=false) resolves (and wakes);
//   - WriteProtect(protect=true) right after registration write-protects
//     never-touched shmem PTEs (uffd-wp markers), so a write to a page that
//     ANOTHER client filled still faults WP in this client;
//   - after PunchPage, the next access faults MISSING again.
//
// Trap: poll() on a uffd that is not O_NONBLOCK reports POLLERR forever.
// CreateUffd returns an O_NONBLOCK fd, but an fd received over SCM_RIGHTS
// shares the sender's open file description and so is O_NONBLOCK only if the
// sender made it so (a client using its own code may not have): call
// SetNonBlocking on every received uffd (this also affects the client's copy,
// which a client never reads).
//
// Thread-safety: thin system-call wrappers, no shared state, safe from any
// thread.  Errors are returned as values (see result.h).
#pragma once

#include <linux/userfaultfd.h>

#include <cstddef>
#include <cstdint>

#include "result.h"

namespace dshm::os {

// Features every dshm client requests.
inline constexpr uint64_t kClientUffdFeatures =
    UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
// Modes every dshm client registers its mapping with.
inline constexpr uint64_t kClientRegisterModes =
    UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP;

// Where CreateUffd gets its fd from.  kAuto: the userfaultfd(2) syscall, and
// /dev/userfaultfd (USERFAULTFD_IOC_NEW) if the syscall is denied (EPERM,
// EACCES, ENOSYS: vm.unprivileged_userfaultfd=0 without CAP_SYS_PTRACE, or a
// seccomp filter).
enum class UffdSource { kAuto, kSyscall, kDevice };

// --- client side -------------------------------------------------------------

// Creates a userfaultfd (O_CLOEXEC | O_NONBLOCK; NOT UFFD_USER_MODE_ONLY, so
// faults raised by the kernel on the process's behalf, e.g. KVM, are caught
// too) and performs the UFFDIO_API handshake enabling exactly `features`.
// On success *got_features (if not null) receives every feature the kernel
// supports.  Fails with EOPNOTSUPP if the kernel lacks one of `features`
// (the message lists the missing bits).
Result<UniqueFd> CreateUffd(uint64_t features, uint64_t *got_features,
                            UffdSource source = UffdSource::kAuto);

// Registers [base, base+len) (page-aligned, an existing mapping) with `modes`
// (UFFDIO_REGISTER_MODE_*).  Returns the mask of ioctls available on the
// range (bits (1 << _UFFDIO_COPY) etc.).
Result<uint64_t> RegisterRange(int uffd, uint64_t base, uint64_t len, uint64_t modes);

// Undoes RegisterRange for [base, base+len).
VoidResult UnregisterRange(int uffd, uint64_t base, uint64_t len);

// --- daemon side -------------------------------------------------------------

// Sets O_NONBLOCK on `fd`, any fd (use on every uffd received over SCM_RIGHTS;
// a Conn sets it on its socket).
VoidResult SetNonBlocking(int fd);

// Reads up to `max` pending events into buf without blocking (the uffd must
// be O_NONBLOCK).  Returns the number read, 0 when none is pending (EAGAIN).
Result<size_t> ReadEvents(int uffd, uffd_msg *buf, size_t max);

// poll()s the uffd for up to timeout_ms (-1: forever) and then ReadEvents.
// Returns 0 on timeout.  For tests, benchmarks and simple loops; dshmd polls
// uffds from its event loop and calls ReadEvents.
Result<size_t> WaitEvents(int uffd, uffd_msg *buf, size_t max, int timeout_ms);

// UFFDIO_COPY of one page (kPageSize bytes at `src`, in this process) to
// client address `dst` (page-aligned).  wp: map it write-protected
// (UFFDIO_COPY_MODE_WP; the uffd must be registered with MODE_WP).
// dont_wake: do not wake the faulting threads (UFFDIO_COPY_MODE_DONTWAKE;
// call Wake later).  On success the page is in the memfd and the faulting
// threads of THIS uffd are woken (unless dont_wake); threads of other
// clients waiting on the same page are not: Wake them through their uffds.
// Errors (as values, err()):
//   EEXIST  the page was already present in the memfd (e.g. filled through
//           another client's uffd).  Not a failure of dshm: nothing was
//           copied and NOBODY was woken; call Wake for the faulting client,
//           whose retried access maps the present page (keeping its uffd-wp
//           protection, see uffd_test.cc).
//   ESRCH   the client's mm is gone (process exited);
//   ENOENT  range not registered / unmapped;
//   EAGAIN  mm layout changing; retry later.
VoidResult CopyPage(int uffd, uint64_t dst, const void *src, bool wp, bool dont_wake);

// UFFDIO_ZEROPAGE of one page at `dst`.  CAUTION: UFFDIO_ZEROPAGE has no WP
// mode, so the page is mapped WRITABLE in the faulting client, which would
// break Invariant W (docs/protocol.md section 2).  dshmd resolves missing
// faults on zero pages with CopyPage(zeros, wp=true) instead.  Errors as for
// CopyPage (EEXIST: already present, nobody woken).
VoidResult ZeroPage(int uffd, uint64_t dst, bool dont_wake);

// UFFDIO_WRITEPROTECT of [start, start+len) (page-aligned).  protect=true:
// write-protect (also installs uffd-wp markers on never-populated shmem PTEs);
// protect=false: remove protection and wake threads waiting on a WP fault in
// the range unless dont_wake.
VoidResult WriteProtect(int uffd, uint64_t start, uint64_t len, bool protect,
                        bool dont_wake = false);

// UFFDIO_WAKE: wakes threads waiting on faults in [start, start+len).
VoidResult Wake(int uffd, uint64_t start, uint64_t len);

}  // namespace dshm::os

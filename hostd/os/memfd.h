// dshm::os memfd helpers: the one per-segment memfd of a host (docs/protocol.md
// section 2).
//
// Touching a hole through a mapping fills it, which would hide the next
// access from userfaultfd.  dshmd therefore touches pages through its own
// mapping only when they are present (or on the owner, where a hole is a
// zero page anyway), and fills holes with UFFDIO_COPY (uffd.h).  ReadPage
// (pread: a hole reads as zeros and stays a hole) and PageIsPresent
// (lseek SEEK_DATA) look at the page cache without changing it; dshmctl's
// counts and the kernel-behaviour tests use them.
//
// Thread-safety: thin system-call wrappers, no shared state, safe from any
// thread.  Errors are returned as values (see result.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "result.h"

namespace dshm::os {

// Creates an anonymous memfd named "dshm:<name>" of `size` bytes (a non-zero
// multiple of kPageSize), close-on-exec, and seals it with F_SEAL_SHRINK |
// F_SEAL_GROW (and F_SEAL_SEAL) so that no client holding the fd can resize
// it.  All pages start as holes.
Result<UniqueFd> CreateSegmentMemfd(const std::string &name, uint64_t size);

// Deallocates [offset, offset+len) of `fd` (fallocate PUNCH_HOLE|KEEP_SIZE):
// the range becomes holes, so the next access through any userfaultfd-
// registered mapping faults MISSING again.  offset and len must be multiples
// of kPageSize.  Write protection in client mappings: a PTE that was
// uffd-write-protected becomes a uffd-wp marker and stays protected, but a
// PTE that was writable loses all protection, so a later write to the
// refilled page raises NO fault.  Punch only pages that are write-protected
// in every client, or re-protect them right after the punch (uffd_test.cc,
// wp_survives_punch_and_refill).
VoidResult PunchPage(int fd, uint64_t offset, uint64_t len = kPageSize);

// True when the page at `offset` (a multiple of kPageSize) is present in the
// memfd, false when it is a hole.  Uses lseek(SEEK_DATA), which neither maps
// nor allocates anything.  (Moves the fd's file offset, which dshm never
// uses: all I/O is positional.)
Result<bool> PageIsPresent(int fd, uint64_t offset);

// Which of the first `npages` pages of the memfd are present: one
// lseek(SEEK_DATA) / lseek(SEEK_HOLE) pair per run of present pages, not a
// call per page (a 256 MiB segment has 65536 pages).  Same rules as
// PageIsPresent.
Result<std::vector<bool>> PresentPages(int fd, uint64_t npages);
// How many of them: the same walk, without a vector of npages entries.
Result<uint64_t> CountPresentPages(int fd, uint64_t npages);

// Reads the kPageSize bytes at `offset` into `buf` with pread (looping over
// short reads).  A hole reads as zeros and stays a hole.  Fails with EIO if
// the file ends before the page does.
VoidResult ReadPage(int fd, uint64_t offset, void *buf);

// Writes kPageSize bytes from `buf` at `offset` with pwrite (fills a hole).
// Only for the owner host / tests: on a non-owner host pages are filled with
// UFFDIO_COPY so that faulting clients are woken (CopyPage in uffd.h).
VoidResult WritePage(int fd, uint64_t offset, const void *buf);

}  // namespace dshm::os

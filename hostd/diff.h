// Multiple-writer page diffs (TreadMarks / Munin): the changed bytes of one
// page relative to its twin, in one of the encodings of enum
// dshm_diff_encoding (include/dshm/wire.h).
//
// The one rule (docs/protocol.md section 5): a diff carries EXACTLY the bytes
// that differ from the twin, never an unchanged byte, because other hosts may
// be writing other bytes of the same page under other locks (false sharing),
// and an unchanged byte written back would overwrite their write with a stale
// value.  Consequently:
//   - RUNS: { u16 offset; u16 length; u8 bytes[length] }* with length > 0,
//     offsets strictly increasing and runs not overlapping, all inside the
//     page.  EncodeDiff emits maximal runs (never two adjacent runs);
//     ApplyDiff also accepts adjacent runs, so a RUNS diff is
//     kRunsMinSize..kRunsMaxSize bytes.
//   - MASK: a 512-byte bitmap (bit i of byte i/8, LSB first, marks byte i)
//     followed by one byte per set bit, in offset order; at least one bit set.
//     kMaskMinSize..kMaskMaxSize bytes, exactly 512 + popcount(bitmap).
//   - FULL: exactly DSHM_PAGE_SIZE bytes; EncodeDiff emits it only when every
//     byte of the page differs from the twin.
//
// Thread safety: the functions keep no state; calls on distinct buffers may
// run concurrently.  Buffer rules are stated per function.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dshm/wire.h"
#include "status.h"

namespace dshm {

inline constexpr size_t kPageSize = DSHM_PAGE_SIZE;
inline constexpr size_t kMaskBytes = DSHM_PAGE_SIZE / 8;
inline constexpr size_t kRunHeaderSize = 4;  // u16 offset + u16 length

// Exact size bounds of a valid encoded diff, per encoding.
inline constexpr size_t kRunsMinSize = kRunHeaderSize + 1;                // one 1-byte run
inline constexpr size_t kRunsMaxSize = (kRunHeaderSize + 1) * kPageSize;  // 4096 1-byte runs
inline constexpr size_t kMaskMinSize = kMaskBytes + 1;
inline constexpr size_t kMaskMaxSize = kMaskBytes + kPageSize;
inline constexpr size_t kFullSize = kPageSize;

// Sets *min_len and *max_len to the bounds of a valid encoded diff of
// `encoding` and returns true, or returns false for an unknown encoding.
bool DiffSizeBounds(uint16_t encoding, size_t *min_len, size_t *max_len);

// Encodes the bytes of `page` that differ from `twin` into *out (replacing
// its contents) and returns the encoding used (DSHM_ENC_RUNS, _MASK or
// _FULL), the smallest of the three; ties prefer RUNS over MASK.  Returns 0
// and leaves *out empty when the page equals its twin.
// REQUIRES: page and twin point to DSHM_PAGE_SIZE readable bytes; nobody
//           modifies `twin` during the call.
// `page` may be written concurrently (a live shared mapping): the diff is
// derived from one comparison of each byte (one snapshot) and carries the
// value read when it is copied out, a moment later (a FULL diff carries
// every byte, whatever it holds by then).  The caller MUST then advance the
// twin by applying this diff to it (ApplyDiff(twin, ...)), never by copying
// the page, so that a write the diff missed still differs from the twin and
// goes out with the next release.
uint16_t EncodeDiff(const uint8_t *page, const uint8_t *twin, std::vector<uint8_t> *out);

// Room EncodeDiffTo needs: the largest diff EncodeDiff emits (a MASK of
// 4095 changed bytes; a FULL diff is 4096 bytes, a RUNS diff is emitted
// only when it is no larger than the MASK).
inline constexpr size_t kMaxEncodedDiff = kMaskMaxSize;

// EncodeDiff into a caller's buffer (a WRITEBACK being built in place):
// writes the diff to out[0, *len) and returns its encoding, or returns 0
// with *len = 0 when the page equals its twin.  Same diff, same rules (and
// the same single snapshot of `page`) as EncodeDiff.  A page whose every
// byte differs (the common case of a page rewritten as a whole) is found
// by AllBytesChanged and copied whole: a FULL diff is valid whatever
// `page` holds when it is copied, and the twin advances by the copy.
// REQUIRES: as EncodeDiff; out points to kMaxEncodedDiff writable bytes
//           that do not overlap page or twin.
uint16_t EncodeDiffTo(const uint8_t *page, const uint8_t *twin, uint8_t *out, size_t *len);

// True when every byte of `page` differs from `twin`: the page was rewritten
// as a whole, and its diff is FULL, the page itself.  Compares 128 bytes
// per step with AVX2 where the CPU has it (checked once at start-up), else
// AllBytesChangedBaseline, and stops at the first step with an unchanged
// byte, so a sparse diff costs one step.  A release sends such a page
// straight from the segment's memory when nobody can write it meanwhile
// (PageTable::ReleaseDirty).
bool AllBytesChanged(const uint8_t *page, const uint8_t *twin);
// The same answer on any CPU: 64 bytes per step with SSE2 where the target
// has it, else scalar.
bool AllBytesChangedBaseline(const uint8_t *page, const uint8_t *twin);

// A sample of AllBytesChanged: true when every byte of the page's first and
// last 64 bytes differs from the twin (two cache lines of each read, not
// 64).  Not a diff rule: a page that passes may still hold unchanged
// bytes.  A release uses it only for a page the owner marked exclusive to
// this host (protocol.md section 6.1), where sending such a page whole is
// correct, to tell a page rewritten as a whole (sent whole) from a sparse
// update (diffed).  A page rewritten whole passes; a sparse update passes
// only if it rewrote both ends of the page.
bool SampledAllBytesChanged(const uint8_t *page, const uint8_t *twin);
// Starts loading the cache lines SampledAllBytesChanged reads (a release
// issues it a few pages ahead: the sample is bound by memory latency).
void PrefetchSample(const uint8_t *page, const uint8_t *twin);

// Checks that data[0, len) is a valid diff of `encoding` (see above) without
// touching any page.  Returns OK or an E_PROTO status saying what is wrong.
Status ValidateDiff(uint16_t encoding, const uint8_t *data, size_t len);

// Validates the diff completely (ValidateDiff) and only then writes the
// encoded bytes into `page`, each byte exactly once; bytes not in the diff
// are neither read nor written.  On error `page` is untouched.
// REQUIRES: page points to DSHM_PAGE_SIZE writable bytes; data to len bytes.
Status ApplyDiff(uint8_t *page, uint16_t encoding, const uint8_t *data, size_t len);

// The undo-able apply (a release applied as it arrives, before its verdict,
// protocol.md section 6): validates the diff, then exchanges each byte it
// covers with the page's byte at that offset.  Afterwards the page holds
// the diff's values and data[0, len) is the same diff carrying the bytes
// the page held before (its pre-image); a second SwapDiff with the same
// data undoes the first.  On error both are untouched.
// REQUIRES: as ApplyDiff; data is writable and does not overlap page.
Status SwapDiff(uint8_t *page, uint16_t encoding, uint8_t *data, size_t len);

// Overwrites the values of the diff data[0, len) with the page's bytes at
// the offsets it covers (the layout stays): after SwapDiff, this turns the
// pre-image back into the applied diff, as long as nobody has written those
// bytes of the page since.
// REQUIRES: data[0, len) is a valid diff of `encoding` (ValidateDiff).
void ExtractDiff(const uint8_t *page, uint16_t encoding, uint8_t *data, size_t len);

// dst[i] = src[i] for every page offset i the diff covers; its values are
// not read.  REQUIRES: as ExtractDiff; dst and src are pages.
void CopyDiffSpans(uint8_t *dst, const uint8_t *src, uint16_t encoding, const uint8_t *data,
                   size_t len);

}  // namespace dshm

// fuzz_diff: the diff codec (hostd/diff.h), which decodes every WRITEBACK
// and UPDATE a peer sends.
//
// Input: one mode byte, then the rest.
//   mode & 1 == 0 (decode): the rest is a u16 encoding then an encoded diff
//     from a peer.  ValidateDiff and ApplyDiff must agree; an invalid diff
//     leaves the page untouched; a valid one changes only bytes it covers
//     (CopyDiffSpans' set), SwapDiff then SwapDiff again restores the page,
//     and ExtractDiff after a SwapDiff gives the diff back.
//   mode & 1 == 1 (round trip): the rest makes a page from a twin, raw
//     (mode & 2: the rest overlays the twin from offset 0) or as edits
//     ({u16 offset, u8 value}*).  EncodeDiff must yield a valid diff that,
//     applied to the twin, gives the page exactly; EncodeDiffTo the same
//     bytes; FULL exactly when AllBytesChanged; AllBytesChanged equal to
//     AllBytesChangedBaseline.  Any mismatch aborts.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fuzz_check.h"
#include "diff.h"

using namespace dshm;

namespace {

void Twin(uint8_t *p) {
    for (size_t i = 0; i < kPageSize; i++)
        p[i] = static_cast<uint8_t>(i * 31 + 7);
}

void Decode(const uint8_t *data, size_t size) {
    if (size < 2)
        return;
    uint16_t enc;
    memcpy(&enc, data, 2);
    enc %= 5;  // 0 and 4 are unknown encodings
    std::vector<uint8_t> diff(data + 2, data + size);
    // A vector's data() may be null when empty; the codec takes (ptr, len).
    const uint8_t *d = diff.empty() ? data + 2 : diff.data();
    const Status valid = ValidateDiff(enc, d, diff.size());

    alignas(64) uint8_t page[kPageSize], orig[kPageSize];
    Twin(page);
    memcpy(orig, page, kPageSize);
    const Status applied = ApplyDiff(page, enc, d, diff.size());
    FUZZ_CHECK(valid.ok() == applied.ok());
    if (!valid.ok()) {
        FUZZ_CHECK(memcmp(page, orig, kPageSize) == 0);
        return;
    }
    // Only covered bytes changed: mark the covered set with CopyDiffSpans.
    alignas(64) uint8_t ones[kPageSize], covered[kPageSize] = {};
    memset(ones, 1, kPageSize);
    CopyDiffSpans(covered, ones, enc, d, diff.size());
    for (size_t i = 0; i < kPageSize; i++) {
        if (!covered[i])
            FUZZ_CHECK(page[i] == orig[i]);
    }
    // SwapDiff twice is the identity on page and diff.
    alignas(64) uint8_t page2[kPageSize];
    memcpy(page2, orig, kPageSize);
    std::vector<uint8_t> swap = diff;
    uint8_t *sd = swap.empty() ? ones : swap.data();
    FUZZ_CHECK(SwapDiff(page2, enc, sd, swap.size()).ok());
    FUZZ_CHECK(memcmp(page2, page, kPageSize) == 0);
    // ExtractDiff turns the pre-image back into the applied diff.
    std::vector<uint8_t> pre = swap;
    ExtractDiff(page2, enc, sd, swap.size());
    FUZZ_CHECK(swap == diff);
    memcpy(sd, pre.data(), pre.size());
    FUZZ_CHECK(SwapDiff(page2, enc, sd, swap.size()).ok());
    FUZZ_CHECK(memcmp(page2, orig, kPageSize) == 0);
    FUZZ_CHECK(swap == diff);
}

void RoundTrip(uint8_t mode, const uint8_t *data, size_t size) {
    alignas(64) uint8_t twin[kPageSize], page[kPageSize];
    Twin(twin);
    memcpy(page, twin, kPageSize);
    if (mode & 2) {
        memcpy(page, data, size < kPageSize ? size : kPageSize);
    } else {
        for (size_t i = 0; i + 3 <= size; i += 3) {
            uint16_t off;
            memcpy(&off, data + i, 2);
            page[off % kPageSize] = data[i + 2];
        }
    }
    std::vector<uint8_t> diff;
    const uint16_t enc = EncodeDiff(page, twin, &diff);
    alignas(64) static uint8_t out[kMaxEncodedDiff];
    size_t len = 12345;
    const uint16_t enc2 = EncodeDiffTo(page, twin, out, &len);
    const bool all = AllBytesChanged(page, twin);
    FUZZ_CHECK(all == AllBytesChangedBaseline(page, twin));
    if (memcmp(page, twin, kPageSize) == 0) {
        FUZZ_CHECK(enc == 0 && diff.empty() && enc2 == 0 && len == 0);
        return;
    }
    FUZZ_CHECK(enc == DSHM_ENC_RUNS || enc == DSHM_ENC_MASK || enc == DSHM_ENC_FULL);
    FUZZ_CHECK((enc == DSHM_ENC_FULL) == all);
    FUZZ_CHECK(enc2 == enc && len == diff.size() && memcmp(out, diff.data(), len) == 0);
    FUZZ_CHECK(ValidateDiff(enc, diff.data(), diff.size()).ok());
    alignas(64) uint8_t back[kPageSize];
    memcpy(back, twin, kPageSize);
    FUZZ_CHECK(ApplyDiff(back, enc, diff.data(), diff.size()).ok());
    FUZZ_CHECK(memcmp(back, page, kPageSize) == 0);
    // Exactly the changed bytes are covered (the one rule of diff.h).
    alignas(64) uint8_t ones[kPageSize], covered[kPageSize] = {};
    memset(ones, 1, kPageSize);
    CopyDiffSpans(covered, ones, enc, diff.data(), diff.size());
    for (size_t i = 0; i < kPageSize; i++)
        FUZZ_CHECK(covered[i] == (page[i] != twin[i]));
    if (SampledAllBytesChanged(page, twin) && all)
        FUZZ_CHECK(true);
    if (all)
        FUZZ_CHECK(SampledAllBytesChanged(page, twin));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    if (data[0] & 1)
        RoundTrip(data[0], data + 1, size - 1);
    else
        Decode(data + 1, size - 1);
    return 0;
}

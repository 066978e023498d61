// Unit tests for diff.h: encode/apply round trips, byte precision, false
// sharing, malformed diffs, encoding sizes.
#include "diff.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../tests/unit/check_main.h"

using dshm::ApplyDiff;
using dshm::CopyDiffSpans;
using dshm::EncodeDiff;
using dshm::ExtractDiff;
using dshm::kMaskBytes;
using dshm::SwapDiff;
using dshm::kPageSize;
using dshm::Status;

namespace {

using Page = std::vector<uint8_t>;

Page RandomPage(std::mt19937_64 &rng) {
    Page p(kPageSize);
    for (auto &b : p) {
        b = static_cast<uint8_t>(rng());
    }
    return p;
}

// Changes byte i of p to a different value.
void Flip(Page &p, size_t i, std::mt19937_64 &rng) {
    p[i] = static_cast<uint8_t>(p[i] ^ (1 + rng() % 255));
}

// The expected smallest encoded size, computed the slow way.
size_t ExpectedSize(const Page &page, const Page &twin, uint16_t *enc) {
    size_t changed = 0, runs = 0;
    for (size_t i = 0; i < kPageSize; i++) {
        if (page[i] != twin[i]) {
            changed++;
            if (i == 0 || page[i - 1] == twin[i - 1]) {
                runs++;
            }
        }
    }
    if (changed == 0) {
        *enc = 0;
        return 0;
    }
    if (changed == kPageSize) {
        *enc = DSHM_ENC_FULL;
        return kPageSize;
    }
    const size_t r = 4 * runs + changed, m = 512 + changed;
    *enc = r <= m ? DSHM_ENC_RUNS : DSHM_ENC_MASK;
    return r <= m ? r : m;
}

// Encodes page vs twin, checks the encoding is the smallest, that applying
// it to the twin reproduces the page, and that it writes exactly the changed
// bytes (applied onto a buffer where every byte differs from the twin).
void CheckRoundTrip(const Page &page, const Page &twin) {
    std::vector<uint8_t> diff;
    const uint16_t enc = EncodeDiff(page.data(), twin.data(), &diff);
    uint16_t want_enc;
    const size_t want_size = ExpectedSize(page, twin, &want_enc);
    ck_assert_uint_eq(enc, want_enc);
    ck_assert_uint_eq(diff.size(), want_size);
    if (enc == 0) {
        return;
    }
    Page copy = twin;
    Status s = ApplyDiff(copy.data(), enc, diff.data(), diff.size());
    ck_assert_msg(s.ok(), "%s", s.ToString().c_str());
    ck_assert(copy == page);

    Page poison(kPageSize);
    for (size_t i = 0; i < kPageSize; i++) {
        poison[i] = static_cast<uint8_t>(twin[i] ^ 0x5a);
    }
    ck_assert(ApplyDiff(poison.data(), enc, diff.data(), diff.size()).ok());
    // (Check's asserts are slow: one per page, not per byte.)
    size_t bad = kPageSize;
    for (size_t i = 0; i < kPageSize && bad == kPageSize; i++) {
        const uint8_t want = page[i] != twin[i] ? page[i] : static_cast<uint8_t>(twin[i] ^ 0x5a);
        if (poison[i] != want) {
            bad = i;
        }
    }
    ck_assert_msg(bad == kPageSize, "byte %zu written or not written wrongly", bad);
}

void PutRun(std::vector<uint8_t> &d, uint16_t off, uint16_t len, uint8_t fill = 0xab) {
    d.push_back(static_cast<uint8_t>(off));
    d.push_back(static_cast<uint8_t>(off >> 8));
    d.push_back(static_cast<uint8_t>(len));
    d.push_back(static_cast<uint8_t>(len >> 8));
    d.insert(d.end(), len, fill);
}

void ExpectRejected(uint16_t enc, const std::vector<uint8_t> &d, const char *what) {
    Page page(kPageSize, 0x11);
    const Page before = page;
    Status s = ApplyDiff(page.data(), enc, d.data(), d.size());
    ck_assert_msg(!s.ok(), "%s accepted", what);
    ck_assert_int_eq(s.code(), DSHM_E_PROTO);
    ck_assert_msg(page == before, "%s modified the page", what);
    ck_assert(!dshm::ValidateDiff(enc, d.data(), d.size()).ok());
}

}  // namespace

START_TEST(equal_pages_encode_nothing) {
    std::mt19937_64 rng(1);
    Page twin = RandomPage(rng);
    std::vector<uint8_t> diff(17, 1);
    ck_assert_uint_eq(EncodeDiff(twin.data(), twin.data(), &diff), 0);
    ck_assert(diff.empty());
}
END_TEST

START_TEST(random_roundtrips) {
    std::mt19937_64 rng(12345);
    for (int iter = 0; iter < 3000; iter++) {
        const Page twin = RandomPage(rng);
        Page page = twin;
        switch (iter % 6) {
            case 0:  // sparse bytes
                for (size_t n = 1 + rng() % 20; n > 0; n--) {
                    Flip(page, rng() % kPageSize, rng);
                }
                break;
            case 1:  // dense bytes
                for (size_t i = 0; i < kPageSize; i++) {
                    if (rng() % 100 < static_cast<uint64_t>(1 + iter % 97)) {
                        Flip(page, i, rng);
                    }
                }
                break;
            case 2:  // random runs, some crossing word boundaries
                for (size_t n = 1 + rng() % 30; n > 0; n--) {
                    const size_t start = rng() % kPageSize;
                    const size_t len = 1 + rng() % 70;
                    for (size_t i = start; i < start + len && i < kPageSize; i++) {
                        Flip(page, i, rng);
                    }
                }
                break;
            case 3:  // every byte
                for (size_t i = 0; i < kPageSize; i++) {
                    Flip(page, i, rng);
                }
                break;
            case 4:  // every byte but one (RUNS or MASK, never FULL)
                for (size_t i = 0; i < kPageSize; i++) {
                    Flip(page, i, rng);
                }
                {
                    const size_t keep = rng() % kPageSize;
                    page[keep] = twin[keep];
                }
                break;
            case 5:  // alternating bytes: many tiny runs -> MASK
                for (size_t i = rng() % 2; i < kPageSize; i += 2 + rng() % 2) {
                    Flip(page, i, rng);
                }
                break;
        }
        CheckRoundTrip(page, twin);
    }
}
END_TEST

START_TEST(edges_of_the_page) {
    std::mt19937_64 rng(7);
    const Page twin = RandomPage(rng);
    for (size_t i :
         {size_t{0}, size_t{7}, size_t{8}, kPageSize - 9, kPageSize - 8, kPageSize - 1}) {
        Page page = twin;
        Flip(page, i, rng);
        CheckRoundTrip(page, twin);
    }
    Page page = twin;
    Flip(page, 0, rng);
    Flip(page, kPageSize - 1, rng);
    CheckRoundTrip(page, twin);
    // Runs ending, starting and continuing across the 64- and 512-byte
    // blocks the encoder scans by.
    for (auto [from, to] : {std::pair<size_t, size_t>{60, 64},
                            {63, 65},
                            {64, 65},
                            {500, 1100},
                            {511, 513},
                            {1023, 1024},
                            {0, 4095},
                            {1, 4096}}) {
        Page p = twin;
        for (size_t i = from; i < to; i++) {
            Flip(p, i, rng);
        }
        CheckRoundTrip(p, twin);
    }
}
END_TEST

// EncodeDiffTo (the in-place encoder) emits exactly what EncodeDiff emits,
// in particular around its whole-page fast path: every byte changed, or all
// but one (first, middle, last byte; first and last byte of a word).
START_TEST(encode_to_matches_encode) {
    std::mt19937_64 rng(11);
    for (int round = 0; round < 60; round++) {
        const Page twin = RandomPage(rng);
        Page page = twin;
        for (size_t i = 0; i < kPageSize; i++) {
            Flip(page, i, rng);
        }
        const size_t keep[] = {kPageSize, 0, 7, 8, 2049, kPageSize - 8, kPageSize - 1};
        const size_t k = keep[round % 7];
        if (k < kPageSize) {
            page[k] = twin[k];
        }
        if (round >= 35) {  // sparse: back to the twin but for a few bytes
            page = twin;
            for (int j = 0; j < round; j++) {
                Flip(page, rng() % kPageSize, rng);
            }
        }
        std::vector<uint8_t> diff;
        const uint16_t enc = EncodeDiff(page.data(), twin.data(), &diff);
        std::vector<uint8_t> out(dshm::kMaxEncodedDiff, 0xcc);
        size_t len = 12345;
        ck_assert_uint_eq(dshm::EncodeDiffTo(page.data(), twin.data(), out.data(), &len), enc);
        ck_assert_uint_eq(len, diff.size());
        ck_assert(std::equal(diff.begin(), diff.end(), out.begin()));
        ck_assert_uint_le(len, dshm::kMaxEncodedDiff);
        if (round < 35) {
            ck_assert_uint_eq(enc == DSHM_ENC_FULL, k == kPageSize);
        }
        CheckRoundTrip(page, twin);
    }
    Page twin(kPageSize, 3);
    size_t len = 1;
    std::vector<uint8_t> out(dshm::kMaxEncodedDiff);
    ck_assert_uint_eq(dshm::EncodeDiffTo(twin.data(), twin.data(), out.data(), &len), 0);
    ck_assert_uint_eq(len, 0);
}
END_TEST

// AllBytesChanged (AVX2 where the CPU has it) and AllBytesChangedBaseline:
// true only when no byte is equal, wherever the one equal byte sits (each
// 16- or 32-byte lane and 64- or 128-byte step of the compare).
// `page` with every byte changed from `twin`, then fn(k, page) with byte k
// alone put back to the twin's, for every k.
template <typename Fn>
void EachByteKept(const Page &twin, std::mt19937_64 &rng, Fn fn) {
    Page page = twin;
    for (size_t i = 0; i < kPageSize; i++) {
        Flip(page, i, rng);
    }
    fn(kPageSize, page);  // k == kPageSize: none put back
    for (size_t k = 0; k < kPageSize; k++) {
        const uint8_t keep = page[k];
        page[k] = twin[k];
        fn(k, page);
        page[k] = keep;
    }
}

START_TEST(all_bytes_changed_finds_any_equal_byte) {
    std::mt19937_64 rng(5);
    const Page twin = RandomPage(rng);
    for (auto *f : {dshm::AllBytesChanged, dshm::AllBytesChangedBaseline}) {
        EachByteKept(twin, rng, [&](size_t k, const Page &page) {
            ck_assert_msg(f(page.data(), twin.data()) == (k == kPageSize), "byte %zu", k);
        });
        ck_assert(!f(twin.data(), twin.data()));
    }
}
END_TEST

// SampledAllBytesChanged reads the first and the last 64 bytes: an equal
// byte inside them is found, one elsewhere is not (a sample).
START_TEST(sampled_all_bytes_changed_reads_its_blocks) {
    std::mt19937_64 rng(6);
    const Page twin = RandomPage(rng);
    EachByteKept(twin, rng, [&](size_t k, const Page &page) {
        const bool sampled = k < 64 || (k >= kPageSize - 64 && k < kPageSize);
        ck_assert_msg(dshm::SampledAllBytesChanged(page.data(), twin.data()) != sampled,
                      "byte %zu", k);
    });
    ck_assert(!dshm::SampledAllBytesChanged(twin.data(), twin.data()));
}
END_TEST

START_TEST(false_sharing_disjoint_writers) {
    std::mt19937_64 rng(99);
    for (int iter = 0; iter < 500; iter++) {
        const Page orig = RandomPage(rng);
        Page a = orig, b = orig;
        // Adjacent bytes of the same words go to different writers.
        for (size_t w = (rng() % 8) * 8; w < kPageSize; w += 8 * (1 + rng() % 64)) {
            for (size_t k = 0; k < 8; k++) {
                Flip((k + iter) % 2 ? a : b, w + k, rng);
            }
        }
        // Some random bytes for each, kept disjoint.
        for (int n = 0; n < 40; n++) {
            const size_t i = rng() % kPageSize;
            if (a[i] == orig[i] && b[i] == orig[i]) {
                Flip(n % 2 ? a : b, i, rng);
            }
        }
        std::vector<uint8_t> da, db;
        const uint16_t ea = EncodeDiff(a.data(), orig.data(), &da);
        const uint16_t eb = EncodeDiff(b.data(), orig.data(), &db);
        Page want = orig;
        for (size_t i = 0; i < kPageSize; i++) {
            want[i] = a[i] != orig[i] ? a[i] : b[i];
        }
        Page ab = orig, ba = orig;
        ck_assert(ApplyDiff(ab.data(), ea, da.data(), da.size()).ok());
        ck_assert(ApplyDiff(ab.data(), eb, db.data(), db.size()).ok());
        ck_assert(ApplyDiff(ba.data(), eb, db.data(), db.size()).ok());
        ck_assert(ApplyDiff(ba.data(), ea, da.data(), da.size()).ok());
        ck_assert(ab == want);
        ck_assert(ba == want);
    }
}
END_TEST

// SwapDiff applies a diff and leaves its pre-image in its place; a second
// SwapDiff undoes it; ExtractDiff turns the pre-image back into the diff;
// CopyDiffSpans copies exactly the covered bytes.  Every encoding, with
// pages of random density (sparse RUNS, dense MASK, FULL).
START_TEST(swap_extract_and_copy_spans) {
    std::mt19937_64 rng(7);
    for (int iter = 0; iter < 600; iter++) {
        const Page twin = RandomPage(rng);
        Page page = twin;
        const int mode = iter % 3;
        if (mode == 2) {
            for (size_t i = 0; i < kPageSize; i++) Flip(page, i, rng);
        } else {
            const size_t n = mode == 0 ? 1 + rng() % 20 : 2000 + rng() % 2000;
            for (size_t k = 0; k < n; k++) Flip(page, rng() % kPageSize, rng);
        }
        std::vector<uint8_t> d;
        const uint16_t enc = EncodeDiff(page.data(), twin.data(), &d);
        ck_assert_uint_ne(enc, 0);
        if (mode == 2) ck_assert_uint_eq(enc, DSHM_ENC_FULL);
        const std::vector<uint8_t> sent = d;
        Page live = twin;
        ck_assert(SwapDiff(live.data(), enc, d.data(), d.size()).ok());
        ck_assert(live == page);
        Page rebuilt = page;  // the pre-image rebuilds the old page
        ck_assert(ApplyDiff(rebuilt.data(), enc, d.data(), d.size()).ok());
        ck_assert(rebuilt == twin);
        std::vector<uint8_t> again = d;
        ExtractDiff(live.data(), enc, again.data(), again.size());
        ck_assert(again == sent);
        ck_assert(SwapDiff(live.data(), enc, d.data(), d.size()).ok());  // undo
        ck_assert(live == twin);
        ck_assert(d == sent);
        Page dst = RandomPage(rng);
        const Page dst0 = dst;
        CopyDiffSpans(dst.data(), page.data(), enc, d.data(), d.size());
        for (size_t i = 0; i < kPageSize; i++) {
            ck_assert_uint_eq(dst[i], page[i] != twin[i] ? page[i] : dst0[i]);
        }
    }
    // A malformed diff is refused and nothing moves.
    Page live = RandomPage(rng);
    const Page live0 = live;
    std::vector<uint8_t> bad(kMaskBytes + 3, 0);  // empty mask, 3 data bytes
    ck_assert(!SwapDiff(live.data(), DSHM_ENC_MASK, bad.data(), bad.size()).ok());
    ck_assert(live == live0);
}
END_TEST

START_TEST(malformed_diffs_rejected_untouched) {
    std::vector<uint8_t> d;
    ExpectRejected(DSHM_ENC_RUNS, d, "empty RUNS");
    d = {1, 0, 1};
    ExpectRejected(DSHM_ENC_RUNS, d, "truncated run header");
    d.clear();
    PutRun(d, 10, 2);
    d.push_back(0);
    d.push_back(1);
    ExpectRejected(DSHM_ENC_RUNS, d, "truncated second run header");
    d.clear();
    PutRun(d, 4090, 10);
    ExpectRejected(DSHM_ENC_RUNS, d, "run past the end");
    d.clear();
    PutRun(d, 4096, 1);
    ExpectRejected(DSHM_ENC_RUNS, d, "run starting at the end");
    d.clear();
    PutRun(d, 0xffff, 0xffff);
    ExpectRejected(DSHM_ENC_RUNS, d, "run with 16-bit overflow");
    d.clear();
    PutRun(d, 10, 10);
    PutRun(d, 15, 2);
    ExpectRejected(DSHM_ENC_RUNS, d, "overlapping runs");
    d.clear();
    PutRun(d, 100, 4);
    PutRun(d, 50, 4);
    ExpectRejected(DSHM_ENC_RUNS, d, "out-of-order runs");
    d.clear();
    PutRun(d, 100, 4);
    PutRun(d, 100, 4);
    ExpectRejected(DSHM_ENC_RUNS, d, "duplicate runs");
    d.clear();
    PutRun(d, 10, 1);
    PutRun(d, 20, 0);
    ExpectRejected(DSHM_ENC_RUNS, d, "zero-length run");
    d.clear();
    PutRun(d, 10, 10);
    d.erase(d.end() - 3, d.end());  // (resize(size() - 3) trips a bogus g++ 12 warning)
    ExpectRejected(DSHM_ENC_RUNS, d, "truncated run data");
    // A good run followed by a bad one: nothing at all is written.
    d.clear();
    PutRun(d, 0, 100);
    PutRun(d, 4000, 200);
    ExpectRejected(DSHM_ENC_RUNS, d, "good run then bad run");

    std::vector<uint8_t> m(512, 0);
    ExpectRejected(DSHM_ENC_MASK, m, "mask without data");
    m.push_back(1);
    ExpectRejected(DSHM_ENC_MASK, m, "empty mask with a data byte");
    m.assign(512, 0);
    m[0] = 0x03;  // 2 bits
    m.push_back(1);
    ExpectRejected(DSHM_ENC_MASK, m, "mask popcount > data");
    m.push_back(2);
    m.push_back(3);
    ExpectRejected(DSHM_ENC_MASK, m, "mask popcount < data");
    m.assign(100, 0xff);
    ExpectRejected(DSHM_ENC_MASK, m, "short mask");
    m.assign(512 + 4097, 0xff);
    ExpectRejected(DSHM_ENC_MASK, m, "oversized mask diff");

    std::vector<uint8_t> f(kPageSize - 1, 1);
    ExpectRejected(DSHM_ENC_FULL, f, "short FULL");
    f.assign(kPageSize + 1, 1);
    ExpectRejected(DSHM_ENC_FULL, f, "long FULL");
    f.assign(kPageSize, 1);
    ExpectRejected(0, f, "encoding 0");
    ExpectRejected(4, f, "encoding 4");
    ExpectRejected(0xffff, f, "encoding 0xffff");
}
END_TEST

START_TEST(valid_noncanonical_diffs_accepted) {
    // Adjacent runs and a full mask are not what EncodeDiff emits but are
    // valid: they carry only the bytes they name.
    Page page(kPageSize, 0);
    std::vector<uint8_t> d;
    PutRun(d, 8, 4, 1);
    PutRun(d, 12, 4, 2);
    ck_assert(ApplyDiff(page.data(), DSHM_ENC_RUNS, d.data(), d.size()).ok());
    ck_assert_uint_eq(page[7], 0);
    ck_assert_uint_eq(page[8], 1);
    ck_assert_uint_eq(page[15], 2);
    ck_assert_uint_eq(page[16], 0);

    std::vector<uint8_t> m(512 + kPageSize, 0xff);
    ck_assert(ApplyDiff(page.data(), DSHM_ENC_MASK, m.data(), m.size()).ok());
    ck_assert(page == Page(kPageSize, 0xff));

    // The largest valid RUNS diff: 4096 one-byte runs.
    d.clear();
    for (uint16_t i = 0; i < kPageSize; i++) {
        PutRun(d, i, 1, static_cast<uint8_t>(i));
    }
    ck_assert_uint_eq(d.size(), dshm::kRunsMaxSize);
    ck_assert(ApplyDiff(page.data(), DSHM_ENC_RUNS, d.data(), d.size()).ok());
    ck_assert_uint_eq(page[300], 300 % 256);

    size_t lo = 0, hi = 0;
    ck_assert(dshm::DiffSizeBounds(DSHM_ENC_RUNS, &lo, &hi));
    ck_assert_uint_eq(lo, 5);
    ck_assert_uint_eq(hi, 5 * kPageSize);
    ck_assert(dshm::DiffSizeBounds(DSHM_ENC_MASK, &lo, &hi));
    ck_assert_uint_eq(lo, 513);
    ck_assert_uint_eq(hi, 512 + kPageSize);
    ck_assert(dshm::DiffSizeBounds(DSHM_ENC_FULL, &lo, &hi));
    ck_assert_uint_eq(lo, kPageSize);
    ck_assert_uint_eq(hi, kPageSize);
    ck_assert(!dshm::DiffSizeBounds(9, &lo, &hi));
}
END_TEST

START_TEST(counters_encode_small) {
    std::mt19937_64 rng(3);
    const Page twin = RandomPage(rng);
    Page page = twin;
    // 8 counters of 8 bytes, spread over the page, every byte changed.
    for (size_t c = 0; c < 8; c++) {
        for (size_t k = 0; k < 8; k++) {
            Flip(page, c * 512 + 64 + k, rng);
        }
    }
    std::vector<uint8_t> diff;
    ck_assert_uint_eq(EncodeDiff(page.data(), twin.data(), &diff), DSHM_ENC_RUNS);
    ck_assert_uint_eq(diff.size(), 8 * (4 + 8));
    CheckRoundTrip(page, twin);

    // Incremented counters: typically only the low byte changes.
    Page inc(kPageSize, 0), base(kPageSize, 0);
    for (size_t c = 0; c < 8; c++) {
        inc[c * 8 * 7] = 1;
    }
    ck_assert_uint_eq(EncodeDiff(inc.data(), base.data(), &diff), DSHM_ENC_RUNS);
    ck_assert_uint_eq(diff.size(), 8 * (4 + 1));
}
END_TEST

int main() {
    Suite *s = suite_create("hostd/diff");
    TCase *tc = NewTCase("diff", 60);
    tcase_add_test(tc, equal_pages_encode_nothing);
    tcase_add_test(tc, random_roundtrips);
    tcase_add_test(tc, edges_of_the_page);
    tcase_add_test(tc, encode_to_matches_encode);
    tcase_add_test(tc, all_bytes_changed_finds_any_equal_byte);
    tcase_add_test(tc, sampled_all_bytes_changed_reads_its_blocks);
    tcase_add_test(tc, false_sharing_disjoint_writers);
    tcase_add_test(tc, swap_extract_and_copy_spans);
    tcase_add_test(tc, malformed_diffs_rejected_untouched);
    tcase_add_test(tc, valid_noncanonical_diffs_accepted);
    tcase_add_test(tc, counters_encode_small);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}

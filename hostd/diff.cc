#include "diff.h"

#include <cstring>
#include <string>

namespace dshm {

namespace {

constexpr uint64_t kOnes = 0x0101010101010101ull;
constexpr uint64_t kHighs = 0x8080808080808080ull;

inline uint64_t Load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

inline uint16_t Load16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;  // little-endian host (wire.h refuses big-endian builds)
}

inline void Store16(uint8_t *p, uint16_t v) { memcpy(p, &v, sizeof v); }

// True if no byte of x is zero (the classic "haszero" test, exact as a whole).
inline bool AllBytesNonZero(uint64_t x) { return ((x - kOnes) & ~x & kHighs) == 0; }

struct Run {
    uint16_t offset;
    uint16_t length;
};

// Maximal runs are separated by at least one unchanged byte.
constexpr size_t kMaxRuns = kPageSize / 2;

// Finds the maximal runs of bytes where page != twin.  Returns the number of
// runs; *changed receives the number of changed bytes.
size_t FindRuns(const uint8_t *page, const uint8_t *twin, Run *runs, size_t *changed) {
    size_t nruns = 0;
    size_t nchanged = 0;
    bool open = false;
    size_t start = 0;
    auto close = [&](size_t end) {
        runs[nruns++] = Run{static_cast<uint16_t>(start), static_cast<uint16_t>(end - start)};
        nchanged += end - start;
        open = false;
    };
    for (size_t w = 0; w < kPageSize; w += 8) {
        const uint64_t x = Load64(page + w) ^ Load64(twin + w);
        if (x == 0) {
            if (open) {
                close(w);
            }
            continue;
        }
        if (AllBytesNonZero(x)) {
            if (!open) {
                open = true;
                start = w;
            }
            continue;
        }
        for (size_t k = 0; k < 8; k++) {
            const bool differs = ((x >> (8 * k)) & 0xff) != 0;
            if (differs && !open) {
                open = true;
                start = w + k;
            } else if (!differs && open) {
                close(w + k);
            }
        }
    }
    if (open) {
        close(kPageSize);
    }
    *changed = nchanged;
    return nruns;
}

Status ValidateRuns(const uint8_t *data, size_t len) {
    if (len == 0) {
        return Status::Proto("empty RUNS diff");
    }
    size_t pos = 0;
    size_t prev_end = 0;
    bool first = true;
    while (pos < len) {
        if (len - pos < kRunHeaderSize) {
            return Status::Proto("RUNS diff: truncated run header at byte " + std::to_string(pos));
        }
        const size_t offset = Load16(data + pos);
        const size_t length = Load16(data + pos + 2);
        if (length == 0) {
            return Status::Proto("RUNS diff: zero-length run at byte " + std::to_string(pos));
        }
        if (!first && offset < prev_end) {
            return Status::Proto("RUNS diff: run at page offset " + std::to_string(offset) +
                                 " overlaps or precedes the previous run ending at " +
                                 std::to_string(prev_end));
        }
        if (offset >= kPageSize || length > kPageSize - offset) {
            return Status::Proto("RUNS diff: run [" + std::to_string(offset) + ", " +
                                 std::to_string(offset + length) + ") past the end of the page");
        }
        if (len - pos - kRunHeaderSize < length) {
            return Status::Proto("RUNS diff: run at page offset " + std::to_string(offset) +
                                 " truncated: " + std::to_string(length) + " bytes announced, " +
                                 std::to_string(len - pos - kRunHeaderSize) + " present");
        }
        pos += kRunHeaderSize + length;
        prev_end = offset + length;
        first = false;
    }
    return Status::OK();
}

Status ValidateMask(const uint8_t *data, size_t len) {
    if (len < kMaskMinSize || len > kMaskMaxSize) {
        return Status::Proto("MASK diff of " + std::to_string(len) + " bytes, expected " +
                             std::to_string(kMaskMinSize) + ".." + std::to_string(kMaskMaxSize));
    }
    size_t bits = 0;
    for (size_t i = 0; i < kMaskBytes; i += 8) {
        bits += static_cast<size_t>(__builtin_popcountll(Load64(data + i)));
    }
    if (bits == 0) {
        return Status::Proto("MASK diff with an empty mask");
    }
    if (bits != len - kMaskBytes) {
        return Status::Proto("MASK diff: mask has " + std::to_string(bits) + " bits set but " +
                             std::to_string(len - kMaskBytes) + " data bytes follow");
    }
    return Status::OK();
}

}  // namespace

bool DiffSizeBounds(uint16_t encoding, size_t *min_len, size_t *max_len) {
    switch (encoding) {
        case DSHM_ENC_RUNS:
            *min_len = kRunsMinSize;
            *max_len = kRunsMaxSize;
            return true;
        case DSHM_ENC_MASK:
            *min_len = kMaskMinSize;
            *max_len = kMaskMaxSize;
            return true;
        case DSHM_ENC_FULL:
            *min_len = kFullSize;
            *max_len = kFullSize;
            return true;
    }
    return false;
}

uint16_t EncodeDiff(const uint8_t *page, const uint8_t *twin, std::vector<uint8_t> *out) {
    out->clear();
    Run runs[kMaxRuns];
    size_t changed = 0;
    const size_t nruns = FindRuns(page, twin, runs, &changed);
    if (nruns == 0) {
        return 0;
    }
    if (changed == kPageSize) {
        out->assign(page, page + kPageSize);
        return DSHM_ENC_FULL;
    }
    const size_t runs_size = nruns * kRunHeaderSize + changed;
    const size_t mask_size = kMaskBytes + changed;
    if (runs_size <= mask_size) {
        out->resize(runs_size);
        uint8_t *p = out->data();
        for (size_t i = 0; i < nruns; i++) {
            Store16(p, runs[i].offset);
            Store16(p + 2, runs[i].length);
            memcpy(p + kRunHeaderSize, page + runs[i].offset, runs[i].length);
            p += kRunHeaderSize + runs[i].length;
        }
        return DSHM_ENC_RUNS;
    }
    out->assign(mask_size, 0);
    uint8_t *mask = out->data();
    uint8_t *p = mask + kMaskBytes;
    for (size_t i = 0; i < nruns; i++) {
        const size_t end = static_cast<size_t>(runs[i].offset) + runs[i].length;
        for (size_t b = runs[i].offset; b < end; b++) {
            mask[b / 8] |= static_cast<uint8_t>(1u << (b % 8));
        }
        memcpy(p, page + runs[i].offset, runs[i].length);
        p += runs[i].length;
    }
    return DSHM_ENC_MASK;
}

Status ValidateDiff(uint16_t encoding, const uint8_t *data, size_t len) {
    switch (encoding) {
        case DSHM_ENC_RUNS:
            return ValidateRuns(data, len);
        case DSHM_ENC_MASK:
            return ValidateMask(data, len);
        case DSHM_ENC_FULL:
            if (len != kFullSize) {
                return Status::Proto("FULL diff of " + std::to_string(len) + " bytes, expected " +
                                     std::to_string(kFullSize));
            }
            return Status::OK();
    }
    return Status::Proto("unknown diff encoding " + std::to_string(encoding));
}

Status ApplyDiff(uint8_t *page, uint16_t encoding, const uint8_t *data, size_t len) {
    Status s = ValidateDiff(encoding, data, len);
    if (!s.ok()) {
        return s;
    }
    switch (encoding) {
        case DSHM_ENC_RUNS:
            for (size_t pos = 0; pos < len;) {
                const size_t offset = Load16(data + pos);
                const size_t length = Load16(data + pos + 2);
                memcpy(page + offset, data + pos + kRunHeaderSize, length);
                pos += kRunHeaderSize + length;
            }
            break;
        case DSHM_ENC_MASK: {
            const uint8_t *src = data + kMaskBytes;
            for (size_t i = 0; i < kMaskBytes; i++) {
                for (unsigned bits = data[i]; bits != 0; bits &= bits - 1) {
                    page[i * 8 + static_cast<size_t>(__builtin_ctz(bits))] = *src++;
                }
            }
            break;
        }
        case DSHM_ENC_FULL:
            memcpy(page, data, kPageSize);
            break;
    }
    return Status::OK();
}

size_t MergeUpdate(uint8_t *page, uint8_t *twin, const uint8_t *incoming) {
    size_t merged = 0;
    for (size_t w = 0; w < kPageSize; w += 8) {
        const uint64_t in = Load64(incoming + w);
        const uint64_t x = in ^ Load64(twin + w);
        if (x == 0) {
            continue;
        }
        if (AllBytesNonZero(x)) {
            // Every byte of the word changes: one word store is byte-precise.
            memcpy(page + w, &in, sizeof in);
            memcpy(twin + w, &in, sizeof in);
            merged += 8;
            continue;
        }
        for (size_t k = 0; k < 8; k++) {
            if (((x >> (8 * k)) & 0xff) != 0) {
                page[w + k] = incoming[w + k];
                twin[w + k] = incoming[w + k];
                merged++;
            }
        }
    }
    return merged;
}

}  // namespace dshm

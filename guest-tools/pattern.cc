#include "pattern.h"

#include <cctype>
#include <cstdio>

namespace dshm::guest {

uint64_t PatternWord(uint64_t seed, uint64_t index) {
    uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint8_t PatternByte(uint64_t seed, uint64_t offset) {
    return static_cast<uint8_t>(PatternWord(seed, offset / 8) >> (8 * (offset % 8)));
}

void FillPattern(volatile uint8_t *dst, uint64_t offset, size_t len, uint64_t seed) {
    size_t i = 0;
    // Head, byte by byte, up to an 8-byte boundary of the pattern.
    for (; i < len && (offset + i) % 8 != 0; i++)
        dst[i] = PatternByte(seed, offset + i);
    // Body, a word at a time when the destination is aligned too.
    if ((reinterpret_cast<uintptr_t>(dst + i) % 8) == 0) {
        for (; i + 8 <= len; i += 8) {
            *reinterpret_cast<volatile uint64_t *>(dst + i) = PatternWord(seed, (offset + i) / 8);
        }
    }
    for (; i < len; i++)
        dst[i] = PatternByte(seed, offset + i);
}

size_t VerifyPattern(const volatile uint8_t *src, uint64_t offset, size_t len, uint64_t seed,
                     uint64_t *first_bad) {
    size_t bad = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] != PatternByte(seed, offset + i)) {
            if (bad == 0 && first_bad)
                *first_bad = offset + i;
            bad++;
        }
    }
    return bad;
}

uint64_t Checksum(const volatile uint8_t *src, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= src[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

std::optional<uint64_t> ParseU64(std::string_view text) {
    if (text.empty())
        return std::nullopt;
    unsigned base = 10;
    if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
        base = 16;
        text.remove_prefix(2);
    }
    uint64_t v = 0;
    for (char c : text) {
        unsigned d;
        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if (base == 16 && std::isxdigit(static_cast<unsigned char>(c))) {
            d = std::tolower(static_cast<unsigned char>(c)) - 'a' + 10;
        } else {
            return std::nullopt;
        }
        if (d >= base)
            return std::nullopt;
        if (v > (UINT64_MAX - d) / base)
            return std::nullopt;
        v = v * base + d;
    }
    return v;
}

std::optional<uint64_t> ParseSize(std::string_view text) {
    if (text.empty())
        return std::nullopt;
    // K, M and G are not hex digits, so a suffix is never part of the number.
    unsigned shift = 0;
    switch (text.back()) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        default:
            break;
    }
    if (shift)
        text.remove_suffix(1);
    auto v = ParseU64(text);
    if (!v)
        return std::nullopt;
    if (shift && *v > (UINT64_MAX >> shift))
        return std::nullopt;
    return *v << shift;
}

std::string HexDump(const volatile uint8_t *src, size_t len, uint64_t offset) {
    std::string out;
    char buf[32];
    for (size_t line = 0; line < len; line += 16) {
        snprintf(buf, sizeof buf, "%08llx ", static_cast<unsigned long long>(offset + line));
        out += buf;
        std::string ascii;
        for (size_t i = line; i < line + 16; i++) {
            if (i < len) {
                uint8_t b = src[i];
                snprintf(buf, sizeof buf, " %02x", b);
                out += buf;
                ascii += (b >= 0x20 && b < 0x7f) ? static_cast<char>(b) : '.';
            } else {
                out += "   ";
            }
        }
        out += "  |" + ascii + "|\n";
    }
    return out;
}

}  // namespace dshm::guest

// Deterministic data patterns, sizes and checksums for the guest tools.
//
// Thread safety: every function here is pure (no shared state) and may be
// called from any thread.
//
// The pattern is defined per 8-byte word so that any range can be filled or
// verified independently of the others: byte `o` of the pattern with seed `s`
// is byte (o % 8) (little-endian) of PatternWord(s, o / 8).  Two guests that
// agree on a seed therefore agree on every byte without exchanging data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dshm::guest {

// The 64-bit pattern word at word index `index` for `seed` (splitmix64).
uint64_t PatternWord(uint64_t seed, uint64_t index);

// Fills dst[0, len) with the pattern bytes of offsets [offset, offset + len).
void FillPattern(volatile uint8_t *dst, uint64_t offset, size_t len, uint64_t seed);

// Checks src[0, len) against the pattern of offsets [offset, offset + len).
// Returns the number of mismatching bytes; *first_bad (if not null) receives
// the offset of the first mismatch.
size_t VerifyPattern(const volatile uint8_t *src, uint64_t offset, size_t len, uint64_t seed,
                     uint64_t *first_bad);

// FNV-1a 64 over src[0, len).
uint64_t Checksum(const volatile uint8_t *src, size_t len);

// Parses "4096", "0x1000", "4K", "1M", "2G" (binary units).  Returns nullopt
// for anything else, including overflow and trailing garbage.
std::optional<uint64_t> ParseSize(std::string_view text);

// Parses a plain unsigned integer, decimal or 0x-prefixed hex.
std::optional<uint64_t> ParseU64(std::string_view text);

// Classic 16-bytes-per-line hex dump; `offset` is printed as the address.
std::string HexDump(const volatile uint8_t *src, size_t len, uint64_t offset);

}  // namespace dshm::guest

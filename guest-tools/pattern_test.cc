// Unit tests for pattern.h: patterns, sizes, checksums, hex dumps.
#include "pattern.h"

#include <cstring>
#include <vector>

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../tests/unit/check_main.h"

using namespace dshm::guest;

START_TEST(fill_then_verify_roundtrip) {
    std::vector<uint8_t> buf(4096 + 13);
    FillPattern(buf.data(), 0, buf.size(), 42);
    uint64_t first = 0;
    ck_assert_uint_eq(VerifyPattern(buf.data(), 0, buf.size(), 42, &first), 0);
    // Another seed does not verify.
    ck_assert_uint_gt(VerifyPattern(buf.data(), 0, buf.size(), 43, &first), buf.size() / 2);
}
END_TEST

START_TEST(ranges_agree_with_whole) {
    // Filling [5, 5+100) on its own yields the same bytes as a fill of the
    // whole buffer: the pattern depends only on (seed, offset).
    std::vector<uint8_t> whole(256), part(256, 0);
    FillPattern(whole.data(), 0, whole.size(), 7);
    FillPattern(part.data() + 5, 5, 100, 7);
    ck_assert_int_eq(memcmp(whole.data() + 5, part.data() + 5, 100), 0);
    ck_assert_uint_eq(part[4], 0);
    ck_assert_uint_eq(part[105], 0);
}
END_TEST

START_TEST(verify_reports_first_mismatch) {
    std::vector<uint8_t> buf(1024);
    FillPattern(buf.data(), 4096, buf.size(), 1);
    buf[300] ^= 0xff;
    buf[700] ^= 0x01;
    uint64_t first = 0;
    ck_assert_uint_eq(VerifyPattern(buf.data(), 4096, buf.size(), 1, &first), 2);
    ck_assert_uint_eq(first, 4096 + 300);
}
END_TEST

START_TEST(parse_sizes) {
    ck_assert(ParseSize("4096") == 4096u);
    ck_assert(ParseSize("0x1000") == 4096u);
    ck_assert(ParseSize("4K") == 4096u);
    ck_assert(ParseSize("4k") == 4096u);
    ck_assert(ParseSize("1M") == (1u << 20));
    ck_assert(ParseSize("2G") == (2ull << 30));
    ck_assert(ParseSize("0x10M") == (16u << 20));
    ck_assert(!ParseSize(""));
    ck_assert(!ParseSize("K"));
    ck_assert(!ParseSize("12x"));
    ck_assert(!ParseSize("-1"));
    ck_assert(!ParseSize("0x"));
    ck_assert(!ParseSize("99999999999999999999"));
    ck_assert(!ParseSize("17179869184G"));  // overflows 64 bits after the shift
    ck_assert(ParseU64("0xffffffffffffffff") == UINT64_MAX);
    ck_assert(!ParseU64("0x1ffffffffffffffff"));
}
END_TEST

START_TEST(checksum_is_fnv1a64) {
    const uint8_t empty[1] = {0};
    ck_assert_uint_eq(Checksum(empty, 0), 0xcbf29ce484222325ull);
    const char *a = "a";
    ck_assert_uint_eq(Checksum(reinterpret_cast<const uint8_t *>(a), 1), 0xaf63dc4c8601ec8cull);
}
END_TEST

START_TEST(hexdump_format) {
    const uint8_t bytes[18] = {'d', 's', 'h', 'm', 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0xff, 'Z'};
    std::string s = HexDump(bytes, sizeof bytes, 0x100);
    ck_assert_str_eq(
        s.c_str(),
        "00000100  64 73 68 6d 00 01 02 03 04 05 06 07 08 09 0a 0b  |dshm............|\n"
        "00000110  ff 5a                                            |.Z|\n");
}
END_TEST

int main() {
    Suite *s = suite_create("guest-tools/pattern");
    TCase *tc = NewTCase("pattern", 20);
    tcase_add_test(tc, fill_then_verify_roundtrip);
    tcase_add_test(tc, ranges_agree_with_whole);
    tcase_add_test(tc, verify_reports_first_mismatch);
    tcase_add_test(tc, parse_sizes);
    tcase_add_test(tc, checksum_is_fnv1a64);
    tcase_add_test(tc, hexdump_format);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}

// Unit tests for config.h: dshmd.conf parsing and its error messages.
#include "config.h"

#include <string>

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../tests/unit/check_main.h"

using namespace dshm;

static const char kGood[] =
    "[dshmd]\nhost-id = 1\nlisten = 198.18.0.1:7450\nsocket = /run/dshm/x.sock\npoll-us = 50\n"
    "[peer h2]\nhost-id = 2\naddress = 198.18.0.2:7450\n"
    "[segment counters]\nsize = 1M\nowner = 2\n"
    "[segment big.seg_1]\nsize = 256M\nowner = 1\n";

START_TEST(parses_a_full_config) {
    Config c;
    Status st = ParseConfig(kGood, "test.conf", &c);
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert_uint_eq(c.host_id, 1);
    ck_assert_str_eq(c.listen.c_str(), "198.18.0.1:7450");
    ck_assert_str_eq(c.socket_path.c_str(), "/run/dshm/x.sock");
    ck_assert_str_eq(c.host_name.c_str(), "host1");
    ck_assert_uint_eq(c.poll_us, 50);
    ck_assert_uint_eq(c.peers.size(), 1);
    ck_assert_uint_eq(c.peers[0].host_id, 2);
    ck_assert_uint_eq(c.segments.size(), 2);
    ck_assert_str_eq(c.segments[0].name.c_str(), "counters");
    ck_assert_uint_eq(c.segments[0].size, 1 << 20);
    ck_assert_uint_eq(c.segments[0].owner, 2);
    ck_assert_uint_eq(c.segments[1].size, 256ull << 20);
}
END_TEST

static std::string ErrorOf(const std::string &text) {
    Config c;
    Status st = ParseConfig(text, "t.conf", &c);
    ck_assert(!st.ok());
    return st.message();
}

START_TEST(reports_each_problem_precisely) {
    const std::string head = "[dshmd]\nhost-id = 1\nlisten = a:1\n";
    ck_assert(ErrorOf("[peer x]\n").find("no [dshmd] group") != std::string::npos);
    ck_assert(ErrorOf("[dshmd]\nlisten = a:1\n").find("[dshmd] host-id: missing") !=
              std::string::npos);
    ck_assert(ErrorOf("[dshmd]\nhost-id = 64\nlisten = a:1\n").find("0..63") != std::string::npos);
    ck_assert(ErrorOf("[dshmd]\nhost-id = 1\nlisten = nohostport\n").find("not host:port") !=
              std::string::npos);
    ck_assert(ErrorOf(head + "[peer p]\nhost-id = 1\naddress = b:2\n").find("used twice") !=
              std::string::npos);
    ck_assert(ErrorOf(head + "[segment s]\nsize = 1000\nowner = 1\n").find("multiple of 4096") !=
              std::string::npos);
    ck_assert(ErrorOf(head + "[segment s]\nsize = 4K\nowner = 9\n")
                  .find("neither this host nor a peer") != std::string::npos);
    ck_assert(ErrorOf(head + "[segment bad/name]\nsize = 4K\nowner = 1\n").find("segment names") !=
              std::string::npos);
    ck_assert(ErrorOf(head + "[whatever]\n").find("unknown group") != std::string::npos);
    ck_assert(ErrorOf("not a key file").find("t.conf") != std::string::npos);
}
END_TEST

START_TEST(host_port_splitting) {
    std::string h;
    uint16_t p;
    ck_assert(SplitHostPort("198.18.0.1:7450", &h, &p) && h == "198.18.0.1" && p == 7450);
    ck_assert(SplitHostPort("[::1]:80", &h, &p) && h == "::1" && p == 80);
    ck_assert(!SplitHostPort("host:0", &h, &p));
    ck_assert(!SplitHostPort("host:65536", &h, &p));
    ck_assert(!SplitHostPort(":80", &h, &p));
    ck_assert(!SplitHostPort("host", &h, &p));
}
END_TEST

int main() {
    Suite *s = suite_create("hostd/config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, parses_a_full_config);
    tcase_add_test(tc, reports_each_problem_precisely);
    tcase_add_test(tc, host_port_splitting);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}

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
    ck_assert_uint_eq(c.write_ahead_pages, 16);  // the default
    ck_assert(c.io_thread);                      // the default
    ck_assert_uint_eq(c.peers.size(), 1);
    ck_assert_uint_eq(c.peers[0].host_id, 2);
    ck_assert_uint_eq(c.segments.size(), 2);
    ck_assert_str_eq(c.segments[0].name.c_str(), "counters");
    ck_assert_uint_eq(c.segments[0].size, 1 << 20);
    ck_assert_uint_eq(c.segments[0].owner, 2);
    ck_assert_uint_eq(c.segments[1].size, 256ull << 20);
}
END_TEST

// ck_assert_str_eq on a temporary std::string would read freed memory: keep
// the string alive for the whole check.
static void StrEq(const std::string &got, const char *want) {
    ck_assert_str_eq(got.c_str(), want);
}

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
    ck_assert(ErrorOf(head + "write-ahead-pages = 257\n").find("write-ahead-pages") !=
              std::string::npos);
    ck_assert(ErrorOf(head + "io-thread = maybe\n").find("'maybe' is not true or false") !=
              std::string::npos);
    {
        Config c;
        ck_assert(ParseConfig(head + "io-thread = false\n", "t.conf", &c).ok());
        ck_assert(!c.io_thread);
        ck_assert(!c.UsesIoThread());
        // The former name is still read; the new one wins.
        ck_assert(ParseConfig(head + "waiter-threads = false\n", "t.conf", &c).ok());
        ck_assert(!c.io_thread);
        ck_assert(
            ParseConfig(head + "waiter-threads = false\nio-thread = true\n", "t.conf", &c).ok());
        ck_assert(c.io_thread);
        ck_assert(c.UsesIoThread());
        ck_assert(ParseConfig(head + "poll-us = 50\n", "t.conf", &c).ok());
        ck_assert(!c.UsesIoThread());  // a busy-polling loop watches every fd itself
    }
    ck_assert(ErrorOf(head + "exclusive-pages = 2\n").find("'2' is not true or false") !=
              std::string::npos);
    {
        Config c;
        ck_assert(ParseConfig(head, "t.conf", &c).ok());
        ck_assert(c.exclusive_pages);  // the default
        ck_assert(ParseConfig(head + "exclusive-pages = no\n", "t.conf", &c).ok());
        ck_assert(!c.exclusive_pages);
    }
    {
        Config c;
        ck_assert(ParseConfig(head + "write-ahead-pages = 0\n", "t.conf", &c).ok());
        ck_assert_uint_eq(c.write_ahead_pages, 0);
    }
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

START_TEST(policy_defaults) {
    Config c;
    Status st = ParseConfig(kGood, "test.conf", &c);
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert_uint_eq(c.adopt_timeout_ms, 30000);
    ck_assert_uint_eq(c.policy.window_s, 60);
    ck_assert_uint_eq(c.policy.report_ms, 1000);
    ck_assert_uint_eq(c.policy.log_s, 60);
    ck_assert_uint_eq(c.policy.strong_min_events, 100);
    ck_assert(c.policy.strong_min_share == 0.25);
    ck_assert(c.policy.move_ownership);
}
END_TEST

START_TEST(policy_group) {
    const std::string head = "[dshmd]\nhost-id = 1\nlisten = a:1\nadopt-timeout-ms = 5000\n";
    Config c;
    Status st = ParseConfig(head +
                                "[policy]\nwindow-s = 3600\nreport-ms = 100\nlog-s = 0\n"
                                "strong-min-events = 5000000\nstrong-min-share = 0.5\n"
                                "move-ownership = false\n",
                            "t.conf", &c);
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert_uint_eq(c.adopt_timeout_ms, 5000);
    ck_assert_uint_eq(c.policy.window_s, 3600);
    ck_assert_uint_eq(c.policy.report_ms, 100);
    ck_assert_uint_eq(c.policy.log_s, 0);
    ck_assert_uint_eq(c.policy.strong_min_events, 5000000);
    ck_assert(c.policy.strong_min_share == 0.5);
    ck_assert(!c.policy.move_ownership);
    // Partial group: the rest keeps its defaults; booleans in several spellings.
    st = ParseConfig(head + "[policy]\nstrong-min-share = 1\nmove-ownership = Yes\n", "t.conf", &c);
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert(c.policy.strong_min_share == 1.0);
    ck_assert(c.policy.move_ownership);
    ck_assert_uint_eq(c.policy.window_s, 60);
    ck_assert_uint_eq(c.policy.strong_min_events, 100);
    st = ParseConfig(head + "[policy]\nstrong-min-share = 0\nmove-ownership = off\n", "t.conf", &c);
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert(c.policy.strong_min_share == 0.0 && !c.policy.move_ownership);
}
END_TEST

START_TEST(policy_errors) {
    const std::string head = "[dshmd]\nhost-id = 1\nlisten = a:1\n[policy]\n";
    StrEq(ErrorOf(head + "window-s = 0\n"),
          "t.conf: [policy] window-s: '0' is not a number in 1..3600");
    ck_assert(ErrorOf(head + "window-s = 3601\n").find("1..3600") != std::string::npos);
    StrEq(ErrorOf(head + "report-ms = 99\n"),
          "t.conf: [policy] report-ms: '99' is not a number in 100..60000");
    ck_assert(ErrorOf(head + "report-ms = 60001\n").find("100..60000") != std::string::npos);
    ck_assert(ErrorOf(head + "log-s = -1\n").find("[policy] log-s: '-1'") != std::string::npos);
    ck_assert(ErrorOf(head + "strong-min-events = lots\n")
                  .find("[policy] strong-min-events: 'lots' is not a number") != std::string::npos);
    StrEq(ErrorOf(head + "strong-min-share = 1.5\n"),
          "t.conf: [policy] strong-min-share: '1.5' is not a number in 0..1");
    ck_assert(ErrorOf(head + "strong-min-share = 25%\n").find("'25%' is not a number in 0..1") !=
              std::string::npos);
    ck_assert(ErrorOf(head + "strong-min-share = nan\n").find("strong-min-share") !=
              std::string::npos);
    ck_assert(ErrorOf(head + "strong-min-share = -0.1\n").find("strong-min-share") !=
              std::string::npos);
    StrEq(ErrorOf(head + "move-ownership = maybe\n"),
          "t.conf: [policy] move-ownership: 'maybe' is not true or false");
    StrEq(ErrorOf(head + "strong-min-event = 5\n"),
          "t.conf: [policy] strong-min-event: unknown key");
    StrEq(ErrorOf("[dshmd]\nhost-id = 1\nlisten = a:1\nadopt-timeout-ms = 10\n"),
          "t.conf: [dshmd] adopt-timeout-ms: '10' is not a number in 100..3600000");
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
    tcase_add_test(tc, policy_defaults);
    tcase_add_test(tc, policy_group);
    tcase_add_test(tc, policy_errors);
    tcase_add_test(tc, host_port_splitting);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}

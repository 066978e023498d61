// Unit tests for config.h: dshmd.conf parsing and its error messages.
#include "config.h"

#include <string>
#include <utility>
#include <vector>

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

// A segment group to make a config complete (dshmd needs one).
static const std::string kSeg = "[segment s]\nsize = 4K\nowner = 1\n";

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
        ck_assert(ParseConfig(head + "io-thread = false\n" + kSeg, "t.conf", &c).ok());
        ck_assert(!c.io_thread);
        ck_assert(!c.UsesIoThread());
        // The former name is still read; the new one wins.
        ck_assert(ParseConfig(head + "waiter-threads = false\n" + kSeg, "t.conf", &c).ok());
        ck_assert(!c.io_thread);
        ck_assert(
            ParseConfig(head + "waiter-threads = false\nio-thread = true\n" + kSeg, "t.conf", &c)
                .ok());
        ck_assert(c.io_thread);
        ck_assert(c.UsesIoThread());
        ck_assert(ParseConfig(head + "poll-us = 50\n" + kSeg, "t.conf", &c).ok());
        ck_assert(!c.UsesIoThread());  // a busy-polling loop watches every fd itself
    }
    ck_assert(ErrorOf(head + "exclusive-pages = 2\n").find("'2' is not true or false") !=
              std::string::npos);
    {
        Config c;
        ck_assert(ParseConfig(head + kSeg, "t.conf", &c).ok());
        ck_assert(c.exclusive_pages);  // the default
        ck_assert(ParseConfig(head + "exclusive-pages = no\n" + kSeg, "t.conf", &c).ok());
        ck_assert(!c.exclusive_pages);
    }
    {
        Config c;
        ck_assert(ParseConfig(head + "write-ahead-pages = 0\n" + kSeg, "t.conf", &c).ok());
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
    ck_assert_uint_eq(c.peer_timeout_ms, 10000);
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
                                "move-ownership = false\n" +
                                kSeg,
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
    st = ParseConfig(head + "[policy]\nstrong-min-share = 1\nmove-ownership = Yes\n" + kSeg,
                     "t.conf", &c);
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert(c.policy.strong_min_share == 1.0);
    ck_assert(c.policy.move_ownership);
    ck_assert_uint_eq(c.policy.window_s, 60);
    ck_assert_uint_eq(c.policy.strong_min_events, 100);
    st = ParseConfig(head + "[policy]\nstrong-min-share = 0\nmove-ownership = off\n" + kSeg,
                     "t.conf", &c);
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert(c.policy.strong_min_share == 0.0 && !c.policy.move_ownership);
}
END_TEST

START_TEST(policy_errors) {
    const std::string head = "[dshmd]\nhost-id = 1\nlisten = a:1\n[policy]\n";
    StrEq(ErrorOf(head + "window-s = 0\n"),
          "t.conf:5: [policy] window-s: '0' is not a number in 1..3600");
    ck_assert(ErrorOf(head + "window-s = 3601\n").find("1..3600") != std::string::npos);
    StrEq(ErrorOf(head + "report-ms = 99\n"),
          "t.conf:5: [policy] report-ms: '99' is not a number in 100..60000");
    ck_assert(ErrorOf(head + "report-ms = 60001\n").find("100..60000") != std::string::npos);
    ck_assert(ErrorOf(head + "log-s = -1\n").find("[policy] log-s: '-1'") != std::string::npos);
    ck_assert(ErrorOf(head + "strong-min-events = lots\n")
                  .find("[policy] strong-min-events: 'lots' is not a number") != std::string::npos);
    StrEq(ErrorOf(head + "strong-min-share = 1.5\n"),
          "t.conf:5: [policy] strong-min-share: '1.5' is not a number in 0..1");
    ck_assert(ErrorOf(head + "strong-min-share = 25%\n").find("'25%' is not a number in 0..1") !=
              std::string::npos);
    ck_assert(ErrorOf(head + "strong-min-share = nan\n").find("strong-min-share") !=
              std::string::npos);
    ck_assert(ErrorOf(head + "strong-min-share = -0.1\n").find("strong-min-share") !=
              std::string::npos);
    StrEq(ErrorOf(head + "move-ownership = maybe\n"),
          "t.conf:5: [policy] move-ownership: 'maybe' is not true or false");
    StrEq(ErrorOf(head + "strong-min-event = 5\n"),
          "t.conf:5: [policy] strong-min-event: unknown key; did you mean 'strong-min-events'?");
    StrEq(ErrorOf("[dshmd]\nhost-id = 1\nlisten = a:1\nadopt-timeout-ms = 10\n"),
          "t.conf:4: [dshmd] adopt-timeout-ms: '10' is not a number in 100..3600000");
    StrEq(ErrorOf("[dshmd]\nhost-id = 1\nlisten = a:1\npeer-timeout-ms = 99\n"),
          "t.conf:4: [dshmd] peer-timeout-ms: '99' is not a number in 100..3600000");
    ck_assert(ErrorOf("[dshmd]\nhost-id = 1\nlisten = a:1\npeer-timeout-ms =\n")
                  .find("t.conf:4: [dshmd] peer-timeout-ms: empty value") == 0);
    StrEq(ErrorOf("[dshmd]\nhost-id = 1\nlisten = a:1\npeer-timeout = 5000\n"),
          "t.conf:4: [dshmd] peer-timeout: unknown key; did you mean 'peer-timeout-ms'?");
    Config pt;
    Status pst = ParseConfig("[dshmd]\nhost-id = 1\nlisten = a:1\npeer-timeout-ms = 2500\n" + kSeg,
                             "t.conf", &pt);
    ck_assert_msg(pst.ok(), "%s", pst.ToString().c_str());
    ck_assert_uint_eq(pt.peer_timeout_ms, 2500);
}
END_TEST

// Issue 23: what GKeyFile alone accepts silently is refused, with the file,
// line, group and key, and a suggestion.
START_TEST(strict_unknown_groups_and_keys) {
    const std::string head = "[dshmd]\nhost-id = 1\nlisten = a:1\n";
    StrEq(ErrorOf(head + "pol-us = 5\n" + kSeg),
          "t.conf:4: [dshmd] pol-us: unknown key; did you mean 'poll-us'?");
    StrEq(ErrorOf(head + "[peer p]\nhost-id = 2\nadress = b:1\n" + kSeg),
          "t.conf:6: [peer p] adress: unknown key; did you mean 'address'?");
    StrEq(ErrorOf(head + "[segment s]\nsize = 4K\nowner = 1\nsise = 8K\n"),
          "t.conf:7: [segment s] sise: unknown key; did you mean 'size'?");
    // Nothing close: the known keys.
    StrEq(ErrorOf(head + "[segment s]\nsize = 4K\nowner = 1\ncolour = red\n"),
          "t.conf:7: [segment s] colour: unknown key; known: size, owner, allow");
    StrEq(ErrorOf(head + "[segmnet s]\nsize = 4K\nowner = 1\n"),
          "t.conf:4: [segmnet s]: unknown group; did you mean '[segment s]'? "
          "(groups: [dshmd], [policy], [peer NAME], [segment NAME])");
    ck_assert(ErrorOf(head + "[polcy]\n" + kSeg).find("did you mean '[policy]'?") !=
              std::string::npos);
    ck_assert(
        ErrorOf(head + "[whatever]\n" + kSeg).find("t.conf:4: [whatever]: unknown group; (") !=
        std::string::npos);
    StrEq(ErrorOf(head + "[segment]\nsize = 4K\nowner = 1\n"),
          "t.conf:4: [segment]: needs a name: [segment NAME]");
}
END_TEST

START_TEST(strict_values) {
    const std::string head = "[dshmd]\nhost-id = 1\nlisten = a:1\n";
    // GKeyFile read these as 0.
    StrEq(ErrorOf("[dshmd]\nhost-id =\nlisten = a:1\n" + kSeg),
          "t.conf:2: [dshmd] host-id: empty value (remove the line to get the default)");
    StrEq(ErrorOf(head + "[segment s]\nsize = 4K\nowner =\n"),
          "t.conf:6: [segment s] owner: empty value (remove the line to get the default)");
    // An inline comment is part of the value.
    StrEq(ErrorOf(head + "poll-us = 5 # spin a little\n" + kSeg),
          "t.conf:4: [dshmd] poll-us: '5 # spin a little': GKeyFile has no inline comments (a "
          "' #' or ' ;' and what follows are part of the value): put the comment on a line of "
          "its own");
    ck_assert(
        ErrorOf(head + "socket = /run/x.sock ; the socket\n" + kSeg).find("no inline comments") !=
        std::string::npos);
    // 17179869185 * 2^30 wrapped around to 1 GiB.
    StrEq(
        ErrorOf(head + "[segment s]\nsize = 17179869185G\nowner = 1\n"),
        "t.conf:5: [segment s] size: '17179869185G' is not a multiple of 4096 between 4K and 64G");
    ck_assert(
        ErrorOf(head + "[segment s]\nsize = 99999999999999999999999\nowner = 1\n").find("size") !=
        std::string::npos);
    ck_assert(ErrorOf(head + "poll-us = 18446744073709551617\n" + kSeg).find("0..1000000") !=
              std::string::npos);
    ck_assert(ErrorOf("[dshmd]\nhost-id = 4294967297\nlisten = a:1\n" + kSeg).find("0..63") !=
              std::string::npos);
    ck_assert(ErrorOf("[dshmd]\nhost-id = +1\nlisten = a:1\n" + kSeg).find("0..63") !=
              std::string::npos);
    // Segment names that are path components.
    for (const char *n : {".", ".."}) {
        ck_assert(
            ErrorOf(head + "[segment " + n + "]\nsize = 4K\nowner = 1\n").find("not '.' or '..'") !=
            std::string::npos);
    }
    StrEq(ErrorOf(head + "socket = run/dshmd.sock\n" + kSeg),
          "t.conf:4: [dshmd] socket: 'run/dshmd.sock' is not an absolute path");
    ck_assert(ErrorOf(head + "socket = /" + std::string(120, 'x') + "\n" + kSeg)
                  .find("longer than 107 bytes") != std::string::npos);
    StrEq(ErrorOf(head),
          "t.conf: no [segment NAME] group: dshmd needs at least one segment to serve");
}
END_TEST

START_TEST(strict_duplicates) {
    const std::string head = "[dshmd]\nhost-id = 1\nlisten = a:1\n";
    // GKeyFile merges the groups into one segment of 8K owned by 1.
    StrEq(ErrorOf(head + "[segment a]\nsize = 4K\nowner = 1\n[segment a]\nsize = 8K\n"),
          "t.conf:7: [segment a]: group given twice (first at line 4); GKeyFile would merge them "
          "silently");
    StrEq(ErrorOf(head + "  [dshmd]\n" + kSeg),
          "t.conf:4: [dshmd]: group given twice (first at line 1); GKeyFile would merge them "
          "silently");
    StrEq(ErrorOf(head + "[segment a]\nsize = 4K\n# c\n  size=8K\nowner = 1\n"),
          "t.conf:7: [segment a] size: set twice in this group (first at line 5)");
    // The same key in two groups is fine.
    Config c;
    Status st = ParseConfig(head + "[peer p]\nhost-id = 2\naddress = b:1\n" + kSeg, "t.conf", &c);
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
}
END_TEST

START_TEST(listen_must_resolve) {
    Config c;
    ck_assert(ParseConfig("[dshmd]\nhost-id = 1\nlisten = no-such-host.invalid:7450\n" + kSeg,
                          "t.conf", &c)
                  .ok());
    Status st = ResolveListen(c, "t.conf");
    ck_assert(!st.ok());
    ck_assert_msg(
        st.message().find("t.conf: [dshmd] listen: cannot resolve 'no-such-host.invalid'") == 0,
        "%s", st.message().c_str());
    ck_assert(
        ParseConfig("[dshmd]\nhost-id = 1\nlisten = 127.0.0.1:7450\n" + kSeg, "t.conf", &c).ok());
    ck_assert(ResolveListen(c, "t.conf").ok());
    ck_assert(ParseConfig("[dshmd]\nhost-id = 1\nlisten = [::1]:7450\n" + kSeg, "t.conf", &c).ok());
    ck_assert(ResolveListen(c, "t.conf").ok());
}
END_TEST

// FormatConfig prints every key, marks the defaults, and parses back.
// The keys of authentication and of local clients: auth, auth-key-file,
// socket-mode, socket-group ([dshmd]) and allow ([segment]); their
// defaults, their errors, and that FormatConfig prints them back.
START_TEST(auth_and_local_client_keys) {
    Config c, back;
    Status st = ParseConfig(kGood, "t.conf", &c);
    ck_assert(st.ok());
    ck_assert(c.auth);
    StrEq(c.auth_key_file, "/etc/dshm/authkey");
    ck_assert_uint_eq(c.socket_mode, 0600);
    ck_assert(c.socket_group.empty());
    ck_assert(c.segments[0].allow.empty());
    const std::string text =
        "[dshmd]\nhost-id = 1\nlisten = a:1\nauth = off\nauth-key-file = /k/ey\n"
        "socket-mode = 0660\nsocket-group = kvm\n"
        "[segment s]\nsize = 4K\nowner = 1\n"
        "allow = 0F8FAD5B-D9CB-469F-A165-70867728950E; 1b4e28ba-2fa1-11d2-883f-0016d3cca427;\n";
    st = ParseConfig(text, "t.conf", &c);
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert(!c.auth);
    StrEq(c.auth_key_file, "/k/ey");
    ck_assert_uint_eq(c.socket_mode, 0660);
    StrEq(c.socket_group, "kvm");
    ck_assert_uint_eq(c.segments[0].allow.size(), 2);
    StrEq(c.segments[0].allow[0], "0f8fad5b-d9cb-469f-a165-70867728950e");
    const std::string out = FormatConfig(c);
    for (const char *line : {"\nauth = false\n", "\nauth-key-file = /k/ey\n", "\nsocket-mode = 0660\n",
                             "\nsocket-group = kvm\n",
                             "\nallow = 0f8fad5b-d9cb-469f-a165-70867728950e;"
                             "1b4e28ba-2fa1-11d2-883f-0016d3cca427\n"}) {
        ck_assert_msg(out.find(line) != std::string::npos, "'%s' not in:\n%s", line, out.c_str());
    }
    st = ParseConfig(out, "formatted", &back);
    ck_assert_msg(st.ok(), "%s\n%s", st.ToString().c_str(), out.c_str());
    ck_assert(FormatConfig(back) == out);
    const std::string seg = "[segment s]\nsize = 4K\nowner = 1\n";
    for (const auto &[bad, why] : std::vector<std::pair<std::string, std::string>>{
             {"[dshmd]\nhost-id = 1\nlisten = a:1\nsocket-mode = 0644x\n" + seg, "octal mode"},
             {"[dshmd]\nhost-id = 1\nlisten = a:1\nsocket-mode = 1777\n" + seg, "octal mode"},
             {"[dshmd]\nhost-id = 1\nlisten = a:1\nsocket-mode = 0400\n" + seg, "owner reads"},
             {"[dshmd]\nhost-id = 1\nlisten = a:1\nauth = maybe\n" + seg, "true or false"},
             {"[dshmd]\nhost-id = 1\nlisten = a:1\nauth-key-file = key\n" + seg, "absolute"},
             {"[dshmd]\nhost-id = 1\nlisten = a:1\n" + seg + "allow = vm-1\n", "not a UUID"},
             {"[dshmd]\nhost-id = 1\nlisten = a:1\n" + seg + "allow = ;\n", "no UUID"},
         }) {
        st = ParseConfig(bad, "t.conf", &c);
        ck_assert_msg(!st.ok() && st.message().find(why) != std::string::npos, "%s: %s",
                      bad.c_str(), st.ToString().c_str());
    }
}
END_TEST

START_TEST(format_round_trips) {
    Config c, back;
    Status st = ParseConfig(std::string(kGood) + "[policy]\nlog-s = 5\n", "t.conf", &c);
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    std::string text = FormatConfig(c);
    for (const char *line :
         {"\nhost-id = 1\n", "\n# name = host1  (default)\n", "\nsocket = /run/dshm/x.sock\n",
          "\npoll-us = 50\n", "\n# ack-timeout-ms = 10000  (default)\n",
          "\n# peer-timeout-ms = 10000  (default)\n", "\n# io-thread = true  (default)\n",
          "\nlog-s = 5\n", "\n# strong-min-share = 0.25  (default)\n",
          "\n[peer h2]\nhost-id = 2\naddress = 198.18.0.2:7450\n",
          "\n[segment big.seg_1]\nsize = 256M\nowner = 1\n"}) {
        ck_assert_msg(text.find(line) != std::string::npos, "'%s' not in:\n%s", line, text.c_str());
    }
    st = ParseConfig(text, "formatted", &back);
    ck_assert_msg(st.ok(), "%s\n%s", st.ToString().c_str(), text.c_str());
    ck_assert(FormatConfig(back) == text);
    // The former name counts as io-thread.
    ck_assert(ParseConfig("[dshmd]\nhost-id = 1\nlisten = a:1\nwaiter-threads = no\n" + kSeg,
                          "t.conf", &c)
                  .ok());
    ck_assert(FormatConfig(c).find("\nio-thread = false\n") != std::string::npos);
    // Escapes in values are printed as escapes (found by fuzz_config: a
    // socket path "/ru\n/dshm/x.sock" was printed with a raw newline).
    st = ParseConfig("[dshmd]\nhost-id = 1\nlisten = a:1\nsocket = /ru\\n/x\\tz\n" + kSeg,
                     "t.conf", &c);
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert(c.socket_path == "/ru\n/x\tz");
    text = FormatConfig(c);
    st = ParseConfig(text, "formatted", &back);
    ck_assert_msg(st.ok(), "%s\n%s", st.ToString().c_str(), text.c_str());
    ck_assert(back.socket_path == c.socket_path);
}
END_TEST

// membership = static (the default: the [peer] groups) or corosync (no
// [peer] groups, any owner id, a listen address the others can dial).
START_TEST(membership_modes) {
    Config c;
    ck_assert(ParseConfig(kGood, "t.conf", &c).ok());
    ck_assert(c.membership == MembershipMode::kStatic);
    ck_assert(FormatConfig(c).find("\n# membership = static  (default)\n") != std::string::npos);
    const std::string head = "[dshmd]\nhost-id = 1\nlisten = 198.18.0.1:7450\n";
    const std::string seg9 = "[segment s]\nsize = 64K\nowner = 9\n";
    Status st = ParseConfig(head + "membership = corosync\n" + seg9, "t.conf", &c);
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert(c.membership == MembershipMode::kCorosync);
    std::string text = FormatConfig(c);
    ck_assert(text.find("\nmembership = corosync\n") != std::string::npos);
    Config back;
    ck_assert(ParseConfig(text, "formatted", &back).ok() &&
              back.membership == MembershipMode::kCorosync);
    // Static: the owner must be this host or a peer.
    st = ParseConfig(head + "membership = static\n" + seg9, "t.conf", &c);
    ck_assert_str_eq(st.message().c_str(),
                     "t.conf:7: [segment s] owner: host 9 is neither this host nor a peer");
    st = ParseConfig(head + "membership = Corosync\n" + seg9, "t.conf", &c);
    ck_assert_str_eq(st.message().c_str(),
                     "t.conf:4: [dshmd] membership: 'Corosync' is not static or corosync");
    st = ParseConfig(head + "membership = corosync\n[peer h2]\nhost-id = 2\naddress = b:1\n" + seg9,
                     "t.conf", &c);
    ck_assert_msg(st.message().find("t.conf:5: [peer h2]: [peer] groups are for membership = "
                                    "static") == 0,
                  "%s", st.message().c_str());
    st = ParseConfig("[dshmd]\nhost-id = 1\nlisten = 0.0.0.0:7450\nmembership = corosync\n" + seg9,
                     "t.conf", &c);
    ck_assert_msg(st.message().find("t.conf:3: [dshmd] listen: '0.0.0.0:7450': with membership = "
                                    "corosync") == 0,
                  "%s", st.message().c_str());
}
END_TEST

START_TEST(edit_distance) {
    ck_assert_uint_eq(EditDistance("", ""), 0);
    ck_assert_uint_eq(EditDistance("abc", ""), 3);
    ck_assert_uint_eq(EditDistance("kitten", "sitting"), 3);
    ck_assert_uint_eq(EditDistance("adress", "address"), 1);
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
    TCase *tc = NewTCase("config", 20);
    tcase_add_test(tc, parses_a_full_config);
    tcase_add_test(tc, reports_each_problem_precisely);
    tcase_add_test(tc, policy_defaults);
    tcase_add_test(tc, policy_group);
    tcase_add_test(tc, policy_errors);
    tcase_add_test(tc, host_port_splitting);
    tcase_add_test(tc, strict_unknown_groups_and_keys);
    tcase_add_test(tc, strict_values);
    tcase_add_test(tc, strict_duplicates);
    tcase_add_test(tc, listen_must_resolve);
    tcase_add_test(tc, format_round_trips);
    tcase_add_test(tc, auth_and_local_client_keys);
    tcase_add_test(tc, edit_distance);
    tcase_add_test(tc, membership_modes);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}

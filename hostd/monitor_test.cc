// Unit tests for monitor.h: sliding windows, totals, pruning, merging across
// hosts, classification, the migration decision and advice.
#include "monitor.h"

#include <optional>
#include <string>
#include <vector>

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../tests/unit/check_main.h"

using namespace dshm;

namespace {

constexpr uint64_t kS = 1000000000ull;  // one second in ns

VmId Named(const std::string &name) {
    return VmId{name, {}};
}

VmId WithUuid(const std::string &name, uint8_t last) {
    VmId v{name, {}};
    v.uuid[0] = 0x5e;
    v.uuid[15] = last;
    return v;
}

// `n` acquires: n events.
Activity Acq(uint64_t n) {
    Activity a;
    a.acquires = n;
    return a;
}

MergedVm Vm(const VmId &vm, uint64_t events, std::optional<uint32_t> at) {
    MergedVm m;
    m.vm = vm;
    m.window = Acq(events);
    if (at)
        m.hosts.push_back(HostActivity{*at, true, m.window});
    return m;
}

// ck_assert_str_eq on a temporary std::string would read freed memory: keep
// the string alive for the whole check.
void StrEq(const std::string &got, const char *want) {
    ck_assert_str_eq(got.c_str(), want);
}

bool Has(const std::string &s, const std::string &part) {
    return s.find(part) != std::string::npos;
}

}  // namespace

START_TEST(vm_identity) {
    VmId a = WithUuid("web", 0x01);
    ck_assert(a.has_uuid());
    StrEq(a.UuidString(), "5e000000-0000-0000-0000-000000000001");
    StrEq(a.ToString(), "5e000000-0000-0000-0000-000000000001");
    StrEq(a.Key(), "uuid:5e000000-0000-0000-0000-000000000001");
    // A renamed domain is the same VM; without a UUID the name is the key.
    ck_assert(WithUuid("web-renamed", 0x01).Key() == a.Key());
    VmId n = Named("dshm-attach");
    ck_assert(!n.has_uuid());
    StrEq(a.Label(), "web (5e000000-0000-0000-0000-000000000001)");
    StrEq(VmId{"", a.uuid}.Label(), "5e000000-0000-0000-0000-000000000001");
    StrEq(n.Label(), "dshm-attach");
    StrEq(n.ToString(), "dshm-attach");
    StrEq(n.Key(), "name:dshm-attach");
    ck_assert(Named("x").Key() != Named("y").Key());

    std::array<uint8_t, 16> u{};
    ck_assert(VmId::ParseUuid("5E000000-0000-0000-0000-000000000001", &u));
    ck_assert(u == a.uuid);
    ck_assert(!VmId::ParseUuid("5e000000-0000-0000-0000-00000000000", &u));
    ck_assert(!VmId::ParseUuid("5e000000x0000-0000-0000-000000000001", &u));
    ck_assert(!VmId::ParseUuid("5e000000-0000-0000-0000-00000000000g", &u));
    ck_assert(u == a.uuid);  // unchanged on failure
}
END_TEST

START_TEST(activity_sum_and_events) {
    Activity a{1, 2, 3, 4096 * 3, 4, 5000};
    Activity b{10, 20, 30, 40, 50, 60};
    a += b;
    ck_assert(a == (Activity{11, 22, 33, 4096 * 3 + 40, 54, 5060}));
    // Bytes and hold time are not events.
    ck_assert_uint_eq(a.events(), 11 + 22 + 33 + 54);
    ck_assert(!a.empty());
    ck_assert(Activity{}.empty());
    const std::string text = Activity{1, 2, 3, 4, 5, 6}.ToString();
    ck_assert_str_eq(text.c_str(),
                     "read_faults=1 write_faults=2 pages_written_back=3 bytes_written_back=4 "
                     "acquires=5 hold_ns=6 events=11");
}
END_TEST

START_TEST(window_slides_and_totals_stay) {
    Monitor m;  // 60 s, 1 s buckets
    ck_assert_uint_eq(m.window_s(), 60);
    ck_assert_uint_eq(m.bucket_ns(), kS);
    ck_assert_uint_eq(m.window_ns(), 60 * kS);
    const VmId vm = Named("a");
    m.Record("s", vm, Acq(1), 500000000);  // t = 0.5 s, bucket 0
    m.Record("s", vm, Acq(10), 30 * kS);   // bucket 30
    m.Record("s", vm, Acq(100), 59 * kS);  // bucket 59
    ck_assert_uint_eq(m.Window("s", vm, 59 * kS).acquires, 111);
    // An event counts for at least the window: still there 60.99 s later.
    ck_assert_uint_eq(m.Window("s", vm, 60 * kS + 990000000).acquires, 111);
    ck_assert_uint_eq(m.Window("s", vm, 61 * kS).acquires, 110);
    ck_assert_uint_eq(m.Window("s", vm, 90 * kS + 999999999).acquires, 110);
    ck_assert_uint_eq(m.Window("s", vm, 91 * kS).acquires, 100);
    ck_assert_uint_eq(m.Window("s", vm, 120 * kS).acquires, 0);
    ck_assert(m.Window("s", vm, 1000 * kS).empty());
    // Totals never slide.
    ck_assert_uint_eq(m.Total("s", vm).acquires, 111);
    m.Record("s", vm, Acq(1000), 1000 * kS);
    ck_assert_uint_eq(m.Window("s", vm, 1000 * kS).acquires, 1000);
    ck_assert_uint_eq(m.Total("s", vm).acquires, 1111);
    // Unknown entries are empty.
    ck_assert(m.Window("s", Named("b"), 1000 * kS).empty());
    ck_assert(m.Total("t", vm).empty());
    // Segments are independent.
    m.Record("t", vm, Acq(7), 1000 * kS);
    ck_assert_uint_eq(m.Window("s", vm, 1000 * kS).acquires, 1000);
    ck_assert_uint_eq(m.Window("t", vm, 1000 * kS).acquires, 7);
}
END_TEST

START_TEST(bucket_boundaries) {
    Monitor m(1);  // 1 s window: 60 buckets of ceil(1e9 / 60) ns
    const uint64_t g = m.bucket_ns();
    ck_assert_uint_eq(g, 16666667);
    ck_assert(m.window_ns() >= kS && m.window_ns() < kS + Monitor::kBuckets);
    const VmId vm = Named("a");
    m.Record("s", vm, Acq(1), g - 1);  // last ns of bucket 0
    m.Record("s", vm, Acq(2), g);      // first ns of bucket 1
    ck_assert_uint_eq(m.Window("s", vm, 61 * g - 1).acquires, 3);
    ck_assert_uint_eq(m.Window("s", vm, 61 * g).acquires, 2);
    ck_assert_uint_eq(m.Window("s", vm, 62 * g - 1).acquires, 2);
    ck_assert_uint_eq(m.Window("s", vm, 62 * g).acquires, 0);

    // Slot reuse: bucket 61 lands in bucket 0's slot, which is reset first.
    Monitor r(1);
    r.Record("s", vm, Acq(5), 0);
    r.Record("s", vm, Acq(7), 61 * g);
    ck_assert_uint_eq(r.Window("s", vm, 61 * g).acquires, 7);
    ck_assert_uint_eq(r.Total("s", vm).acquires, 12);
    // Several records in one bucket add up.
    r.Record("s", vm, Acq(1), 61 * g + 5);
    r.Record("s", vm, Acq(1), 62 * g - 1);
    ck_assert_uint_eq(r.Window("s", vm, 62 * g - 1).acquires, 9);

    // The largest window: 60 s buckets.
    Monitor big(Monitor::kMaxWindowS);
    ck_assert_uint_eq(big.bucket_ns(), 60 * kS);
    big.Record("s", vm, Acq(1), 0);
    ck_assert_uint_eq(big.Window("s", vm, 3600 * kS + 59 * kS).acquires, 1);
    ck_assert_uint_eq(big.Window("s", vm, 3660 * kS).acquires, 0);
}
END_TEST

START_TEST(time_never_goes_back) {
    Monitor m;
    const VmId vm = Named("a");
    m.Record("s", vm, Acq(1), 100 * kS);
    m.Record("s", vm, Acq(2), 10 * kS);  // taken as 100 s
    ck_assert_uint_eq(m.Window("s", vm, 5 * kS).acquires, 3);
    ck_assert_uint_eq(m.Window("s", vm, 160 * kS).acquires, 3);
    ck_assert_uint_eq(m.Window("s", vm, 161 * kS).acquires, 0);
}
END_TEST

START_TEST(snapshot_and_names) {
    Monitor m;
    const VmId web = WithUuid("web", 1), cli = Named("cli");
    m.SetAttached("s", web, true);
    m.Record("s", web, Acq(4), 10 * kS);
    m.Record("s", cli, Activity{1, 0, 0, 0, 0, 0}, 10 * kS);
    m.Record("s", WithUuid("web-renamed", 1), Acq(1), 11 * kS);
    ck_assert(m.Attached("s", web));
    ck_assert(!m.Attached("s", cli));
    ck_assert(!m.Attached("x", cli));
    auto snap = m.Snapshot("s", 71 * kS);
    ck_assert_uint_eq(snap.size(), 2);
    // Key order: "name:cli" < "uuid:...".
    ck_assert_str_eq(snap[0].vm.name.c_str(), "cli");
    ck_assert(!snap[0].attached);
    ck_assert(snap[0].window.empty());
    ck_assert_uint_eq(snap[0].total.read_faults, 1);
    ck_assert_str_eq(snap[1].vm.name.c_str(), "web-renamed");
    ck_assert(snap[1].attached);
    ck_assert_uint_eq(snap[1].window.acquires, 1);  // the 10 s record left the window
    ck_assert_uint_eq(snap[1].total.acquires, 5);
    ck_assert(m.Snapshot("nope", 0).empty());
    auto report = MakeReport(snap);
    ck_assert_uint_eq(report.size(), 2);
    ck_assert(report[1].attached && report[1].window.acquires == 1);
}
END_TEST

START_TEST(prune_detached_after_the_window) {
    Monitor m;
    const VmId a = Named("a"), b = Named("b"), c = Named("c");
    m.SetAttached("s", a, true);  // attached, never active
    m.Record("s", b, Acq(1), 10 * kS);
    m.SetAttached("s", b, true);
    m.Record("t", c, Acq(1), 10 * kS);  // never attached
    ck_assert_uint_eq(m.Prune(10 * kS), 0);
    ck_assert_uint_eq(m.Segments().size(), 2);
    m.SetAttached("s", b, false);
    ck_assert_uint_eq(m.Prune(70 * kS), 0);  // b and c still have window activity
    ck_assert_uint_eq(m.Prune(71 * kS), 2);  // b and c go, and segment t with c
    ck_assert_uint_eq(m.Snapshot("s", 71 * kS).size(), 1);
    ck_assert(m.Total("s", b).empty());
    std::vector<std::string> segs = m.Segments();
    ck_assert_uint_eq(segs.size(), 1);
    ck_assert_str_eq(segs[0].c_str(), "s");
    // An attached VM stays forever; detached with nothing recorded, it goes.
    ck_assert_uint_eq(m.Prune(10000 * kS), 0);
    m.SetAttached("s", a, false);
    ck_assert_uint_eq(m.Prune(10000 * kS), 1);
    ck_assert(m.Segments().empty());
}
END_TEST

START_TEST(cluster_merges_a_migrated_vm) {
    ClusterView v;
    const VmId web_old = WithUuid("web", 7), web_new = WithUuid("web-dst", 7);
    // Host 1: the VM's old window (detached: it migrated away) and a local client.
    v.Report("s", 1, {VmReport{web_old, false, Acq(300)}, VmReport{Named("cli"), true, Acq(5)}},
             1 * kS);
    // Host 2: the VM now, attached.
    v.Report("s", 2, {VmReport{web_new, true, Acq(200)}}, 1 * kS);
    auto merged = v.Merged("s");
    ck_assert_uint_eq(merged.size(), 2);
    const MergedVm &web = merged[1];
    ck_assert(web.vm.Key() == web_old.Key());
    ck_assert_str_eq(web.vm.name.c_str(), "web-dst");  // the name where it is attached
    ck_assert_uint_eq(web.window.acquires, 500);
    ck_assert_uint_eq(web.hosts.size(), 2);
    ck_assert_uint_eq(web.hosts[0].host, 1);
    ck_assert(!web.hosts[0].attached);
    ck_assert_uint_eq(web.hosts[0].window.acquires, 300);
    ck_assert_uint_eq(web.hosts[1].host, 2);
    ck_assert(web.At() == 2u);
    ck_assert(merged[0].At() == 1u);

    // While the migration runs both hosts are attached: nowhere in particular.
    v.Report("s", 1, {VmReport{web_old, true, Acq(300)}}, 2 * kS);
    merged = v.Merged("s");
    ck_assert_uint_eq(merged.size(), 1);  // host 1's new report replaced the old one
    ck_assert(!merged[0].At().has_value());
    ck_assert(merged[0].AttachedAt() == (std::vector<uint32_t>{1, 2}));

    // A host's report replaces its previous one: no double counting.
    v.Report("s", 2, {VmReport{web_new, true, Acq(250)}}, 2 * kS);
    v.Report("s", 2, {VmReport{web_new, true, Acq(260)}}, 3 * kS);
    ck_assert_uint_eq(v.Merged("s")[0].window.acquires, 560);
    // The same VM twice in one report is summed.
    v.Report("t", 3, {VmReport{Named("x"), false, Acq(1)}, VmReport{Named("x"), true, Acq(2)}},
             3 * kS);
    auto t = v.Merged("t");
    ck_assert_uint_eq(t.size(), 1);
    ck_assert_uint_eq(t[0].hosts.size(), 1);
    ck_assert_uint_eq(t[0].window.acquires, 3);
    ck_assert(t[0].At() == 3u);
    ck_assert(v.Segments() == (std::vector<std::string>{"s", "t"}));

    // Host 1 stopped reporting: its last report is 8 s old at 10 s.
    ck_assert_uint_eq(v.Expire(10 * kS, 7 * kS), 1);
    merged = v.Merged("s");
    ck_assert_uint_eq(merged[0].window.acquires, 260);
    ck_assert(merged[0].At() == 2u);
    v.ForgetHost(2);
    ck_assert(v.Merged("s").empty());
    ck_assert(v.Segments() == (std::vector<std::string>{"t"}));
    v.ForgetSegment("t");
    ck_assert(v.Segments().empty());
}
END_TEST

START_TEST(classification_thresholds) {
    PolicyConfig p;  // 100 events, 25 %
    // Exactly at both thresholds: strong.
    auto c = Classify({Vm(Named("a"), 100, 1), Vm(Named("b"), 300, 2)}, p);
    ck_assert_uint_eq(c.size(), 2);
    ck_assert_str_eq(c[0].vm.name.c_str(), "b");  // most events first
    const Classification *a = FindVm(c, Named("a"));
    ck_assert(a && a->strong && a->share == 0.25 && !a->most_active);
    ck_assert_str_eq(a->reason.c_str(),
                     "strongly linked: 100 events in 60 s (25% of the segment's)");
    // One event short.
    c = Classify({Vm(Named("a"), 99, 1), Vm(Named("b"), 297, 2)}, p);
    a = FindVm(c, Named("a"));
    ck_assert(!a->strong);
    ck_assert_str_eq(a->reason.c_str(), "weakly linked: 99 events in 60 s < 100");
    // Enough events, share just below 25 %.
    c = Classify({Vm(Named("a"), 100, 1), Vm(Named("b"), 301, 2)}, p);
    a = FindVm(c, Named("a"));
    ck_assert(!a->strong && a->share < 0.25);
    ck_assert_str_eq(a->reason.c_str(),
                     "weakly linked: 100 events in 60 s, 24.9% of the segment's < 25%");
    // The example of the header.
    c = Classify({Vm(Named("big"), 1234, 1), Vm(Named("small"), 217, 2)}, p);
    ck_assert_str_eq(c[0].reason.c_str(),
                     "strongly linked: 1234 events in 60 s (85% of the segment's), the most "
                     "active VM");
    ck_assert(!c[1].strong);  // 217 events but 14.9 %
    ck_assert_str_eq(c[1].reason.c_str(),
                     "weakly linked: 217 events in 60 s, 14.9% of the segment's < 25%");
}
END_TEST

START_TEST(classification_share_and_window) {
    PolicyConfig p;
    p.window_s = 30;
    p.strong_min_events = 10;
    p.strong_min_share = 0.1;
    auto c = Classify({Vm(Named("a"), 10, 1), Vm(Named("b"), 90, 1)}, p);
    ck_assert(FindVm(c, Named("a"))->strong);  // 10/100 == 0.1 exactly
    ck_assert(Has(FindVm(c, Named("a"))->reason, "10 events in 30 s (10% of"));
    c = Classify({Vm(Named("a"), 10, 1), Vm(Named("b"), 91, 1)}, p);
    ck_assert(!FindVm(c, Named("a"))->strong);
    // A lone VM has 100 % of its segment.
    c = Classify({Vm(Named("a"), 10, 1)}, p);
    ck_assert(c[0].strong && c[0].share == 1.0 && c[0].most_active);
    // Zero thresholds: still no strong link without events.
    p.strong_min_events = 0;
    p.strong_min_share = 0;
    c = Classify({Vm(Named("a"), 0, 1), Vm(Named("b"), 0, 1)}, p);
    ck_assert(!c[0].strong && !c[1].strong && c[0].share == 0);
    ck_assert(Classify({}, p).empty());
}
END_TEST

START_TEST(most_active_and_ties) {
    PolicyConfig p;
    // A tie: the smaller key wins, whatever the input order.
    auto c =
        Classify({Vm(Named("zed"), 500, 1), Vm(Named("amy"), 500, 2), Vm(Named("bob"), 10, 1)}, p);
    ck_assert_str_eq(c[0].vm.name.c_str(), "amy");
    ck_assert(c[0].most_active && !c[1].most_active && !c[2].most_active);
    ck_assert(Has(c[0].reason, "the most active VM"));
    ck_assert(!Has(c[1].reason, "most active"));
    c = Classify({Vm(Named("amy"), 500, 2), Vm(Named("zed"), 500, 1)}, p);
    ck_assert_str_eq(c[0].vm.name.c_str(), "amy");
    // Name keys sort before UUID keys ("name:" < "uuid:").
    c = Classify({Vm(WithUuid("u", 1), 50, 1), Vm(Named("n"), 50, 1)}, p);
    ck_assert_str_eq(c[0].vm.name.c_str(), "n");
    ck_assert(c[0].most_active);
    // A weak VM can be the most active one.
    c = Classify({Vm(Named("a"), 3, 1), Vm(Named("b"), 1, 1)}, p);
    ck_assert(c[0].most_active && !c[0].strong);
    // Nothing happened: no most active VM.
    c = Classify({Vm(Named("a"), 0, 1), Vm(Named("b"), 0, 1)}, p);
    ck_assert(!c[0].most_active && !c[1].most_active);
}
END_TEST

START_TEST(migration_decision_table) {
    PolicyConfig p;
    const VmId hot = Named("hot"), warm = Named("warm"), cold = Named("cold");
    auto cls = Classify({Vm(hot, 1000, 2), Vm(warm, 600, 1), Vm(cold, 20, 1)}, p);
    ck_assert(FindVm(cls, hot)->strong && FindVm(cls, hot)->most_active);
    ck_assert(FindVm(cls, warm)->strong && !FindVm(cls, warm)->most_active);
    ck_assert(!FindVm(cls, cold)->strong);

    // Weakly linked: ownership stays.
    Decision d = DecideOnMigration("s", cold, 1u, 3, 1, cls, p);
    ck_assert(!d.move);
    ck_assert(Has(d.reason, "weakly linked: 20 events in 60 s < 100"));
    ck_assert(Has(d.reason, "ownership stays on host 1"));
    ck_assert(Has(d.reason, "VM cold on segment s, host 1 -> host 3: weakly linked"));
    // Strongly linked, not the most active: stays.
    d = DecideOnMigration("s", warm, 1u, 3, 1, cls, p);
    ck_assert(!d.move);
    ck_assert(Has(d.reason, "VM hot is more active (1000 events)"));
    ck_assert(Has(d.reason, "ownership stays on host 1"));
    // Strongly linked, most active, to another host than the owner: moves.
    d = DecideOnMigration("s", hot, 2u, 3, 1, cls, p);
    ck_assert(d.move);
    ck_assert(Has(d.reason, "ownership moves from host 1 to host 3"));
    ck_assert(Has(d.reason, "strongly linked: 1000 events"));
    // ... to the owner host: nothing to move.
    d = DecideOnMigration("s", hot, 2u, 1, 1, cls, p);
    ck_assert(!d.move);
    ck_assert(Has(d.reason, "moved to the owner host"));
    // ... but the configuration forbids moving ownership.
    PolicyConfig off = p;
    off.move_ownership = false;
    d = DecideOnMigration("s", hot, std::nullopt, 3, 1, cls, off);
    ck_assert(!d.move);
    ck_assert(Has(d.reason, "move-ownership is off"));
    ck_assert(Has(d.reason, ", unknown host -> host 3: "));
    // Unknown VM: no activity, stays.
    d = DecideOnMigration("s", Named("ghost"), 1u, 3, 1, cls, p);
    ck_assert(!d.move);
    ck_assert(Has(d.reason, "no recorded activity"));
    d = DecideOnMigration("s", WithUuid("dom", 9), 1u, 3, 1, cls, p);
    StrEq(d.reason,
          "VM dom (5e000000-0000-0000-0000-000000000009) on segment s, host 1 -> host 3: no "
          "recorded activity (weakly linked): ownership stays on host 1");
}
END_TEST

START_TEST(gone_vms_are_not_weighed) {
    PolicyConfig p;  // 100 events, 25 %
    // A destroyed VM's window outweighs everyone: it must not win.
    std::vector<MergedVm> vms = {Vm(Named("gone"), 5000, std::nullopt), Vm(Named("a"), 200, 2),
                                 Vm(Named("b"), 100, 3)};
    auto c = Classify(vms, p);
    ck_assert_uint_eq(c.size(), 3);
    const Classification *g = FindVm(c, Named("gone"));
    ck_assert(g && g->gone && !g->strong && !g->most_active);
    StrEq(g->reason, "gone (attached nowhere): 5000 events in 60 s, not weighed");
    const Classification *a = FindVm(c, Named("a"));
    ck_assert(a->most_active && a->strong && !a->gone);
    ck_assert(FindVm(c, Named("b"))->strong);  // 100 of 300: 33 %, the gone VM not counted
    Decision d = DecideOnMigration("s", Named("a"), 2, 4, 1, c, p);
    ck_assert(d.move);
    // A VM whose reports say it is attached nowhere yet, that just arrived
    // at host 4 (its ADOPT): marked there, it is weighed again.
    std::vector<MergedVm> arriving = {Vm(Named("m"), 500, std::nullopt), Vm(Named("o"), 100, 1)};
    ck_assert(FindVm(Classify(arriving, p), Named("m"))->gone);
    MarkAttached(&arriving, Named("m"), 4);
    ck_assert_uint_eq(arriving[0].AttachedAt().size(), 1);
    ck_assert_uint_eq(arriving[0].AttachedAt()[0], 4);
    ck_assert_uint_eq(arriving[0].window.events(), 500);  // its figures are unchanged
    c = Classify(arriving, p);
    ck_assert(FindVm(c, Named("m"))->most_active && FindVm(c, Named("m"))->strong);
    MarkAttached(&arriving, Named("nobody"), 4);  // not listed: no-op
    ck_assert_uint_eq(arriving.size(), 2);
}
END_TEST

START_TEST(advice_ranking) {
    PolicyConfig p;
    p.strong_min_share = 0.1;
    const uint32_t owner = 1;
    std::vector<MergedVm> vms = {
        Vm(Named("top"), 2000, 2),             // most active, at host 2, the owner host is busy
        Vm(Named("b"), 800, 3),                // strong, at host 3: move to the owner
        Vm(Named("c"), 900, 4),                // strong, at host 4: move to the owner
        Vm(Named("local"), 1000, 1),           // strong, already at the owner
        Vm(Named("weak"), 50, 5),              // weak: no advice
        Vm(Named("gone"), 700, std::nullopt),  // attached nowhere
    };
    auto adv = Advise("s", vms, owner, p);
    ck_assert_uint_eq(adv.size(), 3);
    // top: ownership to host 2 gains 2000 - 1000 = 1000, moving top gains
    // 2000: the VM should move.
    ck_assert_str_eq(adv[0].vm.name.c_str(), "top");
    ck_assert(adv[0].kind == Advice::Kind::kMoveVm);
    ck_assert_uint_eq(adv[0].from_host, 2);
    ck_assert_uint_eq(adv[0].to_host, 1);
    ck_assert_uint_eq(adv[0].score, 2000);
    ck_assert(Has(adv[0].reason, "ownership following it would gain only 1000"));
    ck_assert_str_eq(adv[1].vm.name.c_str(), "c");
    ck_assert_uint_eq(adv[1].score, 900);
    ck_assert_uint_eq(adv[1].from_host, 4);
    ck_assert_str_eq(adv[2].vm.name.c_str(), "b");
    ck_assert_uint_eq(adv[2].score, 800);
    ck_assert(adv[2].kind == Advice::Kind::kMoveVm && adv[2].to_host == 1);
    StrEq(adv[2].reason,
          "VM b on segment s is on host 3, the owner is host 1 (strongly linked: 800 events in "
          "60 s (16.8% of the segment's)): moving it to host 1 makes its faults, write-backs and "
          "lock round trips local (800 events)");

    // The owner host is quiet: ownership should follow the most active VM,
    // and it gains more than moving it (its neighbour on host 2 counts too).
    std::vector<MergedVm> quiet = {Vm(Named("top"), 2000, 2), Vm(Named("nb"), 600, 2),
                                   Vm(Named("o"), 100, 1)};
    adv = Advise("s", quiet, owner, p);
    ck_assert_uint_eq(adv.size(), 2);
    ck_assert_str_eq(adv[0].vm.name.c_str(), "top");
    ck_assert(adv[0].kind == Advice::Kind::kMoveOwnership);
    ck_assert_uint_eq(adv[0].from_host, 2);
    ck_assert_uint_eq(adv[0].to_host, 2);
    ck_assert_uint_eq(adv[0].score, 2600 - 100);
    ck_assert(Has(adv[0].reason, "the most active VM): ownership should follow it to host 2"));
    ck_assert_str_eq(adv[1].vm.name.c_str(), "nb");
    ck_assert(adv[1].kind == Advice::Kind::kMoveVm);
    // With move-ownership off the VM is told to move instead.
    PolicyConfig off = p;
    off.move_ownership = false;
    adv = Advise("s", quiet, owner, off);
    ck_assert(adv[0].kind == Advice::Kind::kMoveVm && adv[0].score == 2000);
    ck_assert(Has(adv[0].reason, "move-ownership is off"));

    // A migrating VM gets no advice; ties rank by key.
    MergedVm migrating = Vm(Named("mig"), 500, 2);
    migrating.hosts.push_back(HostActivity{3, true, Acq(0)});  // attached on 2 and 3
    adv = Advise("s", {migrating, Vm(Named("y"), 400, 2), Vm(Named("x"), 400, 3)}, owner, p);
    ck_assert_uint_eq(adv.size(), 2);
    ck_assert_str_eq(adv[0].vm.name.c_str(), "x");
    ck_assert_str_eq(adv[1].vm.name.c_str(), "y");
    ck_assert(Advise("s", {}, owner, p).empty());
}
END_TEST

int main() {
    Suite *s = suite_create("hostd/monitor");
    TCase *tc = NewTCase("monitor", 20);
    tcase_add_test(tc, vm_identity);
    tcase_add_test(tc, activity_sum_and_events);
    tcase_add_test(tc, window_slides_and_totals_stay);
    tcase_add_test(tc, bucket_boundaries);
    tcase_add_test(tc, time_never_goes_back);
    tcase_add_test(tc, snapshot_and_names);
    tcase_add_test(tc, prune_detached_after_the_window);
    tcase_add_test(tc, cluster_merges_a_migrated_vm);
    tcase_add_test(tc, classification_thresholds);
    tcase_add_test(tc, classification_share_and_window);
    tcase_add_test(tc, most_active_and_ties);
    tcase_add_test(tc, migration_decision_table);
    tcase_add_test(tc, gone_vms_are_not_weighed);
    tcase_add_test(tc, advice_ranking);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}

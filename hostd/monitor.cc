#include "monitor.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <limits>
#include <utility>

namespace dshm {

namespace {

constexpr uint64_t kNoBucket = std::numeric_limits<uint64_t>::max();

int HexDigit(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// A share as a percentage, truncated (never rounded up) to one decimal and
// without ".0": a share below a threshold never prints as the threshold.
std::string Percent(double share) {
    double tenths = std::floor(share * 1000.0 + 1e-6);
    char buf[32];
    if (std::fmod(tenths, 10.0) == 0)
        snprintf(buf, sizeof buf, "%.0f%%", tenths / 10);
    else
        snprintf(buf, sizeof buf, "%.1f%%", tenths / 10);
    return buf;
}

std::string Host(uint32_t h) {
    return "host " + std::to_string(h);
}

std::string EventsIn(uint64_t events, const PolicyConfig &p) {
    return std::to_string(events) + " events in " + std::to_string(p.window_s) + " s";
}

}  // namespace

// --- VmId ---

bool VmId::has_uuid() const {
    return std::any_of(uuid.begin(), uuid.end(), [](uint8_t b) { return b != 0; });
}

std::string VmId::UuidString() const {
    static const char kHex[] = "0123456789abcdef";
    std::string s;
    s.reserve(36);
    for (size_t i = 0; i < uuid.size(); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            s += '-';
        s += kHex[uuid[i] >> 4];
        s += kHex[uuid[i] & 15];
    }
    return s;
}

std::string VmId::Key() const {
    return has_uuid() ? "uuid:" + UuidString() : "name:" + name;
}

std::string VmId::ToString() const {
    return has_uuid() ? UuidString() : name;
}

std::string VmId::Label() const {
    if (!has_uuid())
        return name;
    return name.empty() ? UuidString() : name + " (" + UuidString() + ")";
}

bool VmId::ParseUuid(std::string_view text, std::array<uint8_t, 16> *out) {
    if (text.size() != 36)
        return false;
    std::array<uint8_t, 16> u{};
    size_t byte = 0;
    for (size_t i = 0; i < text.size();) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-')
                return false;
            i++;
            continue;
        }
        int hi = HexDigit(text[i]), lo = HexDigit(text[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        u[byte++] = static_cast<uint8_t>(hi << 4 | lo);
        i += 2;
    }
    *out = u;
    return true;
}

// --- Activity ---

Activity &Activity::operator+=(const Activity &o) {
    read_faults += o.read_faults;
    write_faults += o.write_faults;
    pages_written_back += o.pages_written_back;
    bytes_written_back += o.bytes_written_back;
    acquires += o.acquires;
    hold_ns += o.hold_ns;
    return *this;
}

uint64_t Activity::events() const {
    return read_faults + write_faults + pages_written_back + acquires;
}

std::string Activity::ToString() const {
    return "read_faults=" + std::to_string(read_faults) +
           " write_faults=" + std::to_string(write_faults) +
           " pages_written_back=" + std::to_string(pages_written_back) +
           " bytes_written_back=" + std::to_string(bytes_written_back) +
           " acquires=" + std::to_string(acquires) + " hold_ns=" + std::to_string(hold_ns) +
           " events=" + std::to_string(events());
}

// --- Monitor ---

Monitor::Entry::Entry() {
    stamp.fill(kNoBucket);
}

Monitor::Monitor(uint32_t window_s) : window_s_(window_s) {
    assert(window_s >= 1 && window_s <= kMaxWindowS);
    uint64_t window_ns = uint64_t{window_s} * 1000000000ull;
    bucket_ns_ = (window_ns + kBuckets - 1) / kBuckets;
}

uint64_t Monitor::BucketAt(uint64_t now_ns) const {
    return std::max(now_ns, latest_ns_) / bucket_ns_;
}

const Monitor::Entry *Monitor::Find(const std::string &segment, const VmId &vm) const {
    auto s = segments_.find(segment);
    if (s == segments_.end())
        return nullptr;
    auto e = s->second.find(vm.Key());
    return e == s->second.end() ? nullptr : &e->second;
}

Monitor::Entry &Monitor::Get(const std::string &segment, const VmId &vm) {
    auto [it, fresh] = segments_[segment].try_emplace(vm.Key());
    if (fresh || !vm.name.empty())
        it->second.vm = vm;
    return it->second;
}

Activity Monitor::WindowOf(const Entry &e, uint64_t bucket) const {
    Activity sum;
    for (size_t i = 0; i < e.ring.size(); i++) {
        uint64_t b = e.stamp[i];
        if (b != kNoBucket && b <= bucket && bucket - b <= kBuckets)
            sum += e.ring[i];
    }
    return sum;
}

void Monitor::Record(const std::string &segment, const VmId &vm, const Activity &delta,
                     uint64_t now_ns) {
    latest_ns_ = std::max(latest_ns_, now_ns);
    uint64_t bucket = BucketAt(now_ns);
    Entry &e = Get(segment, vm);
    size_t slot = bucket % e.ring.size();
    if (e.stamp[slot] != bucket) {
        e.ring[slot] = Activity{};
        e.stamp[slot] = bucket;
    }
    e.ring[slot] += delta;
    e.total += delta;
    if (!delta.empty())
        e.last_active = bucket;
}

void Monitor::SetAttached(const std::string &segment, const VmId &vm, bool attached) {
    Get(segment, vm).attached = attached;
}

bool Monitor::Attached(const std::string &segment, const VmId &vm) const {
    const Entry *e = Find(segment, vm);
    return e && e->attached;
}

Activity Monitor::Window(const std::string &segment, const VmId &vm, uint64_t now_ns) const {
    const Entry *e = Find(segment, vm);
    return e ? WindowOf(*e, BucketAt(now_ns)) : Activity{};
}

Activity Monitor::Total(const std::string &segment, const VmId &vm) const {
    const Entry *e = Find(segment, vm);
    return e ? e->total : Activity{};
}

std::vector<VmActivity> Monitor::Snapshot(const std::string &segment, uint64_t now_ns) const {
    std::vector<VmActivity> out;
    auto s = segments_.find(segment);
    if (s == segments_.end())
        return out;
    uint64_t bucket = BucketAt(now_ns);
    for (const auto &[key, e] : s->second) {
        out.push_back(VmActivity{e.vm, e.attached, WindowOf(e, bucket), e.total});
    }
    return out;
}

std::vector<std::string> Monitor::Segments() const {
    std::vector<std::string> out;
    for (const auto &[name, vms] : segments_)
        out.push_back(name);
    return out;
}

size_t Monitor::Prune(uint64_t now_ns) {
    uint64_t bucket = BucketAt(now_ns);
    size_t removed = 0;
    for (auto s = segments_.begin(); s != segments_.end();) {
        auto &vms = s->second;
        for (auto it = vms.begin(); it != vms.end();) {
            const Entry &e = it->second;
            // The window is empty iff the last non-empty delta left it.
            bool window_empty = !e.last_active || bucket - *e.last_active > kBuckets;
            if (!e.attached && window_empty) {
                it = vms.erase(it);
                removed++;
            } else {
                ++it;
            }
        }
        s = vms.empty() ? segments_.erase(s) : std::next(s);
    }
    return removed;
}

// --- ClusterView ---

std::vector<VmReport> MakeReport(const std::vector<VmActivity> &snapshot) {
    std::vector<VmReport> out;
    out.reserve(snapshot.size());
    for (const VmActivity &v : snapshot)
        out.push_back(VmReport{v.vm, v.attached, v.window});
    return out;
}

std::vector<uint32_t> MergedVm::AttachedAt() const {
    std::vector<uint32_t> out;
    for (const HostActivity &h : hosts) {
        if (h.attached)
            out.push_back(h.host);
    }
    return out;
}

std::optional<uint32_t> MergedVm::At() const {
    std::vector<uint32_t> at = AttachedAt();
    if (at.size() != 1)
        return std::nullopt;
    return at[0];
}

void ClusterView::Report(const std::string &segment, uint32_t host, std::vector<VmReport> vms,
                         uint64_t now_ns) {
    HostReport &r = reports_[segment][host];
    r.received_ns = now_ns;
    r.vms = std::move(vms);
}

void ClusterView::ForgetHost(uint32_t host) {
    for (auto s = reports_.begin(); s != reports_.end();) {
        s->second.erase(host);
        s = s->second.empty() ? reports_.erase(s) : std::next(s);
    }
}

void ClusterView::ForgetSegment(const std::string &segment) {
    reports_.erase(segment);
}

size_t ClusterView::Expire(uint64_t now_ns, uint64_t max_age_ns) {
    size_t removed = 0;
    for (auto s = reports_.begin(); s != reports_.end();) {
        auto &hosts = s->second;
        for (auto h = hosts.begin(); h != hosts.end();) {
            if (now_ns > h->second.received_ns && now_ns - h->second.received_ns > max_age_ns) {
                h = hosts.erase(h);
                removed++;
            } else {
                ++h;
            }
        }
        s = hosts.empty() ? reports_.erase(s) : std::next(s);
    }
    return removed;
}

std::vector<MergedVm> ClusterView::Merged(const std::string &segment) const {
    std::vector<MergedVm> out;
    auto s = reports_.find(segment);
    if (s == reports_.end())
        return out;
    std::map<std::string, MergedVm> merged;
    // Hosts in increasing order, so every MergedVm::hosts is sorted.
    for (const auto &[host, report] : s->second) {
        for (const VmReport &r : report.vms) {
            auto [it, fresh] = merged.try_emplace(r.vm.Key());
            MergedVm &m = it->second;
            if (fresh)
                m.vm = r.vm;
            m.window += r.window;
            if (!m.hosts.empty() && m.hosts.back().host == host) {
                // The same VM twice in one report: sum.
                m.hosts.back().window += r.window;
                m.hosts.back().attached = m.hosts.back().attached || r.attached;
            } else {
                m.hosts.push_back(HostActivity{host, r.attached, r.window});
            }
            // The name where the VM is attached is its current one.
            if (r.attached && !r.vm.name.empty())
                m.vm.name = r.vm.name;
        }
    }
    out.reserve(merged.size());
    for (auto &[key, m] : merged)
        out.push_back(std::move(m));
    return out;
}

std::vector<std::string> ClusterView::Segments() const {
    std::vector<std::string> out;
    for (const auto &[name, hosts] : reports_)
        out.push_back(name);
    return out;
}

// --- Policy ---

std::vector<Classification> Classify(const std::vector<MergedVm> &vms, const PolicyConfig &p) {
    std::vector<Classification> out;
    uint64_t sum = 0;
    for (const MergedVm &m : vms) {
        if (!m.AttachedAt().empty())
            sum += m.window.events();
    }
    for (const MergedVm &m : vms) {
        Classification c;
        c.vm = m.vm;
        c.events = m.window.events();
        if (m.AttachedAt().empty()) {
            c.gone = true;
            c.reason = "gone (attached nowhere): " + EventsIn(c.events, p) + ", not weighed";
            out.push_back(std::move(c));
            continue;
        }
        // Exact at the threshold: a decimal threshold and a quotient equal to
        // it round to the same double.
        c.share = sum == 0 ? 0.0 : static_cast<double>(c.events) / static_cast<double>(sum);
        bool enough_events = c.events >= p.strong_min_events && c.events > 0;
        bool enough_share = c.share >= p.strong_min_share;
        c.strong = enough_events && enough_share;
        std::string figures = EventsIn(c.events, p);
        if (c.strong) {
            c.reason =
                "strongly linked: " + figures + " (" + Percent(c.share) + " of the segment's)";
        } else if (!enough_events) {
            c.reason = "weakly linked: " + figures + " < " +
                       std::to_string(std::max<uint64_t>(p.strong_min_events, 1));
        } else {
            c.reason = "weakly linked: " + figures + ", " + Percent(c.share) +
                       " of the segment's < " + Percent(p.strong_min_share);
        }
        out.push_back(std::move(c));
    }
    std::stable_sort(out.begin(), out.end(), [](const Classification &a, const Classification &b) {
        if (a.events != b.events)
            return a.events > b.events;
        return a.vm.Key() < b.vm.Key();
    });
    for (Classification &c : out) {
        if (c.gone)
            continue;
        if (c.events > 0) {
            c.most_active = true;
            c.reason += ", the most active VM";
        }
        break;
    }
    return out;
}

void MarkAttached(std::vector<MergedVm> *vms, const VmId &vm, uint32_t host) {
    const std::string key = vm.Key();
    for (MergedVm &m : *vms) {
        if (m.vm.Key() != key)
            continue;
        for (HostActivity &h : m.hosts) {
            if (h.host == host) {
                h.attached = true;
                return;
            }
        }
        m.hosts.push_back(HostActivity{host, true, Activity{}});
        std::sort(m.hosts.begin(), m.hosts.end(),
                  [](const HostActivity &a, const HostActivity &b) { return a.host < b.host; });
        return;
    }
}

const Classification *FindVm(const std::vector<Classification> &cls, const VmId &vm) {
    std::string key = vm.Key();
    for (const Classification &c : cls) {
        if (c.vm.Key() == key)
            return &c;
    }
    return nullptr;
}

Decision DecideOnMigration(const std::string &segment, const VmId &vm,
                           std::optional<uint32_t> from_host, uint32_t to_host,
                           uint32_t current_owner, const std::vector<Classification> &cls,
                           const PolicyConfig &p) {
    std::string who = "VM " + vm.Label() + " on segment " + segment + ", " +
                      (from_host ? Host(*from_host) : std::string("unknown host")) + " -> " +
                      Host(to_host) + ": ";
    std::string stays = "ownership stays on " + Host(current_owner);
    const Classification *c = FindVm(cls, vm);
    if (!c)
        return {false, who + "no recorded activity (weakly linked): " + stays};
    if (!c->strong)
        return {false, who + c->reason + ": " + stays};
    if (!c->most_active) {
        const Classification *top = cls.empty() ? nullptr : &cls[0];
        std::string other = top ? "VM " + top->vm.Label() + " is more active (" +
                                      std::to_string(top->events) + " events)"
                                : "another VM is more active";
        return {false, who + c->reason + " but " + other + ": " + stays};
    }
    if (to_host == current_owner)
        return {false, who + c->reason + ": it moved to the owner host, " + stays};
    if (!p.move_ownership)
        return {false, who + c->reason + " but move-ownership is off: " + stays};
    return {true, who + c->reason + ": ownership moves from " + Host(current_owner) + " to " +
                      Host(to_host)};
}

std::vector<Advice> Advise(const std::string &segment, const std::vector<MergedVm> &vms,
                           uint32_t current_owner, const PolicyConfig &p) {
    std::vector<Classification> cls = Classify(vms, p);
    std::map<uint32_t, uint64_t> local;  // host -> events of the VMs at it
    for (const MergedVm &m : vms) {
        if (auto at = m.At())
            local[*at] += m.window.events();
    }
    const uint64_t at_owner = local[current_owner];
    std::vector<Advice> out;
    for (const MergedVm &m : vms) {
        std::optional<uint32_t> at = m.At();
        const Classification *c = FindVm(cls, m.vm);
        if (!at || *at == current_owner || !c || !c->strong)
            continue;
        const std::string head = "VM " + m.vm.Label() + " on segment " + segment + " is on " +
                                 Host(*at) + ", the owner is " + Host(current_owner) + " (" +
                                 c->reason + "): ";
        Advice a;
        a.vm = m.vm;
        a.from_host = *at;
        const uint64_t gain_vm = c->events;
        const uint64_t gain_owner = local[*at] > at_owner ? local[*at] - at_owner : 0;
        if (c->most_active && p.move_ownership && gain_owner >= gain_vm) {
            a.kind = Advice::Kind::kMoveOwnership;
            a.to_host = *at;
            a.score = gain_owner;
            a.reason = head + "ownership should follow it to " + Host(*at) +
                       " rather than the VM moving (" + std::to_string(a.score) +
                       " events become local)";
        } else {
            a.kind = Advice::Kind::kMoveVm;
            a.to_host = current_owner;
            a.score = gain_vm;
            std::string why;
            if (c->most_active && !p.move_ownership) {
                why = "; ownership does not follow it: move-ownership is off";
            } else if (c->most_active) {
                why = "; ownership following it would gain only " + std::to_string(gain_owner) +
                      " (" + Host(current_owner) + "'s VMs make " + std::to_string(at_owner) +
                      " events)";
            }
            a.reason = head + "moving it to " + Host(current_owner) +
                       " makes its faults, write-backs and lock round trips local (" +
                       std::to_string(a.score) + " events)" + why;
        }
        out.push_back(std::move(a));
    }
    std::stable_sort(out.begin(), out.end(), [](const Advice &a, const Advice &b) {
        if (a.score != b.score)
            return a.score > b.score;
        return a.vm.Key() < b.vm.Key();
    });
    return out;
}

}  // namespace dshm

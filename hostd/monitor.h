// Access monitor and ownership policy (docs/policy.md): how each VM uses
// each segment, which VMs are strongly linked to a segment, and whether the
// segment's ownership follows a VM that migrates.
//
// Pure code: no I/O, no clock, no GLib main loop.  Time is passed in
// explicitly as a monotonic nanosecond count, so tests control it: dshmd
// passes clock_gettime(CLOCK_MONOTONIC) in ns (dshmd's NowNs()), the
// clock of its DSHMD_PHASES stamps; monitor.cc reads no clock itself.
//
// The pieces, in the order data flows through them:
//   - Monitor (every host): per (segment, VM) the activity in a sliding
//     window plus totals since start, fed by Record() from the daemon's
//     fault, write-back and lock paths.
//   - ClusterView (the owner host of a segment): the latest report of every
//     host (its Monitor's window figures, MakeReport()), merged per VM across
//     hosts.  A VM that migrated has window activity on its old and its new
//     host; the merge sums them and says where the VM is attached now.
//   - Classify(): strongly / weakly linked, share of the segment's events,
//     most active VM, with a one-line reason.
//   - DecideOnMigration(): does the ownership follow a VM that migrated?
//   - Advise(): for `dshmctl advise`, which VM would gain from moving to
//     which host, ranked.
//
// Identity of a VM: its VmId::Key(), the UUID when it is non-zero (a libvirt
// domain keeps its UUID across a migration, and its name may change), else
// its name (host-side clients such as dshm-attach have only a name).
//
// Thread safety: nothing here is synchronized (plain values, unannotated
// inside).  Const methods may run concurrently with each other; everything
// else needs external synchronization.  In dshmd the Monitor and the
// ClusterView are members of the Daemon, which the loop mutex guards (watch.h):
// whichever thread holds the loop mutex (the loop thread or the I/O thread)
// uses them.  The free functions only read their arguments.
//
// Cost: Record/Window/Total are O(log segments + log VMs + kBuckets); memory
// is about 3.5 KiB per (segment, VM) entry.  The caller bounds what enters
// from the network: a ClusterView keeps whatever reports it is given.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dshm {

// A VM (or a host-side client) as the daemon sees it in ATTACH.
struct VmId {
    std::string name;                // libvirt domain name or process name
    std::array<uint8_t, 16> uuid{};  // all zero when unknown

    bool has_uuid() const;

    // The identity used everywhere in this module: "uuid:<36-char UUID>" when
    // the UUID is non-zero, else "name:<name>".  Two VmIds are the same VM
    // iff their keys are equal (so a renamed domain stays the same VM).
    std::string Key() const;

    // Printable form: the UUID string (lower-case 8-4-4-4-12) when non-zero,
    // else the name.
    std::string ToString() const;

    // For humans (reasons, logs): "name (uuid)" when both are known, else
    // whichever is.
    std::string Label() const;

    // The UUID as lower-case 8-4-4-4-12 text (all zeros when unknown).
    std::string UuidString() const;

    // Parses 8-4-4-4-12 hex text (either case).  false, *out unchanged, on
    // anything else.
    static bool ParseUuid(std::string_view text, std::array<uint8_t, 16> *out);
};

// What a VM did to a segment: counts, either over a window or in total.
struct Activity {
    uint64_t read_faults = 0;         // MISSING faults (page absent from the host's copy)
    uint64_t write_faults = 0;        // write-protect faults (first write to a clean page)
    uint64_t pages_written_back = 0;  // dirty pages sent to (or applied by) the owner
    uint64_t bytes_written_back = 0;  // bytes of those write-backs (diff bytes on the wire)
    uint64_t acquires = 0;            // lock acquisitions granted
    uint64_t hold_ns = 0;             // time the VM held locks of the segment

    Activity &operator+=(const Activity &o);
    bool operator==(const Activity &) const = default;

    // The interactions counted by the policy:
    //   read_faults + write_faults + pages_written_back + acquires.
    // Each is an interaction with the segment's owner or a write the owner
    // must absorb: a read fault fetches the page from the owner; a write
    // fault dirties a page that the owner must take at the next release; a
    // written-back page is applied by the owner, which then invalidates every
    // other copy; an acquire is a round trip to the owner's lock table.  They
    // are remote when the VM runs on another host than the owner, local when
    // it runs on the owner host; moving the VM or the ownership changes
    // which.  bytes_written_back (a volume, already counted as pages) and
    // hold_ns (a duration) are reported but not counted as events.
    uint64_t events() const;

    // True when every field is 0.
    bool empty() const { return *this == Activity{}; }

    // "read_faults=1 write_faults=2 pages_written_back=3 bytes_written_back=4
    // acquires=5 hold_ns=6 events=11": one key=value per field, for logs.
    std::string ToString() const;
};

// One VM of a segment in a Monitor snapshot.
struct VmActivity {
    VmId vm;
    bool attached = false;  // attached to the segment on this host
    Activity window;        // over the sliding window ending now
    Activity total;         // since the entry was created
};

// Per (segment, VM) activity on this host: a sliding window made of time
// buckets plus totals since start.
//
// Window semantics: the window is split into kBuckets buckets of
// bucket_ns() = ceil(window_s * 1e9 / kBuckets) ns, aligned on multiples of
// bucket_ns().  Activity recorded at time t counts in Window(now) iff
// floor(now / bucket_ns()) - floor(t / bucket_ns()) <= kBuckets, i.e. for at
// least window_ns() and less than window_ns() + bucket_ns() after t (never
// less than the window: a steady rate is never under-reported).  With the
// default 60 s window a bucket is 1 s.
//
// Time: every `now_ns` is a monotonic clock value.  Time never goes back: a
// value smaller than the largest one passed to Record() so far is taken as
// that largest value.
//
// Invariants, for every entry (segment, VM):
//   - Total() is the sum of every delta ever recorded for it;
//   - Window(now) <= Total() field by field;
//   - an entry exists from its first Record() or SetAttached() until Prune()
//     removes it (only when it is detached and its window is empty).
class Monitor {
  public:
    static constexpr uint32_t kBuckets = 60;       // buckets per window
    static constexpr uint32_t kMaxWindowS = 3600;  // 1 h window: 60 s buckets

    // REQUIRES: 1 <= window_s <= kMaxWindowS.
    explicit Monitor(uint32_t window_s = 60);

    uint32_t window_s() const { return window_s_; }
    uint64_t window_ns() const { return bucket_ns_ * kBuckets; }
    uint64_t bucket_ns() const { return bucket_ns_; }

    // Adds `delta` to the window and the total of (segment, vm), creating
    // the entry (detached) if needed.  When the entry exists, vm.name
    // replaces the stored name (a VM keyed by UUID may have been renamed).
    // Does not change the attached flag.
    void Record(const std::string &segment, const VmId &vm, const Activity &delta, uint64_t now_ns);

    // Marks whether `vm` is attached to `segment` on this host, creating the
    // entry if needed.  The caller passes the truth for the VM as a whole:
    // true when at least one of its clients is attached, false when its last
    // one detached.
    void SetAttached(const std::string &segment, const VmId &vm, bool attached);

    // Whether (segment, vm) is marked attached (false when unknown).
    bool Attached(const std::string &segment, const VmId &vm) const;

    // The activity of (segment, vm) in the window ending at now_ns, or an
    // empty Activity when the entry does not exist.
    Activity Window(const std::string &segment, const VmId &vm, uint64_t now_ns) const;

    // The activity of (segment, vm) since the entry was created, or an empty
    // Activity when it does not exist.
    Activity Total(const std::string &segment, const VmId &vm) const;

    // Every VM of `segment` (empty if unknown), in increasing Key() order.
    std::vector<VmActivity> Snapshot(const std::string &segment, uint64_t now_ns) const;

    // The segments that have at least one entry, in increasing order.
    std::vector<std::string> Segments() const;

    // Removes every entry that is detached and whose window at now_ns is
    // empty (its totals are forgotten with it), and segments left without
    // entries.  Returns the number of entries removed.  dshmd calls it from
    // its periodic timer; nothing else removes entries.
    size_t Prune(uint64_t now_ns);

  private:
    struct Entry {
        VmId vm;
        bool attached = false;
        Activity total;
        // Ring of kBuckets + 1 buckets; stamp = the absolute bucket number
        // (now / bucket_ns) the slot holds, kNoBucket when never used.
        std::array<Activity, kBuckets + 1> ring;
        std::array<uint64_t, kBuckets + 1> stamp;
        std::optional<uint64_t> last_active;  // latest bucket with non-empty activity

        Entry();
    };

    uint64_t BucketAt(uint64_t now_ns) const;
    const Entry *Find(const std::string &segment, const VmId &vm) const;
    Entry &Get(const std::string &segment, const VmId &vm);
    Activity WindowOf(const Entry &e, uint64_t bucket) const;

    uint32_t window_s_;
    uint64_t bucket_ns_;
    uint64_t latest_ns_ = 0;  // the largest now_ns given to Record()
    // segment -> VM key -> entry
    std::map<std::string, std::map<std::string, Entry>> segments_;
};

// One VM in one host's report to the owner of a segment.
struct VmReport {
    VmId vm;
    bool attached = false;  // attached to the segment on the reporting host
    Activity window;        // the reporting host's window figures
};

// A host's report for one segment, from its Monitor: window and attached
// flag of every VM of the snapshot (totals are not reported).
std::vector<VmReport> MakeReport(const std::vector<VmActivity> &snapshot);

// One host's part of a merged VM.
struct HostActivity {
    uint32_t host = 0;
    bool attached = false;
    Activity window;
};

// One VM of a segment, merged across the hosts' latest reports.
struct MergedVm {
    VmId vm;                          // the name from a host where it is attached, if any
    Activity window;                  // sum of the hosts' windows: the VM's activity
    std::vector<HostActivity> hosts;  // every host that reported it, increasing host id

    // The hosts where the VM is attached, increasing.  More than one while a
    // live migration runs (source and destination QEMU both attached).
    std::vector<uint32_t> AttachedAt() const;

    // Where the VM "is": the host where it is attached, when there is exactly
    // one; nullopt when attached nowhere (gone, or only its old window
    // remains) or on several hosts (migrating).
    std::optional<uint32_t> At() const;
};

// What the owner of a segment knows about every host's use of it: the
// latest report of each host, per segment.  A new report of a host replaces
// its previous one for that segment (reports carry windows, not deltas).
//
// Invariants: at most one report per (segment, host); Merged() never counts a
// host's figures twice; a segment with no report left is not listed.
class ClusterView {
  public:
    // Replaces the report of `host` for `segment` (an empty `vms` is a valid
    // report: the host has nothing for the segment any more).  Reports of
    // the same VM key inside `vms` are summed.  now_ns is the owner's
    // monotonic clock, used by Expire().
    void Report(const std::string &segment, uint32_t host, std::vector<VmReport> vms,
                uint64_t now_ns);

    // Forgets every report of `host` (its connection closed or it restarted).
    void ForgetHost(uint32_t host);

    // Forgets every report for `segment` (this host is not its owner any
    // more: the new owner aggregates).
    void ForgetSegment(const std::string &segment);

    // Forgets the reports received before now_ns - max_age_ns (a host that
    // stopped reporting).  Returns how many were forgotten.
    size_t Expire(uint64_t now_ns, uint64_t max_age_ns);

    // The VMs of `segment` merged per Key() across hosts, in increasing Key()
    // order (empty if no report).
    std::vector<MergedVm> Merged(const std::string &segment) const;

    // The segments with at least one report, in increasing order.
    std::vector<std::string> Segments() const;

  private:
    struct HostReport {
        uint64_t received_ns = 0;
        std::vector<VmReport> vms;
    };
    // segment -> host -> latest report
    std::map<std::string, std::map<uint32_t, HostReport>> reports_;
};

// The [policy] group of dshmd.conf (config.h parses it; docs/policy.md
// explains the defaults).  Classify/DecideOnMigration/Advise use window_s,
// strong_min_events, strong_min_share and move_ownership; report_ms and
// log_s are the daemon's timers.
struct PolicyConfig {
    uint32_t window_s = 60;            // Monitor window, 1..3600 s
    uint32_t report_ms = 1000;         // non-owner -> owner report period, 100..60000 ms
    uint32_t log_s = 60;               // period of the monitor's log, 0 = off
    uint64_t strong_min_events = 100;  // events per window to be strongly linked
    double strong_min_share = 0.25;    // and share of the segment's events, 0..1
    bool move_ownership = true;        // ownership may follow a migrating VM
};

// The classification of one VM of a segment.
struct Classification {
    VmId vm;
    uint64_t events = 0;  // window events (Activity::events)
    double share = 0;     // events / the segment's events, 0..1 (0 if the segment has none)
    bool strong = false;  // strongly linked; otherwise weakly linked
    bool most_active = false;
    bool gone = false;  // attached nowhere: only its old window remains
    std::string reason;  // one line, e.g. "strongly linked: 1234 events in 60 s (85% of the
                         // segment's), the most active VM"
};

// Classifies the VMs of one segment from their merged window activity:
//   - strong iff events >= strong_min_events AND share >= strong_min_share
//     AND events > 0 (a VM without events is never strongly linked, whatever
//     the thresholds);
//   - most_active: the VM with the most events; on a tie, the smallest Key()
//     (deterministic, the same on every host); none when every VM has 0;
//   - gone: a VM attached nowhere (destroyed, or its QEMU exited) is listed
//     with its figures but is neither strong nor most active, and its events
//     are not in the segment's sum: the policy weighs the VMs that use the
//     segment now.  (A migrating VM stays attached at its source until the
//     destination has adopted it; the caller marks an arriving VM attached,
//     MarkAttached.)
// `vms` is the whole segment (the shares are relative to its sum); its VMs
// have distinct keys.  The result has one entry per VM, ordered by events
// decreasing, then Key() increasing (the most active VM first).
std::vector<Classification> Classify(const std::vector<MergedVm> &vms, const PolicyConfig &p);

// Marks `vm` attached at `host` in `vms` (a VM that just arrived there,
// before the host's next report says so).  No-op when `vm` is not listed.
void MarkAttached(std::vector<MergedVm> *vms, const VmId &vm, uint32_t host);

// The classification of `vm` in `cls`, or nullptr.
const Classification *FindVm(const std::vector<Classification> &cls, const VmId &vm);

struct Decision {
    bool move = false;   // ownership moves to to_host
    std::string reason;  // one line, for the log and dshmctl
};

// Does the ownership of `segment` follow `vm`, which migrated from
// `from_host` (nullopt when unknown) to `to_host`?  `cls` is the segment's
// classification (Classify) at the time of the migration; current_owner is
// the segment's owner host.  The table:
//   vm unknown to cls, or weakly linked             -> stays
//   strongly linked, not the most active            -> stays (the more active
//                                                      VM keeps its locality)
//   strongly linked, most active, to_host == owner  -> stays (already there)
//   strongly linked, most active, !move_ownership   -> stays (configuration)
//   strongly linked, most active, to_host != owner  -> moves to to_host
// The reason names the VM, the segment, the figures and the outcome.
Decision DecideOnMigration(const std::string &segment, const VmId &vm,
                           std::optional<uint32_t> from_host, uint32_t to_host,
                           uint32_t current_owner, const std::vector<Classification> &cls,
                           const PolicyConfig &p);

// One suggestion of `dshmctl advise`.
struct Advice {
    enum class Kind {
        kMoveVm,         // migrate the VM from from_host to to_host (the owner)
        kMoveOwnership,  // the VM stays; ownership should follow it to to_host (== from_host)
    };
    Kind kind = Kind::kMoveVm;
    VmId vm;
    uint32_t from_host = 0;  // where the VM is attached now
    uint32_t to_host = 0;    // see Kind
    uint64_t score = 0;      // window events that would become local (net gain)
    std::string reason;      // one line
};

// The openMosix question for one segment: which VM would gain from moving to
// which host.  Reasoning: a VM's events (Activity::events) are local when it
// runs on the owner host and remote otherwise, so the gain of a move is the
// number of window events it turns from remote into local.  Let local(h) be
// the events of the VMs at host h (MergedVm::At() == h) and O the owner:
//   - weakly linked VMs get no advice (by definition too few interactions to
//     matter), nor VMs already at O, nor VMs attached nowhere or on several
//     hosts (migrating);
//   - a strongly linked VM v at host A != O:
//       moving v to O gains events(v);
//       if v is the most active VM and move_ownership is on, ownership
//       following v to A gains local(A) - local(O) (A's VMs become local,
//       O's become remote).
//     The larger gain is advised (ownership on a tie: no VM has to move);
//     the reason says why (for the most active VM that is normally "ownership
//     should follow it", which is what DecideOnMigration does if it migrates).
// Each suggestion is computed as if it were the only one followed.  Ranked by
// score decreasing, then Key() increasing.  Per segment: a VM linked to
// several segments gets one suggestion per segment.
std::vector<Advice> Advise(const std::string &segment, const std::vector<MergedVm> &vms,
                           uint32_t current_owner, const PolicyConfig &p);

}  // namespace dshm

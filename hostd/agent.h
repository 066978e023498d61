// Agent: the access monitor of this host (protocol.md section 12,
// docs/policy.md).
//
// Every local fault, write-back, grant and release is recorded per VM and
// segment in the Monitor (sliding window).  Every report-ms a host sends
// its window figures for each segment it does not own to the owner
// (P_STATS); the owner keeps every host's last report (ClusterView) and
// answers with the merged view, so every host can show the classification.
// At a VM's arrival on another host (an ADOPT) the owner classifies the
// VMs and the policy decides whether ownership moves with it (Mover).
//
// Thread safety: every method REQUIRES the loop mutex.
#pragma once

#include <glib.h>

#include <map>
#include <string>
#include <vector>

#include "monitor.h"
#include "segment.h"
#include "thread_annotations.h"
#include "watch.h"

namespace dshm {

class Daemon;
struct Peer;

class Agent {
  public:
    explicit Agent(Daemon &d);
    ~Agent();
    Agent(const Agent &) = delete;
    Agent &operator=(const Agent &) = delete;

    // The report and log timers.
    void StartTimers() REQUIRES(loop_mutex);

    void Record(LocalClient *c, const Activity &delta) REQUIRES(loop_mutex);
    void RecordGrant(LocalClient *c, uint32_t lock) REQUIRES(loop_mutex);
    void RecordRelease(LocalClient *c, uint32_t lock) REQUIRES(loop_mutex);
    // c is READY: its VM is attached.
    void SetAttached(LocalClient *c) REQUIRES(loop_mutex);
    // Whether any READY local client of s is VM `vm`.
    void UpdateAttached(Segment *s, const VmId &vm) REQUIRES(loop_mutex);

    void OnPStats(Peer *peer, const Frame &f) REQUIRES(loop_mutex);
    // Owner: the policy's verdict on a VM of s that arrived at `host`.
    void OnVmArrived(Segment *s, const VmId &vm, uint32_t from, uint32_t host) REQUIRES(loop_mutex);
    // This host handed s's ownership over: the new owner aggregates.
    void ForgetSegment(const std::string &segment) REQUIRES(loop_mutex);

    // --- read-only (dshmctl) ---
    const Monitor &monitor() const REQUIRES(loop_mutex) { return monitor_; }
    // The merged view of s: on the owner every host's last report with this
    // host's current figures; elsewhere the owner's last answer.
    std::vector<MergedVm> MergedView(const Segment *s) const REQUIRES(loop_mutex);
    // Report rounds so far (tests wait for them).
    uint64_t report_rounds() const REQUIRES(loop_mutex) { return report_rounds_; }

  private:
    static gboolean OnReportTimer(gpointer self);
    static gboolean OnLogTimer(gpointer self);
    // Owner: refreshes this host's report in cluster_, then the merged view.
    std::vector<MergedVm> RefreshMergedView(const Segment *s) REQUIRES(loop_mutex);

    Daemon &d_;
    Monitor monitor_ GUARDED_BY(loop_mutex);
    ClusterView cluster_;  // segments this host owns: every host's reports
    // Segments this host does not own: the owner's merged view of every
    // host's VMs (its last answer to our P_STATS).
    std::map<std::string, std::vector<MergedVm>> merged_ GUARDED_BY(loop_mutex);
    guint report_timer_ GUARDED_BY(loop_mutex) = 0, log_timer_ = 0;
    uint64_t report_rounds_ GUARDED_BY(loop_mutex) = 0;
};

}  // namespace dshm

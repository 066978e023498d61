// Latency statistics shared by the benchmark programs: one percentile rule
// (nearest rank) for the floors and for dshm, so their numbers compare.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dshm::bench {

struct Stats {
    size_t n = 0;
    double p50 = 0, p90 = 0, p99 = 0, mean = 0, max = 0, sum = 0;  // µs
};

// Summarizes samples given in nanoseconds.
inline Stats Summarize(std::vector<uint64_t> ns) {
    Stats s;
    s.n = ns.size();
    if (ns.empty()) return s;
    std::sort(ns.begin(), ns.end());
    auto pct = [&](double p) {
        size_t i = static_cast<size_t>(p * static_cast<double>(ns.size() - 1) + 0.5);
        return static_cast<double>(ns[i]) / 1000.0;
    };
    s.p50 = pct(0.50);
    s.p90 = pct(0.90);
    s.p99 = pct(0.99);
    s.max = static_cast<double>(ns.back()) / 1000.0;
    double sum = 0;
    for (uint64_t v : ns) sum += static_cast<double>(v);
    s.sum = sum / 1000.0;
    s.mean = s.sum / static_cast<double>(ns.size());
    return s;
}

}  // namespace dshm::bench

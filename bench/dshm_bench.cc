// dshm_bench: end-to-end costs of dshm as a libdshm-client user sees them
// (docs/protocol.md): remote read faults, lock round trips, write-back
// throughput.  Run it on a host that does NOT own the segment, so that every
// page starts invalid there and every fault, lock and release crosses the
// peer channel to the owner.  bench/run-dshmd.sh runs it next to the floors
// (uffd_floor, tcp_floor); see bench/README.md.
//
//   dshm_bench faults    --socket S --segment SEG --pages N [--first F] [--passes R]
//                        [--random 1]
//       Attaches and reads one byte of each of N pages (from page F on), each
//       access timed with CLOCK_MONOTONIC: each is one remote read fault
//       (missing fault -> dshmd -> FETCH -> owner -> PAGE -> UFFDIO_COPY).
//       --passes R repeats this on R consecutive, still untouched ranges of
//       N pages (one line per pass, then one line over all samples).
//       --random 1 touches each range's pages in a shuffled order (fixed
//       seed): single-page faults that read-ahead must leave alone.
//   dshm_bench fill      --socket S --segment SEG --pages N
//       (On the owner.)  Under lock 0 writes page index + 1 into the first
//       u64 of each of pages 0..N-1, and a pattern into the rest, then
//       releases: the content seqread checks.
//   dshm_bench seqread   --socket S --segment SEG --pages N
//       Reads every byte of pages 0..N-1 in order (8 bytes at a time), timed
//       as a whole: a cold sequential read (each first touch of a page is a
//       remote fault, or read-ahead took it).  Checks the first u64 of each
//       page (page index + 1, as fill wrote it).
//   dshm_bench lock      --socket S --segment SEG --dirty K --iterations N [--lock L]
//       Per iteration: Acquire(L); write one u64 in each of K distinct pages;
//       Release(L).  Times acquire, release and the whole iteration.  The K
//       pages are fetched (and one warm-up round done) before timing, so the
//       timed writes cost write-protect faults only, never remote fetches.
//   dshm_bench writeback --socket S --segment SEG --pages P --rounds R
//       Per round: Acquire; overwrite P whole pages so that every byte
//       changes (each diff is a FULL page); Release.  One untimed warm-up
//       round first.  Throughput = P*4096*R / sum of the release times.
//   Every mode: --idle K also attaches K more clients to the segment that
//       never touch it (as idle VMs on the host would: each is one more
//       socket and userfaultfd for dshmd to watch).
//
// Output (one line per measurement, stable and grep-able; MB = 10^6 bytes):
//   remote_fault pass=I n=.. p50_us=.. p90_us=.. p99_us=.. mean_us=..    (with --passes > 1)
//   remote_fault n=.. p50_us=.. p90_us=.. p99_us=.. mean_us=.. max_us=..
//   seqread pages=N bytes=.. ms=.. mb_per_s=.. bad_pages=..
//   fill pages=N pages_written=..
//   lock_rtt dirty=K n=.. acquire_p50_us=.. acquire_p99_us=.. release_p50_us=..
//            release_p99_us=.. total_p50_us=.. total_p99_us=.. total_mean_us=..
//   writeback pages=P rounds=R mb_per_s=.. release_p50_ms=.. release_p99_ms=..
//             pages_written=.. bytes_written=..
//
// Exit status: 0 ok, 2 usage, 3 dshmd/system error, 1 a check failed (a
// release that did not write back what the benchmark wrote).
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stats.h"
#include "dshm_client.h"

using dshm::Client;
using dshm::Status;

namespace {

constexpr uint64_t kPage = 4096;

uint64_t NowNs() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

using dshm::bench::Stats;
using dshm::bench::Summarize;

[[noreturn]] void Usage(const std::string &m) {
    fprintf(stderr,
            "dshm_bench: %s\n"
            "usage: dshm_bench faults    --socket S --segment SEG --pages N [--first F] [--passes R] [--random 1]\n"
            "       dshm_bench fill      --socket S --segment SEG --pages N\n"
            "       dshm_bench seqread   --socket S --segment SEG --pages N\n"
            "       dshm_bench lock      --socket S --segment SEG --dirty K --iterations N [--lock L]\n"
            "       dshm_bench writeback --socket S --segment SEG --pages P --rounds R\n",
            m.c_str());
    exit(2);
}

[[noreturn]] void Fail(const char *what, const Status &st) {
    fprintf(stderr, "dshm_bench: %s: %s\n", what, st.ToString().c_str());
    exit(3);
}

struct Opts {
    std::map<std::string, std::string> kv;
    uint64_t Num(const std::string &k, std::optional<uint64_t> dflt = std::nullopt) const {
        auto it = kv.find(k);
        if (it == kv.end()) {
            if (dflt) return *dflt;
            Usage("--" + k + " is required");
        }
        char *end = nullptr;
        errno = 0;
        unsigned long long v = strtoull(it->second.c_str(), &end, 0);
        if (errno || end == it->second.c_str() || *end || it->second[0] == '-') {
            Usage("bad number for --" + k + ": '" + it->second + "'");
        }
        return v;
    }
    std::string Str(const std::string &k) const {
        auto it = kv.find(k);
        if (it == kv.end()) Usage("--" + k + " is required");
        return it->second;
    }
};

uint8_t *Bytes(Client &c) { return const_cast<uint8_t *>(c.data()); }

int Faults(Client &c, const Opts &o) {
    const uint64_t n = o.Num("pages"), first = o.Num("first", 0), passes = o.Num("passes", 1);
    if (n == 0 || passes == 0 || (first + n * passes) * kPage > c.size()) {
        Usage("faults: --first + --pages * --passes exceeds the segment (" + std::to_string(c.size() / kPage) +
              " pages)");
    }
    volatile uint8_t *d = c.data();
    std::vector<uint64_t> all;
    all.reserve(n * passes);
    uint64_t sink = 0;
    for (uint64_t pass = 0; pass < passes; pass++) {
        std::vector<uint64_t> ns;
        ns.reserve(n);
        const uint64_t base = first + pass * n;
        std::vector<uint64_t> order(n);
        for (uint64_t i = 0; i < n; i++) order[i] = base + i;
        if (o.Num("random", 0)) {
            uint64_t x = 0x9e3779b97f4a7c15ull + pass;  // xorshift64, fixed seed: the same order every run
            for (uint64_t i = n - 1; i > 0; i--) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                std::swap(order[i], order[x % (i + 1)]);
            }
        }
        for (uint64_t p : order) {
            uint64_t t0 = NowNs();
            sink += d[p * kPage];
            uint64_t t1 = NowNs();
            ns.push_back(t1 - t0);
        }
        all.insert(all.end(), ns.begin(), ns.end());
        if (passes > 1) {
            Stats s = Summarize(std::move(ns));
            printf("remote_fault pass=%llu n=%zu p50_us=%.2f p90_us=%.2f p99_us=%.2f mean_us=%.2f\n",
                   (unsigned long long)pass, s.n, s.p50, s.p90, s.p99, s.mean);
            fflush(stdout);
        }
    }
    Stats s = Summarize(std::move(all));
    printf("remote_fault n=%zu p50_us=%.2f p90_us=%.2f p99_us=%.2f mean_us=%.2f max_us=%.2f\n", s.n, s.p50,
           s.p90, s.p99, s.mean, s.max);
    if (sink == 0xdeadbeef) printf("#\n");  // keep the reads
    return 0;
}

int Fill(Client &c, const Opts &o) {
    const uint64_t n = o.Num("pages");
    if (n * kPage > c.size()) Usage("fill: --pages exceeds the segment");
    if (Status st = c.Acquire(0); !st.ok()) Fail("acquire", st);
    uint8_t *d = Bytes(c);
    for (uint64_t p = 0; p < n; p++) {
        uint64_t v = p + 1;
        memset(d + p * kPage + 8, static_cast<int>(p & 0xff) | 1, kPage - 8);
        memcpy(d + p * kPage, &v, 8);
    }
    dshm::ReleaseInfo info;
    if (Status st = c.Release(0, &info); !st.ok()) Fail("release", st);
    printf("fill pages=%llu pages_written=%u\n", (unsigned long long)n, info.pages_written);
    return 0;
}

int SeqRead(Client &c, const Opts &o) {
    const uint64_t n = o.Num("pages");
    if (n == 0 || n * kPage > c.size()) Usage("seqread: --pages exceeds the segment");
    const volatile uint64_t *d = reinterpret_cast<const volatile uint64_t *>(c.data());
    uint64_t sum = 0, bad = 0;
    const uint64_t t0 = NowNs();
    for (uint64_t p = 0; p < n; p++) {
        const volatile uint64_t *pg = d + p * (kPage / 8);
        if (pg[0] != p + 1) bad++;
        for (uint64_t i = 1; i < kPage / 8; i++) sum += pg[i];
    }
    const uint64_t t1 = NowNs();
    const double ms = (t1 - t0) / 1e6;
    printf("seqread pages=%llu bytes=%llu ms=%.3f mb_per_s=%.1f bad_pages=%llu\n", (unsigned long long)n,
           (unsigned long long)(n * kPage), ms, n * kPage / 1e3 / ms, (unsigned long long)bad);
    if (sum == 0xdeadbeef) printf("#\n");  // keep the reads
    return bad ? 1 : 0;
}

int Lock(Client &c, const Opts &o) {
    const uint64_t k = o.Num("dirty"), iters = o.Num("iterations"), lock = o.Num("lock", 0);
    if (iters == 0) Usage("lock: --iterations must be > 0");
    if (k * kPage > c.size()) Usage("lock: --dirty exceeds the segment's pages");
    volatile uint8_t *d = c.data();
    auto word = [&](uint64_t p) { return reinterpret_cast<volatile uint64_t *>(d + p * kPage + 8); };
    // Warm-up: fetch the pages (remote read faults) and do one untimed
    // iteration, so the timed ones see valid pages.
    Status st;
    uint64_t sink = 0;
    for (uint64_t p = 0; p < k; p++) sink += *word(p);
    std::vector<uint64_t> acq, rel, tot;
    acq.reserve(iters);
    rel.reserve(iters);
    tot.reserve(iters);
    uint64_t bad = 0;
    for (uint64_t i = 0; i < iters + 1; i++) {
        uint64_t t0 = NowNs();
        if (!(st = c.Acquire(lock)).ok()) Fail("acquire", st);
        uint64_t t1 = NowNs();
        for (uint64_t p = 0; p < k; p++) *word(p) = i + 1;
        std::atomic_signal_fence(std::memory_order_seq_cst);
        uint64_t t2 = NowNs();
        dshm::ReleaseInfo info;
        if (!(st = c.Release(lock, &info)).ok()) Fail("release", st);
        uint64_t t3 = NowNs();
        if (info.pages_written != k) bad++;
        if (i == 0) continue;
        acq.push_back(t1 - t0);
        rel.push_back(t3 - t2);
        tot.push_back(t3 - t0);
    }
    Stats a = Summarize(std::move(acq)), r = Summarize(std::move(rel)), t = Summarize(std::move(tot));
    printf("lock_rtt dirty=%llu n=%zu acquire_p50_us=%.2f acquire_p99_us=%.2f release_p50_us=%.2f "
           "release_p99_us=%.2f total_p50_us=%.2f total_p99_us=%.2f total_mean_us=%.2f\n",
           (unsigned long long)k, t.n, a.p50, a.p99, r.p50, r.p99, t.p50, t.p99, t.mean);
    if (sink == 0xdeadbeef) printf("#\n");
    if (bad) {
        fprintf(stderr, "dshm_bench: %llu release(s) did not write back %llu pages\n", (unsigned long long)bad,
                (unsigned long long)k);
        return 1;
    }
    return 0;
}

int Writeback(Client &c, const Opts &o) {
    const uint64_t np = o.Num("pages"), rounds = o.Num("rounds"), lock = o.Num("lock", 0);
    if (np == 0 || rounds == 0) Usage("writeback: --pages and --rounds must be > 0");
    if (np * kPage > c.size()) Usage("writeback: --pages exceeds the segment's pages");
    // Round r writes byte i of the area as (i * 7 + r + 1) & 0xff: every
    // byte differs from round r - 1 (and from the zero pages before round 0),
    // so every diff is a full page.
    std::vector<uint8_t> pat(np * kPage + 256);
    for (size_t i = 0; i < pat.size(); i++) pat[i] = static_cast<uint8_t>(i * 7);
    uint8_t *d = Bytes(c);
    Status st;
    std::vector<uint64_t> rel;
    uint64_t pages = 0, bytes = 0, bad = 0;
    for (uint64_t r = 0; r < rounds + 1; r++) {
        if (!(st = c.Acquire(lock)).ok()) Fail("acquire", st);
        // pat[i + s] = (i + s) * 7 with s*7 == r+1 (mod 256): 7 * 183 == 1 (mod 256).
        const size_t shift = static_cast<size_t>(((r + 1) * 183) & 0xff);
        memcpy(d, pat.data() + shift, np * kPage);
        std::atomic_signal_fence(std::memory_order_seq_cst);
        dshm::ReleaseInfo info;
        uint64_t t0 = NowNs();
        if (!(st = c.Release(lock, &info)).ok()) Fail("release", st);
        uint64_t t1 = NowNs();
        if (r == 0) continue;  // round 0 also fetched the pages; some bytes matched the zeros
        if (info.pages_written != np || info.bytes_written < np * kPage) bad++;
        rel.push_back(t1 - t0);
        pages += info.pages_written;
        bytes += info.bytes_written;
    }
    Stats s = Summarize(std::move(rel));
    double mbps = static_cast<double>(np * kPage * rounds) / (s.sum / 1e6) / 1e6;
    printf("writeback pages=%llu rounds=%llu mb_per_s=%.1f release_p50_ms=%.3f release_p99_ms=%.3f "
           "pages_written=%llu bytes_written=%llu\n",
           (unsigned long long)np, (unsigned long long)rounds, mbps, s.p50 / 1000, s.p99 / 1000,
           (unsigned long long)pages, (unsigned long long)bytes);
    if (bad) {
        fprintf(stderr, "dshm_bench: %llu release(s) did not write back %llu full pages\n",
                (unsigned long long)bad, (unsigned long long)np);
        return 1;
    }
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) Usage("need a mode");
    std::string mode = argv[1];
    Opts o;
    for (int i = 2; i < argc; i++) {
        std::string a = argv[i];
        if (a.rfind("--", 0) != 0 || i + 1 >= argc) Usage("bad argument '" + a + "'");
        o.kv[a.substr(2)] = argv[++i];
    }
    if (mode != "faults" && mode != "lock" && mode != "writeback" && mode != "fill" && mode != "seqread")
        Usage("unknown mode '" + mode + "'");
    std::vector<std::unique_ptr<Client>> idle(o.Num("idle", 0));
    for (auto &i : idle) {
        i = std::make_unique<Client>();
        if (Status st = i->Attach(o.Str("socket"), o.Str("segment"), "dshm_bench-idle"); !st.ok())
            Fail("attach an idle client", st);
    }
    Client c;
    Status st = c.Attach(o.Str("socket"), o.Str("segment"), "dshm_bench");
    if (!st.ok()) Fail("attach", st);
    setvbuf(stdout, nullptr, _IOLBF, 0);
    if (mode == "faults") return Faults(c, o);
    if (mode == "lock") return Lock(c, o);
    if (mode == "fill") return Fill(c, o);
    if (mode == "seqread") return SeqRead(c, o);
    return Writeback(c, o);
}

// compare_floor: what a release's diffing costs on this machine's memory,
// apart from dshmd.
//
//   compare_floor [--pages P] [--reps R]
//
// A release compares every page it rewrote with its twin (diff.h,
// AllBytesChanged; a page rewritten as a whole is read to its end, a sparse
// one stops at its first unchanged block and the diff scan reads it).  That
// is 8 KiB read per 4 KiB page released, on the thread that also sends the
// pages, so it bounds how close write-back can come to raw TCP on a machine
// whose memory is slow next to its network (bench/README.md).
//
// P pages (default 1024, a 4 MiB release as run-dshmd.sh's write-back) live
// in a memfd mapping, as a segment does; their twins are separate 4 KiB
// allocations, as dshmd's (pages.cc).  Every page differs from its twin in
// every byte.  Each repetition (default 15) measures, with the data first
// evicted from the caches (a 64 MiB write in between: "cold") and again
// right after being written ("warm"):
//   copy     each page copied into a 256 KiB buffer used round robin (the
//            copy a send makes into socket buffers; what raw TCP pays too)
//   compare  AllBytesChanged(page, twin) for each page (dshmd's release)
//   twin     copying each page to its twin (dshmd's first write to a page)
//
// Output, one line per state (medians over the repetitions):
//   compare_floor state=cold pages=P copy_us=.. compare_us=.. twin_us=.. compare_gb_s=..
// compare_gb_s counts the bytes the compare reads (page and twin).
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "diff.h"
#include "stats.h"

namespace {

constexpr size_t kPage = 4096;
volatile uint64_t g_sink;

uint64_t NowNs() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

[[noreturn]] void Usage() {
    fprintf(stderr, "usage: compare_floor [--pages P] [--reps R]\n");
    exit(2);
}

size_t ParseNum(const char *s, size_t max) {
    char *end = nullptr;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || v == 0 || v > max) Usage();
    return static_cast<size_t>(v);
}

}  // namespace

int main(int argc, char **argv) {
    size_t pages = 1024, reps = 15;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) Usage();
        if (a == "--pages")
            pages = ParseNum(argv[++i], 1u << 20);
        else if (a == "--reps")
            reps = ParseNum(argv[++i], 10000);
        else
            Usage();
    }
    int fd = memfd_create("compare_floor", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, static_cast<off_t>(pages * kPage)) != 0) {
        perror("compare_floor: memfd");
        return 1;
    }
    auto *seg = static_cast<uint8_t *>(
        mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (seg == MAP_FAILED) {
        perror("compare_floor: mmap");
        return 1;
    }
    std::vector<std::unique_ptr<uint8_t[]>> twins;
    for (size_t i = 0; i < pages; i++) twins.emplace_back(new uint8_t[kPage]);
    std::vector<uint8_t> evict(64u << 20);
    constexpr size_t kChunkPages = 64;  // 256 KiB, as dshmd's send chunks
    std::vector<uint8_t> chunk(kChunkPages * kPage);

    for (const bool cold : {true, false}) {
        std::vector<uint64_t> copy_ns, cmp_ns, twin_ns;
        for (size_t r = 0; r < reps; r++) {
            auto fill = [&] {
                for (size_t i = 0; i < pages; i++) {
                    memset(twins[i].get(), static_cast<int>(2 * r), kPage);
                    memset(seg + i * kPage, static_cast<int>(2 * r + 1), kPage);
                }
                if (cold) memset(evict.data(), static_cast<int>(r), evict.size());
            };
            fill();
            uint64_t t0 = NowNs();
            for (size_t i = 0; i < pages; i++)
                memcpy(chunk.data() + (i % kChunkPages) * kPage, seg + i * kPage, kPage);
            uint64_t t1 = NowNs();
            g_sink = chunk[r % chunk.size()];  // keeps the copies
            copy_ns.push_back(t1 - t0);

            fill();
            t0 = NowNs();
            size_t all = 0;
            for (size_t i = 0; i < pages; i++)
                all += dshm::AllBytesChanged(seg + i * kPage, twins[i].get());
            t1 = NowNs();
            cmp_ns.push_back(t1 - t0);
            if (all != pages) {
                fprintf(stderr, "compare_floor: %zu of %zu pages compared as rewritten\n", all,
                        pages);
                return 1;
            }

            fill();
            t0 = NowNs();
            for (size_t i = 0; i < pages; i++) memcpy(twins[i].get(), seg + i * kPage, kPage);
            t1 = NowNs();
            twin_ns.push_back(t1 - t0);
        }
        const double rd = dshm::bench::Summarize(copy_ns).p50;
        const double cmp = dshm::bench::Summarize(cmp_ns).p50;
        const double tw = dshm::bench::Summarize(twin_ns).p50;
        printf("compare_floor state=%s pages=%zu copy_us=%.1f compare_us=%.1f twin_us=%.1f "
               "compare_gb_s=%.2f\n",
               cold ? "cold" : "warm", pages, rd, cmp, tw,
               static_cast<double>(2 * pages * kPage) / (cmp * 1e3));
    }
    return 0;
}

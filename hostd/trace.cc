#include "trace.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <utility>

namespace dshm {
namespace {

FILE *g_trace = nullptr;   // DSHMD_TRACE
FILE *g_phases = nullptr;  // DSHMD_PHASES

}  // namespace

uint64_t NowNs() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

void OpenTraces() {
    for (auto [env, file] : {std::pair{"DSHMD_TRACE", &g_trace}, {"DSHMD_PHASES", &g_phases}}) {
        if (*file)
            continue;
        const char *t = getenv(env);
        *file = t && *t ? fopen(t, "w") : nullptr;
        if (*file)
            setvbuf(*file, nullptr, _IOFBF, 1 << 20);
    }
}

void CloseTraces() {
    for (FILE **file : {&g_trace, &g_phases}) {
        if (*file)
            fclose(*file);
        *file = nullptr;
    }
}

void Trace(const char *what, uint32_t a, uint32_t b, uint32_t c, const uint8_t *page,
           const uint8_t *twin) {
    if (!g_trace)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    fprintf(g_trace, "%ld.%09ld %s %u %u %u", ts.tv_sec, ts.tv_nsec, what, a, b, c);
    for (const uint8_t *q : {page, twin}) {
        if (!q)
            continue;
        fprintf(g_trace, " |");
        for (int i = 0; i < 8; i++) {
            uint64_t v;
            memcpy(&v, q + 8 * i, 8);
            fprintf(g_trace, " %llu", (unsigned long long)v);
        }
    }
    fputc('\n', g_trace);
}

void Phase(const char *what, uint32_t a, uint64_t b) {
    if (!g_phases)
        return;
    struct timespec cpu;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
    fprintf(g_phases, "%llu %s %u %llu %llu %d\n", static_cast<unsigned long long>(NowNs()), what,
            a, static_cast<unsigned long long>(b),
            static_cast<unsigned long long>(cpu.tv_sec * 1000000000ull + cpu.tv_nsec),
            static_cast<int>(gettid()));
}

}  // namespace dshm

// Clang's thread-safety annotations (-Wthread-safety), as leveldb's
// port/thread_annotations.h has them: under clang each macro is the
// attribute of the same name (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html);
// under any other compiler it is empty.  meson.build turns the analysis on
// for every clang build, and `make check` builds hostd with clang and
// -Werror (build/meson-clang), so a violation fails the check.
//
// In dshmd there is one capability, the loop mutex (dshm::loop_mutex,
// watch.h): state is GUARDED_BY(loop_mutex), functions that touch it are
// REQUIRES(loop_mutex).  The analysis cannot see into GLib: a callback
// that GLib (or the I/O thread) calls is a plain function to it, so every
// such entry point begins with loop_mutex.AssertHeld().
//
// Thread safety: macros only.
#pragma once

#if defined(__clang__)
#define DSHM_THREAD_ANNOTATION_(x) __attribute__((x))
#else
#define DSHM_THREAD_ANNOTATION_(x)
#endif

// A class whose objects are capabilities (a mutex): CAPABILITY("mutex").
#define CAPABILITY(x) DSHM_THREAD_ANNOTATION_(capability(x))
// An RAII class that holds a capability for its lifetime.
#define SCOPED_CAPABILITY DSHM_THREAD_ANNOTATION_(scoped_lockable)

// A data member (or global) read and written only with the capability held.
#define GUARDED_BY(x) DSHM_THREAD_ANNOTATION_(guarded_by(x))
// A pointer member whose pointee is read and written only with it held.
#define PT_GUARDED_BY(x) DSHM_THREAD_ANNOTATION_(pt_guarded_by(x))

// The caller must hold the capability (exclusively / at least shared).
#define REQUIRES(...) DSHM_THREAD_ANNOTATION_(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) DSHM_THREAD_ANNOTATION_(requires_shared_capability(__VA_ARGS__))
// The caller must not hold the capability (the function takes it).
#define EXCLUDES(...) DSHM_THREAD_ANNOTATION_(locks_excluded(__VA_ARGS__))

// The function acquires / releases the capability (and returns holding /
// not holding it).
#define ACQUIRE(...) DSHM_THREAD_ANNOTATION_(acquire_capability(__VA_ARGS__))
#define RELEASE(...) DSHM_THREAD_ANNOTATION_(release_capability(__VA_ARGS__))
// Acquires it when it returns the first argument (true/false).
#define TRY_ACQUIRE(...) DSHM_THREAD_ANNOTATION_(try_acquire_capability(__VA_ARGS__))

// After the call the capability is known to be held (a run-time check, or
// a fact the analysis cannot see).
#define ASSERT_CAPABILITY(x) DSHM_THREAD_ANNOTATION_(assert_capability(x))
// The function returns (a reference to) the capability.
#define RETURN_CAPABILITY(x) DSHM_THREAD_ANNOTATION_(lock_returned(x))

// Turns the analysis off for one function: only where it cannot express
// what the function does, with a comment saying why.
#define NO_THREAD_SAFETY_ANALYSIS DSHM_THREAD_ANNOTATION_(no_thread_safety_analysis)

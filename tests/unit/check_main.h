// Shared main() body for the Check unit-test executables.
//
// Each test executable builds one Suite and calls RunSuite(), which runs it
// with Check's normal output (CK_FORK honours the CK_FORK environment
// variable, so a crash in one test is reported, not fatal to the run) and
// returns the process exit status: 0 when every test passed.
#pragma once

#include <check.h>

#include <cstdlib>

// A test case with a deliberate time limit: `seconds` is several times what
// the case takes in the plain build on an idle machine; Check multiplies it
// by CK_TIMEOUT_MULTIPLIER (tests/run.sh: 3 for the plain and clang builds,
// 10 under the sanitizers), so a loaded CI machine does not fail a test on
// time.  Every test case is made with it: none runs on Check's 4 s default.
inline TCase *NewTCase(const char *name, double seconds) {
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, seconds);
    return tc;
}

inline int RunSuite(Suite *suite) {
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

// Shared main() body for the Check unit-test executables.
//
// Each test executable builds one Suite and calls RunSuite(), which runs it
// with Check's normal output (CK_FORK honours the CK_FORK environment
// variable, so a crash in one test is reported, not fatal to the run) and
// returns the process exit status: 0 when every test passed.
#pragma once

#include <check.h>

#include <cstdlib>

inline int RunSuite(Suite *suite) {
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/*
 * The exit statuses of every dshm tool: dshmd, dshmctl and dshm-attach on the
 * host, dshm-lock and dshm-tool in the guest.  One table, shared by C and
 * C++ (the guest tools are static C++ without GLib), documented in dshm(7)
 * and in each tool's --help and man page.  A tool uses the subset that
 * applies to it; a code never means two different things.
 *
 *   0  OK              success
 *   1  FAILED          the command ran and failed: a check failed (verify,
 *                      wait, count --exclusive), a system call failed,
 *                      dshmd could not start
 *   2  USAGE           bad command line (unknown command or option, missing
 *                      or malformed value), or dshmd's configuration invalid
 *   3  UNAVAILABLE     what the command needs is not there: dshmd cannot be
 *                      reached, no such segment or device, a file unreadable
 *   4  TIMEOUT         a lock (or a wait) timed out
 *   5  REFUSED         dshmd refused the request (its status is printed,
 *                      e.g. E_OWNER_LOST)
 *   6  DEVICE_DOWN     the device is not attached to dshmd, or lost it
 *   7  RELEASE_FAILED  dshm-lock -- COMMAND: COMMAND ran, the release
 *                      failed (its writes may not have reached the others)
 *   8  NOT_HELD        a release of a lock this VM does not hold
 *
 * A signal's default action gives 128 + N (143 for SIGTERM).
 */
#ifndef DSHM_EXIT_CODES_H
#define DSHM_EXIT_CODES_H

enum dshm_exit_status {
    DSHM_EXIT_OK = 0,
    DSHM_EXIT_FAILED = 1,
    DSHM_EXIT_USAGE = 2,
    DSHM_EXIT_UNAVAILABLE = 3,
    DSHM_EXIT_TIMEOUT = 4,
    DSHM_EXIT_REFUSED = 5,
    DSHM_EXIT_DEVICE_DOWN = 6,
    DSHM_EXIT_RELEASE_FAILED = 7,
    DSHM_EXIT_NOT_HELD = 8,
};

#endif /* DSHM_EXIT_CODES_H */

// LD_PRELOAD shim for tests/t-systemd-unit.sh: raises SIGTERM in the
// process right after its first successful listen(), i.e. inside the window
// where a dshmd socket exists but dshmd may not handle SIGTERM yet.  A
// dshmd that installs its handlers first shuts down cleanly (exit 0, socket
// removed); one that does not dies of the signal (exit 143).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <signal.h>
#include <sys/socket.h>

int listen(int fd, int backlog) {
    static int (*real)(int, int);
    static int done;
    if (!real)
        real = (int (*)(int, int))dlsym(RTLD_NEXT, "listen");
    int rc = real(fd, backlog);
    if (rc == 0 && !done) {
        done = 1;
        raise(SIGTERM);
    }
    return rc;
}

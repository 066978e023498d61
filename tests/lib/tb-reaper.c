/*
 * tb-reaper: PID 1 of a simulated host's PID namespace.
 *
 * Reaps every child as soon as it exits (orphans of the host are
 * re-parented to it), and exits on SIGTERM/SIGINT/SIGHUP.  When it exits the
 * kernel kills every other process of the namespace, which is how the
 * testbed tears a host down.  A shell as PID 1 would reap only when it
 * wakes up, which delays every libvirt/QEMU exit on the host.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_signal(int sig)
{
    (void)sig;
    _exit(0);
}

int main(void) /* argv[1], ignored: the testbed prefix, for ps */
{
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    for (;;) {
        if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD) {
            pause();
        }
    }
}

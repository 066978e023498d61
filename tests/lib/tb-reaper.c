/*
 * tb-reaper: PID 1 of a simulated host's PID namespace.
 *
 * Reaps every child as soon as it exits (orphans of the host, e.g. a QEMU
 * that libvirtd started with -daemonize, are re-parented to it), and exits
 * on SIGTERM/SIGINT/SIGHUP.  When it exits the kernel kills every other
 * process of the namespace, which is how the testbed tears a host down.  A
 * shell as PID 1 would reap only when it wakes up, which delays every
 * libvirt/QEMU exit on the host (libvirt waits for a killed QEMU to be
 * gone, up to 40 s).
 *
 * It starts with no child at all (processes enter the host with nsenter), so
 * it must wait for SIGCHLD rather than in waitpid(): SIGCHLD stays blocked
 * except inside sigsuspend(), so none is lost between a reaping pass and
 * the wait.
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

static void on_child(int sig)
{
    (void)sig; /* only wakes sigsuspend() */
}

int main(void) /* argv[1], ignored: the testbed prefix, for ps */
{
    struct sigaction sa = { .sa_handler = on_signal };
    struct sigaction sc = { .sa_handler = on_child };
    sigset_t chld, waitmask;

    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &waitmask);
    sigdelset(&waitmask, SIGCHLD);
    sigaction(SIGCHLD, &sc, NULL);
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        sigsuspend(&waitmask);
    }
}

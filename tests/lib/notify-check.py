#!/usr/bin/env python3
"""A stand-in for systemd's notification socket (sd_notify(3)), driving a
daemon through steps and checking what it tells.

  notify-check.py SOCKET STEPS... -- COMMAND [ARGS...]

Binds a datagram unix socket at SOCKET, starts COMMAND with
NOTIFY_SOCKET=SOCKET, then runs the steps in order:

  expect:REGEX    the next notification (its assignments joined by ' | ',
                  e.g. 'READY=1 | STATUS=...') must match REGEX (re.search);
                  waits for it up to the deadline
  signal:NAME     sends signal NAME (HUP, TERM) to COMMAND
  run:SHELL       runs a shell command, which must exit 0
  exit:N          COMMAND must exit with status N before the deadline
                  (a signal's death is 128 + N, as in the shell)

Each step has a deadline (--deadline S before SOCKET, default 20 s): no
sleeping stands in for an event.  Prints every notification; exits 0 when
every step passed, 1 (with the reason) otherwise, after killing COMMAND if
it still runs.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time


def main():
    args = sys.argv[1:]
    deadline_s = 20.0
    if len(args) >= 2 and args[0] == "--deadline":
        deadline_s = float(args[1])
        args = args[2:]
    if "--" not in args or len(args) < 3:
        sys.exit(__doc__)
    sep = args.index("--")
    path, steps, cmd = args[0], args[1:sep], args[sep + 1:]
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    proc = subprocess.Popen(cmd, env=env)

    def fail(why):
        print("notify-check: FAIL: " + why, flush=True)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sys.exit(1)

    for step in steps:
        kind, _, arg = step.partition(":")
        end = time.monotonic() + deadline_s
        if kind == "expect":
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    fail("no notification matching '%s' within %gs" % (arg, deadline_s))
                sock.settimeout(left)
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    continue
                msg = " | ".join(data.decode(errors="replace").strip("\n").split("\n"))
                print("notify-check: got: " + msg, flush=True)
                if re.search(arg, msg):
                    break
                fail("notification '%s' does not match '%s'" % (msg, arg))
        elif kind == "signal":
            print("notify-check: sending SIG" + arg, flush=True)
            proc.send_signal(getattr(signal, "SIG" + arg))
        elif kind == "run":
            print("notify-check: running: " + arg, flush=True)
            rc = subprocess.call(arg, shell=True)
            if rc != 0:
                fail("'%s' exited %d" % (arg, rc))
        elif kind == "exit":
            try:
                rc = proc.wait(timeout=deadline_s)
            except subprocess.TimeoutExpired:
                fail("the command did not exit within %gs" % deadline_s)
            rc = 128 - rc if rc < 0 else rc
            print("notify-check: exit status %d" % rc, flush=True)
            if rc != int(arg):
                fail("exit status %d, expected %s" % (rc, arg))
        else:
            fail("unknown step '%s'" % step)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    print("notify-check: ok", flush=True)


if __name__ == "__main__":
    main()

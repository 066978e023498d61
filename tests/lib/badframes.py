#!/usr/bin/env python3
"""Sends malformed or unexpected dshm frames to a dshmd and reports what it did.

usage: badframes.py peer HOST:PORT | client SOCKET_PATH

For every case: connect, send, then read until the daemon closes the
connection (or 3 s pass).  Prints one line per case:
  CASE name closed=<yes|no> reply=<last reply type or none> status=<code>
The frame layouts follow include/dshm/wire.h.
"""
import socket
import struct
import sys

MAGIC = 0x4D485344
T = dict(HELLO=0x01, ERROR=0x02, ATTACH=0x10, UFFD=0x11, ACQUIRE=0x12, CTL_QUERY=0x15,
         ATTACHED=0x20, LOCK_FAILED=0x24, FETCH=0x40, WRITEBACK=0x44)
NAMES = {v: k for k, v in T.items()}


def frame(typ, payload=b"", length=None, tag=1, magic=MAGIC, flags=0):
    return struct.pack("<IHHII", magic, typ, flags, len(payload) if length is None else length, tag) + payload


def hello(role, host_id=0, version=None, name=b"badframes"):
    # The peer channel speaks version 3 (authenticated peers), the client channel 2.
    if version is None:
        version = 3 if role == 2 else 2
    return frame(T["HELLO"], struct.pack("<HHIQ64s", version, role, host_id, 7, name))


def attach(segment):
    return frame(T["ATTACH"], struct.pack("<32s64s16s", segment, b"bad", b"\0" * 16))


def run(connect, name, data):
    s = connect()
    s.settimeout(3)
    try:
        s.sendall(data)
    except OSError:
        pass
    buf, closed = b"", False
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            buf += chunk
    except socket.timeout:
        pass
    except OSError:
        closed = True
    s.close()
    # Skip the daemon's own HELLO; report the last other frame.
    reply, status, off = "none", "-", 0
    while off + 16 <= len(buf):
        magic, typ, _, ln, _ = struct.unpack_from("<IHHII", buf, off)
        body = buf[off + 16: off + 16 + ln]
        off += 16 + ln
        if typ == T["HELLO"]:
            continue
        reply = NAMES.get(typ, hex(typ))
        if typ in (T["ERROR"],) and len(body) >= 4:
            status = struct.unpack_from("<I", body)[0]
        elif typ == T["LOCK_FAILED"] and len(body) >= 8:
            status = struct.unpack_from("<I", body, 4)[0]
        else:
            status = "-"
    print(f"CASE {name} closed={'yes' if closed else 'no'} reply={reply} status={status}", flush=True)


def main():
    kind, target = sys.argv[1], sys.argv[2]
    if kind == "peer":
        host, port = target.rsplit(":", 1)
        connect = lambda: socket.create_connection((host, int(port)), timeout=3)
        run(connect, "peer-http-garbage", b"GET / HTTP/1.0\r\n\r\n" * 4)
        run(connect, "peer-bad-magic", frame(T["HELLO"], b"\0" * 80, magic=0x12345678))
        run(connect, "peer-huge-length", frame(T["WRITEBACK"], b"", length=0xFFFFFFF0))
        run(connect, "peer-unknown-type", hello(2, 42)[:0] + frame(0x7777, b"x" * 8))
        run(connect, "peer-truncated-hello", frame(T["HELLO"], b"\1\0", length=80))
        run(connect, "peer-wrong-version", hello(2, 1, version=99))
        run(connect, "peer-unknown-host", hello(2, 42))
        run(connect, "peer-fetch-before-hello", frame(T["FETCH"], struct.pack("<32sII", b"seg", 0, 0)))
    else:
        def connect():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(target)
            return s
        run(connect, "client-garbage", b"\xff" * 100)
        run(connect, "client-attach-before-hello", attach(b"seg"))
        run(connect, "client-unknown-segment", hello(1) + attach(b"no-such-seg"))
        run(connect, "client-acquire-before-uffd", hello(1) + attach(b"seg") + frame(T["ACQUIRE"], struct.pack("<II", 0, 0)))
        run(connect, "client-uffd-without-fd", hello(1) + attach(b"seg") + frame(T["UFFD"], struct.pack("<QQ", 0x1000, 65536)))
        run(connect, "client-ctl-query-as-client", hello(1) + frame(T["CTL_QUERY"], struct.pack("<II", 1, 0)))
        run(connect, "client-segment-name-without-nul", hello(1) + frame(T["ATTACH"], b"A" * 32 + b"\0" * 80))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A scripted stand-in for a peer dshmd: sends write-backs the way a real
one does, but stops where a test tells it to (a release cut off half-way,
a release by a host that does not hold the lock); or acts as a segment's
owner that serves fetches and sends invalidations the test makes up.

usage: fakepeer.py HOST:PORT HOST_ID

Connects to the dshmd at HOST:PORT, says HELLO as peer HOST_ID (a host of
that daemon's configuration whose own dshmd is not running, and whose id is
lower: lower ids dial higher ones), prints "ok hello", then reads commands
from stdin, one per line, and answers each with one line:

  wb SEG PAGE OFFSET VALUE   WRITEBACK of one u64 (a RUNS diff)     -> ok
  wbfull SEG PAGE VALUE      WRITEBACK of a page of u64 VALUE (FULL) -> ok
  release SEG LOCK CLIENT N  P_RELEASE closing N write-backs; waits for the
                             P_RELEASE_ACK                  -> ok status=S
  release-nowait SEG LOCK CLIENT N   the same P_RELEASE, not waiting -> ok
  flush-nowait SEG CLIENT N  P_FLUSH (a migrating client's write-back)
                             closing N write-backs, not waiting -> ok
  acquire SEG LOCK CLIENT    P_ACQUIRE as the writer host; waits for the
                             P_GRANT                        -> ok status=S
  serve VALUE                as the segment's owner: waits for the next FETCH
                             and answers a PAGE of u64 VALUE -> ok page=P
  inval SEG PAGE...          as the segment's owner: INVALIDATE of those
                             pages; waits for the INVAL_ACK  -> ok ack
                             (or for the daemon to close     -> ok closed)
  grant SEG PAGE...          as the segment's owner: EXCL_GRANT of those
                             pages (no answer is due)        -> ok
  revoke SEG PAGE...         as the segment's owner: EXCL_REVOKE of those
                             pages; waits for EXCL_REVOKED   -> ok revoked P...
                             (everything sent before it has been handled
                             by then: one connection, in order)
  await TYPE                 waits for a frame of TYPE (hex) -> ok
  await-flush                as the segment's owner: waits for a P_FLUSH
                             (a migrating client's write-back) -> ok client=C
  flush-ack SEG CLIENT STATUS   as the segment's owner: P_FLUSH_ACK -> ok
  frames MS                  reads frames for MS milliseconds -> ok TYPE... (hex,
                             in order of arrival)
  connect                    dials again (after dshmd closed) -> ok hello
  close                      closes the connection and exits -> ok

Frames the daemon sends otherwise are read and ignored.  The layouts follow
include/dshm/wire.h.
"""
import socket
import struct
import sys

from badframes import frame, hello  # the frame layouts, shared with badframes.py

FETCH, PAGE_MSG, WRITEBACK, P_RELEASE, P_RELEASE_ACK = 0x40, 0x41, 0x44, 0x45, 0x46
P_FLUSH, P_FLUSH_ACK = 0x4c, 0x4d
P_ACQUIRE, P_GRANT, INVALIDATE, INVAL_ACK = 0x42, 0x43, 0x47, 0x48
EXCL_GRANT, EXCL_REVOKE, EXCL_REVOKED = 0x59, 0x5a, 0x5b
ROLE_PEER, ENC_RUNS, ENC_FULL, PAGE = 2, 1, 3, 4096


def seg(name):
    return struct.pack("<32s", name.encode())


class Peer:
    def __init__(self, addr, host_id):
        self.addr = addr
        self.host_id = host_id
        self.connect()

    def connect(self):
        host, port = self.addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=10)
        self.buf = b""
        self.s.sendall(hello(ROLE_PEER, self.host_id, name=b"fakepeer"))

    def next_frame(self, want_tag=False):
        while True:
            if len(self.buf) >= 16:
                _, typ, _, ln, tag = struct.unpack_from("<IHHII", self.buf)
                if len(self.buf) >= 16 + ln:
                    body = self.buf[16:16 + ln]
                    self.buf = self.buf[16 + ln:]
                    return (typ, body, tag) if want_tag else (typ, body)
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("dshmd closed the connection")
            self.buf += chunk

    def writeback(self, name, page, enc, diff):
        self.s.sendall(frame(WRITEBACK, seg(name) + struct.pack("<IHH", page, enc, 0) + diff, tag=0))

    def frames_for(self, ms):
        types = []
        self.s.settimeout(ms / 1000.0)
        try:
            while True:
                types.append(self.next_frame()[0])
        except socket.timeout:
            pass
        finally:
            self.s.settimeout(10)
        return types

    def await_type(self, want):
        while True:
            typ, body = self.next_frame()
            if typ == want:
                return body

    def release(self, name, lock, client, n, wait=True, typ=P_RELEASE):
        body = seg(name) + struct.pack("<IIII", lock, self.host_id, client, n)
        if typ == P_FLUSH:
            body += struct.pack("<Q", 0)  # dshm_p_flush.token: no hand-off secret
        self.s.sendall(frame(typ, body, tag=7))
        if wait:
            return struct.unpack_from("<III", self.await_type(P_RELEASE_ACK), 32)[2]
        return None

    def acquire(self, name, lock, client):
        self.s.sendall(frame(P_ACQUIRE, seg(name) + struct.pack("<IIII", lock, self.host_id, client, 0), tag=0))
        return struct.unpack_from("<IIII", self.await_type(P_GRANT), 32)[3]

    def pagelist(self, typ, name, pages, tag=0):
        body = seg(name) + struct.pack("<II", len(pages), 0) + b"".join(struct.pack("<I", p) for p in pages)
        self.s.sendall(frame(typ, body, tag=tag))

    def revoke(self, name, pages):
        self.pagelist(EXCL_REVOKE, name, pages)
        body = self.await_type(EXCL_REVOKED)
        n = struct.unpack_from("<I", body, 32)[0]
        return list(struct.unpack_from("<%dI" % n, body, 40))


    def serve(self, value):
        while True:
            typ, body, tag = self.next_frame(want_tag=True)
            if typ == FETCH:
                name, page = body[:32], struct.unpack_from("<I", body, 32)[0]
                data = struct.pack("<Q", value) * (PAGE // 8)
                self.s.sendall(frame(PAGE_MSG, name + struct.pack("<II", page, 0) + data, tag=tag))
                return page

    def inval(self, name, pages):
        self.pagelist(INVALIDATE, name, pages, tag=9)
        try:
            self.await_type(INVAL_ACK)
            return "ack"
        except EOFError:
            return "closed"


def main():
    peer = Peer(sys.argv[1], int(sys.argv[2]))
    print("ok hello", flush=True)
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        try:
            if w[0] == "wb":
                off, val = int(w[3]), int(w[4])
                peer.writeback(w[1], int(w[2]), ENC_RUNS, struct.pack("<HHQ", off, 8, val))
                print("ok", flush=True)
            elif w[0] == "wbfull":
                peer.writeback(w[1], int(w[2]), ENC_FULL, struct.pack("<Q", int(w[3])) * (PAGE // 8))
                print("ok", flush=True)
            elif w[0] == "release":
                st = peer.release(w[1], int(w[2]), int(w[3]), int(w[4]))
                print(f"ok status={st}", flush=True)
            elif w[0] == "release-nowait":
                peer.release(w[1], int(w[2]), int(w[3]), int(w[4]), wait=False)
                print("ok", flush=True)
            elif w[0] == "flush-nowait":
                peer.release(w[1], 0, int(w[2]), int(w[3]), wait=False, typ=P_FLUSH)
                print("ok", flush=True)
            elif w[0] == "acquire":
                print(f"ok status={peer.acquire(w[1], int(w[2]), int(w[3]))}", flush=True)
            elif w[0] == "grant":
                peer.pagelist(EXCL_GRANT, w[1], [int(x) for x in w[2:]])
                print("ok", flush=True)
            elif w[0] == "revoke":
                got = peer.revoke(w[1], [int(x) for x in w[2:]])
                print("ok revoked " + " ".join(str(p) for p in got), flush=True)
            elif w[0] == "frames":
                print("ok " + " ".join("%02x" % t for t in peer.frames_for(int(w[1]))), flush=True)
            elif w[0] == "await-flush":
                body = peer.await_type(P_FLUSH)
                print("ok client=%d" % struct.unpack_from("<I", body, 40)[0], flush=True)
            elif w[0] == "flush-ack":
                body = seg(w[1]) + struct.pack("<IIII", 0, int(w[2]), int(w[3]), 0)
                peer.s.sendall(frame(P_FLUSH_ACK, body, tag=0))
                print("ok", flush=True)
            elif w[0] == "await":
                peer.await_type(int(w[1], 16))
                print("ok", flush=True)
            elif w[0] == "serve":
                print(f"ok page={peer.serve(int(w[1]))}", flush=True)
            elif w[0] == "inval":
                print(f"ok {peer.inval(w[1], [int(x) for x in w[2:]])}", flush=True)
            elif w[0] == "connect":
                peer.connect()
                print("ok hello", flush=True)
            elif w[0] == "close":
                peer.s.close()
                print("ok", flush=True)
                return
            else:
                print(f"error unknown command {w[0]}", flush=True)
        except (OSError, EOFError) as e:
            print(f"error {e}", flush=True)


if __name__ == "__main__":
    main()

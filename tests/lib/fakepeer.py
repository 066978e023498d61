#!/usr/bin/env python3
"""A scripted stand-in for a peer dshmd: sends write-backs the way a real
one does, but stops where a test tells it to (a release cut off half-way,
a release by a host that does not hold the lock); or acts as a segment's
owner that serves fetches and sends invalidations the test makes up.

usage: fakepeer.py [--key FILE | --no-key] HOST:PORT HOST_ID

Connects to the dshmd at HOST:PORT, says HELLO as peer HOST_ID (a host of
that daemon's configuration whose own dshmd is not running, and whose id is
lower: lower ids dial higher ones) and authenticates (docs/protocol.md
section 2.1: AUTH_CHALLENGE, then AUTH_PROOF with the key of FILE, by
default $DSHM_AUTHKEY, the testbed's: tests/lib/dshmd.sh), prints "ok hello", then reads
commands from stdin, one per line, and answers each with one line.  With
--no-key it sends HELLO and AUTH_CHALLENGE but no proof, prints "ok hello"
all the same, and goes on as if authenticated: whatever it sends is what
an intruder without the key sends (its frames reach no handler), and
`frames`/`counts` show what it receives.

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
  fetch SEG PAGE             FETCH of that page (not waiting)  -> ok
  intrude SEG PAGE VALUE     in one write: FETCH of PAGE, WRITEBACK of u64
                             VALUE at its offset 0 with its P_RELEASE (lock 0,
                             client 1), P_ACQUIRE of lock 1   -> ok
  counts MS                  reads frames for MS milliseconds (or until
                             dshmd closes) -> ok pages=N errors=N closed=0|1
                             auth=S (S: the status of an ERROR, else 0)
  connect                    dials again (after dshmd closed) -> ok hello
  close                      closes the connection and exits -> ok

Frames the daemon sends otherwise are read and ignored.  The layouts follow
include/dshm/wire.h.
"""
import hashlib
import hmac
import os
import socket
import struct
import sys

from badframes import frame, hello  # the frame layouts, shared with badframes.py

FETCH, PAGE_MSG, WRITEBACK, P_RELEASE, P_RELEASE_ACK = 0x40, 0x41, 0x44, 0x45, 0x46
P_FLUSH, P_FLUSH_ACK = 0x4c, 0x4d
P_ACQUIRE, P_GRANT, INVALIDATE, INVAL_ACK = 0x42, 0x43, 0x47, 0x48
EXCL_GRANT, EXCL_REVOKE, EXCL_REVOKED = 0x59, 0x5a, 0x5b
ROLE_PEER, ENC_RUNS, ENC_FULL, PAGE = 2, 1, 3, 4096
HELLO, ERROR, AUTH_CHALLENGE, AUTH_PROOF = 0x01, 0x02, 0x5c, 0x5d
AUTH_CONTEXT = b"dshm peer auth v3\0"


def seg(name):
    return struct.pack("<32s", name.encode())


def proof(key, sender, receiver, sender_inc, receiver_inc, sender_nonce, receiver_nonce):
    """AUTH_PROOF's MAC (include/dshm/wire.h, dshm_auth_proof)."""
    msg = AUTH_CONTEXT + struct.pack("<IIQQ", sender, receiver, sender_inc, receiver_inc)
    return hmac.new(key, msg + sender_nonce + receiver_nonce, hashlib.sha256).digest()


class Peer:
    INCARNATION = 7  # what badframes.hello() says

    def __init__(self, addr, host_id, key):
        self.addr = addr
        self.host_id = host_id
        self.key = key  # None: no proof
        self.connect()

    def connect(self):
        host, port = self.addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=10)
        self.buf = b""
        nonce = os.urandom(32)
        self.s.sendall(hello(ROLE_PEER, self.host_id, name=b"fakepeer") + frame(AUTH_CHALLENGE, nonce, tag=0))
        if self.key is None:
            return
        # The daemon's HELLO and AUTH_CHALLENGE, then our proof; its proof.
        typ, body = self.next_frame()
        if typ != HELLO:
            raise EOFError("no HELLO from dshmd (type 0x%02x)" % typ)
        daemon, daemon_inc = struct.unpack_from("<IQ", body, 4)
        typ, body = self.next_frame()
        if typ != AUTH_CHALLENGE:
            raise EOFError("no AUTH_CHALLENGE from dshmd (type 0x%02x)" % typ)
        daemon_nonce = body[:32]
        mac = proof(self.key, self.host_id, daemon, self.INCARNATION, daemon_inc, nonce, daemon_nonce)
        self.s.sendall(frame(AUTH_PROOF, mac, tag=0))
        # The daemon's proof came right after its challenge (it had ours):
        # whether it proves our key (not, with another key: the daemon then
        # refuses ours, which `counts` shows).
        typ, body = self.next_frame()
        want = proof(self.key, daemon, self.host_id, daemon_inc, self.INCARNATION, daemon_nonce, nonce)
        self.daemon_proved = typ == AUTH_PROOF and hmac.compare_digest(body[:32], want)

    def counts(self, ms):
        """What arrives within ms (or until dshmd closes)."""
        pages = errors = closed = status = 0
        self.s.settimeout(ms / 1000.0)
        try:
            while True:
                typ, body = self.next_frame()
                if typ in (PAGE_MSG, 0x54):  # PAGE, OWN_PAGE
                    pages += 1
                elif typ == ERROR:
                    errors += 1
                    status = struct.unpack_from("<I", body)[0]
        except socket.timeout:
            pass
        except (EOFError, OSError):
            closed = 1
        finally:
            self.s.settimeout(10)
        return f"pages={pages} errors={errors} closed={closed} auth={status}"

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
    args = sys.argv[1:]
    key_file = os.environ.get("DSHM_AUTHKEY", "authkey")
    no_key = False
    while args and args[0].startswith("--"):
        if args[0] == "--no-key":
            no_key = True
            args = args[1:]
        elif args[0] == "--key":
            key_file, args = args[1], args[2:]
        else:
            sys.exit(f"fakepeer.py: unknown option {args[0]}")
    key = None
    if not no_key:
        with open(key_file, "rb") as f:
            key = f.read()
    peer = Peer(args[0], int(args[1]), key)
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
            elif w[0] == "fetch":
                peer.s.sendall(frame(FETCH, seg(w[1]) + struct.pack("<II", int(w[2]), 0), tag=3))
                print("ok", flush=True)
            elif w[0] == "intrude":
                name, page, val = w[1], int(w[2]), int(w[3])
                peer.s.sendall(
                    frame(FETCH, seg(name) + struct.pack("<II", page, 0), tag=3)
                    + frame(WRITEBACK, seg(name) + struct.pack("<IHH", page, ENC_RUNS, 0)
                            + struct.pack("<HHQ", 0, 8, val), tag=0)
                    + frame(P_RELEASE, seg(name) + struct.pack("<IIII", 0, peer.host_id, 1, 1), tag=7)
                    + frame(P_ACQUIRE, seg(name) + struct.pack("<IIII", 1, peer.host_id, 1, 0), tag=0))
                print("ok", flush=True)
            elif w[0] == "counts":
                print("ok " + peer.counts(int(w[1])), flush=True)
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

// fuzz_peer: bytes from another dshmd.  The input is the stream of peer
// host 2 to an in-process dshmd (harness.h): read by its Conn through the
// FrameReader (the validation boundary) and routed by
// Daemon::RoutePeerFrame into the real roles (Cache, Home, Writer, Locker,
// Marks, Handoff, Mover, Agent), with every reply read and dropped.  At the
// end the stream is closed, so the roles' peer-loss paths run too.
//
// Input: one flag byte, then the stream.
//   bit 0: the harness authenticates host 2 first (HELLO, AUTH_CHALLENGE,
//          AUTH_PROOF with the daemon's key: the stream then starts with the
//          messages after them); otherwise the stream must carry its own
//          handshake, whose proof cannot verify (the daemon's nonce is
//          random): such a stream reaches no role (protocol.md section 2.1).
//   bit 1: host 3 is connected and up as well.
//   bits 2-3: a local VM (harness.h's Client, attached as libdshm-client
//          does, client id 1) before the stream: 0 none; 1 on "rem" (owned
//          by host 2) with an ACQUIRE of lock 0 sent on to host 2 as
//          P_ACQUIRE (the stream may grant it); 2 on "seg" (owned here)
//          holding lock 0; 3 on "rem", idle.  It closes after the stream.
// Nothing may crash, leak, hit undefined behaviour, or log a GLib critical.
#include <cstddef>
#include <cstdint>
#include <optional>

#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    using namespace fuzz;
    if (size < 1)
        return 0;
    loop_mutex.AssertHeld();  // one thread: it iterates the loop
    const uint8_t flags = data[0];
    data++;
    size--;
    Host h;
    h.Connect(2, flags & 1);
    if (flags & 2)
        h.Connect(3, true);
    h.Pump();
    const int vm = (flags >> 2) & 3;
    std::optional<Client> c;
    if (vm) {
        h.client = ConnectClient();
        c.emplace(h);
        if (!c->Attach(vm == 2 ? "seg" : "rem")) {
            fprintf(stderr, "fuzz_peer: the harness's attach failed\n");
            abort();
        }
        if (vm != 3) {
            dshm_lock_req q = {0, 0};
            auto m = EncodeMsg(DSHM_MSG_ACQUIRE, 3, q);
            c->Send(m.data(), m.size(), -1);
            h.Pump();
        }
    }
    h.Write(h.peer[2], data, size);
    h.Pump();
    if (c) {
        close(h.client);
        h.client = -1;
        h.Pump();
        c.reset();
    }
    return 0;
}

// fuzz_client: bytes from a local client (QEMU, libdshm-client, dshmctl)
// on dshmd's unix socket.  The input is one client's stream to an
// in-process dshmd (harness.h), read by its Conn through the FrameReader
// and routed by Daemon::RouteClientFrame into Clients, Locker, Writer and
// Handoff; peer hosts 2 and 3 are connected and up (what dshmd sends them
// is read and dropped, and they never answer).  At the end the client
// closes, so the client-loss paths run too.
//
// Input: one flag byte, then the stream, sent one message per sendmsg as
// the header's length cuts it (the rest at the end as it is).
//   bit 0: the harness attaches first, as libdshm-client does: HELLO,
//          ATTACH, mmap of the memfd, a real userfaultfd registered on it,
//          UFFD, READY; the stream then starts with lock requests etc.
//   bit 1: that ATTACH is to "rem" (owned by host 2) rather than "seg"
//          (owned by this host).
//   bit 2: (without bit 0) the harness says HELLO as dshmctl first.
// A UFFD message of the stream carries a file descriptor, as it must: a
// real userfaultfd registered on the harness's mapping (with the message's
// base rewritten to that mapping, its length kept) while the harness has a
// mapping that no uffd registered yet, else an eventfd (not a uffd: the
// daemon must refuse it).  The harness never touches the mapping, so no
// fault ever waits for the loop.
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
    h.host2_answers = true;
    h.Connect(2, true);
    h.Connect(3, true);
    h.Pump();
    h.client = ConnectClient();
    {
        Client c(h);
        if (flags & 1) {
            if (!c.Attach(flags & 2 ? "rem" : "seg")) {
                fprintf(stderr, "fuzz_client: the harness's attach failed\n");
                abort();
            }
        } else {
            h.keep_client = true;  // LearnAttached
        }
        if (!(flags & 1) && (flags & 4)) {
            dshm_hello hello = {};
            hello.version = DSHM_PROTO_VERSION;
            hello.role = DSHM_ROLE_CTL;
            SetName(hello.name, "dshmctl");
            auto m = EncodeMsg(DSHM_MSG_HELLO, 0, hello);
            c.Send(m.data(), m.size(), -1);
        }
        c.SendStream(data, size);
        h.Pump();
        close(h.client);
        h.client = -1;
        h.Pump();
    }
    return 0;
}

// fuzz_config: the dshmd.conf parser (hostd/config.h, ParseConfig on the
// text: GKeyFile, then our checks).  A parse that succeeds must satisfy the
// documented ranges (host ids < DSHM_MAX_HOSTS, segment sizes positive
// multiples of DSHM_PAGE_SIZE, segment names valid, listen and peer
// addresses host:port) and FormatConfig's contract: the effective
// configuration it prints parses back to the same configuration (compared
// by printing it again); nothing may crash or leak.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz_check.h"
#include "config.h"
#include "frame.h"

using namespace dshm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string text(reinterpret_cast<const char *>(data), size);
    Config c;
    Status st = ParseConfig(text, "fuzz.conf", &c);
    if (!st.ok()) {
        FUZZ_CHECK(!st.message().empty());
        return 0;
    }
    FUZZ_CHECK(c.host_id < DSHM_MAX_HOSTS);
    std::string host;
    uint16_t port;
    if (!c.listen.empty())
        FUZZ_CHECK(SplitHostPort(c.listen, &host, &port));
    for (const PeerConfig &p : c.peers) {
        FUZZ_CHECK(p.host_id < DSHM_MAX_HOSTS && p.host_id != c.host_id);
        if (!p.address.empty())
            FUZZ_CHECK(SplitHostPort(p.address, &host, &port));
    }
    for (const SegmentConfig &s : c.segments) {
        FUZZ_CHECK(!s.name.empty() && s.name.size() < DSHM_SEGNAME_LEN);
        FUZZ_CHECK(s.name != "." && s.name != "..");
        FUZZ_CHECK(s.size > 0 && s.size % DSHM_PAGE_SIZE == 0);
        FUZZ_CHECK(s.owner < DSHM_MAX_HOSTS);
    }
    const std::string printed = FormatConfig(c);
    Config again;
    st = ParseConfig(printed, "printed.conf", &again);
    if (!st.ok()) {
        fprintf(stderr, "FormatConfig's output does not parse: %s\n%s", st.ToString().c_str(),
                printed.c_str());
        abort();
    }
    FUZZ_CHECK(FormatConfig(again) == printed);
    return 0;
}

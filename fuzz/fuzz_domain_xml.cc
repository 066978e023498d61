// fuzz_domain_xml: `dshmctl domain-xml` (hostd/client/domain_xml.h).  The
// input is the argument list, NUL-separated (as argv cannot hold a NUL),
// parsed by ParseDomainXmlArgs and built by BuildDomainXml.  Text that is
// built must be valid UTF-8 of XML 1.0 characters and well-formed XML (GLib's GMarkup parses it;
// a snippet inside a wrapper element), with exactly one <shmem> element per
// segment; anything else aborts.
#include <glib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "domain_xml.h"

using namespace dshm;

namespace {

struct Count {
    int shmem = 0;
};

void OnStart(GMarkupParseContext *, const gchar *element, const gchar **, const gchar **,
             gpointer data, GError **) {
    if (strcmp(element, "shmem") == 0)
        static_cast<Count *>(data)->shmem++;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    std::vector<std::string> args;
    const char *p = reinterpret_cast<const char *>(data);
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i == size || p[i] == '\0') {
            if (i > start || i < size)
                args.emplace_back(p + start, i - start);
            start = i + 1;
        }
    }
    std::vector<char *> argv;
    for (std::string &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);

    DomainXmlOptions o;
    bool help = false;
    Status st = ParseDomainXmlArgs(static_cast<int>(args.size()), argv.data(), &o, &help);
    if (!st.ok() || help)
        return 0;
    std::string xml;
    st = BuildDomainXml(o, &xml);
    if (!st.ok()) {
        FUZZ_CHECK(xml.empty());
        return 0;
    }
    FUZZ_CHECK(g_utf8_validate(xml.data(), xml.size(), nullptr));
    for (const char *c = xml.data(); c < xml.data() + xml.size(); c = g_utf8_next_char(c))
        FUZZ_CHECK(g_utf8_get_char(c) != 0xfffe && g_utf8_get_char(c) != 0xffff);  // not XML Chars
    std::string doc =
        o.snippet ? "<wrapper xmlns:qemu='" + std::string(kQemuXmlns) + "'>" + xml + "</wrapper>"
                  : xml;
    Count count;
    GMarkupParser parser = {};
    parser.start_element = OnStart;
    GMarkupParseContext *ctx =
        g_markup_parse_context_new(&parser, G_MARKUP_DEFAULT_FLAGS, &count, nullptr);
    GError *err = nullptr;
    gboolean ok = g_markup_parse_context_parse(ctx, doc.data(), doc.size(), &err) &&
                  g_markup_parse_context_end_parse(ctx, &err);
    if (!ok) {
        fprintf(stderr, "not well-formed: %s\n--\n%s\n--\n", err->message, doc.c_str());
        abort();
    }
    g_markup_parse_context_free(ctx);
    FUZZ_CHECK(count.shmem == static_cast<int>(o.segments.size()));
    return 0;
}

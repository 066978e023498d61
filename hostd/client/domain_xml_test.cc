// Unit tests for domain_xml.h: the XML dshmctl domain-xml prints, its
// escaping and its refusals.  (libvirt's own schema check and `virsh define`
// run in tests/t-libvirt-domain-xml.sh.)
#include "domain_xml.h"

#include <string>
#include <vector>

// check.h defines a fail() macro: it must follow the C++ headers.
#include "../../tests/unit/check_main.h"

using namespace dshm;

static size_t Count(const std::string &s, const std::string &what) {
    size_t n = 0;
    for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) {
        n++;
    }
    return n;
}

static bool Has(const std::string &s, const std::string &what) {
    return s.find(what) != std::string::npos;
}

static std::string Build(const DomainXmlOptions &o) {
    std::string x;
    Status st = BuildDomainXml(o, &x);
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    return x;
}

static std::string ErrorOf(const DomainXmlOptions &o) {
    std::string x = "untouched";
    Status st = BuildDomainXml(o, &x);
    ck_assert(!st.ok());
    ck_assert_str_eq(x.c_str(), "untouched");
    return st.message();
}

START_TEST(full_domain_with_two_segments) {
    DomainXmlOptions o;
    o.name = "vm1";
    o.uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    o.type = "qemu";
    o.emulator = "/opt/dshm/qemu-system-x86_64";
    o.segments = {"counters", "big.seg_1"};
    o.socket = "/run/dshm/dshmd.sock";
    o.kernel = "/img/vmlinuz";
    o.initrd = "/img/initramfs.cpio.gz";
    o.cmdline = "console=ttyS0 quiet";
    o.console_log = "/var/log/vm1.console";
    std::string x = Build(o);
    ck_assert(
        Has(x, "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"));
    ck_assert(Has(x, "<name>vm1</name>"));
    ck_assert(Has(x, "<uuid>0f8fad5b-d9cb-469f-a165-70867728950e</uuid>"));
    ck_assert(Has(x, "<memory unit='MiB'>128</memory>"));
    ck_assert(Has(x, "<vcpu>1</vcpu>"));
    ck_assert(Has(x, "<emulator>/opt/dshm/qemu-system-x86_64</emulator>"));
    ck_assert(Has(x, "<kernel>/img/vmlinuz</kernel>"));
    ck_assert(Has(x, "<initrd>/img/initramfs.cpio.gz</initrd>"));
    ck_assert(Has(x, "<cmdline>console=ttyS0 quiet</cmdline>"));
    ck_assert(!Has(x, "<boot dev="));
    ck_assert(Has(x, "<source path='/var/log/vm1.console' append='on'/>"));
    ck_assert_uint_eq(Count(x, "<shmem name="), 2);
    ck_assert_uint_eq(Count(x, "role='master'"), 2);
    ck_assert_uint_eq(Count(x, "<model type='ivshmem-doorbell'/>"), 2);
    ck_assert_uint_eq(Count(x, "<server path='/run/dshm/dshmd.sock'/>"), 2);
    ck_assert_uint_eq(Count(x, "<msi vectors='1' ioeventfd='off'/>"), 2);
    ck_assert(Has(x, "<shmem name='counters' role='master'>"));
    ck_assert(Has(x, "<alias name='ua-dshm-counters'/>"));
    ck_assert(Has(x, "<alias name='ua-dshm-big-seg_1'/>"));
    ck_assert_uint_eq(Count(x, "<qemu:override>"), 1);
    ck_assert(Has(x, "<qemu:device alias='ua-dshm-counters'>"));
    ck_assert(Has(x, "<qemu:device alias='ua-dshm-big-seg_1'>"));
    ck_assert_uint_eq(Count(x, "<qemu:property name='dsm' type='bool' value='true'/>"), 2);
    ck_assert(Has(x, "<qemu:property name='segment' type='string' value='big.seg_1'/>"));
    // The override follows </devices> and closes before </domain>.
    ck_assert(x.find("</devices>") < x.find("<qemu:override>"));
    ck_assert(x.find("</qemu:override>") < x.find("</domain>"));
    ck_assert(x.find("</domain>\n") == x.size() - 10);
}
END_TEST

START_TEST(aliases_are_what_libvirt_keeps) {
    std::string plain = ShmemAlias("seg"), dotted = ShmemAlias("big.seg_1-x");
    ck_assert_str_eq(plain.c_str(), "ua-dshm-seg");
    ck_assert_str_eq(dotted.c_str(), "ua-dshm-big-seg_1-x");
    // [A-Za-z0-9_-] only, as libvirt requires of user aliases.
    std::string a = ShmemAlias("A.z-0_9.");
    ck_assert(
        a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
        std::string::npos);
}
END_TEST

START_TEST(defaults) {
    DomainXmlOptions o;
    o.name = "d";
    std::string x = Build(o);
    ck_assert(Has(x, "<domain type='kvm' "));
    ck_assert(Has(x, "<emulator>/usr/bin/qemu-system-x86_64</emulator>"));
    ck_assert(Has(x, "<boot dev='hd'/>"));
    ck_assert(Has(x, "<serial type='pty'>"));
    ck_assert(!Has(x, "<uuid>"));
    ck_assert(!Has(x, "<shmem"));
    ck_assert(!Has(x, "<qemu:override>"));  // an empty override is not valid
    o.segments = {"s"};
    x = Build(o);
    ck_assert(Has(x, "<server path='/run/dshm/dshmd.sock'/>"));
    o.disk = "/img/disk.qcow2";
    ck_assert(Has(Build(o), "<driver name='qemu' type='qcow2'/>"));
    o.disk = "/img/disk.img";
    ck_assert(Has(Build(o), "<driver name='qemu' type='raw'/>"));
}
END_TEST

START_TEST(escapes_every_value) {
    std::string escaped = XmlEscape("a&b<c>d'e\"f");
    ck_assert_str_eq(escaped.c_str(), "a&amp;b&lt;c&gt;d&apos;e&quot;f");
    DomainXmlOptions o;
    o.name = "a&b <c> 'd' \"e\"";
    o.emulator = "/opt/q&'x/qemu";
    o.socket = "/run/d<s>/s'ock";
    o.kernel = "/k&";
    o.cmdline = "dshm.cmd=\"echo <hi> & 'x'\"";
    o.console_log = "/l'og";
    o.segments = {"s"};
    std::string x = Build(o);
    ck_assert(Has(x, "<name>a&amp;b &lt;c&gt; &apos;d&apos; &quot;e&quot;</name>"));
    ck_assert(Has(x, "<emulator>/opt/q&amp;&apos;x/qemu</emulator>"));
    ck_assert(Has(x, "<server path='/run/d&lt;s&gt;/s&apos;ock'/>"));
    ck_assert(Has(x, "<kernel>/k&amp;</kernel>"));
    ck_assert(
        Has(x, "<cmdline>dshm.cmd=&quot;echo &lt;hi&gt; &amp; &apos;x&apos;&quot;</cmdline>"));
    ck_assert(Has(x, "<source path='/l&apos;og' append='on'/>"));
    // Nothing unescaped slipped through: every '&' starts an entity.
    for (size_t p = x.find('&'); p != std::string::npos; p = x.find('&', p + 1)) {
        ck_assert(x.compare(p, 5, "&amp;") == 0 || x.compare(p, 4, "&lt;") == 0 ||
                  x.compare(p, 4, "&gt;") == 0 || x.compare(p, 6, "&apos;") == 0 ||
                  x.compare(p, 6, "&quot;") == 0);
    }
}
END_TEST

START_TEST(rejects_bad_values) {
    DomainXmlOptions good;
    good.name = "vm";
    good.segments = {"seg"};
    auto with = [&](auto change) {
        DomainXmlOptions o = good;
        change(o);
        return ErrorOf(o);
    };
    ck_assert(Has(with([](DomainXmlOptions &o) { o.name.clear(); }), "--name: missing"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.name = "a/b"; }), "may not contain '/'"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.name = "a\nb"; }), "control character"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.uuid = "1234"; }), "--uuid"));
    ck_assert(
        Has(with([](DomainXmlOptions &o) { o.uuid = "0f8fad5b-d9cb-469f-a165-70867728950g"; }),
            "--uuid"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.memory_mib = 0; }), "--memory"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.vcpus = 0; }), "--vcpus"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.type = "xen"; }), "--type"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.emulator = "qemu"; }), "not an absolute path"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.emulator.clear(); }), "--emulator: missing"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.socket = "dshmd.sock"; }), "--socket"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.kernel = "vmlinuz"; }), "--kernel"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.initrd = "/i"; }), "--initrd: needs --kernel"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.cmdline = "x"; }), "--cmdline: needs --kernel"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.console_log = "/a\tb"; }), "control character"));
    // Bytes that are not UTF-8, and the non-characters XML 1.0 forbids, would
    // make the document unparsable (found by fuzz/fuzz_domain_xml).
    ck_assert(
        Has(with([](DomainXmlOptions &o) { o.name = "a\xff"; }), "--name: is not valid UTF-8"));
    ck_assert(
        Has(with([](DomainXmlOptions &o) { o.disk = "/d\xc3"; }), "--disk: is not valid UTF-8"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.socket = "/s\xed\xa0\x80"; }), "UTF-8"));
    ck_assert(Has(with([](DomainXmlOptions &o) {
                      o.kernel = "/k";
                      o.cmdline = "x\xef\xbf\xbe";
                  }),
                  "--cmdline: contains a character XML does not allow"));
    ck_assert(Has(with([](DomainXmlOptions &o) { o.disk = "disk.img"; }), "--disk"));
    for (const char *bad :
         {"", ".", "..", "a/b", "a'b", "a<b", "a&b", "a b", "0123456789012345678901234567890123"}) {
        ck_assert(Has(with([&](DomainXmlOptions &o) { o.segments = {bad}; }), "--segment"));
    }
    ck_assert(Has(with([](DomainXmlOptions &o) { o.segments = {"a", "b", "a"}; }), "given twice"));
    ck_assert(Has(with([](DomainXmlOptions &o) {
                      o.segments = {"a.b", "a-b"};
                  }),
                  "alias 'ua-dshm-a-b'"));
}
END_TEST

START_TEST(snippet) {
    DomainXmlOptions o;
    o.snippet = true;
    ck_assert(Has(ErrorOf(o), "at least one --segment"));
    o.segments = {"a", "b"};
    std::string x = Build(o);  // no --name needed
    ck_assert(!Has(x, "<domain type"));
    ck_assert(!Has(x, "<devices>\n"));
    ck_assert_uint_eq(Count(x, "<shmem name="), 2);
    ck_assert_uint_eq(Count(x, "<qemu:override>\n"), 1);
    ck_assert(Has(x, "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"));
    // XML forbids "--" inside a comment (the header said "--snippet").
    DomainXmlOptions full;
    full.name = "vm";
    full.segments = {"a"};
    for (const std::string &text : {x, Build(full)}) {
        for (size_t at = text.find("<!--"); at != std::string::npos; at = text.find("<!--", at)) {
            size_t end = text.find("-->", at + 4);
            ck_assert(end != std::string::npos);
            ck_assert_msg(text.substr(at + 4, end - at - 4).find("--") == std::string::npos,
                          "'--' in the comment %s", text.substr(at, end + 3 - at).c_str());
            at = end;
        }
    }
}
END_TEST

static Status Parse(std::vector<std::string> args, DomainXmlOptions *o, bool *help) {
    std::vector<char *> argv;
    for (std::string &a : args) {
        argv.push_back(a.data());
    }
    return ParseDomainXmlArgs(static_cast<int>(argv.size()), argv.data(), o, help);
}

START_TEST(parses_arguments) {
    DomainXmlOptions o;
    bool help = true;
    Status st = Parse({"--name",      "vm",        "--memory=256",
                       "--vcpus",     "2",         "--type",
                       "qemu",        "--segment", "a",
                       "--segment=b", "--socket",  "/s",
                       "--kernel",    "/k",        "--initrd",
                       "/i",          "--cmdline", "x y",
                       "--disk",      "/d",        "--console-log",
                       "/c",          "--uuid",    "u",
                       "--emulator",  "/e",        "--snippet"},
                      &o, &help);
    ck_assert_msg(st.ok(), "%s", st.ToString().c_str());
    ck_assert(!help);
    ck_assert_str_eq(o.name.c_str(), "vm");
    ck_assert_uint_eq(o.memory_mib, 256);
    ck_assert_uint_eq(o.vcpus, 2);
    ck_assert_str_eq(o.type.c_str(), "qemu");
    ck_assert_uint_eq(o.segments.size(), 2);
    ck_assert_str_eq(o.segments[1].c_str(), "b");
    ck_assert_str_eq(o.socket.c_str(), "/s");
    ck_assert_str_eq(o.cmdline.c_str(), "x y");
    ck_assert_str_eq(o.console_log.c_str(), "/c");
    ck_assert_str_eq(o.uuid.c_str(), "u");
    ck_assert_str_eq(o.emulator.c_str(), "/e");
    ck_assert(o.snippet);

    DomainXmlOptions p;
    ck_assert(Has(Parse({"--name"}, &p, &help).message(), "--name needs a value"));
    ck_assert(Has(Parse({"--bogus"}, &p, &help).message(), "unknown argument '--bogus'"));
    ck_assert(Has(Parse({"vm"}, &p, &help).message(), "unknown argument 'vm'"));
    ck_assert(Has(Parse({"--memory", "12x"}, &p, &help).message(), "not a number"));
    ck_assert(Has(Parse({"--memory", "-1"}, &p, &help).message(), "not a number"));
    ck_assert(Has(Parse({"--snippet=1"}, &p, &help).message(), "takes no value"));
    ck_assert(Parse({"--name", "x", "--help", "--bogus"}, &p, &help).ok());
    ck_assert(help);
}
END_TEST

int main() {
    Suite *s = suite_create("domain_xml");
    TCase *tc = NewTCase("domain_xml", 20);
    tcase_add_test(tc, full_domain_with_two_segments);
    tcase_add_test(tc, aliases_are_what_libvirt_keeps);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, escapes_every_value);
    tcase_add_test(tc, rejects_bad_values);
    tcase_add_test(tc, snippet);
    tcase_add_test(tc, parses_arguments);
    suite_add_tcase(s, tc);
    return RunSuite(s);
}

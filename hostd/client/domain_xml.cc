#include "domain_xml.h"

#include <glib.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>

#include "frame.h"

namespace dshm {

namespace {

constexpr uint64_t kMaxMemoryMib = 16ull << 20;  // 16 TiB
constexpr uint32_t kMaxVcpus = 4096;

bool HasControlChar(std::string_view s) {
    for (unsigned char c : s) {
        if (c < 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

// What is wrong with a text value for the XML, or nullptr: a control
// character, or bytes that are not UTF-8 (the text is UTF-8; libvirt's
// parser rejects such a document), or one of the non-characters U+FFFE and
// U+FFFF that XML 1.0 does not allow.
const char *TextProblem(std::string_view s) {
    if (HasControlChar(s)) {
        return "contains a control character";
    }
    const char *end = nullptr;
    if (!g_utf8_validate(s.data(), static_cast<gssize>(s.size()), &end)) {
        return "is not valid UTF-8";
    }
    for (const char *p = s.data(); p < s.data() + s.size(); p = g_utf8_next_char(p)) {
        gunichar c = g_utf8_get_char(p);
        if (c == 0xfffe || c == 0xffff) {
            return "contains a character XML does not allow (U+FFFE or U+FFFF)";
        }
    }
    return nullptr;
}

Status Bad(std::string_view option, std::string_view why) {
    return Status::Proto("--" + std::string(option) + ": " + std::string(why));
}

// An optional absolute path: empty, or starts with '/' and has no control
// character.
Status CheckPath(std::string_view option, const std::string &p, bool required) {
    if (p.empty()) {
        return required ? Bad(option, "missing") : Status::OK();
    }
    if (p[0] != '/') {
        return Bad(option, "'" + p + "' is not an absolute path");
    }
    if (const char *why = TextProblem(p)) {
        return Bad(option, why);
    }
    return Status::OK();
}

bool IsHex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// 8-4-4-4-12 hex digits.
bool ValidUuid(std::string_view u) {
    if (u.size() != 36) {
        return false;
    }
    for (size_t i = 0; i < u.size(); i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? u[i] != '-' : !IsHex(u[i])) {
            return false;
        }
    }
    return true;
}

Status Check(const DomainXmlOptions &o) {
    if (!o.snippet) {
        if (o.name.empty()) {
            return Bad("name", "missing (the domain's name is required)");
        }
        if (const char *why = TextProblem(o.name)) {
            return Bad("name", why);
        }
        if (o.name.find('/') != std::string::npos) {
            return Bad("name", "libvirt domain names may not contain '/'");
        }
        if (!o.uuid.empty() && !ValidUuid(o.uuid)) {
            return Bad("uuid", "'" + o.uuid + "' is not of the form 8-4-4-4-12 hex digits");
        }
        if (o.memory_mib == 0 || o.memory_mib > kMaxMemoryMib) {
            return Bad("memory", "must be 1.." + std::to_string(kMaxMemoryMib) + " MiB");
        }
        if (o.vcpus == 0 || o.vcpus > kMaxVcpus) {
            return Bad("vcpus", "must be 1.." + std::to_string(kMaxVcpus));
        }
        if (o.type != "kvm" && o.type != "qemu") {
            return Bad("type", "must be kvm or qemu (TCG), not '" + o.type + "'");
        }
        Status st = CheckPath("emulator", o.emulator, true);
        if (st.ok())
            st = CheckPath("kernel", o.kernel, false);
        if (st.ok())
            st = CheckPath("initrd", o.initrd, false);
        if (st.ok())
            st = CheckPath("disk", o.disk, false);
        if (st.ok())
            st = CheckPath("console-log", o.console_log, false);
        if (!st.ok()) {
            return st;
        }
        if (o.kernel.empty() && (!o.initrd.empty() || !o.cmdline.empty())) {
            return Bad(o.initrd.empty() ? "cmdline" : "initrd", "needs --kernel");
        }
        if (const char *why = TextProblem(o.cmdline)) {
            return Bad("cmdline", why);
        }
    } else if (o.segments.empty()) {
        return Bad("snippet", "needs at least one --segment");
    }
    Status st = CheckPath("socket", o.socket, true);
    if (!st.ok()) {
        return st;
    }
    std::set<std::string> seen, aliases;
    for (const std::string &s : o.segments) {
        if (!IsValidSegmentName(s)) {
            return Bad("segment", "'" + (HasControlChar(s) ? std::string("?") : s) +
                                      "': segment names are 1..31 characters of A-Z a-z 0-9 "
                                      ". _ - (not . or ..)");
        }
        if (!seen.insert(s).second) {
            return Bad("segment", "'" + s + "' given twice");
        }
        if (!aliases.insert(ShmemAlias(s)).second) {
            return Bad("segment", "'" + s +
                                      "' and another segment would both get the device alias '" +
                                      ShmemAlias(s) + "' ('.' becomes '-' in aliases)");
        }
    }
    return Status::OK();
}

void AppendShmem(std::string *x, const DomainXmlOptions &o, const std::string &seg,
                 const char *indent) {
    std::string i = indent;
    *x += i + "<shmem name='" + XmlEscape(seg) + "' role='master'>\n";
    *x += i + "  <model type='ivshmem-doorbell'/>\n";
    *x += i + "  <server path='" + XmlEscape(o.socket) + "'/>\n";
    *x += i + "  <msi vectors='1' ioeventfd='off'/>\n";
    *x += i + "  <alias name='" + XmlEscape(ShmemAlias(seg)) + "'/>\n";
    *x += i + "</shmem>\n";
}

void AppendOverride(std::string *x, const DomainXmlOptions &o, const char *indent) {
    std::string i = indent;
    *x += i + "<qemu:override>\n";
    for (const std::string &seg : o.segments) {
        *x += i + "  <qemu:device alias='" + XmlEscape(ShmemAlias(seg)) + "'>\n";
        *x += i + "    <qemu:frontend>\n";
        *x += i + "      <qemu:property name='dsm' type='bool' value='true'/>\n";
        *x += i + "      <qemu:property name='segment' type='string' value='" + XmlEscape(seg) +
              "'/>\n";
        *x += i + "    </qemu:frontend>\n";
        *x += i + "  </qemu:device>\n";
    }
    *x += i + "</qemu:override>\n";
}

bool EndsWith(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

const char kDomainXmlUsage[] =
    "usage: dshmctl domain-xml --name NAME [options]   a libvirt domain with dshm segments\n"
    "       dshmctl domain-xml --snippet --segment SEG... [--socket PATH]\n"
    "\n"
    "  --name NAME          domain name (required unless --snippet)\n"
    "  --uuid UUID          domain UUID (default: libvirt picks one)\n"
    "  --memory MIB         guest RAM in MiB (default 128)\n"
    "  --vcpus N            virtual CPUs (default 1)\n"
    "  --type kvm|qemu      accelerator: kvm (default) or qemu (TCG)\n"
    "  --emulator PATH      dshm's patched QEMU (default /usr/bin/qemu-system-x86_64)\n"
    "  --segment SEG        attach dshm segment SEG (repeatable: one device each)\n"
    "  --socket PATH        dshmd's client socket (default /run/dshm/dshmd.sock)\n"
    "  --kernel PATH        direct kernel boot: kernel image\n"
    "  --initrd PATH        direct kernel boot: initramfs\n"
    "  --cmdline TEXT       direct kernel boot: kernel command line\n"
    "  --disk PATH          a disk image (virtio; qcow2 if the name ends in .qcow2, else raw)\n"
    "  --console-log PATH   serial console appended to this file (default: a pty)\n"
    "  --snippet            print only the <shmem> devices and the <qemu:override> block\n"
    "                       to paste into an existing domain\n"
    "\n"
    "The output is for `virsh define`; such a domain migrates with a plain\n"
    "`virsh migrate --live`.  Line by line explanation: docs/domain-xml.md.\n";

std::string XmlEscape(std::string_view s) {
    std::string r;
    r.reserve(s.size());
    for (char c : s) {
        switch (c) {
            case '&':
                r += "&amp;";
                break;
            case '<':
                r += "&lt;";
                break;
            case '>':
                r += "&gt;";
                break;
            case '\'':
                r += "&apos;";
                break;
            case '"':
                r += "&quot;";
                break;
            default:
                r += c;
        }
    }
    return r;
}

std::string ShmemAlias(std::string_view segment) {
    std::string a = "ua-dshm-" + std::string(segment);
    std::replace(a.begin(), a.end(), '.', '-');
    return a;
}

Status BuildDomainXml(const DomainXmlOptions &o, std::string *out) {
    Status st = Check(o);
    if (!st.ok()) {
        return st;
    }
    std::string x;
    if (o.snippet) {
        // No "--" in a comment: XML forbids it (so not the option's name).
        x += "<!-- dshm segments (a dshmctl domain-xml snippet): put the <shmem> elements into\n";
        x += "     <devices>, the <qemu:override> block at the end of <domain>, and declare\n";
        x += "     xmlns:qemu='" + std::string(kQemuXmlns) + "' on <domain>. -->\n";
        for (const std::string &seg : o.segments) {
            AppendShmem(&x, o, seg, "");
        }
        AppendOverride(&x, o, "");
        *out = std::move(x);
        return Status::OK();
    }
    x +=
        "<!-- Generated by dshmctl domain-xml: a VM with dshm segments (docs/domain-xml.md). -->\n";
    x += "<domain type='" + o.type + "' xmlns:qemu='" + kQemuXmlns + "'>\n";
    x += "  <name>" + XmlEscape(o.name) + "</name>\n";
    if (!o.uuid.empty()) {
        x += "  <uuid>" + XmlEscape(o.uuid) + "</uuid>\n";
    }
    x += "  <memory unit='MiB'>" + std::to_string(o.memory_mib) + "</memory>\n";
    x += "  <vcpu>" + std::to_string(o.vcpus) + "</vcpu>\n";
    x += "  <os>\n";
    x += "    <type arch='x86_64' machine='pc'>hvm</type>\n";
    if (!o.kernel.empty()) {
        x += "    <kernel>" + XmlEscape(o.kernel) + "</kernel>\n";
        if (!o.initrd.empty()) {
            x += "    <initrd>" + XmlEscape(o.initrd) + "</initrd>\n";
        }
        if (!o.cmdline.empty()) {
            x += "    <cmdline>" + XmlEscape(o.cmdline) + "</cmdline>\n";
        }
    } else {
        x += "    <boot dev='hd'/>\n";
    }
    x += "  </os>\n";
    x += "  <features>\n";
    x += "    <acpi/>\n";
    x += "  </features>\n";
    x += "  <on_poweroff>destroy</on_poweroff>\n";
    x += "  <on_reboot>restart</on_reboot>\n";
    x += "  <on_crash>destroy</on_crash>\n";
    x += "  <devices>\n";
    x += "    <emulator>" + XmlEscape(o.emulator) + "</emulator>\n";
    if (!o.disk.empty()) {
        const char *format = EndsWith(o.disk, ".qcow2") ? "qcow2" : "raw";
        x += "    <disk type='file' device='disk'>\n";
        x += std::string("      <driver name='qemu' type='") + format + "'/>\n";
        x += "      <source file='" + XmlEscape(o.disk) + "'/>\n";
        x += "      <target dev='vda' bus='virtio'/>\n";
        x += "    </disk>\n";
    }
    x += "    <controller type='usb' model='none'/>\n";
    if (!o.console_log.empty()) {
        x += "    <serial type='file'>\n";
        x += "      <source path='" + XmlEscape(o.console_log) + "' append='on'/>\n";
        x += "      <target port='0'/>\n";
        x += "    </serial>\n";
    } else {
        x += "    <serial type='pty'>\n";
        x += "      <target port='0'/>\n";
        x += "    </serial>\n";
    }
    for (const std::string &seg : o.segments) {
        AppendShmem(&x, o, seg, "    ");
    }
    x += "    <memballoon model='none'/>\n";
    x += "  </devices>\n";
    if (!o.segments.empty()) {
        AppendOverride(&x, o, "  ");
    }
    x += "</domain>\n";
    *out = std::move(x);
    return Status::OK();
}

Status ParseDomainXmlArgs(int argc, char **argv, DomainXmlOptions *o, bool *help) {
    *help = false;
    for (int i = 0; i < argc; i++) {
        std::string arg = argv[i], value;
        bool has_value = false;
        if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos) {
            value = arg.substr(arg.find('=') + 1);
            arg = arg.substr(0, arg.find('='));
            has_value = true;
        }
        if (arg == "--help" || arg == "-h") {
            *help = true;
            return Status::OK();
        }
        if (arg == "--snippet") {
            if (has_value) {
                return Status::Proto("--snippet takes no value");
            }
            o->snippet = true;
            continue;
        }
        static const char *const kWithValue[] = {
            "--name",   "--uuid",   "--memory", "--vcpus",   "--type", "--emulator",   "--segment",
            "--socket", "--kernel", "--initrd", "--cmdline", "--disk", "--console-log"};
        bool known = false;
        for (const char *k : kWithValue) {
            known = known || arg == k;
        }
        if (!known) {
            return Status::Proto("unknown argument '" + arg + "'");
        }
        if (!has_value) {
            if (i + 1 >= argc) {
                return Status::Proto(arg + " needs a value");
            }
            value = argv[++i];
        }
        if (arg == "--memory" || arg == "--vcpus") {
            errno = 0;
            char *end = nullptr;
            unsigned long long n = strtoull(value.c_str(), &end, 10);
            if (value.empty() || value[0] == '-' || *end || errno) {
                return Status::Proto(arg + ": '" + value + "' is not a number");
            }
            if (arg == "--memory") {
                o->memory_mib = n;
            } else {
                o->vcpus = n > kMaxVcpus ? 0 : static_cast<uint32_t>(n);
            }
        } else if (arg == "--name") {
            o->name = value;
        } else if (arg == "--uuid") {
            o->uuid = value;
        } else if (arg == "--type") {
            o->type = value;
        } else if (arg == "--emulator") {
            o->emulator = value;
        } else if (arg == "--segment") {
            o->segments.push_back(value);
        } else if (arg == "--socket") {
            o->socket = value;
        } else if (arg == "--kernel") {
            o->kernel = value;
        } else if (arg == "--initrd") {
            o->initrd = value;
        } else if (arg == "--cmdline") {
            o->cmdline = value;
        } else if (arg == "--disk") {
            o->disk = value;
        } else if (arg == "--console-log") {
            o->console_log = value;
        }
    }
    return Status::OK();
}

}  // namespace dshm

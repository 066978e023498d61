// domain_xml: libvirt domain XML for VMs that use dshm segments
// (`dshmctl domain-xml`, docs/domain-xml.md).
//
// Contract:
//   - BuildDomainXml() is a pure function of its options: no I/O, no
//     environment, the same options always give the same text.
//   - Each segment becomes one stock libvirt <shmem> device (model
//     ivshmem-doorbell, role='master', server = the dshmd socket, alias
//     ShmemAlias(SEG) = 'ua-dshm-SEG' with '.' -> '-') plus one <qemu:device> entry of a single
//     <qemu:override> block that sets the device's dsm=true and segment=SEG properties.  The text
//     is accepted by libvirt 9.0's schema (virt-xml-validate) and by `virsh define`; `virsh migrate
//     --live` needs nothing else.
//   - Every value is checked before it is used: names, paths and the kernel
//     command line must be valid UTF-8 without control characters (or
//     U+FFFE, U+FFFF, which XML does not allow); domain names may not
//     contain '/'; paths must be absolute; segment names follow
//     IsValidSegmentName() (frame.h) and may neither repeat nor map to
//     the same alias (e.g. "a.b" and "a-b"); the UUID, when
//     given, is 32 hex digits in the 8-4-4-4-12 form.  Every value that
//     passes is XML-escaped (& < > ' ") in the output.  A rejected option
//     yields a non-OK Status naming the option, and no text.
//   - ParseDomainXmlArgs() turns `dshmctl domain-xml` arguments into options
//     (the same checks happen later in BuildDomainXml()).
//
// Thread safety: plain functions on values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "status.h"

namespace dshm {

struct DomainXmlOptions {
    std::string name;                                      // required
    std::string uuid;                                      // empty: libvirt picks one
    uint64_t memory_mib = 128;                             // guest RAM
    uint32_t vcpus = 1;                                    //
    std::string type = "kvm";                              // kvm | qemu (TCG)
    std::string emulator = "/usr/bin/qemu-system-x86_64";  // patched QEMU
    std::vector<std::string> segments;                     // one <shmem> each
    std::string socket = "/run/dshm/dshmd.sock";           // dshmd client socket
    std::string kernel, initrd, cmdline;                   // direct kernel boot
    std::string disk;                                      // a disk image (raw, or qcow2 by name)
    std::string console_log;                               // serial console to a file (append)
    bool snippet = false;  // only the <shmem> devices and the <qemu:override> block
};

// The XML namespace of libvirt's QEMU extensions (<qemu:override>).
inline constexpr char kQemuXmlns[] = "http://libvirt.org/schemas/domain/qemu/1.0";

// "&amp;" etc. for & < > ' " (for text and for attribute values).
std::string XmlEscape(std::string_view s);

// The alias of a segment's <shmem> device: "ua-dshm-" + segment, with every
// '.' replaced by '-': libvirt keeps a user alias ("ua-" prefix) only if it
// is made of [A-Za-z0-9_-] and silently replaces any other one with its own
// (then the <qemu:override> would match no device).
std::string ShmemAlias(std::string_view segment);

// Checks `o` and builds the whole domain (or, with o.snippet, only the
// devices and the override block to paste into an existing domain).
Status BuildDomainXml(const DomainXmlOptions &o, std::string *out);

// Parses the arguments after "domain-xml" (argv[0] is the first option).
// On a usage problem returns a non-OK Status whose message says what.
// *help is set when --help was given (then nothing else is checked).
Status ParseDomainXmlArgs(int argc, char **argv, DomainXmlOptions *o, bool *help);

// Usage text of `dshmctl domain-xml`.
extern const char kDomainXmlUsage[];

}  // namespace dshm

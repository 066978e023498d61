#!/bin/bash
# timeout: 180
# `dshmctl domain-xml` writes domains that libvirt takes as they are:
#   - its output (a full domain with one and with several segments, a name
#     and paths that need escaping, and a --snippet pasted into a domain)
#     passes libvirt's own schema check (virt-xml-validate);
#   - bad names and segment names are refused (exit 2, no XML);
#   - `virsh define` on a simulated libvirt host accepts every domain and
#     keeps our device aliases (libvirt silently replaces an alias it does
#     not like, and then the <qemu:override> would match nothing);
#   - the QEMU command line libvirt builds (`virsh domxml-to-native`) has, for
#     every segment, an ivshmem-doorbell device with dsm=true and
#     segment=SEG whose chardev is a socket on the dshmd socket, and no
#     master=on (QEMU refuses it with dsm=on).
source "$(dirname "$0")/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/libvirt.sh"
t_need_built
command -v virt-xml-validate >/dev/null || t_fail "virt-xml-validate missing (package libvirt-clients: make deps)"
tb_init 1
work=$TB_STATE/xml
mkdir -p "$work"

validate() {  # validate FILE: libvirt's schema accepts FILE as a domain
    local out
    out=$(virt-xml-validate "$1" domain 2>&1) || { cat "$1" >&2; t_fail "virt-xml-validate: $out"; }
    t_assert_match "$out" 'validates$' "virt-xml-validate of ${1##*/}"
}

t_step "full domains validate against libvirt's schema"
"$DSHMCTL" domain-xml --name one --segment seg >"$work/one.xml"
"$DSHMCTL" domain-xml --name several --uuid 6f1c2a53-7b0e-4d6a-9a43-0b8f3c1d2e4f \
    --memory 256 --vcpus 2 --type qemu --emulator /opt/dshm/bin/qemu-system-x86_64 \
    --segment counters --segment big.seg_1 --segment a-b_c --socket /run/dshm/other.sock \
    --kernel /boot/vmlinuz --initrd /boot/initrd.img --cmdline 'console=ttyS0 dshm.cmd="a && b < c"' \
    --disk /var/lib/images/several.qcow2 --console-log /var/log/several.console >"$work/several.xml"
escaped_name="it's <a> \"vm\" & more"
"$DSHMCTL" domain-xml --name "$escaped_name" --emulator "/opt/q&a/qemu-system-x86_64" \
    --segment s1 --socket "/run/d'shm/dshmd.sock" --kernel "/boot/<k>" >"$work/escaped.xml"
for f in one several escaped; do validate "$work/$f.xml"; done
t_assert_eq "$(grep -c '<shmem ' "$work/several.xml")" 3 "shmem devices of a 3-segment domain"
t_assert_eq "$(grep -c '<qemu:device ' "$work/several.xml")" 3 "override entries of a 3-segment domain"
t_assert_file_match "$work/escaped.xml" "<name>it&apos;s &lt;a&gt; &quot;vm&quot; &amp; more</name>" "escaped name"
t_assert_file_match "$work/escaped.xml" "<server path='/run/d&apos;shm/dshmd.sock'/>" "escaped socket path"
t_assert_file_match "$work/several.xml" "<alias name='ua-dshm-big-seg_1'/>" "alias of a dotted segment"
# A --socket before the subcommand is domain-xml's default socket.
t_assert_match "$("$DSHMCTL" --socket /run/x/d.sock domain-xml --name d --segment s)" \
    "<server path='/run/x/d.sock'/>" "dshmctl --socket P domain-xml uses P"

t_step "a --snippet is well-formed XML as printed, and pasted into a hand-written domain validates"
# A snippet is a fragment (several elements, the qemu: prefix declared by the
# domain it goes into): well-formed inside an element that declares the
# prefix, comment included (XML forbids "--" in a comment).
"$DSHMCTL" domain-xml --snippet --segment p1 --segment p2 >"$work/snippet.xml"
{
    echo "<fragment xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
    cat "$work/snippet.xml"
    echo "</fragment>"
} >"$work/snippet-wrapped.xml"
if command -v xmllint >/dev/null; then
    out=$(xmllint --noout "$work/snippet-wrapped.xml" 2>&1) || { cat "$work/snippet.xml" >&2; t_fail "xmllint of the snippet: $out"; }
else
    out=$(python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' "$work/snippet-wrapped.xml" 2>&1) ||
        { cat "$work/snippet.xml" >&2; t_fail "the snippet is not well-formed: $out"; }
fi
t_assert_file_match "$work/snippet.xml" '^<!-- ' "the snippet's header comment"
{
    echo "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
    echo "  <name>pasted</name><memory unit='MiB'>64</memory>"
    echo "  <os><type arch='x86_64'>hvm</type></os>"
    echo "  <devices>"
    "$DSHMCTL" domain-xml --snippet --segment p1 --segment p2 | sed -n '/^<shmem/,/^<\/shmem>/p'
    echo "  </devices>"
    "$DSHMCTL" domain-xml --snippet --segment p1 --segment p2 | sed -n '/^<qemu:override>/,/^<\/qemu:override>/p'
    echo "</domain>"
} >"$work/pasted.xml"
validate "$work/pasted.xml"
t_assert_eq "$(grep -c '<shmem ' "$work/pasted.xml")" 2 "shmem devices of the snippet"

t_step "bad values are refused, with no XML"
refuse() {  # refuse WHAT ARGS...: dshmctl domain-xml ARGS exits 2, prints nothing
    local what=$1 rc=0 out
    shift
    out=$("$DSHMCTL" domain-xml "$@" 2>"$work/err") || rc=$?
    t_assert_eq "$rc" 2 "exit status for $what"
    t_assert_eq "$out" "" "output for $what"
    [ -s "$work/err" ] || t_fail "no message for $what"
}
refuse "no name" --segment s
refuse "a / in the name" --name a/b --segment s
refuse "a newline in the name" --name "$(printf 'a\nb')" --segment s
refuse "a segment with a /" --name vm --segment a/b
refuse "a segment with a quote" --name vm --segment "a'b"
refuse "a segment with a space" --name vm --segment "a b"
refuse "a segment with <" --name vm --segment "a<b"
refuse "a 32-character segment" --name vm --segment 0123456789abcdef0123456789abcdef
refuse "a repeated segment" --name vm --segment s --segment s
refuse "segments with one alias" --name vm --segment a.b --segment a-b
refuse "a relative socket" --name vm --segment s --socket dshmd.sock
refuse "a bad type" --name vm --type xen
refuse "a bad uuid" --name vm --uuid 1234
refuse "an unknown option" --name vm --bogus
refuse "a snippet without segments" --snippet
t_assert_match "$(cat "$work/err")" "snippet" "message of the last refusal"

t_step "libvirtd on a simulated host defines every domain"
lv_start h1
"$DSHMCTL" domain-xml --name several --type "$(lv_domain_type)" --emulator "$(lv_emulator)" \
    --segment counters --segment big.seg_1 --segment a-b_c \
    --kernel "$IMAGE_KERNEL" --initrd "$IMAGE_INITRD" --cmdline 'console=ttyS0 dshm.cmd="a && b < c"' \
    --console-log /var/log/libvirt/qemu/several.console >"$work/h1-several.xml"
"$DSHMCTL" domain-xml --name "$escaped_name" --type "$(lv_domain_type)" --emulator "$(lv_emulator)" \
    --segment s1 --kernel "$IMAGE_KERNEL" >"$work/h1-escaped.xml"
for f in h1-several h1-escaped; do
    validate "$work/$f.xml"
    lv_define h1 "$work/$f.xml" >/dev/null
done
names=$(lv_virsh h1 list --all --name)
grep -qFx -- "$escaped_name" <<<"$names" || t_fail "libvirt does not list the domain '$escaped_name': $names"

t_step "libvirt keeps the aliases and builds the dsm devices"
check_segments() {  # check_segments DOMAIN SOCKET SEG...
    local dom=$1 sock=$2 xml argv seg alias n
    shift 2
    xml=$(lv_virsh h1 dumpxml "$dom")
    argv=$(lv_virsh h1 domxml-to-native qemu-argv --domain "$dom")
    t_assert_eq "$(grep -o '"driver":"ivshmem-doorbell"' <<<"$argv" | wc -l || true)" $# "ivshmem-doorbell devices of $dom"
    for seg in "$@"; do
        alias=ua-dshm-${seg//./-}
        t_assert_match "$xml" "<alias name='$alias'/>" "libvirt kept the alias of $seg"
        t_assert_match "$argv" "\"driver\":\"ivshmem-doorbell\",\"id\":\"$alias\",\"chardev\":\"char$alias\"[^}]*\"dsm\":true,\"segment\":\"$seg\"" \
            "device of segment $seg (dsm=true, segment=$seg)"
        t_assert_match "$argv" "-chardev socket,id=char$alias,path=$sock( |\$)" "chardev of $seg on the dshmd socket"
    done
    n=$(grep -c '"driver":"ivshmem-doorbell"[^}]*"master"' <<<"${argv// -/$'\n'-}" || true)
    t_assert_eq "$n" 0 "ivshmem-doorbell devices with a master property (QEMU refuses master=on with dsm=on)"
    t_say "   $dom: $# dsm device(s) as expected"
}
check_segments several /run/dshm/dshmd.sock counters big.seg_1 a-b_c
check_segments "$escaped_name" /run/dshm/dshmd.sock s1
t_say "ok"

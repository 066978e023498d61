# shellcheck shell=bash
# Real libvirtd on testbed hosts.  Source after common.sh, testbed.sh and
# dshmd.sh.
#
#   lv_start HOST          writes HOST's libvirtd.conf and qemu.conf and starts
#                          libvirtd on it (TCP on the host's testbed address,
#                          no auth; unix socket in the host's own /run);
#                          returns once qemu:///system answers
#   lv_virsh HOST ARGS...  virsh against HOST's libvirtd (qemu:///system there)
#   lv_define HOST XML     virsh define XML on HOST
#   lv_migrate SRC DOMAIN DST [virsh migrate args...]
#                          `virsh migrate --live DOMAIN qemu+tcp://DST/system`
#                          run on SRC; prints the wall time in ms
#   lv_emulator            a QEMU for domains: our patched binary behind a
#                          wrapper that adds the firmware paths (-L), which
#                          libvirt has no setting for
#   lv_hostpath HOST PATH  where PATH of HOST (one of its private libvirt
#                          directories) is seen from the test, e.g. a console
#                          log under /var/log/libvirt
#   lv_jobinfo SRC DOMAIN  `virsh domjobinfo --completed` of the last
#                          migration, as "key=value" lines (times in ms,
#                          sizes in bytes)
#   lv_domain_type         kvm or qemu (TCG), after t_accel
#   lv_guest_xml NAME "guest command" [dshmctl domain-xml args...]
#                          the one builder of a domain of our guest image:
#                          dshmctl domain-xml with lv_domain_type,
#                          lv_emulator, the image's kernel and initramfs and
#                          the command; the console is appended to
#                          /var/log/libvirt/qemu/NAME.console of whichever
#                          host runs it, unless ARGS give a --console-log
#   lv_console HOST NAME   that console log of HOST, as seen from the test
#   lv_add_devices "XML"   filter: inserts XML before </devices>
#   lv_wait_console HOST NAME REGEX [SECS]
#                          waits for REGEX in that console log (fails the
#                          test with the console and QEMU log tails)
#
# DSM guests followed across migrations (lv_vm_*): one console log per
# domain, $TB_STATE/NAME.console, that every host appends to.
#   lv_vm_start HOST NAME SEGMENT "guest command"
#                          lv_guest_xml of NAME with SEGMENT and that console
#                          log; defines and starts it on HOST
#   lv_vm_console NAME     that console log
#   lv_vm_wait NAME REGEX [SECS]
#                          waits for REGEX in it (fails the test with its tail)
#   lv_vm_status NAME      the guest command's exit status (or none)
#
# What two libvirtd on one machine need (docs/domain-xml.md, "Testing"):
# the testbed's per-host mount namespace (libvirt's state paths are fixed),
# per-host /etc/passwd and /etc/group with libvirt-qemu and kvm, a distinct
# host_uuid, /etc/hosts naming every host, stdio_handler = "file" (no
# virtlogd here), and migration_host/migration_address = the host's own
# address so that the destination offers its own address as the migration
# URI.  Everything runs inside the host's PID namespace, so the testbed
# teardown kills libvirtd and every QEMU it started.

LV_PORT=16509

lv_emulator() {
    local w=$TB_STATE/lv-bin/qemu-system-x86_64
    if [ ! -x "$w" ]; then
        mkdir -p "${w%/*}"
        printf '#!/bin/sh\n# QEMU for libvirt domains on the testbed: our binary plus firmware paths.\nexec %q %s "$@"\n' \
            "$QEMU_BIN" "${QEMU_FIRMWARE[*]}" >"$w.tmp"
        chmod +x "$w.tmp"
        mv "$w.tmp" "$w"
    fi
    echo "$w"
}

lv_hostpath() {
    local h=$1 p=$2 d
    for d in etc/libvirt var/lib/libvirt var/log/libvirt var/cache/libvirt; do
        if [ "$p" = "/$d" ] || [[ $p == "/$d/"* ]]; then
            echo "$TB_STATE/$h/${d//\//-}${p#/"$d"}"
            return 0
        fi
    done
    t_fail "lv_hostpath: $p is not in a private libvirt directory of $h"
}

lv_start() {
    local h=$1 addr etc
    addr=$(tb_addr "$h")
    etc=$TB_STATE/$h/etc-libvirt
    mkdir -p "$TB_STATE/$h/var-log-libvirt/qemu"
    cat >"$etc/libvirtd.conf" <<EOF
# libvirtd of testbed host $h (written by tests/lib/libvirt.sh)
listen_tls = 0
listen_tcp = 1
auth_tcp = "none"
listen_addr = "$addr"
tcp_port = "$LV_PORT"
unix_sock_dir = "/run/libvirt"
unix_sock_group = "root"
unix_sock_rw_perms = "0770"
auth_unix_rw = "none"
auth_unix_ro = "none"
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
    cat >"$etc/qemu.conf" <<EOF
# QEMU driver of testbed host $h (written by tests/lib/libvirt.sh)
# QEMU's stdout/stderr go to /var/log/libvirt/qemu/DOMAIN.log directly: no virtlogd.
stdio_handler = "file"
# QEMU runs as root (it needs userfaultfd with kernel faults for dsm=on) and
# libvirt leaves file ownership and labels alone.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
# No cgroups (the testbed shares the machine's cgroup tree) and no private
# /dev per domain.
cgroup_controllers = [ ]
namespaces = [ ]
# Incoming migrations listen on, and are announced with, this host's address
# (every host name of the testbed resolves to one machine).
migration_address = "$addr"
migration_host = "$addr"
EOF
    tb_spawn "$h" libvirtd /usr/sbin/libvirtd --listen -f /etc/libvirt/libvirtd.conf
    local i
    for i in $(seq 1 100); do
        if tb_run "$h" virsh -q -c qemu:///system uri >/dev/null 2>&1; then
            return 0
        fi
        tb_alive "$h" libvirtd || break
        sleep 0.1
    done
    tail -n 20 "$(tb_log "$h" libvirtd)" "$TB_STATE/$h/var-log-libvirt/libvirtd.log" >&2 2>/dev/null || true
    t_fail "libvirtd on $h did not come up"
}

lv_virsh() {
    local h=$1
    shift
    tb_run "$h" virsh -q -c qemu:///system "$@"
}

lv_define() { lv_virsh "$1" define "$2"; }

lv_migrate() {
    local src=$1 dom=$2 dst=$3 t0 t1
    shift 3
    t0=$(date +%s%N)
    lv_virsh "$src" migrate --live "$dom" "qemu+tcp://$dst/system" "$@" >&2 || return
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
}

lv_jobinfo() {
    lv_virsh "$1" domjobinfo --completed --keep-completed "$2" | awk -F: '
        function num(v,   a) { split(v, a, " "); return a[1] }
        function bytes(v,   a, n) {
            split(v, a, " "); n = a[1]
            if (a[2] == "KiB") n *= 1024; else if (a[2] == "MiB") n *= 1048576
            else if (a[2] == "GiB") n *= 1073741824
            return sprintf("%.0f", n)
        }
        { k = $1; v = $2; for (i = 3; i <= NF; i++) v = v ":" $i; gsub(/^ +| +$/, "", v) }
        k == "Time elapsed"     { print "total_ms=" num(v) }
        k == "Total downtime"   { print "downtime_ms=" num(v) }
        k == "Data processed"   { print "data_bytes=" bytes(v) }
        k == "Data total"       { print "data_total_bytes=" bytes(v) }
        k == "Memory processed" { print "memory_bytes=" bytes(v) }'
}

lv_domain_type() { [ "$(t_accel)" = kvm ] && echo kvm || echo qemu; }

lv_guest_xml() {
    local name=$1 cmd=$2 a console=/var/log/libvirt/qemu/$1.console
    shift 2
    for a in "$@"; do [ "$a" != --console-log ] || console=""; done
    "$DSHMCTL" domain-xml --name "$name" --type "$(lv_domain_type)" --emulator "$(lv_emulator)" \
        --kernel "$IMAGE_KERNEL" --initrd "$IMAGE_INITRD" \
        --cmdline "$(t_guest_cmdline "$cmd")" \
        ${console:+--console-log "$console"} "$@"
}

lv_console() { lv_hostpath "$1" "/var/log/libvirt/qemu/$2.console"; }

lv_add_devices() {
    awk -v add="$1" '/^  <\/devices>$/ { print add } { print }'
}

# lv_wait_console HOST NAME REGEX [SECS]: like vm_wait, for a libvirt guest.
lv_wait_console() {
    t_wait_console "$1" "$2" "$3" "${4:-120}" "$(lv_console "$1" "$2")" \
        "$(lv_hostpath "$1" "/var/log/libvirt/qemu/$2.log")"
}

lv_vm_console() { echo "$TB_STATE/$1.console"; }

lv_vm_start() {
    local h=$1 name=$2 seg=$3 cmd=$4 xml=$TB_STATE/$2.xml
    : >"$(lv_vm_console "$name")"
    lv_guest_xml "$name" "$cmd" --segment "$seg" --console-log "$(lv_vm_console "$name")" >"$xml" ||
        t_fail "dshmctl domain-xml failed"
    lv_define "$h" "$xml" >/dev/null || t_fail "virsh define $name on $h failed"
    lv_virsh "$h" start "$name" >/dev/null || t_fail "virsh start $name on $h failed"
}

lv_vm_wait() {
    local name=$1 re=$2 t=${3:-120}
    t_wait_for_file_match "$(lv_vm_console "$name")" "$re" "$t" && return 0
    echo "---- console of $name:" >&2
    tail -n 30 "$(lv_vm_console "$name")" >&2 2>/dev/null
    t_fail "$name: '$re' did not appear within ${t}s"
}

lv_vm_status() { t_guest_exit_status "$(lv_vm_console "$1")"; }

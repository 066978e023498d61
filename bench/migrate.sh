#!/bin/bash
# Live migration with `virsh migrate --live` (issue 5): stock ivshmem-plain
# master regions against dshm segments of the same sizes, on two simulated
# libvirt hosts (tests/lib/libvirt.sh).
#
# Configurations, each a 128 MiB TCG/KVM guest of our image, migrated h1 -> h2
# (a dsm guest from the segment's current owner to the other host):
#   none        no shared region (the floor: guest RAM only)
#   stock-N     a stock <shmem role='master'> ivshmem-plain region of N MiB
#               (QEMU migrates it as RAM)
#   dsm-N       a dshm segment of N MiB owned by h1 (dshmctl domain-xml;
#               the segment is not in the migration stream)
# The guest first writes every byte of the region (dshm-tool fill; for a
# dsm segment under lock 0, released before the migration, as a data-race-free
# program does), so its pages are really used, then ticks once a second; the
# migration starts when the fill is done and counts only once the guest ticks
# on the destination.
#
# dshmd runs with `move-ownership = false` unless --move-ownership is given:
# the VM moves without the segment, which stays on h1 (the weakly linked
# case; the destination fetches pages on demand after the migration).  With
# --move-ownership the guest is strongly linked and the segment's ownership
# follows it right after the migration (not part of the measured time); the
# next run of that configuration then starts on the new owner.
#
# Per run: wall time of `virsh migrate` and `virsh domjobinfo --completed`
# (total time, downtime, data processed).  Repetitions are interleaved
# (rep 1 of every configuration, then rep 2, ...) so that load changes hit
# every configuration alike.  The summary gives medians with [min..max] and
# the dsm/stock ratios per size.
#
# Usage: bench/migrate.sh [--reps 3] [--sizes "16 256"] [--move-ownership] [--out FILE]
#   (root; default output bench/results/migrate-YYYYMMDD-HHMMSS.txt)
# Runs its own testbed (TB_PREFIX=dshmm, TB_NET=198.18.3): it does not
# collide with the tests, but numbers taken while they run are noisy.
set -euo pipefail
export TB_PREFIX=${TB_PREFIX:-dshmm} TB_NET=${TB_NET:-198.18.3}
source "$(dirname "$0")/../tests/lib/common.sh"
source "$TOP/tests/lib/testbed.sh"
source "$TOP/tests/lib/dshmd.sh"
source "$TOP/tests/lib/libvirt.sh"

reps=3 sizes="16 256" result_file="" move=false
cmdline="$0 $*"
while [ $# -gt 0 ]; do
    case $1 in
    --reps) reps=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --out) result_file=$2; shift 2 ;;
    --move-ownership) move=true; shift ;;
    *) echo "usage: $0 [--reps N] [--sizes \"16 256\"] [--move-ownership] [--out FILE]" >&2; exit 2 ;;
    esac
done
t_need_built
result_file=${result_file:-$TOP/bench/results/migrate-$(date +%Y%m%d-%H%M%S).txt}
mkdir -p "$(dirname "$result_file")"
exec > >(tee "$result_file") 2>&1
echo "# $cmdline"
echo "# $(date -u), $(uname -r), $(nproc) cpus, accel $(t_accel), commit $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$TOP" diff --quiet 2>/dev/null || echo '+changes'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# guest 128 MiB, $(lv_domain_type) domains; libvirt $(virsh --version); dshmd move-ownership = $move; every migration: virsh migrate --live DOMAIN qemu+tcp://DST/system"

segs=""
for n in $sizes; do segs+=" d$n:${n}M:1"; done
tb_init 2
ds_cluster 2 "$segs" "[policy]\nmove-ownership = $move"
lv_start h1
lv_start h2

configs=(none)
for n in $sizes; do configs+=("stock-$n"); done
for n in $sizes; do configs+=("dsm-$n"); done

guest_cmd() {  # guest_cmd [FILL-COMMAND]: fill, say so, then tick
    echo "${1:+$1 >/dev/null || echo FILL-FAILED; }echo FILLED; i=0; while true; do i=\$((i+1)); echo tick \$i; sleep 1; done"
}

declare -A wall total down data
run_one() {  # run_one CONFIG REP (REP 0: a warm-up, not counted)
    local cfg=$1 rep=$2 name="$1-r$2" n=${1#*-} xml=$TB_STATE/$1-r$2.xml ms info
    case $cfg in
    none) lv_guest_xml "$name" "$(guest_cmd "")" >"$xml" ;;
    stock-*)
        lv_guest_xml "$name" "$(guest_cmd "dshm-tool fill --length ${n}M --pattern 5")" | lv_add_devices "    <shmem name='$name' role='master'>
      <model type='ivshmem-plain'/>
      <size unit='M'>$n</size>
    </shmem>" >"$xml" ;;
    dsm-*)
        lv_guest_xml "$name" "$(guest_cmd "dshm-lock d$n --timeout 600 -- dshm-tool fill -d d$n --length ${n}M --pattern 5")" \
            --segment "d$n" >"$xml" ;;
    esac
    # A dsm guest starts on the segment's current owner (ownership may have
    # followed the previous run's guest) and moves to the other host, so
    # that every run starts from the same situation.
    local src=h1 dst=h2
    if [[ $cfg == dsm-* ]] && [ "$(ds_stat h1 "d$n" owner)" = 2 ]; then src=h2 dst=h1; fi
    lv_define "$src" "$xml" >/dev/null
    lv_virsh "$src" start "$name" >/dev/null
    lv_wait_console "$src" "$name" '^(FILLED|FILL-FAILED)' 600
    grep -q '^FILL-FAILED' "$(lv_console "$src" "$name")" && t_fail "$name: the guest could not fill its region"
    lv_wait_console "$src" "$name" '^tick 1([^0-9]|$)' 60
    ms=$(lv_migrate "$src" "$name" "$dst") || t_fail "$name: virsh migrate failed"
    info=$(lv_jobinfo "$src" "$name")
    lv_wait_console "$dst" "$name" '^tick' 60
    if [ "$rep" != 0 ]; then
        wall[$cfg]+=" $ms"
        total[$cfg]+=" $(sed -n 's/^total_ms=//p' <<<"$info")"
        down[$cfg]+=" $(sed -n 's/^downtime_ms=//p' <<<"$info")"
        data[$cfg]+=" $(sed -n 's/^data_bytes=//p' <<<"$info")"
    fi
    printf '%-10s %-7s %s->%s wall %5s ms  %s\n' "$cfg" "$([ "$rep" = 0 ] && echo warm-up || echo "rep $rep")" \
        "$src" "$dst" "$ms" "$(tr '\n' ' ' <<<"$info")"
    lv_virsh "$dst" destroy "$name" >/dev/null
    lv_virsh "$src" undefine "$name" >/dev/null
    tb_run h1 rm -f "/dev/shm/$name"
    tb_run h2 rm -f "/dev/shm/$name"
}

echo "== runs (the first migration of a fresh pair of libvirtd is slower: one warm-up, not counted)"
run_one none 0
for rep in $(seq 1 "$reps"); do
    for cfg in "${configs[@]}"; do run_one "$cfg" "$rep"; done
done
echo "== dshmd after the runs"
ds_ctl h1 segments | grep -v '^  client'

# median/min/max of a list of numbers
stats() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%s %s %s\n", m, a[1], a[NR]}'; }
med() { stats "$1" | cut -d' ' -f1; }
fmt() {  # fmt LIST [DIVISOR]: "median [min..max]"
    stats "$1" | awk -v d="${2:-1}" '{printf "%.0f [%.0f..%.0f]", $1/d, $2/d, $3/d}'
}

echo
echo "== summary: medians over $reps runs [min..max]; data = domjobinfo 'Data processed'"
printf '%-10s %-22s %-22s %-20s %-20s\n' config "wall ms" "total ms" "downtime ms" "data MiB"
for cfg in "${configs[@]}"; do
    printf '%-10s %-22s %-22s %-20s %-20s\n' "$cfg" "$(fmt "${wall[$cfg]}")" "$(fmt "${total[$cfg]}")" \
        "$(fmt "${down[$cfg]}")" "$(fmt "${data[$cfg]}" 1048576)"
done
echo
echo "== dsm / stock, same size (medians)"
printf '%-6s %-12s %-12s %-12s %-12s\n' MiB wall total downtime data
for n in $sizes; do
    printf '%-6s' "$n"
    for m in wall total down data; do
        declare -n arr=$m
        awk -v a="$(med "${arr[dsm-$n]}")" -v b="$(med "${arr[stock-$n]}")" \
            'BEGIN { if (b > 0) printf " %-12s", sprintf("%.2f", a / b); else printf " %-12s", "n/a" }'
        unset -n arr
    done
    echo
done
echo "# results in $result_file"

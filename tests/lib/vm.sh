# shellcheck shell=bash
# DSM guests on testbed hosts.  Source after common.sh, testbed.sh, dshmd.sh.
#
#   vm_start HOST NAME SEGMENT "guest command" [extra QEMU args]
#       boots a guest on HOST whose ivshmem-doorbell device (dsm=on) is
#       attached to SEGMENT through the host's dshmd.  The guest runs the
#       command and powers off.  Its console is logged in
#       $TB_STATE/HOST/NAME.console; QEMU's own output in NAME.log.
#   vm_send HOST NAME "line"        types a line on the guest's console (once
#                                   the guest runs its command)
#   vm_wait HOST NAME REGEX [SECS]  waits for REGEX in the console log
#   vm_console HOST NAME            path of the console log
#   vm_status HOST NAME             the guest command's exit status (or none)

vm_console() { echo "$TB_STATE/$1/$2.console"; }

vm_start() {
    local h=$1 name=$2 seg=$3 cmd=$4
    shift 4
    local dir=$TB_STATE/$h args
    mapfile -t args < <(t_qemu_guest_args "$cmd" con0)
    tb_spawn "$h" "$name" "$QEMU_BIN" "${args[@]}" -name "$name" \
        -chardev "socket,id=con0,path=$dir/$name.serial,server=on,wait=off,logfile=$dir/$name.console" \
        -chardev "socket,path=$DSHM_SOCK,id=dshm0" \
        -device "ivshmem-doorbell,chardev=dshm0,vectors=0,dsm=on,segment=$seg" "$@"
}

vm_send() {
    # Input typed before the guest's serial driver is up is lost: wait until
    # the guest runs its command (the console tty buffers from then on).
    vm_wait "$1" "$2" '^dshm-guest: running' 120
    tb_run "$1" python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode())
s.close()' "$TB_STATE/$1/$2.serial" "$3"
}

vm_wait() {
    t_wait_console "$1" "$2" "$3" "${4:-120}" "$(vm_console "$1" "$2")" "$(tb_log "$1" "$2")"
}

vm_status() { t_guest_exit_status "$(vm_console "$1" "$2")"; }

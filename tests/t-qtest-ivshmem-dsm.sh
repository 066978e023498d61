#!/bin/bash
# timeout: 300
# Our qtest for ivshmem-doorbell with dsm=on (qemu-patches/0006), run
# against the patched binary: a scripted dshmd stand-in inside the test
# serves HELLO/ATTACH/UFFD and the lock requests; the test drives the DSM
# registers of BAR0.  (Without a userfaultfd it skips: not a pass here.)
source "$(dirname "$0")/lib/common.sh"
t_need_built
t_run_qtest ivshmem-dsm-test
t_assert_qtests ivshmem-dsm registers lock refused invalid dshmd-gone protocol-error reset refusal hotplug

#!/bin/bash
# timeout: 300
# QEMU's own ivshmem test suite, built from the same source tree, run against
# our patched binary: proves the patches leave stock ivshmem intact.
source "$(dirname "$0")/lib/common.sh"
t_need_built
t_run_qtest ivshmem-test -m slow
t_assert_qtests ivshmem single hotplug memdev pair server hotplug-q35

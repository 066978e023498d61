#!/bin/bash
# Builds the fuzz targets into build/meson-fuzz (clang, ASan + UBSan,
# libFuzzer): `make fuzz`, tests/run.sh and fuzz/campaign.sh call it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build/meson-fuzz}
if [ ! -f "$dir/build.ninja" ]; then
    CC=clang CXX=clang++ meson setup "$dir" -Dfuzz=true -Db_sanitize=address,undefined \
        -Db_lundef=false -Dguest_static=false
fi
ninja -C "$dir" fuzz

#!/usr/bin/env bash
# fpsim-harness vm boots Debian's newest 7.2 kernel (7.2.13 today; FPSIM_VM_TEST_KERNEL picks
# another) under qemu and crosschecks a few spec traces inside (one of them with a call that
# blocks): every trace passes, the report names the traces as on the host, and nothing is left
# behind. Exit 77 (skip) when qemu is missing or the kernel cannot be fetched. The line, not the
# exact version, so the test keeps running once sid moves on.
set -u
harness=$1
source_dir=$2
. "$(dirname "$0")/../check_lib.sh"
cd "$source_dir" || exit 1
kernel=${FPSIM_VM_TEST_KERNEL:-7.2}
traces=(traces/spec/00-init-passthrough.trace traces/spec/01-init-no-passthrough.trace
        traces/spec/34-release-with-write-in-flight.trace traces/spec/52-cached-open-blocks-during-pdw.trace)
"$harness" vm --kernel "$kernel" --timeout 150 -- crosscheck "${traces[@]}" >"$tmp/out" 2>&1 &
pid=$!
wait "$pid"; rc=$?
cat "$tmp/out"
if [ "$rc" -eq 77 ]; then exit 77; fi
check "exit 0" [ "$rc" -eq 0 ]
for t in "${traces[@]}"; do
  check "PASS $t" grep -qF "PASS $t [" "$tmp/out"
done
check "the package that ran is named" grep -qE "^== vm $kernel: linux-(binary|image)-[^ ]+ [^ ]+ [(]" "$tmp/out"
check "boot and run times" grep -qE "passed $kernel .*boot [0-9.]+ s, crosscheck [0-9.]+ s" "$tmp/out"
check "summary" grep -qx 'fpsim-harness vm: 1 kernels: 1 passed, 0 failed, 0 skipped' "$tmp/out"
check "no qemu left" [ -z "$(pgrep -f -- "-name fpsim-harness-vm-$pid")" ]
check "no staging dir left" [ -z "$(ls -d /tmp/fpsim-vm.* 2>/dev/null)" ]

# The CONFIG_FUSE_FS=m path, on a .deb made here around the same vmlinuz: its config says =m and its
# fuse.ko.xz is not a module, so the guest's insmod must be tried and fail (FUSE is built into this
# vmlinuz, so the trace still passes). Its own cache, removed with $tmp. It runs in a working
# directory under /tmp, as a clean clone in CI may be: the guest's /tmp must still hold it.
vmlinuz=$(ls "${XDG_CACHE_HOME:-$HOME/.cache}"/fpsim/kernels/linux-*-"$kernel"*-amd64_*/vmlinuz 2>/dev/null | head -1)
if [ -n "$vmlinuz" ]; then
  d=$tmp/deb
  mkdir -p "$d/DEBIAN" "$d/boot" "$d/lib/modules/0.0-test/kernel/fs/fuse"
  cp "$vmlinuz" "$d/boot/vmlinuz-0.0-test"
  printf 'CONFIG_FUSE_FS=m\nCONFIG_FUSE_PASSTHROUGH=y\n' >"$d/boot/config-0.0-test"
  echo "not a module" | xz >"$d/lib/modules/0.0-test/kernel/fs/fuse/fuse.ko.xz"
  printf 'Package: linux-image-fpsim-test\nVersion: 1\nArchitecture: amd64\nMaintainer: fpsim\nDescription: test\n' \
    >"$d/DEBIAN/control"
  dpkg-deb -b -Znone "$d" "$tmp/test.deb" >/dev/null
  mkdir "$tmp/work" && cp traces/spec/00-init-passthrough.trace "$tmp/work/t.trace"
  (cd "$tmp/work" && XDG_CACHE_HOME=$tmp/cache "$harness" vm --kernel "$tmp/test.deb" --accel tcg \
    --timeout 150 -- crosscheck t.trace) >"$tmp/deb.out" 2>&1
  rc=$?
  cat "$tmp/deb.out"
  check ".deb with FUSE as a module: exit 0" [ "$rc" -eq 0 ]
  check ".deb: its package named" grep -q '^== vm .*test.deb: linux-image-fpsim-test 1 .*CONFIG_FUSE_FS=m, fuse.ko loaded by init' "$tmp/deb.out"
  check ".deb: init tried fuse.ko" grep -qx 'fpsim-harness vm: insmod fuse.ko failed' "$tmp/deb.out"
  check ".deb: the trace under /tmp ran" grep -qF "PASS t.trace [" "$tmp/deb.out"
fi
exit $fail

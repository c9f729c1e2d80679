#!/usr/bin/env bash
# fpsim-harness vm: a guest that does not end is killed at --timeout and reported (exit 1); SIGTERM
# and SIGKILL of fpsim-harness mid-run leave no qemu process, no staging directory and no mount;
# usage errors exit 2 before anything boots. Exit 77 (skip) when qemu is missing or the kernel
# cannot be fetched.
set -u
harness=$1
. "$(dirname "$0")/../check_lib.sh"
nothing_left() { # pid of the fpsim-harness that ran qemu
  for _ in $(seq 1 50); do
    [ -z "$(pgrep -f -- "-name fpsim-harness-vm-$1")" ] && break
    sleep 0.1
  done
  [ -z "$(pgrep -f -- "-name fpsim-harness-vm-$1")" ] && [ -z "$(ls -d /tmp/fpsim-vm.* 2>/dev/null)" ] &&
    [ "$(grep -c ' fuse' /proc/mounts)" -eq "$mounts" ]
}
wait_for_qemu() { # pid; up to 120 s (the first run may fetch the kernel)
  for _ in $(seq 1 1200); do
    pgrep -f -- "-name fpsim-harness-vm-$1" >/dev/null && return 0
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
mounts=$(grep -c ' fuse' /proc/mounts)
kernel=${FPSIM_VM_TEST_KERNEL:-7.2} # as vm_crosscheck.sh

"$harness" vm --kernel 'no such kernel' -- crosscheck x >"$tmp/usage" 2>&1
check "a bad --kernel is a usage error" [ $? -eq 2 ]
"$harness" vm --kernel 7.2.13 -- record --source . -o x -- true >"$tmp/usage" 2>&1
check "record cannot run in a guest" [ $? -eq 2 ]
"$harness" vm --kernel 7.2.13 -- crosscheck /nonexistent.trace >"$tmp/usage" 2>&1
check "a missing trace is a usage error" [ $? -eq 2 ]
PATH=/nonexistent "$harness" vm --kernel 7.2.13 -- fuzz --seconds 1 >"$tmp/noqemu" 2>&1
check "no qemu is exit 77 (skip)" [ $? -eq 77 ]
check "saying why in one line" grep -qx 'fpsim-harness vm: skipped: qemu-system-x86_64 not found (package qemu-system-x86)' "$tmp/noqemu"

# fuzz for 10 minutes never ends within a 25 s deadline (a boot takes ~7 s).
start=$(date +%s)
"$harness" vm --kernel "$kernel" --accel tcg --timeout 25 -- fuzz --seconds 600 >"$tmp/hang" 2>&1 &
pid=$!
wait "$pid"; rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$tmp/hang"
if [ "$rc" -eq 77 ]; then exit 77; fi
check "a hung guest is exit 1" [ "$rc" -eq 1 ]
check "reported as killed at the deadline" grep -q "FAILED $kernel .*killed at the --timeout deadline of 25 s" "$tmp/hang"
check "killed in time (${elapsed} s, fetch included)" [ "$elapsed" -lt 90 ]
check "nothing left after the deadline" nothing_left "$pid"

for sig in TERM INT KILL; do
  "$harness" vm --kernel "$kernel" --accel tcg --timeout 300 -- fuzz --seconds 600 >"$tmp/$sig" 2>&1 &
  pid=$!
  if ! wait_for_qemu "$pid"; then
    cat "$tmp/$sig"; check "qemu started for SIG$sig" false; continue
  fi
  sleep 2
  kill -"$sig" "$pid"
  wait "$pid"; rc=$?
  case $sig in TERM) want=143 ;; INT) want=130 ;; KILL) want=137 ;; esac
  check "SIG$sig: exit $want (got $rc)" [ "$rc" -eq "$want" ]
  check "SIG$sig: nothing left" nothing_left "$pid"
done
exit $fail

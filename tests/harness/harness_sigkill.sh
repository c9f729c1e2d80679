#!/usr/bin/env bash
# fpsim-harness killed with SIGKILL mid-run leaves nothing behind: no FUSE mount in the host
# namespace, no process stuck in the kernel, no temporary directory. Exit 77 (skip) where the
# harness cannot run at all.
set -u
harness=$1
traces=$2
"$harness" crosscheck --help >/dev/null 2>&1 || { echo "fpsim-harness not runnable"; exit 1; }
probe=$("$harness" crosscheck "$traces/spec/00-init-passthrough.trace" 2>&1); rc=$?
if [ "$rc" -eq 77 ]; then echo "skipped: $probe"; exit 77; fi
failed=0
for delay in 0.05 0.15 0.3 0.8 1.5; do
  before=$(ls -d /tmp/fpsim-harness.* 2>/dev/null | wc -l)
  "$harness" crosscheck "$traces" >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  # The guardian aborts the connections and cleans up within a few seconds.
  for _ in $(seq 1 50); do
    live=$(ps -eo stat=,args= | grep -c '[f]psim-harness crosscheck')
    dirs=$(ls -d /tmp/fpsim-harness.* 2>/dev/null | wc -l)
    [ "$live" -eq 0 ] && [ "$dirs" -le "$before" ] && break
    sleep 0.2
  done
  mounts=$(grep -cE ' fuse(\.fpsim)? ' /proc/mounts)
  if [ "$mounts" -ne 0 ] || [ "$live" -ne 0 ] || [ "$dirs" -gt "$before" ]; then
    echo "FAIL killed after ${delay}s: $mounts fuse mount(s), $live harness process(es), $dirs temp dir(s)"
    failed=1
  else
    echo "ok   killed after ${delay}s: nothing left"
  fi
done
exit $failed

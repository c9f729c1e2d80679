#!/usr/bin/env bash
# Fault soak: random faults (FPSIM_HARNESS_FAULT: kind, request or step, how) injected into random
# `kernel 6.18` spec traces, for about SECONDS (default 50) and at least 100 runs whose fault fired.
# Every run must end within its timeout, exit 3 with a report naming the trace when its fault fired
# (0 and "never fired" when it did not), and leave no FUSE mount in the host namespace, no
# /tmp/fpsim-harness.* directory and no harness process. Deadlines are short (--deadline-ms 50,
# --trace-timeout 5). The seed is printed first; FPSIM_SOAK_SEED=S replays the same sequence of
# runs (how many fit in the time depends on the machine). Exit 77 (skip) where the harness cannot
# run.
#
# usage: harness_soak.sh FPSIM_HARNESS TRACES_DIR [SECONDS]
set -u
harness=${1:?usage: harness_soak.sh FPSIM_HARNESS TRACES_DIR [SECONDS]}
traces=${2:?usage: harness_soak.sh FPSIM_HARNESS TRACES_DIR [SECONDS]}
budget=${3:-50}
seed=${FPSIM_SOAK_SEED:-20240611}
min_fired=100
hard_cap=$((budget + 60)) # seconds: enough for the minimum on a slow machine, and no more
run_timeout=20            # seconds per run: --trace-timeout 5 plus every abort and kill round

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fpsim-soak-test.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

probe=$("$harness" crosscheck "$traces/spec/00-init-passthrough.trace" 2>&1)
rc=$?
if [ "$rc" -eq 77 ]; then
  echo "skipped: $probe"
  exit 77
fi
[ "$rc" -eq 0 ] || { echo "FAIL the harness does not pass a plain trace (exit $rc):"; echo "$probe"; exit 1; }

mapfile -t candidates < <(grep -l '^kernel 6\.18$' "$traces"/spec/*.trace | sort)
[ "${#candidates[@]}" -gt 0 ] || { echo "FAIL no kernel 6.18 trace in $traces/spec"; exit 1; }

fuse_lines() { grep -hE 'fuse|fpsim' /proc/mounts /proc/self/mountinfo | sort; }
temp_dirs() { ls -d /tmp/fpsim-harness.* 2>/dev/null | sort; }
# The harness binary's processes, and any fpsim-harness zombie or D-state process (a child that
# cannot finish dying shows as "[fpsim-harness] <defunct>").
harness_procs() {
  ps -eo pid=,stat=,comm=,args= | awk -v h="$harness" '$4 == h || ($3 == "fpsim-harness" && $2 ~ /^[ZD]/) { print $1 }' | sort
}
mounts_seen=$(fuse_lines)
dirs_seen=$(temp_dirs)
procs_seen=$(harness_procs)
[ -z "$procs_seen" ] || echo "soak: note: fpsim-harness processes present before (not counted): $(echo $procs_seen)"

echo "soak: seed $seed (FPSIM_SOAK_SEED=$seed to replay), ${#candidates[@]} traces, ~${budget} s"
RANDOM=$seed

# Random choices in this shell only: a subshell would draw from a reseeded generator.
pick() { # pick NAME WORD...: NAME=one of the words
  local -n out=$1
  shift
  local words=("$@")
  out=${words[RANDOM % ${#words[@]}]}
}
# Weighted towards the requests every trace sends; FLUSH is rare, its close waits 3 s when withheld.
opcodes=(OPEN OPEN OPEN OPEN OPEN OPEN LOOKUP LOOKUP RELEASE RELEASE RELEASE WRITE WRITE WRITE
  READ READ FLUSH CREATE OPENDIR GETATTR SETATTR)
kinds=(silent-at silent-at garbage-at garbage-at kill-server-at kill-server-at-step kill-child-at kill-child-at)

runs=0 fired=0 hangs=0 leak_mounts=0 leak_dirs=0 leak_procs=0 unexpected=0 with_line=0
declare -A fired_by_kind=()
start=$SECONDS
while :; do
  elapsed=$((SECONDS - start))
  if [ "$elapsed" -ge "$hard_cap" ] || { [ "$elapsed" -ge "$budget" ] && [ "$fired" -ge "$min_fired" ]; }; then
    break
  fi
  pick t "${candidates[@]}"
  pick kind "${kinds[@]}"
  pick op "${opcodes[@]}"
  pick cmd run crosscheck
  n=$((1 + RANDOM % 3 / 2)) # 1 twice as often as 2
  case $kind in
  kill-server-at-step)
    steps=$(grep -cvE '^[[:space:]]*(#|$|fpsim-trace |kernel |title |check )' "$t")
    fault="$kind:$((1 + RANDOM % (steps + 2)))"
    ;;
  garbage-at)
    pick how unique short errno oversized
    fault="$kind:$op:$n:$how"
    ;;
  *) fault="$kind:$op:$n" ;;
  esac
  runs=$((runs + 1))
  t0=$(date +%s%N)
  FPSIM_HARNESS_FAULT=$fault timeout -k 5 "$run_timeout" "$harness" "$cmd" --deadline-ms 50 --trace-timeout 5 "$t" \
    >"$tmp/out" 2>&1
  rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  verdict=""
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    hangs=$((hangs + 1))
    verdict="HANG (killed after ${run_timeout} s)"
  elif grep -qF "fault $fault fired in process" "$tmp/out"; then
    fired=$((fired + 1))
    fired_by_kind[$kind]=$((${fired_by_kind[$kind]:-0} + 1))
    # A report names the trace, and the statement's line unless the fault hit in the teardown.
    read -r reported at_line < <(awk -v t="$t" '{ sub(/^ +/, "") }
      index($0, t) == 1 && /fault/ { r = 1; if (substr($0, length(t) + 1) ~ /^:[0-9]+: /) l = 1 }
      END { print r + 0, l + 0 }' "$tmp/out")
    if [ "$rc" -ne 3 ] || [ "$reported" -eq 0 ]; then
      unexpected=$((unexpected + 1))
      verdict="UNEXPECTED: fired, exit $rc, $([ "$reported" -eq 0 ] && echo "no report naming the trace" || echo "reported")"
    fi
    with_line=$((with_line + at_line))
  elif [ "$rc" -ne 0 ] || ! grep -qF "$t: fault $fault never fired" "$tmp/out"; then
    unexpected=$((unexpected + 1))
    verdict="UNEXPECTED: did not fire, exit $rc"
  fi
  # What is left once the harness's processes are gone (the guardian may take a moment).
  for _ in $(seq 1 50); do
    [ -z "$(comm -13 <(echo "$procs_seen") <(harness_procs))" ] && [ "$(temp_dirs)" == "$dirs_seen" ] && break
    sleep 0.1
  done
  procs=$(comm -13 <(echo "$procs_seen") <(harness_procs))
  new_mounts=$(comm -13 <(echo "$mounts_seen") <(fuse_lines) | grep -c .)
  new_dirs=$(comm -13 <(echo "$dirs_seen") <(temp_dirs) | grep -c .)
  if [ "$new_mounts" -ne 0 ] || [ "$new_dirs" -ne 0 ] || [ -n "$procs" ]; then
    leak_mounts=$((leak_mounts + new_mounts))
    leak_dirs=$((leak_dirs + new_dirs))
    [ -n "$procs" ] && leak_procs=$((leak_procs + 1))
    verdict="$verdict LEFT BEHIND: $new_mounts mount(s), $new_dirs temp dir(s), process(es): $(echo $procs)"
    # Counted once: what leaked stays the reference for the next runs.
    mounts_seen=$(fuse_lines)
    dirs_seen=$(temp_dirs)
    procs_seen=$(harness_procs)
  fi
  printf '  #%-3d %-5s %-34s %-10s exit %-3d %5d ms %s\n' "$runs" "$cmd" "$fault" "${t##*/spec/}" "$rc" "$ms" \
    "${verdict:-ok}"
  if [ -n "$verdict" ]; then
    echo "     repro: FPSIM_HARNESS_FAULT=$fault $harness $cmd --deadline-ms 50 --trace-timeout 5 $t"
    sed 's/^/     | /' "$tmp/out" | tail -40
  fi
done

by_kind=""
for k in "${!fired_by_kind[@]}"; do by_kind="$by_kind $k=${fired_by_kind[$k]}"; done
echo "soak: $fired of $runs runs fired their fault ($by_kind ), $with_line reported at file:line; $unexpected unexpected results, $leak_procs runs left processes, $((SECONDS - start)) s"
echo "soak: $runs runs, $leak_mounts leftover mounts, $hangs hangs, $leak_dirs leftover temp dirs"
status=0
[ $((leak_mounts + hangs + leak_dirs + leak_procs + unexpected)) -eq 0 ] || status=1
if [ "$fired" -lt "$min_fired" ]; then
  echo "FAIL only $fired runs fired their fault within ${hard_cap} s (at least $min_fired wanted)"
  status=1
fi
exit $status

#!/usr/bin/env bash
# The whole corpus crosschecked inside each kernel under qemu, with timings (ctest vm_corpus: about
# 25 s a kernel under TCG). Usage: tests/harness/vm_corpus.sh HARNESS [RUNS [KERNEL...]]
# (default: 1 run of 7.2.13, 7.3-rc7 and 6.12.117). With RUNS > 1, says whether every run gave the
# same verdict for every trace (a deadline too tight for emulation would flip "blocks" outcomes).
# Exit: the last run's exit status of fpsim-harness vm, or 1 when the runs' verdicts differ.
set -u
harness=$1
runs=${2:-1}
shift 2 2>/dev/null || shift $#
kernels=("$@")
[ ${#kernels[@]} -eq 0 ] && kernels=(7.2.13 7.3-rc7 6.12.117)
cd "$(dirname "$0")/../.." || exit 1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=()
for k in "${kernels[@]}"; do args+=(--kernel "$k"); done
rc=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s.%N)
  "$harness" vm "${args[@]}" -- crosscheck traces >"$out/run$i" 2>&1
  rc=$?
  [ "$rc" -eq 77 ] && { cat "$out/run$i"; exit 77; }
  end=$(date +%s.%N)
  echo "== run $i: exit $rc in $(echo "$end - $start" | bc) s"
  grep -E '^(fpsim-harness vm:|== vm |fpsim-harness crosscheck:|fpsim-harness: kernel |kernel: |FAIL |  )' "$out/run$i"
  # Every kernel must be one of fpsim's profiles: the probe names the one it matched.
  if grep -q 'matches no profile' "$out/run$i"; then
    echo "== run $i: a kernel matched no profile"
    rc=1
  fi
  # Per trace and kernel: PASS/FAIL/SKIP and, for a FAIL, its disagreement lines.
  awk '/^== vm /{if (v != "") print k, v; v = ""; k = $3}
       /^(PASS|FAIL|SKIP) /{if (v != "") print k, v; v = $1 " " $2}
       /^  /{v = v " | " $0}
       END{if (v != "") print k, v}' \
    "$out/run$i" >"$out/verdicts$i"
done
if [ "$runs" -gt 1 ]; then
  same=1
  for i in $(seq 2 "$runs"); do
    if ! diff -q "$out/verdicts1" "$out/verdicts$i" >/dev/null; then
      same=0
      echo "== run $i differs from run 1:"
      diff "$out/verdicts1" "$out/verdicts$i"
    fi
  done
  if [ "$same" -eq 1 ]; then echo "== $runs runs: every verdict the same"; else rc=1; fi
fi
exit $rc

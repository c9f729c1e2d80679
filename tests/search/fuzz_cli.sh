#!/bin/bash
# `fpsim fuzz` through the command line: usage errors (exit 2, one line on stderr), a clean run
# (exit 0, the summary line), a mutant found (exit 1), the counterexample written as a trace
# that parses and replays, and its repro line rerunning exactly that case.
#
# usage: fuzz_cli.sh FPSIM
# Prints one line per case ("ok   NAME" or "FAIL NAME: why") and exits 1 if any case failed.
set -u

FPSIM=${1:?usage: fuzz_cli.sh FPSIM}

source "$(dirname "$0")/../check_lib.sh"
# fpsim fuzz writes into the directory it runs in.
run() {
  (cd "$tmp" && "$FPSIM" "$@") >"$tmp/out" 2>"$tmp/err"
  rc=$?
}

# fpsim fuzz's own checks: one line on stderr.
for args in "--shard 2/2" "--shard 1" "--shard a/b" "--shard 0/0" "--shard 1/-2" \
  "--mutant no-such-bug" "--kernel 5.10" "--seconds 0"; do
  # shellcheck disable=SC2086
  run fuzz $args
  expect_rc 2
  expect_one_stderr_line "fpsim fuzz: "
  [[ "$args" == --shard* ]] && expect_one_stderr_line "fpsim fuzz: " "bad --shard"
  [[ "$args" == --mutant* ]] && expect_one_stderr_line "fpsim fuzz: " "unknown mutant 'no-such-bug'"
  [[ "$args" == --kernel* ]] &&
    expect_one_stderr_line "fpsim fuzz: " "unknown kernel profile '5.10'"
  [[ -s "$tmp/out" ]] && fail "something on stdout"
  report "usage: $args"
done

# CLI11's own checks (as for fpsim replay): exit 2, nothing on stdout.
for args in "--runs 5 --seconds 1" "--runs x" "--max-ops 1" "--no-such-option"; do
  # shellcheck disable=SC2086
  run fuzz $args
  expect_rc 2
  [[ -s "$tmp/out" ]] && fail "something on stdout"
  [[ -s "$tmp/err" ]] || fail "nothing on stderr"
  report "usage: $args"
done

run fuzz --seed 3 --runs 500 --shard 1/3 --out "$tmp/clean"
expect_rc 0
grep -qE '^fpsim fuzz: 167 passed, 0 failed \([0-9]+ cases/s, [0-9]+ statements/s\)$' "$tmp/out" ||
  fail "no summary line"
[[ -s "$tmp/err" ]] && fail "stderr is not a terminal, yet something was printed there"
[[ -e "$tmp/clean" ]] && fail "an output directory without a failure"
report "clean run, shard 1/3"

run fuzz --seed 3 --runs 2000 --mutant missing-put-on-refusal --out "$tmp/found"
expect_rc 1
grep -q '^fpsim fuzz: [0-9]* passed, 1 failed' "$tmp/out" || fail "no summary with 1 failure"
repro=$(sed -n 's/^  repro: //p' "$tmp/out")
[[ "$repro" == "fpsim fuzz --seed "*" --runs 1 --kernel "*" --mutant missing-put-on-refusal" ]] ||
  fail "repro line '$repro'"
mapfile -t written < <(find "$tmp/found" -name '*.trace')
if [[ ${#written[@]} -ne 1 ]]; then
  fail "${#written[@]} counterexamples written, expected 1"
else
  grep -q "^# repro: $repro\$" "${written[0]}" || fail "the file lacks the repro line"
  grep -q '^# failure: violation \[I6\]$' "${written[0]}" || fail "the file lacks the failure"
  # The file is a trace; on the unmutated model its expectations hold.
  "$FPSIM" replay "${written[0]}" >"$tmp/replay" 2>&1 || fail "replay of the counterexample failed"
  # The repro line reruns the same case: the same shrunk trace.
  read -ra words <<<"$repro"
  run "${words[@]:1}" --out "$tmp/again"
  expect_rc 1
  mapfile -t again < <(find "$tmp/again" -name '*.trace')
  if [[ ${#again[@]} -ne 1 ]]; then
    fail "the repro wrote ${#again[@]} counterexamples"
  else
    [[ "$(basename "${again[0]}")" == "$(basename "${written[0]}")" ]] || fail "repro: another case seed"
    diff <(grep -v '^#' "${again[0]}") <(grep -v '^#' "${written[0]}") >/dev/null ||
      fail "repro: another trace"
  fi
fi
report "mutant found, shrunk, written, reproduced"

finish fuzz_cli

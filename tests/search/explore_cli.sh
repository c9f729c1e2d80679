#!/bin/bash
# fpsim explore through the CLI: exit codes (0 clean, 1 counterexample, 2 usage), the summary
# line, a counterexample written with -o that fpsim replay parses.
#
# usage: explore_cli.sh FPSIM
set -u

FPSIM=${1:?usage: explore_cli.sh FPSIM}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fpsim-explore-cli.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
failures=0

# expect NAME RC [REGEX] -- ARGS...: runs fpsim ARGS, checks the exit code and that stdout
# matches REGEX (extended, per line).
expect() {
  local name=$1 want=$2 regex=$3
  shift 4
  "$FPSIM" "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  local why=""
  [[ $rc -eq $want ]] || why="exit $rc, expected $want"
  if [[ -n "$regex" ]] && ! grep -Eq "$regex" "$TMP/out"; then
    why+="${why:+; }no line matches /$regex/"
  fi
  if [[ -z "$why" ]]; then
    echo "ok   $name"
  else
    echo "FAIL $name: $why"
    echo "     stdout: $(head -c 800 "$TMP/out" | tr '\n' '|')"
    echo "     stderr: $(head -c 400 "$TMP/err" | tr '\n' '|')"
    failures=$((failures + 1))
  fi
}

summary='^fpsim explore: depth 4 complete, [0-9]+ states, [0-9]+ transitions, [0-9]+ states/s$'
expect clean-all-profiles 0 "$summary" -- explore --depth 4 --kernel all -q
if [[ $(grep -Ec "$summary" "$TMP/out") -ne 3 ]]; then
  echo "FAIL clean-all-profiles: expected one summary per profile"
  failures=$((failures + 1))
fi
expect shard-0-of-2 0 "$summary" -- explore --depth 4 --shard 0/2 -q
expect shard-1-of-2 0 "$summary" -- explore --depth 4 --shard 1/2 -q

expect mutant-violation 1 '^fpsim explore: counterexample at depth 4, ' -- \
  explore --mutant no-ebusy-check -q -o "$TMP/cex.trace"
grep -q '^fpsim explore: \[6.18\] violation at depth 4: \[I3\]' "$TMP/out" ||
  { echo "FAIL mutant-violation: no [I3] line"; failures=$((failures + 1)); }
# Without the mutant the counterexample replays clean.
expect counterexample-replays 0 '^fpsim replay: 1 passed, 0 failed$' -- replay "$TMP/cex.trace"
expect mutant-divergence 1 'divergence at depth 4: \[divergence\] the unmutated model returns ok, the mutant blocks' -- \
  explore --mutant null-fb-conflict --kernel 6.9 -q

expect bad-shard 2 '' -- explore --shard 2/2
expect bad-mutant 2 '' -- explore --mutant no-such-bug
expect bad-kernel 2 '' -- explore --kernel 5.10
expect bad-depth 2 '' -- explore --depth 40
expect bad-inodes 2 '' -- explore --inodes 0

[[ $failures -eq 0 ]] || { echo "$failures case(s) failed"; exit 1; }

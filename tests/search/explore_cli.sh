#!/bin/bash
# fpsim explore through the CLI: exit codes (0 clean, 1 counterexample, 2 usage), the summary
# line, a counterexample written with -o that fpsim replay parses.
#
# usage: explore_cli.sh FPSIM
set -u

FPSIM=${1:?usage: explore_cli.sh FPSIM}
source "$(dirname "$0")/../check_lib.sh"

# expect NAME RC [REGEX] -- ARGS...: one case: fpsim ARGS exits RC and a line of its stdout
# matches REGEX (extended).
expect() {
  local name=$1 want=$2 regex=$3
  shift 4
  run "$@"
  expect_rc "$want"
  [[ -z "$regex" ]] || grep -Eq "$regex" "$tmp/out" || fail "no line matches /$regex/"
  report "$name"
}

summary='^fpsim explore: depth 4 complete, [0-9]+ states, [0-9]+ transitions, [0-9]+ states/s$'
expect clean-all-profiles 0 "$summary" -- explore --depth 4 --kernel all -q
[[ $(grep -Ec "$summary" "$tmp/out") -eq 7 ]] || fail "expected one summary per profile"
report "clean-all-profiles: one summary each"
expect shard-0-of-2 0 "$summary" -- explore --depth 4 --shard 0/2 -q
expect shard-1-of-2 0 "$summary" -- explore --depth 4 --shard 1/2 -q

expect mutant-violation 1 '^fpsim explore: counterexample at depth 4, ' -- \
  explore --mutant no-ebusy-check -q -o "$tmp/cex.trace"
grep -q '^fpsim explore: \[6.18\] violation at depth 4: \[I3\]' "$tmp/out" || fail "no [I3] line"
report "mutant-violation: the [I3] line"
# Without the mutant the counterexample replays clean.
expect counterexample-replays 0 '^fpsim replay: 1 passed, 0 failed$' -- replay "$tmp/cex.trace"
expect mutant-divergence 1 'divergence at depth 4: \[divergence\] the unmutated model returns ok, the mutant blocks' -- \
  explore --mutant null-fb-conflict --kernel 6.9 -q

expect bad-shard 2 '' -- explore --shard 2/2
expect bad-mutant 2 '' -- explore --mutant no-such-bug
expect bad-kernel 2 '' -- explore --kernel 5.10
expect bad-depth 2 '' -- explore --depth 40
expect bad-inodes 2 '' -- explore --inodes 0

finish explore_cli

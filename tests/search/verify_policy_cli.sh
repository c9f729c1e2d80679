#!/bin/bash
# fpsim verify-policy through the CLI: what each built-in policy's exploration finds, exit codes
# (0 nothing found, 1 a counterexample, 2 usage), the counterexamples replaying and matching the
# ones in traces/policies (which the corpus cross-check runs on the kernel).
#
# usage: verify_policy_cli.sh FPSIM TRACES
set -u

FPSIM=${1:?usage: verify_policy_cli.sh FPSIM TRACES}
TRACES=${2:?usage: verify_policy_cli.sh FPSIM TRACES}
source "$(dirname "$0")/../check_lib.sh"

# expect NAME RC [REGEX] -- ARGS...: fpsim ARGS exits RC and a line of its stdout matches REGEX.
expect() {
  local name=$1 want=$2 regex=$3
  shift 4
  run "$@"
  expect_rc "$want"
  [[ -z "$regex" ]] || grep -Eq "$regex" "$tmp/out" || fail "no line matches /$regex/"
  report "$name"
}

# finds NAME POLICY STEPS REGEX [ARGS...]: the policy's first counterexample comes after STEPS
# client steps, says REGEX, replays, and is traces/policies/NAME.trace.
finds() {
  local name=$1 policy=$2 steps=$3 regex=$4
  shift 4
  run verify-policy --policy "$policy" -q -o "$tmp/$name.trace" "$@"
  expect_rc 1
  grep -Eq "^fpsim verify-policy: open-eio after $steps client steps: $regex" "$tmp/out" ||
    fail "no finding after $steps steps matching /$regex/"
  grep -q '^  replayed: as expected$' "$tmp/out" || fail "the counterexample did not replay as expected"
  cmp -s "$tmp/$name.trace" "$TRACES/policies/$name.trace" || fail "differs from traces/policies/$name.trace"
  report "$name"
}

nothing='^fpsim verify-policy: nothing found: depth 10 complete, [0-9]+ states, [0-9]+ transitions, .*every state within the bounds\)$'
expect hp-clean 0 "$nothing" -- verify-policy --policy hp -q
expect gofuse-clean-without-overlay 0 "$nothing" -- verify-policy --policy gofuse -q
expect cached-clean 0 '^fpsim verify-policy: nothing found: depth 6 complete' -- verify-policy --policy cached -q --depth 6
expect hp-merges 0 ' 0 behaved unlike the stored state$' -- verify-policy --policy hp -q --depth 6 --check-merges
# With a file on an overlay, short of the depth where hp's EIO comes.
expect stacked-merges 0 ' 0 behaved unlike the stored state$' -- \
  verify-policy --policy hp --stacked 1 --depth 2 --check-merges -q --inodes 3

finds per-open-eio per-open 2 '\[EIO\]'
finds close-after-reply-eio close-after-reply 1 '\[EIO\]'
finds hp-eloop-eio hp 3 '\[EIO\]' --stacked 1
finds gofuse-eloop-eio gofuse 3 '\[EIO\] .*; then the server closes backing id 1 \(f1\) while a file opened with it is open' \
  --stacked 1
expect counterexample-replays 0 '^fpsim replay: 1 passed, 0 failed$' -- replay "$tmp/gofuse-eloop-eio.trace"

# --from: each counterexample's server is the policy that wrote it; a trace whose server does
# something none does says where it departs from each.
for p in per-open-eio:per-open close-after-reply-eio:close-after-reply hp-eloop-eio:hp gofuse-eloop-eio:gofuse; do
  expect "from-${p%%:*}" 0 "^fpsim verify-policy: .*/${p%%:*}.trace: the server follows ${p#*:}\$" -- \
    verify-policy --from "$TRACES/policies/${p%%:*}.trace"
done
sed 's/^backing_close B2 => ok$//' "$TRACES/policies/per-open-eio.trace" >"$tmp/leaky.trace"
expect from-none 1 '^fpsim verify-policy: .*: no built-in policy does what this server does$' -- \
  verify-policy --from "$tmp/leaky.trace"
grep -Eq "^  per-open: departs at $tmp/leaky.trace:[0-9]+: the trace has \`\(the trace ends\)\`, the policy does \`backing_close B2\`$" \
  "$tmp/out" || fail "per-open's departure not named"
report from-none-says-where
expect from-missing 2 '' -- verify-policy --from "$tmp/no-such.trace"
expect from-and-policy 2 '' -- verify-policy --from "$tmp/leaky.trace" --policy hp

expect bad-policy 2 '' -- verify-policy --policy no-such-server
expect no-policy 2 '' -- verify-policy
expect bad-stacked 2 '' -- verify-policy --policy hp --stacked 3
expect bad-kernel 2 '' -- verify-policy --policy hp --kernel 5.10

finish verify_policy_cli

#!/bin/bash
# fpsim's command line on bad input: exit codes, file:line:col messages, and that nothing is
# replayed when any trace fails to parse. Also the happy-path flags that write or print results
# (--json, --annotate) and a failing expectation (exit 1).
#
# usage: cli_errors.sh FPSIM MALFORMED_DIR
# Prints one line per case ("ok   NAME" or "FAIL NAME: why") and exits 1 if any case failed.
set -u

FPSIM=${1:?usage: cli_errors.sh FPSIM MALFORMED_DIR}
MALFORMED=${2:?usage: cli_errors.sh FPSIM MALFORMED_DIR}
MALFORMED=${MALFORMED%/}

source "$(dirname "$0")/../check_lib.sh"

# Nothing was replayed: no PASS/FAIL line and no summary on stdout.
expect_nothing_replayed() {
  if grep -qE '^(PASS|FAIL) ' "$tmp/out"; then fail "a trace was replayed (PASS/FAIL on stdout)"; fi
  if grep -q '^fpsim replay: .* passed' "$tmp/out"; then fail "a replay summary on stdout"; fi
}

# refused NAME PREFIX FRAGMENT ARGS...: fpsim ARGS exits 2, replays nothing, and prints one line on
# stderr that starts with PREFIX and contains FRAGMENT.
refused() {
  local name=$1 prefix=$2 fragment=$3
  shift 3
  run "$@"
  expect_rc 2
  expect_nothing_replayed
  expect_one_stderr_line "$prefix" "$fragment"
  report "$name"
}

# ---------------------------------------------------------------------------------------------
# Every malformed trace: FILE|LINE|COL|a distinctive part of the message.
# ---------------------------------------------------------------------------------------------
EXPECT=(
  "01-missing-magic.trace|2|1|expected 'fpsim-trace 1' as the first statement"
  "02-wrong-version.trace|1|13|unsupported trace format version '2'"
  "03-empty.trace|1|1|empty trace"
  "04-unknown-op.trace|5|1|unknown statement 'fsync'"
  "05-use-before-declaration.trace|3|6|unknown handle 'H1': not declared before this line"
  "06-wrong-name-kind.trace|4|6|'B1' is a backing name, not a handle"
  "07-duplicate-handle.trace|5|6|duplicate handle 'H1': already declared at line 3"
  "08-duplicate-backing.trace|3|14|duplicate backing name 'B1': already declared at line 2"
  "09-open-before-init.trace|4|1|'open' before 'init'"
  "10-second-init.trace|3|1|a second 'init'"
  "11-header-after-statement.trace|3|1|'kernel' is a header"
  "12-unknown-kernel.trace|2|8|unknown kernel profile '7.0'"
  "13-bad-title.trace|2|1|expected 'title \"...\"'"
  "14-name-too-long.trace|3|6|invalid handle 'Hxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx': 65 bytes long, names are at most 64 bytes"
  "15-path-file-name.trace|3|9|'../etc/passwd' is a path"
  "16-unknown-option.trace|3|16|unknown open option 'o_sync'"
  "17-option-twice.trace|2|36|option 'passthrough' given twice"
  "18-missing-reply.trace|3|1|open: missing reply=R"
  "19-bad-number.trace|2|18|max_stack_depth: 'x' is not a valid number"
  "20-unknown-reply-flag.trace|3|29|unknown reply flag 'direct-io'"
  "21-reply-bit-32.trace|3|28|reply flag 'bit:32': bit must be 0..31"
  "22-cached-combined.trace|3|17|reply flag 'cached' means no flags"
  "23-reply-id-overflow.trace|3|29|backing id '99999999999' is not a 32-bit integer"
  "24-unknown-errno.trace|3|23|unknown errno 'EFOO'"
  "25-expectation-mismatch-op.trace|4|12|'id=1' is not an outcome read can have"
  "26-release-on-read.trace|4|17|+release applies to open and create, not read"
  "27-arrow-without-expectation.trace|3|26|'=>' without an expectation"
  "28-check-with-expectation.trace|3|15|a check has no expectation"
  "29-check-property-not-applicable.trace|4|15|check inode: 'refs=1' does not apply"
  "30-create-enosys.trace|3|21|create: reply=enosys is not supported"
  "31-invalid-utf8.trace|2|11|invalid UTF-8"
  "32-unknown-observation.trace|3|30|unknown observation '+released'"
  "33-crlf-late-error.trace|8|16|'iomode=passthrough': iomode is none, cached or uncached"
  "37-on-overlay-pipe.trace|3|22|on=overlay places a backing file or dir, not 'pipe'"
  # Limits (README "Limits"); the ones that take megabytes to reach are generated below.
  "34-line-too-long.trace|3|4097|line is 4132 bytes long: at most 4096 bytes per line"
  "36-name-far-too-long.trace|3|9|invalid file name 'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff...': 3000 bytes long, names are at most 64 bytes"
)

declare -A expected_files=()
for entry in "${EXPECT[@]}"; do
  IFS='|' read -r file line col fragment <<<"$entry"
  expected_files[$file]=1
  path="$MALFORMED/$file"
  if [[ ! -f "$path" ]]; then
    : >"$tmp/out"
    : >"$tmp/err"
    fail "missing file $path"
    report "malformed $file"
    continue
  fi
  refused "malformed $file" "$path:$line:$col: " "$fragment" replay "$path"
done

# Every file in the directory has an expectation above.
: >"$tmp/out"
: >"$tmp/err"
shopt -s nullglob
count=0
for path in "$MALFORMED"/*.trace; do
  count=$((count + 1))
  file=${path##*/}
  [[ -n "${expected_files[$file]:-}" ]] || fail "$file has no expectation in cli_errors.sh"
done
shopt -u nullglob
[[ $count -ge 12 ]] || fail "only $count malformed traces"
report "every malformed trace has an expectation"

# The whole directory at once: the first file (sorted) stops the run.
refused "malformed directory" "$MALFORMED/01-missing-magic.trace:2:1: " "expected 'fpsim-trace 1'" \
  replay "$MALFORMED"

# ---------------------------------------------------------------------------------------------
# Limits too large to keep in malformed/: generated here (sparse files where only the size
# matters). Each is refused with its own message, exit 2, nothing replayed.
# ---------------------------------------------------------------------------------------------
mkdir -p "$tmp/limits"

f="$tmp/limits/handles.trace"
{ printf 'fpsim-trace 1\ninit => ok\n'; seq -f 'opendir h%.0f reply=cached' 0 262144; } >"$f"
refused "limit: handles per trace" "$f:262147:9: " \
  "too many handles: a trace names at most 262144 (the name-count limit)" replay "$f"
rm -f "$f"

f="$tmp/limits/statements.trace"
{ printf 'fpsim-trace 1\ninit\n'; yes abort | head -n 1000000; } >"$f" # init is one of them
refused "limit: statements per trace" "$f:1000002:1: " \
  "more than 1000000 statements: a trace has at most 1000000 statements" replay "$f"
head -n 1000001 "$f" >"$tmp/limits/at-limit.trace"
run replay "$tmp/limits/at-limit.trace"
expect_rc 0
grep -qF "PASS $tmp/limits/at-limit.trace [6.18] 1000002 steps" "$tmp/out" || fail "no PASS line"
report "limit: 1000000 statements replay"
rm -f "$f"

# fpsim explain keeps every step's tables: it explains at most 10000 statements per trace.
head -n 10002 "$tmp/limits/at-limit.trace" >"$f"
run explain "$f"
expect_rc 2
if [[ -s "$tmp/out" ]]; then fail "explain printed something"; fi
expect_one_stderr_line "$f:10002:1: " "more than 10000 statements: fpsim explain explains at most 10000"
report "limit: statements per explained trace"
rm -f "$f" "$tmp/limits/at-limit.trace"

f="$tmp/limits/lines.trace"
{ printf 'fpsim-trace 1\n'; head -c 1048575 /dev/zero | tr '\0' '\n'; printf '# one line too many\n'; } >"$f"
refused "limit: lines per trace" "$f:1048577:1: " \
  "more than 1048576 lines: a trace has at most 1048576 lines" replay "$f"
rm -f "$f"

f="$tmp/limits/big.trace"
printf 'fpsim-trace 1\n' >"$f"
truncate -s 67108865 "$f"
refused "limit: trace file size" "$f:1:1: " \
  "trace is 67108865 bytes: at most 67108864 bytes (64 MiB) per trace file" replay "$f"
rm -f "$f"

d="$tmp/limits/many"
mkdir -p "$d"
for i in $(seq 0 10000); do printf 'fpsim-trace 1\n' >"$d/t$i.trace"; done
refused "limit: traces per run" "$d/t" \
  ".trace:1:1: more than 10000 traces in one run: at most 10000 trace files per run" replay "$d"
rm -rf "$d"

d="$tmp/limits/bytes"
mkdir -p "$d"
for i in $(seq 10 26); do # 17 sparse files of 16 MiB: each within its limit, 272 MiB together
  printf 'fpsim-trace 1\n' >"$d/t$i.trace"
  truncate -s 16777216 "$d/t$i.trace"
done
refused "limit: bytes per run" "$d/t26.trace:1:1: " \
  "add up to more than 268435456 bytes: at most 256 MiB of traces per run" replay "$d"
rm -rf "$d"

d="$tmp/limits/lines"
mkdir -p "$d"
for i in 1 2 3; do # 999,999 lines each, plus what follows the last line end
  { printf 'fpsim-trace 1\n'; head -c 999998 /dev/zero | tr '\0' '\n'; } >"$d/t$i.trace"
done
refused "limit: lines per run" "$d/t3.trace:" \
  "the traces of this run have more than 2000000 lines: at most 2000000 lines per run" replay "$d"
rm -rf "$d"

# ---------------------------------------------------------------------------------------------
# Usage errors
# ---------------------------------------------------------------------------------------------
GOOD="$tmp/good.trace"
cat >"$GOOD" <<'EOF'
fpsim-trace 1
kernel 6.18
title "a passthrough open, a read through the backing file, a clean close"
init passthrough max_stack_depth=1 => ok
backing_open B1 a.dat => id=1
open H1 a rdwr reply=passthrough@B1 => ok
read H1 => backing   # goes to the backing file
close H1 => ok
backing_close B1 => ok
check drained
EOF

run replay "$GOOD"
expect_rc 0
grep -qF "PASS $GOOD [6.18]" "$tmp/out" || fail "no PASS line"
[[ ! -s "$tmp/err" ]] || fail "stderr is not empty"
report "good trace passes"

missing="$tmp/no/such/dir/missing.trace"
refused "missing file" "$missing" "$missing" replay "$missing"

# A missing file next to a good one: still nothing replayed.
refused "good trace and a missing file" "$missing" "" replay "$GOOD" "$missing"

mkdir -p "$tmp/mixed/sub"
cp "$GOOD" "$tmp/mixed/a-good.trace"
printf 'fpsim-trace 1\ninit => ok\nopen H1 a reply=cached => ok\nfsync H1\n' >"$tmp/mixed/sub/b-bad.trace"
echo "not a trace" >"$tmp/mixed/notes.txt"
refused "directory with one good and one malformed trace" "$tmp/mixed/sub/b-bad.trace:4:1: " \
  "unknown statement 'fsync'" replay "$tmp/mixed"

# A malformed file named before a good one on the command line.
refused "malformed file then good file" "$tmp/mixed/sub/b-bad.trace:4:1: " "" \
  replay "$tmp/mixed/sub/b-bad.trace" "$GOOD"

refused "unknown --kernel 7.0" "" "'7.0'" replay --kernel 7.0 "$GOOD"

run
expect_rc 2
expect_nothing_replayed
[[ -s "$tmp/err" ]] || fail "no message on stderr"
report "no arguments"

run replay
expect_rc 2
expect_nothing_replayed
[[ -s "$tmp/err" ]] || fail "no message on stderr"
report "replay without a path"

run frobnicate "$GOOD"
expect_rc 2
expect_nothing_replayed
report "unknown subcommand"

mkdir -p "$tmp/empty-dir"
refused "directory without traces" "" "no *.trace files" replay "$tmp/empty-dir"

# ---------------------------------------------------------------------------------------------
# Replays
# ---------------------------------------------------------------------------------------------
WRONG="$tmp/wrong.trace"
cat >"$WRONG" <<'EOF'
fpsim-trace 1
kernel 6.18
# a cached reply opens fine: the EIO expectation is wrong
init passthrough max_stack_depth=1 => ok
open H1 a rdwr reply=cached => EIO
close H1 => ok
EOF
run replay "$WRONG"
expect_rc 1
grep -qF "FAIL $WRONG [6.18]" "$tmp/out" || fail "no FAIL line for the trace"
grep -qF "$WRONG:5: open H1 a rdwr reply=cached: expected EIO, got ok" "$tmp/out" ||
  fail "no '$WRONG:5: ... expected EIO, got ok' line"
grep -qF "fpsim replay: 0 passed, 1 failed" "$tmp/out" || fail "no summary"
[[ ! -s "$tmp/err" ]] || fail "stderr is not empty"
report "wrong expectation"

# A good and a failing trace: exit 1, both reported.
run replay "$GOOD" "$WRONG"
expect_rc 1
grep -qF "PASS $GOOD" "$tmp/out" || fail "no PASS line for the good trace"
grep -qF "FAIL $WRONG" "$tmp/out" || fail "no FAIL line for the wrong trace"
grep -qF "fpsim replay: 1 passed, 1 failed" "$tmp/out" || fail "no summary"
report "good and failing trace"

# CRLF line endings replay like LF ones.
sed 's/$/\r/' "$GOOD" >"$tmp/crlf.trace"
run replay "$tmp/crlf.trace"
expect_rc 0
report "CRLF trace replays"

run replay --json "$GOOD"
expect_rc 0
python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["passed"] == 1 and d["failed"] == 0, d; assert d["traces"][0]["passed"] is True, d' \
  <"$tmp/out" 2>>"$tmp/err" || fail "stdout is not the expected JSON"
report "--json on a good trace"

run replay --json "$WRONG"
expect_rc 1
python3 -c '
import json, sys
d = json.load(sys.stdin)
f = d["traces"][0]["failures"][0]
assert d["failed"] == 1 and f["line"] == 5 and f["expected"] == "EIO" and f["actual"] == "ok", d
' <"$tmp/out" 2>>"$tmp/err" || fail "stdout is not the expected JSON"
report "--json on a failing trace"

# --annotate fills in the outcomes of a trace without expectations; the result replays cleanly.
mkdir -p "$tmp/annotate"
ANN="$tmp/annotate/bare.trace"
cat >"$ANN" <<'EOF'
fpsim-trace 1
kernel 6.18
title "no expectations # yet"
init passthrough max_stack_depth=1 direct_io_allow_mmap
backing_open B1 a.dat
backing_open B2 a.dat flags=1
open H1 a rdwr reply=passthrough@B1   # keep this comment
read H1
open X1 b reply=passthrough@id=77
open D1 c rdwr reply=direct_io|parallel_direct_writes
write_begin W1 D1
open C1 c reply=cached
write_end W1
await C1
check inode a fb=B1
close H1
close C1
close D1
backing_close B1
EOF
run replay --annotate "$ANN"
expect_rc 0
grep -qF "# keep this comment" "$ANN" || fail "the comment was lost"
grep -qF 'title "no expectations # yet"' "$ANN" || fail "the title was changed"
for want in 'init passthrough max_stack_depth=1 direct_io_allow_mmap *=> ok$' \
  'backing_open B1 a.dat *=> id=1$' 'backing_open B2 a.dat flags=1 *=> EINVAL$' \
  'open H1 a rdwr reply=passthrough@B1 *=> ok  # keep this comment$' 'read H1 *=> backing$' \
  'open X1 b reply=passthrough@id=77 *=> EIO \+release$' 'write_begin W1 D1 *=> ok$' \
  'open C1 c reply=cached *=> blocks$' 'write_end W1 *=> fuse$' 'await C1 *=> ok$' \
  '^check inode a fb=B1$' 'close H1 *=> ok$' 'backing_close B1 *=> ok$'; do
  grep -qE "$want" "$ANN" || fail "no line matching /$want/"
done
report "--annotate fills in outcomes"
run replay "$ANN"
expect_rc 0
grep -qF "PASS $ANN" "$tmp/out" || fail "the annotated trace does not pass"
report "annotated trace replays"
cp "$ANN" "$tmp/annotated-once"
run replay --annotate "$ANN"
expect_rc 0
cmp -s "$ANN" "$tmp/annotated-once" || fail "annotating twice changed the file"
report "--annotate is idempotent"

# A corpus trace stripped of its expectations gets exactly its expectations back.
SPEC="$MALFORMED/../../../traces/spec/46-mmap-dio-shared-waits-for-writes.trace"
if [[ -f "$SPEC" ]]; then
  expectations() { # statement text and outcome per line, whitespace normalised, comments dropped
    sed -e 's/#.*//' "$1" | grep '=>' | sed -E 's/[[:space:]]+/ /g; s/ *=> */ => /; s/ $//'
  }
  sed -E 's/[[:space:]]*=>[^#]*//' "$SPEC" >"$tmp/annotate/spec.trace"
  if grep -q '=>' "$tmp/annotate/spec.trace"; then fail "stripping left an expectation"; fi
  run replay --annotate "$tmp/annotate/spec.trace"
  expect_rc 0
  diff <(expectations "$SPEC") <(expectations "$tmp/annotate/spec.trace") >"$tmp/diff" ||
    fail "annotated outcomes differ from the corpus: $(tr '\n' '|' <"$tmp/diff")"
  report "--annotate restores a corpus trace's expectations"
else
  fail "no corpus trace at $SPEC"
  report "--annotate restores a corpus trace's expectations"
fi

# fpsim bench --write-trace: the generated trace replays clean; an unwritable path is exit 2 and
# leaves nothing behind.
run bench --statements 4000 --write-trace "$tmp/bench.trace"
expect_rc 0
run replay "$tmp/bench.trace"
expect_rc 0
grep -qF "PASS $tmp/bench.trace [6.18] 4015 steps" "$tmp/out" || fail "the generated trace does not pass"
report "bench --write-trace writes a trace that replays"
run bench --write-trace "$tmp/no-such-dir/bench.trace"
expect_rc 2
expect_one_stderr_line "fpsim bench: cannot write $tmp/no-such-dir/bench.trace.tmp" ""
if compgen -G "$tmp/no-such-dir*" >/dev/null; then fail "something was written"; fi
report "bench --write-trace to an unwritable path"
run bench --statements 2000000 --write-trace "$tmp/too-long.trace"
expect_rc 2
if [[ -e "$tmp/too-long.trace" ]]; then fail "a trace over the statement limit was written"; fi
report "bench --statements past the trace limit is a usage error"

finish cli_errors

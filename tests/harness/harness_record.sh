#!/usr/bin/env bash
# fpsim-harness record on the running kernel: records `cat a` on a temporary copy of the harness's
# test data, checks that cat saw the real content, that the trace says what hp servers do, that
# `fpsim replay` accepts and agrees with it, that the source copy was not modified and that no FUSE
# mount was left in the host namespace. Also a write through the mount (the source stays as it was)
# and the usage errors. Exit 77 (skip) where the harness cannot run.
#
# usage: harness_record.sh FPSIM_HARNESS FPSIM TESTDATA_DIR
set -u
harness=${1:?usage: harness_record.sh FPSIM_HARNESS FPSIM TESTDATA_DIR}
fpsim=${2:?usage: harness_record.sh FPSIM_HARNESS FPSIM TESTDATA_DIR}
testdata=${3:?usage: harness_record.sh FPSIM_HARNESS FPSIM TESTDATA_DIR}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fpsim-harness-record-test.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
cp -r "$testdata" "$tmp/src"
cp -r "$testdata" "$tmp/pristine"

failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
ok() { echo "ok   $*"; }
fpsim_mounts() { grep -c ' fuse\.fpsim ' /proc/mounts; }

# 1. cat a, policy hp (the default).
"$harness" record --source "$tmp/src" -o "$tmp/cat.trace" -- cat a >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 77 ]; then
  echo "skipped: $(cat "$tmp/out" "$tmp/err")"
  exit 77
fi
if [ "$rc" -ne 0 ]; then
  fail "record cat a: exit $rc"
  cat "$tmp/out" "$tmp/err"
  exit 1
fi
ok "record cat a: exit 0"
cmp -s "$tmp/out" "$tmp/src/a" && ok "cat printed a's content through the mount" || fail "cat's output differs from a"
expected="init passthrough max_stack_depth=1 => ok
backing_open B1 a => id=1
open H1 a rdonly reply=passthrough|parallel_direct_writes@B1 => ok
close H1 => ok
backing_close B1 => ok"
actual=$(grep -v '^#' "$tmp/cat.trace" | grep -vE '^(fpsim-trace|kernel|title) ')
if [ "$actual" == "$expected" ]; then ok "the trace has the hp statements"; else
  fail "unexpected statements:"; echo "$actual"
fi
grep -q '^title "recorded: cat a"$' "$tmp/cat.trace" && ok "title names the command" || fail "title"
"$fpsim" replay "$tmp/cat.trace" >"$tmp/replay" 2>&1 && ok "fpsim replay passes" || {
  fail "fpsim replay"
  cat "$tmp/replay"
}

# 2. A write and a create through the mount land in the private copy, never in the source.
"$harness" record --source "$tmp/src" --policy cached -o "$tmp/write.trace" -- \
  sh -c 'echo changed > a; cat a b > new' >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && ok "record a write (cached): exit 0" || { fail "record a write: exit $rc"; cat "$tmp/err"; }
"$fpsim" replay "$tmp/write.trace" >"$tmp/replay" 2>&1 && ok "fpsim replay of the write passes" || {
  fail "fpsim replay of the write"
  cat "$tmp/replay"
}
diff -r "$tmp/pristine" "$tmp/src" >/dev/null && ok "the source directory is unchanged" || fail "the source changed"

# 3. Usage errors: exit 2, nothing written.
"$harness" record --source "$tmp/src" -o "$tmp/nf.trace" -- no-such-command-fpsim >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && [ ! -e "$tmp/nf.trace" ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
  ok "command not found: exit 2, one line, nothing written" || fail "command not found: exit $rc"
"$harness" record --source "$tmp/src" -o "$tmp/no/such/dir/x.trace" -- cat a >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && ok "unwritable -o: exit 2" || fail "unwritable -o: exit $rc"
if ls -A "$tmp" | grep -q '^\.'; then fail "a temporary output file was left behind"; fi

# 4. The command runs as the user who invoked sudo, not as root, unless --as-root.
SUDO_UID=65534 SUDO_GID=65534 "$harness" record --source "$tmp/src" -o "$tmp/as.trace" -- \
  sh -c 'echo "$(id -u):$(id -g)"; cat a >/dev/null && echo read-ok' >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && grep -qx '65534:65534' "$tmp/out" && grep -qx 'read-ok' "$tmp/out" &&
  ok "under sudo the command runs as SUDO_UID:SUDO_GID and reads through the mount" ||
  { fail "run as the invoking user: exit $rc, printed $(tr '\n' ' ' <"$tmp/out")"; cat "$tmp/err"; }
SUDO_UID=65534 SUDO_GID=65534 "$harness" record --as-root --source "$tmp/src" -o "$tmp/root.trace" -- \
  id -u >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && grep -qx '0' "$tmp/out" && ok "--as-root keeps root" || fail "--as-root: exit $rc"
SUDO_UID=nobody SUDO_GID=1 "$harness" record --source "$tmp/src" -o "$tmp/bad.trace" -- true >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 2 ] && [ ! -e "$tmp/bad.trace" ] && grep -q 'SUDO_UID' "$tmp/err" &&
  ok "malformed SUDO_UID: exit 2, says so, nothing run" || fail "malformed SUDO_UID: exit $rc"

[ "$(fpsim_mounts)" -eq 0 ] && ok "no fuse.fpsim mount in the host namespace" || fail "a fuse.fpsim mount leaked"
exit $((failures > 0))

#!/usr/bin/env bash
# A trace that names a path (../x, /etc/passwd, a/b, ..) where a file name belongs is refused by
# fpsim-harness with exit 2 and file:line:col before anything is mounted or created: no mount in
# the host namespace, no temporary directory. Runs without root too (the refusal comes first).
#
# usage: harness_refuses_paths.sh FPSIM_HARNESS
set -u
harness=${1:?usage: harness_refuses_paths.sh FPSIM_HARNESS}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
ok() { echo "ok   $*"; }
dirs_before=$(ls -d /tmp/fpsim-harness.* 2>/dev/null | sort)
mounts_before=$(grep -c ' fuse' /proc/mounts)

check() { # name, statement line (line 4 of the trace), column of the name
  local name=$1 stmt=$2 col=$3
  printf 'fpsim-trace 1\nkernel 6.18\ninit passthrough max_stack_depth=1 => ok\n%s\n' "$stmt" >"$tmp/t.trace"
  for cmd in run crosscheck; do
    "$harness" "$cmd" "$tmp/t.trace" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ "$rc" -eq 2 ] && grep -q "^$tmp/t.trace:4:$col: .*is a path" "$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ]; then
      ok "$cmd: $name refused: exit 2, $(cat "$tmp/err")"
    else
      fail "$cmd: $name: exit $rc, stderr: $(cat "$tmp/err")"
    fi
  done
}
check "backing file ../x" "backing_open B1 ../x => id=1" 17
check "mount file /etc/passwd" "open H1 /etc/passwd rdonly reply=cached => ok" 9
check "mount file .." "open H1 .. rdonly reply=cached => ok" 9
check "backing file a/b" "backing_open B1 a/b => id=1" 17
check "created file ../../etc/shadow" "create H1 ../../etc/shadow reply=cached => ok" 11

[ "$(grep -c ' fuse' /proc/mounts)" -eq "$mounts_before" ] && ok "no new FUSE mount" || fail "a FUSE mount appeared"
[ "$(ls -d /tmp/fpsim-harness.* 2>/dev/null | sort)" = "$dirs_before" ] && ok "no temporary directory created" ||
  fail "a temporary directory appeared"
exit $((failures > 0))

#!/usr/bin/env bash
# Fault injection (FPSIM_HARNESS_FAULT, README "Fault injection"): for each fault, fpsim-harness
# reports it at the statement it hit (file:line), exits 3 (130/143 when interrupted), and leaves
# no FUSE mount in the host namespace, no /tmp/fpsim-harness.* directory and no process behind:
#   (a) the server killed while statements run;  (b) a server that never answers;
#   (c) replies the kernel refuses;  (d) the client killed while blocked in open(2), by the fault
#   (the parent unsticks the dying child) and from outside with the harness itself (the guardian
#   cleans up);  (e) SIGINT and SIGTERM while a call is blocked; and malformed specs (exit 2).
# Exit 77 (skip) where the harness cannot run.
#
# usage: harness_faults.sh FPSIM_HARNESS
set -u
harness=${1:?usage: harness_faults.sh FPSIM_HARNESS}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fpsim-faults-test.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trace=$tmp/t.trace
# Line numbers matter: the reports are checked against them.
cat >"$trace" <<'EOF'
fpsim-trace 1
kernel 6.18
title "fault injection target"
init passthrough max_stack_depth=1 => ok
backing_open B1 a.dat => id=1
open P1 a rdwr reply=passthrough@B1 => ok
read P1 => backing
open C1 b rdwr reply=cached => ok
read C1 => fuse
write C1 => fuse
close C1 => ok
close P1 => ok
backing_close B1 => ok
EOF
# As `run` prints a statement's outcome, and a kernel-side report about it.
open_p1="$trace:6: open P1 a rdwr reply=passthrough@B1"
open_c1="$trace:8: open C1 b rdwr reply=cached"
close_c1="$trace:11: close C1"
at_open_p1="$trace:6: kernel open P1 a rdwr reply=passthrough@B1: violation:"
at_open_c1="$trace:8: kernel open C1 b rdwr reply=cached: violation:"
at_close_c1="$trace:11: kernel close C1: violation:"

failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
ok() { echo "ok   $*"; }

# What the harness must never leave behind, compared with what was there before the test.
fuse_lines() { grep -hE 'fuse|fpsim' /proc/mounts /proc/self/mountinfo | sort; }
temp_dirs() { ls -d /tmp/fpsim-harness.* 2>/dev/null | sort; }
# Every process of this harness binary (the harness, its isolated child, guardian and janitor), and
# any fpsim-harness process that is a zombie or in D state: a child that cannot finish dying shows
# as "[fpsim-harness] <defunct>" with a thread stuck in the kernel.
harness_procs() {
  ps -eo pid=,stat=,comm=,args= | awk -v h="$harness" '$4 == h || ($3 == "fpsim-harness" && $2 ~ /^[ZD]/) { print $1 }' | sort
}
new_procs() { comm -13 <(echo "$procs_before") <(harness_procs); }
mounts_before=$(fuse_lines)
dirs_before=$(temp_dirs)
procs_before=$(harness_procs)
[ -z "$mounts_before" ] || echo "note: fuse mounts present before the test (they are not counted):
$mounts_before"
[ -z "$procs_before" ] || echo "note: fpsim-harness processes present before the test (not counted): $(echo $procs_before)"

# Waits up to 10 s for the harness's processes to be gone, then checks that nothing is left.
check_clean() {
  local label=$1 procs="" i
  for i in $(seq 1 100); do
    procs=$(new_procs)
    [ -z "$procs" ] && [ "$(temp_dirs)" == "$dirs_before" ] && break
    sleep 0.1
  done
  local left=""
  [ "$(fuse_lines)" == "$mounts_before" ] || left="$left fuse mount(s): $(fuse_lines | tr '\n' ' ');"
  [ "$(temp_dirs)" == "$dirs_before" ] || left="$left temp dir(s): $(temp_dirs | tr '\n' ' ');"
  [ -z "$procs" ] || left="$left process(es): $(echo $procs);"
  if [ -n "$left" ]; then fail "$label: left behind:$left"; else ok "$label: nothing left behind"; fi
}

# run_fault LABEL FAULT ARGS...: runs the harness with the fault; sets rc, secs, $tmp/out (stdout and
# stderr) and checks that nothing is left behind.
run_fault() {
  local label=$1 fault=$2
  shift 2
  local t0=$(date +%s%N)
  FPSIM_HARNESS_FAULT=$fault timeout -k 5 60 "$harness" "$@" >"$tmp/out" 2>&1
  rc=$?
  secs=$(( ($(date +%s%N) - t0) / 1000000000 ))
  check_clean "$label"
}

expect_rc() {
  if [ "$rc" -eq "$1" ]; then ok "$2: exit $rc"; else
    fail "$2: exit $rc, expected $1"
    sed 's/^/     | /' "$tmp/out"
  fi
}

# expect_line LABEL TEXT: the output has a line containing TEXT (a fixed string).
expect_line() {
  if grep -qF -- "$2" "$tmp/out"; then ok "$1: reports \"$2\""; else
    fail "$1: no line with \"$2\""
    sed 's/^/     | /' "$tmp/out"
  fi
}

# 0. The trace passes without a fault (exit 77: the harness cannot run here).
"$harness" crosscheck "$trace" >"$tmp/out" 2>&1
rc=$?
if [ "$rc" -eq 77 ]; then
  echo "skipped: $(cat "$tmp/out")"
  exit 77
fi
expect_rc 0 "no fault"
fast=(run --deadline-ms 100 --trace-timeout 10 "$trace")

# (a) The server killed while statements run: on reading a request (the call waiting for it gets
# ECONNABORTED), and between statements (later requests get ENOTCONN).
run_fault "kill-server-at:OPEN:2" kill-server-at:OPEN:2 "${fast[@]}"
expect_rc 3 "kill-server-at:OPEN:2"
expect_line "kill-server-at:OPEN:2" "$at_open_c1 [fault] kill-server-at:OPEN:2: the server died on reading OPEN #2"
expect_line "kill-server-at:OPEN:2" "$open_c1 => ECONNABORTED   (trace expects ok)"
run_fault "kill-server-at-step:5" kill-server-at-step:5 "${fast[@]}"
expect_rc 3 "kill-server-at-step:5"
expect_line "kill-server-at-step:5" "$at_open_c1 [fault] kill-server-at-step:5: the server died before step 5"
expect_line "kill-server-at-step:5" "$open_c1 => ENOTCONN   (trace expects ok)"
run_fault "kill-server-at:WRITE:1" kill-server-at:WRITE:1 crosscheck --deadline-ms 100 --trace-timeout 10 "$trace"
expect_rc 3 "kill-server-at:WRITE:1 (crosscheck)"
expect_line "kill-server-at:WRITE:1" "$trace:10: kernel write C1: violation: [fault] kill-server-at:WRITE:1: the server died on reading WRITE #1"
expect_line "kill-server-at:WRITE:1" "$trace:10: write C1: expected fuse, sim fuse, kernel ECONNABORTED"

# The server killed before `init`: the mount fails, and the statements after it must not reach the
# bare mount point underneath (a host directory): `create` there would write a file into /tmp.
cat >"$tmp/create.trace" <<'EOF'
fpsim-trace 1
kernel 6.18
title "create after init"
init passthrough max_stack_depth=1 => ok
create X1 n reply=cached => ok
close X1 => ok
EOF
run_fault "kill-server-at-step:1 before a create" kill-server-at-step:1 run --deadline-ms 100 --trace-timeout 10 "$tmp/create.trace"
expect_rc 3 "kill-server-at-step:1 before a create"
expect_line "kill-server-at-step:1 before a create" "$tmp/create.trace:4: init passthrough max_stack_depth=1 => EBADF   (trace expects ok)"
expect_line "kill-server-at-step:1 before a create" "$tmp/create.trace:5: create X1 n reply=cached => ENOENT   (trace expects ok)"

# (b) A server that never answers: the call misses its deadline, the connection is aborted through
# fusectl, the trace goes on (the blocked open returns ECONNABORTED in the teardown's await).
run_fault "silent-at:OPEN:1" silent-at:OPEN:1 "${fast[@]}"
expect_rc 3 "silent-at:OPEN:1"
expect_line "silent-at:OPEN:1" "$open_p1 => blocks   (trace expects ok)"
expect_line "silent-at:OPEN:1" "$at_open_p1 [fault] silent-at:OPEN:1: the server read OPEN #1"
expect_line "silent-at:OPEN:1" "$at_open_p1 [fault] silent-at:OPEN:1: the call missed its 100 ms deadline (blocks); the harness aborted the connection through fusectl, and every blocked call returned"
expect_line "silent-at:OPEN:1" "$trace: (teardown) await P1 -> ECONNABORTED"
[ "$secs" -lt 5 ] && ok "silent-at:OPEN:1: done in ${secs} s (the deadline, not the trace timeout)" ||
  fail "silent-at:OPEN:1: took ${secs} s"
# close(2) has the long deadline (3 s): a FLUSH that never comes back.
run_fault "silent-at:FLUSH:1" silent-at:FLUSH:1 "${fast[@]}"
expect_rc 3 "silent-at:FLUSH:1"
expect_line "silent-at:FLUSH:1" "$close_c1 => blocks   (trace expects ok)"
expect_line "silent-at:FLUSH:1" "$at_close_c1 [fault] silent-at:FLUSH:1: the call missed its 100 ms deadline (blocks); the harness aborted the connection through fusectl"
# A request nobody waits for (the RELEASE after close): reported, nothing to abort.
run_fault "silent-at:RELEASE:1" silent-at:RELEASE:1 "${fast[@]}"
expect_rc 3 "silent-at:RELEASE:1"
expect_line "silent-at:RELEASE:1" "violation: [fault] silent-at:RELEASE:1: the server read RELEASE #1"

# (c) Garbage the kernel refuses. A wrong unique or a positive error is refused before the kernel
# matches the reply to its request, which goes on waiting (then as in (b)); a cut or oversized
# payload is matched, refused with EINVAL, and the call fails with EIO.
run_fault "garbage-at:OPEN:1:unique" garbage-at:OPEN:1:unique "${fast[@]}"
expect_rc 3 "garbage-at:OPEN:1:unique"
expect_line "garbage-at:OPEN:1:unique" "$at_open_p1 [fault] garbage-at:OPEN:1:unique: the server answered OPEN #1"
expect_line "garbage-at:OPEN:1:unique" "; the kernel refused the reply: ENOENT"
expect_line "garbage-at:OPEN:1:unique" "[fault] garbage-at:OPEN:1:unique: the call missed its 100 ms deadline (blocks); the harness aborted the connection through fusectl"
run_fault "garbage-at:OPEN:1:errno" garbage-at:OPEN:1:errno "${fast[@]}"
expect_rc 3 "garbage-at:OPEN:1:errno"
expect_line "garbage-at:OPEN:1:errno" "with error +EIO (positive); the kernel refused the reply: EINVAL"
expect_line "garbage-at:OPEN:1:errno" "$open_p1 => blocks   (trace expects ok)"
for how in short oversized; do
  run_fault "garbage-at:OPEN:1:$how" "garbage-at:OPEN:1:$how" "${fast[@]}"
  expect_rc 3 "garbage-at:OPEN:1:$how"
  expect_line "garbage-at:OPEN:1:$how" "$at_open_p1 [fault] garbage-at:OPEN:1:$how: the server answered OPEN #1"
  expect_line "garbage-at:OPEN:1:$how" "; the kernel refused the reply: EINVAL"
  expect_line "garbage-at:OPEN:1:$how" "$open_p1 => EIO   (trace expects ok)"
done
run_fault "garbage-at:RELEASE:1:short" garbage-at:RELEASE:1:short "${fast[@]}"
expect_rc 3 "garbage-at:RELEASE:1:short"
expect_line "garbage-at:RELEASE:1:short" "with 8 of the header's 16 bytes; the kernel refused the reply: EINVAL"

# (d1) The client killed while blocked in open(2): the whole isolated child (client threads and
# server thread) is SIGKILLed once its OPEN was read. The opening thread then sleeps in the kernel
# for an answer nobody can give, and the /dev/fuse file that would end the connection is in the fd
# table that thread keeps alive: the child cannot finish dying by itself. The janitor (closing the
# table) or the parent (aborting the connection through fusectl), whichever sees it first, must end
# it, and the statement must be reported, long before the 10 s trace timeout.
run_fault "kill-child-at:OPEN:1" kill-child-at:OPEN:1 "${fast[@]}"
expect_rc 3 "kill-child-at:OPEN:1"
expect_line "kill-child-at:OPEN:1" "$open_p1: kernel: the kernel run died of signal 9 [fault kill-child-at:OPEN:1: the server read OPEN #1"
[ "$secs" -lt 5 ] && ok "kill-child-at:OPEN:1: done in ${secs} s (not the trace timeout)" ||
  fail "kill-child-at:OPEN:1: took ${secs} s"
run_fault "kill-child-at:FLUSH:1" kill-child-at:FLUSH:1 "${fast[@]}"
expect_rc 3 "kill-child-at:FLUSH:1"
expect_line "kill-child-at:FLUSH:1" "$close_c1: kernel: the kernel run died of signal 9 [fault kill-child-at:FLUSH:1"

# Starts the harness with a server that never answers the first OPEN and a deadline long enough to
# act while open(2) is blocked; sets hpid and cpid (the isolated child, from the fault's line).
start_blocked() {
  FPSIM_HARNESS_FAULT=silent-at:OPEN:1 "$harness" "$1" --deadline-ms 30000 --trace-timeout 60 "$trace" \
    >"$tmp/out" 2>&1 &
  hpid=$!
  cpid=""
  local i
  for i in $(seq 1 100); do
    cpid=$(sed -n 's/.*fault silent-at:OPEN:1 fired in process \([0-9]*\):.*/\1/p' "$tmp/out")
    [ -n "$cpid" ] && break
    sleep 0.1
  done
  # Informative: the opening thread sleeps in the kernel waiting for the answer.
  [ -n "$cpid" ] && grep -l request_wait_answer /proc/"$cpid"/task/*/wchan >/dev/null 2>&1 &&
    echo "     (open(2) of process $cpid is in request_wait_answer)"
}

# (d2) The harness and its child SIGKILLed together while the open is blocked: nobody is left to
# clean up but the guardian, which must abort the connection and remove the temporary directories.
start_blocked run
if [ -z "$cpid" ]; then
  fail "guardian: the fault never fired"
  kill -9 "$hpid"
fi
kill -9 "$cpid" "$hpid" 2>/dev/null
wait "$hpid" 2>/dev/null
rc=$?
expect_rc 137 "harness and child SIGKILLed during a blocked open"
check_clean "guardian after SIGKILL during a blocked open"

# (e) SIGINT and SIGTERM while open(2) is blocked: the run is killed, its connection aborted, and
# the interrupt is reported at the statement it hit.
for case in "INT run 130 2" "TERM crosscheck 143 15"; do
  set -- $case
  start_blocked "$2"
  kill -"$1" "$hpid"
  wait "$hpid"
  rc=$?
  expect_rc "$3" "SIG$1 during a blocked open ($2)"
  expect_line "SIG$1" "fpsim-harness: interrupted by signal $4 at $open_p1; the run in progress was killed"
  check_clean "SIG$1 during a blocked open"
done

# (e2) SIGINT while a cached open(2) waits for an inode that a passthrough file of the same run keeps
# in passthrough mode (fuse_file_cached_io_open: an uninterruptible wait no connection abort ends).
# The killed child can only finish once that file is released, and the file sits in the child's own
# fd table: the janitor, which shares the table, must close it, or the child stays a zombie with a
# thread in D state (and a private mount namespace) until the machine reboots. The withheld FLUSH
# of `close E1` just parks the run there.
cat >"$tmp/iomode.trace" <<'EOF'
fpsim-trace 1
kernel 6.18
title "a cached open waits on an inode while a passthrough file of the same run is open"
init passthrough max_stack_depth=1 => ok
backing_open B1 a.dat => id=1
open D1 a rdwr reply=direct_io|parallel_direct_writes => ok
write_begin W1 D1 => ok
open C1 a reply=cached => blocks
open P1 a reply=passthrough@B1 => ok
open E1 b reply=cached => ok
close E1 => ok
write_end W1 => fuse
close P1 => ok
await C1 => ok
close C1 => ok
close D1 => ok
backing_close B1 => ok
EOF
"$harness" crosscheck "$tmp/iomode.trace" >"$tmp/out" 2>&1
rc=$?
expect_rc 0 "iomode trace without a fault"
FPSIM_HARNESS_FAULT=silent-at:FLUSH:1 "$harness" run --deadline-ms 100 --trace-timeout 30 "$tmp/iomode.trace" \
  >"$tmp/out" 2>&1 &
hpid=$!
cpid=""
for i in $(seq 1 100); do
  cpid=$(sed -n 's/.*fault silent-at:FLUSH:1 fired in process \([0-9]*\):.*/\1/p' "$tmp/out")
  [ -n "$cpid" ] && break
  sleep 0.05
done
grep -l fuse_file_cached_io_open /proc/"$cpid"/task/*/wchan >/dev/null 2>&1 &&
  echo "     (open C1 of process $cpid is in fuse_file_cached_io_open)"
kill -INT "$hpid"
wait "$hpid"
rc=$?
expect_rc 130 "SIGINT while a cached open waits on a passthrough inode"
expect_line "SIGINT (iomode)" "fpsim-harness: interrupted by signal 2 at $tmp/iomode.trace:11: close E1; the run in progress was killed"
check_clean "SIGINT while a cached open waits on a passthrough inode"

# A fault that never fires is said and changes nothing; malformed specs are refused (exit 2), and
# so is a fault for fuzz, whose regressions would record its consequences.
run_fault "never fires" silent-at:OPENDIR:1 "${fast[@]}"
expect_rc 0 "silent-at:OPENDIR:1 on a trace without opendir"
expect_line "never fires" "$trace: fault silent-at:OPENDIR:1 never fired"
for bad in "bogus" "silent-at:OPEN" "silent-at:OPEN:0" "silent-at:OPEN:1x" "silent-at:INIT:1" \
  "silent-at:FORGET:1" "garbage-at:OPEN:1:huge" "kill-server-at-step:-3"; do
  run_fault "malformed \"$bad\"" "$bad" "${fast[@]}"
  if [ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/out")" -eq 1 ] && grep -qF "FPSIM_HARNESS_FAULT=\"$bad\": " "$tmp/out"; then
    ok "malformed \"$bad\": exit 2: $(sed 's/^[^"]*"[^"]*": //; s/; expected .*//' "$tmp/out")"
  else
    fail "malformed \"$bad\": exit $rc"
    sed 's/^/     | /' "$tmp/out"
  fi
done
run_fault "fuzz refuses it" silent-at:OPEN:1 fuzz --runs 1 --out "$tmp/regressions"
expect_rc 2 "fuzz with a fault"

# The host namespace, once more, in the terms of the README.
if [ -z "$mounts_before" ] && grep -q fuse /proc/mounts; then fail "grep fuse /proc/mounts is not empty"; fi
exit $((failures > 0))

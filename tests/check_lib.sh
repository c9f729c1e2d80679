# Sourced by the CLI test scripts: a scratch directory removed on exit, and two ways to write a
# case. check NAME CMD... runs CMD, prints "ok   NAME" or "FAIL NAME", and makes the script fail
# at the end (exit $fail). A case of several expectations runs fpsim with run ARGS... ($rc,
# stdout in $tmp/out, stderr in $tmp/err), says what went wrong with fail WHY..., and ends with
# report NAME, which prints its line, with the run's output when it failed; finish SCRIPT prints
# the count and exits 1 if any such case failed.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # name, condition...
  local name=$1; shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fail=1; fi
}

why=""
cases=0
failures=0
fail() { why+="${why:+; }$*"; }
report() {
  cases=$((cases + 1))
  if [[ -z "$why" ]]; then
    echo "ok   $1"
  else
    echo "FAIL $1: $why"
    echo "     stdout: $(head -c 600 "$tmp/out" | tr '\n' '|')"
    echo "     stderr: $(head -c 600 "$tmp/err" | tr '\n' '|')"
    failures=$((failures + 1))
  fi
  why=""
}
finish() {
  echo "$1: $((cases - failures)) of $cases cases ok"
  [[ $failures -eq 0 ]] || exit 1
  exit 0
}

# run ARGS...: runs $FPSIM; sets $rc, leaves stdout in $tmp/out and stderr in $tmp/err.
run() {
  "$FPSIM" "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
}
expect_rc() { [[ $rc -eq $1 ]] || fail "exit code $rc, expected $1"; }

# expect_one_stderr_line PREFIX [FRAGMENT]: stderr is exactly one line, starting with PREFIX and
# containing FRAGMENT (both literal).
expect_one_stderr_line() {
  local prefix=$1 fragment=${2:-}
  local -a lines=()
  mapfile -t lines <"$tmp/err"
  if [[ ${#lines[@]} -ne 1 ]]; then
    fail "stderr has ${#lines[@]} lines, expected 1"
    return
  fi
  [[ "${lines[0]}" == "$prefix"* ]] || fail "stderr does not start with '$prefix'"
  [[ -z "$fragment" || "${lines[0]}" == *"$fragment"* ]] || fail "stderr lacks '$fragment'"
}

# Sourced by the CLI test scripts: a scratch directory removed on exit, and check NAME CMD...,
# which runs CMD, prints "ok   NAME" or "FAIL NAME", and makes the script fail at the end.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # name, condition...
  local name=$1; shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; fail=1; fi
}

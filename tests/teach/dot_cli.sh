#!/usr/bin/env bash
# fpsim dot through the CLI: its output is valid Graphviz (dot -Tsvg), --diff marks changed
# transitions and only those, and bad arguments are usage errors.
set -uo pipefail
fpsim=$1
if ! command -v dot >/dev/null; then
  echo "SKIP: Graphviz 'dot' is not installed (.ci/setup installs the graphviz package)"
  exit 77
fi
source "$(dirname "$0")/../check_lib.sh"
svg_ok() { "$fpsim" dot "$@" >"$tmp/g.dot" && dot -Tsvg "$tmp/g.dot" -o "$tmp/g.svg" && grep -q "<svg" "$tmp/g.svg"; }
check "iomode renders" svg_ok
check "backing renders" svg_ok --view backing
check "diff renders" svg_ok --kernel 6.18 --diff v15
check "mutant diff renders" svg_ok --mutant no-ebusy-check
"$fpsim" dot --kernel 6.18 --diff v15 >"$tmp/d.dot"
check "6.18 vs v15 differ" grep -q 'only v15' "$tmp/d.dot"
"$fpsim" dot --kernel 6.9 --diff 6.9 >"$tmp/s.dot"
check "a profile against itself has no marked edge" bash -c "! grep -q 'only ' '$tmp/s.dot'"
"$fpsim" dot --mutant no-ebusy-check >"$tmp/m.dot"
check "a mutant changes a transition" grep -q 'only 6.18 no-ebusy-check' "$tmp/m.dot"
"$fpsim" dot -o "$tmp/o.dot" && check "-o writes the file" grep -q '^digraph iomode' "$tmp/o.dot"
"$fpsim" dot --kernel 7.0 >/dev/null 2>"$tmp/err"; rc=$?
check "unknown profile exits 2" test "$rc" -eq 2
check "unknown profile says so" grep -q "unknown kernel profile '7.0'" "$tmp/err"
"$fpsim" dot --mutant nope >/dev/null 2>&1; rc=$?
check "unknown mutant exits 2" test "$rc" -eq 2
exit $fail

#!/usr/bin/env bash
# Instruction counts for comparing commits: callgrind counts instructions, not seconds, so the
# figures repeat whatever else the machine is doing. Prints instructions per statement for
# parsing and for replay with the invariant checks, on fpsim bench's generated trace.
#   usage: tools/fpsim/callgrind.sh [FPSIM] [STATEMENTS]
set -euo pipefail
fpsim=${1:-build/default/tools/fpsim/fpsim}
n=${2:-100000}
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 2; }
[ -x "$fpsim" ] || { echo "callgrind.sh: $fpsim is not an executable" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$fpsim" bench --statements "$n" --write-trace "$dir/bench.trace"
statements=$(grep -cvE '^(fpsim-trace|kernel|title|#|$)' "$dir/bench.trace")
count() { # the instructions executed inside function $1 while replaying the trace
  valgrind --tool=callgrind --callgrind-out-file="$dir/out" --collect-atstart=no \
    --toggle-collect="$1" "$fpsim" replay "$dir/bench.trace" >/dev/null 2>"$dir/log"
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$dir/log"
}
parse=$(count 'fpsim::sim::parse_trace*')
replay=$(count 'fpsim::sim::replay(*')
echo "callgrind: $statements statements: parse $((parse / statements)) instructions/statement," \
  "replay with checks $((replay / statements)) instructions/statement"

#!/usr/bin/env bash
# fpsim profiles through the CLI: every feature is listed with its evidence, --diff names exactly
# the features that differ (checked against the --json table, not against a copy of it), and
# unknown names are usage errors.
set -uo pipefail
fpsim=$1
source "$(dirname "$0")/../check_lib.sh"
"$fpsim" profiles --json >"$tmp/t.json"; rc=$?
check "--json exits 0" test "$rc" -eq 0
check "--json lists every profile" python3 -c "
import json,sys; t=json.load(open('$tmp/t.json'))
assert [p['name'] for p in t['profiles']]==['v15','6.9','6.12.0','6.12.117','6.18','7.2','7.3'], t['profiles']
assert all(f['evidence'] and f['origin'] and f['behaviour'] for f in t['features'])"
diff_matches() { # A B: --diff --json equals the set difference of the table's feature lists
  "$fpsim" profiles --diff "$1" "$2" --json >"$tmp/d.json" || return 1
  python3 -c "
import json; t=json.load(open('$tmp/t.json')); d=json.load(open('$tmp/d.json'))
fs={p['name']:set(p['features']) for p in t['profiles']}
a,b=fs['$1'],fs['$2']
assert {f['name'] for f in d['only_in_a']}==a-b, (d['only_in_a'],a-b)
assert {f['name'] for f in d['only_in_b']}==b-a, (d['only_in_b'],b-a)
assert a!=b or not (d['only_in_a'] or d['only_in_b'])"
}
for a in v15 6.9 6.12.0 6.12.117 6.18 7.2 7.3; do
  for b in v15 6.9 6.12.0 6.12.117 6.18 7.2 7.3; do
    check "--diff $a $b names every feature that differs" diff_matches "$a" "$b"
  done
done
"$fpsim" profiles --diff v15 6.18 >"$tmp/d.txt"
check "text --diff v15 6.18 names passthrough_bit7 as 6.18's" grep -q '^+ passthrough_bit7 .*only in 6.18' "$tmp/d.txt"
check "text --diff v15 6.18 names backing_requires_rw_iter as v15's" grep -q '^- backing_requires_rw_iter .*only in v15' "$tmp/d.txt"
"$fpsim" profiles --diff 6.12.0 6.12.117 >"$tmp/d.txt"
for f in backing_rejects_non_regular no_open_keeps_args fuseblk_release_async; do
  check "text --diff 6.12.0 6.12.117 names the backport $f" grep -q "^+ $f .*only in 6.12.117" "$tmp/d.txt"
done
check "... and nothing else" test "$(wc -l <"$tmp/d.txt")" -eq 3
"$fpsim" profiles --diff 6.18 6.18+backing_compared_by_inode >"$tmp/c.txt"
check "a composed profile differs by its one feature" test "$(wc -l <"$tmp/c.txt")" -eq 1
check "... which is named" grep -q '^+ backing_compared_by_inode' "$tmp/c.txt"
"$fpsim" profiles >"$tmp/p.txt"
check "the table lists every feature" python3 -c "
import json; t=json.load(open('$tmp/t.json')); p=open('$tmp/p.txt').read()
assert all(f['name'] in p for f in t['features'])"
"$fpsim" profiles --diff 6.18 7.0 >/dev/null 2>"$tmp/err"; rc=$?
check "unknown profile exits 2" test "$rc" -eq 2
check "... and says which" grep -q "unknown kernel profile '7.0'" "$tmp/err"
"$fpsim" profiles --diff 6.18 6.18+nope >/dev/null 2>"$tmp/err"; rc=$?
check "unknown feature exits 2" test "$rc" -eq 2
check "... and says which" grep -q "unknown kernel feature 'nope'" "$tmp/err"
"$fpsim" replay --kernel 6.18+nope /dev/null >/dev/null 2>"$tmp/err"; rc=$?
check "replay --kernel with an unknown feature exits 2" test "$rc" -eq 2
exit "$fail"

#!/usr/bin/env bash
# Front end: help, version, unknown commands and options, config errors, profile output.
source "$(dirname "$0")/lib.sh"
expect_ok "$SD" --help
grep -q "import" "$WORK/last.out" && ok || fail "--help lists no commands"
expect_ok "$SD" --version
grep -Eq "^stemdefect [0-9]+\.[0-9]+\.[0-9]+ \(git [0-9a-f]+|unknown\)" "$WORK/last.out" && ok || fail "version line: $(cat "$WORK/last.out")"
for c in import simulate info; do
  expect_ok "$SD" $c --help
  grep -q "usage: stemdefect $c" "$WORK/last.out" && ok || fail "$c --help"
done
grep -q "simulate.dose" <("$SD" simulate --help) && ok || fail "simulate --help lacks config keys"
expect_fail 2 "unknown command 'bogus'" "$SD" bogus
expect_fail 2 "unknown option '--nope'" "$SD" simulate --nope
expect_fail 2 "simulate.count" "$SD" simulate --count abc --output "$WORK/x.h5"
expect_fail 2 "out of range" "$SD" simulate --count 0 --output "$WORK/x.h5"
expect_fail 2 "one of cdte|sto" "$SD" simulate --material gold --output "$WORK/x.h5"
expect_fail 2 "needs a value" "$SD" simulate --count
printf 'simulate:\n  cuont: 5\n' > "$WORK/bad.yaml"
expect_fail 2 "simulate.cuont" "$SD" simulate --config "$WORK/bad.yaml"
expect_fail 2 "bad.yaml line 2" "$SD" simulate --config "$WORK/bad.yaml"
expect_fail 1 "cannot read configuration file" "$SD" simulate --config "$WORK/none.yaml"
expect_fail 2 "unknown configuration key 'simulate.zzz'" "$SD" simulate --set simulate.zzz=1
# the same errors at 2 ranks: one message, no hang
expect_fail 2 "simulate.cuont" $MPIRUN -n 2 "$SD" simulate --config "$WORK/bad.yaml"
n=$($MPIRUN -n 2 "$SD" simulate --config "$WORK/bad.yaml" 2>&1 | grep -c "error:")
[ "$n" = 1 ] && ok || fail "expected one error line from 2 ranks, got $n"
# a config file and a command-line override; profile JSON
printf 'simulate:\n  count: 5\n  size: 32\n' > "$WORK/ok.yaml"
expect_ok "$SD" simulate --config "$WORK/ok.yaml" --count 3 --output "$WORK/s.h5" --profile "$WORK/p.json" --quiet
h5dump -H -d /images "$WORK/s.h5" | grep -q "( 3, 32, 32 )" && ok || fail "override not applied"
grep -q '"command": "simulate"' "$WORK/p.json" && grep -q '"stages"' "$WORK/p.json" && ok || fail "profile JSON"
/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['ranks']==1 and d['stages']" "$WORK/p.json" 2>/dev/null && ok || fail "profile JSON does not parse"
# the README documents every configuration key
for key in $(sed -n 's/^ *{"\([a-z_]*\.[a-z_0-9]*\)",.*/\1/p' "$SRC/src/core/config_schema.c"); do
  grep -q "\`$key\`" "$SRC/README.md" && ok || fail "README.md does not document $key"
done
finish

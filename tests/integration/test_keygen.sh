#!/usr/bin/env bash
# natkit keygen: prints a valid peer ID, writes a 0600 key file in the default place,
# refuses to overwrite without --force, and a corrupt key is not silently replaced; --show prints
# the ID of an existing key without touching it; a key file with group/other permissions is
# refused by keygen --show, listen and connect (exit 1, naming the file, its mode and chmod 600).
set -u
. "${NK_SOURCE_DIR:-$(dirname "$0")/../..}/tests/lib.sh"
nk_init keygen
: "${NATKIT:?set NATKIT to the natkit binary}"

export XDG_CONFIG_HOME=$NK_TMP/cfg
id=$("$NATKIT" keygen 2>"$NK_TMP/err") || nk_fail "keygen failed: $(cat "$NK_TMP/err")"
[[ $id =~ ^[a-z2-7]{52}$ ]] || nk_fail "not a peer ID: '$id'"
key=$XDG_CONFIG_HOME/natkit/key
[ -f "$key" ] || nk_fail "no key at the default path $key"
[ "$(stat -c %a "$key")" = 600 ] || nk_fail "key mode is $(stat -c %a "$key"), want 600"
[ "$(stat -c %a "$XDG_CONFIG_HOME/natkit")" = 700 ] || nk_fail "key dir mode is not 700"
[ "$(head -n1 "$key")" = natkit-key-v1 ] || nk_fail "key file lacks its header line"

before=$(cat "$key")
if "$NATKIT" keygen 2>"$NK_TMP/err" >/dev/null; then nk_fail "keygen overwrote an existing key"; fi
grep -q -- --force "$NK_TMP/err" || nk_fail "refusal does not mention --force: $(cat "$NK_TMP/err")"
[ "$(cat "$key")" = "$before" ] || nk_fail "refused keygen still changed the key"

id2=$("$NATKIT" keygen --force 2>/dev/null) || nk_fail "keygen --force failed"
[ "$id2" != "$id" ] || nk_fail "--force produced the same ID"
[ "$(stat -c %a "$key")" = 600 ] || nk_fail "replaced key mode is not 600"

out=$NK_TMP/other/deeper/k
id3=$("$NATKIT" keygen --out "$out" 2>/dev/null) || nk_fail "keygen --out failed"
[ -f "$out" ] && [[ $id3 =~ ^[a-z2-7]{52}$ ]] || nk_fail "--out did not write $out"

# --show: the ID of an existing key, which stays as it was
before=$(cat "$key"; stat -c %Y.%i "$key")
shown=$("$NATKIT" keygen --show 2>"$NK_TMP/err") || nk_fail "keygen --show failed: $(cat "$NK_TMP/err")"
[ "$shown" = "$id2" ] || nk_fail "keygen --show printed '$shown', want the key's ID $id2"
[ "$(cat "$key"; stat -c %Y.%i "$key")" = "$before" ] || nk_fail "keygen --show changed the key file"
[ "$("$NATKIT" keygen --show "$out" 2>/dev/null)" = "$id3" ] || nk_fail "keygen --show FILE did not print that key's ID"
[ "$("$NATKIT" keygen --show --out "$out" 2>/dev/null)" = "$id3" ] || nk_fail "keygen --show --out FILE did not print its ID"
"$NATKIT" keygen --show "$NK_TMP/missing" >/dev/null 2>"$NK_TMP/err"
[ $? -eq 1 ] || nk_fail "keygen --show of a missing file must exit 1"
grep -q "$NK_TMP/missing" "$NK_TMP/err" || nk_fail "keygen --show of a missing file does not name it: $(cat "$NK_TMP/err")"
[ ! -e "$NK_TMP/missing" ] || nk_fail "keygen --show made a key"
"$NATKIT" keygen --show --force >/dev/null 2>&1
[ $? -eq 2 ] || nk_fail "keygen --show --force must exit 2"

# a key others may read is refused (as ssh does), by keygen --show and by the commands that use it
for mode in 644 640 604 620; do
	chmod "$mode" "$out"
	for cmd in "keygen --show $out" "listen --hub 127.0.0.1:1 --key $out" "connect $id2 --hub 127.0.0.1:1 --key $out"; do
		# shellcheck disable=SC2086
		"$NATKIT" $cmd </dev/null >"$NK_TMP/out" 2>"$NK_TMP/err"
		rc=$?
		[ $rc -eq 1 ] || nk_fail "natkit $cmd with a mode $mode key: exit $rc, want 1"
		grep -qF "key file $out has mode 0$mode: others than its owner may read or change it, so it is not used; fix: chmod 600 $out" \
			"$NK_TMP/err" || nk_fail "natkit $cmd with a mode $mode key: no clear reason: $(cat "$NK_TMP/err")"
		[ ! -s "$NK_TMP/out" ] || nk_fail "natkit $cmd printed an ID from a mode $mode key"
	done
done
chmod 600 "$out"
[ "$("$NATKIT" keygen --show "$out" 2>/dev/null)" = "$id3" ] || nk_fail "keygen --show after chmod 600 failed"

"$NATKIT" keygen --bogus >/dev/null 2>&1
[ $? -eq 2 ] || nk_fail "unknown option must exit 2"
"$NATKIT" keygen extra >/dev/null 2>&1
[ $? -eq 2 ] || nk_fail "extra argument must exit 2"
nk_pass "peer ID $id, key 0600, overwrite refused without --force, --show prints it, a key others may read is refused"

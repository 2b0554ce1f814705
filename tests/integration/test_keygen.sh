#!/usr/bin/env bash
# natkit keygen: prints a valid peer ID, writes a 0600 key file in the default place,
# refuses to overwrite without --force, and a corrupt key is not silently replaced.
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

"$NATKIT" keygen --bogus >/dev/null 2>&1
[ $? -eq 2 ] || nk_fail "unknown option must exit 2"
"$NATKIT" keygen extra >/dev/null 2>&1
[ $? -eq 2 ] || nk_fail "extra argument must exit 2"
nk_pass "peer ID $id, key 0600, overwrite refused without --force"

#!/bin/bash
# natkit connect PEER_ID --peer IP:PORT: two peers behind two different lab NATs
# (port-restricted cone and restricted cone), no hub. Each learns its public address
# with `natkit discover --bind` on the port it will use, the two exchange addresses and
# IDs "by hand" (this script), start within a moment of each other, connect directly,
# and each line reaches the other side.
# Needs root and network namespaces (exit 77 with a SKIP line otherwise).
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/tests/lab/natlab.sh"
export LC_ALL=C
nk_init connect_manual
NATKIT=${NATKIT:-$NK_SOURCE_DIR/build/natkit}
[ -x "$NATKIT" ] || nk_fail "no natkit binary at $NATKIT"
why=$(lab_can_run) || nk_skip "$why"

NATLAB_NO_TRAP=1
trap 'lab_down; nk__cleanup' EXIT
lab_up || nk_fail "lab_up failed"
lab_add_nat alice port-restricted-cone || nk_fail "lab_add_nat alice"
lab_add_nat bob restricted-cone || nk_fail "lab_add_nat bob"
LAB_LOG_DIR=$NK_TMP
lab_start_servers stun || nk_fail "the lab's STUN server did not start"

PORT=40000
declare -A ID=() PUB=()
for who in alice bob; do
    ID[$who]=$("$NATKIT" keygen --out "$NK_TMP/$who.key" 2>/dev/null) || nk_fail "keygen $who"
    out=$(lab_exec "$who" "$NATKIT" discover --stun "$LAB_STUN" --bind "0.0.0.0:$PORT" --json) ||
        nk_fail "discover behind $who: $out"
    PUB[$who]=$(nk_json_get "$out" mapped) || nk_fail "no mapped address from discover: $out"
    [ "${PUB[$who]}" = "$(lab_public_ip "$who"):$PORT" ] ||
        nk_fail "$who's public address ${PUB[$who]} is not its NAT's address with the same port"
done
nk_log "alice is ${PUB[alice]}, bob is ${PUB[bob]} (exchanged by hand, with their IDs)"

# Each side reads stdin from a FIFO; the writers open after both readers started (no inherited
# writers: a write end open in the other side's process would keep this side's stdin from ending,
# and each side waits for the other's end of the stream before it exits).
for who in alice bob; do
    other=alice; [ "$who" = alice ] && other=bob
    mkfifo "$NK_TMP/$who.in"
    nk_start "$who" "$NK_TMP/$who.log" bash -c 'in=$1; shift; exec "$@" <"$in"' _ "$NK_TMP/$who.in" \
        ip netns exec "$(lab_ns "$who")" "$NATKIT" connect "${ID[$other]}" --peer "${PUB[$other]}" \
        --bind "0.0.0.0:$PORT" --key "$NK_TMP/$who.key" --timeout 20 --json
done
for who in alice bob; do
    exec {fd}>"$NK_TMP/$who.in"
    eval "IN_$who=$fd"
done

for who in alice bob; do
    nk_wait_for_log "$NK_TMP/$who.log" '"event":"connected"' 25 || nk_fail "$who did not connect"
    ev=$NK_MATCH
    [ "$(nk_json_get "$ev" path)" = direct ] || nk_fail "$who: not a direct path: $ev"
    nk_log "$who: $ev"
done
echo "hello bob, from alice" >&$IN_alice
echo "hello alice, from bob" >&$IN_bob
nk_wait_for_log "$NK_TMP/bob.log" '^hello bob, from alice$' 10 || nk_fail "bob did not get alice's line"
nk_wait_for_log "$NK_TMP/alice.log" '^hello alice, from bob$' 10 || nk_fail "alice did not get bob's line"

exec {IN_alice}>&- {IN_bob}>&-
for who in alice bob; do
    nk_wait_for_log "$NK_TMP/$who.log" '^\[nk\] .* exited with status' 20 || nk_fail "$who did not exit at EOF"
    [[ $NK_MATCH == *"status 0" ]] || nk_fail "$who: $NK_MATCH"
done
if grep -l 'ERROR: AddressSanitizer\|runtime error:' "$NK_TMP"/*.log >/dev/null 2>&1; then
    nk_fail "a sanitizer report in the logs"
fi
nk_pass "connect --peer without a hub: port-restricted <-> restricted cone, direct, both directions"

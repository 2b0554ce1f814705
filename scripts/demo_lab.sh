#!/usr/bin/env bash
# The NAT lab part of `make demo` (called by scripts/demo.sh as root): a small lab of real
# kernel NATs (network namespaces + nftables, tests/lab/natlab.sh) with natkit's STUN,
# TURN and hub servers on its "internet"; `natkit discover` and `natkit nat-type` behind
# a port-restricted cone NAT and behind a full cone NAT; then, when this natkit has
# `listen` and `connect`, a peer behind each of the two NATs finds the other through the
# hub by its peer ID, connects directly, and both exchange messages, with the path and
# timings shown. Everything is torn down on exit, also on failure or Ctrl-C.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
export NATKIT=${NATKIT:-$root/build/natkit}
. "$root/tests/lib.sh"
. "$root/tests/lab/natlab.sh"
nk_init demo_lab
NATLAB_NO_TRAP=1
trap 'lab_down; nk__cleanup' EXIT

why=$(lab_can_run) || { echo "(the NAT lab demo cannot run here: $why)"; exit 0; }
[ -x "$NATKIT" ] || nk_fail "no natkit binary at $NATKIT"

say() { printf '%s\n' "$*"; }
show() # NAME CMD...: prints "NAME$ natkit ..." then runs it behind NAME, output indented
{
    local name=$1
    shift
    say "  [$name]\$ natkit ${*:2}"
    lab_exec "$name" "$@" 2>&1 | sed 's/^/      /'
}

# Two NATs: "alice" behind a port-restricted cone, "bob" behind a full cone.
lab_up || nk_fail "lab_up failed"
lab_add_nat alice port-restricted-cone || nk_fail "lab_add_nat alice"
lab_add_nat bob full-cone || nk_fail "lab_add_nat bob"
LAB_LOG_DIR=$NK_TMP
lab_start_servers stun turn hub || nk_fail "the lab's servers did not start"
NK_LOGS[hub]=${LAB_LOG[hub]}

say "lab internet (TEST-NET-1 192.0.2.0/24, namespace $LAB_INET):"
say "  STUN $LAB_STUN + $LAB_STUN_ALT (RFC 5780)   TURN $LAB_TURN   hub $LAB_HUB"
for n in alice bob; do
    say "  $n: host $(lab_host_ip "$n") behind a ${LAB_TYPE[$n]} NAT, public address $(lab_public_ip "$n")"
done
say

say "-- what each host sees of its NAT"
for n in alice bob; do
    show "$n" "$NATKIT" discover --stun "$LAB_STUN" --stun "$LAB_STUN_ALT"
    show "$n" "$NATKIT" nat-type --stun "$LAB_STUN"
done
say

if ! "$NATKIT" listen --help >/dev/null 2>&1 || ! "$NATKIT" connect --help >/dev/null 2>&1; then
    say "(this natkit has no 'listen'/'connect' yet: the peer-to-peer part of the demo is left out)"
    exit 0
fi

say "-- peer to peer by peer ID, through the hub"
opts=(--hub "$LAB_HUB" --stun "$LAB_STUN" --stun "$LAB_STUN_ALT"
    --turn "$LAB_TURN" --user "$LAB_TURN_USER" --pass "$LAB_TURN_PASS")
alice_id=$("$NATKIT" keygen --out "$NK_TMP/alice.key" 2>/dev/null) || nk_fail "keygen failed"
bob_id=$("$NATKIT" keygen --out "$NK_TMP/bob.key" 2>/dev/null) || nk_fail "keygen failed"
say "  alice's peer ID: $alice_id"
say "  bob's peer ID:   $bob_id"

# one line per JSON event, readable
pretty() # PREFIX JSON
{
    local p=$1 j=$2 ev k v out=""
    ev=$(nk_json_get "$j" event) || return 0
    for k in id hub_sees peer path from local remote rtt_ms connect_ms reason; do
        [ "$k" = id ] && [ "$ev" != started ] && continue
        v=$(nk_json_get "$j" "$k") || continue
        [ -n "$v" ] && [ "$v" != -1 ] || continue
        case $k in peer | id) v="${v:0:12}..." ;; esac
        out="$out $k=$v"
    done
    say "      $p $ev:$out"
}
declare -A SHOWN=()
events() # WHO FILE: the JSON events of FILE not shown yet
{
    local who=$1 file=$2 n=0 line
    while IFS= read -r line; do
        n=$((n + 1))
        [ "$n" -gt "${SHOWN[$who]:-0}" ] || continue
        [[ $line == '{'* ]] && pretty "$who" "$line"
    done <"$file"
    SHOWN[$who]=$n
}

# bob listens; his stdin is a FIFO this script writes to
mkfifo "$NK_TMP/bob.in"
exec {bob_in}<>"$NK_TMP/bob.in"
say "  [bob]\$ natkit listen ${opts[*]} --key bob.key --json"
nk_start bob "$NK_TMP/bob.err" bash -c 'in=$1 out=$2; shift 2; exec "$@" <"$in" >"$out"' _ "$NK_TMP/bob.in" "$NK_TMP/bob.out" \
    ip netns exec "$(lab_ns bob)" "$NATKIT" listen "${opts[@]}" --key "$NK_TMP/bob.key" --json
nk_wait_for_log "$NK_TMP/bob.err" '"event":"registered"' 15 || nk_fail "natkit listen did not register with the hub"
events bob "$NK_TMP/bob.err"

mkfifo "$NK_TMP/alice.in"
exec {alice_in}<>"$NK_TMP/alice.in"
say "  [alice]\$ natkit connect ${bob_id:0:12}... ${opts[*]} --key alice.key --json"
t0=${EPOCHREALTIME//[.,]/}
(
    exec {alice_in}>&- {bob_in}>&-
    lab_exec alice timeout 60 "$NATKIT" connect "$bob_id" "${opts[@]}" --key "$NK_TMP/alice.key" --timeout 20 \
        --json <"$NK_TMP/alice.in" >"$NK_TMP/alice.out" 2>"$NK_TMP/alice.err"
    echo "[nk] connect exited with status $?" >>"$NK_TMP/alice.err"
) &
alice_pid=$!
NK_LOGS[alice]=$NK_TMP/alice.err
nk_wait_for_log "$NK_TMP/alice.err" '"event":"connected"' 25 || nk_fail "alice could not connect to bob"
t1=${EPOCHREALTIME//[.,]/}
conn=$NK_MATCH
events alice "$NK_TMP/alice.err"
nk_wait_for_log "$NK_TMP/bob.err" '"event":"connected"' 10
events bob "$NK_TMP/bob.err"
path=$(nk_json_get "$conn" path) first=$path last=$conn t2=""
if [ "$path" != direct ] && nk_wait_for_log "$NK_TMP/alice.err" '"event":"path-changed".*"path":"direct"' 5; then
    t2=${EPOCHREALTIME//[.,]/}
    last=$NK_MATCH
    events alice "$NK_TMP/alice.err"
    events bob "$NK_TMP/bob.err"
    path=direct
fi

msg_a="hello bob, alice here (behind a ${LAB_TYPE[alice]} NAT)"
msg_b="hi alice, bob here (behind a ${LAB_TYPE[bob]} NAT)"
say "  alice types: $msg_a"
printf '%s\n' "$msg_a" >&"$alice_in"
nk_wait_for_log "$NK_TMP/bob.out" "^${msg_a//[()]/.}\$" 10 || nk_fail "bob did not get alice's message"
say "    bob's stdout: $NK_MATCH"
say "  bob types: $msg_b"
printf '%s\n' "$msg_b" >&"$bob_in"
nk_wait_for_log "$NK_TMP/alice.out" "^${msg_b//[()]/.}\$" 10 || nk_fail "alice did not get bob's message"
say "    alice's stdout: $NK_MATCH"
exec {alice_in}>&-
nk_wait_for_log "$NK_TMP/alice.err" '^\[nk\] connect exited' 10 || nk_log "natkit connect did not exit after its stdin ended"
wait "$alice_pid" 2>/dev/null
say
rtt=$(nk_json_get "$last" rtt_ms)
[ "$rtt" = -1 ] && rtt="not measured yet"
say "  path: $path, alice $(nk_json_get "$last" local) <-> bob $(nk_json_get "$last" remote), rtt: ${rtt}${rtt:+ ms}"
say "  connected after $(nk_json_get "$conn" connect_ms) ms (natkit's connect_ms; $(((t1 - t0) / 1000)) ms from starting natkit connect)"
[ -z "$t2" ] || say "  on $first first; direct $(((t2 - t1) / 1000)) ms later (path-changed)"
[ "$path" = direct ] || say "  (expected a direct path between these two NATs; got $path)"
exit 0

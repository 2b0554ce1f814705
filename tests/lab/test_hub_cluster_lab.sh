#!/bin/bash
# Three hubs on one Redis in the NAT lab (issue 13, "Tests": "the same through the hub relay (UDP
# blocked)"): redis-server and three `natkit hub --redis` in the "inet" namespace; a listener
# behind a UDP-blocked NAT (--hub H1 --hub H2 --hub H3: registered at hub 1), connectors behind a
# port-restricted cone. No direct path and no TURN, so every connection is on path `hub`, and its
# bytes cross hubs through Redis (connector at hub 2, listener at hub 1):
#   1. a connector at hub 2: connected on path hub, lines both ways
#   2. a connector at hub 2: a random file (20 MB, $NK_HUBLAB_SIZE) arrives byte-identical (path hub)
#   3. kill -9 hub 1: the listener is registered again within 10 s at hub 2 or 3
#   4. a new connector at hub 3 reaches it: the file again, byte-identical, path hub
# The loopback version (direct path) is tests/integration/test_hub_cluster.sh, section 8.
# Prints the relay throughput across hubs and the re-registration time to stdout and to
# $NK_BUILD_DIR/test-reports/hub_cluster_lab.txt.
# Needs root and network namespaces (exit 77 with a SKIP line otherwise).
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/tests/lab/natlab.sh"
export LC_ALL=C
nk_init hub_cluster_lab
NATKIT=${NATKIT:-$NK_SOURCE_DIR/build/natkit}
export NATKIT
[ -x "$NATKIT" ] || nk_fail "no natkit binary at $NATKIT"
why=$(lab_can_run) || nk_skip "$why"
command -v redis-server >/dev/null 2>&1 || nk_skip "redis-server not installed (scripts/deps.sh)"
nk_require redis-cli cmp
NATLAB_NO_TRAP=1
# lab_down kills every process in the lab's namespaces: redis-server and the hubs (lab_bg) too
trap 'lab_down; nk__cleanup' EXIT

SIZE=${NK_HUBLAB_SIZE:-20000000}
lab_up || nk_fail "lab_up failed"
lab_add_nat blk udp-blocked || nk_fail "lab_add_nat blk"
lab_add_nat pr port-restricted-cone || nk_fail "lab_add_nat pr"
LAB_LOG_DIR=$NK_TMP
lab_start_servers stun || nk_fail "the lab's STUN server did not start"
NK_LOGS[stun]=${LAB_LOG[stun]}

# redis-server and three hubs on the server address in "inet"
RPORT=6379
REDIS=$LAB_SERVER_IP1:$RPORT
rpid=$(lab_bg "$LAB_INET" "$NK_TMP/redis.log" redis-server --port "$RPORT" --bind "$LAB_SERVER_IP1" \
    --save '' --appendonly no --dir "$NK_TMP" --protected-mode no)
NK_LOGS[redis]=$NK_TMP/redis.log
lab__wait_for_log "$NK_TMP/redis.log" 'Ready to accept connections' 10 "$rpid" || nk_fail "redis-server did not start"
pong=$(lab_exec_inet redis-cli -h "$LAB_SERVER_IP1" -p "$RPORT" ping 2>&1)
[ "$pong" = PONG ] || nk_fail "redis-server at $REDIS does not answer PING: $pong"
declare -A HUB=() HPID=()
for i in 1 2 3; do
    HUB[$i]=$LAB_SERVER_IP1:710$i
    HPID[$i]=$(lab_bg "$LAB_INET" "$NK_TMP/hub$i.log" "$NATKIT" hub --listen "${HUB[$i]}" --redis "$REDIS" --redis-ttl 2)
    NK_LOGS[hub$i]=$NK_TMP/hub$i.log
    lab__wait_for_log "$NK_TMP/hub$i.log" 'cluster: redis .* connected \(hub id [0-9a-f]{16}\)' 10 "${HPID[$i]}" ||
        nk_fail "hub $i did not join the cluster"
done

COMMON=(--stun "$LAB_STUN" --stun "$LAB_STUN_ALT" --json)
nk_keygen l c1 c2 c3
head -c "$SIZE" /dev/urandom >"$NK_TMP/data.bin"

REPORT=/dev/null
if [ -n "${NK_BUILD_DIR:-}" ]; then
    mkdir -p "$NK_BUILD_DIR/test-reports" && REPORT="$NK_BUILD_DIR/test-reports/hub_cluster_lab.txt"
    : >"$REPORT"
fi
report() { printf "$@" | tee -a "$REPORT"; }
paths_of() { # LOG: the connector's path(s): a>b>c
    grep -aE '"event":"(connected|path-changed)"' "$1" | sed -E 's/.*"path":"([a-z]+)".*/\1/' | paste -sd'>' -
}
START=$SECONDS

# the listener behind the UDP-blocked NAT: stdin a FIFO held open here, stdout l.out, stderr l.err
mkfifo "$NK_TMP/l.in" "$NK_TMP/c1.in"
exec {lfd}<>"$NK_TMP/l.in"
nk_start listen "$NK_TMP/l.err" bash -c 'in=$1 out=$2; shift 2; exec "$@" <"$in" >"$out"' _ \
    "$NK_TMP/l.in" "$NK_TMP/l.out" \
    ip netns exec "$(lab_ns blk)" "$NATKIT" listen --hub "${HUB[1]}" --hub "${HUB[2]}" --hub "${HUB[3]}" \
    "${COMMON[@]}" --key "$NK_TMP/l.key"
nk_wait_for_log "$NK_TMP/l.err" '"event":"registered".*"hub":"'"${HUB[1]}"'"' 20 ||
    nk_fail "the listener behind blk did not register at hub 1"
lid=$(grep -ao '"event":"started","id":"[a-z2-7]*"' "$NK_TMP/l.err" | sed 's/.*"id":"//; s/"$//')
[ -n "$lid" ] || nk_fail "no ID in the listener's started event"
hub1id=$(grep -aoE 'hub id [0-9a-f]{16}' "$NK_TMP/hub1.log" | head -1 | cut -d' ' -f3)
[ "$(lab_exec_inet redis-cli -h "$LAB_SERVER_IP1" -p "$RPORT" get "natkit:peer:$lid")" = "$hub1id" ] ||
    nk_fail "the directory does not name hub 1 for the listener"

# 1. a connector at hub 2, lines both ways, path hub
nk_start chat "$NK_TMP/c1.err" bash -c 'in=$1 out=$2; shift 2; exec "$@" <"$in" >"$out"' _ \
    "$NK_TMP/c1.in" "$NK_TMP/c1.out" \
    ip netns exec "$(lab_ns pr)" "$NATKIT" connect "$lid" --hub "${HUB[2]}" "${COMMON[@]}" --key "$NK_TMP/c1.key" --timeout 30
exec {cfd}>"$NK_TMP/c1.in"
nk_wait_for_log "$NK_TMP/c1.err" '"event":"connected"' 40 || nk_fail "(1) the connector at hub 2 did not reach the listener at hub 1"
[ "$(paths_of "$NK_TMP/c1.err")" = hub ] || nk_fail "(1) path $(paths_of "$NK_TMP/c1.err"), want hub (UDP is blocked)"
echo "to the listener at hub 1" >&$cfd
nk_wait_for_log "$NK_TMP/l.out" '^to the listener at hub 1$' 10 || nk_fail "(1) line to the listener lost"
echo "to the connector at hub 2" >&$lfd
nk_wait_for_log "$NK_TMP/c1.out" '^to the connector at hub 2$' 10 || nk_fail "(1) line to the connector lost"
exec {cfd}>&-
nk_wait_for_log "$NK_TMP/c1.err" '^\[nk\] chat exited with status' 20 || nk_fail "(1) the connector did not end at EOF"
[[ $NK_MATCH == *"status 0" ]] || nk_fail "(1) connect: $NK_MATCH"
nk_wait_for_log "$NK_TMP/l.err" '"event":"disconnected"' 10 || nk_fail "(1) the listener did not see the end"
report '\nNAT lab: three hubs on one Redis; listener behind UDP blocked (at hub 1), connectors behind a port-restricted cone\n'
report '%-34s %-6s %9s %8s  %s\n' case path "time ms" "MB/s" result
report '%-34s %-6s %9s %8s  %s\n' "lines, connector at hub 2" hub - - ok

# transfer NAME TAG HUBNUM: the file through `connect --hub HUB` (stdin), must arrive at the end of
# the listener's stdout byte-identical, on path hub; reports time and MB/s (connect's "done" event)
declare -a FAILS=()
transfer() {
    local name=$1 tag=$2 h=$3 before lines mark=ok paths done_ev ms mbs=-
    before=$(stat -c %s "$NK_TMP/l.out")
    lines=$(wc -l <"$NK_TMP/l.err")
    nk_start "$tag" "$NK_TMP/$tag.err" bash -c 'exec "$@" <"$0" >/dev/null' "$NK_TMP/data.bin" \
        ip netns exec "$(lab_ns pr)" "$NATKIT" connect "$lid" --hub "${HUB[$h]}" "${COMMON[@]}" \
        --key "$NK_TMP/$tag.key" --timeout 30
    if ! nk_wait_for_log "$NK_TMP/$tag.err" '^\[nk\] .* exited with status' 180; then
        mark="did not finish within 180 s"
    elif [[ $NK_MATCH != *"status 0" ]]; then
        mark="connect: $NK_MATCH"
    elif ! nk_wait_for_log "$NK_TMP/l.err" '"event":"disconnected"' 10 1 "$lines"; then
        mark="the listener did not see the end"
    elif ! tail -c +$((before + 1)) "$NK_TMP/l.out" | cmp -s "$NK_TMP/data.bin" -; then
        mark="the listener's stdout differs from the file ($(($(stat -c %s "$NK_TMP/l.out") - before)) bytes)"
    fi
    paths=$(paths_of "$NK_TMP/$tag.err")
    [ "$mark" != ok ] || [ "$paths" = hub ] || mark="path(s) $paths, want hub"
    done_ev=$(grep -a '"event":"done"' "$NK_TMP/$tag.err" | tail -1)
    ms=$(nk_json_get "$done_ev" ms 2>/dev/null || echo "-")
    [ "$ms" = - ] || mbs=$(awk -v ms="$ms" -v b="$SIZE" 'BEGIN { if (ms > 0) printf "%.2f", b / 1e6 / (ms / 1e3); else printf "-" }')
    report '%-34s %-6s %9s %8s  %s\n' "$name" "${paths:--}" "$ms" "$mbs" "$mark"
    [ "$mark" = ok ] || FAILS+=("$name: $mark [logs: $NK_TMP/$tag.err, $NK_TMP/l.err]")
    nk_stop "$tag" >/dev/null
}

# 2. the file through the relay, connector at hub 2 -> Redis -> hub 1 -> listener
transfer "$((SIZE / 1000000)) MB, hub 2 -> hub 1" c2 2

# 3. kill -9 hub 1: registered again at hub 2 or 3 within 10 s
nregs=$(grep -ac '"event":"registered"' "$NK_TMP/l.err")
lines=$(wc -l <"$NK_TMP/l.err") # only a registration after the kill counts
t0=${EPOCHREALTIME//[.,]/}
kill -KILL "${HPID[1]}" || nk_fail "(3) kill -9 of hub 1 (pid ${HPID[1]})"
if nk_wait_for_log "$NK_TMP/l.err" '"event":"registered".*"hub":"('"${HUB[2]}|${HUB[3]}"')"' 10 1 "$lines"; then
    ms=$(((${EPOCHREALTIME//[.,]/} - t0) / 1000))
    at=$(sed -E 's/.*"hub":"([^"]*)".*/\1/' <<<"$NK_MATCH")
    report '%-34s %-6s %9s %8s  %s\n' "kill -9 hub 1 -> registered again" - "$ms" - "ok (at $at)"
else
    report '%-34s %-6s %9s %8s  %s\n' "kill -9 hub 1 -> registered again" - - - "not within 10 s"
    nk_fail "(3) the listener was not registered again within 10 s of kill -9 of hub 1 (registered events before: $nregs)"
fi

# 4. a new connector at hub 3 reaches it, the file again on path hub
transfer "$((SIZE / 1000000)) MB, hub 3 -> $at" c3 3

exec {lfd}>&-
nk_stop listen >/dev/null
SAN_RE='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:'
for f in "$NK_TMP"/*.err "$NK_TMP"/hub*.log; do
    if grep -aqE "$SAN_RE" "$f"; then FAILS+=("sanitizer report in $f"); fi
done
report '(%d s in all)\n\n' $((SECONDS - START))
if [ ${#FAILS[@]} -gt 0 ]; then
    for f in "${FAILS[@]}"; do report 'FAIL %s\n' "$f"; done
    nk_fail "${#FAILS[@]} failure(s)"
fi
nk_pass "three hubs on one Redis in the lab: UDP-blocked listener at hub 1 reached from hub 2 on path hub (lines, $((SIZE / 1000000)) MB byte-identical); after kill -9 of hub 1 registered again in $ms ms at $at and reached from hub 3 (byte-identical)"

#!/bin/bash
# The lab itself (tests/lab/natlab.sh): a port leaving the internet bridge must not strand the
# routers' neighbour entries for the servers' addresses.
# A Linux bridge without a MAC of its own takes the lowest MAC of its ports and changes it as ports
# join and leave. A router that resolved 192.0.2.101 while a port with a lower MAC was on br0 (a CGN
# home's link before lab_add_nat_behind moves it) then sent to a MAC nobody had any more: the
# frames were flooded on the bridge, never delivered, and the STUN server's second address was
# silent for about 35 s (REACHABLE, then DELAY and PROBE) while 192.0.2.100 answered. Here: a port
# with a MAC lower than any, the router resolves .101 while it is there, the port leaves; natkit
# discover to 192.0.2.101 must then answer at once (before lab__bridge_add it timed out).
# Needs root and network namespaces (exit 77 with a SKIP line otherwise).
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/tests/lab/natlab.sh"

nk_init natlab
NATKIT=${NATKIT:-$NK_SOURCE_DIR/build/natkit}
[ -x "$NATKIT" ] || nk_fail "no natkit binary at $NATKIT"
why=$(lab_can_run) || nk_skip "$why"
NATLAB_NO_TRAP=1
trap 'lab_down; nk__cleanup' EXIT

lab_up || nk_fail "lab_up failed"
lab_add_nat sym symmetric || nk_fail "lab_add_nat sym"
LAB_LOG_DIR=$NK_TMP
lab_start_servers stun || nk_fail "the lab's STUN server did not start"
NK_LOGS[stun]=${LAB_LOG[stun]}

# discover TARGET: one Binding from behind the NAT, 3 s at most; prints the server that answered.
discover() {
    local out
    out=$(lab_exec sym "$NATKIT" discover --stun "$1" --timeout 3 --json 2>"$NK_TMP/discover.err") ||
        return 1
    nk_json_get "$out" server
}

mac0=$(lab_exec_inet cat /sys/class/net/br0/address)
[ "$(discover "$LAB_SERVER_IP2:3479")" = "$LAB_SERVER_IP2:3479" ] || nk_fail "no answer from $LAB_SERVER_IP2:3479 at all"

# a port with the lowest MAC there is joins br0; the router resolves the servers while it is there
ip -n "$LAB_INET" link add vlow address 02:00:00:00:00:01 type veth peer name vlowp address 02:00:00:00:00:02 ||
    nk_fail "veth vlow"
ip -n "$LAB_INET" link set vlow master br0 up || nk_fail "vlow on br0"
mac1=$(lab_exec_inet cat /sys/class/net/br0/address)
lab_exec_router sym ip neigh flush dev w0
[ "$(discover "$LAB_SERVER_IP2:3479")" = "$LAB_SERVER_IP2:3479" ] ||
    nk_fail "no answer from $LAB_SERVER_IP2:3479 while a port with a low MAC is on br0"
# ... and leaves
ip -n "$LAB_INET" link del vlow || nk_fail "deleting vlow"
mac2=$(lab_exec_inet cat /sys/class/net/br0/address)
for t in "$LAB_SERVER_IP2:3479" "$LAB_SERVER_IP2:3478" "$LAB_SERVER_IP1:3478"; do
    [ "$(discover "$t")" = "$t" ] ||
        nk_fail "$t silent after a port left br0 (router's neighbours: $(lab_exec_router sym ip neigh show dev w0 | tr '\n' ';'))"
done
if [ "$mac0" != "$mac1" ] || [ "$mac1" != "$mac2" ]; then
    nk_fail "br0's MAC changed with its ports: $mac0, then $mac1 with vlow, then $mac2 (lab__bridge_add)"
fi
nk_pass "br0 keeps its MAC ($mac0) as ports come and go; 192.0.2.101 answers at once after a port left"

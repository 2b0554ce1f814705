#!/bin/bash
# natkit accept / natkit dial through the NAT lab (issue 6): UDP punch, secure session,
# the TCP port announced over UDP, a sealed TCP stream, 10 MB each way at the same time.
#
# The acceptor runs on the public host (no NAT); the dialer behind each of: full cone,
# restricted cone, port-restricted cone, symmetric, and a port-restricted NAT that drops
# 30 % of the UDP packets in each direction (nftables; the hello, the handshake and the
# announcement must survive it). For each: both exit 0, the TCP stream comes up, both
# 10 MB files arrive intact (sha256), the dialer reports its mapping as the acceptor saw
# it (port preserved on the cone NATs, translated on the symmetric one), and the
# acceptor's printed "UDP listen addr to share" is the public host's address.
# Also: a dialer with a wrong --peer-id is refused (exit 1), the right one is accepted.
# Throughput: in the same run and between the same namespaces, a plain TCP transfer
# (tests/lab/tcp_plain.py, both directions at once) next to natkit's; both go to stdout
# and $NK_BUILD_DIR/test-reports/tcp_upgrade.txt (natkit here is the build under test,
# with ASan+UBSan in `make test`: its number is a floor, not the release figure).
# Needs root and network namespaces (exit 77 with a SKIP line otherwise). About 1 minute.
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/tests/lab/natlab.sh"

export LC_ALL=C
nk_init tcp_upgrade
NATKIT=${NATKIT:-$NK_SOURCE_DIR/build/natkit}
export NATKIT
[ -x "$NATKIT" ] || nk_fail "no natkit binary at $NATKIT"
why=$(lab_can_run) || nk_skip "$why"
for c in accept dial; do
    "$NATKIT" "$c" --help >/dev/null 2>&1 || nk_fail "natkit $c --help failed"
done
nk_require python3 sha256sum
PLAIN=$NK_SOURCE_DIR/tests/lab/tcp_plain.py
SIZE=$((10 * 1024 * 1024))
RUN_TIMEOUT=60

NATLAB_NO_TRAP=1
trap 'lab_down; nk__cleanup' EXIT

# name | lab_add_nat type and options | expected mapping text of the dialer
CASES=(
    "full|full-cone|port preserved"
    "restricted|restricted-cone|port preserved"
    "portrestricted|port-restricted-cone|port preserved"
    "symmetric|symmetric|address and port translated"
    "lossy|port-restricted-cone loss=30|port preserved"
)

lab_up || nk_fail "lab_up failed"
lab_add_nat public none || nk_fail "lab_add_nat public"
for c in "${CASES[@]}"; do
    IFS='|' read -r name type _ <<<"$c"
    # shellcheck disable=SC2086
    lab_add_nat "$name" $type || nk_fail "lab_add_nat $name $type"
done
PUB_IP=$(lab_host_ip public)

"$NATKIT" keygen --out "$NK_TMP/acc.key" >"$NK_TMP/acc.id" 2>/dev/null || nk_fail "keygen"
"$NATKIT" keygen --out "$NK_TMP/dial.key" >/dev/null 2>&1 || nk_fail "keygen"
ACC_ID=$(head -n 1 "$NK_TMP/acc.id")
DIAL_ID=$("$NATKIT" keygen --out "$NK_TMP/other.key" 2>/dev/null | head -n 1)
head -c $SIZE /dev/urandom >"$NK_TMP/a.bin"
head -c $SIZE /dev/urandom >"$NK_TMP/b.bin"
SUM_A=$(sha256sum <"$NK_TMP/a.bin" | cut -d' ' -f1)
SUM_B=$(sha256sum <"$NK_TMP/b.bin" | cut -d' ' -f1)

# start_acceptor TAG: natkit accept on the public host, stdin a.bin; waits for its address line.
# Sets ACC_PID and ACC_ADDR.
start_acceptor()
{
    local tag=$1
    ip netns exec "$(lab_ns public)" timeout $RUN_TIMEOUT "$NATKIT" accept --key "$NK_TMP/acc.key" \
        <"$NK_TMP/a.bin" >"$NK_TMP/$tag.acc.out" 2>"$NK_TMP/$tag.acc.err" &
    ACC_PID=$!
    lab__wait_for_log "$NK_TMP/$tag.acc.err" '^UDP listen addr to share: ' 10 $ACC_PID ||
        nk_fail "$tag: accept printed no address: $(cat "$NK_TMP/$tag.acc.err")"
    ACC_ADDR=$(sed -n 's/^UDP listen addr to share: //p' "$NK_TMP/$tag.acc.err" | head -n 1)
    [ "${ACC_ADDR%:*}" = "$PUB_IP" ] || nk_fail "$tag: accept shares $ACC_ADDR, expected $PUB_IP:PORT"
}

no_sanitizer_report()
{
    ! grep -qE 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$@"
}

# seconds from natkit's "TCP: sent ... in S s" line
tcp_seconds() { sed -n 's/.*TCP: sent [0-9]* bytes, received [0-9]* bytes in \([0-9.]*\) s.*/\1/p' "$1" | head -n 1; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s <= 0) s = 0.001; printf "%.1f", b / 1e6 / s }'; }

# plain_tcp NAME: the baseline between the public host and NAME's host, both ways at once.
plain_tcp()
{
    local name=$1 port=5001 pid out
    ip netns exec "$(lab_ns public)" timeout $RUN_TIMEOUT python3 "$PLAIN" server 0.0.0.0 $port \
        "$NK_TMP/a.bin" "$NK_TMP/plain.a.out" >"$NK_TMP/plain.srv" 2>&1 &
    pid=$!
    lab__wait_for_log "$NK_TMP/plain.srv" '^listening' 10 $pid || { echo "-"; return; }
    out=$(ip netns exec "$(lab_ns "$name")" timeout $RUN_TIMEOUT python3 "$PLAIN" client "$PUB_IP" $port \
        "$NK_TMP/b.bin" "$NK_TMP/plain.b.out" 2>&1) || nk_log "plain TCP to $name failed: $out"
    wait $pid
    [ "$(sha256sum <"$NK_TMP/plain.b.out" | cut -d' ' -f1)" = "$SUM_A" ] || { echo "-"; return; }
    sed -n 's/.* seconds \([0-9.]*\).*/\1/p' <<<"$out"
}

REPORT=()
run_case()
{
    local name=$1 type=$2 mapping=$3 tag=$1 rc arc pin=()
    [ "$name" = full ] && pin=(--peer-id "$ACC_ID")
    start_acceptor "$tag"
    ip netns exec "$(lab_ns "$name")" timeout $RUN_TIMEOUT "$NATKIT" dial "$ACC_ADDR" --key "$NK_TMP/dial.key" \
        "${pin[@]}" <"$NK_TMP/b.bin" >"$NK_TMP/$tag.dial.out" 2>"$NK_TMP/$tag.dial.err"
    rc=$?
    wait $ACC_PID
    arc=$?
    local de=$NK_TMP/$tag.dial.err ae=$NK_TMP/$tag.acc.err
    [ $rc = 0 ] && [ $arc = 0 ] || nk_fail "$name: dial exit $rc, accept exit $arc
--- dial:
$(cat "$de")
--- accept:
$(cat "$ae")"
    grep -q 'TCP stream with .* is up' "$de" && grep -q 'TCP stream with .* is up' "$ae" ||
        nk_fail "$name: no TCP stream: $(cat "$de" "$ae")"
    [ "$(sha256sum <"$NK_TMP/$tag.dial.out" | cut -d' ' -f1)" = "$SUM_A" ] ||
        nk_fail "$name: the dialer received $(stat -c %s "$NK_TMP/$tag.dial.out") bytes, not the acceptor's 10 MB"
    [ "$(sha256sum <"$NK_TMP/$tag.acc.out" | cut -d' ' -f1)" = "$SUM_B" ] ||
        nk_fail "$name: the acceptor received $(stat -c %s "$NK_TMP/$tag.acc.out") bytes, not the dialer's 10 MB"
    grep -q "our UDP mapping: .*$mapping" "$de" || nk_fail "$name: expected mapping '$mapping': $(grep mapping "$de")"
    grep -q "acceptor's peer ID: $ACC_ID" "$de" || nk_fail "$name: the dialer did not print the acceptor's ID"
    grep -q "secure session up with peer ID $ACC_ID" "$de" || nk_fail "$name: session not with $ACC_ID"
    no_sanitizer_report "$de" "$ae" || nk_fail "$name: sanitizer report: $(cat "$de" "$ae")"
    local sent_n secs plain
    sent_n=$(sed -n 's/.*the dialer has the announcement after \([0-9]*\) sends*$/\1/p' "$ae")
    secs=$(tcp_seconds "$de")
    plain=$(plain_tcp "$name")
    REPORT+=("$(printf '%-16s %-28s %-10s %6s %11s %11s' "$name" "$type" "ok" "${sent_n:-?}" \
        "$(mbps $((2 * SIZE)) "${secs:-0}")" "$( [ "$plain" = - ] && echo - || mbps $((2 * SIZE)) "$plain")")")
    nk_log "$name: ok (natkit ${secs}s, plain ${plain}s for 2 x 10 MB)"
}

for c in "${CASES[@]}"; do
    IFS='|' read -r name type mapping <<<"$c"
    run_case "$name" "$type" "$mapping"
done

# a pinned --peer-id that is not the acceptor's: refused before any session
start_acceptor wrongpin
ip netns exec "$(lab_ns full)" timeout 20 "$NATKIT" dial "$ACC_ADDR" --key "$NK_TMP/dial.key" --peer-id "$DIAL_ID" \
    </dev/null >/dev/null 2>"$NK_TMP/wrongpin.dial.err"
rc=$?
kill $ACC_PID 2>/dev/null
wait $ACC_PID 2>/dev/null
[ $rc = 1 ] && grep -q 'not the pinned --peer-id' "$NK_TMP/wrongpin.dial.err" ||
    nk_fail "a wrong --peer-id was not refused (exit $rc): $(cat "$NK_TMP/wrongpin.dial.err")"

mkdir -p "${NK_BUILD_DIR:-$NK_TMP}/test-reports"
{
    echo "natkit accept (public host) <- natkit dial (behind each NAT): 10 MB each way at once over the sealed TCP stream"
    echo "throughput = 2 x 10 MB / time from TCP up to both directions done; plain = the same transfer over plain TCP"
    echo "(tests/lab/tcp_plain.py) between the same namespaces in the same run. natkit: $NATKIT"
    echo
    printf '%-16s %-28s %-10s %6s %11s %11s\n' "dialer NAT" "type" "result" "annc" "natkit MB/s" "plain MB/s"
    printf '%s\n' "${REPORT[@]}"
    echo
    echo "annc: how many times the acceptor sent the TCP announcement before it knew the dialer had it"
    echo "(the dialer's ACK, its RESULT or its authenticated TCP connection, whichever came first)"
} | tee "${NK_BUILD_DIR:-$NK_TMP}/test-reports/tcp_upgrade.txt"
nk_pass "TCP upgrade behind every NAT type, 10 MB both ways intact, announcement through 30% UDP loss, wrong pin refused"

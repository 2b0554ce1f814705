#!/bin/bash
# natkit nat-type behind every kind of NAT the lab builds, against natkit stun-server
# (RFC 5780: 192.0.2.100 and 192.0.2.101 in the lab's "inet" namespace). Asserts the
# exact answer for each NAT and prints the table; then coturn's turnutils_natdiscovery,
# a client natkit did not write, must reach the same mapping/filtering answers against
# natkit's server. Needs root and network namespaces (exit 77 with a SKIP line otherwise).
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/tests/lab/natlab.sh"

nk_init nat_type
NATKIT=${NATKIT:-$NK_SOURCE_DIR/build/natkit}
[ -x "$NATKIT" ] || nk_fail "no natkit binary at $NATKIT"
why=$(lab_can_run) || nk_skip "$why"
nk_require turnutils_natdiscovery

# One EXIT trap for both: the lab's namespaces (and whatever runs in them), then lib.sh's.
NATLAB_NO_TRAP=1
trap 'lab_down; nk__cleanup' EXIT

EIM=endpoint-independent ADM=address-dependent APDM=address-and-port-dependent

# name | lab_add_nat arguments | expected: mapping filtering hairpinning port_allocation classic
CASES=(
    "full|full-cone hairpin=on|$EIM $EIM true preserving full-cone"
    "restricted|restricted-cone|$EIM $ADM false preserving restricted-cone"
    "portrestricted|port-restricted-cone|$EIM $APDM false preserving port-restricted-cone"
    "prc-hairpin|port-restricted-cone hairpin=on|$EIM $APDM true preserving port-restricted-cone"
    "symmetric|symmetric|$APDM $APDM false random symmetric"
    "sym-hairpin|symmetric hairpin=on|$APDM $APDM true random symmetric"
    "public|none|$EIM $EIM null preserving open"
    "blocked|udp-blocked|null null null null udp-blocked"
    # 2 % loss each way: a test fails only if 4 sends in a row are lost (~3e-6 per test)
    "lossy|restricted-cone loss=2|$EIM $ADM false preserving restricted-cone"
    "lifetime|port-restricted-cone udp_timeout=4|$EIM $APDM false preserving port-restricted-cone"
)
# A 300 ms round trip (longer than the 250 ms RTO) needs netem, which some kernels lack.
if lab_has_netem; then
    CASES+=("slow|restricted-cone delay=300|$EIM $ADM false preserving restricted-cone")
else
    nk_log "this kernel has no netem qdisc: the delayed-NAT case is not run"
fi
# coturn's client runs behind these
COTURN_CASES="full restricted portrestricted symmetric public"

lab_up || nk_fail "lab_up failed"
for c in "${CASES[@]}"; do
    IFS='|' read -r name args _ <<<"$c"
    # shellcheck disable=SC2086
    lab_add_nat "$name" $args || nk_fail "lab_add_nat $name $args failed"
done

if [ "${NK_NAT_TYPE_SERVER:-natkit}" = coturn ]; then
    # For comparison only: coturn as the RFC 5780 server (alternate port 3479).
    nk_start stun "$NK_TMP/stun.log" ip netns exec "$LAB_INET" turnserver -n --log-file stdout --simple-log \
        -L "$LAB_SERVER_IP1" -L "$LAB_SERVER_IP2" -p 3478 --no-tls --no-dtls --no-cli -z --stun-only \
        --pidfile "$NK_TMP/coturn.pid" --userdb "$NK_TMP/coturn.db"
    nk_wait_for_log "$NK_TMP/stun.log" 'Total General servers|Total UDP servers' 15 || nk_fail "coturn did not start"
else
    nk_start stun "$NK_TMP/stun.log" ip netns exec "$LAB_INET" \
        "$NATKIT" stun-server --listen "$LAB_SERVER_IP1:3478" --alt-ip "$LAB_SERVER_IP2"
    nk_wait_for_log "$NK_TMP/stun.log" '192\.0\.2\.100' 10 || nk_fail "natkit stun-server did not start"
fi
nk_log "server: $NK_MATCH"

# Every NAT at once (each in its own namespaces): the whole run takes as long as the slowest.
declare -A PIDS=()
for c in "${CASES[@]}"; do
    IFS='|' read -r name _ _ <<<"$c"
    extra=""
    [ "$name" = lifetime ] && extra="--lifetime --lifetime-max 8"
    # shellcheck disable=SC2086
    lab_exec "$name" timeout 60 "$NATKIT" nat-type --stun "$LAB_SERVER_IP1:3478" --json $extra \
        >"$NK_TMP/$name.json" 2>"$NK_TMP/$name.err" &
    PIDS[$name]=$!
done
for name in $COTURN_CASES; do
    lab_exec "$name" timeout 60 turnutils_natdiscovery -m -f "$LAB_SERVER_IP1" >"$NK_TMP/$name.coturn" 2>&1 &
    PIDS[$name.coturn]=$!
done
declare -A RC=()
for k in "${!PIDS[@]}"; do
    wait "${PIDS[$k]}"
    RC[$k]=$?
done

# The table goes to stdout and, for `make test` (which prints every report after ctest),
# to $NK_BUILD_DIR/test-reports/nat-type.txt.
REPORT=/dev/null
if [ -n "${NK_BUILD_DIR:-}" ]; then
    mkdir -p "$NK_BUILD_DIR/test-reports" && REPORT="$NK_BUILD_DIR/test-reports/nat-type.txt"
    echo "NAT lab: natkit nat-type behind each lab NAT (tests/lab/test_nat_type.sh)" >"$REPORT"
fi
report() { printf "$@" | tee -a "$REPORT"; }

failures=0
report '\n%-15s %-36s -> %s\n' "NAT" "built (lab_add_nat)" "natkit nat-type answer (mapping filtering hairpinning ports classic)"
for c in "${CASES[@]}"; do
    IFS='|' read -r name args want <<<"$c"
    json=$(cat "$NK_TMP/$name.json")
    got=""
    for k in mapping filtering hairpinning port_allocation classic; do
        got="$got $(nk_json_get "$json" "$k" || echo '?')"
    done
    got=${got# }
    mark=ok
    [ "$got" = "$want" ] || mark="WRONG (want: $want)"
    want_rc=0
    [ "$name" = blocked ] && want_rc=1
    [ "${RC[$name]}" = "$want_rc" ] || mark="$mark; exit ${RC[$name]}, want $want_rc ($(head -c 200 "$NK_TMP/$name.err"))"
    if [ "$name" = lifetime ]; then
        lt="$(nk_json_get "$json" lifetime_s)..$(nk_json_get "$json" lifetime_max_s)"
        got="$got lifetime ${lt}s"
        # conntrack/filter entries live 4 s: the 3 s idle trial survives, the 5 s one does not
        [ "$lt" = "3..5" ] || mark="$mark; lifetime $lt, want 3..5"
    fi
    report '%-15s %-36s -> %s  [%s]\n' "$name" "$args" "$got" "$mark"
    [ "$mark" = ok ] || { failures=$((failures + 1)); nk_log "$name: $json"; }
done

# coturn's client against natkit's server: the same mapping/filtering answers.
coturn_word()
{
    case $1 in
    "Endpoint Independent") echo "$EIM" ;;
    "Address Dependent") echo "$ADM" ;;
    "Address and Port Dependent") echo "$APDM" ;;
    *) echo "?" ;;
    esac
}
report '\n%-15s %-55s %s\n' "NAT" "turnutils_natdiscovery -m -f (vs ${NK_NAT_TYPE_SERVER:-natkit} stun server)" "natkit nat-type"
for name in $COTURN_CASES; do
    out=$(cat "$NK_TMP/$name.coturn")
    json=$(cat "$NK_TMP/$name.json")
    if [[ $out =~ NAT\ with\ ([A-Za-z ]+)\ Mapping! ]]; then
        cm=$(coturn_word "${BASH_REMATCH[1]}")
    elif [[ $out =~ No\ NAT ]] || [[ $out =~ not\ behind\ a\ NAT ]]; then
        cm=$EIM
    else
        cm="?"
    fi
    if [[ $out =~ NAT\ with\ ([A-Za-z ]+)\ Filtering! ]]; then cf=$(coturn_word "${BASH_REMATCH[1]}"); else cf="?"; fi
    nm="$(nk_json_get "$json" mapping) $(nk_json_get "$json" filtering)"
    mark=ok
    [ "$cm $cf" = "$nm" ] || { mark=DIFFERENT; failures=$((failures + 1)); nk_log "coturn output behind $name:"; tail -n 15 "$NK_TMP/$name.coturn" >&2; }
    report '%-15s %-55s %s  [%s]\n' "$name" "$cm $cf" "$nm" "$mark"
done
report '\n'
[ "$failures" = 0 ] || report 'FAILED: %s NAT(s) classified wrongly\n\n' "$failures"

[ "$failures" = 0 ] || nk_fail "$failures NAT(s) classified wrongly (table above)"
nk_pass "every lab NAT classified exactly; coturn's client agrees with natkit's server"

#!/bin/bash
# natkit connect / natkit listen between every pair of lab NATs (issue 5, item 7).
#
# In the lab's "inet" namespace: natkit hub, natkit stun-server (RFC 5780: two addresses)
# and natkit turn-server. One host behind each of: no NAT, full cone, restricted cone,
# port-restricted cone, symmetric, UDP blocked; each runs one `natkit listen`. Every host
# then connects (`natkit connect`, a fresh key per pair) to every other host's listener,
# and both sides send one line; the exact text must arrive on the other side's stdout.
# A second host behind the port-restricted NAT connects to the first one over their
# inside (10.0.x) addresses. Prints the matrix (rows: the connector's NAT, columns: the
# listener's NAT; cells: path and connect_ms) to stdout and to
# $NK_BUILD_DIR/test-reports/p2p_matrix.txt, and fails on any pair that does not connect,
# does not deliver both messages, or whose first connected event (on either side) does not
# name the expected path:
#   direct  when neither side is symmetric or UDP-blocked, and symmetric <-> public /
#           full cone / restricted cone (a relayed start that moves to direct later fails);
#           symmetric <-> port-restricted by birthday probing (issue 14): TURN carries the
#           connection first, and a direct path must follow within 5 s of the connect's start;
#   turn    for symmetric <-> symmetric (TURN is offered to every peer and
#           UDP passes on both sides, so the hub's relay would be the wrong choice);
#   hub     whenever one side is UDP-blocked.
# A path change while the pair exchanges its lines is shown in the cell (a>b) and fails
# unless it ends on the expected path.
# Also: natkit connect exits 0 once its stdin has ended, connected events are printable
# JSON with the remote IP:PORT of a direct/turn path, the listeners exit 0 on SIGTERM, and
# no natkit printed a sanitizer report (make test runs this with ASan+UBSan).
# Pairs run in rounds: in round r every host connects to the host r places further in
# the list, so each host has one connector and one incoming connection per round
# (about 30 s in all on an idle 2-core machine). Then 20 more connections between the
# port-restricted and the symmetric host (10 each way, one at a time): at least 19 must be
# direct within 5 s of the start (birthday probing; the report gives each one's time).
# Then the IPv6 rows (issue 14): two IPv6-only hosts behind stateful firewalls, and a
# dual-stack host, through a dual-stack hub: IPv6 firewalled <-> IPv6 firewalled and
# IPv6-only <-> dual-stack, each direction once, must be direct over IPv6 from the first
# connected event; the report gives each one's path, time to direct and probes sent.
# Then carrier-grade NAT (issue 14 item 2; lab_add_cgn): port-restricted homes behind two
# endpoint-independent CGNs, one hairpinning: natkit nat-type behind home + CGN must say
# port-restricted cone; same CGN with hairpinning -> direct, same CGN without -> turn, different
# CGNs -> direct, CGN <-> symmetric -> birthday probing (direct within 5 s), CGN <-> others direct.
# Every pair line in the report gives the probes (connectivity checks, birthday packets) both
# sides had sent when they reached the final path (connected/path-changed "probes").
# Needs root and network namespaces (exit 77 with a SKIP line otherwise).
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/tests/lab/natlab.sh"

# bytes, not characters: an event with a stray byte must still parse, and show up as a failure
export LC_ALL=C
nk_init p2p_matrix
NATKIT=${NATKIT:-$NK_SOURCE_DIR/build/natkit}
export NATKIT
[ -x "$NATKIT" ] || nk_fail "no natkit binary at $NATKIT"
why=$(lab_can_run) || nk_skip "$why"
MISSING=""
for c in listen connect; do
    "$NATKIT" "$c" --help >/dev/null 2>&1 || MISSING="$MISSING $c"
done

CONNECT_TIMEOUT=${NK_P2P_CONNECT_TIMEOUT:-30} # natkit connect --timeout

NATLAB_NO_TRAP=1
trap 'lab_down; nk__cleanup' EXIT

# name | lab_add_nat type | column label
NATS=(
    "public|none|public"
    "full|full-cone|full-cone"
    "restricted|restricted-cone|restricted"
    "portrestricted|port-restricted-cone|port-restr"
    "symmetric|symmetric|symmetric"
    "blocked|udp-blocked|udp-blocked"
)
SAME_NAT=portrestricted   # a second host behind it: $SAME_NAT-2
declare -A TYPE=([$SAME_NAT-2]=port-restricted-cone) LABEL=()
HOSTS=()
for n in "${NATS[@]}"; do
    IFS='|' read -r name type label <<<"$n"
    HOSTS+=("$name")
    TYPE[$name]=$type
    LABEL[$name]=$label
done

# expected C L: direct, turn or hub. Every peer is given the TURN server (COMMON below),
# so where no direct path exists and UDP passes on both sides the relay must be TURN.
expected()
{
    local a=${TYPE[$1]} b=${TYPE[$2]}
    if [ "$a" = udp-blocked ] || [ "$b" = udp-blocked ]; then
        echo hub
    elif [ "$a" = symmetric ] && [ "$b" = symmetric ]; then
        echo turn
    else
        echo direct
    fi
}

# birthday C L: 0 when one side is port-restricted and the other symmetric (TURN first, then direct)
birthday()
{
    case "${TYPE[$1]}${TYPE[$2]}" in
    port-restricted-conesymmetric | symmetricport-restricted-cone) return 0 ;;
    *) return 1 ;;
    esac
}
BIRTHDAY_MS=5000 # a birthday pair must be direct this long after natkit connect started

lab_up || nk_fail "lab_up failed"
for name in "${HOSTS[@]}"; do
    lab_add_nat "$name" "${TYPE[$name]}" || nk_fail "lab_add_nat $name ${TYPE[$name]} failed"
done
lab_add_host "$SAME_NAT" "$SAME_NAT-2" || nk_fail "lab_add_host $SAME_NAT failed"
LAB_LOG_DIR=$NK_TMP
lab_start_servers stun turn hub || nk_fail "the lab's servers did not start"
NK_LOGS[stun]=${LAB_LOG[stun]} NK_LOGS[turn]=${LAB_LOG[turn]} NK_LOGS[hub]=${LAB_LOG[hub]}

# Every host reaches the hub over TCP (also the UDP-blocked one).
HUB_IP=${LAB_HUB%:*} HUB_PORT=${LAB_HUB#*:}
for name in "${HOSTS[@]}" "$SAME_NAT-2"; do
    lab_exec "$name" timeout 5 bash -c "exec 3<>/dev/tcp/$HUB_IP/$HUB_PORT" ||
        nk_fail "the hub $LAB_HUB is not reachable over TCP from $name"
done

COMMON=(--hub "$LAB_HUB" --stun "$LAB_STUN" --stun "$LAB_STUN_ALT"
    --turn "$LAB_TURN" --user "$LAB_TURN_USER" --pass "$LAB_TURN_PASS" --json)
KEYS=$NK_TMP/keys
mkdir -p "$KEYS"
declare -A ID=()
keygen() # FILE: prints the peer ID
{
    local id
    id=$("$NATKIT" keygen --out "$1" 2>/dev/null) || nk_fail "natkit keygen --out $1 failed"
    [[ $id =~ ^[a-z2-7]{52}$ ]] || nk_fail "natkit keygen printed '$id', not a 52-character peer ID"
    echo "$id"
}

for name in "${HOSTS[@]}"; do
    ID[$name]=$(keygen "$KEYS/$name.key") || nk_fail "keygen for $name failed"
done
if [ -n "$MISSING" ]; then
    # Everything but the peers themselves has been built and checked above.
    nk_skip "this natkit has no${MISSING} command yet ($NATKIT --help); lab, hub, STUN, TURN, hub reachability and keygen checked"
fi

# One listener per host; its stdin is a FIFO the test (and every pair below) writes to.
declare -A LIN=()
start_listeners() # NAME...: natkit listen "${COMMON[@]}" behind each, waited until registered
{
    local name fd
    for name in "$@"; do
        mkfifo "$NK_TMP/$name.lis.in"
        exec {fd}<>"$NK_TMP/$name.lis.in"
        LIN[$name]=$fd
        nk_start "lis-$name" "$NK_TMP/$name.lis.err" bash -c 'in=$1 out=$2; shift 2; exec "$@" <"$in" >"$out"' _ \
            "$NK_TMP/$name.lis.in" "$NK_TMP/$name.lis.out" \
            ip netns exec "$(lab_ns "$name")" "$NATKIT" listen "${COMMON[@]}" --key "$KEYS/$name.key"
    done
    for name in "$@"; do
        nk_wait_for_log "$NK_TMP/$name.lis.err" '"event":"registered"' 20 ||
            nk_fail "natkit listen behind $name did not register with the hub ${COMMON[1]}"
    done
}
start_listeners "${HOSTS[@]}"
nk_log "6 listeners registered with the hub $LAB_HUB"

json_line() # FILE REGEX: the last line of FILE matching REGEX
{
    grep -E -- "$2" "$1" 2>/dev/null | tail -n 1
}

# run_pair C L TAG: natkit connect from host C to the listener on host L; both directions
# carry one line. Writes "status|path|cell note|local|remote|rtt_ms|connect_ms|detail|listener's path"
# to $NK_TMP/pairs/TAG.result (path: the connector's first connected path). Runs in a subshell of its own (the FIFO's write end must
# be held by this subshell only, so that closing it is stdin's EOF for natkit connect).
run_pair()
{
    local c=$1 l=$2 tag=$3 d=$NK_TMP/pairs/$3 w pid ev path local remote rtt cms lpath= t0 bd_ms
    local to_l="p2p $tag: hello $l, this is $c" to_c="p2p $tag: hello $c, this is $l"
    mkdir -p "$d"
    local res=$d.result
    printf 'FAIL|-|?|||||not run|\n' >"$res"
    local id
    id=$(keygen "$KEYS/$tag.key") || { printf 'FAIL|-|keygen|||||natkit keygen failed|\n' >"$res"; exit 1; }
    mkfifo "$d/in"
    exec {w}<>"$d/in"
    t0=${EPOCHREALTIME//[.,]/}
    (
        exec {w}>&-
        lab_exec "$c" timeout -s TERM $((CONNECT_TIMEOUT + 40)) "$NATKIT" connect "${ID[$l]}" "${COMMON[@]}" \
            --key "$KEYS/$tag.key" --timeout "$CONNECT_TIMEOUT" <"$d/in" >"$d/out" 2>"$d/err"
        echo "[nk] connect exited with status $?" >>"$d/err"
    ) &
    pid=$!
    # fields of the result line: printable, no '|'
    clean() { printf '%s' "$1" | tr -c '[:print:]' '?' | tr '|' '!'; }
    # (the connector, if still running, ends at its --timeout or in lab_down)
    pfail()
    {
        printf 'FAIL|%s|%s|%s|%s|%s|%s|%s|%s\n' "$(clean "${path:--}")" "$1" "$(clean "${local:-}")" "$(clean "${remote:-}")" \
            "$(clean "${rtt:-}")" "$(clean "${cms:-}")" "$(clean "$2")" "$(clean "$lpath")" >"$res"
        exit 1
    }
    if ! nk_wait_for_log "$d/err" '"event":"connected"' $((CONNECT_TIMEOUT + 10)); then
        pfail "no connection" "connect: $(tail -c 300 "$d/err" | tr '\n' ' ')"
    fi
    ev=$NK_MATCH
    path=$(nk_json_get "$ev" path) local=$(nk_json_get "$ev" local) remote=$(nk_json_get "$ev" remote)
    rtt=$(nk_json_get "$ev" rtt_ms) cms=$(nk_json_get "$ev" connect_ms)
    [[ $ev =~ [^[:print:]] ]] && pfail "bad event" "connected event with non-printable bytes: $(printf '%s' "$ev" | cat -v)"
    case $path in
    direct | turn)
        [[ $remote =~ ^([0-9.]+|\[[0-9a-f:]+\]):[0-9]+$ ]] && [[ $local =~ ^(([0-9.]+|\[[0-9a-f:]+\]):[0-9]+)?$ ]] ||
            pfail "bad address" "connected event without remote IP:PORT: $ev" ;;
    hub) ;;
    *) pfail "bad path" "connected event with path '$path': $ev" ;;
    esac
    # the listener sees the connector by its ID (its first connected event for it)
    nk_wait_for_log "$NK_TMP/$l.lis.err" "\"event\":\"connected\".*\"peer\":\"$id\"|\"peer\":\"$id\".*\"event\":\"connected\"" 10 ||
        pfail "listener did not report it" "listener has no connected event for $id"
    lpath=$(grep -E "\"event\":\"connected\".*\"peer\":\"$id\"|\"peer\":\"$id\".*\"event\":\"connected\"" \
        "$NK_TMP/$l.lis.err" | head -n 1)
    lpath=$(nk_json_get "$lpath" path)
    # a direct path goes peer to peer: never to one of the lab's servers (a TURN relay address)
    if [ "$path" = direct ]; then
        case ${remote%:*} in "$LAB_SERVER_IP1" | "$LAB_SERVER_IP2")
            pfail "relay called direct" "direct path whose remote is a server address: $remote" ;;
        esac
    fi
    # birthday probing: TURN carries it, then a direct path within BIRTHDAY_MS of the start
    if birthday "$c" "$l" && [ "$path" != direct ]; then
        nk_wait_for_log "$d/err" '"event":"path-changed".*"path":"direct"' $((BIRTHDAY_MS / 1000 + 2)) ||
            pfail "no direct path" "still not direct $((BIRTHDAY_MS / 1000 + 2)) s after connecting on $path"
        bd_ms=$(((${EPOCHREALTIME//[.,]/} - t0) / 1000))
        cms="$cms>${bd_ms}"
        [ "$bd_ms" -le "$BIRTHDAY_MS" ] || pfail "direct too late" "direct ${bd_ms} ms after the start, want <= $BIRTHDAY_MS"
    fi
    # connector -> listener
    printf '%s\n' "$to_l" >&"$w"
    nk_wait_for_log "$NK_TMP/$l.lis.out" "^${to_l//./\\.}\$" 10 ||
        pfail "message to listener lost" "'$to_l' not on the listener's stdout"
    # listener -> connector (listen sends every stdin line to every connected peer)
    printf '%s\n' "$to_c" >&"${LIN[$l]}"
    nk_wait_for_log "$d/out" "^${to_c//./\\.}\$" 10 ||
        pfail "message to connector lost" "'$to_c' not on the connector's stdout"
    # stdin EOF: connect exits 0 once everything it sent is acknowledged
    exec {w}>&-
    if ! nk_wait_for_log "$d/err" '^\[nk\] connect exited with status' 15; then
        pfail "did not exit" "natkit connect still runs 15 s after stdin EOF"
    fi
    wait "$pid"
    [ "$NK_MATCH" = "[nk] connect exited with status 0" ] || pfail "exit status" "natkit connect: $NK_MATCH"
    # path changes while the lines went both ways (the connector's view): a>b>c
    local cell=$path p
    while IFS= read -r p; do
        cell="$cell>$(nk_json_get "$p" path)"
    done < <(grep -E '"event":"path-changed"' "$d/err")
    printf 'OK|%s|%s|%s|%s|%s|%s||%s\n' "$path" "$(clean "$cell")" "$(clean "$local")" "$(clean "$remote")" \
        "$(clean "$rtt")" "$(clean "$cms")" "$(clean "$lpath")" >"$res"
}

# pair_probes TAG L PATH: "C+L (B+b)": the probes (connectivity checks) the connector and the
# listener had sent at their first event on PATH, and the birthday probes among their packets
# ('?' where an event is missing)
pair_probes()
{
    local f=$NK_TMP/pairs/$1/err ev id lev re='"event":"(connected|path-changed)"'
    ev=$(grep -E "$re" "$f" 2>/dev/null | grep -F "\"path\":\"$3\"" | head -n 1)
    id=$(nk_json_get "$(grep -F '"event":"started"' "$f" 2>/dev/null | head -n 1)" id)
    lev=""
    [ -n "$id" ] && lev=$(grep -E "$re" "$NK_TMP/$2.lis.err" 2>/dev/null | grep -F "\"peer\":\"$id\"" |
        grep -F "\"path\":\"$3\"" | head -n 1)
    printf '%s+%s (%s+%s)' "$(nk_json_get "$ev" probes || echo '?')" "$(nk_json_get "$lev" probes || echo '?')" \
        "$(nk_json_get "$ev" birthday_probes || echo '?')" "$(nk_json_get "$lev" birthday_probes || echo '?')"
}

# Rounds: in round r, host i connects to host (i + r) mod n. The two hosts behind the
# same NAT join round 1.
n=${#HOSTS[@]}
START=$SECONDS
for ((r = 1; r < n; r++)); do
    pids=()
    for ((i = 0; i < n; i++)); do
        c=${HOSTS[$i]} l=${HOSTS[$(((i + r) % n))]}
        (run_pair "$c" "$l" "$c--$l") &
        pids+=($!)
    done
    if [ "$r" = 1 ]; then
        (run_pair "$SAME_NAT-2" "$SAME_NAT" "$SAME_NAT-2--$SAME_NAT") &
        pids+=($!)
    fi
    for p in "${pids[@]}"; do wait "$p"; done
    nk_log "round $r of $((n - 1)) done ($((SECONDS - START)) s)"
done

# Birthday probing, 20 attempts between the port-restricted and the symmetric host (issue 14:
# direct in at least 19 of 20, within 5 s of the start), one at a time.
BD_OK=0 BD_LINES=()
for ((k = 1; k <= 20; k++)); do
    if ((k % 2)); then c=portrestricted l=symmetric; else c=symmetric l=portrestricted; fi
    (run_pair "$c" "$l" "bd$k-$c--$l")
    IFS='|' read -r st path cell local remote rtt cms detail lpath <"$NK_TMP/pairs/bd$k-$c--$l.result"
    [ "$st" = OK ] && [ "${cell##*>}" = direct ] && BD_OK=$((BD_OK + 1))
    BD_LINES+=("$(printf '%-2d %-32s %-4s %-14s connect/direct %s ms  probes %s %s' "$k" "$c -> $l" "$st" "$cell" "$cms" \
        "$(pair_probes "bd$k-$c--$l" "$l" "${cell##*>}")" "$detail")")
done
nk_log "birthday probing: $BD_OK of 20 direct within $BIRTHDAY_MS ms"

# IPv6 rows (issue 14): no NAT on IPv6, stateful firewalls that admit only answers. Two hosts
# with IPv6 only, each behind its own firewall, and a dual-stack host (IPv4 behind a
# port-restricted cone NAT, IPv6 behind a firewall). They use a dual-stack hub and STUN
# servers of both families (lab_start_servers6); expected: direct over IPv6 for
# "IPv6 firewalled <-> IPv6 firewalled" and "IPv6-only <-> dual-stack", both directions.
V6_ROWS=("v6fw1|v6fw2" "v6fw2|v6fw1" "v6fw1|dual6" "dual6|v6fw1")
lab_add_v6only v6fw1 || nk_fail "lab_add_v6only v6fw1 failed"
lab_add_v6only v6fw2 || nk_fail "lab_add_v6only v6fw2 failed"
lab_add_nat dual6 port-restricted-cone || nk_fail "lab_add_nat dual6 failed"
lab_add_ipv6 dual6 || nk_fail "lab_add_ipv6 dual6 failed"
lab_start_servers6 || nk_fail "the lab's IPv6 servers did not start"
NK_LOGS[stun6]=${LAB_LOG[stun6]} NK_LOGS[hub6]=${LAB_LOG[hub6]}
TYPE[v6fw1]=ipv6-firewall TYPE[v6fw2]=ipv6-firewall TYPE[dual6]=dual-stack
LABEL[v6fw1]="IPv6 firewalled" LABEL[v6fw2]="IPv6 firewalled" LABEL[dual6]="dual-stack"
COMMON4=("${COMMON[@]}")
COMMON=(--hub "$LAB_HUB6" --stun "$LAB_STUN6" --stun "$LAB_STUN" --json)
for name in v6fw1 v6fw2 dual6; do
    ID[$name]=$(keygen "$KEYS/$name.key") || nk_fail "keygen for $name failed"
done
start_listeners v6fw1 v6fw2 dual6
# The firewalls are real: a datagram from v6fw2 to v6fw1's listener, which never sent to it, is dropped.
v6port=$(nk_json_get "$(json_line "$NK_TMP/v6fw1.lis.err" '"event":"started"')" local)
v6port=${v6port##*:}
before=$(lab_fw6_dropped v6fw1)
lab_exec v6fw2 bash -c "echo unsolicited >/dev/udp/$(lab_host_ip6 v6fw1)/$v6port" ||
    nk_fail "could not send from v6fw2 to [$(lab_host_ip6 v6fw1)]:$v6port"
for ((k = 0; k < 100; k++)); do # the counter has no event to wait on: looked at, 2 s at most
    after=$(lab_fw6_dropped v6fw1)
    [ -n "$before" ] && [ -n "$after" ] && [ "$after" -gt "$before" ] && break
    read -r -t 0.02 <> <(:) || true
done
[ -n "$before" ] && [ -n "$after" ] && [ "$after" -gt "$before" ] ||
    nk_fail "v6fw1's IPv6 firewall did not drop an unsolicited datagram (dropped before $before, after $after)"
for row in "${V6_ROWS[@]}"; do
    IFS='|' read -r c l <<<"$row"
    (run_pair "$c" "$l" "v6-$c--$l")
done
COMMON=("${COMMON4[@]}")
declare -A LIS6_RC=()
for name in v6fw1 v6fw2 dual6; do
    nk_stop "lis-$name"
    LIS6_RC[$name]=$?
done

# Carrier-grade NAT (issue 14 item 2): home NATs behind carrier NATs (lab_add_cgn,
# lab_add_nat_behind; 100.64.0.0/10 between the homes and the CGN). Both CGNs map
# endpoint-independently and filter per address and port (RFC 6888 REQ-1 via RFC 4787),
# every home is port-restricted; cgn1 hairpins, cgn2 does not:
#   cgn1a, cgn1b behind cgn1    same CGN, hairpinning: direct (each side sends to the other's
#                               CGN mapping; the CGN turns it around, RFC 4787 REQ-9)
#   cgn2a, cgn2b behind cgn2    same CGN, no hairpinning: turn (no direct path natkit can find:
#                               the homes' 100.64 addresses are seen by no server outside)
#   cgn1x <-> cgn2x             different CGNs: direct (punching through two NAT layers)
#   cgn <-> port-restricted / public: direct; symmetric <-> cgn: birthday probing (direct <= 5 s)
CGN_HOSTS=(cgn1a cgn1b cgn2a cgn2b)
lab_add_cgn cgn1 port-restricted-cone hairpin=on || nk_fail "lab_add_cgn cgn1 failed"
lab_add_cgn cgn2 port-restricted-cone || nk_fail "lab_add_cgn cgn2 failed"
for name in "${CGN_HOSTS[@]}"; do
    lab_add_nat_behind "${name%?}" "$name" port-restricted-cone || nk_fail "lab_add_nat_behind ${name%?} $name failed"
    TYPE[$name]=port-restricted-cone
    ID[$name]=$(keygen "$KEYS/$name.key") || nk_fail "keygen for $name failed"
done
# a port-restricted home behind an endpoint-independent CGN is port-restricted as a whole
nt=$(lab_exec cgn1a "$NATKIT" nat-type --stun "$LAB_STUN" --json 2>"$NK_TMP/cgn1a.nat-type.err") ||
    nk_fail "natkit nat-type behind cgn1a failed: $(tail -c 300 "$NK_TMP/cgn1a.nat-type.err")"
CGN_NAT_TYPE="$(nk_json_get "$nt" mapping) $(nk_json_get "$nt" filtering) $(nk_json_get "$nt" classic) mapped $(nk_json_get "$nt" mapped)"
case $CGN_NAT_TYPE in
"endpoint-independent address-and-port-dependent port-restricted-cone mapped ${LAB_PUBLIC_IP[cgn1a]}:"*) ;;
*) nk_fail "natkit nat-type behind port-restricted home + cgn1: '$CGN_NAT_TYPE', want endpoint-independent address-and-port-dependent port-restricted-cone mapped ${LAB_PUBLIC_IP[cgn1a]}:*" ;;
esac
start_listeners "${CGN_HOSTS[@]}"
# connector|listener|want|what: rounds of pairs that share no listener, then the birthday pairs one at a time
CGN_PAIRS=(
    "cgn1a|cgn1b|direct|same CGN, hairpinning" "cgn1b|cgn1a|direct|same CGN, hairpinning"
    "cgn2a|cgn2b|turn|same CGN, no hairpinning" "cgn2b|cgn2a|turn|same CGN, no hairpinning"
    "-"
    "cgn1a|cgn2a|direct|different CGNs" "cgn2a|cgn1a|direct|different CGNs"
    "cgn1b|portrestricted|direct|CGN -> home NAT" "public|cgn2b|direct|public -> CGN"
    "-"
    "symmetric|cgn1b|direct|symmetric -> CGN (birthday)"
    "-"
    "cgn2b|symmetric|direct|CGN -> symmetric (birthday)"
    "-"
)
pids=()
for p in "${CGN_PAIRS[@]}"; do
    if [ "$p" = - ]; then
        for q in "${pids[@]}"; do wait "$q"; done
        pids=()
        continue
    fi
    IFS='|' read -r c l want what <<<"$p"
    (run_pair "$c" "$l" "cgn-$c--$l") &
    pids+=($!)
done
nk_log "carrier-grade NAT pairs done ($((SECONDS - START)) s)"
declare -A CGN_LIS_RC=()
for name in "${CGN_HOSTS[@]}"; do
    nk_stop "lis-$name"
    CGN_LIS_RC[$name]=$?
done

# The listeners stop on SIGTERM with status 0; no sanitizer report anywhere (make test
# runs this with ASan+UBSan).
declare -A LIS_RC=()
for name in "${HOSTS[@]}"; do
    nk_stop "lis-$name"
    LIS_RC[$name]=$?
done
SAN_RE='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer'

# The matrix: stdout and, for `make test`, $NK_BUILD_DIR/test-reports/p2p_matrix.txt.
REPORT=/dev/null
if [ -n "${NK_BUILD_DIR:-}" ]; then
    mkdir -p "$NK_BUILD_DIR/test-reports" && REPORT="$NK_BUILD_DIR/test-reports/p2p_matrix.txt"
    : >"$REPORT"
fi
report() { printf "$@" | tee -a "$REPORT"; }

failures=0 problems=()
declare -A CELL=()
check_pair() # C L TAG: fills CELL[C,L]; counts failures
{
    local c=$1 l=$2 tag=$3 st path cell local remote rtt cms detail lpath want mark="" probes
    IFS='|' read -r st path cell local remote rtt cms detail lpath <"$NK_TMP/pairs/$tag.result"
    want=$(expected "$c" "$l")
    if [ "$st" != OK ]; then
        mark="FAIL: $cell"
    elif [ "$path" != "$want" ] && ! { birthday "$c" "$l" && [ "$path" = turn ]; }; then
        mark="FAIL: connected on $path, want $want"
    elif [ "$lpath" != "$want" ] && ! { birthday "$c" "$l" && [ "$lpath" = turn ]; }; then
        mark="FAIL: the listener connected on $lpath, want $want"
    elif [ "${cell##*>}" != "$want" ]; then
        mark="FAIL: moved $cell, want $want throughout"
    elif [ "$tag" = "$SAME_NAT-2--$SAME_NAT" ] && [ "${remote%:*}" != "$(lab_host_ip "$SAME_NAT")" ]; then
        # over the inside network: the listener's inside address
        mark="FAIL: remote $remote, want $(lab_host_ip "$SAME_NAT"):*"
    fi
    if [ -n "$mark" ]; then
        failures=$((failures + 1))
        problems+=("$c -> $l: $mark ${detail:+($detail)} [logs: $NK_TMP/pairs/$tag.*]")
        CELL[$c,$l]="FAIL ($path)"
    else
        CELL[$c,$l]="$cell ${cms}ms"
    fi
    [ "$st" = OK ] || cell=$path
    DETAIL+=("$(printf '%-34s %-6s %-12s %-8s %-21s %-21s rtt %4s ms  connect %5s ms  probes %-16s %s' "$c -> $l" "$want" \
        "${cell:--}" "${lpath:--}" "${local:--}" "${remote:--}" "${rtt:--}" "${cms:--}" \
        "$(pair_probes "$tag" "$l" "${cell##*>}")" "${mark:-ok}")")
}
DETAIL=()
for c in "${HOSTS[@]}"; do
    for l in "${HOSTS[@]}"; do
        [ "$c" = "$l" ] || check_pair "$c" "$l" "$c--$l"
    done
done
check_pair "$SAME_NAT-2" "$SAME_NAT" "$SAME_NAT-2--$SAME_NAT"
CELL[$SAME_NAT,$SAME_NAT]="${CELL[$SAME_NAT-2,$SAME_NAT]}*"

report '\nNAT lab: natkit connect (rows: connector behind) -> natkit listen (columns: listener behind)\n'
report 'cells: the connector'"'"'s first path, connect_ms (from its connected event); a>b: connected on a, moved to b\n'
report '(path-changed) while the lines went both ways. Expected: direct, or turn where no direct path exists,\n'
report 'or hub with the UDP-blocked host; the listener'"'"'s first path must be the same.\n\n'
report '%-16s' "connect\\listen"
for l in "${HOSTS[@]}"; do report ' %-19s' "${LABEL[$l]}"; done
report '\n'
for c in "${HOSTS[@]}"; do
    report '%-16s' "${LABEL[$c]}"
    for l in "${HOSTS[@]}"; do
        report ' %-19s' "${CELL[$c,$l]:--}"
    done
    report '\n'
done
report '* two hosts behind the same port-restricted NAT (%s -> %s), over the inside network\n' \
    "$(lab_host_ip "$SAME_NAT-2")" "$(lab_host_ip "$SAME_NAT")"
report '\n%-34s %-6s %-12s %-8s %-21s %-21s\n' "pair" "want" "path" "listener" "local" "remote"
for line in "${DETAIL[@]}"; do report '%s\n' "$line"; done
for name in "${HOSTS[@]}"; do
    if [ "${LIS_RC[$name]}" != 0 ]; then
        failures=$((failures + 1))
        problems+=("natkit listen behind $name exited with status ${LIS_RC[$name]} on SIGTERM, want 0")
    fi
done
for f in "$NK_TMP"/*.lis.err "$NK_TMP"/pairs/*/err; do
    if grep -aqE "$SAN_RE" "$f"; then
        failures=$((failures + 1))
        problems+=("sanitizer report in $f: $(grep -aE -m1 "$SAN_RE" "$f")")
    fi
done
report '\nbirthday probing, port-restricted <-> symmetric: %s of 20 direct within %s ms of the start (want >= 19)\n' \
    "$BD_OK" "$BIRTHDAY_MS"
for line in "${BD_LINES[@]}"; do report '  %s\n' "$line"; done
if [ "$BD_OK" -lt 19 ]; then
    failures=$((failures + 1))
    problems+=("birthday probing: $BD_OK of 20 port-restricted <-> symmetric connections direct within $BIRTHDAY_MS ms, want >= 19")
fi
# The IPv6 rows: path (both sides), time to direct, probes sent (the connector's connected event).
report '\nIPv6 (no NAT; stateful firewalls admit only answers), hub %s, STUN %s + %s; want direct over IPv6:\n' \
    "$LAB_HUB6" "$LAB_STUN6" "$LAB_STUN"
report '  (the firewall in front of v6fw1 dropped an unsolicited datagram from v6fw2: counter %s -> %s)\n' "$before" "$after"
for row in "${V6_ROWS[@]}"; do
    IFS='|' read -r c l <<<"$row"
    tag=v6-$c--$l mark=""
    IFS='|' read -r st path cell local remote rtt cms detail lpath <"$NK_TMP/pairs/$tag.result"
    probes=$(nk_json_get "$(json_line "$NK_TMP/pairs/$tag/err" '"event":"connected"')" probes)
    if [ "$st" != OK ]; then
        mark="FAIL: $cell"
    elif [ "$path" != direct ] || [ "$lpath" != direct ] || [ "${cell##*>}" != direct ]; then
        mark="FAIL: connector $cell, listener $lpath; want direct"
    elif [[ ! $remote =~ ^\[2001:db8: ]]; then
        mark="FAIL: remote $remote is not an IPv6 address"
    fi
    if [ -n "$mark" ]; then
        failures=$((failures + 1))
        problems+=("${LABEL[$c]} $c -> ${LABEL[$l]} $l: $mark ${detail:+($detail)} [logs: $NK_TMP/pairs/$tag.*]")
    fi
    report '  %-38s %-8s listener %-7s %-26s rtt %4s ms  direct after %5s ms  probes %4s  %s\n' \
        "${LABEL[$c]} ($c) -> ${LABEL[$l]} ($l)" "${cell:--}" "${lpath:--}" "${remote:--}" "${rtt:--}" \
        "${cms:--}" "${probes:--}" "${mark:-ok}"
done
for name in "${!LIS6_RC[@]}"; do
    if [ "${LIS6_RC[$name]}" != 0 ]; then
        failures=$((failures + 1))
        problems+=("natkit listen behind $name exited with status ${LIS6_RC[$name]} on SIGTERM, want 0")
    fi
done
# Carrier-grade NAT pairs: path, time to direct, probes (connector+listener, at the first event on
# the final path; birthday: the birthday probes/openers among them)
report '\ncarrier-grade NAT (home NATs behind carrier NATs; every NAT port-restricted, the CGNs endpoint-independent):\n'
report '  natkit nat-type behind home+CGN: %s\n' "$CGN_NAT_TYPE"
report '  %-34s %-27s %-6s %-14s %-12s %-22s %s\n' pair what want path "to direct" "probes (birthday)" result
for p in "${CGN_PAIRS[@]}"; do
    [ "$p" != - ] || continue
    IFS='|' read -r c l want what <<<"$p"
    tag=cgn-$c--$l
    IFS='|' read -r st path cell local remote rtt cms detail lpath <"$NK_TMP/pairs/$tag.result"
    mark=""
    if [ "$st" != OK ]; then
        mark="FAIL: $cell"
    elif [ "$path" != "$want" ] && ! { birthday "$c" "$l" && [ "$path" = turn ]; }; then
        mark="FAIL: connected on $path, want $want"
    elif [ "$lpath" != "$want" ] && ! { birthday "$c" "$l" && [ "$lpath" = turn ]; }; then
        mark="FAIL: the listener connected on $lpath, want $want"
    elif [ "${cell##*>}" != "$want" ]; then
        mark="FAIL: moved $cell, want $want throughout"
    elif [ "$path" = direct ] && [ "${remote%:*}" != "$(lab_public_ip "$l")" ]; then
        # direct from the start: to the listener's mapping on its CGN (or NAT), the server-reflexive
        # address (a birthday pair's first path is TURN, whose remote is the relay)
        mark="FAIL: remote $remote, want $(lab_public_ip "$l"):*"
    fi
    if [ -n "$mark" ]; then
        failures=$((failures + 1))
        problems+=("$c -> $l ($what): $mark ${detail:+($detail)} [logs: $NK_TMP/pairs/$tag.*]")
    fi
    [ "$st" = OK ] || cell=$path
    todirect=-
    [ "${cell##*>}" = direct ] && todirect="${cms##*>} ms"
    report '  %-34s %-27s %-6s %-14s %-12s %-22s %s\n' "$c -> $l" "$what" "$want" "${cell:--}" "$todirect" \
        "$(pair_probes "$tag" "$l" "${cell##*>}")" "${mark:-ok}"
done
for name in "${CGN_HOSTS[@]}"; do
    if [ "${CGN_LIS_RC[$name]}" != 0 ]; then
        failures=$((failures + 1))
        problems+=("natkit listen behind $name exited with status ${CGN_LIS_RC[$name]} on SIGTERM, want 0")
    fi
done
report '\n'
if [ "$failures" != 0 ]; then
    report 'FAILED: %s pair(s)\n' "$failures"
    for p in "${problems[@]}"; do report '  %s\n' "$p"; done
    report '\n'
    nk_fail "$failures failure(s) (matrix and list above)"
fi
nk_pass "$((n * (n - 1) + 1)) pairs connected on the expected paths and delivered both messages ($((SECONDS - START)) s)"

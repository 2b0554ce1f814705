#!/bin/bash
# natlab.sh: a NAT lab made of Linux network namespaces, veth pairs and nftables.
#
#   hostX 10.0.I.2 --a0/p1--[a1: bridge]-- [router X] w0 192.0.2.I --vI-- [inet: bridge br0] 192.0.2.100, .101
#   (added) 10.0.I.K --a0/pK--/
#   public host 192.0.2.(50+I) --vI-- [inet]      (added public hosts: 192.0.2.(150+J))
#
# As a library (tests source it; bash only):
#   . tests/lab/natlab.sh
#   lab_up                                # the "inet" namespace with the server addresses
#   lab_add_nat NAME TYPE [hairpin=on|off] [delay=MS] [loss=PCT] [udp_timeout=S] [syn=drop|reset]
#       TYPE: full-cone | restricted-cone | port-restricted-cone | symmetric | none | udp-blocked
#       delay: round-trip milliseconds added on the NAT's outside link (netem; lab_has_netem)
#       loss: percent of UDP packets dropped in each direction on that link (nftables)
#       udp_timeout: seconds an idle UDP mapping (and filter entry) lives
#       syn: what the router does with a TCP SYN from outside that no mapping takes: drop
#            (default; RFC 5382 REQ-4: a NAT must not answer an unsolicited SYN at once, so
#            that TCP simultaneous open can work) or reset (a bare Linux router: RST at once)
#   lab_add_host NAT NAME                 # one more host on NAT's inside network (see below)
#   lab_add_cgn NAME TYPE [hairpin=on|off] [udp_timeout=S]      # a carrier-grade NAT (section
#   lab_add_nat_behind CGN NAME TYPE [hairpin=..] [udp_timeout=..] [syn=..]  # "Carrier-grade NAT")
#   lab_start_servers [stun] [turn] [hub] # natkit's servers in "inet", each waited for
#       STUN $LAB_STUN (+ $LAB_STUN_ALT, RFC 5780), TURN $LAB_TURN ($LAB_TURN_USER /
#       $LAB_TURN_PASS), hub $LAB_HUB; logs in ${LAB_LOG[stun|turn|hub]}
#   lab_exec NAME CMD...                  # run CMD on the host behind NAT NAME (or added host NAME)
#   lab_exec_router NAME CMD...           # ... on the NAT router itself
#   lab_exec_inet CMD...                  # ... in the "inet" namespace (servers)
#   lab_bg NS LOG CMD...                  # start CMD in namespace NS in the background
#   lab_ns NAME / lab_router_ns NAME / lab_host_ip NAME / lab_public_ip NAME / lab_host_ports NAME
#   lab_names / lab_hosts                 # the NATs / the added hosts, in creation order
#   IPv6 (no NAT: stateful firewalls, 2001:db8::/32 TEST-NET only):
#   lab_add_ipv6 NAME [fw=on|off]         # NAT NAME's host is dual stack: + 2001:db8:I::2/64 behind
#                                         # its router (IPv6 forwarded; fw=on, the default: a
#                                         # stateful firewall that admits only answers)
#   lab_add_v6only NAME [fw=on|off]       # a host with IPv6 only (2001:db8:I::2) behind a router
#   lab_start_servers6                    # in "inet": STUN at $LAB_STUN6 and a dual-stack hub at
#                                         # $LAB_HUB6 (2001:db8:ff::100); logs ${LAB_LOG[stun6|hub6]}
#   lab_host_ip6 NAME                     # the host's IPv6 address (empty: none)
#   lab_fw6_dropped NAME                  # packets its IPv6 firewall dropped (unsolicited inbound)
#   lab_down                              # kill everything started in the lab, delete it
#                                         # (returns the status it was called with)
# Every name starts with $NATLAB_PREFIX (default nk<pid>-), so runs cannot collide;
# lab_up installs an EXIT trap that calls lab_down (set NATLAB_NO_TRAP=1 to manage it yourself).
#
# As a command:
#   natlab.sh shell   default topology + STUN, TURN and hub servers, an interactive shell, teardown on exit
#   natlab.sh up      default topology, left running (prefix nklab-); prints how to use it
#   natlab.sh down    deletes everything with the prefix (default nklab-)
#   natlab.sh check   builds every NAT type and checks its behaviour with a tiny UDP probe
#
# Only TEST-NET-1 (192.0.2.0/24) addresses on the "internet" and 10.0.0.0/16 inside NATs.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi

NATLAB_PREFIX=${NATLAB_PREFIX:-nk$$-}
LAB_INET="${NATLAB_PREFIX}inet"
LAB_SERVER_IP1=192.0.2.100
LAB_SERVER_IP2=192.0.2.101
LAB_NET=192.0.2.0/24
LAB_N=0
LAB_NPUBLIC=0
declare -gA LAB_TYPE=() LAB_HOST_NS=() LAB_ROUTER_NS=() LAB_HOST_IP=() LAB_PUBLIC_IP=() LAB_HAIRPIN=()
declare -gA LAB_INDEX=() LAB_NHOSTS=() LAB_PARENT=() LAB_HOST_PORTS=()
declare -ga LAB_NAMES=() LAB_HOSTS=()

lab__log() { printf 'natlab: %s\n' "$*" >&2; }
lab__die() { lab__log "$*"; return 1; }

# lab_can_run: 0 if this machine can build a lab (root, ip, nft, netns); else prints why.
lab_can_run()
{
    if [ "$(id -u)" -ne 0 ]; then echo "needs root (network namespaces and nftables)"; return 1; fi
    local t
    for t in ip nft tc; do
        command -v "$t" >/dev/null 2>&1 || { echo "needs '$t' (apt-get install iproute2 nftables)"; return 1; }
    done
    if ! ip netns add "${NATLAB_PREFIX}probe" 2>/dev/null; then
        echo "cannot create network namespaces here"
        return 1
    fi
    if ! ip netns exec "${NATLAB_PREFIX}probe" nft add table ip nkprobe 2>/dev/null; then
        ip netns del "${NATLAB_PREFIX}probe"
        echo "nftables does not work in a network namespace here"
        return 1
    fi
    ip netns del "${NATLAB_PREFIX}probe"
    return 0
}

lab__ns_add()
{
    ip netns add "$1" || return 1
    ip -n "$1" link set lo up
}

lab_up()
{
    lab__ns_add "$LAB_INET" || return 1
    if [ -z "${NATLAB_NO_TRAP:-}" ]; then
        trap 'lab_down' EXIT
        trap 'exit 130' INT TERM
    fi
    lab__bridge_add "$LAB_INET" br0 02:6e:6b:00:00:01 || return 1
    ip -n "$LAB_INET" link set br0 up
    ip -n "$LAB_INET" addr add "$LAB_SERVER_IP1/24" dev br0
    ip -n "$LAB_INET" addr add "$LAB_SERVER_IP2/24" dev br0
}

# lab_inet_add_ip IP: one more server address in the "inet" namespace (TURN, hub, ...).
lab_inet_add_ip() { ip -n "$LAB_INET" addr add "$1/24" dev br0; }

# lab__bridge_add NS NAME MAC: a bridge with a MAC address of its own. A bridge without one takes
# the lowest MAC of its ports and changes it as ports come and go; a neighbour that learnt the
# MAC of a port that has since left (lab_add_nat_behind moves a home's link off br0) keeps
# sending there, for as long as its entry stays REACHABLE and then DELAY and PROBE: about
# 35 s. The servers' second address (192.0.2.101), which few packets renew, went silent for
# that long in CGN runs of the matrix (tests/lab/test_natlab.sh).
lab__bridge_add()
{
    ip -n "$1" link add "$2" address "$3" type bridge
}

# lab__a1_mac I: the MAC of router I's inside bridge
lab__a1_mac() { printf '02:6e:6b:01:%02x:%02x\n' $(($1 / 256 % 256)) $(($1 % 256)); }

lab_ns() { echo "${LAB_HOST_NS[$1]}"; }
lab_router_ns() { echo "${LAB_ROUTER_NS[$1]}"; }
lab_host_ip() { echo "${LAB_HOST_IP[$1]}"; }
lab_public_ip() { echo "${LAB_PUBLIC_IP[$1]}"; }
lab_exec() { local n=$1; shift; ip netns exec "${LAB_HOST_NS[$n]}" "$@"; }
lab_exec_router() { local n=$1; shift; ip netns exec "${LAB_ROUTER_NS[$n]}" "$@"; }
lab_exec_inet() { ip netns exec "$LAB_INET" "$@"; }

# lab_bg NS LOGFILE CMD...: starts CMD in namespace NS in the background; prints its pid.
# lab_down kills it (every process in a lab namespace is killed there).
lab_bg()
{
    local ns=$1 log=$2
    shift 2
    ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
    echo $!
}

# lab_has_netem: 0 if this kernel has the netem qdisc (delay); many minimal kernels do not.
lab_has_netem()
{
    local ns="${NATLAB_PREFIX}netem" rc
    ip netns add "$ns" 2>/dev/null || return 1
    ip -n "$ns" link set lo up
    ip netns exec "$ns" tc qdisc add dev lo root netem delay 1ms 2>/dev/null
    rc=$?
    ip netns del "$ns"
    return $rc
}

# lab__impair NS DEV DELAY_MS LOSS_PCT: half of the round-trip delay on DEV's egress
# (netem), and LOSS_PCT % of the UDP packets leaving through DEV dropped at random
# (nftables numgen, so loss works on kernels without netem too).
lab__impair()
{
    local ns=$1 dev=$2 delay=$3 loss=$4
    if [ "$delay" -gt 0 ]; then
        ip netns exec "$ns" tc qdisc add dev "$dev" root netem delay "$((delay / 2))ms" 2>/dev/null ||
            { lab__die "delay=$delay needs the netem qdisc, which this kernel lacks (see lab_has_netem)"; return 1; }
    fi
    if [ "$loss" -gt 0 ]; then
        ip netns exec "$ns" nft -f - <<EOF || return 1
table ip lossy {
  chain out { type filter hook postrouting priority 0;
    oifname "$dev" meta l4proto udp numgen random mod 100 < $loss drop
  }
}
EOF
    fi
}

# Rules for the three cone NATs: one inside host, a static port-preserving DNAT of
# every UDP port to it (endpoint-independent mapping), and a forward filter that
# remembers, per inside port, whom the host has sent to (the filtering behaviour).
# HOST empty: a CGN's rules (lab_add_cgn): no DNAT yet (lab_add_nat_behind adds one per home;
# the filter sets work per inside port as the homes' port blocks are disjoint), and TYPE may
# also be symmetric (masquerade fully-random, inbound only on existing conntrack entries).
lab__rules_cone()
{
    local type=$1 pub=$2 host=$3 lan=$4 hairpin=$5 tmo=$6 inbound=""
    local snat="snat to $pub"
    case $type in
    full-cone) inbound='iifname "w0" accept' ;;
    restricted-cone) inbound='iifname "w0" ip saddr . udp dport @peers accept' ;;
    port-restricted-cone) inbound='iifname "w0" ip saddr . udp sport . udp dport @peerports accept' ;;
    symmetric) snat="masquerade fully-random" ;;
    esac
    local dnat="" hp_pre="" hp_post="" hp_fwd=""
    [ -z "$host" ] || dnat="iifname \"w0\" ip daddr $pub udp dport 1024-65535 dnat to $host"
    if [ "$hairpin" = on ]; then
        [ -z "$host" ] || hp_pre="iifname \"a1\" ip daddr $pub udp dport 1024-65535 dnat to $host"
        hp_post="oifname \"a1\" ip saddr $lan ct status dnat snat to $pub"
        hp_fwd='iifname "a1" oifname "a1" accept'
    fi
    cat <<EOF
table ip nat {
  chain pre { type nat hook prerouting priority -100;
    $dnat
    $hp_pre
  }
  chain post { type nat hook postrouting priority 100;
    oifname "w0" ip saddr $lan $snat
    $hp_post
  }
}
table ip filt {
  set peers     { type ipv4_addr . inet_service; flags timeout; }
  set peerports { type ipv4_addr . inet_service . inet_service; flags timeout; }
  chain ffwd { type filter hook forward priority 0; policy drop;
    iifname "a1" oifname "w0" meta l4proto udp update @peers { ip daddr . udp sport timeout ${tmo}s } update @peerports { ip daddr . udp dport . udp sport timeout ${tmo}s }
    iifname "a1" oifname "w0" accept
    $hp_fwd
    iifname "w0" ct state established,related accept
    $inbound
  }
}
EOF
}

# Symmetric: masquerade with random ports (a new mapping per destination); inbound
# only on existing conntrack entries. Hairpinning learns public port -> inside port
# after the translation (postrouting, priority 200) and DNATs hairpinned packets with it.
lab__rules_symmetric()
{
    local pub=$1 host=$2 lan=$3 hairpin=$4 tmo=$5
    local hp_pre="" hp_post="" hp_learn="" hp_fwd=""
    if [ "$hairpin" = on ]; then
        hp_pre="iifname \"a1\" ip daddr $pub meta l4proto udp dnat ip to $host : udp dport map @hp"
        hp_post="oifname \"a1\" ip saddr $lan ct status dnat masquerade fully-random"
        hp_learn='oifname "w0" meta l4proto udp update @hp { udp sport : ct original proto-src }'
        hp_fwd='iifname "a1" oifname "a1" accept'
    fi
    cat <<EOF
table ip nat {
  map hp { type inet_service : inet_service; flags dynamic,timeout; timeout ${tmo}s; }
  chain pre { type nat hook prerouting priority -100;
    $hp_pre
  }
  chain post { type nat hook postrouting priority 100;
    oifname "w0" masquerade fully-random
    $hp_post
  }
  chain learn { type filter hook postrouting priority 200;
    $hp_learn
  }
}
table ip filt {
  chain ffwd { type filter hook forward priority 0; policy drop;
    iifname "a1" oifname "w0" accept
    $hp_fwd
    iifname "w0" ct state established,related accept
  }
}
EOF
}

lab__rules_blocked()
{
    cat <<EOF
table ip nat {
  chain post { type nat hook postrouting priority 100; oifname "w0" masquerade; }
}
table ip filt {
  chain ffwd { type filter hook forward priority 0; policy drop;
    iifname "a1" oifname "w0" meta l4proto udp drop
    iifname "a1" oifname "w0" accept
    iifname "w0" ct state established,related accept
  }
}
EOF
}

# lab_add_nat NAME TYPE [hairpin=on|off] [delay=MS] [loss=PCT] [udp_timeout=S] [syn=drop|reset]
lab_add_nat()
{
    local name=$1 type=$2 hairpin=off delay=0 loss=0 tmo="" syn=drop opt
    shift 2 || return 1
    for opt in "$@"; do
        case $opt in
        hairpin=on | hairpin=off) hairpin=${opt#*=} ;;
        delay=[0-9]*) delay=${opt#*=} ;;
        loss=[0-9]*) loss=${opt#*=} ;;
        udp_timeout=*) tmo=${opt#*=} ;;
        syn=drop | syn=reset) syn=${opt#*=} ;;
        *) lab__die "lab_add_nat $name: unknown option '$opt'"; return 1 ;;
        esac
    done
    case $type in
    full-cone | restricted-cone | port-restricted-cone | symmetric | none | udp-blocked) ;;
    *) lab__die "lab_add_nat $name: unknown type '$type'"; return 1 ;;
    esac
    [ -z "${LAB_TYPE[$name]:-}" ] || { lab__die "lab_add_nat: '$name' exists"; return 1; }
    LAB_N=$((LAB_N + 1))
    local i=$LAB_N hns="${NATLAB_PREFIX}h-$name" rns="${NATLAB_PREFIX}r-$name"
    LAB_TYPE[$name]=$type
    LAB_NAMES+=("$name")
    LAB_HOST_NS[$name]=$hns
    LAB_HAIRPIN[$name]=$hairpin
    LAB_NHOSTS[$name]=1
    lab__ns_add "$hns" || return 1
    if [ "$type" = none ]; then
        # A public host straight on the internet: no router, mapped address = local address.
        local ip=192.0.2.$((50 + i))
        LAB_ROUTER_NS[$name]=""
        LAB_HOST_IP[$name]=$ip
        LAB_PUBLIC_IP[$name]=$ip
        ip link add a0 netns "$hns" type veth peer name "v$i" netns "$LAB_INET" || return 1
        ip -n "$LAB_INET" link set "v$i" master br0 up
        ip -n "$hns" addr add "$ip/24" dev a0
        ip -n "$hns" link set a0 up
        lab__impair "$hns" a0 "$delay" "$loss" && lab__impair "$LAB_INET" "v$i" "$delay" "$loss"
        return
    fi
    local pub=192.0.2.$i lan=10.0.$i.0/24 gw=10.0.$i.1 host=10.0.$i.2
    LAB_ROUTER_NS[$name]=$rns
    LAB_HOST_IP[$name]=$host
    LAB_PUBLIC_IP[$name]=$pub
    LAB_INDEX[$name]=$i
    lab__ns_add "$rns" || return 1
    # The inside network is a bridge named a1 (the rules say iifname/oifname "a1"):
    # hosts added with lab_add_host join it, and talk to each other without the router.
    lab__bridge_add "$rns" a1 "$(lab__a1_mac "$i")" || return 1
    # bridged frames must not go through the router's ip hooks (br_netfilter, per netns)
    ip netns exec "$rns" sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true
    ip -n "$rns" addr add "$gw/24" dev a1
    ip -n "$rns" link set a1 up
    lab__attach_host "$rns" "$hns" p1 "$host" "$gw" || return 1
    ip link add w0 netns "$rns" type veth peer name "v$i" netns "$LAB_INET" || return 1
    ip -n "$LAB_INET" link set "v$i" master br0 up
    ip -n "$rns" addr add "$pub/24" dev w0
    ip -n "$rns" link set w0 up
    ip netns exec "$rns" sysctl -qw net.ipv4.ip_forward=1
    if [ -n "$tmo" ]; then
        ip netns exec "$rns" sysctl -qw net.netfilter.nf_conntrack_udp_timeout="$tmo" \
            net.netfilter.nf_conntrack_udp_timeout_stream="$tmo" 2>/dev/null || true
    fi
    local ftmo=${tmo:-120}
    case $type in
    full-cone | restricted-cone | port-restricted-cone)
        lab__rules_cone "$type" "$pub" "$host" "$lan" "$hairpin" "$ftmo" ;;
    symmetric) lab__rules_symmetric "$pub" "$host" "$lan" "$hairpin" "$ftmo" ;;
    udp-blocked) lab__rules_blocked ;;
    esac | ip netns exec "$rns" nft -f - || { lab__die "nft rules for $name ($type) failed"; return 1; }
    # TCP that reaches the router itself from outside is what no mapping took (the router
    # runs no TCP service): silently dropped, as RFC 5382 REQ-4 asks, unless syn=reset.
    if [ "$syn" = drop ]; then
        printf 'table ip rfc5382 {\n  chain in { type filter hook input priority 0; iifname "w0" meta l4proto tcp drop; }\n}\n' |
            ip netns exec "$rns" nft -f - || { lab__die "nft input rule for $name failed"; return 1; }
    fi
    # conntrack needs the nf_conntrack sysctls to exist before the timeout can be set
    if [ -n "$tmo" ]; then
        ip netns exec "$rns" sysctl -qw net.netfilter.nf_conntrack_udp_timeout="$tmo" \
            net.netfilter.nf_conntrack_udp_timeout_stream="$tmo"
    fi
    lab__impair "$rns" w0 "$delay" "$loss" && lab__impair "$LAB_INET" "v$i" "$delay" "$loss"
}

# lab__attach_host RNS HNS PORT IP GW: a veth from host namespace HNS (a0, address IP/24,
# default route via GW) to the bridge a1 of router namespace RNS (port PORT).
lab__attach_host()
{
    local rns=$1 hns=$2 port=$3 ip=$4 gw=$5
    ip link add a0 netns "$hns" type veth peer name "$port" netns "$rns" || return 1
    ip -n "$rns" link set "$port" master a1 up || return 1
    ip -n "$hns" addr add "$ip/24" dev a0
    ip -n "$hns" link set a0 up
    ip -n "$hns" route add default via "$gw"
}

# lab_add_host NAT NAME: one more host, NAME, on the inside network of NAT (up to 8 hosts
# per NAT; for a NAT of type none, one more public host on the internet). NAME works
# wherever a NAT name does for hosts (lab_exec NAME, lab_host_ip NAME, lab_public_ip NAME).
# Cone NATs DNAT each public port to one inside host, so every added host gets its own
# port range, its ephemeral range inside its namespace (net.ipv4.ip_local_port_range) and
# the router's DNAT (and hairpin DNAT) for it: host k (k = 2..8) uses 10000+2000*(k-2) ..
# +1999; the first host keeps every other port. A program there that binds an explicit
# port must take it from its range (lab_host_ports NAME). Symmetric and UDP-blocked NATs
# need no per-host rule; symmetric hairpinning reaches the first host only.
lab_add_host()
{
    local nat=$1 name=$2
    [ -n "${LAB_TYPE[$nat]:-}" ] && [ -z "${LAB_PARENT[$nat]:-}" ] ||
        { lab__die "lab_add_host: no NAT '$nat'"; return 1; }
    [ -z "${LAB_TYPE[$name]:-}" ] || { lab__die "lab_add_host: '$name' exists"; return 1; }
    local type=${LAB_TYPE[$nat]} hns="${NATLAB_PREFIX}h-$name" k=$((LAB_NHOSTS[$nat] + 1))
    [ "$k" -le 8 ] || { lab__die "lab_add_host: at most 8 hosts behind '$nat'"; return 1; }
    lab__ns_add "$hns" || return 1
    LAB_NHOSTS[$nat]=$k
    LAB_TYPE[$name]=$type
    LAB_PARENT[$name]=$nat
    LAB_HOSTS+=("$name")
    LAB_HOST_NS[$name]=$hns
    LAB_HAIRPIN[$name]=${LAB_HAIRPIN[$nat]}
    LAB_ROUTER_NS[$name]=${LAB_ROUTER_NS[$nat]}
    if [ "$type" = none ]; then
        LAB_NPUBLIC=$((LAB_NPUBLIC + 1))
        local ip=192.0.2.$((150 + LAB_NPUBLIC)) v="vp$LAB_NPUBLIC"
        [ "$LAB_NPUBLIC" -le 90 ] || { lab__die "lab_add_host: too many public hosts"; return 1; }
        LAB_HOST_IP[$name]=$ip
        LAB_PUBLIC_IP[$name]=$ip
        ip link add a0 netns "$hns" type veth peer name "$v" netns "$LAB_INET" || return 1
        ip -n "$LAB_INET" link set "$v" master br0 up
        ip -n "$hns" addr add "$ip/24" dev a0
        ip -n "$hns" link set a0 up
        return
    fi
    local i=${LAB_INDEX[$nat]} rns=${LAB_ROUTER_NS[$nat]} pub=${LAB_PUBLIC_IP[$nat]}
    local ip=10.0.$i.$((k + 1)) lo=$((10000 + 2000 * (k - 2))) hi
    hi=$((lo + 1999))
    LAB_HOST_IP[$name]=$ip
    LAB_PUBLIC_IP[$name]=$pub
    LAB_HOST_PORTS[$name]="$lo-$hi"
    lab__attach_host "$rns" "$hns" "p$k" "$ip" "10.0.$i.1" || return 1
    ip netns exec "$hns" sysctl -qw net.ipv4.ip_local_port_range="$lo $hi" || return 1
    case $type in
    full-cone | restricted-cone | port-restricted-cone)
        # inserted in front of the first host's catch-all 1024-65535
        ip netns exec "$rns" nft insert rule ip nat pre iifname '"w0"' ip daddr "$pub" udp dport "$lo-$hi" dnat to "$ip" ||
            return 1
        if [ "${LAB_HAIRPIN[$nat]}" = on ]; then
            ip netns exec "$rns" nft insert rule ip nat pre iifname '"a1"' ip daddr "$pub" udp dport "$lo-$hi" dnat to "$ip" ||
                return 1
        fi
        ;;
    esac
}

# lab_host_ports NAME: the UDP port range of an added host behind a cone NAT (empty otherwise).
lab_host_ports() { echo "${LAB_HOST_PORTS[$1]:-}"; }

# lab_hosts: the hosts added with lab_add_host, in creation order.
lab_hosts() { [ ${#LAB_HOSTS[@]} -eq 0 ] || printf '%s\n' "${LAB_HOSTS[@]}"; }

# ---------------------------------------------------------------------------
# Carrier-grade NAT: a home NAT behind a carrier NAT (double NAT, RFC 6598 shared address space)
#
#   host 10.0.J.2 --[home router J] w0 100.64.C.(K+1) --hK--+
#   host 10.0.L.2 --[home router L] w0 100.64.C.(M+1) --hM--+-[a1: bridge][CGN C] w0 192.0.2.C --vC-- [inet]
#
#   lab_add_cgn NAME TYPE [hairpin=on|off] [udp_timeout=S]
#       the CGN: its inside network 100.64.C.0/24 (C = its lab index; the first address,
#       100.64.C.1, is its own), its public address 192.0.2.C. TYPE is the CGN's behaviour:
#       full-cone | restricted-cone | port-restricted-cone (endpoint-independent mapping, as
#       RFC 6888 REQ-1 asks of a CGN through RFC 4787 REQ-1; the filtering as named) or
#       symmetric (a CGN that breaks that rule). hairpin=on: RFC 4787 REQ-9 (which RFC 6888
#       REQ-1 makes a CGN requirement too); cone types only.
#   lab_add_nat_behind CGN NAME TYPE [hairpin=on|off] [udp_timeout=S] [syn=drop|reset]
#       a home NAT, made by lab_add_nat NAME TYPE (any type but none; no delay/loss), whose
#       outside link is then moved from the internet to CGN's inside network (address
#       100.64.C.(K+1) for the K-th home, up to 8) and its rules rebuilt for that address.
#       Its one host is used like any other (lab_exec NAME, lab_host_ip NAME); lab_public_ip
#       NAME is the CGN's public address, lab_home_addr NAME the home router's 100.64 address,
#       lab_behind NAME the CGN. No lab_add_host behind such a home.
# Ports: an endpoint-independent CGN keeps each home on a port block of its own, 2000 ports
# from 10000 + 2000 * (K - 1) (lab_host_ports NAME), the way CGNs give subscribers port
# blocks (RFC 6888 REQ-3 asks for per-subscriber port limits): the home's host has it as its
# ephemeral range (net.ipv4.ip_local_port_range), a cone home keeps its host's port, a
# symmetric home picks random ports in the block, and the CGN keeps the port (a static DNAT
# of the block to the home, as the cone recipes do for lab_add_host) — so the host's port is
# its public port, and the CGN maps it the same way whatever the destination.
declare -gA LAB_CGN_TYPE=() LAB_CGN_INDEX=() LAB_CGN_NHOMES=() LAB_BEHIND=() LAB_HOME_ADDR=()
declare -ga LAB_CGNS=()

lab_behind() { echo "${LAB_BEHIND[$1]:-}"; }
lab_home_addr() { echo "${LAB_HOME_ADDR[$1]:-}"; }
# lab_cgns: the CGNs in creation order.
lab_cgns() { [ ${#LAB_CGNS[@]} -eq 0 ] || printf '%s\n' "${LAB_CGNS[@]}"; }

# lab__syn_drop RNS: TCP from outside that reaches the router itself is dropped (RFC 5382 REQ-4).
lab__syn_drop()
{
    printf 'table ip rfc5382 {\n  chain in { type filter hook input priority 0; iifname "w0" meta l4proto tcp drop; }\n}\n' |
        ip netns exec "$1" nft -f -
}

# lab_add_cgn NAME TYPE [hairpin=on|off] [udp_timeout=S]
lab_add_cgn()
{
    local name=$1 type=$2 hairpin=off tmo="" opt
    shift 2 || return 1
    for opt in "$@"; do
        case $opt in
        hairpin=on | hairpin=off) hairpin=${opt#*=} ;;
        udp_timeout=[0-9]*) tmo=${opt#*=} ;;
        *) lab__die "lab_add_cgn $name: unknown option '$opt'"; return 1 ;;
        esac
    done
    case $type in
    full-cone | restricted-cone | port-restricted-cone) ;;
    symmetric) [ "$hairpin" = off ] || { lab__die "lab_add_cgn $name: hairpinning is built for cone CGNs only"; return 1; } ;;
    *) lab__die "lab_add_cgn $name: unknown type '$type'"; return 1 ;;
    esac
    [ -z "${LAB_TYPE[$name]:-}${LAB_CGN_TYPE[$name]:-}" ] || { lab__die "lab_add_cgn: '$name' exists"; return 1; }
    LAB_N=$((LAB_N + 1))
    local i=$LAB_N rns="${NATLAB_PREFIX}r-$name"
    local pub=192.0.2.$i lan=100.64.$i.0/24 gw=100.64.$i.1
    LAB_CGN_TYPE[$name]=$type
    LAB_CGN_INDEX[$name]=$i
    LAB_CGN_NHOMES[$name]=0
    LAB_CGNS+=("$name")
    LAB_ROUTER_NS[$name]=$rns
    LAB_PUBLIC_IP[$name]=$pub
    LAB_HAIRPIN[$name]=$hairpin
    lab__ns_add "$rns" || return 1
    lab__bridge_add "$rns" a1 "$(lab__a1_mac "$i")" || return 1
    ip netns exec "$rns" sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true
    ip -n "$rns" addr add "$gw/24" dev a1
    ip -n "$rns" link set a1 up
    ip link add w0 netns "$rns" type veth peer name "v$i" netns "$LAB_INET" || return 1
    ip -n "$LAB_INET" link set "v$i" master br0 up
    ip -n "$rns" addr add "$pub/24" dev w0
    ip -n "$rns" link set w0 up
    ip netns exec "$rns" sysctl -qw net.ipv4.ip_forward=1
    lab__rules_cone "$type" "$pub" "" "$lan" "$hairpin" "${tmo:-120}" | ip netns exec "$rns" nft -f - ||
        { lab__die "nft rules for CGN $name ($type) failed"; return 1; }
    lab__syn_drop "$rns" || { lab__die "nft input rule for CGN $name failed"; return 1; }
    if [ -n "$tmo" ]; then
        ip netns exec "$rns" sysctl -qw net.netfilter.nf_conntrack_udp_timeout="$tmo" \
            net.netfilter.nf_conntrack_udp_timeout_stream="$tmo"
    fi
}

# lab_add_nat_behind CGN NAME TYPE [hairpin=on|off] [udp_timeout=S] [syn=drop|reset]
lab_add_nat_behind()
{
    local cgn=$1 name=$2 type=$3 hairpin=off tmo="" syn=drop opt
    shift 3 || return 1
    [ -n "${LAB_CGN_TYPE[$cgn]:-}" ] || { lab__die "lab_add_nat_behind: no CGN '$cgn'"; return 1; }
    for opt in "$@"; do
        case $opt in
        hairpin=on | hairpin=off) hairpin=${opt#*=} ;;
        udp_timeout=[0-9]*) tmo=${opt#*=} ;;
        syn=drop | syn=reset) syn=${opt#*=} ;;
        *) lab__die "lab_add_nat_behind $name: unknown option '$opt' (no delay or loss behind a CGN)"; return 1 ;;
        esac
    done
    case $type in
    full-cone | restricted-cone | port-restricted-cone | symmetric | udp-blocked) ;;
    *) lab__die "lab_add_nat_behind $name: type '$type' cannot sit behind a CGN"; return 1 ;;
    esac
    local k=$((LAB_CGN_NHOMES[$cgn] + 1))
    [ "$k" -le 8 ] || { lab__die "lab_add_nat_behind: at most 8 homes behind '$cgn'"; return 1; }
    lab_add_nat "$name" "$type" "$@" || return 1
    LAB_CGN_NHOMES[$cgn]=$k
    local i=${LAB_INDEX[$name]} c=${LAB_CGN_INDEX[$cgn]} rns=${LAB_ROUTER_NS[$name]} crns=${LAB_ROUTER_NS[$cgn]}
    local addr=100.64.$c.$((k + 1)) cpub=${LAB_PUBLIC_IP[$cgn]} lo=$((10000 + 2000 * (k - 1))) hi
    hi=$((lo + 1999))
    # the outside link moves from the internet to the CGN's inside network
    ip -n "$LAB_INET" link del "v$i" || return 1
    ip link add w0 netns "$rns" type veth peer name "h$k" netns "$crns" || return 1
    ip -n "$crns" link set "h$k" master a1 up || return 1
    ip -n "$rns" addr add "$addr/24" dev w0
    ip -n "$rns" link set w0 up
    ip -n "$rns" route add default via "100.64.$c.1" || return 1
    # the home's rules again, for its new outside address
    ip netns exec "$rns" nft flush ruleset || return 1
    case $type in
    full-cone | restricted-cone | port-restricted-cone)
        lab__rules_cone "$type" "$addr" "10.0.$i.2" "10.0.$i.0/24" "$hairpin" "${tmo:-120}" ;;
    symmetric) lab__rules_symmetric "$addr" "10.0.$i.2" "10.0.$i.0/24" "$hairpin" "${tmo:-120}" ;;
    udp-blocked) lab__rules_blocked ;;
    esac | ip netns exec "$rns" nft -f - || { lab__die "nft rules for $name ($type) behind $cgn failed"; return 1; }
    if [ "$type" = symmetric ]; then # random ports, but in the home's block
        ip netns exec "$rns" nft insert rule ip nat post oifname '"w0"' meta l4proto '{ tcp, udp }' \
            masquerade to ":$lo-$hi" fully-random || return 1
    fi
    if [ "$syn" = drop ]; then
        lab__syn_drop "$rns" || return 1
    fi
    ip netns exec "${LAB_HOST_NS[$name]}" sysctl -qw net.ipv4.ip_local_port_range="$lo $hi" || return 1
    # the CGN: the block goes to this home (from outside, and hairpinned from inside)
    if [ "${LAB_CGN_TYPE[$cgn]}" != symmetric ]; then
        ip netns exec "$crns" nft add rule ip nat pre iifname '"w0"' ip daddr "$cpub" udp dport "$lo-$hi" dnat to "$addr" ||
            return 1
        if [ "${LAB_HAIRPIN[$cgn]}" = on ]; then
            ip netns exec "$crns" nft add rule ip nat pre iifname '"a1"' ip daddr "$cpub" udp dport "$lo-$hi" dnat to "$addr" ||
                return 1
        fi
    fi
    LAB_PUBLIC_IP[$name]=$cpub
    LAB_BEHIND[$name]=$cgn
    LAB_HOME_ADDR[$name]=$addr
    LAB_HOST_PORTS[$name]="$lo-$hi"
    LAB_NHOSTS[$name]=8 # no lab_add_host behind it (its ports are the CGN's block)
}

# lab__wait_for_log FILE REGEX SECONDS PID: waits (tail -F, no polling of the file) for a
# line of FILE matching REGEX; returns 1 at the deadline or when PID has exited first.
lab__wait_for_log()
{
    local file=$1 regex=$2 secs=$3 pid=$4 fd tailpid line left chunk rc=1
    local deadline=$((${EPOCHREALTIME//[.,]/} + secs * 1000000))
    exec {fd}< <(exec tail -n +1 -F "$file" 2>/dev/null)
    tailpid=$!
    while :; do
        left=$((deadline - ${EPOCHREALTIME//[.,]/}))
        [ $left -gt 0 ] || break
        chunk=$((left < 500000 ? left : 500000))
        if IFS= read -r -t "0.$(printf '%06d' "$chunk")" -u "$fd" line; then
            if [[ $line =~ $regex ]]; then rc=0; break; fi
        else
            kill -0 "$pid" 2>/dev/null || break # the server died before its start line
        fi
    done
    kill "$tailpid" 2>/dev/null
    exec {fd}<&-
    wait "$tailpid" 2>/dev/null
    return $rc
}

# lab_start_servers [stun] [turn] [hub]: starts natkit's servers in the "inet" namespace
# (default: all three) and waits for each one's start line in its log (10 s at most):
#   stun  natkit stun-server --listen 192.0.2.100:3478 --alt-ip 192.0.2.101   (RFC 5780: .100/.101 x 3478/3479)
#   turn  natkit turn-server --listen 192.0.2.100:3480 --realm natlab --user natkit:natkit
#                            --relay-ip 192.0.2.100 --allow-peer 192.0.2.0/24 $LAB_TURN_ARGS
#   hub   natkit hub --listen 192.0.2.100:7000
#   stun6, hub6: the IPv6 servers, for lab_start_servers6 (which sets up their network first)
# The TURN server refuses private, loopback and reserved peers by default; the lab's
# internet is TEST-NET-1, opened explicitly (a relay cannot reach 10.0.x.x inside NATs
# anyway). Sets LAB_STUN, LAB_STUN_ALT, LAB_TURN, LAB_TURN_USER, LAB_TURN_PASS, LAB_HUB
# (IP:PORT) and LAB_LOG[stun|turn|hub]. Logs go to $LAB_LOG_DIR when set (the caller
# keeps them), else to a directory lab_down removes. The binary: $NATKIT, else
# build/natkit of this tree, else natkit on PATH.
LAB_STUN=$LAB_SERVER_IP1:3478
LAB_STUN_ALT=$LAB_SERVER_IP2:3478
LAB_TURN=$LAB_SERVER_IP1:3480
LAB_TURN_USER=natkit
LAB_TURN_PASS=natkit
LAB_HUB=$LAB_SERVER_IP1:7000
declare -gA LAB_LOG=()
lab_start_servers()
{
    local nk what pid log re
    nk=$(lab__find_natkit)
    [ -n "$nk" ] || { lab__die "no natkit binary (build it with 'make', or set NATKIT)"; return 1; }
    if [ -z "${LAB_LOG_DIR:-}" ]; then
        LAB_LOG_DIR=$(mktemp -d "/tmp/${NATLAB_PREFIX}logs.XXXXXX") || return 1
        LAB_OWN_LOG_DIR=$LAB_LOG_DIR
    fi
    [ $# -gt 0 ] || set -- stun turn hub
    for what in "$@"; do
        log=$LAB_LOG_DIR/$what.log
        LAB_LOG[$what]=$log
        : >"$log"
        case $what in
        stun)
            pid=$(lab_bg "$LAB_INET" "$log" "$nk" stun-server --listen "$LAB_STUN" --alt-ip "$LAB_SERVER_IP2")
            re='192\.0\.2\.100:3478' ;;
        turn)
            # shellcheck disable=SC2086
            pid=$(lab_bg "$LAB_INET" "$log" "$nk" turn-server --listen "$LAB_TURN" --realm natlab \
                --user "$LAB_TURN_USER:$LAB_TURN_PASS" --relay-ip "$LAB_SERVER_IP1" --allow-peer "$LAB_NET" \
                ${LAB_TURN_ARGS:-})
            re='natkit-turn-server: listening on' ;;
        hub)
            pid=$(lab_bg "$LAB_INET" "$log" "$nk" hub --listen "$LAB_HUB")
            re='natkit-hub: listening on' ;;
        stun6) # lab_start_servers6
            pid=$(lab_bg "$LAB_INET" "$log" "$nk" stun-server --listen "$LAB_STUN6")
            re='2001:db8:ff::100' ;;
        hub6)
            pid=$(lab_bg "$LAB_INET" "$log" "$nk" hub --listen "[::]:${LAB_HUB6##*:}")
            re='natkit-hub: listening on' ;;
        *) lab__die "lab_start_servers: unknown server '$what' (stun, turn, hub, stun6, hub6)"; return 1 ;;
        esac
        if ! lab__wait_for_log "$log" "$re" 10 "$pid"; then
            lab__die "natkit $what server did not start; its log ($log):"
            tail -n 20 "$log" >&2
            return 1
        fi
    done
}

# lab_names: the NAT names in creation order.
lab_names() { printf '%s\n' "${LAB_NAMES[@]}"; }

# lab_down: kills every process in the lab's namespaces and deletes them (idempotent).
# Returns the status it was called with, so that an EXIT trap such as
# 'lab_down; nk__cleanup' still sees (and exits with) the script's exit status.
lab_down()
{
    local rc=$? ns pids tries
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -F -- "$NATLAB_PREFIX"); do
        case $ns in "$NATLAB_PREFIX"*) ;; *) continue ;; esac
        pids=$(ip netns pids "$ns" 2>/dev/null)
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill $pids 2>/dev/null
            for tries in $(seq 1 50); do
                [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
                sleep 0.1 # bounded wait for the processes to go; a readiness event does not exist here
            done
            pids=$(ip netns pids "$ns" 2>/dev/null)
            # shellcheck disable=SC2086
            [ -n "$pids" ] && kill -9 $pids 2>/dev/null
        fi
        ip netns del "$ns" 2>/dev/null
    done
    if [ -n "${LAB_OWN_LOG_DIR:-}" ]; then
        rm -rf "$LAB_OWN_LOG_DIR"
        LAB_OWN_LOG_DIR=""
    fi
    return $rc
}

# ---------------------------------------------------------------------------
# IPv6 (issue 14): no NAT, a stateful firewall on the router. The "internet" side is
# 2001:db8:ff::/64 on br0 (servers at ::100, ::101; router I at ::I); behind router I the
# host has 2001:db8:I::2/64. Every address is added with nodad (usable at once).

LAB_SERVER6_IP1=2001:db8:ff::100
LAB_SERVER6_IP2=2001:db8:ff::101
LAB_STUN6="[$LAB_SERVER6_IP1]:3478"
LAB_HUB6="[$LAB_SERVER6_IP1]:7001"
declare -gA LAB_HOST_IP6=()

lab_host_ip6() { echo "${LAB_HOST_IP6[$1]:-}"; }

# IPv6 on the "inet" bridge, once.
lab__inet6_up()
{
    [ -z "${LAB_INET6_UP:-}" ] || return 0
    # "inet" routes between the sites' /64s (IPv4 sites share one /24 there; IPv6 sites do not)
    ip netns exec "$LAB_INET" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.all.forwarding=1 || return 1
    ip -n "$LAB_INET" addr add "$LAB_SERVER6_IP1/64" dev br0 nodad || return 1
    ip -n "$LAB_INET" addr add "$LAB_SERVER6_IP2/64" dev br0 nodad || return 1
    LAB_INET6_UP=1
}

# The stateful IPv6 firewall (NATLAB.md): a new flow from outside (w0) is dropped; answers to
# what an inside endpoint sent (conntrack: that address and port pair) pass.
lab__rules_fw6()
{
    cat <<EOF
table inet fw6 {
  chain f { type filter hook forward priority 5;
    meta nfproto ipv6 iifname "w0" ct state new counter drop
  }
}
EOF
}

# lab_fw6_dropped NAME: packets NAME's IPv6 firewall has dropped so far (new inbound flows).
lab_fw6_dropped()
{
    ip netns exec "${LAB_ROUTER_NS[$1]}" nft list chain inet fw6 f 2>/dev/null |
        sed -n 's/.*counter packets \([0-9]*\).*/\1/p' | head -n 1
}

# lab__v6_site I RNS HNS FW: IPv6 for router namespace RNS (w0 outside, a1 inside) and host
# namespace HNS (a0), as site I.
lab__v6_site()
{
    local i=$1 rns=$2 hns=$3 fw=$4 h6=2001:db8:$1::2
    lab__inet6_up || return 1
    ip netns exec "$rns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.all.forwarding=1 || return 1
    ip netns exec "$hns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 2>/dev/null
    ip -n "$rns" addr add "2001:db8:ff::$i/64" dev w0 nodad || return 1
    ip -n "$rns" addr add "2001:db8:$i::1/64" dev a1 nodad || return 1
    ip -n "$hns" addr add "$h6/64" dev a0 nodad || return 1
    ip -n "$hns" -6 route add default via "2001:db8:$i::1" || return 1
    ip -n "$rns" -6 route add default via "$LAB_SERVER6_IP1" || return 1
    ip -n "$LAB_INET" -6 route add "2001:db8:$i::/64" via "2001:db8:ff::$i" || return 1
    if [ "$fw" = on ]; then
        lab__rules_fw6 | ip netns exec "$rns" nft -f - || { lab__die "nft IPv6 firewall for site $i failed"; return 1; }
    fi
}

# lab_add_ipv6 NAME [fw=on|off]: NAT NAME's (first) host becomes dual stack.
lab_add_ipv6()
{
    local name=$1 fw=on
    if [ $# -ge 2 ]; then
        case $2 in fw=on | fw=off) fw=${2#*=} ;; *) lab__die "lab_add_ipv6: unknown option '$2'"; return 1 ;; esac
    fi
    [ -n "${LAB_INDEX[$name]:-}" ] || { lab__die "lab_add_ipv6: no NAT '$name' with a router"; return 1; }
    lab__v6_site "${LAB_INDEX[$name]}" "${LAB_ROUTER_NS[$name]}" "${LAB_HOST_NS[$name]}" "$fw" || return 1
    LAB_HOST_IP6[$name]=2001:db8:${LAB_INDEX[$name]}::2
}

# lab_add_v6only NAME [fw=on|off]: a host with IPv6 only, behind a router (no IPv4 anywhere on
# the host's side: the router's inside bridge a1 and its w0 carry IPv6 only).
lab_add_v6only()
{
    local name=$1 fw=on
    if [ $# -ge 2 ]; then
        case $2 in fw=on | fw=off) fw=${2#*=} ;; *) lab__die "lab_add_v6only: unknown option '$2'"; return 1 ;; esac
    fi
    [ -z "${LAB_TYPE[$name]:-}" ] || { lab__die "lab_add_v6only: '$name' exists"; return 1; }
    LAB_N=$((LAB_N + 1))
    local i=$LAB_N hns="${NATLAB_PREFIX}h-$name" rns="${NATLAB_PREFIX}r-$name"
    LAB_TYPE[$name]=ipv6-only
    LAB_NAMES+=("$name")
    LAB_HOST_NS[$name]=$hns
    LAB_ROUTER_NS[$name]=$rns
    LAB_HAIRPIN[$name]=off
    LAB_NHOSTS[$name]=1
    LAB_INDEX[$name]=$i
    LAB_HOST_IP[$name]=""
    LAB_PUBLIC_IP[$name]=""
    lab__ns_add "$hns" && lab__ns_add "$rns" || return 1
    lab__bridge_add "$rns" a1 "$(lab__a1_mac "$i")" || return 1
    ip -n "$rns" link set a1 up
    ip link add a0 netns "$hns" type veth peer name p1 netns "$rns" || return 1
    ip -n "$rns" link set p1 master a1 up || return 1
    ip -n "$hns" link set a0 up
    ip link add w0 netns "$rns" type veth peer name "v$i" netns "$LAB_INET" || return 1
    ip -n "$LAB_INET" link set "v$i" master br0 up
    ip -n "$rns" link set w0 up
    lab__v6_site "$i" "$rns" "$hns" "$fw" || return 1
    LAB_HOST_IP6[$name]=2001:db8:$i::2
}

# lab_start_servers6: natkit stun-server on [2001:db8:ff::100]:3478 and a natkit hub on [::]:7001
# (dual stack: IPv4 and IPv6 peers register at the same hub) in "inet", each waited for.
lab_start_servers6()
{
    lab__inet6_up && lab_start_servers stun6 hub6
}

# ---------------------------------------------------------------------------
# Command mode

lab__default_topology()
{
    lab_add_nat full full-cone hairpin=on &&
        lab_add_nat restricted restricted-cone &&
        lab_add_nat portrestricted port-restricted-cone &&
        lab_add_host portrestricted portrestricted2 &&
        lab_add_nat symmetric symmetric &&
        lab_add_nat public none &&
        lab_add_nat blocked udp-blocked
}

lab__find_natkit()
{
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    if [ -n "${NATKIT:-}" ]; then echo "$NATKIT"; return; fi
    [ -x "$here/build/natkit" ] && { echo "$here/build/natkit"; return; }
    command -v natkit 2>/dev/null
}

lab__describe()
{
    local n
    echo "NAT lab (prefix $NATLAB_PREFIX):"
    echo "  inet namespace $LAB_INET: servers on $LAB_SERVER_IP1 and $LAB_SERVER_IP2 (bridge br0, $LAB_NET)"
    for n in $(lab_names) $(lab_hosts); do
        printf '  %-15s %-21s host %-12s public %-12s hairpin %-3s netns %s%s\n' "$n" "${LAB_TYPE[$n]}" \
            "${LAB_HOST_IP[$n]}" "${LAB_PUBLIC_IP[$n]}" "${LAB_HAIRPIN[$n]}" "${LAB_HOST_NS[$n]}" \
            "${LAB_PARENT[$n]:+ (behind ${LAB_PARENT[$n]}${LAB_HOST_PORTS[$n]:+, ports ${LAB_HOST_PORTS[$n]}})}"
    done
    cat <<EOF

Run your own program behind a NAT:      ip netns exec ${NATLAB_PREFIX}h-<name> ./my-program ...
  e.g. natkit behind the symmetric NAT: ip netns exec ${NATLAB_PREFIX}h-symmetric natkit nat-type --stun $LAB_SERVER_IP1:3478
Peer to peer through the lab's hub:    ip netns exec ${NATLAB_PREFIX}h-full natkit listen --hub $LAB_HUB --stun $LAB_STUN --key /tmp/a.key
                                        ip netns exec ${NATLAB_PREFIX}h-symmetric natkit connect ID --hub $LAB_HUB --stun $LAB_STUN \\
                                          --turn $LAB_TURN --user $LAB_TURN_USER --pass $LAB_TURN_PASS --key /tmp/b.key
Run a server on the internet side:      ip netns exec $LAB_INET ./my-server --listen $LAB_SERVER_IP1:9000
Look at a router's NAT:                 ip netns exec ${NATLAB_PREFIX}r-<name> nft list ruleset
                                        ip netns exec ${NATLAB_PREFIX}r-<name> conntrack -L
Capture:                                ip netns exec $LAB_INET tcpdump -ni br0 udp
In this shell: lab_exec NAME CMD..., lab_exec_inet CMD..., lab_exec_router NAME CMD... also work.
EOF
}

lab__start_servers_cmd()
{
    if [ -z "$(lab__find_natkit)" ]; then
        lab__log "no natkit binary (build it with 'make'); no servers started"
        return 0
    fi
    lab_start_servers || return 1
    echo "STUN server (RFC 5780): $LAB_STUN and $LAB_STUN_ALT, ports 3478 and 3479 - log ${LAB_LOG[stun]}"
    echo "TURN server: $LAB_TURN (udp+tcp), user $LAB_TURN_USER, password $LAB_TURN_PASS, realm natlab - log ${LAB_LOG[turn]}"
    echo "hub: $LAB_HUB (tcp) - log ${LAB_LOG[hub]}"
}

lab__cmd_shell()
{
    local why rc
    why=$(lab_can_run) || { lab__log "cannot build the lab: $why"; return 1; }
    lab_up && lab__default_topology || return 1
    lab__start_servers_cmd || return 1
    lab__describe
    echo
    echo "Type 'exit' to tear the lab down."
    local rc_file
    rc_file=$(mktemp "/tmp/${NATLAB_PREFIX}rc.XXXXXX")
    {
        echo "[ -f ~/.bashrc ] && . ~/.bashrc"
        declare -p NATLAB_PREFIX LAB_INET LAB_SERVER_IP1 LAB_SERVER_IP2 LAB_N LAB_NAMES LAB_HOSTS LAB_TYPE LAB_HOST_NS \
            LAB_ROUTER_NS LAB_HOST_IP LAB_PUBLIC_IP LAB_HAIRPIN LAB_STUN LAB_TURN LAB_TURN_USER LAB_TURN_PASS LAB_HUB
        declare -f lab_names lab_hosts lab_ns lab_router_ns lab_host_ip lab_public_ip lab_exec lab_exec_router lab_exec_inet
        echo "PS1='[natlab] \\w\\$ '"
    } >"$rc_file"
    bash --rcfile "$rc_file" -i
    rc=$?
    rm -f "$rc_file"
    return $rc
}

lab__cmd_up()
{
    local why
    why=$(lab_can_run) || { lab__log "cannot build the lab: $why"; return 1; }
    NATLAB_NO_TRAP=1
    LAB_LOG_DIR=$(mktemp -d "/tmp/${NATLAB_PREFIX}logs.XXXXXX")
    lab_up && lab__default_topology && lab__start_servers_cmd || { lab_down; return 1; }
    lab__describe
    echo
    echo "Tear it down with: NATLAB_PREFIX=$NATLAB_PREFIX $0 down"
}

# check: each NAT type against a tiny UDP prober (python3), no natkit needed.
lab__cmd_check()
{
    local why
    why=$(lab_can_run) || { lab__log "cannot build the lab: $why"; return 1; }
    command -v python3 >/dev/null || { lab__log "check needs python3"; return 1; }
    lab_up || return 1
    lab__default_topology || return 1
    lab_add_nat prc-hp port-restricted-cone hairpin=on
    lab_add_nat sym-hp symmetric hairpin=on
    lab_add_host full full2
    lab_add_host restricted restricted2
    lab_add_host prc-hp prc-hp2
    lab_add_host symmetric symmetric2
    # carrier-grade NAT: home NATs behind CGNs (the two layers add up; docs/lab.md)
    lab_add_cgn cgn-prc port-restricted-cone hairpin=on
    lab_add_nat_behind cgn-prc cgn-home-prc port-restricted-cone
    lab_add_nat_behind cgn-prc cgn-home-full full-cone
    lab_add_nat_behind cgn-prc cgn-home-sym symmetric
    lab_add_cgn cgn-full full-cone
    lab_add_nat_behind cgn-full cgn-home-rc restricted-cone
    lab_add_cgn cgn-sym symmetric
    lab_add_nat_behind cgn-sym cgn-home-fc full-cone
    local n dir
    dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    lab_bg "$LAB_INET" /dev/null python3 "$dir/natlab_probe.py" serve "$LAB_SERVER_IP1" "$LAB_SERVER_IP2" >/dev/null
    for n in $(lab_names) $(lab_hosts); do
        printf '%-15s %-21s hairpin=%-3s -> %s\n' "$n" "${LAB_TYPE[$n]}" "${LAB_HAIRPIN[$n]}" \
            "$(lab_exec "$n" python3 "$dir/natlab_probe.py" probe "$LAB_SERVER_IP1" "$LAB_SERVER_IP2")"
    done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case ${1:-} in
    shell | up | check)
        case "$NATLAB_PREFIX" in nk$$-) NATLAB_PREFIX=nklab-; LAB_INET="${NATLAB_PREFIX}inet" ;; esac
        if [ -n "$(ip netns list 2>/dev/null | awk '{print $1}' | grep -F -- "$NATLAB_PREFIX")" ]; then
            lab__log "a lab with prefix $NATLAB_PREFIX exists; '$0 down' first, or set NATLAB_PREFIX"
            exit 1
        fi
        "lab__cmd_$1"
        ;;
    down)
        case "$NATLAB_PREFIX" in nk$$-) NATLAB_PREFIX=nklab- ;; esac
        lab_down
        rm -rf /tmp/"${NATLAB_PREFIX}"logs.* # the servers' logs of 'up'
        ;;
    *)
        echo "usage: $0 shell|up|down|check   (or source it: see the top of this file)" >&2
        exit 2
        ;;
    esac
fi

#!/bin/sh
# make bench: every benchmark section; the server sections compare natkit with coturn in the same run.
#   bench/stun.sh   STUN Binding responses/s (stun_load against both servers)
#   bench/turn.sh   TURN relay (added by the TURN work; skipped while absent)
#   bench/turn_userdb.sh  TURN Allocates/s with 100,000 users in SQLite (--userdb) vs a --user account
#   bench/conn.sh   memory per idle connection, 200 connections with a stream each in one process
#   bench/hub_cluster.sh  signalling round trip across two hubs on one Redis vs one hub
#   bench/hub_mem.sh  the hub's memory per registered peer, and what a 4,000-connection flood leaves
#   bench/hub_scale.sh  hub registrations/s and memory per peer with 50,000 simulated peers: the hub core
#                   in memory (bench/hub_core), then natkit hub over real sockets (fd limit permitting)
#   bench/dataplane.sh  natkit connect -> listen vs plain TCP in the NAT lab (needs root; skipped otherwise)
#   bench/traversal.sh  the share of 10,000 simulated peer pairs connected directly, next to Tailscale's
#                   and libp2p's published figures (no root: the agent core on tests/sim's NAT model)
# A section is a bash script; it prints its own figures and a ratio line and exits non-zero
# only when it could not measure. Binaries come from NK_BUILD_DIR (default: build).
# Settings (environment): BENCH_ROUNDS, BENCH_DURATION, BENCH_THREADS, ... (see each section).
set -u
here=$(cd "$(dirname "$0")" && pwd)
rc=0
for section in stun turn turn_userdb conn hub_mem hub_scale hub_cluster dataplane traversal; do
	script=$here/$section.sh
	[ -f "$script" ] || continue
	bash "$script" || rc=1
done
exit $rc

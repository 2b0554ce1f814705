#!/usr/bin/env bash
# bench/traversal.sh: the share of peer pairs natkit connects directly, at internet scale, by
# simulation (issue 14 item 5). build/traversal_sim draws BENCH_PAIRS pairs of NAT behaviours
# from the distribution in docs/internals/traversal.md, runs the real agent core for both peers
# against tests/sim's NAT model (simulated time: about 10 s for 10,000 pairs, no root, no
# network) and prints the direct share next to Tailscale's and libp2p's published figures.
#
# Settings (environment): BENCH_PAIRS=10000 BENCH_TRAVERSAL_SEED=14 NK_BUILD_DIR (default: build)
set -u
NK_SOURCE_DIR=${NK_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$NK_SOURCE_DIR/tests/lib.sh"
. "$NK_SOURCE_DIR/bench/common.sh"
nk_init bench-traversal
nk_bench_setup 1
TRAVERSAL_SIM=${TRAVERSAL_SIM:-$NK_BUILD_DIR/traversal_sim}
[ -x "$TRAVERSAL_SIM" ] || nk_fail "traversal_sim not found at $TRAVERSAL_SIM (make builds it)"
timeout 120 "$TRAVERSAL_SIM" -n "${BENCH_PAIRS:-10000}" --seed "${BENCH_TRAVERSAL_SEED:-14}" ||
	nk_fail "traversal_sim could not measure"

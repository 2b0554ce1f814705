/*
 * The connectivity agent, two of them in one process, in the test world of
 * tests/sim (its clock, lossy link and NAT model; tests/sim/agents.h, which
 * bench/traversal_sim.c shares): an internet with NATs of every behaviour (public, full cone,
 * restricted, port-restricted, symmetric, UDP blocked; two hosts behind one
 * NAT), the real STUN server handler and the real TURN server core in
 * memory, and a fake hub that forwards signals with a delay. Asserts the
 * path matrix of issue 5, the connect time bound (40 ms RTT), failover to
 * TURN/hub when the direct path dies and the return when it heals, spoofed
 * and modified frames dropped and counted, and connecting under 20% loss.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "natkit/agent.h"
#include "natkit/hub.h"
#include "natkit/stun_server.h"
#include "natkit/turn_server.h"
#include "agents.h"

/* What the matrix and connect-time tests print also goes to $NK_BUILD_DIR/test-reports/agent.txt,
 * which `make test` shows at the end (ctest hides a passing test's output). */
static FILE *report_file;

static void report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (report_file != NULL) {
        va_start(ap, fmt);
        vfprintf(report_file, fmt, ap);
        va_end(ap);
    }
}

static void report_open(void)
{
    const char *dir = getenv("NK_BUILD_DIR");
    char path[4096];
    if (dir == NULL)
        return;
    snprintf(path, sizeof(path), "%s/test-reports", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/test-reports/agent.txt", dir);
    report_file = fopen(path, "w");
    if (report_file != NULL)
        fprintf(report_file, "== agent (tests/unit/test_agent.c, simulated time and NATs)\n");
}

/* The world: tests/sim/agents.h (two sites, two agents, STUN/TURN servers, a hub). */
typedef sim_agents world;
typedef sim_agent_host host;

static nk_addr addr(const char *text)
{
    nk_addr a;
    assert_int_equal(nk_addr_parse(&a, text), 0);
    return a;
}

static void world_fail(const char *what)
{
    fail_msg("%s", what);
}

/* Both STUN servers up, but the second silent unless a test says otherwise; keepalives every
 * second and a direct re-probe every 2 s; the world's rng from sim_seed (NK_SIM_SEED). */
static world *world_new_seeded(sim_site_type ta, sim_site_type tb, int same_site, int use_turn, uint32_t seed)
{
    sim_agents_config cfg = {.type = {ta, tb}, .same_site = same_site, .use_turn = use_turn,
                             .seed = sim_seed(4242) ^ seed, .host_seed = {1, 101}, .fail = world_fail};
    world *w = sim_agents_new(&cfg);
    assert_non_null(w);
    w->keepalive_ms = 1000;
    w->retry_ms = 2000;
    w->stun_down = 1;
    return w;
}

static world *world_new(sim_site_type ta, sim_site_type tb, int same_site, int use_turn)
{
    return world_new_seeded(ta, tb, same_site, use_turn, 0);
}

static nk_path_kind expected(sim_site_type a, sim_site_type b, int turn)
{
    if (a == SIM_SITE_BLOCKED || b == SIM_SITE_BLOCKED)
        return NK_PATH_HUB;
    if (a != SIM_SITE_SYMMETRIC && b != SIM_SITE_SYMMETRIC)
        return NK_PATH_DIRECT;
    sim_site_type other = a == SIM_SITE_SYMMETRIC ? b : a;
    if (other == SIM_SITE_PUBLIC || other == SIM_SITE_FULL || other == SIM_SITE_RESTRICTED || other == SIM_SITE_PORT)
        return NK_PATH_DIRECT; /* port-restricted: by birthday probing, while the relay carries it */
    return turn ? NK_PATH_TURN : NK_PATH_HUB;
}

/* ---- the matrix --------------------------------------------------------------------------------- */

typedef struct outcome {
    nk_path_kind kind[2];
    int64_t connect_ms;          /* initiator: start -> first path of the final kind */
    int64_t after_signal_ms;     /* the same, from the last hub message it got before */
} outcome;

static void run_case(sim_site_type ta, sim_site_type tb, int same_site, int use_turn, unsigned loss, uint32_t seed,
                     int presrflx, outcome *o)
{
    world *w = world_new_seeded(ta, tb, same_site, use_turn, seed);
    w->stun_down = -1; /* both STUN servers answer: the agents learn their NATs' mapping */
    w->net.link.loss = loss / 100.0;
    w->presrflx = presrflx;
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + (loss ? 8000 : 4000));
    for (int i = 0; i < 2; i++) {
        o->kind[i] = sim_agents_selected(w, i);
        assert_false(w->hosts[i].failed);
        if (getenv("AGENT_TRACE") != NULL) {
            printf("   host %d:", i);
            for (size_t e = 0; e < w->hosts[i].npath; e++)
                printf(" %lld:%s", (long long)(w->hosts[i].path_at[e] - 1000),
                       nk_path_kind_name(w->hosts[i].path_kind[e]));
            printf("\n");
        }
    }
    int64_t t = sim_agents_first_path(w, 0, o->kind[0]);
    int64_t sig = w->hosts[0].punch_sig_at;
    o->connect_ms = t >= 0 ? t - w->hosts[0].started : -1;
    o->after_signal_ms = t >= 0 && sig >= 0 ? t - sig : -1;
    /* Messages both ways on whatever path was chosen. */
    if (!loss) {
        sim_agents_send_data(w, 0, 3);
        sim_agents_send_data(w, 1, 3);
        sim_agents_run_until(w, w->clock.now + 500);
        assert_int_equal(w->hosts[0].data_rx, 3);
        assert_int_equal(w->hosts[1].data_rx, 3);
    }
    sim_agents_free(w);
}

static void test_matrix(void **state, int use_turn)
{
    int bad = 0;
    report("agent matrix (%s), 40 ms RTT: initiator \\ responder: path, connect ms from start (ms after the\n"
           "responder's first reachable candidate reached the initiator; < 0: connected peer-reflexively before)\n",
           use_turn ? "STUN + TURN" : "STUN only");
    for (int a = 0; a < SIM_SITE_COUNT; a++) {
        report("  %-11s", sim_site_names[a]);
        for (int b = 0; b < SIM_SITE_COUNT; b++) {
            outcome o;
            run_case(a, b, 0, use_turn, 0, 0, 0, &o);
            nk_path_kind want = expected(a, b, use_turn);
            int ok = o.kind[0] == want && o.kind[1] == want;
            bad += !ok;
            report(" %s%-6s %4lld(%3lld)", ok ? " " : "!", nk_path_kind_name(o.kind[0]), (long long)o.connect_ms,
                   (long long)o.after_signal_ms);
            /* The goal: connected 1 RTT + 30 ms after signalling on cone NATs. */
            if (want == NK_PATH_DIRECT && a != SIM_SITE_SYMMETRIC && b != SIM_SITE_SYMMETRIC && o.after_signal_ms > 70) {
                report("<slow");
                bad++;
            }
        }
        report("\n");
    }
    assert_int_equal(bad, 0);
}

static void test_matrix_turn(void **state)
{
    test_matrix(state, 1);
}

static void test_matrix_no_turn(void **state)
{
    test_matrix(state, 0);
}

/* ---- birthday probing ------------------------------------------------------------------------ */

typedef struct bd_result {
    int direct;                  /* both sides direct within 5 s of the start */
    int64_t direct_ms;           /* the later side's first direct path, from the start */
    uint64_t probes;             /* the easy side's probes */
    uint64_t openers;            /* the hard side's openers (one per extra socket) */
    uint64_t attempts;
} bd_result;

/*
 * Port-restricted cone (host `easy`) and a symmetric NAT (allocation ports) with TURN; both
 * STUN servers answer, so each agent learns its mapping. seed picks the world and which side
 * initiates. Asserts what must hold for every seed: the relay carried the connection first,
 * the budget, the stop at the first hit, the spare sockets closed.
 */
static void run_birthday(nk_port_allocation ports, uint32_t seed, bd_result *r)
{
    int easy = seed % 2;
    world *w = world_new_seeded(easy == 0 ? SIM_SITE_PORT : SIM_SITE_SYMMETRIC, easy == 0 ? SIM_SITE_SYMMETRIC : SIM_SITE_PORT, 0, 1,
                                seed * 7919);
    int hard = 1 - easy;
    w->stun_down = -1;
    w->sites[w->hosts[hard].site].nat.ports = ports;
    w->sites[w->hosts[hard].site].nat.delta = 1;
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 6000);
    nk_agent_stats_t se, sh;
    nk_agent_stats(w->hosts[easy].ag, &se);
    nk_agent_stats(w->hosts[hard].ag, &sh);
    assert_int_equal(se.nat_mapping, NK_NAT_ENDPOINT_INDEPENDENT);
    assert_int_equal(sh.nat_mapping, NK_NAT_ADDRESS_AND_PORT_DEPENDENT);
    assert_int_equal(sh.nat_ports, ports);
    memset(r, 0, sizeof(*r));
    r->probes = se.birthday_probes;
    r->openers = sh.birthday_probes;
    r->attempts = se.birthday_attempts + sh.birthday_attempts;
    /* The budget: one attempt each, 256 openers, <= 2048 probes. */
    assert_true(se.birthday_attempts <= 1 && sh.birthday_attempts <= 1);
    assert_true(r->openers <= 256 && r->probes <= 2048);
    assert_int_equal(w->hosts[hard].extra_asked, 256);
    /* The relay carried the connection before the direct path (no connect time spent). */
    for (int i = 0; i < 2; i++)
        assert_true(w->hosts[i].npath > 0 && w->hosts[i].path_kind[0] != NK_PATH_DIRECT);
    int64_t t0 = sim_agents_first_path(w, 0, NK_PATH_DIRECT), t1 = sim_agents_first_path(w, 1, NK_PATH_DIRECT);
    int64_t start = w->hosts[0].started;
    r->direct = t0 >= 0 && t1 >= 0 && t0 - start <= 5000 && t1 - start <= 5000 &&
                sim_agents_selected(w, 0) == NK_PATH_DIRECT && sim_agents_selected(w, 1) == NK_PATH_DIRECT;
    r->direct_ms = (t0 > t1 ? t0 : t1) - start;
    if (r->direct) {
        /* Probing stopped at the first hit; the hard side kept only the socket that won. */
        assert_int_equal(w->hosts[easy].bd_probes_at_direct, se.birthday_probes);
        assert_int_equal(se.birthday_hits + sh.birthday_hits, 2);
        assert_int_equal(w->hosts[hard].extra_open, 1);
        nk_path_info p;
        nk_agent_selected(w->hosts[hard].ag, &p);
        /* Data both ways on it, and it stays up past the keepalives. */
        sim_agents_send_data(w, 0, 3);
        sim_agents_send_data(w, 1, 3);
        sim_agents_run_until(w, w->clock.now + 3000);
        assert_int_equal(w->hosts[0].data_rx, 3);
        assert_int_equal(w->hosts[1].data_rx, 3);
        assert_int_equal(sim_agents_selected(w, hard), NK_PATH_DIRECT);
        /* The main socket still serves TURN after the attempt: cut the direct path, fail over. */
        w->drop_direct = 1;
        sim_agents_run_until(w, w->clock.now + 6000);
        assert_int_equal(sim_agents_selected(w, 0), NK_PATH_TURN);
        assert_int_equal(sim_agents_selected(w, 1), NK_PATH_TURN);
    } else {
        sim_agents_run_until(w, w->clock.now + 2000);
        printf("  seed %u: no direct path in 5 s (easy: %llu probes, %llu hits; hard: %llu hits; t %lld/%lld; %s/%s)\n",
               seed, (unsigned long long)se.birthday_probes, (unsigned long long)se.birthday_hits,
               (unsigned long long)sh.birthday_hits, (long long)(t0 - start), (long long)(t1 - start),
               nk_path_kind_name(sim_agents_selected(w, 0)), nk_path_kind_name(sim_agents_selected(w, 1)));
        assert_int_equal(w->hosts[hard].extra_open, sh.birthday_hits);
    }
    sim_agents_free(w);
}

static void test_birthday(void **state)
{
    unsigned ok[2] = {0, 0};
    uint64_t probes[2] = {0, 0}, worst[2] = {0, 0};
    int64_t ms[2] = {0, 0};
    static const nk_port_allocation kinds[2] = {NK_PORTS_RANDOM, NK_PORTS_SEQUENTIAL};
    report("birthday probing, port-restricted cone <-> symmetric, TURN carrying the connection, 20 seeds each:\n");
    for (int k = 0; k < 2; k++) {
        for (uint32_t seed = 1; seed <= 20; seed++) {
            bd_result r;
            run_birthday(kinds[k], seed, &r);
            assert_int_equal(r.attempts, 2);
            assert_int_equal(r.openers, 256);
            ok[k] += (unsigned)r.direct;
            if (r.direct) {
                probes[k] += r.probes;
                ms[k] += r.direct_ms;
                worst[k] = r.probes > worst[k] ? r.probes : worst[k];
            }
        }
        report("  %-10s ports: direct in %u/20 within 5 s; probes per hit: mean %llu, worst %llu; "
               "direct after %lld ms (mean)\n",
               nk_port_allocation_name(kinds[k]), ok[k], (unsigned long long)(ok[k] ? probes[k] / ok[k] : 0),
               (unsigned long long)worst[k], (long long)(ok[k] ? ms[k] / ok[k] : 0));
    }
    assert_true(ok[0] >= 19);
    assert_int_equal(ok[1], 20);
    /* Prediction: a sequential NAT is found in far fewer probes than a random one. The counts
     * include what left while the hit's answer was on its way (500 probes/s over the world's
     * 40 ms round trip: ~20), so a sequential hit costs ~20 and a random one ~10x that. */
    assert_true(worst[1] <= 32);
    assert_true(probes[1] / ok[1] * 8 < probes[0] / ok[0]);
}

/*
 * The first STUN server names an alternate address (RFC 5780 OTHER-ADDRESS) that never answers
 * (the NAT lab showed one silent for seconds under load): the second Binding fails over, so both
 * agents still learn their NAT's mapping and birthday probing still starts (before, the mapping
 * stayed unknown and the pair stayed on TURN). other_down: the other configured server is silent
 * too (the lab's is on the alternate IP), and only the last fallback, the first server's own IP
 * at the alternate port, answers.
 */
static void run_silent_other_address(int other_down)
{
    world *w = world_new_seeded(SIM_SITE_PORT, SIM_SITE_SYMMETRIC, 0, 1, 7919);
    w->stun_down = other_down ? 1 : -1;
    nk_addr alt = addr("198.51.100.9:3479"); /* no server at the alternate IP */
    nk_stun_server_free(w->stun[0]);
    assert_int_equal(nk_stun_server_new(&w->stun[0], &w->stun_addr[0], &alt, alt.port), 0);
    if (other_down)
        w->stun0_alt_port = alt.port; /* the first server answers at its own IP's alternate port */
    w->sites[w->hosts[1].site].nat.ports = NK_PORTS_RANDOM;
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + (other_down ? 8000 : 6000)); /* the last fallback comes 1.5 s later */
    nk_agent_stats_t se, sh;
    nk_agent_stats(w->hosts[0].ag, &se);
    nk_agent_stats(w->hosts[1].ag, &sh);
    assert_int_equal(se.nat_mapping, NK_NAT_ENDPOINT_INDEPENDENT);
    assert_int_equal(sh.nat_mapping, NK_NAT_ADDRESS_AND_PORT_DEPENDENT);
    assert_int_equal(se.birthday_attempts, 1);
    assert_int_equal(sh.birthday_attempts, 1);
    sim_agents_free(w);
}

static void test_birthday_silent_other_address(void **state)
{
    (void)state;
    run_silent_other_address(0);
}

static void test_birthday_silent_other_ip(void **state)
{
    (void)state;
    run_silent_other_address(1);
}

/*
 * No hit possible (every packet between the peers is dropped): the easy side spends exactly its
 * budget, no faster than 500 probes/s and not past the attempt's window; the hard side sends one
 * opener per socket and closes them all when the window ends. The relay keeps the connection.
 */
static void test_birthday_budget(void **state)
{
    world *w = world_new(SIM_SITE_PORT, SIM_SITE_SYMMETRIC, 0, 1);
    w->stun_down = -1;
    w->drop_direct = 1;
    sim_agents_start(w, 0, 1);
    uint64_t last = 0;
    int64_t first_at = -1, last_at = -1;
    for (int64_t t = w->clock.now; t < 9000; t += 100) { /* 100 ms steps: the rate, measured */
        sim_agents_run_until(w, t + 100);
        nk_agent_stats_t st;
        nk_agent_stats(w->hosts[0].ag, &st);
        assert_true(st.birthday_probes - last <= 100 / 2 + 1);
        if (st.birthday_probes > last) {
            last_at = w->clock.now;
            if (first_at < 0)
                first_at = w->clock.now - 100;
        }
        last = st.birthday_probes;
    }
    nk_agent_stats_t se, sh;
    nk_agent_stats(w->hosts[0].ag, &se);
    nk_agent_stats(w->hosts[1].ag, &sh);
    assert_int_equal(se.birthday_probes, 2048);
    assert_int_equal(sh.birthday_probes, 256);
    assert_int_equal(se.birthday_attempts, 1);
    assert_int_equal(sh.birthday_attempts, 1);
    assert_int_equal(se.birthday_hits + sh.birthday_hits, 0);
    assert_true(last_at - first_at <= 4200 + 100);
    assert_int_equal(w->hosts[1].extra_open, 0);
    assert_int_equal(sim_agents_selected(w, 0), NK_PATH_TURN);
    assert_int_equal(sim_agents_selected(w, 1), NK_PATH_TURN);
    report("birthday probing without a hit: %llu probes over %lld ms, %llu openers, spare sockets closed\n",
           (unsigned long long)se.birthday_probes, (long long)(last_at - first_at),
           (unsigned long long)sh.birthday_probes);
    sim_agents_free(w);
}

/* Symmetric <-> symmetric: no birthday probing can work, so none is tried (TURN carries it). */
static void test_birthday_not_for_symmetric_pairs(void **state)
{
    world *w = world_new(SIM_SITE_SYMMETRIC, SIM_SITE_SYMMETRIC, 0, 1);
    w->stun_down = -1;
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 6000);
    for (int i = 0; i < 2; i++) {
        nk_agent_stats_t st;
        nk_agent_stats(w->hosts[i].ag, &st);
        assert_int_equal(st.nat_mapping, NK_NAT_ADDRESS_AND_PORT_DEPENDENT);
        assert_int_equal(st.peer_nat_mapping, NK_NAT_ADDRESS_AND_PORT_DEPENDENT);
        assert_int_equal(st.birthday_attempts, 0);
        assert_int_equal(st.birthday_probes, 0);
        assert_int_equal(w->hosts[i].extra_asked, 0);
        assert_int_equal(sim_agents_selected(w, i), NK_PATH_TURN);
    }
    sim_agents_free(w);
    /* Port-restricted <-> port-restricted punches directly: no attempt either. */
    w = world_new(SIM_SITE_PORT, SIM_SITE_PORT, 0, 1);
    w->stun_down = -1;
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 6000);
    for (int i = 0; i < 2; i++) {
        nk_agent_stats_t st;
        nk_agent_stats(w->hosts[i].ag, &st);
        assert_int_equal(st.nat_mapping, NK_NAT_ENDPOINT_INDEPENDENT);
        assert_int_equal(st.birthday_attempts, 0);
        assert_int_equal(sim_agents_selected(w, i), NK_PATH_DIRECT);
    }
    sim_agents_free(w);
}

/* Two peers behind the same NAT (of every kind) stay on their LAN addresses. */
static void test_same_nat(void **state)
{
    for (int t = 0; t < SIM_SITE_COUNT; t++) {
        world *w = world_new(t, t, 1, 1);
        sim_agents_start(w, 0, 1);
        sim_agents_run_until(w, w->clock.now + 3000);
        for (int i = 0; i < 2; i++) {
            nk_path_info p;
            nk_agent_selected(w->hosts[i].ag, &p);
            assert_int_equal(p.kind, NK_PATH_DIRECT);
            assert_true(nk_addr_equal(&p.remote, &w->hosts[1 - i].addr));
        }
        printf("  same NAT (%s): direct over the LAN, connected in %lld ms\n", sim_site_names[t],
               (long long)(sim_agents_first_path(w, 0, NK_PATH_DIRECT) - w->hosts[0].started));
        sim_agents_free(w);
    }
}

/* nk_agent_send_in_place: the fill callback's bytes, behind the agent's header, reach the peer as
 * data on a path from the agent's socket (direct, or to the peer's TURN relay); a path through our
 * own TURN allocation or the hub, an empty fill and a short buffer are refused. */
static int fill_bytes(void *ctx, uint8_t *buf, size_t cap)
{
    const int *n = ctx;
    assert_true(cap >= NK_AGENT_MAX_DATA);
    memset(buf, n[1], (size_t)n[0]);
    return n[0];
}

static int send_in_place(world *w, int hi, int n, size_t cap)
{
    uint8_t buf[SIM_AGENTS_PKT_MAX];
    nk_transmit tx;
    int arg[2] = {n, 'a' + hi}; /* the data byte the world expects from host hi */
    assert_true(cap <= sizeof(buf));
    int rc = nk_agent_send_in_place(w->hosts[hi].ag, 0, &tx, buf, cap, fill_bytes, arg);
    if (rc == 0) {
        assert_true(tx.len > (size_t)n && tx.len <= cap);
        assert_int_equal(buf[tx.len - 1], 'a' + hi);
        sim_agents_host_send(w, hi, &tx, buf);
    }
    return rc;
}

static void test_send_in_place(void **state)
{
    static const struct {
        sim_site_type a, b;
        int turn;
        nk_path_kind kind;
    } cases[] = {{SIM_SITE_FULL, SIM_SITE_PORT, 0, NK_PATH_DIRECT},
                 {SIM_SITE_SYMMETRIC, SIM_SITE_SYMMETRIC, 1, NK_PATH_TURN},
                 {SIM_SITE_BLOCKED, SIM_SITE_FULL, 0, NK_PATH_HUB}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        world *w = world_new(cases[i].a, cases[i].b, 0, cases[i].turn);
        sim_agents_start(w, 0, 1);
        sim_agents_run_until(w, w->clock.now + 4000);
        int refused = 0;
        size_t sent[2] = {0, 0};
        for (int hi = 0; hi < 2; hi++) {
            assert_int_equal(sim_agents_selected(w, hi), cases[i].kind);
            int rc = send_in_place(w, hi, 200, SIM_AGENTS_PKT_MAX);
            if (rc == NK_ERR_UNSUPPORTED) { /* the hub, or our own TURN allocation */
                refused++;
                continue;
            }
            assert_int_equal(rc, 0);
            sent[hi]++;
            assert_int_equal(send_in_place(w, hi, 0, SIM_AGENTS_PKT_MAX), NK_ERR_AGAIN);
            assert_int_equal(send_in_place(w, hi, 200, NK_AGENT_MAX_DATA), NK_ERR_NOBUFS);
            assert_int_equal(send_in_place(w, hi, NK_AGENT_MAX_DATA, SIM_AGENTS_PKT_MAX), 0);
            sent[hi]++;
        }
        /* direct: both ends in place; TURN: the side whose pair uses its own allocation is refused;
         * hub: both refused */
        assert_int_equal(refused, cases[i].kind == NK_PATH_DIRECT ? 0 : cases[i].kind == NK_PATH_TURN ? 1 : 2);
        sim_agents_run_until(w, w->clock.now + 500);
        assert_int_equal(w->hosts[1].data_rx, sent[0]);
        assert_int_equal(w->hosts[0].data_rx, sent[1]);
        sim_agents_free(w);
    }
}

/* nk_agent_take_data: a DATA frame from the peer's address on the selected direct pair gives its
 * bytes and path without an event; anything else is left to nk_agent_handle_datagram. */
static void test_take_data(void **state)
{
    world *w = world_new(SIM_SITE_FULL, SIM_SITE_PORT, 0, 0);
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 4000);
    uint8_t buf[SIM_AGENTS_PKT_MAX];
    nk_transmit tx;
    int arg[2] = {300, 'a'};
    assert_int_equal(nk_agent_send_in_place(w->hosts[0].ag, 0, &tx, buf, sizeof(buf), fill_bytes, arg), 0);
    nk_path_info sel, path;
    nk_agent_selected(w->hosts[1].ag, &sel); /* host 1's pair: the address host 0's frames come from */
    assert_int_equal(sel.kind, NK_PATH_DIRECT);
    const uint8_t *data;
    size_t len;
    nk_agent *b = w->hosts[1].ag;
    nk_addr other = sel.remote;
    other.port++;
    assert_int_equal(nk_agent_take_data(b, &other, buf, tx.len, &path, &data, &len), NK_ERR_UNSUPPORTED);
    assert_int_equal(nk_agent_take_data(b, &sel.remote, buf, 20, &path, &data, &len), NK_ERR_UNSUPPORTED);
    buf[5] ^= 1; /* not the peer's key */
    assert_int_equal(nk_agent_take_data(b, &sel.remote, buf, tx.len, &path, &data, &len), NK_ERR_UNSUPPORTED);
    buf[5] ^= 1;
    assert_int_equal(nk_agent_take_data(b, &sel.remote, buf, tx.len, &path, &data, &len), 0);
    assert_int_equal(len, 300);
    assert_ptr_equal(data, buf + tx.len - 300);
    assert_int_equal(data[0], 'a');
    assert_int_equal(path.kind, NK_PATH_DIRECT);
    assert_int_equal(path.id, sel.id);
    assert_int_equal(w->hosts[1].data_rx, 0); /* no event */
    sim_agents_free(w);
}

/* With the server-reflexive address known up front (as a node that ran STUN at start-up). */
static void test_connect_time(void **state)
{
    static const sim_site_type cones[] = {SIM_SITE_FULL, SIM_SITE_RESTRICTED, SIM_SITE_PORT};
    report("agent connect time on cone NATs, 40 ms RTT, after signalling (goal <= 1 RTT + 30 ms = 70 ms):\n");
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 3; j++) {
            outcome o;
            run_case(cones[i], cones[j], 0, 1, 0, 0, 1, &o);
            assert_int_equal(o.kind[0], NK_PATH_DIRECT);
            report("  %-10s -> %-10s direct in %lld ms from start, %lld ms after the responder's candidates\n",
                   sim_site_names[cones[i]], sim_site_names[cones[j]], (long long)o.connect_ms, (long long)o.after_signal_ms);
            assert_true(o.after_signal_ms <= 40 + 30);
        }
}

static void test_loss(void **state)
{
    static const sim_site_type ok[][2] = {{SIM_SITE_PORT, SIM_SITE_PORT},     {SIM_SITE_FULL, SIM_SITE_PORT},      {SIM_SITE_RESTRICTED, SIM_SITE_PORT},
                                     {SIM_SITE_PUBLIC, SIM_SITE_SYMMETRIC}, {SIM_SITE_SYMMETRIC, SIM_SITE_FULL}, {SIM_SITE_PORT, SIM_SITE_RESTRICTED}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        for (uint32_t seed = 1; seed <= 4; seed++) {
            outcome o;
            run_case(ok[i][0], ok[i][1], 0, 1, 20, seed * 7919, 0, &o);
            assert_int_equal(o.kind[0], NK_PATH_DIRECT);
            assert_int_equal(o.kind[1], NK_PATH_DIRECT);
            if (seed == 1)
                printf("  20%% loss %-10s -> %-10s direct in %lld ms\n", sim_site_names[ok[i][0]], sim_site_names[ok[i][1]],
                       (long long)o.connect_ms);
        }
}

/* ---- failover ----------------------------------------------------------------------------------------- */

static void stream(world *w, int64_t until)
{
    while (w->clock.now < until) {
        sim_agents_send_data(w, 0, 1);
        sim_agents_send_data(w, 1, 1);
        sim_agents_run_until(w, w->clock.now + 100);
    }
}

static void failover(int use_turn)
{
    nk_path_kind relay = use_turn ? NK_PATH_TURN : NK_PATH_HUB;
    world *w = world_new(SIM_SITE_PORT, SIM_SITE_PORT, 0, use_turn);
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 3000);
    assert_int_equal(sim_agents_selected(w, 0), NK_PATH_DIRECT);
    assert_int_equal(sim_agents_selected(w, 1), NK_PATH_DIRECT);

    int64_t cut = w->clock.now;
    w->drop_direct = 1;
    stream(w, cut + 6000);
    assert_int_equal(sim_agents_selected(w, 0), relay);
    assert_int_equal(sim_agents_selected(w, 1), relay);
    int64_t moved = w->hosts[0].path_at[w->hosts[0].npath - 1];
    assert_true(moved - cut <= 1000 + 3 * 1000 + 500); /* keepalive interval + 3 unanswered keepalives */
    /* Data keeps flowing over the relay. */
    unsigned rx0 = w->hosts[0].data_rx, rx1 = w->hosts[1].data_rx;
    stream(w, w->clock.now + 2000);
    assert_true(w->hosts[0].data_rx - rx0 >= 19);
    assert_true(w->hosts[1].data_rx - rx1 >= 19);

    int64_t heal = w->clock.now;
    w->drop_direct = 0;
    stream(w, heal + 4000);
    assert_int_equal(sim_agents_selected(w, 0), NK_PATH_DIRECT);
    assert_int_equal(sim_agents_selected(w, 1), NK_PATH_DIRECT);
    int64_t back = w->hosts[0].path_at[w->hosts[0].npath - 1];
    assert_true(back - heal <= 2000 + 500); /* the next direct re-probe burst */
    printf("  direct path cut: on %s after %lld ms; healed: direct again after %lld ms\n", nk_path_kind_name(relay),
           (long long)(moved - cut), (long long)(back - heal));
    rx0 = w->hosts[0].data_rx;
    rx1 = w->hosts[1].data_rx;
    stream(w, w->clock.now + 1000);
    assert_true(w->hosts[0].data_rx - rx0 >= 9);
    assert_true(w->hosts[1].data_rx - rx1 >= 9);
    sim_agents_free(w);
}

static void test_failover_turn(void **state)
{
    failover(1);
}

static void test_failover_hub(void **state)
{
    failover(0);
}

/* ---- hostile input ------------------------------------------------------------------------------------- */

static void inject(world *w, int hi, const char *from, const uint8_t *p, size_t n)
{
    nk_addr f = addr(from);
    nk_agent_handle_datagram(w->hosts[hi].ag, w->clock.now, &f, p, n);
    sim_agents_pump(w, hi);
}

static void test_spoofed(void **state)
{
    world *w = world_new(SIM_SITE_FULL, SIM_SITE_PORT, 0, 0);
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 2000);
    nk_path_info before[2];
    for (int i = 0; i < 2; i++) {
        nk_agent_selected(w->hosts[i].ag, &before[i]);
        assert_int_equal(before[i].kind, NK_PATH_DIRECT);
    }
    /* A keepalive probe B sent (captured on the wire). */
    sim_agents_run_until(w, w->clock.now + 1500);
    host *b = &w->hosts[1];
    assert_true(b->last_probe_len > 0);
    uint8_t p[SIM_AGENTS_PKT_MAX];
    size_t n = b->last_probe_len;
    nk_agent_stats_t st0, st;
    nk_agent_stats(w->hosts[0].ag, &st0);

    /* 1: modified sealed bytes (every position of the box): authentication fails. */
    for (size_t i = 1 + NK_PEER_ID_SIZE; i < n; i++) {
        memcpy(p, b->last_probe, n);
        p[i] ^= 0x40;
        inject(w, 0, "198.51.100.66:4000", p, n);
    }
    nk_agent_stats(w->hosts[0].ag, &st);
    assert_int_equal(st.rx_auth_failed - st0.rx_auth_failed, n - 1 - NK_PEER_ID_SIZE);
    /* 2: type byte changed (PROBE -> ANSWER): the sealed copy disagrees. */
    memcpy(p, b->last_probe, n);
    p[0] = 0x82;
    inject(w, 0, "198.51.100.66:4000", p, n);
    /* 3: truncated and junk frames. */
    inject(w, 0, "198.51.100.66:4000", b->last_probe, n - 1);
    inject(w, 0, "198.51.100.66:4000", b->last_probe, 20);
    /* 4: another sender: not this agent's. */
    memcpy(p, b->last_probe, n);
    p[5] ^= 1;
    nk_addr f = addr("198.51.100.66:4000");
    assert_int_equal(nk_agent_handle_datagram(w->hosts[0].ag, w->clock.now, &f, p, n), NK_ERR_NOT_FOUND);
    /* 5: data from an address with no pair. */
    memcpy(p, b->last_probe, 1 + NK_PEER_ID_SIZE);
    p[0] = 0x90;
    memcpy(p + 1 + NK_PEER_ID_SIZE, "ab", 2);
    inject(w, 0, "198.51.100.66:4000", p, 1 + NK_PEER_ID_SIZE + 2);
    /* 6: a forged or modified signal through the hub. */
    uint8_t sig[64];
    memset(sig, 0, sizeof(sig));
    sig[0] = 1;
    assert_true(nk_agent_handle_signal(w->hosts[0].ag, w->clock.now, NK_HUB_T_CANDIDATE, sig, sizeof(sig)) < 0);
    nk_agent_stats(w->hosts[0].ag, &st);
    assert_int_equal(st.rx_auth_failed - st0.rx_auth_failed, n - 1 - NK_PEER_ID_SIZE + 1);
    assert_true(st.rx_malformed - st0.rx_malformed >= 2);
    assert_int_equal(st.rx_unknown_source - st0.rx_unknown_source, 1);

    /* 6b: A's own probe reflected back to it from B's address (same key, wrong direction). */
    host *a0 = &w->hosts[0];
    assert_true(a0->last_probe_len > 0);
    memcpy(p, a0->last_probe, a0->last_probe_len);
    memcpy(p + 1, b->id.id.key, NK_PEER_ID_SIZE); /* claim B sent it */
    nk_agent_stats(w->hosts[0].ag, &st0);
    assert_int_equal(nk_agent_handle_datagram(w->hosts[0].ag, w->clock.now, &before[0].remote, p, a0->last_probe_len),
                     NK_ERR_AUTH);
    nk_agent_stats(w->hosts[0].ag, &st);
    assert_int_equal(st.rx_auth_failed - st0.rx_auth_failed, 1);

    /* 7: the genuine probe replayed from an attacker's address: answered there, but never a path. */
    for (int i = 0; i < 20; i++) {
        inject(w, 0, "198.51.100.66:4000", b->last_probe, n);
        sim_agents_run_until(w, w->clock.now + 100);
    }
    sim_agents_run_until(w, w->clock.now + 3000);
    for (int i = 0; i < 2; i++) {
        nk_path_info now;
        nk_agent_selected(w->hosts[i].ag, &now);
        assert_int_equal(now.id, before[i].id);
        assert_true(nk_addr_equal(&now.remote, &before[i].remote));
    }
    sim_agents_free(w);
}

/* The request went out before the hub registration (lost); set_hub_up(1) at registration resends it. */
static void test_hub_late(void **state)
{
    world *w = world_new(SIM_SITE_PORT, SIM_SITE_FULL, 0, 0);
    w->hub_up = 0;
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 300);
    assert_null(w->hosts[1].ag);
    w->hub_up = 1;
    int64_t registered = w->clock.now;
    nk_agent_set_hub_up(w->hosts[0].ag, w->clock.now, 1);
    sim_agents_pump(w, 0);
    sim_agents_run_until(w, w->clock.now + 1000);
    int64_t t = sim_agents_first_path(w, 0, NK_PATH_DIRECT);
    assert_true(t >= 0);
    printf("  request sent before registration: direct %lld ms after it\n", (long long)(t - registered));
    assert_true(t - registered < 500);
    sim_agents_free(w);
}

/* A dead path stays dead for an attacker replaying the peer's genuine probes from the peer's own address. */
static void test_replay_keeps_nothing_alive(void **state)
{
    world *w = world_new(SIM_SITE_PORT, SIM_SITE_PORT, 0, 0);
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 3000);
    assert_int_equal(sim_agents_selected(w, 0), NK_PATH_DIRECT);
    nk_path_info p;
    nk_agent_selected(w->hosts[0].ag, &p);
    host *b = &w->hosts[1];
    assert_true(b->last_probe_len > 0);
    uint8_t probe[SIM_AGENTS_PKT_MAX];
    size_t n = b->last_probe_len;
    memcpy(probe, b->last_probe, n);
    w->drop_direct = 1;
    int64_t cut = w->clock.now;
    while (w->clock.now < cut + 6000) {
        nk_agent_handle_datagram(w->hosts[0].ag, w->clock.now, &p.remote, probe, n);
        sim_agents_pump(w, 0);
        sim_agents_run_until(w, w->clock.now + 50);
    }
    assert_int_equal(sim_agents_selected(w, 0), NK_PATH_HUB);
    nk_agent_stats_t st;
    nk_agent_stats(w->hosts[0].ag, &st);
    printf("  replayed genuine probes: path still failed over after %lld ms\n",
           (long long)(w->hosts[0].path_at[w->hosts[0].npath - 1] - cut));
    sim_agents_free(w);
}

/* Closing releases the TURN allocation, so a new agent on the same socket gets one at once. */
static void test_close_releases_turn(void **state)
{
    world *w = world_new(SIM_SITE_PORT, SIM_SITE_SYMMETRIC, 0, 1);
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 3000);
    assert_int_equal(sim_agents_selected(w, 0), NK_PATH_TURN);
    nk_turn_server_stats_t ts;
    nk_turn_server_stats(w->turn, &ts);
    assert_int_equal(ts.allocations, 2);
    nk_agent_close(w->hosts[0].ag, w->clock.now);
    sim_agents_pump(w, 0);
    assert_int_equal(nk_agent_next_deadline(w->hosts[0].ag), NK_DEADLINE_NONE);
    sim_agents_run_until(w, w->clock.now + 200);
    nk_turn_server_stats(w->turn, &ts);
    assert_int_equal(ts.allocations, 1);
    nk_agent_free(w->hosts[0].ag);
    w->hosts[0].ag = NULL;
    w->hosts[0].relayed = 0;
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 1000);
    assert_true(w->hosts[0].relayed);
    sim_agents_free(w);
}

/* On the hub path (UDP blocked): the hub goes away (PATH to none), comes back within the
 * connect timeout (hub again, data flows), goes away for good (FAILED). */
static void test_hub_down(void **state)
{
    world *w = world_new(SIM_SITE_BLOCKED, SIM_SITE_PORT, 0, 0);
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 2000);
    assert_int_equal(sim_agents_selected(w, 0), NK_PATH_HUB);
    w->hub_up = 0;
    for (int i = 0; i < 2; i++) {
        nk_agent_set_hub_up(w->hosts[i].ag, w->clock.now, 0);
        sim_agents_pump(w, i);
        assert_int_equal(sim_agents_selected(w, i), NK_PATH_NONE);
        assert_int_equal(nk_agent_send(w->hosts[i].ag, w->clock.now, 0, (const uint8_t *)"x", 1), NK_ERR_STATE);
    }
    sim_agents_run_until(w, w->clock.now + 5000);
    w->hub_up = 1;
    for (int i = 0; i < 2; i++) {
        nk_agent_set_hub_up(w->hosts[i].ag, w->clock.now, 1);
        sim_agents_pump(w, i);
        assert_int_equal(sim_agents_selected(w, i), NK_PATH_HUB);
    }
    sim_agents_send_data(w, 0, 2);
    sim_agents_send_data(w, 1, 2);
    sim_agents_run_until(w, w->clock.now + 500);
    assert_int_equal(w->hosts[0].data_rx, 2);
    assert_int_equal(w->hosts[1].data_rx, 2);
    w->hub_up = 0;
    nk_agent_set_hub_up(w->hosts[0].ag, w->clock.now, 0);
    sim_agents_pump(w, 0);
    sim_agents_run_until(w, w->clock.now + 29000);
    assert_false(w->hosts[0].failed);
    sim_agents_run_until(w, w->clock.now + 2000);
    assert_true(w->hosts[0].failed);
    sim_agents_free(w);
}

/* NAT mappings that expire after 30 s idle: the default keepalive (25 s) holds the direct
 * path for ten minutes without a single path change. */
static void test_keepalive_holds_mappings(void **state)
{
    world *w = world_new(SIM_SITE_PORT, SIM_SITE_PORT, 0, 0);
    w->keepalive_ms = 0;
    w->retry_ms = 0;
    w->sites[0].nat.lifetime_ms = w->sites[1].nat.lifetime_ms = 30000;
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 3000);
    assert_int_equal(sim_agents_selected(w, 0), NK_PATH_DIRECT);
    size_t changes[2] = {w->hosts[0].npath, w->hosts[1].npath};
    sim_agents_run_until(w, w->clock.now + 600000);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sim_agents_selected(w, i), NK_PATH_DIRECT);
        assert_int_equal(w->hosts[i].npath, changes[i]);
    }
    sim_agents_send_data(w, 0, 1);
    sim_agents_send_data(w, 1, 1);
    sim_agents_run_until(w, w->clock.now + 200);
    assert_int_equal(w->hosts[0].data_rx, 1);
    assert_int_equal(w->hosts[1].data_rx, 1);
    sim_agents_free(w);
}

/* Both NATs reboot (every mapping gone; new ones get other ports): the direct path dies, the
 * agents fail over to the hub, ask STUN again, trickle the new addresses and punch again. */
static void test_nat_reboot(void **state)
{
    world *w = world_new(SIM_SITE_PORT, SIM_SITE_PORT, 0, 0);
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 12000);
    assert_int_equal(sim_agents_selected(w, 0), NK_PATH_DIRECT);
    int64_t reboot = w->clock.now;
    for (int i = 0; i < 2; i++)
        sim_nat_reboot(&w->sites[i].nat);
    sim_agents_run_until(w, w->clock.now + 15000);
    for (int i = 0; i < 2; i++)
        assert_int_equal(sim_agents_selected(w, i), NK_PATH_DIRECT);
    int64_t back = w->hosts[0].path_at[w->hosts[0].npath - 1];
    assert_int_equal(w->hosts[0].path_kind[w->hosts[0].npath - 2], NK_PATH_HUB);
    printf("  both NATs rebooted: on the hub, then direct again %lld ms after the reboot\n",
           (long long)(back - reboot));
    sim_agents_send_data(w, 0, 1);
    sim_agents_send_data(w, 1, 1);
    sim_agents_run_until(w, w->clock.now + 200);
    assert_int_equal(w->hosts[0].data_rx, 1);
    assert_int_equal(w->hosts[1].data_rx, 1);
    sim_agents_free(w);
}

/* Glare: both sides ask at once (both controlling). They still meet on a direct path. */
static void test_glare(void **state)
{
    world *w = world_new(SIM_SITE_PORT, SIM_SITE_FULL, 0, 0);
    sim_agents_start(w, 0, 1);
    sim_agents_start(w, 1, 1);
    sim_agents_run_until(w, w->clock.now + 3000);
    for (int i = 0; i < 2; i++)
        assert_int_equal(sim_agents_selected(w, i), NK_PATH_DIRECT);
    sim_agents_send_data(w, 0, 2);
    sim_agents_send_data(w, 1, 2);
    sim_agents_run_until(w, w->clock.now + 200);
    assert_int_equal(w->hosts[0].data_rx, 2);
    assert_int_equal(w->hosts[1].data_rx, 2);
    sim_agents_free(w);
}

/* A TURN allocation the driver owns and shares (cfg.turn_shared): the relayed path works the same. */
static void test_shared_turn(void **state)
{
    world *w = world_new(SIM_SITE_PORT, SIM_SITE_SYMMETRIC, 0, 1);
    w->shared_turn = 1;
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 3000);
    for (int i = 0; i < 2; i++) {
        assert_non_null(w->hosts[i].shared);
        assert_int_equal(sim_agents_selected(w, i), NK_PATH_TURN);
    }
    sim_agents_send_data(w, 0, 3);
    sim_agents_send_data(w, 1, 3);
    sim_agents_run_until(w, w->clock.now + 300);
    assert_int_equal(w->hosts[0].data_rx, 3);
    assert_int_equal(w->hosts[1].data_rx, 3);
    /* Closing an agent leaves the driver's allocation alone. */
    nk_agent_close(w->hosts[0].ag, w->clock.now);
    sim_agents_pump(w, 0);
    sim_agents_run_until(w, w->clock.now + 200);
    assert_int_equal(nk_turn_client_state(w->hosts[0].shared), NK_TURN_ALLOCATED);
    sim_agents_free(w);
}

/*
 * Symmetric NAT with 10 % loss on its outside link (each way, as the lab's loss=10) -> symmetric, the
 * node's way (the driver's shared TURN allocation), 200 seeds: the initiator is on TURN within 2 s
 * every time (the node reports the hub instead after settle_ms, 4 s), both ends are on TURN at the
 * end. It used to stay on the hub for good in about 7 % of the runs: when no TURN pair was valid
 * yet when the TURN hold (300 ms after the responder's candidates) ended, the hold's end
 * (NK_DEADLINE_NONE) read as "hold forever", and a TURN pair that validated later never replaced
 * the hub (the lab's turn10 case, under load, ended on the hub).
 */
static void test_turn_lossy_symmetric(void **state)
{
    int64_t worst = 0, sum = 0;
    const int runs = 200;
    for (int run = 0; run < runs; run++) {
        world *w = world_new_seeded(SIM_SITE_SYMMETRIC, SIM_SITE_SYMMETRIC, 0, 1, (uint32_t)run * 7919u);
        w->shared_turn = 1;
        w->stun_down = -1;
        w->sites[0].loss = 10;
        sim_agents_start(w, 0, 1);
        sim_agents_run_until(w, w->clock.now + 8000);
        int64_t t = sim_agents_first_path(w, 0, NK_PATH_TURN);
        if (t < 0 || t - w->hosts[0].started > 2000)
            fail_msg("seed %d: on TURN after %lld ms (-1: never)", run, (long long)(t < 0 ? -1 : t - w->hosts[0].started));
        worst = t - w->hosts[0].started > worst ? t - w->hosts[0].started : worst;
        sum += t - w->hosts[0].started;
        assert_int_equal(sim_agents_selected(w, 0), NK_PATH_TURN);
        assert_int_equal(sim_agents_selected(w, 1), NK_PATH_TURN);
        sim_agents_free(w);
    }
    report("agent symmetric (10 %% loss on its link) -> symmetric, shared TURN, %d seeds: on TURN after %lld ms on "
           "average, %lld ms at worst\n", runs, (long long)(sum / runs), (long long)worst);
}

/* Port-restricted <-> port-restricted with 30 % loss each way on the controlling side's link (the
 * lab's pr-lossy pair, one STUN server answering): its server-reflexive address must come early, or the connection settles on
 * the hub before a direct path can be found. With the RFC's doubling from 250 ms (sends at 0, 0.25,
 * 0.75, 1.75, 3.75 s) all were lost in 1 of ~30 gatherings; capped at 500 ms, 8 sends by 3.25 s.
 * Seeded: 6 of these 400 seeds were not direct within 4 s before, 3 now. */
static void test_lossy_gathering(void **state)
{
    (void)state;
    const int runs = 400;
    int late = 0;
    int64_t worst = 0;
    for (int run = 0; run < runs; run++) {
        world *w = world_new_seeded(SIM_SITE_PORT, SIM_SITE_PORT, 0, 0, (uint32_t)run * 104729u + 17u);
        w->sites[0].loss = 30;
        w->stun_down = 1; /* one STUN server answers, as in the lab */
        sim_agents_start(w, 0, 1);
        sim_agents_run_until(w, w->clock.now + 6000);
        int64_t t = sim_agents_first_path(w, 0, NK_PATH_DIRECT);
        int64_t took = t < 0 ? 6000 : t - w->hosts[0].started;
        late += took > 4000;
        worst = took > worst ? took : worst;
        sim_agents_free(w);
    }
    report("agent port-restricted (30 %% loss on its link) -> port-restricted, %d seeds: %d not direct within 4 s "
           "(worst %lld ms)\n", runs, late, (long long)worst);
    assert_true(late <= runs / 100);
}

/* The first STUN server is down: the second gives the server-reflexive candidate, and port-restricted
 * cone NATs on both sides still connect directly. */
static void test_stun_failover(void **state)
{
    world *w = world_new(SIM_SITE_PORT, SIM_SITE_PORT, 0, 0);
    w->stun_down = 0;
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 4000);
    assert_true(w->hosts[0].punchable && w->hosts[1].punchable);
    assert_int_equal(sim_agents_selected(w, 0), NK_PATH_DIRECT);
    assert_int_equal(sim_agents_selected(w, 1), NK_PATH_DIRECT);
    printf("  first STUN server down: direct after %lld ms\n",
           (long long)(sim_agents_first_path(w, 0, NK_PATH_DIRECT) - w->hosts[0].started));
    sim_agents_free(w);
}

/* Without any answer from the peer or a hub: FAILED after connect_timeout. */
static void test_timeout(void **state)
{
    world *w = world_new(SIM_SITE_PORT, SIM_SITE_PORT, 0, 0);
    w->hub_up = 0;
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 31000);
    assert_true(w->hosts[0].failed);
    assert_int_equal(nk_agent_next_deadline(w->hosts[0].ag), NK_DEADLINE_NONE);
    sim_agents_free(w);
}


/* ---- IPv6: stateful firewalls, IPv6-only and dual-stack hosts, the faster family ---------------- */

/* The second STUN server speaks IPv6 (the first IPv4): a dual-stack agent runs one per family. */
static void stun_v6(world *w)
{
    nk_stun_server_free(w->stun[1]);
    w->stun_addr[1] = addr("[2001:db8:100::1]:3478");
    assert_int_equal(nk_stun_server_new(&w->stun[1], &w->stun_addr[1], NULL, 0), 0);
    w->stun_down = -1;
}

static nk_path_info selected_path(const world *w, int hi)
{
    nk_path_info p;
    nk_agent_selected(w->hosts[hi].ag, &p);
    return p;
}

/* Both hosts on the path of family fam, direct; data both ways. Returns the initiator's connect ms. */
static int64_t expect_direct(world *w, uint8_t fam)
{
    for (int i = 0; i < 2; i++) {
        nk_path_info p = selected_path(w, i);
        assert_false(w->hosts[i].failed);
        assert_int_equal(p.kind, NK_PATH_DIRECT);
        assert_int_equal(p.remote.family, fam);
    }
    sim_agents_send_data(w, 0, 3);
    sim_agents_send_data(w, 1, 3);
    sim_agents_run_until(w, w->clock.now + 500);
    assert_int_equal(w->hosts[0].data_rx, 3);
    assert_int_equal(w->hosts[1].data_rx, 3);
    return sim_agents_first_path(w, 0, NK_PATH_DIRECT) - w->hosts[0].started;
}

/* IPv6-only hosts behind stateful firewalls on both sides: the simultaneous probes open both. */
static void test_ipv6_firewalls(void **state)
{
    world *w = world_new(SIM_SITE_PORT, SIM_SITE_PORT, 0, 0);
    stun_v6(w);
    sim_agents_give_v6(w, 0, "[2001:db8:1::2]:5000", 1);
    sim_agents_give_v6(w, 1, "[2001:db8:2::2]:5000", 1);
    sim_agents_start(w, 0, 1);
    sim_agents_run_until(w, w->clock.now + 4000);
    int64_t t = expect_direct(w, NK_AF_INET6);
    /* The firewalls were there: the responder's first probes, sent before the initiator had
     * probed it, were dropped at the initiator's firewall. */
    assert_true(w->sites[0].fw6.nfiltered > 0);
    assert_true(t >= 0 && t < 1000);
    report("agent IPv6 firewalled <-> IPv6 firewalled: direct over IPv6 in %lld ms (%u probes filtered)\n",
           (long long)t, w->sites[0].fw6.nfiltered + w->sites[1].fw6.nfiltered);
    sim_agents_free(w);
}

/* An IPv6-only host and a dual-stack one (IPv4 behind a port-restricted NAT, IPv6 behind a
 * firewall), either side initiating: direct over IPv6; the IPv4 candidates make no pair. */
static void test_ipv6_only_to_dual_stack(void **state)
{
    for (int dir = 0; dir < 2; dir++) {
        world *w = world_new(SIM_SITE_PORT, SIM_SITE_PORT, 0, 1);
        stun_v6(w);
        sim_agents_give_v6(w, dir, "[2001:db8:1::2]:5000", 1);     /* the IPv6-only one */
        sim_agents_give_v6(w, 1 - dir, "[2001:db8:2::2]:5000", 0); /* dual stack */
        sim_agents_start(w, 0, 1);
        sim_agents_run_until(w, w->clock.now + 4000);
        int64_t t = expect_direct(w, NK_AF_INET6);
        nk_agent_stats_t st;
        nk_agent_stats(w->hosts[dir].ag, &st);
        report("agent IPv6-only %s dual-stack: direct over IPv6 in %lld ms\n", dir == 0 ? "->" : "<-",
               (long long)t);
        sim_agents_free(w);
    }
}

/* Both hosts dual stack, both families punch through: the faster wins, IPv6 on a tie. The IPv6
 * pairs validate first (their host candidates go out in the first signal; the IPv4 mappings come
 * from STUN later), so IPv4 winning when faster shows the switch; the tie runs with either family
 * listed first, so it is the rule and not the order that picks IPv6. */
static void test_ipv6_faster_wins(void **state)
{
    static const struct {
        int64_t v6_ms;
        int presrflx, v6_first;
        uint8_t want;
    } cases[] = {
        {SIM_AGENTS_INET_MS * 2, 0, 0, NK_AF_INET},   /* IPv6 twice as slow: IPv4 */
        {SIM_AGENTS_INET_MS / 2, 0, 0, NK_AF_INET6},  /* IPv6 faster */
        {SIM_AGENTS_INET_MS, 1, 0, NK_AF_INET6},      /* a tie, IPv4 listed first: IPv6 */
        {SIM_AGENTS_INET_MS, 1, 1, NK_AF_INET6},      /* a tie, IPv6 listed first: IPv6 */
        {SIM_AGENTS_INET_MS + 2, 1, 0, NK_AF_INET6},  /* IPv6 a little slower (10 %): still a tie */
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        world *w = world_new(SIM_SITE_PORT, SIM_SITE_PORT, 0, 0);
        stun_v6(w);
        w->inet6_ms = cases[c].v6_ms;
        w->presrflx = cases[c].presrflx;
        w->v6_first = cases[c].v6_first;
        sim_agents_give_v6(w, 0, "[2001:db8:1::2]:5000", 0);
        sim_agents_give_v6(w, 1, "[2001:db8:2::2]:5000", 0);
        sim_agents_start(w, 0, 1);
        sim_agents_run_until(w, w->clock.now + 4000);
        int64_t t = expect_direct(w, cases[c].want);
        nk_path_info p = selected_path(w, 0);
        report("agent dual stack, IPv4 RTT %d ms, IPv6 RTT %lld ms: %s (RTT %lld ms), direct in %lld ms, "
               "%zu path events\n", 2 * SIM_AGENTS_INET_MS, (long long)(2 * cases[c].v6_ms),
               p.remote.family == NK_AF_INET6 ? "IPv6" : "IPv4", (long long)p.rtt_ms, (long long)t,
               w->hosts[0].npath);
        sim_agents_free(w);
    }
}

int main(void)
{
    report_open();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matrix_turn),  cmocka_unit_test(test_matrix_no_turn),
        cmocka_unit_test(test_same_nat),     cmocka_unit_test(test_connect_time),
        cmocka_unit_test(test_send_in_place), cmocka_unit_test(test_take_data),
        cmocka_unit_test(test_loss),         cmocka_unit_test(test_failover_turn),
        cmocka_unit_test(test_failover_hub), cmocka_unit_test(test_spoofed),
        cmocka_unit_test(test_timeout),      cmocka_unit_test(test_stun_failover),
        cmocka_unit_test(test_hub_late),     cmocka_unit_test(test_replay_keeps_nothing_alive),
        cmocka_unit_test(test_close_releases_turn), cmocka_unit_test(test_hub_down),
        cmocka_unit_test(test_keepalive_holds_mappings), cmocka_unit_test(test_nat_reboot),
        cmocka_unit_test(test_glare),        cmocka_unit_test(test_shared_turn),
        cmocka_unit_test(test_turn_lossy_symmetric),
        cmocka_unit_test(test_lossy_gathering),
        cmocka_unit_test(test_birthday),     cmocka_unit_test(test_birthday_not_for_symmetric_pairs),
        cmocka_unit_test(test_birthday_budget), cmocka_unit_test(test_birthday_silent_other_address),
        cmocka_unit_test(test_birthday_silent_other_ip),
        cmocka_unit_test(test_ipv6_firewalls), cmocka_unit_test(test_ipv6_only_to_dual_stack),
        cmocka_unit_test(test_ipv6_faster_wins),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (report_file != NULL)
        fclose(report_file);
    return failed;
}

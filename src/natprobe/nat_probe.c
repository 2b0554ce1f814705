/*
 * natkit: RFC 5780 NAT behaviour discovery, sans-I/O. See
 * include/natkit/nat_probe.h and docs/internals/nat-probe.md.
 *
 * The probe is a table of tests. Each test has a socket, a kind, a
 * prerequisite (another test, usually that socket's test I) and one
 * nk_stun_txn for its retransmissions. Tests wait (PENDING) until their
 * prerequisite has an answer, run, and end OK, FAILED (no answer) or SKIPPED
 * (the prerequisite failed or the server lacks what the test needs). When
 * every test has ended, the report is computed from the table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/nat_probe.h"
#include "natkit/stun.h"
#include "random.h"

#define DEFAULT_RTO_MS       250
#define DEFAULT_RC           4
#define DEFAULT_RM           4
#define DEFAULT_SAMPLES      6
#define DEFAULT_LIFETIME_MS  60000
#define MAX_LIFETIME_MS      600000
#define MAX_SOCKETS          (NK_NAT_PROBE_MAX_SAMPLES + NK_NAT_PROBE_MAX_TRIALS + 1)
#define MAX_TESTS            (2 * MAX_SOCKETS + 6)

/* Fixed socket roles; port samples and lifetime sockets follow. */
#define SOCK_MAP     0
#define SOCK_FILT2   1
#define SOCK_FILT3   2
#define SOCK_HAIRPIN 3

typedef enum { T_BIND, T_MAP2, T_MAP3, T_FILT2, T_FILT3, T_HAIRPIN, T_LIFE } test_kind;
typedef enum { S_PENDING, S_RUNNING, S_OK, S_FAILED, S_SKIPPED } test_state;

typedef struct test {
    test_kind kind;
    test_state state;
    int sock;            /* socket the request leaves from */
    int prereq;          /* index of the test that must succeed first, or -1 */
    int target;          /* T_LIFE: the socket whose binding is checked; T_HAIRPIN: the socket listened on */
    int64_t wait_ms;     /* T_LIFE: idle time after the prerequisite's answer */
    int64_t ended_ms;    /* when it ended (T_BIND: answer time) */
    int error;           /* NK_ERR_STUN(code) when the server answered with an error */
    nk_addr mapped;      /* from the response */
    nk_addr origin;      /* where the response came from */
    nk_addr other;       /* OTHER-ADDRESS */
    nk_stun_txn txn;
} test;

struct nk_nat_probe {
    nk_nat_probe_config cfg;
    size_t nsock;
    size_t nsamples;     /* sockets [0, nsamples) give port samples */
    size_t ntrials;      /* lifetime sockets [nsamples, nsamples + ntrials), sender after them */
    nk_addr locals[MAX_SOCKETS];
    size_t ntests;
    test tests[MAX_TESTS];
    int started;
    int64_t trial_wait_ms[NK_NAT_PROBE_MAX_TRIALS];
};

/* The idle waits tried for the binding lifetime: a rough geometric ladder up to max. */
static size_t lifetime_ladder(int64_t max_ms, int64_t *out)
{
    static const int ladder_s[] = {1, 2, 3, 5, 8, 12, 20, 30, 45, 60, 120, 300};
    size_t n = 0;
    for (size_t i = 0; i < sizeof(ladder_s) / sizeof(ladder_s[0]) && n < NK_NAT_PROBE_MAX_TRIALS; i++)
        if ((int64_t)ladder_s[i] * 1000 <= max_ms)
            out[n++] = (int64_t)ladder_s[i] * 1000;
    if (n == 0 || out[n - 1] < max_ms) {
        if (n == NK_NAT_PROBE_MAX_TRIALS)
            n--;
        out[n++] = max_ms;
    }
    return n;
}

int nk_nat_probe_new(nk_nat_probe **out, const nk_nat_probe_config *cfg)
{
    *out = NULL;
    if (cfg == NULL || cfg->server.family == NK_AF_NONE || cfg->server.port == 0 || cfg->rto_ms < 0 ||
        cfg->rc < 0 || cfg->rm < 0 || cfg->lifetime_max_ms < 0 || cfg->lifetime_max_ms > MAX_LIFETIME_MS ||
        cfg->port_samples < 0 || cfg->port_samples > NK_NAT_PROBE_MAX_SAMPLES ||
        (cfg->port_samples > 0 && cfg->port_samples < 4))
        return NK_ERR_INVAL;
    nk_nat_probe *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NK_ERR_NOMEM;
    p->cfg = *cfg;
    if (p->cfg.rto_ms == 0)
        p->cfg.rto_ms = DEFAULT_RTO_MS;
    if (p->cfg.rc == 0)
        p->cfg.rc = DEFAULT_RC;
    if (p->cfg.rm == 0)
        p->cfg.rm = DEFAULT_RM;
    if (p->cfg.port_samples == 0)
        p->cfg.port_samples = DEFAULT_SAMPLES;
    if (p->cfg.lifetime_max_ms == 0)
        p->cfg.lifetime_max_ms = DEFAULT_LIFETIME_MS;
    p->nsamples = (size_t)p->cfg.port_samples;
    if (p->cfg.lifetime)
        p->ntrials = lifetime_ladder(p->cfg.lifetime_max_ms, p->trial_wait_ms);
    p->nsock = p->nsamples + p->ntrials + (p->ntrials > 0 ? 1 : 0);
    *out = p;
    return 0;
}

void nk_nat_probe_free(nk_nat_probe *p)
{
    free(p);
}

size_t nk_nat_probe_socket_count(const nk_nat_probe *p)
{
    return p->nsock;
}

static int add_test(nk_nat_probe *p, test_kind kind, int sock, int prereq, int target)
{
    test *t = &p->tests[p->ntests];
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->state = S_PENDING;
    t->sock = sock;
    t->prereq = prereq;
    t->target = target;
    return (int)p->ntests++;
}

/* Builds the table: test I on every socket (index = socket), then phase 2. */
static void plan(nk_nat_probe *p)
{
    for (size_t s = 0; s < p->nsock; s++)
        add_test(p, T_BIND, (int)s, -1, -1);
    add_test(p, T_MAP2, SOCK_MAP, SOCK_MAP, -1);
    add_test(p, T_MAP3, SOCK_MAP, SOCK_MAP, -1);
    add_test(p, T_FILT2, SOCK_FILT2, SOCK_FILT2, -1);
    add_test(p, T_FILT3, SOCK_FILT3, SOCK_FILT3, -1);
    add_test(p, T_HAIRPIN, SOCK_HAIRPIN, SOCK_MAP, SOCK_MAP);
    int sender = (int)(p->nsamples + p->ntrials);
    for (size_t i = 0; i < p->ntrials; i++) {
        int target = (int)(p->nsamples + i);
        int k = add_test(p, T_LIFE, sender, target, target);
        p->tests[k].wait_ms = p->trial_wait_ms[i];
    }
}

int nk_nat_probe_start(nk_nat_probe *p, int64_t now_ms, const nk_addr *locals, size_t n)
{
    if (p->started)
        return NK_ERR_STATE;
    if (n != p->nsock || locals == NULL)
        return NK_ERR_INVAL;
    for (size_t i = 0; i < n; i++)
        if (locals[i].family != p->cfg.server.family)
            return NK_ERR_INVAL;
    memcpy(p->locals, locals, n * sizeof(*locals));
    plan(p);
    p->started = 1;
    nk_nat_probe_handle_timeout(p, now_ms);
    return 0;
}

/* ---- starting tests -------------------------------------------------------- */

static int has_other(const nk_nat_probe *p)
{
    return p->tests[SOCK_MAP].state == S_OK && p->tests[SOCK_MAP].other.family != NK_AF_NONE;
}

/* Where the request goes and which CHANGE-REQUEST flags it carries. */
static void destination(const nk_nat_probe *p, const test *t, nk_addr *to, uint32_t *change)
{
    const nk_addr *other = &p->tests[SOCK_MAP].other;
    *to = p->cfg.server;
    *change = 0;
    switch (t->kind) {
    case T_MAP2: /* alternate IP, primary port */
        memcpy(to->ip, other->ip, sizeof(to->ip));
        break;
    case T_MAP3: /* alternate IP and port */
        *to = *other;
        break;
    case T_FILT2:
        *change = NK_STUN_CHANGE_IP | NK_STUN_CHANGE_PORT;
        break;
    case T_FILT3:
        *change = NK_STUN_CHANGE_PORT;
        break;
    case T_HAIRPIN:
        *to = p->tests[t->target].mapped;
        break;
    default:
        break;
    }
}

static int encode_request(nk_nat_probe *p, const test *t, uint8_t *buf, size_t cap)
{
    uint8_t tid[NK_STUN_TID_SIZE];
    nk_addr to;
    uint32_t change;
    nk__random(p->cfg.random, p->cfg.random_ctx, tid, sizeof(tid));
    destination(p, t, &to, &change);
    nk_stun_builder b;
    nk_stun_build_begin(&b, buf, cap, nk_stun_type(NK_STUN_BINDING, NK_STUN_REQUEST), tid);
    if (change != 0)
        nk_stun_build_u32(&b, NK_STUN_ATTR_CHANGE_REQUEST, change);
    if (t->kind == T_LIFE) {
        uint8_t port[4] = {(uint8_t)(p->tests[t->target].mapped.port >> 8),
                           (uint8_t)(p->tests[t->target].mapped.port & 0xff), 0, 0};
        nk_stun_build_attr(&b, NK_STUN_ATTR_RESPONSE_PORT, port, 2);
    }
    if (p->cfg.software != NULL)
        nk_stun_build_string(&b, NK_STUN_ATTR_SOFTWARE, p->cfg.software);
    nk_stun_build_fingerprint(&b);
    return nk_stun_build_end(&b);
}

static void start_test(nk_nat_probe *p, test *t, int64_t now_ms)
{
    uint8_t req[256];
    nk_addr to;
    uint32_t change;
    int len = encode_request(p, t, req, sizeof(req));
    destination(p, t, &to, &change);
    if (len < 0 || nk_stun_txn_start(&t->txn, now_ms, &to, NK_TRANSPORT_UDP, req, (size_t)len, p->cfg.rto_ms,
                                     p->cfg.rc, p->cfg.rm) != 0) {
        t->state = S_SKIPPED;
        t->ended_ms = now_ms;
        return;
    }
    t->state = S_RUNNING;
}

/* Can a pending test start now? 1 yes, 0 not yet, -1 never (skip it). */
static int ready(const nk_nat_probe *p, const test *t, int64_t now_ms)
{
    if (t->prereq < 0)
        return 1;
    const test *pre = &p->tests[t->prereq];
    if (pre->state == S_PENDING || pre->state == S_RUNNING)
        return 0;
    if (pre->state != S_OK)
        return -1;
    switch (t->kind) {
    case T_MAP2:
    case T_MAP3:
        return has_other(p) ? 1 : -1;
    case T_FILT2:
    case T_FILT3:
        /* CHANGE-REQUEST needs an RFC 5780 server: its test I named an OTHER-ADDRESS. */
        return pre->other.family != NK_AF_NONE ? 1 : -1;
    case T_LIFE:
        return now_ms >= pre->ended_ms + t->wait_ms ? 1 : 0;
    default:
        return 1;
    }
}

static void advance(nk_nat_probe *p, int64_t now_ms)
{
    for (size_t i = 0; i < p->ntests; i++) {
        test *t = &p->tests[i];
        if (t->state != S_PENDING)
            continue;
        int r = ready(p, t, now_ms);
        if (r > 0)
            start_test(p, t, now_ms);
        else if (r < 0) {
            t->state = S_SKIPPED;
            t->ended_ms = now_ms;
        }
    }
}

/* ---- the five verbs ------------------------------------------------------- */

void nk_nat_probe_handle_timeout(nk_nat_probe *p, int64_t now_ms)
{
    for (size_t i = 0; i < p->ntests; i++) {
        test *t = &p->tests[i];
        if (t->state != S_RUNNING)
            continue;
        nk_stun_txn_handle_timeout(&t->txn, now_ms);
        if (t->txn.state == NK_STUN_TXN_TIMEOUT) {
            t->state = S_FAILED;
            t->ended_ms = now_ms;
        }
    }
    advance(p, now_ms);
}

static int socket_index(const nk_nat_probe *p, const nk_addr *local)
{
    for (size_t i = 0; i < p->nsock; i++)
        if (nk_addr_equal(&p->locals[i], local))
            return (int)i;
    return -1;
}

/* Our own hairpinned Binding request arriving on the socket it was sent to. */
static int on_request(nk_nat_probe *p, int64_t now_ms, int sock, const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < p->ntests; i++) {
        test *t = &p->tests[i];
        if (t->kind != T_HAIRPIN || t->state != S_RUNNING || t->target != sock ||
            memcmp(d + 8, t->txn.tid, NK_STUN_TID_SIZE) != 0)
            continue;
        t->state = S_OK;
        t->ended_ms = now_ms;
        t->txn.state = NK_STUN_TXN_DONE;
        return 0;
    }
    return NK_ERR_NOT_FOUND;
}

static void on_response(test *t, int64_t now_ms, int sock)
{
    nk_stun_msg m;
    nk_stun_binding_result res;
    t->ended_ms = now_ms;
    t->origin = t->txn.response_from;
    if (nk_stun_decode(&m, t->txn.response, t->txn.response_len, 0) != 0) {
        t->state = S_FAILED;
        return;
    }
    int rc = nk_stun_binding_parse(&m, &res);
    if (rc != 0) {
        t->error = rc;
        t->state = S_FAILED;
        return;
    }
    /* A lifetime answer must arrive on the socket whose binding is tested;
     * on the sender it means the server ignored RESPONSE-PORT. */
    if (t->kind == T_LIFE && sock != t->target) {
        t->error = NK_ERR_UNSUPPORTED;
        t->state = S_FAILED;
        return;
    }
    t->mapped = res.mapped;
    t->other = res.other_address;
    t->state = S_OK;
}

int nk_nat_probe_handle_datagram(nk_nat_probe *p, int64_t now_ms, const nk_addr *local, const nk_addr *from,
                                 const uint8_t *d, size_t n)
{
    if (!p->started || !nk_stun_is_message(d, n))
        return NK_ERR_NOT_FOUND;
    int sock = socket_index(p, local);
    if (sock < 0)
        return NK_ERR_NOT_FOUND;
    int rc = NK_ERR_NOT_FOUND;
    uint16_t type = (uint16_t)((d[0] << 8) | d[1]);
    if (nk_stun_class(type) == NK_STUN_REQUEST) {
        rc = on_request(p, now_ms, sock, d, n);
    } else {
        for (size_t i = 0; i < p->ntests && rc == NK_ERR_NOT_FOUND; i++) {
            test *t = &p->tests[i];
            if (t->state != S_RUNNING || t->kind == T_HAIRPIN)
                continue;
            rc = nk_stun_txn_handle_response(&t->txn, now_ms, from, d, n);
            if (rc == 0)
                on_response(t, now_ms, sock);
            else if (rc != NK_ERR_NOT_FOUND)
                return rc; /* our ID but malformed: drop it, keep waiting */
        }
    }
    if (rc == 0)
        advance(p, now_ms);
    return rc;
}

int nk_nat_probe_poll_transmit(nk_nat_probe *p, int64_t now_ms, nk_transmit *out, uint8_t *buf, size_t cap)
{
    for (size_t i = 0; i < p->ntests; i++) {
        test *t = &p->tests[i];
        if (t->state != S_RUNNING)
            continue;
        int rc = nk_stun_txn_poll_transmit(&t->txn, now_ms, out, buf, cap);
        if (rc == NK_ERR_AGAIN)
            continue;
        if (rc == 0)
            out->from = p->locals[t->sock];
        return rc;
    }
    return NK_ERR_AGAIN;
}

int64_t nk_nat_probe_next_deadline(const nk_nat_probe *p)
{
    int64_t next = NK_DEADLINE_NONE;
    for (size_t i = 0; i < p->ntests; i++) {
        const test *t = &p->tests[i];
        int64_t d = NK_DEADLINE_NONE;
        if (t->state == S_RUNNING)
            d = nk_stun_txn_next_deadline(&t->txn);
        else if (t->state == S_PENDING && t->kind == T_LIFE && p->tests[t->prereq].state == S_OK)
            d = p->tests[t->prereq].ended_ms + t->wait_ms;
        if (d < next)
            next = d;
    }
    return next;
}

/* ---- the report ------------------------------------------------------------ */

static void note(nk_nat_report *r, unsigned bit, const char *text)
{
    size_t used = strlen(r->note);
    r->untested |= bit;
    snprintf(r->note + used, sizeof(r->note) - used, "%s%s", used > 0 ? "; " : "", text);
}

static void report_mapping(const nk_nat_probe *p, nk_nat_report *r)
{
    const test *t1 = &p->tests[SOCK_MAP], *t2 = &p->tests[p->nsock], *t3 = &p->tests[p->nsock + 1];
    if (!r->behind_nat) {
        r->mapping = NK_NAT_ENDPOINT_INDEPENDENT;
        return;
    }
    if (r->other_address.family == NK_AF_NONE) {
        note(r, NK_NAT_TEST_MAPPING, "mapping: the server sent no OTHER-ADDRESS (not an RFC 5780 server)");
        return;
    }
    if (t2->state != S_OK) {
        note(r, NK_NAT_TEST_MAPPING, "mapping: no answer from the server's alternate address");
        return;
    }
    if (nk_addr_equal(&t2->mapped, &t1->mapped))
        r->mapping = NK_NAT_ENDPOINT_INDEPENDENT;
    else if (t3->state != S_OK)
        note(r, NK_NAT_TEST_MAPPING, "mapping: no answer from the server's alternate address and port");
    else if (nk_addr_equal(&t3->mapped, &t2->mapped))
        r->mapping = NK_NAT_ADDRESS_DEPENDENT;
    else
        r->mapping = NK_NAT_ADDRESS_AND_PORT_DEPENDENT;
}

/* Did the answer to a CHANGE-REQUEST really come from the changed address? */
static int honoured(const nk_nat_probe *p, const test *t, int change_ip)
{
    const nk_addr *srv = &p->cfg.server;
    if (t->origin.port == srv->port)
        return 0;
    return change_ip ? !nk_addr_equal_ip(&t->origin, srv) : nk_addr_equal_ip(&t->origin, srv);
}

static void report_filtering(const nk_nat_probe *p, nk_nat_report *r)
{
    const test *f2 = &p->tests[p->nsock + 2], *f3 = &p->tests[p->nsock + 3];
    if (r->other_address.family == NK_AF_NONE) {
        note(r, NK_NAT_TEST_FILTERING, "filtering: the server does not support CHANGE-REQUEST (no OTHER-ADDRESS)");
        return;
    }
    if (f2->state == S_SKIPPED || f3->state == S_SKIPPED) {
        note(r, NK_NAT_TEST_FILTERING, "filtering: test I failed on a filtering socket");
        return;
    }
    if ((f2->state == S_OK && !honoured(p, f2, 1)) || (f3->state == S_OK && !honoured(p, f3, 0))) {
        note(r, NK_NAT_TEST_FILTERING, "filtering: the server answered CHANGE-REQUEST from the wrong address");
        return;
    }
    if (f2->error != 0 || f3->error != 0) {
        note(r, NK_NAT_TEST_FILTERING, "filtering: the server refused CHANGE-REQUEST");
        return;
    }
    if (f2->state == S_OK)
        r->filtering = NK_NAT_ENDPOINT_INDEPENDENT;
    else if (f3->state == S_OK)
        r->filtering = NK_NAT_ADDRESS_DEPENDENT;
    else
        r->filtering = NK_NAT_ADDRESS_AND_PORT_DEPENDENT;
}

static void report_hairpin(const nk_nat_probe *p, nk_nat_report *r)
{
    const test *h = &p->tests[p->nsock + 4];
    r->hairpinning = -1;
    if (!r->behind_nat)
        return; /* no NAT: nothing to hairpin */
    if (h->state == S_OK)
        r->hairpinning = 1;
    else if (h->state == S_FAILED)
        r->hairpinning = 0;
    else
        note(r, NK_NAT_TEST_HAIRPIN, "hairpinning: not tested");
}

static void report_ports(const nk_nat_probe *p, nk_nat_report *r)
{
    size_t n = 0, same = 0;
    for (size_t s = 0; s < p->nsamples; s++) {
        const test *t = &p->tests[s];
        if (t->state != S_OK)
            continue;
        r->sample_local[n] = p->locals[s].port;
        r->sample_public[n] = t->mapped.port;
        same += r->sample_local[n] == r->sample_public[n];
        n++;
    }
    r->nsamples = n;
    if (n < 3) {
        note(r, NK_NAT_TEST_PORTS, "port allocation: fewer than 3 mappings");
        return;
    }
    if (same == n) {
        r->port_allocation = NK_PORTS_PRESERVING;
        return;
    }
    int delta = (int)r->sample_public[1] - (int)r->sample_public[0];
    int sequential = delta != 0 && delta >= -16 && delta <= 16;
    for (size_t i = 2; i < n && sequential; i++)
        sequential = (int)r->sample_public[i] - (int)r->sample_public[i - 1] == delta;
    r->port_allocation = sequential ? NK_PORTS_SEQUENTIAL : NK_PORTS_RANDOM;
    r->port_delta = sequential ? delta : 0;
}

static void report_lifetime(const nk_nat_probe *p, nk_nat_report *r)
{
    r->lifetime_min_s = -1;
    r->lifetime_max_s = -1;
    if (p->ntrials == 0)
        return;
    int64_t alive = -1, dead = -1, refused = 0;
    for (size_t i = p->nsock + 5; i < p->ntests; i++) {
        const test *t = &p->tests[i];
        if (t->error != 0)
            refused = 1;
        else if (t->state == S_OK && t->wait_ms > alive)
            alive = t->wait_ms;
        else if (t->state == S_FAILED && (dead < 0 || t->wait_ms < dead))
            dead = t->wait_ms;
    }
    if (refused) {
        note(r, NK_NAT_TEST_LIFETIME, "lifetime: the server does not support RESPONSE-PORT");
        return;
    }
    /* A survivor after a failure means loss, not expiry: trust the longest survivor. */
    if (dead >= 0 && alive > dead)
        dead = -1;
    if (alive < 0 && dead < 0) {
        note(r, NK_NAT_TEST_LIFETIME, "lifetime: no trial could run");
        return;
    }
    r->lifetime_min_s = alive < 0 ? 0 : (int)(alive / 1000);
    r->lifetime_max_s = dead < 0 ? -1 : (int)(dead / 1000);
}

static nk_nat_classic classic_label(const nk_nat_report *r)
{
    if (!r->behind_nat)
        return NK_CLASSIC_OPEN;
    if (r->mapping == NK_NAT_UNKNOWN)
        return NK_CLASSIC_UNKNOWN;
    if (r->mapping != NK_NAT_ENDPOINT_INDEPENDENT)
        return NK_CLASSIC_SYMMETRIC;
    switch (r->filtering) {
    case NK_NAT_ENDPOINT_INDEPENDENT: return NK_CLASSIC_FULL_CONE;
    case NK_NAT_ADDRESS_DEPENDENT: return NK_CLASSIC_RESTRICTED_CONE;
    case NK_NAT_ADDRESS_AND_PORT_DEPENDENT: return NK_CLASSIC_PORT_RESTRICTED_CONE;
    default: return NK_CLASSIC_UNKNOWN;
    }
}

/* Test I on the mapping socket gives the public address; the other tests build on it. When it got
 * no answer the NAT is UDP-blocked, unless another socket did get one (then nothing is known). */
static int report_binding(const nk_nat_probe *p, nk_nat_report *r)
{
    const test *t1 = &p->tests[SOCK_MAP];
    int others_answered = 0;
    for (size_t s = 0; s < p->nsock; s++) {
        if (p->tests[s].error != 0 && r->status == 0)
            r->status = p->tests[s].error;
        others_answered |= s != SOCK_MAP && p->tests[s].state == S_OK;
    }
    r->local = p->locals[SOCK_MAP];
    if (t1->state != S_OK) {
        if (r->status == 0)
            r->status = NK_ERR_TIMEOUT;
        if (r->status == NK_ERR_TIMEOUT && !others_answered)
            r->classic = NK_CLASSIC_UDP_BLOCKED;
        r->hairpinning = -1;
        r->lifetime_min_s = r->lifetime_max_s = -1;
        note(r, NK_NAT_TEST_MAPPING | NK_NAT_TEST_FILTERING | NK_NAT_TEST_HAIRPIN | NK_NAT_TEST_PORTS |
                    (p->ntrials ? NK_NAT_TEST_LIFETIME : 0),
             r->status == NK_ERR_TIMEOUT ? "no answer from the server" : "the server answered with an error");
        return -1;
    }
    r->status = 0;
    r->public_addr = t1->mapped;
    r->other_address = t1->other;
    r->behind_nat = !nk_addr_equal(&t1->mapped, &p->locals[SOCK_MAP]);
    return 0;
}

int nk_nat_probe_result(const nk_nat_probe *p, nk_nat_report *r)
{
    if (!p->started)
        return 0;
    for (size_t i = 0; i < p->ntests; i++)
        if (p->tests[i].state == S_PENDING || p->tests[i].state == S_RUNNING)
            return 0;
    memset(r, 0, sizeof(*r));
    if (report_binding(p, r) != 0)
        return 1;
    report_mapping(p, r);
    report_filtering(p, r);
    report_hairpin(p, r);
    report_ports(p, r);
    report_lifetime(p, r);
    r->classic = classic_label(r);
    return 1;
}

const char *nk_nat_behaviour_name(nk_nat_behaviour b)
{
    switch (b) {
    case NK_NAT_ENDPOINT_INDEPENDENT: return "endpoint-independent";
    case NK_NAT_ADDRESS_DEPENDENT: return "address-dependent";
    case NK_NAT_ADDRESS_AND_PORT_DEPENDENT: return "address-and-port-dependent";
    default: return NULL;
    }
}

const char *nk_port_allocation_name(nk_port_allocation a)
{
    switch (a) {
    case NK_PORTS_PRESERVING: return "preserving";
    case NK_PORTS_SEQUENTIAL: return "sequential";
    case NK_PORTS_RANDOM: return "random";
    default: return NULL;
    }
}

const char *nk_nat_classic_name(nk_nat_classic c)
{
    switch (c) {
    case NK_CLASSIC_OPEN: return "open";
    case NK_CLASSIC_FULL_CONE: return "full-cone";
    case NK_CLASSIC_RESTRICTED_CONE: return "restricted-cone";
    case NK_CLASSIC_PORT_RESTRICTED_CONE: return "port-restricted-cone";
    case NK_CLASSIC_SYMMETRIC: return "symmetric";
    case NK_CLASSIC_UDP_BLOCKED: return "udp-blocked";
    default: return NULL;
    }
}

/*
 * libFuzzer target for the connectivity agent: untrusted datagrams and hub
 * signals fed to an agent in each state, interleaved with time passing.
 *
 * Input: state u8 (0: initiator that heard nothing, 1: responder waiting for
 * the request, 2: both connected on a direct path, 3: as 2 with TURN
 * configured, 4: as 2 with a shared TURN allocation the harness owns), then
 * records of op u8 | len u8 | bytes[len]:
 *   op % 5 == 0: a datagram to the target agent from one of four addresses
 *                (state 4, fourth address: relayed data through the shared allocation)
 *   op % 5 == 1: a hub message (type from the first byte) to the target
 *   op % 5 == 2: time passes (bytes[0] * 8 ms), timers run, the two agents talk
 *   op % 5 == 3: the last genuine frame the peer sent, XORed with bytes, replayed
 *   op % 5 == 4: the last genuine signal the peer sent, XORed with bytes, replayed
 * (op / 5) % 2 picks the target agent. Afterwards time runs on for 40 s: every
 * poll must end, deadlines must move forward, and nothing may crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "natkit/agent.h"
#include "natkit/hub.h"

#define MAXQ 256

typedef struct msg {
    int to;         /* agent index */
    int hub;        /* 1: hub message */
    uint8_t type;
    nk_addr from;
    size_t len;
    uint8_t data[1600];
} msg;

typedef struct harness {
    nk_agent *ag[2];
    nk_turn_client *shared;
    nk_identity id[2];
    nk_addr addr[2];
    uint8_t rnd[2];
    int64_t now;
    size_t nq;
    msg q[MAXQ];
    size_t frame_len[2], signal_len[2]; /* last genuine output of each agent */
    uint8_t frame[2][1600], signal[2][NK_HUB_MAX_PAYLOAD];
    uint8_t signal_type[2];
} harness;

static void counter_random(void *ctx, uint8_t *buf, size_t len)
{
    uint8_t *next = ctx;
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(*next += 29);
}

static void push(harness *h, int to, int hub, uint8_t type, const nk_addr *from, const uint8_t *p, size_t n)
{
    if (h->nq == MAXQ || n > sizeof(h->q[0].data))
        return;
    msg *m = &h->q[h->nq++];
    m->to = to;
    m->hub = hub;
    m->type = type;
    m->from = from != NULL ? *from : (nk_addr){0};
    m->len = n;
    memcpy(m->data, p, n);
}

static void drain(harness *h, int i)
{
    uint8_t buf[NK_HUB_MAX_PAYLOAD];
    nk_transmit tx;
    nk_agent_event ev;
    uint8_t type;
    size_t len;
    for (int budget = 0;; budget++) {
        if (budget > 10000)
            abort(); /* an agent that never stops producing */
        int moved = 0;
        if (nk_agent_poll_transmit(h->ag[i], h->now, &tx, buf, sizeof(buf)) == 0) {
            if (tx.len > sizeof(buf))
                abort();
            if (nk_addr_equal(&tx.to, &h->addr[1 - i])) {
                push(h, 1 - i, 0, 0, &h->addr[i], buf, tx.len);
                memcpy(h->frame[i], buf, tx.len);
                h->frame_len[i] = tx.len;
            }
            moved = 1;
        }
        if (nk_agent_poll_signal(h->ag[i], &type, buf, sizeof(buf), &len) == 0) {
            push(h, 1 - i, 1, type, NULL, buf, len);
            memcpy(h->signal[i], buf, len);
            h->signal_len[i] = len;
            h->signal_type[i] = type;
            moved = 1;
        }
        if (nk_agent_poll_event(h->ag[i], &ev) == 0) {
            if (ev.type == NK_AGENT_EV_DATA && ev.len > NK_AGENT_MAX_DATA)
                abort();
            moved = 1;
        }
        if (!moved)
            return;
    }
}

static void deliver_queue(harness *h)
{
    for (int rounds = 0; rounds < 64 && h->nq > 0; rounds++) {
        size_t n = h->nq;
        msg *batch = malloc(n * sizeof(*batch));
        if (batch == NULL)
            return;
        memcpy(batch, h->q, n * sizeof(*batch));
        h->nq = 0;
        for (size_t k = 0; k < n; k++) {
            msg *m = &batch[k];
            if (m->hub)
                nk_agent_handle_signal(h->ag[m->to], h->now, m->type, m->data, m->len);
            else
                nk_agent_handle_datagram(h->ag[m->to], h->now, &m->from, m->data, m->len);
            drain(h, m->to);
        }
        free(batch);
    }
}

static void advance(harness *h, int64_t ms)
{
    int64_t until = h->now + ms;
    for (int steps = 0; steps < 100000; steps++) {
        deliver_queue(h);
        int64_t d = nk_agent_next_deadline(h->ag[0]);
        int64_t d1 = nk_agent_next_deadline(h->ag[1]);
        if (d1 < d)
            d = d1;
        if (d > until)
            break;
        if (d > h->now)
            h->now = d;
        for (int i = 0; i < 2; i++) {
            if (nk_agent_next_deadline(h->ag[i]) <= h->now) {
                nk_agent_handle_timeout(h->ag[i], h->now);
                drain(h, i);
                if (nk_agent_next_deadline(h->ag[i]) <= h->now)
                    abort(); /* a timer that does not move on */
            }
        }
    }
    h->now = until;
}

static int setup(harness *h, uint8_t state)
{
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        ready = 1;
    }
    memset(h, 0, sizeof(*h));
    h->now = 1000;
    for (int i = 0; i < 2; i++) {
        uint8_t seed[32];
        memset(seed, i + 1, sizeof(seed));
        crypto_sign_seed_keypair(h->id[i].id.key, h->id[i].secret, seed);
        nk_addr_parse(&h->addr[i], i == 0 ? "192.0.2.10:5000" : "192.0.2.20:5000");
        h->rnd[i] = (uint8_t)(i * 100 + 1);
    }
    nk_addr stun, turn;
    nk_addr_parse(&stun, "198.51.100.1:3478");
    nk_addr_parse(&turn, "198.51.100.2:3478");
    nk_turn_client_config tc = {.server = turn, .username = "u", .password = "p",
                                .random = counter_random, .random_ctx = &h->rnd[0]};
    if (state == 4 && (nk_turn_client_new(&h->shared, &tc) != 0 || nk_turn_client_allocate(h->shared, h->now) != 0))
        abort();
    for (int i = 0; i < 2; i++) {
        nk_agent_config cfg = {.identity = &h->id[i], .peer = h->id[1 - i].id, .controlling = i == 0,
                               .host = &h->addr[i], .nhost = 1, .stun = &stun, .nstun = 1,
                               .turn = state == 3 ? &tc : NULL, .turn_shared = h->shared, .keepalive_ms = 2000,
                               .random = counter_random, .random_ctx = &h->rnd[i]};
        if (nk_agent_new(&h->ag[i], &cfg, h->now) != 0)
            abort();
        nk_agent_set_hub_rtt(h->ag[i], 30);
    }
    if (state == 0 || state >= 2)
        nk_agent_start(h->ag[0], h->now);
    if (state >= 1)
        nk_agent_start(h->ag[1], h->now);
    drain(h, 0);
    drain(h, 1);
    if (state < 2)
        h->nq = 0; /* the target heard nothing from its peer */
    else
        advance(h, 500);
    nk_path_info p;
    nk_agent_selected(h->ag[0], &p);
    if (state >= 2 && p.kind != NK_PATH_DIRECT)
        abort(); /* the harness must reach the connected state it promises */
    return 0;
}

static void replay(harness *h, int target, const uint8_t *x, size_t n, int signal)
{
    int src = 1 - target;
    uint8_t buf[NK_HUB_MAX_PAYLOAD];
    size_t len = signal ? h->signal_len[src] : h->frame_len[src];
    if (len == 0)
        return;
    memcpy(buf, signal ? h->signal[src] : h->frame[src], len);
    for (size_t i = 0; i < n && i < len; i++)
        buf[i] ^= x[i];
    if (signal)
        nk_agent_handle_signal(h->ag[target], h->now, h->signal_type[src], buf, len);
    else
        nk_agent_handle_datagram(h->ag[target], h->now, &h->addr[src], buf, len);
}

static void run_record(harness *h, uint8_t op, const uint8_t *p, size_t n)
{
    static const char *const from_text[] = {"192.0.2.10:5000", "192.0.2.20:5000", "198.51.100.1:3478",
                                            "203.0.113.9:7000"};
    int target = (op / 5) % 2;
    nk_addr from;
    switch (op % 5) {
    case 0:
        nk_addr_parse(&from, from_text[(op / 10) % 4]);
        if (h->shared != NULL && (op / 10) % 4 == 3)
            nk_agent_handle_relayed(h->ag[target], h->now, &from, p, n);
        else
            nk_agent_handle_datagram(h->ag[target], h->now, &from, p, n);
        break;
    case 1:
        if (n > 0)
            nk_agent_handle_signal(h->ag[target], h->now, (uint8_t)(NK_HUB_T_CONNECT + p[0] % 4), p + 1, n - 1);
        break;
    case 2: advance(h, n > 0 ? (int64_t)p[0] * 8 : 1); break;
    case 3: replay(h, target, p, n, 0); break;
    default: replay(h, target, p, n, 1); break;
    }
    drain(h, target);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    harness *h = malloc(sizeof(*h));
    if (h == NULL || size < 1) {
        free(h);
        return 0;
    }
    setup(h, data[0] % 5);
    size_t off = 1;
    while (off + 2 <= size) {
        uint8_t op = data[off], len = data[off + 1];
        off += 2;
        size_t n = len <= size - off ? len : size - off;
        run_record(h, op, data + off, n);
        off += n;
    }
    advance(h, 40000);
    nk_agent_free(h->ag[0]);
    nk_agent_free(h->ag[1]);
    nk_turn_client_free(h->shared);
    free(h);
    return 0;
}

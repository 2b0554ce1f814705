/*
 * Fuzz target: the secure session. Two sessions are brought to a state chosen
 * by the first input byte (fresh, handshake in flight, response pending,
 * connected, rekey in flight); the rest of the input is a script of
 * operations: raw datagrams, real captured packets delivered, replayed or
 * mutated (so the fuzzer gets past the AEAD), time jumps, sends, probes,
 * rekeys, path changes and closes. Nothing may crash, leak or stall, and
 * every delivered message must be one that was sent, in order.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NCAP 32

typedef struct captured {
    int from;
    nk_path_id path;
    size_t len;
    uint8_t data[1500];
} captured;

typedef struct world {
    nk_session *s[2];
    int64_t now;
    uint64_t rng;
    captured cap[NCAP];
    unsigned ncap, next_cap;
    uint32_t sent[2], got[2];
} world;

typedef struct input {
    const uint8_t *p, *end;
} input;

static uint8_t in_u8(input *in)
{
    return in->p < in->end ? *in->p++ : 0;
}

static uint16_t in_u16(input *in)
{
    return (uint16_t)(in_u8(in) << 8 | in_u8(in));
}

static void fill(void *ctx, uint8_t *buf, size_t len)
{
    uint64_t *s = ctx;
    for (size_t i = 0; i < len; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (uint8_t)(*s >> 56);
    }
}

static void make_identity(nk_identity *id, uint8_t seed_byte)
{
    uint8_t seed[32];
    memset(seed, seed_byte, sizeof(seed));
    crypto_sign_seed_keypair(id->id.key, id->secret, seed);
}

/* Drains transmits into the capture ring; with deliver, hands them to the other side too. */
static void drain(world *w, int deliver)
{
    uint8_t buf[1500];
    nk_session_transmit tx;
    for (int round = 0; round < 8; round++) {
        int any = 0;
        for (int i = 0; i < 2; i++) {
            int guard = 0;
            while (nk_session_poll_transmit(w->s[i], w->now, &tx, buf, sizeof(buf)) == 0) {
                if (guard++ > 200)
                    abort(); /* a window holds 32 fragments: more means poll_transmit never drains */
                captured *c = &w->cap[w->next_cap];
                w->next_cap = (w->next_cap + 1) % NCAP;
                if (w->ncap < NCAP)
                    w->ncap++;
                c->from = i;
                c->path = tx.path;
                c->len = tx.len;
                memcpy(c->data, buf, tx.len);
                if (deliver)
                    nk_session_handle_datagram(w->s[1 - i], w->now, tx.path, buf, tx.len);
                any = 1;
            }
        }
        if (!any || !deliver)
            break;
    }
}

/* Message k of a side: every 7th is large (fragmented), the rest small; all bytes (k & 0xff). */
static size_t msg_len(uint32_t k)
{
    return k % 7 == 6 ? 1000 + (k * 97) % 3000 : k % 251 + 1;
}

static void consume(world *w)
{
    static uint8_t buf[4096];
    nk_session_event ev;
    for (int i = 0; i < 2; i++) {
        int n;
        while ((n = nk_session_recv(w->s[i], buf, sizeof(buf))) >= 0) {
            uint32_t k = w->got[i]++;
            if ((size_t)n != msg_len(k) || buf[0] != (uint8_t)k || buf[n - 1] != (uint8_t)k || k >= w->sent[1 - i])
                abort();
        }
        while (nk_session_poll_event(w->s[i], &ev) == 0)
            ;
    }
}

static void timers(world *w)
{
    for (int i = 0; i < 2; i++)
        if (nk_session_next_deadline(w->s[i]) <= w->now)
            nk_session_handle_timeout(w->s[i], w->now);
}

static void send_msg(world *w, int i)
{
    static uint8_t buf[4096];
    uint32_t k = w->sent[i];
    size_t len = msg_len(k);
    memset(buf, (uint8_t)k, len);
    if (nk_session_send(w->s[i], buf, len) == 0)
        w->sent[i]++;
}

static void reach_state(world *w, int state)
{
    if (state == 0)
        return;
    nk_session_connect(w->s[0], 1, w->now);
    drain(w, state >= 3);
    if (state == 2 && w->ncap > 0)
        nk_session_handle_datagram(w->s[1], w->now, 1, w->cap[0].data, w->cap[0].len);
    if (state == 2)
        drain(w, 0);
    if (state >= 3) {
        for (int i = 0; i < 4; i++) {
            w->now += 10;
            timers(w);
            drain(w, 1);
        }
        send_msg(w, 0);
        send_msg(w, 1);
        drain(w, 1);
    }
    if (state == 4) {
        nk_session_rekey(w->s[0], w->now);
        drain(w, 0);
    }
}

static void op_special(world *w, input *in)
{
    uint8_t which = in_u8(in), arg = in_u8(in);
    nk_session *s = w->s[which & 1];
    switch ((which >> 1) % 6) {
    case 0:
        nk_session_probe_path(s, arg, w->now, NULL);
        break;
    case 1:
        nk_session_rekey(s, w->now);
        break;
    case 2:
        nk_session_keepalive(s);
        break;
    case 3:
        nk_session_set_path(s, arg);
        break;
    case 4:
        if (arg == 0xff)
            nk_session_close(s, w->now);
        break;
    default:
        for (int i = 0; i < arg % 40; i++)
            send_msg(w, which & 1);
        break;
    }
}

static void step(world *w, input *in)
{
    uint8_t op = in_u8(in);
    switch (op % 6) {
    case 0: { /* a raw datagram */
        uint8_t target = in_u8(in);
        size_t len = in_u16(in) % 1500;
        if ((size_t)(in->end - in->p) < len)
            len = (size_t)(in->end - in->p);
        nk_session_handle_datagram(w->s[target & 1], w->now, target >> 1, in->p, len);
        in->p += len;
        break;
    }
    case 1:   /* a captured packet, mutated */
    case 2: { /* a captured packet as is (delivery, duplicate or replay) on some path */
        if (w->ncap == 0)
            break;
        captured c = w->cap[in_u8(in) % w->ncap];
        nk_path_id path = in_u8(in) & 3 ? c.path : in_u8(in);
        if (op % 6 == 1 && c.len > 0) {
            uint16_t pos = in_u16(in);
            c.data[pos % c.len] ^= in_u8(in) | 1;
            if (pos & 0x8000)
                c.len = pos % c.len;
        }
        nk_session_handle_datagram(w->s[1 - c.from], w->now, path, c.data, c.len);
        break;
    }
    case 3:
        w->now += (int64_t)in_u8(in) * 37;
        timers(w);
        break;
    case 4:
        send_msg(w, in_u8(in) & 1);
        break;
    default:
        op_special(w, in);
        break;
    }
    drain(w, 0);
    consume(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static nk_identity ids[2];
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        make_identity(&ids[0], 1);
        make_identity(&ids[1], 2);
        ready = 1;
    }
    input in = {data, data + size};
    world *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return 0;
    w->now = 1000;
    w->rng = 42;
    nk_session_config c;
    memset(&c, 0, sizeof(c));
    c.random = fill;
    c.random_ctx = &w->rng;
    c.window = 32;
    c.rekey_after_packets = 50;
    c.roam = 1;
    c.identity = &ids[0];
    c.peer = &ids[1].id;
    c.initiator = 1;
    if (nk_session_new(&w->s[0], &c, w->now) != 0)
        abort();
    c.identity = &ids[1];
    c.peer = NULL;
    c.initiator = 0;
    if (nk_session_new(&w->s[1], &c, w->now) != 0)
        abort();
    reach_state(w, in_u8(&in) % 5);
    for (int steps = 0; steps < 2000 && in.p < in.end; steps++)
        step(w, &in);
    /* whatever happened, time moving on never loops: each deadline is in the future after a timeout */
    for (int i = 0; i < 50; i++) {
        int64_t d0 = nk_session_next_deadline(w->s[0]), d1 = nk_session_next_deadline(w->s[1]);
        int64_t d = d0 < d1 ? d0 : d1;
        if (d == INT64_MAX)
            break;
        if (d > w->now)
            w->now = d;
        timers(w);
        drain(w, 1);
        consume(w);
        if (nk_session_next_deadline(w->s[0]) <= w->now || nk_session_next_deadline(w->s[1]) <= w->now)
            abort(); /* a timer that does not move is a busy loop for the driver */
    }
    nk_session_free(w->s[0]);
    nk_session_free(w->s[1]);
    free(w);
    return 0;
}

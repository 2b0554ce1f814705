/*
 * Fuzz target: the TURN client fed hostile server input in every state.
 *
 * Input: one byte of setup, then records. Setup: bits 0-1 pick the state the
 * client is driven into against the in-memory fake server first (0 Allocate
 * sent, 1 authenticated Allocate sent, 2 allocated with a permission and a
 * channel pending, 3 allocated with both installed); bit 2 picks a stream
 * transport (TCP framing), bit 3 SHA-256 credentials. Each record is
 * [kind][len_hi][len_lo][len bytes]:
 *   kind 0: raw bytes from the server (STUN-looking ones get the transaction
 *           ID of a request the client really sent, so they reach the
 *           response handling);
 *   kind 1: a response the harness signs with the right key: 2 bytes of
 *           type, 1 byte picking a sent transaction, then (type, len, value)
 *           attribute triples;
 *   kind 2: time passes (2 bytes, units of 50 ms) and timers run;
 *   kind 3: an API call (permit, bind, send, deallocate) for a fuzzed peer.
 * Nothing may crash, leak, hang or read out of bounds; events are read fully.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "turn_fake.h" /* tests/sim: the in-memory TURN server */
#include "natkit/turn_client.h"

#define MAX_TIDS 16

typedef struct harness {
    nk_turn_client *c;
    fake_turn s;
    nk_addr server;
    int stream;
    int64_t now;
    uint8_t rnd;
    uint8_t tids[MAX_TIDS][NK_STUN_TID_SIZE];
    size_t ntids;
    uint8_t key[32];
    size_t key_len;
    int sha256;
} harness;

static void counter_random(void *ctx, uint8_t *buf, size_t len)
{
    uint8_t *next = ctx;
    for (size_t i = 0; i < len; i++)
        buf[i] = (*next)++;
}

static void drain_events(harness *h)
{
    nk_turn_event ev;
    volatile uint8_t sink = 0;
    while (nk_turn_client_poll_event(h->c, &ev) == 0) {
        if (ev.type == NK_TURN_EV_DATA)
            for (size_t i = 0; i < ev.len; i++)
                sink ^= ev.data[i]; /* ASan checks the payload really is readable */
        sink ^= (uint8_t)strlen(ev.reason);
    }
    (void)sink;
}

static void remember_tid(harness *h, const uint8_t *msg, size_t len)
{
    if (len < NK_STUN_HEADER_SIZE || nk_turn_is_channel_data(msg, len))
        return;
    memcpy(h->tids[h->ntids % MAX_TIDS], msg + 8, NK_STUN_TID_SIZE);
    h->ntids++;
}

static void feed(harness *h, const uint8_t *p, size_t n)
{
    nk_turn_client_handle_input(h->c, h->now, &h->server, p, n);
    drain_events(h);
}

/* Client -> fake server, answers back; `answer` 0 records the requests without answering. */
static void pump(harness *h, int answer)
{
    uint8_t buf[2048], resp[2048];
    nk_transmit tx;
    for (int guard = 0; guard < 64 && nk_turn_client_poll_transmit(h->c, h->now, &tx, buf, sizeof(buf)) == 0;
         guard++) {
        remember_tid(h, buf, tx.len);
        if (!answer)
            continue;
        size_t n = fake_handle(&h->s, h->now, buf, tx.len, h->stream, resp, sizeof(resp));
        if (n > 0)
            feed(h, resp, n);
    }
}

static void setup(harness *h, uint8_t flags)
{
    memset(h, 0, sizeof(*h));
    fake_init(&h->s);
    h->stream = (flags & 4) != 0;
    h->sha256 = (flags & 8) != 0;
    h->s.sha256 = h->sha256;
    fake_set_nonce(&h->s, "fz");
    nk_addr_parse(&h->server, "203.0.113.1:3478");
    h->now = 1000;
    nk_turn_client_config cfg = {
        .server = h->server,
        .transport = h->stream ? NK_TRANSPORT_TCP : NK_TRANSPORT_UDP,
        .username = "alice",
        .password = "s3cret",
        .random = counter_random,
        .random_ctx = &h->rnd,
    };
    if (nk_turn_client_new(&h->c, &cfg) != 0)
        abort();
    nk_stun_long_term_key(h->sha256 ? NK_STUN_PWALG_SHA256 : NK_STUN_PWALG_MD5, "alice", "natkit.test", "s3cret",
                          h->key, &h->key_len);
    int state = flags & 3;
    nk_turn_client_allocate(h->c, h->now);
    nk_addr peer;
    nk_addr_parse(&peer, "192.0.2.5:5000");
    nk_turn_client_permit(h->c, h->now, &peer);
    nk_turn_client_bind_channel(h->c, h->now, &peer, NULL);
    if (state == 0) {
        pump(h, 0);
        return;
    }
    if (state == 1) { /* answer the first Allocate with a 401, keep the second pending */
        uint8_t buf[2048], resp[2048];
        nk_transmit tx;
        if (nk_turn_client_poll_transmit(h->c, h->now, &tx, buf, sizeof(buf)) == 0) {
            size_t n = fake_handle(&h->s, h->now, buf, tx.len, h->stream, resp, sizeof(resp));
            feed(h, resp, n);
        }
        pump(h, 0);
        return;
    }
    /* Allocate answered (two rounds); permission and channel pending (2) or installed (3). */
    for (int round = 0; round < 2; round++) {
        uint8_t buf[2048], resp[2048];
        nk_transmit tx;
        if (nk_turn_client_poll_transmit(h->c, h->now, &tx, buf, sizeof(buf)) == 0) {
            size_t n = fake_handle(&h->s, h->now, buf, tx.len, h->stream, resp, sizeof(resp));
            feed(h, resp, n);
        }
    }
    pump(h, state == 3);
}

/* kind 1: a signed response built from fuzz bytes. */
static void signed_response(harness *h, const uint8_t *p, size_t n)
{
    if (n < 3 || h->ntids == 0)
        return;
    uint16_t type = (uint16_t)((p[0] << 8 | p[1]) & 0x3eef) | NK_STUN_SUCCESS;
    if (p[0] & 0x80)
        type |= NK_STUN_ERROR;
    size_t pick = p[2] % (h->ntids < MAX_TIDS ? h->ntids : MAX_TIDS);
    uint8_t msg[1500];
    nk_stun_builder b;
    nk_stun_build_begin(&b, msg, sizeof(msg), type, h->tids[pick]);
    size_t off = 3;
    while (off + 3 <= n) {
        uint16_t atype = (uint16_t)(p[off] << 8 | p[off + 1]);
        size_t alen = p[off + 2];
        off += 3;
        if (alen > n - off)
            alen = n - off;
        if (atype != NK_STUN_ATTR_MESSAGE_INTEGRITY && atype != NK_STUN_ATTR_MESSAGE_INTEGRITY_SHA256 &&
            atype != NK_STUN_ATTR_FINGERPRINT)
            nk_stun_build_attr(&b, atype, p + off, alen);
        off += alen;
    }
    if (h->sha256)
        nk_stun_build_integrity_sha256(&b, h->key, h->key_len);
    else
        nk_stun_build_integrity(&b, h->key, h->key_len);
    int len = nk_stun_build_end(&b);
    if (len > 0)
        feed(h, msg, (size_t)len);
}

/* kind 0: raw bytes, with a real transaction ID when they look like STUN. */
static void raw_input(harness *h, const uint8_t *p, size_t n)
{
    uint8_t *copy = malloc(n > 0 ? n : 1);
    if (copy == NULL)
        return;
    memcpy(copy, p, n);
    if (n >= NK_STUN_HEADER_SIZE && (copy[0] & 0xC0) == 0 && h->ntids > 0)
        memcpy(copy + 8, h->tids[copy[8] % (h->ntids < MAX_TIDS ? h->ntids : MAX_TIDS)], NK_STUN_TID_SIZE);
    feed(h, copy, n);
    free(copy);
}

static void api_call(harness *h, const uint8_t *p, size_t n)
{
    if (n < 7)
        return;
    nk_addr peer = {.family = NK_AF_INET, .port = (uint16_t)(p[5] << 8 | p[6])};
    memcpy(peer.ip, p + 1, 4);
    uint8_t buf[2048];
    nk_transmit tx;
    switch (p[0] % 4) {
    case 0: nk_turn_client_permit(h->c, h->now, &peer); break;
    case 1: nk_turn_client_bind_channel(h->c, h->now, &peer, NULL); break;
    case 2: nk_turn_client_send(h->c, &peer, p + 7, n - 7, &tx, buf, sizeof(buf)); break;
    default: nk_turn_client_deallocate(h->c, h->now); break;
    }
    pump(h, 0);
}

static void time_passes(harness *h, const uint8_t *p, size_t n)
{
    int64_t step = n >= 2 ? (int64_t)(p[0] << 8 | p[1]) * 50 : 1000;
    int64_t until = h->now + step;
    for (int guard = 0; guard < 256; guard++) {
        int64_t d = nk_turn_client_next_deadline(h->c);
        if (d > until)
            break;
        h->now = d > h->now ? d : h->now;
        nk_turn_client_handle_timeout(h->c, h->now);
        drain_events(h);
        pump(h, 0);
    }
    h->now = until;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static harness h;
    setup(&h, data[0]);
    size_t off = 1;
    while (off + 3 <= size) {
        uint8_t kind = data[off];
        size_t len = (size_t)data[off + 1] << 8 | data[off + 2];
        off += 3;
        if (len > size - off)
            len = size - off;
        const uint8_t *p = data + off;
        off += len;
        switch (kind % 4) {
        case 0: raw_input(&h, p, len); break;
        case 1: signed_response(&h, p, len); break;
        case 2: time_passes(&h, p, len); break;
        default: api_call(&h, p, len); break;
        }
    }
    nk_turn_client_free(h.c);
    return 0;
}

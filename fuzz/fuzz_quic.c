/*
 * Fuzz target: the QUIC core as a server. The input is a script of datagrams
 * (u16 big-endian length, then the bytes) fed to a fresh server nk_quic that
 * accepts any client; between datagrams time moves by the next input byte's
 * worth of milliseconds and due timers fire. Everything the server wants to
 * send is drained, events are polled, and the connection is freed. Nothing may
 * crash, leak or loop. Seeds: a real client Initial (captured from a natkit
 * client with a fixed random source), then mutations of it and garbage.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/quic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fixed_random(void *ctx, uint8_t *buf, size_t len)
{
    uint64_t *s = ctx;
    for (size_t i = 0; i < len; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (uint8_t)(*s >> 56);
    }
}

static void drain(nk_quic *q, int64_t now)
{
    uint8_t buf[1500];
    for (int i = 0; i < 64 && nk_quic_poll_transmit(q, now, buf, sizeof(buf)) > 0; i++)
        ;
    nk_quic_event ev;
    for (int i = 0; i < 256 && nk_quic_poll_event(q, &ev) == 0; i++) {
        if (ev.type == NK_QUIC_EV_STREAM_READABLE) {
            uint8_t b[256];
            while (nk_quic_stream_read(q, ev.stream_id, b, sizeof(b)) > 0)
                ;
        }
        if (ev.type == NK_QUIC_EV_DATAGRAM)
            nk_quic_datagram_read(q, buf, sizeof(buf));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (sodium_init() < 0)
        abort();
    static nk_identity server;
    static int ready;
    if (!ready) {
        uint8_t seed[32];
        memset(seed, 2, sizeof(seed));
        crypto_sign_seed_keypair(server.id.key, server.secret, seed);
        ready = 1;
    }
    uint64_t rnd = 7;
    nk_quic_config cfg = {.role = NK_QUIC_SERVER, .identity = &server, .random = fixed_random, .random_ctx = &rnd};
    nk_quic *q;
    int64_t now = 1000;
    if (nk_quic_new(&q, &cfg, now) != 0)
        abort();
    const uint8_t *p = data, *end = data + size;
    while (end - p >= 2) {
        size_t n = (size_t)p[0] << 8 | p[1];
        p += 2;
        if (n > (size_t)(end - p))
            n = (size_t)(end - p);
        nk_quic_handle_datagram(q, now, p, n);
        p += n;
        drain(q, now);
        now += p < end ? *p++ : 1;
        if (nk_quic_next_deadline(q) <= now)
            nk_quic_handle_timeout(q, now);
        drain(q, now);
    }
    nk_quic_close(q, now, 0);
    drain(q, now);
    nk_quic_free(q);
    return 0;
}

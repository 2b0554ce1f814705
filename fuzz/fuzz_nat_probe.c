/*
 * libFuzzer target for the NAT behaviour probe: untrusted datagrams arriving
 * on the probe's sockets, interleaved with time passing.
 *
 * Input: records of [socket][time step][flags][sent index][len hi][len lo][bytes].
 * Flags bit 0 overwrites bytes 8..19 with the transaction ID of the request the
 * probe sent as number `sent index` (so answers can match), bit 1 writes the
 * magic cookie into bytes 4..7. After the input, time runs on until the probe
 * ends, which it must do within a bounded number of steps with a sane report.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/nat_probe.h"
#include "natkit/stun.h"

#define MAX_SENT 256

typedef struct harness {
    nk_nat_probe *p;
    int64_t now;
    nk_addr locals[32];
    size_t nsock;
    size_t nsent;
    uint8_t sent_tid[MAX_SENT][NK_STUN_TID_SIZE];
    uint8_t seed;
} harness;

static void counter_random(void *ctx, uint8_t *buf, size_t len)
{
    uint8_t *next = ctx;
    for (size_t i = 0; i < len; i++)
        buf[i] = (*next)++;
}

static void drain(harness *h)
{
    uint8_t buf[NK_STUN_MAX_MESSAGE];
    nk_transmit tx;
    for (int budget = 0; budget < 1000; budget++) {
        if (nk_nat_probe_poll_transmit(h->p, h->now, &tx, buf, sizeof(buf)) != 0)
            return;
        if (tx.len < NK_STUN_HEADER_SIZE || tx.from.family != NK_AF_INET)
            abort();
        if (h->nsent < MAX_SENT)
            memcpy(h->sent_tid[h->nsent++], buf + 8, NK_STUN_TID_SIZE);
    }
    abort(); /* a probe that never stops transmitting */
}

static void check_report(const nk_nat_report *r)
{
    if (r->mapping > NK_NAT_ADDRESS_AND_PORT_DEPENDENT || r->filtering > NK_NAT_ADDRESS_AND_PORT_DEPENDENT ||
        r->port_allocation > NK_PORTS_RANDOM || r->classic > NK_CLASSIC_UDP_BLOCKED || r->hairpinning < -1 ||
        r->hairpinning > 1 || r->nsamples > NK_NAT_PROBE_MAX_SAMPLES || memchr(r->note, 0, sizeof(r->note)) == NULL)
        abort();
    if (r->status == 0 && r->classic == NK_CLASSIC_UDP_BLOCKED)
        abort();
}

static void setup(harness *h, int lifetime)
{
    nk_nat_probe_config cfg;
    memset(h, 0, sizeof(*h));
    memset(&cfg, 0, sizeof(cfg));
    nk_addr_parse(&cfg.server, "192.0.2.100:3478");
    cfg.random = counter_random;
    cfg.random_ctx = &h->seed;
    cfg.lifetime = lifetime;
    cfg.lifetime_max_ms = 5000;
    if (nk_nat_probe_new(&h->p, &cfg) != 0)
        abort();
    h->nsock = nk_nat_probe_socket_count(h->p);
    if (h->nsock > 32)
        abort();
    for (size_t i = 0; i < h->nsock; i++) {
        nk_addr_parse(&h->locals[i], "10.0.0.2:1");
        h->locals[i].port = (uint16_t)(5000 + i);
    }
    if (nk_nat_probe_start(h->p, 0, h->locals, h->nsock) != 0)
        abort();
    drain(h);
}

static void deliver(harness *h, const uint8_t *rec, const uint8_t *d, size_t n)
{
    uint8_t pkt[2048];
    nk_addr from;
    memcpy(pkt, d, n);
    if ((rec[2] & 1) && n >= NK_STUN_HEADER_SIZE && h->nsent > 0)
        memcpy(pkt + 8, h->sent_tid[rec[3] % h->nsent], NK_STUN_TID_SIZE);
    if ((rec[2] & 2) && n >= 8) {
        static const uint8_t cookie[4] = {0x21, 0x12, 0xa4, 0x42};
        memcpy(pkt + 4, cookie, 4);
    }
    nk_addr_parse(&from, (rec[2] & 4) ? "192.0.2.101:3479" : "192.0.2.100:3478");
    h->now += (int64_t)rec[1] * 10;
    nk_nat_probe_handle_datagram(h->p, h->now, &h->locals[rec[0] % h->nsock], &from, pkt, n);
    nk_nat_probe_handle_timeout(h->p, h->now);
    drain(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    harness h;
    nk_nat_report r;
    setup(&h, size > 0 && (data[0] & 0x80));
    size_t off = size > 0 ? 1 : 0;
    while (off + 6 <= size) {
        const uint8_t *rec = data + off;
        size_t n = ((size_t)rec[4] << 8) | rec[5];
        off += 6;
        if (n > size - off)
            n = size - off;
        if (n > 2048)
            n = 2048;
        deliver(&h, rec, data + off, n);
        off += n;
    }
    for (int steps = 0; !nk_nat_probe_result(h.p, &r); steps++) {
        int64_t next = nk_nat_probe_next_deadline(h.p);
        if (steps > 10000 || next == NK_DEADLINE_NONE || next > h.now + 600000)
            abort(); /* must end, and never wait without a deadline */
        if (next > h.now)
            h.now = next;
        nk_nat_probe_handle_timeout(h.p, h.now);
        drain(&h);
    }
    check_report(&r);
    nk_nat_probe_free(h.p);
    return 0;
}

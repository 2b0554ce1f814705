/*
 * Fuzz target: the hub frame codec and the client core. The input is parsed
 * as a stream of frames (each checked, rewritten and parsed again; REPORT
 * bodies decoded and encoded back; CLOSE bodies, with their retry-after trailer, decoded, encoded
 * back and decoded the same; the decoder also runs on the raw input), then fed
 * in chunks to a client core waiting for its challenge, whose events and
 * output are drained.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/hub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A REPORT body decodes, encodes back to its first 7 bytes (values in range) and decodes the same. */
static void report(const nk_hub_frame *f)
{
    nk_hub_report r, r2;
    uint8_t body[NK_HUB_REPORT_SIZE];
    if (nk_hub_report_decode(f->body, f->len, &r) != 0)
        abort();
    if (r.path > 3 || r.mapping > 3 || r.filtering > 3 || nk_hub_report_encode(body, &r) != NK_HUB_REPORT_SIZE ||
        nk_hub_report_decode(body, sizeof(body), &r2) != 0 || r.path != r2.path || r.connect_ms != r2.connect_ms ||
        r.mapping != r2.mapping || r.filtering != r2.filtering)
        abort();
}

/* A CLOSE body decodes (any bytes up to 130), encodes back and decodes to the same code, reason and hint. */
static void close_body(const uint8_t *body, size_t n)
{
    nk_hub_close_info ci, ci2;
    uint8_t buf[2 + NK_HUB_MAX_REASON];
    if (nk_hub_close_decode(body, n, &ci) != 0) {
        if (n >= 2 && n <= 2 + NK_HUB_MAX_REASON)
            abort();
        return;
    }
    if (n < 2 || strlen(ci.reason) > n - 2 || ci.retry_ms < -1 || ci.retry_ms > (int64_t)UINT32_MAX)
        abort();
    int m = nk_hub_close_encode(buf, sizeof(buf), ci.code, ci.reason, ci.retry_ms);
    if (m < 2 || (size_t)m > n || nk_hub_close_decode(buf, (size_t)m, &ci2) != 0 || ci2.code != ci.code ||
        strcmp(ci2.reason, ci.reason) != 0 || ci2.retry_ms != ci.retry_ms)
        abort();
}

static void codec(const uint8_t *data, size_t size)
{
    size_t off = 0;
    static uint8_t buf[NK_HUB_MAX_FRAME + 16];
    while (off < size) {
        nk_hub_frame f;
        int r = nk_hub_frame_parse(data + off, size - off, NK_HUB_MAX_BODY, &f);
        if (r <= 0)
            break;
        if ((size_t)r > size - off || f.len + NK_HUB_HEADER_SIZE != (size_t)r || f.body != data + off + 4)
            abort();
        if (nk_hub_frame_check(&f) == 0 && f.type == NK_HUB_T_REPORT)
            report(&f);
        if (f.type == NK_HUB_T_CLOSE)
            close_body(f.body, f.len);
        int n = nk_hub_frame_write(buf, sizeof(buf), f.type, f.body, f.len);
        nk_hub_frame g;
        if (n != r || nk_hub_frame_parse(buf, (size_t)n, NK_HUB_MAX_BODY, &g) != n || g.len != f.len ||
            memcmp(g.body, f.body, f.len) != 0)
            abort();
        off += (size_t)r;
    }
}

static void client(const uint8_t *data, size_t size)
{
    static nk_identity id;
    static int have_id;
    if (!have_id) {
        uint8_t seed[32] = {1};
        if (sodium_init() < 0 || crypto_sign_seed_keypair(id.id.key, id.secret, seed) != 0)
            abort();
        have_id = 1;
    }
    nk_hub_client_config cc;
    memset(&cc, 0, sizeof(cc));
    cc.identity = &id;
    nk_addr_parse(&cc.hub, "192.0.2.1:7000");
    cc.event_cap = 8192;
    nk_hub_client *c;
    if (nk_hub_client_new(&c, &cc) != 0)
        abort();
    int64_t now = 0;
    nk_hub_client_register(c, now);
    size_t chunk = size > 0 ? (size_t)data[0] % 97 + 1 : 1;
    static uint8_t out[NK_HUB_MAX_PAYLOAD];
    nk_peer_id peer = {{7}};
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        now += 10;
        (void)nk_hub_client_handle_bytes(c, now, data + off, n);
        nk_hub_client_handle_timeout(c, now);
        (void)nk_hub_client_send(c, now, NK_HUB_T_CANDIDATE, &peer, data + off, n);
        while (nk_hub_client_poll_transmit(c, now, out, 100) > 0)
            ;
        nk_hub_event ev;
        while (nk_hub_client_poll_event(c, &ev, out, sizeof(out)) == 0)
            if (ev.len > sizeof(out) || ev.reason[NK_HUB_MAX_REASON] != '\0')
                abort();
    }
    nk_hub_client_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    codec(data, size);
    close_body(data, size);
    client(data, size);
    return 0;
}

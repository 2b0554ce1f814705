/*
 * The burst stall of issue 12 through the public API, on real sockets and the real clock:
 * two nk_node_drivers on loopback UDP, one calling nk_conn_send until NK_ERR_AGAIN, waiting
 * for NK_NODE_EV_WRITABLE, 20 MB in 100..4000-byte messages, all received in order. The
 * wall time is printed for the record. The same data plane in the simulator (framing, 20 MB
 * streams at 0 % and 10 % loss, path changes, resets, datagrams) is tests/unit/test_conn_quic.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "natkit/node.h"
#include "natkit/node_driver.h"
#include "loopback.h"

#define TOTAL (20u * 1000 * 1000) /* as test_conn_quic.c's streams */

/* ---- the burst stall of issue 12: two node drivers on loopback UDP ------------------------- */

typedef struct burst_side {
    nk_node_driver *d;
    nk_identity id;
    nk_addr local;
    nk_conn *conn;
    int connected, writable, disconnected;
    /* receiver */
    uint64_t next_seq, bytes, bad;
} burst_side;

static size_t burst_len(uint64_t seq)
{
    return 100 + (size_t)((seq * 2654435761u) % 3901); /* 100..4000 */
}

static void burst_fill(uint8_t *m, uint64_t seq, size_t len)
{
    for (size_t i = 0; i < len; i++)
        m[i] = (uint8_t)(seq * 31 + i * 7);
    memcpy(m, &seq, sizeof(seq));
}

static void burst_event(void *ctx, nk_node_driver *d, const nk_node_event *ev)
{
    burst_side *s = ctx;
    uint8_t buf[4096], want[4096];
    int n;
    (void)d;
    switch (ev->type) {
    case NK_NODE_EV_CONNECTED:
        s->connected = 1;
        s->conn = ev->conn;
        break;
    case NK_NODE_EV_WRITABLE:
        s->writable++;
        break;
    case NK_NODE_EV_DISCONNECTED:
        s->disconnected++;
        break;
    case NK_NODE_EV_READABLE:
        while ((n = nk_conn_recv(ev->conn, buf, sizeof(buf))) >= 0) {
            size_t len = burst_len(s->next_seq);
            burst_fill(want, s->next_seq, len);
            if ((size_t)n != len || memcmp(buf, want, len) != 0)
                s->bad++;
            s->next_seq++;
            s->bytes += (uint64_t)n;
        }
        break;
    default:
        break;
    }
}

static void burst_open(burst_side *s)
{
    memset(s, 0, sizeof(*s));
    assert_int_equal(loopback_node_open(&s->d, &s->id, &s->local, burst_event, s), 0);
}

static void test_burst_stall_loopback(void **state)
{
    (void)state;
    burst_side a, b;
    burst_open(&a);
    burst_open(&b);
    nk_conn *ca, *cb;
    int64_t now = nk_node_driver_now();
    assert_int_equal(nk_node_connect_direct(nk_node_driver_node(a.d), now, &b.id.id, &b.local, &ca), 0);
    assert_int_equal(nk_node_connect_direct(nk_node_driver_node(b.d), now, &a.id.id, &a.local, &cb), 0);
    int64_t start = nk_node_driver_now();
    while (!(a.connected && b.connected)) {
        assert_true(nk_node_driver_now() - start < 10000);
        nk_node_driver_poll(a.d, 1, -1);
        nk_node_driver_poll(b.d, 1, -1);
    }
    /* a sends: nk_conn_send until NK_ERR_AGAIN, then waits for WRITABLE */
    static uint8_t m[4096];
    uint64_t seq = 0, sent_bytes = 0, agains = 0;
    start = nk_node_driver_now();
    while (b.bytes < TOTAL) {
        if (nk_node_driver_now() - start > 90000)
            fail_msg("stalled: %llu of %llu bytes received, %llu messages sent, %zu unacked, %d WRITABLE events",
                     (unsigned long long)b.bytes, (unsigned long long)sent_bytes, (unsigned long long)seq,
                     nk_conn_unacked(ca), a.writable);
        int waiting = 0;
        while (sent_bytes < TOTAL && !waiting) {
            size_t len = burst_len(seq);
            burst_fill(m, seq, len);
            int rc = nk_conn_send(ca, nk_node_driver_now(), m, len);
            if (rc == NK_ERR_AGAIN) {
                agains++;
                waiting = 1;
                break;
            }
            assert_int_equal(rc, 0);
            seq++;
            sent_bytes += len;
        }
        int w0 = a.writable;
        nk_node_driver_poll(a.d, 0, -1);
        nk_node_driver_poll(b.d, 0, -1);
        if (waiting && a.writable == w0) { /* nothing to do until WRITABLE or data: let the network run */
            nk_node_driver_poll(a.d, 1, -1);
            nk_node_driver_poll(b.d, 1, -1);
        }
    }
    double secs = (double)(nk_node_driver_now() - start) / 1000.0;
    assert_int_equal(b.bad, 0);
    assert_int_equal(b.next_seq, seq);
    assert_int_equal(b.bytes, sent_bytes);
    assert_true(agains > 0);      /* it really pushed back */
    assert_true(a.writable > 0);  /* and WRITABLE came */
    while (nk_conn_unacked(ca) > 0) {
        assert_true(nk_node_driver_now() - start < 100000);
        nk_node_driver_poll(a.d, 1, -1);
        nk_node_driver_poll(b.d, 1, -1);
    }
    printf("    burst: %llu messages (100..4000 bytes), %.1f MB in %.2f s wall (loopback, this build): "
           "%llu NK_ERR_AGAIN, %d WRITABLE\n",
           (unsigned long long)seq, (double)sent_bytes / 1e6, secs, (unsigned long long)agains, a.writable);
    assert_int_equal(a.disconnected + b.disconnected, 0);
    nk_node_driver_free(a.d);
    nk_node_driver_free(b.d);
    nk_identity_wipe(&a.id);
    nk_identity_wipe(&b.id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_stall_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

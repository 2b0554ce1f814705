#include "nodes.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define MTU 2048

static void enqueue(sim_nodes *w, int kind, int to, const nk_addr *from, const uint8_t *p, size_t len)
{
    if (len > MTU)
        abort();
    int delay = kind == 0 ? w->udp_delay_ms : w->hub_delay_ms;
    if (delay <= 0)
        delay = SIM_NODES_DELAY_MS;
    sim_pkt k = {.tag = kind, .dst = to, .data = p, .len = len};
    if (from != NULL)
        k.from = *from;
    if (kind == 0 && w->udp_loss > 0) {
        w->queue.link = (sim_link){.delay_ms = delay, .loss = w->udp_loss};
        sim_queue_send(&w->queue, w->clock.now, &k);
        return;
    }
    sim_queue_put(&w->queue, w->clock.now + delay, &k);
}

static int node_by_addr(const sim_nodes *w, const nk_addr *a)
{
    for (int i = 0; i < w->n; i++)
        if (nk_addr_equal(&w->addrs[i], a))
            return i;
    return -1;
}

/* Moves everything every party wants to send into the network. */
static void flush(sim_nodes *w)
{
    uint8_t buf[MTU];
    for (int i = 0; i < w->n; i++) {
        nk_transmit tx;
        while (nk_node_poll_transmit(w->nodes[i], w->clock.now, &tx, buf, sizeof(buf)) == 0) {
            int to = node_by_addr(w, &tx.to);
            if (to < 0 || w->udp_blocked)
                continue;
            if (w->admit == NULL || w->admit(w->ctx, i, to))
                enqueue(w, 0, to, &w->addrs[i], buf, tx.len);
        }
        nk_hub_client *hc = nk_node_hub_client(w->nodes[i]);
        int n;
        while ((n = nk_hub_client_poll_transmit(hc, w->clock.now, buf, sizeof(buf))) > 0)
            enqueue(w, 2, i, NULL, buf, (size_t)n);
        nk_node_event ev;
        while (nk_node_poll_event(w->nodes[i], &ev) == 0)
            if (w->on_event != NULL)
                w->on_event(w->ctx, i, &ev);
    }
    nk_hub_server_event sev;
    while (nk_hub_server_poll_event(w->hub, &sev) == 0) {
        if (sev.type != NK_HUB_SEV_SEND)
            continue;
        int i = (int)(intptr_t)sev.user;
        int n;
        while ((n = nk_hub_server_poll_transmit(w->hub, sev.conn, buf, sizeof(buf))) > 0)
            enqueue(w, 1, i, NULL, buf, (size_t)n);
    }
}

static void deliver(sim_nodes *w, const sim_pkt *k)
{
    nk_node *node = w->nodes[k->dst];
    switch (k->tag) {
    case 0:
        w->udp_rx++;
        nk_node_handle_datagram(node, w->clock.now, &k->from, k->data, k->len);
        break;
    case 1:
        w->hub_rx++;
        nk_hub_client_handle_bytes(nk_node_hub_client(node), w->clock.now, k->data, k->len);
        nk_node_handle_hub(node, w->clock.now);
        break;
    case 2:
        nk_hub_server_handle_bytes(w->hub, w->clock.now, w->hubconn[k->dst], k->data, k->len);
        break;
    }
}

void sim_nodes_run_until(sim_nodes *w, int64_t until)
{
    for (int steps = 0; steps < 2000000; steps++) {
        flush(w);
        if (w->on_turn != NULL)
            w->on_turn(w->ctx);
        sim_clock_offer(&w->clock, nk_hub_server_next_deadline(w->hub));
        for (int i = 0; i < w->n; i++)
            sim_clock_offer(&w->clock, nk_node_next_deadline(w->nodes[i]));
        sim_clock_offer(&w->clock, sim_queue_next(&w->queue));
        if (!sim_clock_advance(&w->clock, until))
            break;
        const sim_pkt *k;
        while ((k = sim_queue_pop(&w->queue, w->clock.now)) != NULL) {
            deliver(w, k);
            flush(w);
        }
        if (nk_hub_server_next_deadline(w->hub) <= w->clock.now)
            nk_hub_server_handle_timeout(w->hub, w->clock.now);
        for (int i = 0; i < w->n; i++)
            if (nk_node_next_deadline(w->nodes[i]) <= w->clock.now)
                nk_node_handle_timeout(w->nodes[i], w->clock.now);
    }
    w->clock.now = until;
}

int sim_nodes_init(sim_nodes *w, sim_rng *rng)
{
    sim_clock_init(&w->clock, 1000);
    sim_queue_init(&w->queue, rng);
    nk_addr_parse(&w->hub_addr, "203.0.113.1:7000");
    nk_hub_server_config hc;
    nk_hub_server_config_init(&hc);
    return nk_hub_server_new(&w->hub, &hc);
}

int sim_nodes_add(sim_nodes *w, nk_node_config *cfg)
{
    if (w->n >= SIM_NODES_MAX)
        return NK_ERR_INVAL;
    int i = w->n;
    char text[64];
    snprintf(text, sizeof(text), "198.51.100.%d:%d", 1 + i % 200, 4000 + i);
    nk_addr_parse(&w->addrs[i], text);
    int rc = nk_identity_generate(&w->ids[i]);
    if (rc != 0)
        return rc;
    cfg->identity = &w->ids[i];
    cfg->hub = w->hub_addr;
    cfg->host[0] = w->addrs[i];
    cfg->nhost = 1;
    if ((rc = nk_node_new(&w->nodes[i], cfg, w->clock.now)) != 0)
        return rc;
    w->n++;
    rc = nk_hub_server_accept(w->hub, w->clock.now, &w->hub_addr, &w->addrs[i], (void *)(intptr_t)i, &w->hubconn[i]);
    if (rc != 0)
        return rc;
    nk_node_handle_hub(w->nodes[i], w->clock.now);
    return 0;
}

void sim_nodes_free(sim_nodes *w)
{
    sim_queue_free(&w->queue);
    for (int i = 0; i < w->n; i++) {
        nk_node_free(w->nodes[i]);
        nk_identity_wipe(&w->ids[i]);
    }
    nk_hub_server_free(w->hub);
}

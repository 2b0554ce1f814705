/* natkit CLI: what a running listen/connect answers on its control socket (`natkit status`;
 * docs/internals/cli-status.md). Public API only: nk_node_conn_next, nk_conn_stats, ... */
#include <stdio.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"
#include "p2p.h"

static struct {
    const p2p_opts *o;
    nk_node_driver *d;
} g_ctx;

static const char *hub_state(nk_node *n, nk_addr *hub)
{
    switch (nk_node_hub_status(n, hub)) {
    case NK_NODE_HUB_REGISTERED: return "connected";
    case NK_NODE_HUB_CONNECTING: return "registering";
    case NK_NODE_HUB_RECONNECTING: return "reconnecting";
    case NK_NODE_HUB_FAILED: return "failed";
    default: return "none";
    }
}

static void put_addr(ctl_buf *b, const char *key, const nk_addr *a)
{
    char t[NK_ADDR_STRLEN];
    ctl_buf_printf(b, ",\"%s\":", key);
    ctl_buf_str(b, a->family != NK_AF_NONE ? nk_addr_format(a, t, sizeof(t)) : NULL);
}

static void put_conn(ctl_buf *b, nk_conn *c)
{
    char id[NK_PEER_ID_STRLEN];
    nk_path_info path;
    nk_conn_stats_t st;
    nk_conn_path(c, &path);
    nk_conn_stats(c, &st);
    ctl_buf_printf(b, "{\"peer\":");
    ctl_buf_str(b, nk_peer_id_format(nk_conn_peer(c), id, sizeof(id)));
    ctl_buf_printf(b, ",\"state\":\"%s\",\"role\":\"%s\",\"path\":", nk_conn_is_connected(c) ? "connected" : "connecting",
                   nk_conn_is_client(c) ? "client" : "server");
    ctl_buf_str(b, path.kind != NK_PATH_NONE ? nk_path_kind_name(path.kind) : NULL);
    put_addr(b, "local", &path.local);
    put_addr(b, "remote", &path.remote);
    if (st.srtt_us > 0)
        ctl_buf_printf(b, ",\"rtt_ms\":%.3f", (double)st.srtt_us / 1000.0);
    else if (path.rtt_ms >= 0 && path.kind != NK_PATH_NONE)
        ctl_buf_printf(b, ",\"rtt_ms\":%lld", (long long)path.rtt_ms);
    else
        ctl_buf_printf(b, ",\"rtt_ms\":null");
    ctl_buf_printf(b,
                   ",\"sent\":%llu,\"received\":%llu,\"udp_sent\":%llu,\"udp_received\":%llu,"
                   "\"age_ms\":%lld,\"streams\":%zu}",
                   (unsigned long long)st.stream_bytes_sent, (unsigned long long)st.stream_bytes_read,
                   (unsigned long long)st.tx_bytes, (unsigned long long)st.rx_bytes, (long long)st.age_ms,
                   st.streams);
}

static void answer(void *ctx, ctl_buf *b)
{
    (void)ctx;
    const p2p_opts *o = g_ctx.o;
    nk_node *n = nk_node_driver_node(g_ctx.d);
    char id[NK_PEER_ID_STRLEN];
    nk_addr udp;
    nk_node_driver_local(g_ctx.d, &udp);
    ctl_buf_printf(b, "{\"command\":\"%s\",\"pid\":%ld,\"id\":", o->cmd, (long)getpid());
    ctl_buf_str(b, nk_peer_id_format(nk_node_id(n), id, sizeof(id)));
    put_addr(b, "udp", &udp);
    ctl_buf_printf(b, ",\"hub\":{\"address\":");
    char t[NK_ADDR_STRLEN];
    nk_addr hub;
    const char *state = hub_state(n, &hub); /* the hub we are at, dialing, or dial next */
    ctl_buf_str(b, hub.family != NK_AF_NONE ? nk_addr_format(&hub, t, sizeof(t)) : NULL);
    ctl_buf_printf(b, ",\"state\":\"%s\"", state);
    nk_hub_client *hc = nk_node_hub_client(n);
    int64_t rtt = hc != NULL ? nk_hub_client_rtt(hc) : -1;
    if (rtt >= 0 && hc != NULL && nk_hub_client_state(hc) == NK_HUB_CLIENT_REGISTERED)
        ctl_buf_printf(b, ",\"rtt_ms\":%lld}", (long long)rtt);
    else
        ctl_buf_printf(b, ",\"rtt_ms\":null}");
    ctl_buf_printf(b, ",\"connections\":[");
    int first = 1;
    for (nk_conn *c = nk_node_conn_next(n, NULL); c != NULL; c = nk_node_conn_next(n, c)) {
        ctl_buf_printf(b, first ? "" : ",");
        first = 0;
        put_conn(b, c);
    }
    ctl_buf_printf(b, "]}");
}

ctl_server *p2p_ctl_open(const p2p_opts *o, nk_node_driver *d, int *fatal)
{
    g_ctx.o = o;
    g_ctx.d = d;
    return ctl_start(o->cmd, o->control, "this process", answer, NULL, fatal);
}

/* natkit CLI: what a running hub answers on its control socket (`natkit status`), and the
 * main thread's wait for SIGINT/SIGTERM that serves it (the hub's loop runs in the service's
 * own thread; nk_hub_service_peers asks it safely). docs/internals/cli-status.md. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"
#include "hub_status.h"

static void put_peer(ctl_buf *b, const nk_hub_peer_info *p)
{
    char id[NK_PEER_ID_STRLEN], a[NK_ADDR_STRLEN];
    ctl_buf_printf(b, "{\"peer\":");
    ctl_buf_str(b, nk_peer_id_format(&p->peer, id, sizeof(id)));
    ctl_buf_printf(b, ",\"address\":");
    ctl_buf_str(b, p->addr.family != NK_AF_NONE ? nk_addr_format(&p->addr, a, sizeof(a)) : NULL);
    ctl_buf_printf(b,
                   ",\"registered_ms\":%lld,\"relay_frames_sent\":%llu,\"relay_bytes_sent\":%llu,"
                   "\"relay_frames_received\":%llu,\"relay_bytes_received\":%llu,\"connects\":%llu,"
                   "\"paths\":{\"direct\":%llu,\"turn\":%llu,\"hub\":%llu}}",
                   (long long)p->registered_for_ms, (unsigned long long)p->relay_frames_sent,
                   (unsigned long long)p->relay_bytes_sent, (unsigned long long)p->relay_frames_received,
                   (unsigned long long)p->relay_bytes_received, (unsigned long long)p->connects,
                   (unsigned long long)p->reported_paths[1], (unsigned long long)p->reported_paths[2],
                   (unsigned long long)p->reported_paths[3]);
}

/* The hub's counters, in the order of the stop line (all); status: also in `natkit status`. */
#define FIELD(name, status) {#name, offsetof(nk_hub_stats_t, name), status}
static const struct {
    const char *name;
    size_t off;
    int status;
} fields[] = {
    FIELD(accepted, 1),          FIELD(registered, 1),        FIELD(replaced, 1),
    FIELD(auth_failed, 1),       FIELD(malformed, 1),         FIELD(idle_closed, 0),
    FIELD(overflow_closed, 0),   FIELD(rejected_full, 0),     FIELD(routed, 1),
    FIELD(unknown_peer, 1),      FIELD(relay_dropped, 1),     FIELD(pings, 0),
    FIELD(bytes_in, 1),          FIELD(bytes_out, 1),         FIELD(peers, 0),
    FIELD(conns, 1),             FIELD(rejected_per_ip, 0),   FIELD(evicted, 0),
    FIELD(register_timeouts, 0), FIELD(ignored_reports, 0),   FIELD(ignored_unknown, 0),
    FIELD(cluster_forwarded, 0), FIELD(cluster_delivered, 0), FIELD(cluster_dropped, 0),
    FIELD(cluster_paused, 0),    FIELD(cluster_expired, 0),   FIELD(nomem_closed, 0),
};
#undef FIELD

static unsigned long long field_value(const nk_hub_stats_t *st, size_t i)
{
    uint64_t v;
    memcpy(&v, (const char *)st + fields[i].off, sizeof(v));
    return (unsigned long long)v;
}

void hub_stats_line(char *buf, size_t cap, const nk_hub_stats_t *st)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]) && len < cap; i++) {
        int n = snprintf(buf + len, cap - len, "%s%s=%llu", i > 0 ? " " : "", fields[i].name, field_value(st, i));
        len += n > 0 ? (size_t)n : 0;
    }
}

static void put_stats(ctl_buf *b, const nk_hub_stats_t *st)
{
    const char *sep = "";
    ctl_buf_printf(b, ",\"stats\":{");
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (!fields[i].status)
            continue;
        ctl_buf_printf(b, "%s\"%s\":%llu", sep, fields[i].name, field_value(st, i));
        sep = ",";
    }
    ctl_buf_printf(b, "}");
}

static void answer(void *ctx, ctl_buf *b)
{
    nk_hub_service *svc = ctx;
    nk_addr tcp, tls;
    char a[NK_ADDR_STRLEN];
    nk_hub_service_addrs(svc, &tcp, &tls);
    ctl_buf_printf(b, "{\"command\":\"hub\",\"pid\":%ld,\"listen\":", (long)getpid());
    ctl_buf_str(b, tcp.family != NK_AF_NONE ? nk_addr_format(&tcp, a, sizeof(a)) : NULL);
    ctl_buf_printf(b, ",\"tls_listen\":");
    ctl_buf_str(b, tls.family != NK_AF_NONE ? nk_addr_format(&tls, a, sizeof(a)) : NULL);
    size_t total = 0;
    int n = nk_hub_service_peers(svc, NULL, 0, &total);
    nk_hub_peer_info *peers = n >= 0 && total > 0 ? calloc(total + 16, sizeof(*peers)) : NULL;
    if (peers != NULL)
        n = nk_hub_service_peers(svc, peers, total + 16, &total);
    if (n < 0) {
        ctl_buf_printf(b, ",\"peers_registered\":null,\"peers\":null");
    } else {
        ctl_buf_printf(b, ",\"peers_registered\":%zu,\"peers\":[", total);
        for (int i = 0; peers != NULL && i < n; i++) {
            ctl_buf_printf(b, i > 0 ? "," : "");
            put_peer(b, &peers[i]);
        }
        ctl_buf_printf(b, "]");
    }
    free(peers);
    nk_hub_stats_t st;
    nk_hub_service_stats(svc, &st);
    put_stats(b, &st);
    ctl_buf_printf(b, "}");
}

ctl_server *hub_ctl_open(nk_hub_service *svc, const char *path, int *fatal)
{
    return ctl_start("hub", path, "this hub", answer, svc, fatal);
}

int hub_ctl_wait(ctl_server *ctl, const sigset_t *stop)
{
    int sig = 0;
    int sfd = ctl != NULL ? signalfd(-1, stop, SFD_NONBLOCK | SFD_CLOEXEC) : -1;
    if (sfd < 0) { /* no control socket (or no signalfd): just wait */
        sigwait(stop, &sig);
        return sig;
    }
    while (sig == 0) {
        struct pollfd pf[1 + CTL_FDS];
        pf[0] = (struct pollfd){.fd = sfd, .events = POLLIN};
        unsigned n = ctl_pollfds(ctl, &pf[1], CTL_FDS);
        if (poll(pf, 1 + n, 250) < 0 && errno != EINTR)
            break;
        ctl_service(ctl, &pf[1], n);
        struct signalfd_siginfo si;
        if ((pf[0].revents & POLLIN) && read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            sig = (int)si.ssi_signo;
    }
    close(sfd);
    if (sig == 0)
        sigwait(stop, &sig);
    return sig;
}

/*
 * natkit metrics: the servers' counters as metric families. Every name here is
 * listed in docs/internals/metrics.md; change both together.
 */
#include <stdio.h>
#include <string.h>

#include "natkit/metrics.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

typedef nk_metrics_label label;

/* A family with one unlabelled sample. */
static void single(nk_metrics_text *t, const char *name, nk_metrics_type type, const char *help, uint64_t v)
{
    nk_metrics_family(t, name, type, help);
    nk_metrics_sample_u64(t, name, NULL, 0, v);
}

/* One sample with one label. */
static void one(nk_metrics_text *t, const char *name, const char *key, const char *value, uint64_t v)
{
    label l = {key, value};
    nk_metrics_sample_u64(t, name, &l, 1, v);
}

/* ---- STUN ---- */

void nk_metrics_write_stun(nk_metrics_text *t, const nk_stun_server_stats_t *st)
{
    single(t, "natkit_stun_requests_total", NK_METRICS_COUNTER,
           "STUN Binding requests handled (answered or not), UDP and TCP", st->requests);
    nk_metrics_family(t, "natkit_stun_responses_total", NK_METRICS_COUNTER,
                      "STUN responses sent, by result (error: 400 or 420; not those left unanswered by the rate limit)");
    one(t, "natkit_stun_responses_total", "result", "success", st->responses);
    one(t, "natkit_stun_responses_total", "result", "error", st->errors);
    nk_metrics_family(t, "natkit_stun_dropped_total", NK_METRICS_COUNTER,
                      "Input dropped unanswered, by reason (malformed: STUN-looking but invalid; not_stun: "
                      "not STUN at all)");
    one(t, "natkit_stun_dropped_total", "reason", "malformed", st->dropped_malformed);
    one(t, "natkit_stun_dropped_total", "reason", "not_stun", st->dropped_not_stun);
    single(t, "natkit_stun_ignored_total", NK_METRICS_COUNTER,
           "Valid STUN messages never answered: indications, responses, methods other than Binding",
           st->ignored);
    single(t, "natkit_stun_send_failures_total", NK_METRICS_COUNTER,
           "Responses the kernel would not take", st->send_failed);
    nk_metrics_family(t, "natkit_stun_tcp_connections_total", NK_METRICS_COUNTER,
                      "TCP connections, by result (rejected: over the connection limit; rejected_per_ip: "
                      "the source held its share)");
    one(t, "natkit_stun_tcp_connections_total", "result", "accepted", st->tcp_accepted);
    one(t, "natkit_stun_tcp_connections_total", "result", "rejected", st->tcp_rejected);
    one(t, "natkit_stun_tcp_connections_total", "result", "rejected_per_ip", st->tcp_rejected_per_ip);
    single(t, "natkit_stun_tcp_idle_closed_total", NK_METRICS_COUNTER,
           "TCP connections closed after the idle timeout", st->tcp_idle_closed);
    nk_metrics_family(t, "natkit_stun_tcp_limit_closed_total", NK_METRICS_COUNTER,
                      "TCP connections closed before a valid request, by reason (first_message_timeout: none "
                      "in time; evicted: the table was full)");
    one(t, "natkit_stun_tcp_limit_closed_total", "reason", "first_message_timeout", st->tcp_first_timeout);
    one(t, "natkit_stun_tcp_limit_closed_total", "reason", "evicted", st->tcp_evicted);
    single(t, "natkit_stun_rate_limited_total", NK_METRICS_COUNTER,
           "UDP requests left unanswered: the source was over its answer rate", st->rate_limited);
}

/* ---- TURN ---- */

static void turn_allocations(nk_metrics_text *t, const nk_turn_server_stats_t *st)
{
    static const int codes[] = NK_TURN_STATS_CODES;
    single(t, "natkit_turn_allocations", NK_METRICS_GAUGE, "TURN allocations live now", st->allocations);
    single(t, "natkit_turn_allocations_created_total", NK_METRICS_COUNTER, "TURN allocations created",
           st->allocations_created);
    nk_metrics_family(t, "natkit_turn_allocate_errors_total", NK_METRICS_COUNTER,
                      "Allocate requests refused, by error code (401 is also the normal challenge to an "
                      "Allocate without credentials; not those left unanswered by the rate limit)");
    for (size_t i = 0; i <= NK_TURN_STATS_NCODES; i++) {
        char code[16];
        if (i < NK_TURN_STATS_NCODES)
            snprintf(code, sizeof(code), "%d", codes[i]);
        else
            snprintf(code, sizeof(code), "other");
        one(t, "natkit_turn_allocate_errors_total", "code", code, st->allocate_errors[i]);
    }
}

/* The limits per source (docs/internals/turn-server.md). */
static void turn_limits(nk_metrics_text *t, const nk_turn_server_stats_t *st)
{
    single(t, "natkit_turn_rate_limited_total", NK_METRICS_COUNTER,
           "UDP requests without credentials left unanswered: the source was over its answer rate (counted "
           "nowhere else)",
           st->rate_limited);
    single(t, "natkit_turn_redirected_total", NK_METRICS_COUNTER,
           "Allocates answered 300 Try Alternate (--alternate-server)", st->redirected);
    nk_metrics_family(t, "natkit_turn_tcp_connections_total", NK_METRICS_COUNTER,
                      "TCP and TLS connections, by result (rejected: the table was full; rejected_per_ip: the "
                      "source held its share)");
    one(t, "natkit_turn_tcp_connections_total", "result", "accepted", st->tcp_accepted);
    one(t, "natkit_turn_tcp_connections_total", "result", "rejected", st->tcp_rejected);
    one(t, "natkit_turn_tcp_connections_total", "result", "rejected_per_ip", st->tcp_rejected_per_ip);
    nk_metrics_family(t, "natkit_turn_tcp_limit_closed_total", NK_METRICS_COUNTER,
                      "TCP and TLS connections closed before a valid message, by reason (first_message_timeout: "
                      "none in time; evicted: the table was full)");
    one(t, "natkit_turn_tcp_limit_closed_total", "reason", "first_message_timeout", st->tcp_first_timeout);
    one(t, "natkit_turn_tcp_limit_closed_total", "reason", "evicted", st->tcp_evicted);
}

void nk_metrics_write_turn(nk_metrics_text *t, const nk_turn_server_stats_t *st)
{
    turn_allocations(t, st);
    single(t, "natkit_turn_requests_total", NK_METRICS_COUNTER, "STUN/TURN requests handled", st->requests);
    nk_metrics_family(t, "natkit_turn_dropped_total", NK_METRICS_COUNTER,
                      "Input dropped, by reason (malformed: undecodable; no_permission: relay data without "
                      "allocation, permission or channel)");
    one(t, "natkit_turn_dropped_total", "reason", "malformed", st->malformed);
    one(t, "natkit_turn_dropped_total", "reason", "no_permission", st->dropped);
    single(t, "natkit_turn_auth_challenges_total", NK_METRICS_COUNTER,
           "401 answers sent to requests without credentials (the normal first step)", st->unauthenticated);
    nk_metrics_family(t, "natkit_turn_auth_failures_total", NK_METRICS_COUNTER,
                      "Requests whose credentials failed and were answered, by reason (bad_credentials: 400/401; "
                      "stale_nonce: 438)");
    one(t, "natkit_turn_auth_failures_total", "reason", "bad_credentials", st->auth_failed);
    one(t, "natkit_turn_auth_failures_total", "reason", "stale_nonce", st->stale_nonce);
    single(t, "natkit_turn_peer_denied_total", NK_METRICS_COUNTER, "Peer addresses refused by the peer policy (403)",
           st->peer_denied);
    single(t, "natkit_turn_permissions_created_total", NK_METRICS_COUNTER,
           "Successful CreatePermission requests (refreshes too)", st->permissions_created);
    single(t, "natkit_turn_channel_binds_total", NK_METRICS_COUNTER,
           "Successful ChannelBind requests (refreshes too)", st->channels_bound);
    nk_metrics_family(t, "natkit_turn_relayed_packets_total", NK_METRICS_COUNTER,
                      "Datagrams relayed, by direction");
    one(t, "natkit_turn_relayed_packets_total", "direction", "to_peer", st->to_peer);
    one(t, "natkit_turn_relayed_packets_total", "direction", "to_client", st->to_client);
    nk_metrics_family(t, "natkit_turn_relayed_bytes_total", NK_METRICS_COUNTER,
                      "Payload bytes relayed, by direction");
    one(t, "natkit_turn_relayed_bytes_total", "direction", "to_peer", st->bytes_to_peer);
    one(t, "natkit_turn_relayed_bytes_total", "direction", "to_client", st->bytes_to_client);
    turn_limits(t, st);
}

/* ---- hub ---- */

static const char *const behaviours[4] = {"unknown", "endpoint_independent", "address_dependent",
                                          "address_and_port_dependent"};

static void hub_connections(nk_metrics_text *t, const nk_hub_stats_t *st)
{
    single(t, "natkit_hub_peers", NK_METRICS_GAUGE, "Peers registered now", st->peers);
    single(t, "natkit_hub_connections", NK_METRICS_GAUGE, "Hub connections open now", st->conns);
    nk_metrics_family(t, "natkit_hub_connections_total", NK_METRICS_COUNTER,
                      "Hub connections, by result (rejected_full: over the connection or peer limit; "
                      "rejected_per_ip: the source held its share)");
    one(t, "natkit_hub_connections_total", "result", "accepted", st->accepted);
    one(t, "natkit_hub_connections_total", "result", "rejected_full", st->rejected_full);
    one(t, "natkit_hub_connections_total", "result", "rejected_per_ip", st->rejected_per_ip);
    uint64_t known = st->malformed + st->idle_closed + st->overflow_closed + st->evicted + st->nomem_closed;
    nk_metrics_family(t, "natkit_hub_connections_closed_total", NK_METRICS_COUNTER,
                      "Hub connections closed, by reason");
    one(t, "natkit_hub_connections_closed_total", "reason", "malformed", st->malformed);
    one(t, "natkit_hub_connections_closed_total", "reason", "idle", st->idle_closed);
    one(t, "natkit_hub_connections_closed_total", "reason", "overflow", st->overflow_closed);
    one(t, "natkit_hub_connections_closed_total", "reason", "evicted", st->evicted);
    one(t, "natkit_hub_connections_closed_total", "reason", "nomem", st->nomem_closed);
    one(t, "natkit_hub_connections_closed_total", "reason", "other", st->closed > known ? st->closed - known : 0);
    single(t, "natkit_hub_registrations_total", NK_METRICS_COUNTER, "Successful registrations", st->registered);
    single(t, "natkit_hub_register_timeouts_total", NK_METRICS_COUNTER,
           "Connections closed without a registration in time (also in closed, reason idle)",
           st->register_timeouts);
    single(t, "natkit_hub_registrations_replaced_total", NK_METRICS_COUNTER,
           "Registrations that displaced an older connection of the same peer", st->replaced);
    single(t, "natkit_hub_auth_failures_total", NK_METRICS_COUNTER,
           "Registrations refused: bad signature, wrong ID, replayed proof", st->auth_failed);
}

static void hub_traffic(nk_metrics_text *t, const nk_hub_stats_t *st)
{
    nk_metrics_family(t, "natkit_hub_frames_total", NK_METRICS_COUNTER, "Frames, by direction");
    one(t, "natkit_hub_frames_total", "direction", "in", st->frames_in);
    one(t, "natkit_hub_frames_total", "direction", "out", st->frames_out);
    nk_metrics_family(t, "natkit_hub_bytes_total", NK_METRICS_COUNTER, "Bytes on hub connections, by direction");
    one(t, "natkit_hub_bytes_total", "direction", "in", st->bytes_in);
    one(t, "natkit_hub_bytes_total", "direction", "out", st->bytes_out);
    single(t, "natkit_hub_signalling_messages_total", NK_METRICS_COUNTER,
           "Signalling messages (connect, candidates, other signals) delivered to their peer",
           st->routed > st->relay_frames ? st->routed - st->relay_frames : 0);
    single(t, "natkit_hub_relay_frames_total", NK_METRICS_COUNTER, "Relay frames delivered to their peer",
           st->relay_frames);
    single(t, "natkit_hub_relay_bytes_total", NK_METRICS_COUNTER, "Payload bytes of the relay frames delivered",
           st->relay_bytes);
    single(t, "natkit_hub_relay_dropped_total", NK_METRICS_COUNTER, "Relay frames dropped for a slow reader",
           st->relay_dropped);
    single(t, "natkit_hub_unknown_peer_total", NK_METRICS_COUNTER, "Routed frames to a peer not registered",
           st->unknown_peer);
    single(t, "natkit_hub_pings_total", NK_METRICS_COUNTER, "Pings answered", st->pings);
    nk_metrics_family(t, "natkit_hub_frames_ignored_total", NK_METRICS_COUNTER,
                      "Frames dropped without closing the connection, by reason (unregistered_report: a REPORT "
                      "before registration; unknown_type: an extension type this hub does not know)");
    one(t, "natkit_hub_frames_ignored_total", "reason", "unregistered_report", st->ignored_reports);
    one(t, "natkit_hub_frames_ignored_total", "reason", "unknown_type", st->ignored_unknown);
    nk_metrics_family(t, "natkit_hub_cluster_frames_total", NK_METRICS_COUNTER,
                      "Cluster (--redis): frames for peers at other hubs handed to Redis, frames from other "
                      "hubs delivered here, relay frames not forwarded (queue over half full), frames that "
                      "paused their sender (queue full), and of those answered unknown peer after waiting");
    one(t, "natkit_hub_cluster_frames_total", "event", "forwarded", st->cluster_forwarded);
    one(t, "natkit_hub_cluster_frames_total", "event", "delivered", st->cluster_delivered);
    one(t, "natkit_hub_cluster_frames_total", "event", "dropped", st->cluster_dropped);
    one(t, "natkit_hub_cluster_frames_total", "event", "waited", st->cluster_paused);
    one(t, "natkit_hub_cluster_frames_total", "event", "expired", st->cluster_expired);
}

static void hub_reports(nk_metrics_text *t, const nk_hub_stats_t *st)
{
    static const char *const paths[4] = {"unknown", "direct", "turn", "hub"};
    static const uint32_t bounds_ms[] = NK_HUB_CONNECT_BOUNDS_MS;
    double bounds[NK_HUB_CONNECT_NBOUNDS];
    single(t, "natkit_hub_reports_total", NK_METRICS_COUNTER,
           "REPORT frames: peers telling how a connection settled (each end reports its own)", st->reports);
    nk_metrics_family(t, "natkit_hub_peer_connections_total", NK_METRICS_COUNTER,
                      "Peer connections settled, by path, as reported by each end");
    for (size_t i = 0; i < N(paths); i++)
        one(t, "natkit_hub_peer_connections_total", "path", paths[i], st->report_path[i]);
    for (size_t i = 0; i < NK_HUB_CONNECT_NBOUNDS; i++)
        bounds[i] = bounds_ms[i] / 1000.0;
    nk_metrics_family(t, "natkit_hub_connect_time_seconds", NK_METRICS_HISTOGRAM,
                      "Time from a connection's start to its first path, as reported by each end");
    nk_metrics_histogram(t, "natkit_hub_connect_time_seconds", NULL, 0, bounds, st->report_connect_ms,
                         NK_HUB_CONNECT_NBOUNDS, (double)st->report_connect_ms_sum / 1000.0);
    nk_metrics_family(t, "natkit_hub_nat_mapping_reports_total", NK_METRICS_COUNTER,
                      "NAT mapping behaviour (RFC 4787) of reporting peers, one per report");
    for (size_t i = 0; i < N(behaviours); i++)
        one(t, "natkit_hub_nat_mapping_reports_total", "behaviour", behaviours[i], st->report_mapping[i]);
    nk_metrics_family(t, "natkit_hub_nat_filtering_reports_total", NK_METRICS_COUNTER,
                      "NAT filtering behaviour (RFC 4787) of reporting peers, one per report");
    for (size_t i = 0; i < N(behaviours); i++)
        one(t, "natkit_hub_nat_filtering_reports_total", "behaviour", behaviours[i], st->report_filtering[i]);
}

void nk_metrics_write_hub(nk_metrics_text *t, const nk_hub_stats_t *st)
{
    hub_connections(t, st);
    hub_traffic(t, st);
    hub_reports(t, st);
}

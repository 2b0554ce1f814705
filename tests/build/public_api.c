/*
 * A program that includes only <natkit/natkit.h> (and sees only include/ on its
 * include path) names every public object's constructor and destructor, so the
 * build fails when natkit.h misses a header or the shared library misses an
 * export. Run: it checks that every address resolved and exits 0.
 */
#include <natkit/natkit.h>

#include <stdio.h>

typedef void (*nk_any_fn)(void);
#define FN(f) ((nk_any_fn)(f))

static size_t public_objects(const nk_any_fn **out)
{
    static const nk_any_fn fns[] = {
        /* base */
        FN(nk_strerror), FN(nk_error_context), FN(nk_version), FN(nk_addr_parse), FN(nk_addr_resolve), FN(nk_addr_resolve_families), FN(nk_addr_wire_put),
        FN(nk_addr_wire_get),
        /* STUN codec, transaction, client, NAT probe, server, service */
        FN(nk_stun_decode), FN(nk_stun_build_begin), FN(nk_stun_build_end),
        FN(nk_stun_txn_start),
        FN(nk_stun_client_new), FN(nk_stun_client_free), FN(nk_stun_discover),
        FN(nk_nat_probe_new), FN(nk_nat_probe_free),
        FN(nk_stun_server_new), FN(nk_stun_server_free),
        FN(nk_stun_service_start), FN(nk_stun_service_free),
        /* TURN */
        FN(nk_turn_channel_data_parse), FN(nk_turn_channel_data_write),
        FN(nk_turn_client_new), FN(nk_turn_client_free),
        FN(nk_turn_shared_new), FN(nk_turn_shared_free),
        FN(nk_turn_server_new), FN(nk_turn_server_free),
        FN(nk_turn_userdb_new), FN(nk_turn_userdb_free), FN(nk_turn_rest_key),
        /* identity, agent */
        FN(nk_identity_generate), FN(nk_identity_load), FN(nk_identity_wipe),
        FN(nk_agent_new), FN(nk_agent_free),
        /* hub */
        FN(nk_hub_frame_parse), FN(nk_hub_frame_write),
        FN(nk_hub_server_new), FN(nk_hub_server_free),
        FN(nk_hub_client_new), FN(nk_hub_client_free),
        FN(nk_hub_service_start), FN(nk_hub_service_free),
        FN(nk_hub_link_open), FN(nk_hub_link_start), FN(nk_hub_link_free),
        /* node, connections, driver */
        FN(nk_node_new), FN(nk_node_free), FN(nk_node_connect), FN(nk_conn_close),
        FN(nk_node_driver_open), FN(nk_node_driver_free),
        /* TCP upgrade */
        FN(nk_upgrade_new), FN(nk_upgrade_free),
        FN(nk_tcpseal_new_exported), FN(nk_tcpseal_new_keys), FN(nk_tcpseal_free),
        FN(nk_tcp_stream_new), FN(nk_tcp_stream_free),
        FN(nk_tcp_connect_from), FN(nk_tcp_listen_from),
        FN(nk_tcp_simopen_new), FN(nk_tcp_simopen_free),
        FN(nk_conn_tcp_new), FN(nk_conn_tcp_free),
        /* QUIC */
        FN(nk_quic_new), FN(nk_quic_free), FN(nk_quic_export),
        /* metrics */
        FN(nk_metrics_text_init), FN(nk_metrics_text_free), FN(nk_metrics_write_hub),
        FN(nk_metrics_server_start), FN(nk_metrics_server_free),
        FN(nk_hub_report_encode), FN(nk_hub_report_decode), FN(nk_hub_client_report),
    };
    *out = fns;
    return sizeof(fns) / sizeof(fns[0]);
}

int main(void)
{
    const nk_any_fn *fns;
    size_t n = public_objects(&fns);
    for (size_t i = 0; i < n; i++) {
        if (fns[i] == NULL) {
            fprintf(stderr, "public_api: entry %zu did not resolve\n", i);
            return 1;
        }
    }
    printf("public_api: %zu entry points through <natkit/natkit.h>, natkit %s\n", n, nk_version());
    return 0;
}

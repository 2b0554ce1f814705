/*
 * natkit agent: candidates given by hand (no hub). A remote address the user
 * typed is added as a server-reflexive candidate and probed at the usual
 * pace; probes stay authenticated with both identities, so a wrong address
 * can only fail, never connect to someone else.
 */
#include "internal.h"

int nk_agent_add_remote_candidate(nk_agent *a, int64_t now_ms, const nk_addr *addr)
{
    if (a == NULL || addr == NULL || nk_addr_ip_len(addr) == 0 || addr->port == 0)
        return NK_ERR_INVAL;
    int rc = nk__ag_add_remote(a, now_ms, addr, NK__CAND_SRFLX);
    if (rc < 0)
        return rc;
    if (rc == 1)
        nk__ag_checks_kick(a, now_ms, NK__AG_PACE_ROUNDS * a->check_ms, NK__AG_CHECK_WINDOW);
    return 0;
}

/*
 * natkit: the agent's path selection. The controlling side picks the best
 * valid path and nominates it (a CONFIRM with NOMINATE on that path, or a
 * sealed hub SIGNAL for the hub relay); the controlled side follows
 * nominations, and on its own only falls back when its path dies. Preference:
 * direct host pair > other direct pair > TURN > hub. Failover, direct
 * re-probing while on a relay, CONNECT retransmission and the connect
 * timeout live here too.
 */
#include <string.h>

#include "internal.h"

static int64_t min64(int64_t x, int64_t y)
{
    return x < y ? x : y;
}

nk_path_kind nk__ag_pair_kind(const nk__pair *pr)
{
    return pr->base == NK__BASE_RELAY || pr->rtype == NK__CAND_RELAY ? NK_PATH_TURN : NK_PATH_DIRECT;
}

int nk__ag_pair_usable(const nk_agent *a, const nk__pair *pr)
{
    return pr->valid && !pr->dead && (pr->base == NK__BASE_SOCKET || a->turn_ready);
}

/* A private IPv4 address (RFC 1918, 100.64/10, 169.254/16): a host candidate there is on our LAN. */
static int lan_v4(const nk_addr *a)
{
    return a->family == NK_AF_INET &&
           (a->ip[0] == 10 || (a->ip[0] == 172 && (a->ip[1] & 0xf0) == 16) || (a->ip[0] == 192 && a->ip[1] == 168) ||
            (a->ip[0] == 100 && (a->ip[1] & 0xc0) == 64) || (a->ip[0] == 169 && a->ip[1] == 254));
}

/* Direct pairs: 250 for a private IPv4 host candidate (the same LAN); every other direct pair,
 * IPv4 or IPv6 (an IPv6 host address is global: it says nothing about distance), 210, and among
 * those the faster one wins (pair_beats). */
static int pair_score(const nk__pair *pr)
{
    if (nk__ag_pair_kind(pr) == NK_PATH_DIRECT)
        return pr->rtype == NK__CAND_HOST && lan_v4(&pr->remote) ? 250 : 210;
    return pr->base == NK__BASE_RELAY && pr->rtype == NK__CAND_RELAY ? 100 : 110; /* one relay hop over two */
}

/* x is clearly faster than y: at least 20 % and 2 ms less (RTT jitter never flips a choice). */
static int clearly_faster(int64_t x, int64_t y)
{
    return 5 * x < 4 * y && x + 2 <= y;
}

/*
 * x beats y (y may be NULL: nothing usable). A higher score wins; between two direct pairs of one
 * score the faster wins (RTT from the checks), IPv6 on a tie (RFC 8421, happy eyeballs):
 * an IPv6 pair replaces an IPv4 one unless clearly slower, an IPv4 pair replaces an IPv6 one only
 * when clearly faster, a pair of the same family only when clearly faster. The two rules never
 * hold both ways for the same RTTs, so there is no flapping.
 */
static int pair_beats(const nk__pair *x, int xs, const nk__pair *y, int ys)
{
    if (xs != ys || y == NULL)
        return xs > ys;
    if (nk__ag_pair_kind(x) != NK_PATH_DIRECT || nk__ag_pair_kind(y) != NK_PATH_DIRECT || x->rtt_ms < 0 ||
        y->rtt_ms < 0)
        return 0;
    if (x->remote.family == NK_AF_INET6 && y->remote.family == NK_AF_INET)
        return !clearly_faster(y->rtt_ms, x->rtt_ms);
    return clearly_faster(x->rtt_ms, y->rtt_ms);
}

static int hub_usable(const nk_agent *a)
{
    return a->hub_up && a->peer_heard;
}

/* The score of path id as it stands now (0: not usable). */
static int path_score(nk_agent *a, uint32_t id)
{
    if (id == NK__AG_HUB_PATH)
        return hub_usable(a) ? 1 : 0;
    nk__pair *pr = nk__ag_pair_by_id(a, id);
    return pr != NULL && nk__ag_pair_usable(a, pr) ? pair_score(pr) : 0;
}

static uint32_t best_path(nk_agent *a)
{
    uint32_t best = hub_usable(a) ? NK__AG_HUB_PATH : 0;
    int score = best ? 1 : 0;
    const nk__pair *bp = NULL;
    for (size_t i = 0; i < a->npairs; i++) {
        const nk__pair *pr = a->pairs[i];
        if (nk__ag_pair_usable(a, pr) && pair_beats(pr, pair_score(pr), bp, score)) {
            score = pair_score(pr);
            best = pr->id;
            bp = pr;
        }
    }
    return best;
}

/* The valid pair pr beats the selected path. */
static int beats_selected(nk_agent *a, const nk__pair *pr)
{
    nk__pair *cur = a->selected > NK__AG_HUB_PATH ? nk__ag_pair_by_id(a, a->selected) : NULL;
    int cs = path_score(a, a->selected);
    return pair_beats(pr, pair_score(pr), cs > 0 ? cur : NULL, cs);
}

void nk__ag_path_info(const nk_agent *a, uint32_t id, nk_path_info *out)
{
    memset(out, 0, sizeof(*out));
    out->rtt_ms = -1;
    if (id == NK__AG_HUB_PATH) {
        out->kind = NK_PATH_HUB;
        out->id = id;
        if (a->hub_rtt >= 0 && a->peer_hub_rtt >= 0)
            out->rtt_ms = a->hub_rtt + a->peer_hub_rtt;
        return;
    }
    for (size_t i = 0; i < a->npairs; i++) {
        const nk__pair *pr = a->pairs[i];
        if (pr->id != id)
            continue;
        out->kind = nk__ag_pair_kind(pr);
        out->id = id;
        out->remote = pr->remote;
        out->local = pr->observed;
        if (pr->base == NK__BASE_RELAY)
            nk_turn_client_relayed(a->turn, &out->local, NULL);
        out->rtt_ms = pr->rtt_ms;
        return;
    }
}

static void nominate(nk_agent *a, int64_t now, uint32_t id)
{
    uint8_t buf[128];
    if (id == NK__AG_HUB_PATH) {
        nk__sigmsg m;
        memset(&m, 0, sizeof(m));
        m.kind = NK_HUB_T_SIGNAL;
        m.sub = NK__AG_SIG_NOMINATE_HUB;
        m.hub_rtt = a->hub_rtt;
        int n = nk__ag_signal_write(a, &m, buf, sizeof(buf));
        if (n > 0)
            nk__ag_queue_signal(a, NK_HUB_T_SIGNAL, buf, (size_t)n);
        return;
    }
    nk__pair *pr = nk__ag_pair_by_id(a, id);
    if (pr != NULL) {
        pr->nominating = 1; /* the CONFIRM that answers our next answer carries NOMINATE */
        nk__ag_checks_kick(a, now, 0, NK__AG_RETRY_WINDOW);
    }
}

void nk__ag_select(nk_agent *a, int64_t now, uint32_t id)
{
    uint32_t prev = a->selected;
    if (id == prev)
        return;
    nk__evslot *s = nk__ag_queue_event(a, NK_AGENT_EV_PATH, 0);
    if (s != NULL) {
        nk__ag_path_info(a, a->selected, &s->ev.prev);
        nk__ag_path_info(a, id, &s->ev.path);
    }
    a->selected = id;
    a->stats.path_changes++;
    a->none_since = id == 0 ? now : NK_DEADLINE_NONE;
    nk__pair *pr = nk__ag_pair_by_id(a, id);
    if (pr != NULL && pr->base == NK__BASE_RELAY && !pr->channel) {
        pr->channel = 1;
        nk_turn_client_bind_channel(a->turn, now, &pr->remote, NULL);
    }
    for (size_t i = 0; i < a->npairs; i++)
        a->pairs[i]->nominating = 0; /* an older nomination must never win over this one */
    int direct = pr != NULL && nk__ag_pair_kind(pr) == NK_PATH_DIRECT;
    if (!direct && a->retry_next == NK_DEADLINE_NONE)
        a->retry_next = now + a->retry_ms;
    /* The first path, the hub, needs no nomination: the peer selects it by itself when our
     * signal arrives. Sent anyway, it can overtake nothing but be overtaken: it travels
     * through the hub while the direct pair's NOMINATE, a few ms later, goes straight to
     * the peer and arrives first; the late hub nomination then left the peer on the hub. */
    if (a->controlling && id != 0 && !(id == NK__AG_HUB_PATH && prev == 0))
        nominate(a, now, id);
}

void nk__ag_reselect(nk_agent *a, int64_t now)
{
    if (!a->controlling && path_score(a, a->selected) > 0)
        return; /* the controlled side keeps what it was told while it works */
    nk__ag_select(a, now, best_path(a));
}

/* A direct pair is still being checked for the first time. */
static int direct_pending(const nk_agent *a)
{
    for (size_t i = 0; i < a->npairs; i++)
        if (nk__ag_pair_kind(a->pairs[i]) == NK_PATH_DIRECT && !a->pairs[i]->valid && !a->pairs[i]->dead)
            return 1;
    return 0;
}

/*
 * At the first connection a valid TURN pair does not win over the hub while direct
 * pairs are still in their first checks (until turn_hold_until): the hub already
 * carries data, and going straight to direct saves a path change.
 */
static int hold_turn(const nk_agent *a, int64_t now, const nk__pair *pr)
{
    /* NK_DEADLINE_NONE: no hold (not started, or over: a TURN pair that validates later wins at once) */
    return nk__ag_pair_kind(pr) == NK_PATH_TURN && a->turn_hold_until != NK_DEADLINE_NONE && now < a->turn_hold_until &&
           direct_pending(a);
}

void nk__ag_on_valid(nk_agent *a, int64_t now, nk__pair *pr)
{
    nk__bd_on_valid(a, now, pr);
    if (a->controlling && beats_selected(a, pr) && !hold_turn(a, now, pr))
        nk__ag_select(a, now, pr->id);
    else if (!a->controlling && pr->id == a->nominated)
        nk__ag_select(a, now, pr->id); /* back to what we were told, after a local fallback */
}

void nk__ag_on_dead(nk_agent *a, int64_t now, nk__pair *pr)
{
    pr->valid = 0;
    pr->dead = 1;
    pr->confirmed = 0;
    pr->nominating = 0;
    pr->fails = 0;
    pr->ka_next = pr->ka_wait = NK_DEADLINE_NONE;
    if (pr->id == a->selected)
        nk__ag_reselect(a, now);
    if (nk__ag_pair_kind(pr) == NK_PATH_DIRECT)
        nk__ag_regather(a, now);
    nk__ag_checks_kick(a, now, 0, NK__AG_RETRY_WINDOW);
}

void nk__ag_hub_available(nk_agent *a, int64_t now)
{
    if (a->selected == 0 && hub_usable(a))
        nk__ag_select(a, now, NK__AG_HUB_PATH);
}

/* ---- timers -------------------------------------------------------------------------------- */

static void connect_timer(nk_agent *a, int64_t now)
{
    if (a->connect_next > now)
        return;
    if (a->connect_tries >= NK__AG_CONNECT_TRIES) {
        a->connect_next = NK_DEADLINE_NONE;
        return;
    }
    nk__ag_send_candidates(a, now, NK_HUB_T_CONNECT);
    a->connect_next = now + ((int64_t)NK__AG_CONNECT_RTX << a->connect_tries);
    a->connect_tries++;
}

static void retry_timer(nk_agent *a, int64_t now)
{
    if (a->retry_next > now)
        return;
    nk__pair *pr = nk__ag_pair_by_id(a, a->selected);
    if (pr != NULL && nk__ag_pair_kind(pr) == NK_PATH_DIRECT) {
        a->retry_next = NK_DEADLINE_NONE;
        return;
    }
    nk__ag_checks_kick(a, now, 5 * a->check_ms, NK__AG_RETRY_WINDOW);
    a->retry_next = now + a->retry_ms;
}

void nk__ag_path_timer(nk_agent *a, int64_t now)
{
    if (a->turn_hold_until <= now) {
        a->turn_hold_until = NK_DEADLINE_NONE;
        uint32_t best = best_path(a);
        if (a->controlling && path_score(a, best) > path_score(a, a->selected))
            nk__ag_select(a, now, best);
    }
    connect_timer(a, now);
    retry_timer(a, now);
    if (a->selected == 0 && a->none_since != NK_DEADLINE_NONE && now - a->none_since >= a->timeout_ms) {
        nk__evslot *s = nk__ag_queue_event(a, NK_AGENT_EV_FAILED, 0);
        if (s != NULL)
            s->ev.err = NK_ERR_TIMEOUT;
        a->state = NK__AG_FAILED;
    }
}

int64_t nk__ag_path_deadline(const nk_agent *a)
{
    int64_t d = min64(min64(a->connect_next, a->retry_next), a->turn_hold_until);
    if (a->selected == 0 && a->none_since != NK_DEADLINE_NONE)
        d = min64(d, a->none_since + a->timeout_ms);
    return d;
}

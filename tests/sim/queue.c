/*
 * The test world's packet queue: datagrams in flight, a min-heap on
 * (delivery time, sequence), and a link that delays, jitters, loses,
 * duplicates and reorders them from the world's seeded random source.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

void sim_queue_init(sim_queue *q, sim_rng *rng)
{
    memset(q, 0, sizeof(*q));
    q->rng = rng;
}

void sim_queue_free(sim_queue *q)
{
    for (size_t i = 0; i < q->n; i++)
        free((void *)q->heap[i].data);
    free((void *)q->cur.data);
    free(q->heap);
    memset(q, 0, sizeof(*q));
}

static int before(const sim_pkt *a, const sim_pkt *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void swap(sim_pkt *a, sim_pkt *b)
{
    sim_pkt t = *a;
    *a = *b;
    *b = t;
}

void sim_queue_put(sim_queue *q, int64_t at, const sim_pkt *k)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 64;
        q->heap = realloc(q->heap, q->cap * sizeof(*q->heap));
        assert(q->heap != NULL);
    }
    uint8_t *copy = malloc(k->len ? k->len : 1);
    assert(copy != NULL);
    if (k->len)
        memcpy(copy, k->data, k->len);
    size_t i = q->n++;
    q->heap[i] = *k;
    q->heap[i].at = at;
    q->heap[i].seq = q->seq++;
    q->heap[i].data = copy;
    while (i > 0 && before(&q->heap[i], &q->heap[(i - 1) / 2])) {
        swap(&q->heap[i], &q->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
}

int sim_queue_send(sim_queue *q, int64_t now, const sim_pkt *k)
{
    const sim_link *l = &q->link;
    q->nsent++;
    if (sim_rng_unit(q->rng) < l->loss) {
        q->nlost++;
        return 0;
    }
    int copies = sim_rng_unit(q->rng) < l->dup ? 2 : 1;
    q->ndup += (uint64_t)(copies - 1);
    for (int c = 0; c < copies; c++) {
        int64_t d = l->delay_ms + (l->jitter_ms > 0 ? (int64_t)(sim_rng_next(q->rng) % (uint64_t)l->jitter_ms) : 0);
        if (l->reorder > 0 && sim_rng_unit(q->rng) < l->reorder) {
            d += l->reorder_ms;
            q->nreordered++;
        }
        sim_queue_put(q, now + d, k);
    }
    return copies;
}

int64_t sim_queue_next(const sim_queue *q)
{
    return q->n ? q->heap[0].at : SIM_NEVER;
}

const sim_pkt *sim_queue_pop(sim_queue *q, int64_t now)
{
    if (q->n == 0 || q->heap[0].at > now)
        return NULL;
    free((void *)q->cur.data);
    q->cur = q->heap[0];
    q->heap[0] = q->heap[--q->n];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->n && before(&q->heap[l], &q->heap[m]))
            m = l;
        if (r < q->n && before(&q->heap[r], &q->heap[m]))
            m = r;
        if (m == i)
            break;
        swap(&q->heap[i], &q->heap[m]);
        i = m;
    }
    q->ndelivered++;
    return &q->cur;
}

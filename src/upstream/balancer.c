/* balancer.c - see balancer.h. */
#include "upstream/balancer.h"

int lb_pick(struct lb_group *g, unsigned long long exclude)
{
    int best = -1, total = 0;
    for (size_t i = 0; i < g->n && i < 64; i++) {
        struct lb_server *s = &g->servers[i];
        if (exclude & (1ULL << i)) continue;
        s->current += s->weight;
        total += s->weight;
        if (best < 0 || s->current > g->servers[best].current) best = (int)i;
    }
    if (best >= 0) {
        g->servers[best].current -= total;
        g->servers[best].active++;
    }
    return best;
}

void lb_release(struct lb_group *g, int idx, int failed)
{
    if (idx < 0 || (size_t)idx >= g->n) return;
    struct lb_server *s = &g->servers[idx];
    if (s->active) s->active--;
    s->fails = failed ? s->fails + 1 : 0;
}

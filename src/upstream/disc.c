/* disc.c - see disc.h. */
#include "upstream/disc.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int same_server(const struct disc_server *a, const struct disc_server *b)
{
    return a->port == b->port && strcasecmp(a->host, b->host) == 0;
}

/* The ACTIVE or DRAINING slot holding w, or -1. */
static int find_slot(const struct disc_set *set, const struct disc_server *w)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->slot[i].state != DISC_EMPTY && same_server(&set->slot[i].s, w)) return (int)i;
    return -1;
}

/* A slot for a new server (see disc.h), or -1. `taken` marks slots that
 * this apply has already given a server. */
static int free_slot(struct disc_set *set, uint64_t taken)
{
    int best = -1;
    for (size_t i = 0; i < set->n; i++)
        if (set->slot[i].state == DISC_EMPTY) return (int)i;
    if (set->n < DISC_MAX) return (int)set->n++;
    for (size_t i = 0; i < set->n; i++) {
        const struct disc_slot *s = &set->slot[i];
        if (s->state != DISC_DRAINING || (taken & (1ULL << i))) continue;
        if (best < 0 || s->drained < set->slot[best].drained) best = (int)i;
    }
    return best;
}

static int listed_before(const struct disc_server *want, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (same_server(&want[j], &want[i])) return 1;
    return 0;
}

static void update_slot(struct disc_slot *s, const struct disc_server *w, struct disc_diff *d, size_t i)
{
    if (s->state == DISC_ACTIVE && s->s.weight == w->weight && s->s.backup == w->backup &&
        s->s.maxconn == w->maxconn) {
        d->kept++;
        return;
    }
    /* A DRAINING server named again comes back as it was: same slot. */
    if (s->state == DISC_ACTIVE) d->updated++;
    else d->added++;
    s->s.weight = w->weight;
    s->s.backup = w->backup;
    s->s.maxconn = w->maxconn;
    s->s.spec = w->spec;
    s->state = DISC_ACTIVE;
    d->changed |= 1ULL << i;
}

void disc_apply(struct disc_set *set, const struct disc_server *want, size_t n, struct disc_diff *d)
{
    uint64_t wanted = 0;   /* slots that hold a wanted server after this */
    memset(d, 0, sizeof(*d));
    /* Kept servers first, so that a new one never takes a slot whose
     * draining server is wanted again. */
    for (size_t i = 0; i < n; i++) {
        int k = find_slot(set, &want[i]);
        if (k < 0 || (wanted & (1ULL << k))) continue;
        wanted |= 1ULL << k;
        update_slot(&set->slot[k], &want[i], d, (size_t)k);
    }
    for (size_t i = 0; i < set->n; i++) {
        struct disc_slot *s = &set->slot[i];
        if (s->state != DISC_ACTIVE || (wanted & (1ULL << i))) continue;
        s->state = DISC_DRAINING;
        s->drained = ++set->seq;
        d->removed++;
        d->changed |= 1ULL << i;
    }
    for (size_t i = 0; i < n; i++) {
        if (find_slot(set, &want[i]) >= 0 || listed_before(want, i)) continue;
        int k = free_slot(set, wanted);
        if (k < 0) {
            d->dropped++;
            continue;
        }
        struct disc_slot *s = &set->slot[k];
        s->s = want[i];
        s->state = DISC_ACTIVE;
        s->ver++;
        wanted |= 1ULL << k;
        d->added++;
        d->changed |= 1ULL << k;
    }
}

size_t disc_from_srv(const struct disc_srv *recs, size_t n, int backup_all, unsigned maxconn, unsigned spec,
                     struct disc_server *out, size_t *nout, size_t cap)
{
    unsigned best = 0x10000;
    size_t lost = 0;
    for (size_t i = 0; i < n; i++)
        if (recs[i].priority < best) best = recs[i].priority;
    for (size_t i = 0; i < n; i++) {
        if (*nout >= cap) {
            lost++;
            continue;
        }
        struct disc_server *s = &out[(*nout)++];
        memset(s, 0, sizeof(*s));
        snprintf(s->host, sizeof(s->host), "%s", recs[i].addr);
        s->port = recs[i].port;
        s->weight = recs[i].weight ? recs[i].weight : 1;
        s->backup = (uint8_t)(backup_all || recs[i].priority != best);
        s->maxconn = maxconn;
        s->spec = spec;
    }
    return lost;
}

unsigned disc_refresh_ms(unsigned ttl_s, unsigned min_ms, unsigned max_ms)
{
    if (max_ms < min_ms) max_ms = min_ms;
    if (ttl_s == 0 || ttl_s >= max_ms / 1000u + 1) return max_ms;
    unsigned ms = ttl_s * 1000u;
    return ms < min_ms ? min_ms : ms > max_ms ? max_ms : ms;
}

void disc_server_name(const struct disc_server *s, char *out, size_t outlen)
{
    snprintf(out, outlen, strchr(s->host, ':') ? "[%s]:%u" : "%s:%u", s->host, s->port);
}

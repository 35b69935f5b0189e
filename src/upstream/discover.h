/* discover.h - DNS discovery of an upstream group's servers, on a loop.
 *
 * One discoverer per relay listener whose servers come from DNS (SRV
 * records, or every address of a name: config/config.h, upstream_cfg.srv
 * and .resolve_all), on worker 0's loop like the health checker, so the
 * set, the health checks and the metrics agree on one table of slots
 * (upstream/disc.h). It looks every name up, merges the answers with the
 * group's static servers, applies them to its own copy of the table
 * (disc_apply) and, when something changed, publishes the table in a
 * struct disc_shared that the workers copy when its generation moves: one
 * atomic load per pick when nothing changed, the mutex only for that copy
 * (after a change) and for the scrape. Per-worker balancer state stays
 * per worker.
 *
 * Timing (HAProxy's `resolvers` with `hold valid`, simplified): the first
 * lookups start as soon as the loop runs; each name is looked up again
 * after its answer's TTL clamped to [refresh_min, refresh_max]
 * (disc_refresh_ms); a failed lookup is retried after refresh_min. A
 * failed lookup, or an empty answer, keeps that name's last known servers:
 * DNS trouble never empties a group. Each name's change between "answers"
 * and "fails" is logged once (warning, then info when it recovers).
 *
 * Bounds: DISC_MAX servers per group (more are dropped, logged), at most
 * RESOLVER_MAX_SRV records per SRV answer, one address per SRV target (the
 * preferred family's first), RESOLVER_MAX_ADDRS addresses per `resolve all`
 * name. One round's lookups at a time per group.
 */
#ifndef FERRY_DISCOVER_H
#define FERRY_DISCOVER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "upstream/disc.h"

struct loop;
struct resolver;

/* The table the workers and the scrape read. */
struct disc_shared {
    pthread_mutex_t mu;
    unsigned gen;                 /* atomic: bumped after each publish */
    struct disc_set set;          /* under mu */
};

void disc_shared_init(struct disc_shared *sh);
void disc_shared_destroy(struct disc_shared *sh);
/* Copies the table into *out when its generation is not *seen (then
 * updates *seen and returns 1); else 0. Any thread. */
int disc_shared_sync(struct disc_shared *sh, unsigned *seen, struct disc_set *out);
/* Slot i's server name ("" when EMPTY) and whether it is ACTIVE; the
 * number of slots in use. For the scrape (any thread). */
size_t disc_shared_count(struct disc_shared *sh);
int disc_shared_slot(struct disc_shared *sh, size_t i, char *name, size_t namelen);

enum discover_kind { DISCOVER_STATIC, DISCOVER_SRV, DISCOVER_ALL };

/* A configured server entry. */
struct discover_spec {
    enum discover_kind kind;
    const char *host;             /* SRV name or host (copied) */
    uint16_t port;                /* not for SRV */
    int weight;                   /* not for SRV */
    int backup;
    unsigned maxconn;
};

struct discover_opts {
    unsigned refresh_min_ms, refresh_max_ms;
    int prefer_ipv6;
};

/* Told after a publish about each slot that changed (added: ACTIVE with a
 * new server or again; DRAINING: removed), on the loop's thread. */
typedef void discover_changed_fn(void *arg, size_t slot, const struct disc_slot *s);

struct discoverer;

/* Starts discovery of specs[0, n) (1 <= n <= DISC_MAX) with resolver r
 * (which must outlive it) on loop l, publishing into sh. name is the
 * group's, for logs. NULL with a reason in err on bad input or out of
 * memory. */
struct discoverer *discover_start(struct loop *l, struct resolver *r, const char *name,
                                  const struct discover_spec *specs, size_t n, struct disc_shared *sh,
                                  const struct discover_opts *o, discover_changed_fn *changed, void *arg,
                                  char *err, size_t errlen);
/* Cancels timers and lookups; freed after the current batch. NULL is a no-op. */
void discover_stop(struct discoverer *d);

#endif

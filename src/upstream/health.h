/* health.h - active health checks of one upstream group, shared by all workers.
 *
 * Every worker has its own copy of every balancer group, but probing each
 * server once per worker would multiply the check traffic by the number of
 * CPUs. So ONE checker per group runs on one loop (worker 0) and publishes
 * each server's state into a small array of struct health_shared that every
 * worker reads without a lock (health_sync copies it into the worker's own
 * lb_group).
 *
 * A check of one server: resolve its host (through the resolver, so DNS
 * changes are followed; literals and cache hits cost no query), connect to
 * the first address, optionally send bytes, optionally wait for a substring
 * in the first HEALTH_RX_MAX bytes of the answer, close. It passes when all
 * of that completes within timeout_ms of its start; it fails on a resolve
 * failure, refused / reset / unreachable, mismatch, or the deadline. rise
 * consecutive passes bring a down server up, fall consecutive failures take
 * an up server down (the lb_health_result rules); each change is logged once
 * (DOWN at warn, UP at info, in HAProxy's words). Servers start up.
 *
 * Scheduling: a server is checked every interval_ms (from the start of one
 * check to the start of the next; a check longer than the interval delays
 * the next one, never overlaps it: at most one check per server is in
 * flight). The first checks of the n servers are spread over one interval.
 *
 * Threads: health_start/health_stop and the checks run on the checker's loop
 * thread only; health_shared is the only thing other threads touch.
 */
#ifndef FERRY_HEALTH_H
#define FERRY_HEALTH_H

#include <stddef.h>

#include "net/addr.h"
#include "upstream/balancer.h"

struct loop;
struct resolver;

#define HEALTH_SEND_MAX   1024u    /* bytes sent after connect */
#define HEALTH_EXPECT_MAX 1024u    /* length of the expected substring */
#define HEALTH_RX_MAX     4096u    /* answer bytes searched for it */

/* One per server, shared by all workers. Written only by the checker. */
struct health_shared {
    int up;             /* 1 up, 0 down; __atomic_store_n(RELEASE) by the checker */
    int last_ok;        /* the latest check passed; written before gen */
    unsigned gen;       /* bumped (atomic, RELEASE) after every completed check,
                         * after `up` was written */
    unsigned transitions;   /* up<->down changes (atomic; metrics) */
};

static inline unsigned health_transitions(const struct health_shared *s)
{
    return __atomic_load_n(&s->transitions, __ATOMIC_RELAXED);
}

struct health_opts {
    unsigned interval_ms;       /* between checks of one server; 0 = 2000 */
    unsigned timeout_ms;        /* whole check (resolve, connect, send, expect);
                                 * 0 = min(interval, 2000) */
    unsigned rise, fall;        /* 0 = 2 and 3 */
    const char *send;           /* optional, sent after connect (binary ok) */
    size_t send_len;            /* <= HEALTH_SEND_MAX */
    const char *expect;         /* optional substring (NULL or "" = none),
                                 * strlen <= HEALTH_EXPECT_MAX */
    int prefer_ipv6;            /* names with both families: try IPv6 first */
    int slots;                  /* a DNS-discovered group: servers with an
                                 * empty host are parked (not checked, not
                                 * counted) until health_set_server() */
};

struct health_checker;

/* Starts checking servers[0..n) (1 <= n <= LB_MAX_SERVERS; hosts and ports
 * are copied) on loop l, resolving with r (which must outlive the checker).
 * name is the group name for logs (copied). shared has n entries and is
 * initialised here to up = 1, gen = 0; it must outlive the checker (workers
 * keep reading it). o may be NULL (defaults). No check runs before the loop
 * does. Returns NULL with a one-line reason in err on bad options or out of
 * memory. */
struct health_checker *health_start(struct loop *l, struct resolver *r, const char *name,
                                    const struct host_port *servers, size_t n,
                                    struct health_shared *shared, const struct health_opts *o,
                                    char *err, size_t errlen);

/* Points slot i (< the n given to health_start) at a new server, or parks
 * it (hp NULL or an empty host): the check in flight is abandoned, the
 * slot's state starts again (up, published with a new generation, so that
 * workers take it), and a server's first check starts within a second.
 * Same server as before: only un-parks it if parked. Loop thread only. */
void health_set_server(struct health_checker *hc, size_t i, const struct host_port *hp);

/* Cancels every timer, lookup and socket (checks in flight are abandoned,
 * their sockets reset, nothing is published). The memory is released with
 * loop_defer_free, so this is safe from any callback on the loop's thread,
 * including with events for the check sockets pending in the current batch.
 * Call it before resolver_free() and loop_free(). NULL is a no-op. */
void health_stop(struct health_checker *hc);

/* Readers (any thread). */
static inline int health_is_up(const struct health_shared *s)
{
    return __atomic_load_n(&s->up, __ATOMIC_ACQUIRE);
}

static inline unsigned health_gen(const struct health_shared *s)
{
    return __atomic_load_n(&s->gen, __ATOMIC_ACQUIRE);
}

/* Copies published states into a worker's own group g (servers[0..g->n),
 * same order as given to health_start): for each server whose gen moved
 * since seen[i] (the worker's own array, zero at start), sets it up or down
 * with lb_set_up if its state differs. A server passively ejected by this
 * worker thus comes back at the next check that passes. Returns the number
 * of servers whose state changed. Cheap: n atomic loads when nothing moved. */
size_t health_sync(const struct health_shared *shared, unsigned *seen, struct lb_group *g);

#endif

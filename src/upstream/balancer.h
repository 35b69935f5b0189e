/* balancer.h - upstream server selection (pure: no sockets, no clock).
 *
 * A group is a per-worker-thread array of servers plus an algorithm (an ops
 * table), so picks need no lock. Selection happens in two steps:
 *
 *   1. eligibility, common to every algorithm: a server is eligible when it
 *      is up, not excluded by the caller (already tried for this client) and
 *      below its maxconn. Backup servers are considered only when no primary
 *      is eligible (down, excluded or full alike);
 *   2. the algorithm picks one of the eligible servers:
 *      roundrobin  nginx's smooth weighted round robin: weights 3:1 give
 *                  A A B A, evenly spread, not A A A B;
 *      leastconn   lowest active/weight; ties share by smooth round robin;
 *      source      weighted rendezvous hashing of the client address (see
 *                  balancer.c for why not a ring or Maglev): removing one of
 *                  N servers moves only that server's clients, adding one
 *                  moves about 1/(N+1) of them;
 *      random2     two random weighted draws, the less loaded (active/weight)
 *                  wins; the RNG state lives in the group, seeded by the
 *                  caller, so runs are reproducible.
 *
 * Health: `down` is set by passive ejection (`fall` consecutive connect
 * failures, when `passive` is on) or by active checks (lb_health_result with
 * `rise`/`fall`), and cleared only by checks or lb_set_up. A zeroed server
 * with weight >= 1 is up, primary and unlimited, and a zeroed group with
 * servers/n set is a valid roundrobin group without passive ejection.
 *
 * Only the first LB_MAX_SERVERS servers fit in the 64-bit masks; the rest
 * are never picked (the config caps upstreams at 64).
 */
#ifndef FERRY_BALANCER_H
#define FERRY_BALANCER_H

#include <stddef.h>
#include <stdint.h>

#define LB_MAX_SERVERS 64

/* lb_choose results besides an index. */
#define LB_NONE (-1)    /* every server is down or excluded: fail the client */
#define LB_FULL (-2)    /* none eligible, but some up and untried one is at
                         * maxconn: the client may wait for a release */

struct lb_server {
    int weight;              /* >= 1 (values < 1 count as 1) */
    int current;             /* smooth WRR score */
    unsigned active;         /* sessions using it now (pick ++, release --) */
    unsigned fails;          /* consecutive connect failures (passive check) */
    unsigned maxconn;        /* 0 = unlimited; active >= maxconn is full */
    uint64_t key;            /* identity for `source`: set it from the server's
                              * name (lb_key) so that clients keep their server
                              * when others are added or removed; 0 = index */
    uint8_t down;            /* 0 up (zero-initialised servers are usable) */
    uint8_t backup;          /* used only when no primary is eligible */
    uint8_t off;             /* not in the group now (a DNS-discovered server
                              * that went away, or an unused slot): never
                              * picked; sessions on it still release it */
    unsigned hc_ok, hc_fail; /* consecutive active check results */
};

struct lb_group;

/* An algorithm. pick() gets a non-empty mask of eligible servers (bit i =
 * servers[i]) and returns one of them; ip/iplen may be NULL/0. release(),
 * which may be NULL, runs after the common bookkeeping of lb_release. */
struct lb_ops {
    const char *name;
    int (*pick)(struct lb_group *g, uint64_t eligible, const uint8_t *ip, size_t iplen);
    void (*release)(struct lb_group *g, int idx, int failed);
};

struct lb_group {
    struct lb_server *servers;   /* caller's array, n entries */
    size_t n;
    const struct lb_ops *ops;    /* NULL = roundrobin */
    unsigned rise, fall;         /* checks to go up / failures to go down;
                                  * 0 counts as 1 */
    uint8_t passive;             /* connect failures count toward fall too.
                                  * Only checks bring a server back, so turn
                                  * this on only when health checks run. */
    uint64_t rng;                /* random2 state (splitmix64) */
};

extern const struct lb_ops lb_roundrobin, lb_leastconn, lb_source, lb_random2;

/* Ops by name ("roundrobin", "leastconn", "source", "random2"), or NULL. */
const struct lb_ops *lb_ops_find(const char *name);

/* Sets up g over servers[0..n): algorithm by name (NULL = roundrobin),
 * rise 2, fall 3, passive off, rng 0. Server fields are left as they are.
 * Returns 0, or -1 with err naming the bad part. */
int lb_group_init(struct lb_group *g, struct lb_server *servers, size_t n, const char *algo,
                  char *err, size_t errlen);
/* Seeds random2's generator; any value works, 0 included. */
void lb_group_seed(struct lb_group *g, uint64_t seed);

/* Stable identity for a server name such as "host:port" (never 0). */
uint64_t lb_key(const char *name);

/* Picks a server for a client, skipping those whose bit is set in exclude.
 * ip is the client address, 4 or 16 bytes (IPv4-mapped IPv6 hashes as the
 * IPv4 address); only `source` uses it, and falls back to round robin when
 * it is NULL. Returns the index (its active count is incremented: every
 * successful pick must be paired with one lb_release), LB_FULL or LB_NONE. */
int lb_choose(struct lb_group *g, uint64_t exclude, const uint8_t *ip, size_t iplen);

/* lb_choose without a client address; -1 for both LB_FULL and LB_NONE. */
int lb_pick(struct lb_group *g, unsigned long long exclude);

/* Bookkeeping at session or attempt end: active--, and failed != 0 counts a
 * passive failure (0 resets the count). Returns 1 when this failure marked
 * the server down (log it), else 0. Out-of-range idx is ignored. */
int lb_release(struct lb_group *g, int idx, int failed);
/* A connect to idx succeeded: its run of consecutive failures is over. */
void lb_connected(struct lb_group *g, int idx);

/* Active health check result (ok != 0 passed). rise consecutive passes bring
 * a down server up, fall consecutive failures take an up server down.
 * Returns 1 when the state changed, else 0. */
int lb_health_result(struct lb_group *g, int idx, int ok);

/* Forces a state (admin, or a checker's own logic); clears the failure
 * counters. Returns 1 when the state changed. */
int lb_set_up(struct lb_group *g, int idx, int up);
int lb_is_up(const struct lb_group *g, int idx);

#endif

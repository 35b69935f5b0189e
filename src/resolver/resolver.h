/* resolver.h - asynchronous DNS (c-ares) driven by the worker's own loop.
 *
 * A resolver lives on one loop and is used only from that loop's thread (it
 * is not thread-safe; its c-ares channel is never shared). One per worker is
 * the intended use - it shares the cache and sockets - but several on one
 * loop also work: they share nothing. DNS never blocks: c-ares sockets are
 * watched by the loop, its timeouts run on a loop timer, and every lookup has
 * its own deadline timer, so a server that never answers still yields
 * RESOLVER_TIMEOUT at timeout_ms.
 *
 * In-flight bound: c-ares cannot cancel one query (ares_cancel() cancels
 * them all), so a cancelled or timed-out lookup stays with c-ares until its
 * own timeout ("detached"). A client that opens connections to unique names
 * and closes them would keep rate x timeout queries running. So a resolver
 * refuses a lookup that needs DNS (not a literal, not a cache hit) while
 * max_inflight queries are with c-ares, or max_detached of them are
 * detached; the refused lookup answers RESOLVER_BUSY like any other answer
 * (later, from the loop) and is counted in resolver_stats().refused.
 *
 * Callback contract (what callers rely on):
 *   - the callback is called exactly once per lookup, unless the lookup is
 *     cancelled or the resolver freed first, and NEVER from inside
 *     resolver_lookup(): always later, from a loop timer;
 *   - it is never called from inside c-ares either, so it may start lookups,
 *     cancel other queries and even call resolver_free();
 *   - the query handle is invalid from the moment the callback is entered
 *     (do not cancel a query from its own callback).
 */
#ifndef FERRY_RESOLVER_H
#define FERRY_RESOLVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;

#define RESOLVER_MAX_ADDRS 8
#define RESOLVER_MAX_SERVERS 16     /* DNS servers one resolver takes */

enum resolver_status {
    RESOLVER_OK = 0,
    RESOLVER_NOTFOUND = -1,     /* NXDOMAIN, no address of the wanted family, bad name */
    RESOLVER_TIMEOUT = -2,      /* no answer before timeout_ms */
    RESOLVER_FAILED = -3,       /* SERVFAIL, REFUSED, connection refused, out of memory... */
    RESOLVER_BUSY = -4,         /* refused: too many lookups in flight (see above) */
};

enum resolver_family {
    RESOLVER_PREFER_IPV4 = 0,
    RESOLVER_PREFER_IPV6 = 1,
    RESOLVER_IPV4_ONLY = 2,
    RESOLVER_IPV6_ONLY = 3,
};

struct resolver_opts {
    /* NULL = system (/etc/resolv.conf); else "IP[:PORT],IP[:PORT]" with IPv6
     * as [v6]:port or a bare v6 address (port 53). At most 16 servers. */
    const char *servers;
    /* Overall deadline per lookup; 0 = 5000. */
    unsigned timeout_ms;
    /* 0 = no cache; else at most this many names (LRU). Positive answers are
     * kept for their TTL capped at 300 s (TTL 0 is not cached), NXDOMAIN /
     * NODATA for 5 s, timeouts and failures not at all. */
    unsigned cache_entries;
    /* Queries with c-ares at once, detached ones included; 0 = 1024. */
    unsigned max_inflight;
    /* Of those, detached ones (cancelled or timed out); 0 = max_inflight / 4,
     * at least 1. Above either, new DNS lookups get RESOLVER_BUSY. */
    unsigned max_detached;
};

struct resolver_stats {
    size_t inflight;            /* queries c-ares holds now, detached ones included */
    size_t detached;            /* of those, whose user let go (cancelled, timed out) */
    uint64_t refused;           /* lookups answered RESOLVER_BUSY since resolver_new() */
};

struct resolved {
    size_t n;                                           /* 1..RESOLVER_MAX_ADDRS when OK, else 0 */
    unsigned ttl;       /* seconds the answer is good for (the smallest TTL,
                         * at most 300; a cache hit's time left); 0 = none
                         * known (a literal, /etc/hosts) */
    struct sockaddr_storage addr[RESOLVER_MAX_ADDRS];   /* port already set */
    socklen_t len[RESOLVER_MAX_ADDRS];
};

/* `res` is never NULL and is valid only during the call; res->n == 0 unless
 * status == RESOLVER_OK. */
typedef void resolver_cb(void *arg, int status, const struct resolved *res);

struct resolver;
struct resolver_query;

/* `o` may be NULL (all defaults). Returns NULL on failure with a one-line
 * reason in err (bad server address, c-ares init failure, out of memory). */
struct resolver *resolver_new(struct loop *l, const struct resolver_opts *o,
                              char *err, size_t errlen);

/* Cancels everything outstanding without calling callbacks. Must run on the
 * loop's thread and before loop_free(). Safe from inside a resolver callback. */
void resolver_free(struct resolver *r);

/* Looks up A and/or AAAA for `host` (per `fam`), /etc/hosts first. Results
 * come ordered by preference: the preferred family first, then the other;
 * when both families exist and there are more than RESOLVER_MAX_ADDRS
 * addresses, one slot is kept for the other family as a fallback. IPv4 and
 * IPv6 literals ("::1" or "[::1]") answer without DNS, as do cache hits.
 * Returns NULL only on out-of-memory (errno set). */
struct resolver_query *resolver_lookup(struct resolver *r, const char *host, uint16_t port,
                                       enum resolver_family fam, resolver_cb *cb, void *arg);

/* After this the callback is never called. Safe at any time before the
 * callback ran, including from inside another query's callback. NULL is a
 * no-op. */
void resolver_cancel(struct resolver_query *q);

/* ---- SRV records (upstream discovery) ---- */

#define RESOLVER_MAX_SRV 64         /* records kept from one answer; more are ignored */

struct resolver_srv_rec {
    char target[256];
    uint16_t priority, weight, port;
};

struct resolved_srv {
    size_t n;                       /* 1..RESOLVER_MAX_SRV when OK, else 0 */
    size_t ignored;                 /* records beyond RESOLVER_MAX_SRV */
    unsigned ttl;                   /* smallest TTL of the answer's records, at most 300 */
    struct resolver_srv_rec rec[RESOLVER_MAX_SRV];
};

/* Like resolver_cb; res is never NULL, valid only during the call. */
typedef void resolver_srv_cb(void *arg, int status, const struct resolved_srv *res);

/* Looks up the SRV records of `name` (ares_search, class IN), with the same
 * deadline, in-flight bound and callback contract as resolver_lookup (and
 * resolver_cancel to let go). Not cached. Records whose target is "." (no
 * service) are left out; none left is RESOLVER_NOTFOUND. Returns NULL only
 * on out-of-memory. */
struct resolver_query *resolver_srv(struct resolver *r, const char *name, resolver_srv_cb *cb, void *arg);

/* The pure part: parses a DNS response to an SRV query (buf, len bytes):
 * RESOLVER_OK with out filled, RESOLVER_NOTFOUND (NXDOMAIN, no SRV record),
 * or RESOLVER_FAILED (another rcode, or a malformed message: every length
 * is checked against len, names are followed through at most 32
 * compression pointers). */
int resolver_srv_parse(const uint8_t *buf, size_t len, struct resolved_srv *out);

const char *resolver_strerror(int status);

/* Query objects still alive, including those whose user was already answered
 * (timeout) or cancelled but which c-ares has not released yet. For tests and
 * metrics. */
size_t resolver_outstanding(const struct resolver *r);

void resolver_get_stats(const struct resolver *r, struct resolver_stats *out);

#endif

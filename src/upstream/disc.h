/* disc.h - the server set of a DNS-discovered upstream group (pure: no
 * sockets, no clock, no loop).
 *
 * A group that names a DNS SRV record (`-u srv://_svc._tcp.example`) or a
 * name whose every address is a server (`--resolve all`) has a set that
 * changes at run time. It is kept as a table of DISC_MAX slots, HAProxy's
 * `server-template` idea: a server keeps its slot (its index in the
 * balancer, the health checks and the metrics) for as long as DNS keeps
 * naming it, so nothing indexed by slot has to move when others come and
 * go.
 *
 *   ACTIVE    in the set: the balancer may pick it;
 *   DRAINING  no longer named by DNS: never picked, sessions in flight go
 *             on; its name stays visible (logs, metrics) until the slot is
 *             needed again;
 *   EMPTY     never used.
 *
 * A new server takes the lowest EMPTY slot, else the DRAINING slot that has
 * drained longest (its sessions are the likeliest to be gone), else it is
 * dropped and counted (more than DISC_MAX servers). Each change of a slot's
 * server bumps its `ver`, so a worker that copies the table knows to reset
 * its per-slot state.
 *
 * SRV records (RFC 2782): the records with the lowest priority value are
 * the active servers, the others backups (used only when no active server
 * is up, the balancer's `backup`); the weight feeds the balancer's weight
 * (0 counts as 1).
 */
#ifndef FERRY_DISC_H
#define FERRY_DISC_H

#include <stddef.h>
#include <stdint.h>

#define DISC_MAX 64                 /* servers of one group, as LB_MAX_SERVERS */
#define DISC_HOST_MAX 256           /* as struct host_port */

enum disc_state { DISC_EMPTY = 0, DISC_ACTIVE, DISC_DRAINING };

/* A server the group should have. host is an IP literal for discovered
 * servers, or the configured name for static ones. */
struct disc_server {
    char host[DISC_HOST_MAX];
    uint16_t port;
    int weight;                     /* >= 1 */
    uint8_t backup;
    unsigned maxconn;
    unsigned spec;                  /* which configured server entry made it */
};

struct disc_slot {
    struct disc_server s;
    uint8_t state;                  /* enum disc_state */
    uint32_t ver;                   /* bumped when the slot's server changes */
    uint64_t drained;               /* order in which slots began draining */
};

struct disc_set {
    struct disc_slot slot[DISC_MAX];
    size_t n;                       /* slots ever used: [n, DISC_MAX) are EMPTY */
    uint64_t seq;                   /* drain order counter */
};

/* What disc_apply did. */
struct disc_diff {
    unsigned added, removed, updated, kept, dropped;
    uint64_t changed;               /* bit i: slot i was added, removed or updated */
};

/* Makes `want` (n entries, any order; a host:port listed twice counts once,
 * the first wins) the set's ACTIVE servers: kept ones stay in their slots
 * (weight, backup, maxconn updated), missing ones drain, new ones take
 * slots as described above. Hosts compare case-insensitively. */
void disc_apply(struct disc_set *set, const struct disc_server *want, size_t n, struct disc_diff *d);

/* One SRV answer record with its target's address. */
struct disc_srv {
    char addr[DISC_HOST_MAX];       /* the target's address (literal) */
    uint16_t port, priority, weight;
};

/* Appends the servers of SRV records recs[0, n) to out (at most cap
 * entries in all; *nout is updated): the lowest priority value is active,
 * the others are backups (all are when backup_all); weight 0 counts as 1;
 * maxconn and spec are copied to each. Returns how many did not fit. */
size_t disc_from_srv(const struct disc_srv *recs, size_t n, int backup_all, unsigned maxconn, unsigned spec,
                     struct disc_server *out, size_t *nout, size_t cap);

/* When to look again after an answer with this TTL (seconds): the TTL
 * clamped to [min_ms, max_ms]; a TTL of 0 (none known, as for a literal or
 * /etc/hosts) waits max_ms. min_ms > max_ms is treated as min_ms == max_ms. */
unsigned disc_refresh_ms(unsigned ttl_s, unsigned min_ms, unsigned max_ms);

/* "host:port", with [brackets] for an IPv6 literal. */
void disc_server_name(const struct disc_server *s, char *out, size_t outlen);

#endif

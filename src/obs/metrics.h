/* metrics.h - Prometheus metrics: per-thread counters, summed at scrape time.
 *
 * The data path takes no lock and shares no cache line: every worker
 * thread writes only its own counter blocks (one 64-byte aligned block per
 * listener per worker, one process-wide block per worker), with plain
 * relaxed stores (metrics_ctr_add: a load, an add, a store; no locked
 * instruction). The scraper (the API thread) reads them with relaxed
 * atomic loads and sums across workers, so a scrape never waits for a
 * worker and a worker never waits for a scrape. Each hook is a one-liner
 * in the layer that knows the event; obs/ knows no session, listener or
 * server type: names come in as strings, states through callbacks.
 *
 * A thread says which block is its own once (metrics_thread_slot(id),
 * worker threads at start). A thread without a slot (main, API, tests)
 * shares one extra block and adds atomically.
 *
 * Rendering (metrics_render_*) is pure over the registry: text exposition
 * format 0.0.4, HELP and TYPE once per family, label values escaped (\\,
 * \", \n). Counters of a listener removed at run time go with it.
 */
#ifndef FERRY_METRICS_H
#define FERRY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_ENDS 48        /* end reasons (relay's enum sess_end) */
#define METRICS_MAX_SERVERS 64     /* upstream servers of one listener */
#define METRICS_HIST_MAX 16        /* finite buckets of one histogram */

/* Why a connection was refused: the `reason` label. */
enum metrics_refuse {
    MREF_ACL, MREF_LIMIT, MREF_RATE, MREF_TIME_WINDOW, MREF_AUTH, MREF_POLICY, MREF_N
};

/* Outcome of one DNS lookup: the `result` label. */
enum metrics_dns {
    MDNS_OK, MDNS_CACHED, MDNS_NOTFOUND, MDNS_TIMEOUT, MDNS_FAILED, MDNS_BUSY, MDNS_N
};

/* Bucket upper bounds (inclusive, "le") in the observed unit, ascending. */
struct metrics_buckets {
    unsigned n;
    uint64_t le[METRICS_HIST_MAX];
};

/* A histogram owned by one thread: bucket[i] counts observations in
 * (le[i-1], le[i]], bucket[n] the rest (+Inf); cumulated when rendered. */
struct metrics_hist {
    uint64_t bucket[METRICS_HIST_MAX + 1];
    uint64_t count, sum;
};

/* Session durations (ms) and connect/lookup latencies (us). */
extern const struct metrics_buckets metrics_duration_ms, metrics_latency_us;

/* The single writer's add: no locked instruction, never a torn value for
 * the scraper's relaxed load. */
static inline void metrics_ctr_add(uint64_t *c, uint64_t v)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static inline uint64_t metrics_ctr_get(const uint64_t *c)
{
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* Adds v to the histogram (single writer). */
void metrics_hist_observe(struct metrics_hist *h, const struct metrics_buckets *b, uint64_t v);
/* Sums src into dst (relaxed loads; dst is the scraper's own). */
void metrics_hist_sum(struct metrics_hist *dst, const struct metrics_hist *src, const struct metrics_buckets *b);

/* ---- set-up (main thread, before the workers start) ---- */

/* nworkers blocks per listener plus the shared one. 0, or -1 (no memory). */
int metrics_init(unsigned nworkers);
void metrics_shutdown(void);
/* --metrics-users: count sessions per authenticated user too. */
void metrics_set_users(int on);
int metrics_users_enabled(void);
/* The calling thread writes block `id` (0 .. nworkers-1) from now on. */
void metrics_thread_slot(int id);

/* ---- listeners (any thread but a worker; freed after its sessions) ---- */

struct metrics_listener;

/* What the scraper asks the layer that knows a listener's servers: the
 * name ("host:port") and state of server i, 0 <= i < *n. up: 1/0. A
 * server named "" is skipped (an unused slot of a group whose servers
 * come from DNS). */
struct metrics_server_ops {
    size_t (*count)(void *ctx);
    void (*name)(void *ctx, size_t i, char *out, size_t outlen);
    int (*up)(void *ctx, size_t i);
    uint64_t (*transitions)(void *ctx, size_t i);
};

/* Registers a listener (name copied). NULL when out of memory, or before
 * metrics_init: every hook takes NULL and does nothing. */
struct metrics_listener *metrics_listener_new(const char *name);
/* Servers of a relay listener; ctx must outlive the listener's metrics. */
void metrics_listener_servers(struct metrics_listener *m, const struct metrics_server_ops *ops, void *ctx);
/* Unregisters and frees (after every session of it closed). */
void metrics_listener_free(struct metrics_listener *m);

/* ---- hooks (the thread's own block; m may be NULL) ---- */

void metrics_conn_opened(struct metrics_listener *m);
void metrics_refused(struct metrics_listener *m, enum metrics_refuse why);

/* A session ended. end: the end reason's index and its (static) name;
 * refuse: MREF_N or why it counts as refused; hs_proto: NULL, or the
 * handshake's protocol when it counts as a handshake failure; user: NULL
 * or the authenticated user (counted only with --metrics-users). up/down:
 * application bytes each way. */
struct metrics_session_end {
    unsigned end;
    const char *end_name;
    enum metrics_refuse refuse;
    const char *hs_proto;
    const char *user;
    uint64_t up, down, duration_ms;
    uint64_t sent_up, sent_down;   /* written to the upstream, to the client */
};
void metrics_session_closed(struct metrics_listener *m, const struct metrics_session_end *e);

/* Upstream server i of the listener: connected after connect_us, a
 * connection to it closed, a connect attempt failed. */
void metrics_server_connected(struct metrics_listener *m, size_t i, uint64_t connect_us);
void metrics_server_closed(struct metrics_listener *m, size_t i);
void metrics_server_failed(struct metrics_listener *m, size_t i);

/* A capture (pcap) or hexdump record dropped: its writer was behind. Any
 * thread; process-wide (drops are rare, an atomic is enough). */
enum metrics_tap_output { METRICS_TAP_PCAP, METRICS_TAP_HEXDUMP, METRICS_TAP_N };
void metrics_tap_dropped(enum metrics_tap_output out);
uint64_t metrics_tap_dropped_total(enum metrics_tap_output out);

/* A DNS lookup finished; latency_us 0: it never went to DNS (cache hit,
 * refusal), so the latency histogram leaves it out. */
void metrics_dns_lookup(enum metrics_dns result, uint64_t latency_us);

/* ---- rendering ---- */

/* Growing output buffer; on allocation failure `failed` is set and
 * further appends are dropped. */
struct metrics_out {
    char *buf;
    size_t len, cap;
    int failed;
};

/* Appends s as a label value: \ -> \\, " -> \", newline -> \n; bytes
 * outside printable ASCII become '?', at most 128 bytes of s. */
void metrics_escape_label(struct metrics_out *o, const char *s);
void metrics_printf(struct metrics_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The whole exposition (text format 0.0.4) into o->buf (malloc'd, owned
 * by the caller, NUL-terminated). version: for ferry_build_info.
 * 0, or -1 when out of memory. */
int metrics_render(struct metrics_out *o, const char *version);

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif

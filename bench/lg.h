/* loadgen: shared types and helpers for the benchmark load generator.
 *
 * Layout: loadgen.c (CLI, threads, results), lg_client.c (client
 * connections, proxy handshakes, scenarios), lg_udp.c (the UDP scenario:
 * datagrams straight or through SOCKS5 UDP ASSOCIATE), lg_serve.c (echo /
 * sink / source / udp-echo upstream servers), lg_util.c (time, addresses,
 * histogram, RSS).
 *
 * Everything is bounded: connection counts come from the command line,
 * buffers are fixed size, every loop ends at a deadline. */
#ifndef LG_H
#define LG_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define LG_MSG_MAX     512          /* largest echo message (--size) */
#define LG_SCRATCH     (64 * 1024)  /* per-thread bulk I/O buffer */
#define LG_MAX_PIDS    8            /* --pid may be given this many times */
#define LG_MAX_THREADS 64
#define LG_DGRAM_MAX   1400         /* largest UDP payload (--size, udp) */
#define LG_DGRAM_MIN   16           /* room for the id / seq / slot tag */
#define LG_WINDOW_MAX  1024         /* udp: --window */
#define HIST_BUCKETS   1024

enum lg_mode { MODE_TCP, MODE_SOCKS4, MODE_SOCKS5, MODE_HTTP };
enum lg_scen { SC_RATE, SC_PINGPONG, SC_BULK, SC_IDLE, SC_UDP };

/* Parsed command line of a client scenario. */
struct lg_opts {
    enum lg_scen scen;
    enum lg_mode mode;
    struct sockaddr_storage proxy;  /* -c: where we connect */
    socklen_t proxy_len;
    char dhost[256];                /* -d: target asked of the proxy */
    uint16_t dport;
    char user[256], pass[256];      /* --user for SOCKS5 RFC 1929 */
    int has_auth;
    int conns;                      /* -n */
    double duration;                /* -D seconds */
    double timeout;                 /* per step (connect, handshake, echo) */
    double settle;                  /* idle: wait before reading RSS after */
    double setup_limit;             /* seconds to open all connections */
    int threads;                    /* -t */
    int dir_down;                   /* bulk: 1 = read from source */
    int size;                       /* echo message size */
    int inflight;                   /* idle: max connections being set up */
    int window;                     /* udp: datagrams outstanding per association */
    double loss_timeout;            /* udp: a datagram unanswered this long is lost */
    int pids[LG_MAX_PIDS];
    int npids;
};

/* Latency histogram in microseconds: exact below 64, then 32 sub-buckets
 * per power of two (about 3% resolution), capped at HIST_BUCKETS. */
struct hist {
    uint64_t b[HIST_BUCKETS];
    uint64_t n;
};

/* Error classes counted by the client. */
enum lg_err { ERR_CONNECT, ERR_HANDSHAKE, ERR_EOF, ERR_IO, ERR_TIMEOUT,
              ERR_MISMATCH, ERR_DROPPED, ERR_NCLASS };

struct lg_stats {
    uint64_t done;                  /* connections (rate) or requests */
    uint64_t bytes;                 /* bulk payload bytes in the window */
    uint64_t err[ERR_NCLASS];
    uint64_t ready;                 /* connections that finished setup */
    uint64_t sent, lost, late;      /* udp: datagrams sent in the window, lost
                                       (timed out), answered after timing out */
    struct hist h;
};

/* One client thread. The main thread shares two barriers with all
 * workers: "setup done" and "go" (see loadgen.c). */
struct lg_worker {
    int idx;
    int nconns;                     /* this thread's share of -n */
    const struct lg_opts *o;
    pthread_barrier_t *bar;
    double window;                  /* seconds actually measured */
    struct lg_stats st;
    pthread_t th;
};

/* lg_util.c */
uint64_t now_ns(void);
int parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);
int resolve_addr(const char *host, uint16_t port,
                 struct sockaddr_storage *ss, socklen_t *len);
int raise_nofile(void);
void hist_add(struct hist *h, uint64_t us);
void hist_merge(struct hist *dst, const struct hist *src);
uint64_t hist_pct(const struct hist *h, double pct);
long rss_tree_kib(const int *pids, int npids, long *pss_kib);
int set_nonblock(int fd);

/* lg_client.c */
void *client_worker(void *arg);

/* lg_udp.c */
void *udp_worker(void *arg);

/* lg_serve.c */
int serve_main(int argc, char **argv);

#endif

/* loadgen: load generator and upstream servers for ferry's benchmarks.
 *
 *   loadgen rate|pingpong|bulk|idle|udp -c HOST:PORT [options]
 *   loadgen serve echo|sink|source|udp-echo -l HOST:PORT [-t N] [-D SECONDS]
 *
 * Prints one machine-readable "RESULT key=value ..." line per run and one
 * line for humans. See bench/README.md. */
#include "lg.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const scen_names[] = { "rate", "pingpong", "bulk", "idle", "udp" };
static const char *const mode_names[] = { "tcp", "socks4", "socks5", "http" };
static const char *const err_names[] = { "connect", "handshake", "eof", "io",
                                         "timeout", "mismatch", "dropped" };

static void usage(void)
{
    fprintf(stderr,
        "usage: loadgen rate|pingpong|bulk|idle|udp -c HOST:PORT [options]\n"
        "       loadgen serve echo|sink|source|udp-echo -l HOST:PORT [-t N] [-D SECONDS]\n"
        "options:\n"
        "  -c HOST:PORT       where to connect (the proxy, or the target for tcp)\n"
        "  --mode M           tcp (default), socks4, socks5, http (CONNECT);\n"
        "                     udp: tcp = datagrams straight to -c, socks5 = UDP ASSOCIATE\n"
        "  -d HOST:PORT       target asked of the SOCKS or HTTP proxy\n"
        "  --user U:P         SOCKS5 username/password (RFC 1929), HTTP Basic\n"
        "  -n N               concurrent connections / streams / udp associations\n"
        "                     (default: rate 50, pingpong 50, bulk 1, idle 1000, udp 8)\n"
        "  -D SECONDS         measured duration (default 5)\n"
        "  -t THREADS         client threads (default 1)\n"
        "  --dir up|down      bulk: send to a sink (up) or read a source (down)\n"
        "  --size BYTES       echo message size (default 64, max %d; udp: %d-%d)\n"
        "  --window N         udp: datagrams outstanding per association (default 32)\n"
        "  --loss-timeout S   udp: a datagram unanswered this long is lost (default 0.2)\n"
        "  --timeout SECONDS  per connect / handshake / echo step (default 5)\n"
        "  --pid PID          idle: proxy process (and its children) to measure;\n"
        "                     repeat for chains (e.g. ss-local + ss-server)\n"
        "  --inflight N       idle/setup: connections opened at once (default 256)\n"
        "  --settle SECONDS   idle: wait before the second RSS reading (default 1)\n"
        "  --setup-timeout S  pingpong/bulk/idle: limit for opening all\n"
        "                     connections before measuring (default 60)\n",
        LG_MSG_MAX, LG_DGRAM_MIN, LG_DGRAM_MAX);
}

static int parse_scen(const char *s, enum lg_scen *out)
{
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, scen_names[i])) {
            *out = (enum lg_scen)i;
            return 0;
        }
    return -1;
}

static int parse_mode(const char *s, enum lg_mode *out)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, mode_names[i])) {
            *out = (enum lg_mode)i;
            return 0;
        }
    return -1;
}

static int parse_user(struct lg_opts *o, const char *s)
{
    const char *colon = strchr(s, ':');
    size_t ul = colon ? (size_t)(colon - s) : 0;
    if (!colon || ul == 0 || ul > 255 || strlen(colon + 1) > 255)
        return -1;
    memcpy(o->user, s, ul);
    o->user[ul] = '\0';
    strcpy(o->pass, colon + 1);
    o->has_auth = 1;
    return 0;
}

static int parse_proxy(struct lg_opts *o, const char *s)
{
    char host[256];
    uint16_t port;
    if (parse_hostport(s, host, sizeof host, &port) < 0 || port == 0)
        return -1;
    if (!host[0])
        strcpy(host, "127.0.0.1");
    return resolve_addr(host, port, &o->proxy, &o->proxy_len);
}

static void set_defaults(struct lg_opts *o)
{
    memset(o, 0, sizeof *o);
    o->mode = MODE_TCP;
    o->duration = 5;
    o->timeout = 5;
    o->settle = 1;
    o->setup_limit = 60;
    o->threads = 1;
    o->size = 64;
    o->inflight = 256;
    o->window = 32;
    o->loss_timeout = 0.2;
    o->conns = -1;
}

/* One option; returns 0, or -1 on a bad value. */
static int apply_opt(struct lg_opts *o, int ch, const char *arg, int *have_c)
{
    switch (ch) {
    case 'c': *have_c = 1; return parse_proxy(o, arg);
    case 'd': return parse_hostport(arg, o->dhost, sizeof o->dhost, &o->dport);
    case 'n': o->conns = atoi(arg); return o->conns >= 1 ? 0 : -1;
    case 'D': o->duration = atof(arg); return o->duration > 0 ? 0 : -1;
    case 't': o->threads = atoi(arg);
              return o->threads >= 1 && o->threads <= LG_MAX_THREADS ? 0 : -1;
    case 'm': return parse_mode(arg, &o->mode);
    case 'u': return parse_user(o, arg);
    case 'r': o->dir_down = !strcmp(arg, "down");
              return !strcmp(arg, "up") || o->dir_down ? 0 : -1;
    case 's': o->size = atoi(arg);
              if (o->scen == SC_UDP)
                  return o->size >= LG_DGRAM_MIN && o->size <= LG_DGRAM_MAX ? 0 : -1;
              return o->size >= 1 && o->size <= LG_MSG_MAX ? 0 : -1;
    case 'w': o->window = atoi(arg); return o->window >= 1 && o->window <= LG_WINDOW_MAX ? 0 : -1;
    case 'L': o->loss_timeout = atof(arg); return o->loss_timeout > 0 ? 0 : -1;
    case 'T': o->timeout = atof(arg); return o->timeout > 0 ? 0 : -1;
    case 'i': o->inflight = atoi(arg); return o->inflight >= 1 ? 0 : -1;
    case 'S': o->settle = atof(arg); return o->settle >= 0 ? 0 : -1;
    case 'U': o->setup_limit = atof(arg); return o->setup_limit > 0 ? 0 : -1;
    case 'p': if (o->npids >= LG_MAX_PIDS) return -1;
              o->pids[o->npids] = atoi(arg);
              return o->pids[o->npids++] > 0 ? 0 : -1;
    default:  return -1;
    }
}

static int parse_args(int argc, char **argv, struct lg_opts *o)
{
    static const struct option lo[] = {
        { "mode", required_argument, 0, 'm' }, { "user", required_argument, 0, 'u' },
        { "dir", required_argument, 0, 'r' }, { "size", required_argument, 0, 's' },
        { "timeout", required_argument, 0, 'T' }, { "pid", required_argument, 0, 'p' },
        { "inflight", required_argument, 0, 'i' }, { "settle", required_argument, 0, 'S' },
        { "setup-timeout", required_argument, 0, 'U' },
        { "window", required_argument, 0, 'w' }, { "loss-timeout", required_argument, 0, 'L' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
    static const int def_conns[] = { 50, 50, 1, 1000, 8 };
    int ch, have_c = 0;

    set_defaults(o);
    if (parse_scen(argv[1], &o->scen) < 0)
        return -1;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "c:d:n:D:t:h", lo, NULL)) != -1) {
        if (apply_opt(o, ch, optarg, &have_c) < 0) {
            if (ch != 'h')
                fprintf(stderr, "loadgen: bad value for option -%c: '%s'\n",
                        ch, optarg ? optarg : "");
            return -1;
        }
    }
    if (o->conns < 0)
        o->conns = def_conns[o->scen];
    if (!have_c || (o->mode != MODE_TCP && !o->dhost[0])) {
        fprintf(stderr, "loadgen: need -c HOST:PORT%s\n",
                o->mode != MODE_TCP ? " and -d HOST:PORT" : "");
        return -1;
    }
    if (o->scen == SC_UDP && ((o->mode != MODE_TCP && o->mode != MODE_SOCKS5) || o->has_auth)) {
        fprintf(stderr, "loadgen: udp takes --mode tcp (direct) or socks5, without --user\n");
        return -1;
    }
    if (o->threads > o->conns)
        o->threads = o->conns;
    return 0;
}

/* ---------- results ---------- */

struct lg_total {
    struct lg_stats st;
    double window;
    uint64_t errors;
    long rss0, rss1, pss0, pss1;
    long long rcvbuf0, rcvbuf1;     /* udp: the namespace's UDP RcvbufErrors */
};

/* Udp RcvbufErrors from /proc/net/snmp (this network namespace): datagrams
 * the kernel dropped because a socket's receive buffer was full, whoever
 * owned it (proxy, echo server or us). -1 if unreadable. */
static long long udp_rcvbuf_errors(void)
{
    char names[1024], vals[1024];
    long long v = -1;
    FILE *f = fopen("/proc/net/snmp", "r");
    if (!f)
        return -1;
    while (fgets(names, sizeof names, f)) {
        if (strncmp(names, "Udp: ", 5) != 0)
            continue;
        if (!fgets(vals, sizeof vals, f))
            break;
        char *sn, *sv, *n = strtok_r(names, " \n", &sn), *x = strtok_r(vals, " \n", &sv);
        while (n && x) {
            if (!strcmp(n, "RcvbufErrors")) {
                v = atoll(x);
                break;
            }
            n = strtok_r(NULL, " \n", &sn);
            x = strtok_r(NULL, " \n", &sv);
        }
        break;
    }
    fclose(f);
    return v;
}

static void print_errors(const struct lg_total *t)
{
    printf("  errors %llu", (unsigned long long)t->errors);
    if (t->errors) {
        const char *sep = " (";
        for (int e = 0; e < ERR_NCLASS; e++)
            if (t->st.err[e]) {
                printf("%s%s %llu", sep, err_names[e], (unsigned long long)t->st.err[e]);
                sep = ", ";
            }
        printf(")");
    }
    printf("\n");
}

static void print_idle(const struct lg_opts *o, const struct lg_total *t, const char *head)
{
    uint64_t held = t->st.ready > t->st.err[ERR_DROPPED]
                    ? t->st.ready - t->st.err[ERR_DROPPED] : 0;
    double per = held && t->rss0 >= 0 && t->rss1 >= 0
                 ? (double)(t->rss1 - t->rss0) / (double)held : -1;
    double pper = held && t->pss0 >= 0 && t->pss1 >= 0
                  ? (double)(t->pss1 - t->pss0) / (double)held : -1;
    printf("%s held=%llu rss_before_kib=%ld rss_after_kib=%ld kib_per_conn=%.2f "
           "pss_before_kib=%ld pss_after_kib=%ld pss_kib_per_conn=%.2f errors=%llu\n",
           head, (unsigned long long)held, t->rss0, t->rss1, per, t->pss0, t->pss1,
           pper, (unsigned long long)t->errors);
    printf("idle: %llu of %d connections held (set up in %.2f s); proxy RSS %ld -> %ld KiB, "
           "%.2f KiB per connection (PSS %.2f)", (unsigned long long)held,
           o->conns, t->window, t->rss0, t->rss1, per, pper);
    if (o->npids == 0)
        printf(" [no --pid given]");
    print_errors(t);
}

static void print_udp(const struct lg_opts *o, const struct lg_total *t, const char *head,
                      double win)
{
    double dps = (double)t->st.done / win;
    double loss = t->st.sent ? 100.0 * (double)t->st.lost / (double)t->st.sent : 0;
    uint64_t p50 = hist_pct(&t->st.h, 50), p99 = hist_pct(&t->st.h, 99);
    long long drops = t->rcvbuf0 >= 0 && t->rcvbuf1 >= 0 ? t->rcvbuf1 - t->rcvbuf0 : -1;
    printf("%s size=%d window=%d dgram_per_s=%.0f sent=%llu lost=%llu loss_pct=%.2f late=%llu "
           "p50_us=%llu p99_us=%llu rcvbuf_drops=%lld errors=%llu\n", head, o->size, o->window,
           dps, (unsigned long long)t->st.sent, (unsigned long long)t->st.lost, loss,
           (unsigned long long)t->st.late, (unsigned long long)p50, (unsigned long long)p99,
           drops, (unsigned long long)t->errors);
    printf("udp: %.0f datagrams/s round trips (%d B, %d associations x %d outstanding), "
           "loss %.2f %% (%llu of %llu), late %llu, p50 %llu us, p99 %llu us, "
           "kernel receive-buffer drops %lld", dps, o->size, o->conns, o->window, loss,
           (unsigned long long)t->st.lost, (unsigned long long)t->st.sent,
           (unsigned long long)t->st.late, (unsigned long long)p50, (unsigned long long)p99,
           drops);
    print_errors(t);
}

static void print_result(const struct lg_opts *o, const struct lg_total *t)
{
    char head[256];
    double win = t->window > 0 ? t->window : o->duration;
    snprintf(head, sizeof head, "RESULT scenario=%s mode=%s conns=%d threads=%d %s=%.2f",
             scen_names[o->scen],
             o->scen == SC_UDP && o->mode == MODE_TCP ? "direct" : mode_names[o->mode],
             o->conns, o->threads, o->scen == SC_IDLE ? "setup_s" : "duration", win);
    if (o->scen == SC_UDP) {
        print_udp(o, t, head, win);
        return;
    }
    if (o->scen == SC_RATE) {
        double cps = (double)t->st.done / win;
        printf("%s conns_per_s=%.0f errors=%llu\n", head, cps, (unsigned long long)t->errors);
        printf("rate: %.0f connections/s (%llu in %.2f s, %d workers)", cps,
               (unsigned long long)t->st.done, win, o->conns);
    } else if (o->scen == SC_PINGPONG) {
        double rps = (double)t->st.done / win;
        uint64_t p50 = hist_pct(&t->st.h, 50), p99 = hist_pct(&t->st.h, 99);
        printf("%s req_per_s=%.0f p50_us=%llu p99_us=%llu errors=%llu\n", head, rps,
               (unsigned long long)p50, (unsigned long long)p99,
               (unsigned long long)t->errors);
        printf("pingpong: %.0f req/s, p50 %llu us, p99 %llu us (%d conns, %d B)", rps,
               (unsigned long long)p50, (unsigned long long)p99, o->conns, o->size);
    } else if (o->scen == SC_BULK) {
        double g = (double)t->st.bytes * 8 / win / 1e9;
        printf("%s dir=%s gbit_per_s=%.3f errors=%llu\n", head,
               o->dir_down ? "down" : "up", g, (unsigned long long)t->errors);
        printf("bulk %s: %.3f Gbit/s (%d streams, %.2f s)", o->dir_down ? "down" : "up",
               g, o->conns, win);
    } else {
        print_idle(o, t, head);
        return;
    }
    print_errors(t);
}

/* ---------- run ---------- */

static void collect(struct lg_worker *w, int n, struct lg_total *t)
{
    for (int i = 0; i < n; i++) {
        t->st.done += w[i].st.done;
        t->st.bytes += w[i].st.bytes;
        t->st.ready += w[i].st.ready;
        t->st.sent += w[i].st.sent;
        t->st.lost += w[i].st.lost;
        t->st.late += w[i].st.late;
        for (int e = 0; e < ERR_NCLASS; e++)
            t->st.err[e] += w[i].st.err[e];
        hist_merge(&t->st.h, &w[i].st.h);
        if (w[i].window > t->window)
            t->window = w[i].window;
    }
    for (int e = 0; e < ERR_NCLASS; e++)
        t->errors += t->st.err[e];
}

static int run_client(const struct lg_opts *o)
{
    static struct lg_worker w[LG_MAX_THREADS];
    static struct lg_total t;
    pthread_barrier_t bar;

    t.rss0 = t.rss1 = t.pss0 = t.pss1 = -1;
    t.rcvbuf0 = t.rcvbuf1 = -1;
    if (o->scen == SC_IDLE && o->npids)
        t.rss0 = rss_tree_kib(o->pids, o->npids, &t.pss0);
    pthread_barrier_init(&bar, NULL, (unsigned)o->threads + 1);
    for (int i = 0; i < o->threads; i++) {
        w[i].idx = i;
        w[i].o = o;
        w[i].bar = &bar;
        w[i].nconns = o->conns / o->threads + (i < o->conns % o->threads);
        pthread_create(&w[i].th, NULL, o->scen == SC_UDP ? udp_worker : client_worker, &w[i]);
    }
    pthread_barrier_wait(&bar);               /* setup done */
    if (o->scen == SC_IDLE && o->npids) {
        usleep((useconds_t)(o->settle * 1e6));
        t.rss1 = rss_tree_kib(o->pids, o->npids, &t.pss1);
    }
    if (o->scen == SC_UDP)
        t.rcvbuf0 = udp_rcvbuf_errors();
    pthread_barrier_wait(&bar);               /* go */
    for (int i = 0; i < o->threads; i++)
        pthread_join(w[i].th, NULL);
    if (o->scen == SC_UDP)
        t.rcvbuf1 = udp_rcvbuf_errors();
    pthread_barrier_destroy(&bar);
    collect(w, o->threads, &t);
    print_result(o, &t);
    fflush(stdout);
    return t.st.done || t.st.bytes || t.st.ready ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct lg_opts o;

    if (argc >= 2 && !strcmp(argv[1], "serve"))
        return serve_main(argc - 1, argv + 1);
    if (argc < 2 || parse_args(argc, argv, &o) < 0) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (raise_nofile() < o.conns + 64)
        fprintf(stderr, "loadgen: warning: fd limit may be too low for %d connections\n",
                o.conns);
    return run_client(&o);
}

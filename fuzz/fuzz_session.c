/* fuzz_session.c - libFuzzer target for whole sessions: front-end,
 * handshake, early data, connect, codec install and the byte mover, through
 * real sockets on loopback and real workers driven in-process.
 *
 * At start-up, configs are parsed by cli_parse() (as `ferry MODE ...` would
 * be) and each gets one worker from workers_create(), whose thread is never
 * started: this thread drives the workers' loops with loop_run_once(). The
 * proxies, all on 127.0.0.1 port 0:
 *   socks         SOCKS 4/4a/5, direct egress (splice)
 *   socks-auth    the same with --user, --allow-socks4, --no-splice
 *   ss-local      SOCKS front, tunnels to the ss-server below
 *   ss-tunnel     ss-local --tunnel-to the sink (no front-end), the server
 *                 by name (so the client's bytes wait while it resolves)
 *   ss-server     Shadowsocks server front
 *   *-toxic       ss-local (server by name) and socks with toxics (pump_toxic)
 * Targets are the harness's own: a sink on 127.0.0.1 and [::1], port
 * SINK_PORT if free (else one the kernel picks), that discards or echoes,
 * and a DNS server that answers every A/AAAA question with loopback. The
 * SOCKS and ss-server proxies allow only the sink as destination
 * (--allow-dest) and ss-local only reaches the ss-server, so nothing leaves
 * loopback nor reaches anyone else's port.
 *
 * Input: byte 0 = mode (bits 0-2) and flags (below); bytes 1-2 = early
 * data length (early_len()); the rest is what the client sends first (a
 * SOCKS greeting and request, Shadowsocks bytes, or for ss-server-sealed the
 * plaintext the harness encrypts with the server's key), followed by that
 * many filler bytes in the same send() (the rest, if the socket takes less,
 * as soon as it takes more). Then the client may shut down its write side,
 * reads (and drops) what comes back until EOF or until nothing moves, and
 * closes. The harness runs the loops until every session has ended (bounded:
 * what is left is closed with worker_close_sessions(), the drain path).
 *
 * Invariants (abort() on violation) after every input: no session left,
 * no admission count held, every pool buffer and kernel pipe given back.
 * ASan/UBSan/LeakSanitizer do the rest. Per input: typically 2-10 ms (a
 * few hundred KiB through two proxies under ASan), bounded by MAX_INPUT_MS
 * of waiting. Nothing is written to stderr except errors (--log-level
 * error) and, with FUZZ_SESSION_DEBUG set, one line per input.
 */
#include <errno.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/cli.h"
#include "core/loop.h"
#include "server/worker.h"
#include "crypto/replay.h"
#include "crypto/ss_cipher.h"
#include "net/sock.h"
#include "obs/log.h"
#include "proto/ss_aead.h"
#include "relay/session.h"
#include "relay/ss_codec.h"

#define CHECK(c) do { \
        if (!(c)) { \
            fprintf(stderr, "fuzz_session: CHECK failed: %s (line %d)\n", #c, __LINE__); \
            abort(); \
        } \
    } while (0)

#define SINK_PORT 29171            /* below the ephemeral range; fallback: any */
#define SINK_MAX 64
#define PREFIX_MAX 8192
#define PAYLOAD_MAX (256u * 1024u)
#define SEND_MAX_MS 100            /* the client's bytes have this long to go out */
#define SETTLE_MAX_MS 100          /* then ferry has this long to answer and end */
#define CLOSE_MAX_MS 30            /* after the client closed, sessions have this long */
#define MAX_INPUT_MS (SEND_MAX_MS + SETTLE_MAX_MS + CLOSE_MAX_MS + 10)

/* Byte 0. */
#define F_MODE 0x07
#define F_SHUT_WR 0x08             /* client: shutdown(SHUT_WR) after sending */
#define F_PATIENT 0x10             /* wait 11 ms of quiet, not 1 (ss-local's 10 ms hold) */
#define F_ECHO 0x20                /* the sink echoes instead of discarding */
#define F_RST 0x40                 /* client: close with RST (SO_LINGER 0) */
#define F_NO_READ 0x80             /* client: never read (backpressure) */

enum { P_SOCKS, P_SOCKS_AUTH, P_SS_LOCAL, P_SS_TUNNEL, P_SS_SERVER, P_SS_LOCAL_TOXIC, P_SOCKS_TOXIC, NPROXIES };

/* Mode (byte 0 & 7) -> proxy, and whether the harness seals the input. */
static const struct {
    int proxy, sealed;
} modes[8] = {
    { P_SOCKS, 0 }, { P_SOCKS_AUTH, 0 }, { P_SS_LOCAL, 0 }, { P_SS_TUNNEL, 0 },
    { P_SS_SERVER, 0 }, { P_SS_SERVER, 1 }, { P_SS_LOCAL_TOXIC, 0 }, { P_SOCKS_TOXIC, 0 },
};

struct proxy {
    struct ferry_cfg cfg;
    struct server_worker *w;              /* one, never started */
    struct net_addr addr;
};

struct sink_conn {
    int fd;
    uint32_t len, off;             /* echo: bytes read, not yet written back */
    uint8_t buf[16384];
};

static struct proxy proxies[NPROXIES];
static int sink_lfd[2] = { -1, -1 }, dns_fd = -1;
static uint16_t sink_port, dns_port;
static struct sink_conn sinks[SINK_MAX];
static int sink_echo;
static uint64_t sink_bytes;        /* this input's, for FUZZ_SESSION_DEBUG */
static int debug;                  /* FUZZ_SESSION_DEBUG=1: one line per input */
static uint8_t payload[PAYLOAD_MAX], filler[PAYLOAD_MAX];

/* ---- input mapping ---- */

/* Two bytes -> early data length, 0..212979. The top two bits pick a range
 * so that the sizes that matter are common: small; a 64 KiB buffer
 * +-320 (what a buffer holds next to an address header); near a multiple
 * of 16 KiB (Shadowsocks chunks, copy-to-splice switch) up to 192 KiB; any
 * size up to ~208 KiB in steps of 13. */
static size_t early_len(unsigned v)
{
    unsigned low = v & 0x3FFF;
    switch (v >> 14) {
    case 0: return low;
    case 1: return 65536 - 320 + low % 640;
    case 2: {
        size_t at = (size_t)((low >> 10) % 13) * 16384 + (low & 0x3FF);
        return at > 512 ? at - 512 : 0;
    }
    default: return (size_t)low * 13;
    }
}

/* ---- the harness's peers: sink and DNS ---- */

static int listen_on(int family, uint16_t port, int type)
{
    struct net_addr a;
    int one = 1;
    if (net_addr_from_literal(family == AF_INET ? "127.0.0.1" : "::1", port, &a) < 0) return -1;
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (type == SOCK_STREAM) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, &a.u.sa, a.len) < 0 || (type == SOCK_STREAM && listen(fd, 128) < 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

static uint16_t local_port(int fd)
{
    struct net_addr a;
    a.len = sizeof(a.u);
    if (getsockname(fd, &a.u.sa, &a.len) < 0) return 0;
    return net_addr_port(&a);
}

static void sink_start(void)
{
    sink_lfd[0] = listen_on(AF_INET, SINK_PORT, SOCK_STREAM);
    if (sink_lfd[0] < 0) {
        fprintf(stderr, "fuzz_session: 127.0.0.1:%d busy, the sink takes another port "
                "(seeds will not reach it)\n", SINK_PORT);
        sink_lfd[0] = listen_on(AF_INET, 0, SOCK_STREAM);
    }
    CHECK(sink_lfd[0] >= 0);
    sink_port = local_port(sink_lfd[0]);
    sink_lfd[1] = listen_on(AF_INET6, sink_port, SOCK_STREAM);   /* no IPv6: fine */
    for (int i = 0; i < SINK_MAX; i++) sinks[i].fd = -1;
}

static void sink_close(struct sink_conn *c)
{
    close(c->fd);
    c->fd = -1;
}

static int sink_accept(void)
{
    int progress = 0;
    for (int l = 0; l < 2; l++) {
        int fd;
        while (sink_lfd[l] >= 0 && (fd = accept4(sink_lfd[l], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
            int i = 0;
            while (i < SINK_MAX && sinks[i].fd >= 0) i++;
            progress = 1;
            if (i == SINK_MAX) {
                close(fd);
                continue;
            }
            sinks[i].fd = fd;
            sinks[i].len = sinks[i].off = 0;
        }
    }
    return progress;
}

/* Reads (and echoes or drops) what each connection sent; closes on EOF. */
static int sink_service(void)
{
    int progress = sink_accept();
    for (int i = 0; i < SINK_MAX; i++) {
        struct sink_conn *c = &sinks[i];
        for (int n = 0; c->fd >= 0 && n < 8; n++) {
            if (c->off < c->len) {
                ssize_t w = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN) {
                    sink_close(c);
                    progress = 1;
                }
                if (w <= 0) break;
                c->off += (uint32_t)w;
                progress = 1;
                continue;
            }
            ssize_t r = recv(c->fd, c->buf, sizeof(c->buf), 0);
            if (r < 0 && errno == EAGAIN) break;
            if (r <= 0) {
                sink_close(c);
                progress = 1;
                break;
            }
            sink_bytes += (uint64_t)r;
            c->len = sink_echo ? (uint32_t)r : 0;
            c->off = 0;
            progress = 1;
        }
    }
    return progress;
}

static unsigned sink_open(void)
{
    unsigned n = 0;
    for (int i = 0; i < SINK_MAX; i++) n += sinks[i].fd >= 0;
    return n;
}

static void sink_close_all(void)
{
    for (int i = 0; i < SINK_MAX; i++)
        if (sinks[i].fd >= 0) sink_close(&sinks[i]);
}

/* Answers a query with loopback for A and AAAA (TTL 0), no records for
 * other types. 0 if the query is not one to answer. */
static size_t dns_answer(const uint8_t *q, size_t n, uint8_t *out, size_t cap)
{
    static const uint8_t v4[4] = { 127, 0, 0, 1 }, v6[16] = { [15] = 1 };
    size_t p = 12;
    if (n < 12 || (q[2] & 0x80)) return 0;
    while (p < n && q[p] && !(q[p] & 0xC0)) p += (size_t)q[p] + 1;
    if (p + 5 > n || q[p]) return 0;
    p += 5;
    unsigned qtype = (unsigned)q[p - 4] << 8 | q[p - 3];
    if (p + 12 + 16 > cap) return 0;
    memcpy(out, q, p);
    out[2] = (uint8_t)(0x80 | (q[2] & 0x01));    /* QR, RD as asked */
    out[3] = 0x80;                               /* RA, NOERROR */
    memset(out + 4, 0, 8);
    out[5] = 1;
    if (qtype != 1 && qtype != 28) return p;
    const uint8_t *ip = qtype == 1 ? v4 : v6;
    uint8_t iplen = qtype == 1 ? 4 : 16;
    uint8_t rr[12] = { 0xC0, 0x0C, 0, (uint8_t)qtype, 0, 1, 0, 0, 0, 0, 0, iplen };
    out[7] = 1;
    memcpy(out + p, rr, sizeof(rr));
    memcpy(out + p + sizeof(rr), ip, iplen);
    return p + sizeof(rr) + iplen;
}

static int dns_service(void)
{
    uint8_t q[512], a[600];
    int progress = 0;
    for (;;) {
        struct net_addr from;
        from.len = sizeof(from.u);
        ssize_t n = recvfrom(dns_fd, q, sizeof(q), 0, &from.u.sa, &from.len);
        if (n <= 0) return progress;
        size_t alen = dns_answer(q, (size_t)n, a, sizeof(a));
        if (alen) (void)sendto(dns_fd, a, alen, 0, &from.u.sa, from.len);
        progress = 1;
    }
}

/* ---- the proxies ---- */

/* `ferry MODE args... common...` through cli_parse, then one worker. */
static void proxy_start(struct proxy *p, const char *mode, const char *extra)
{
    char line[1024], err[512], *argv[64], *save = NULL;
    enum cli_action action;
    int argc = 0, help_mode;
    snprintf(line, sizeof(line),
             "ferry %s -l 127.0.0.1:0 --threads 1 --log-level error --dns-server 127.0.0.1:%u "
             "--resolve-timeout 1s --connect-timeout 1s %s",
             mode, dns_port, extra);
    for (char *t = strtok_r(line, " ", &save); t && argc < 63; t = strtok_r(NULL, " ", &save)) argv[argc++] = t;
    argv[argc] = NULL;
    memset(&p->cfg, 0, sizeof(p->cfg));
    if (cli_parse(argc, argv, &p->cfg, &action, &help_mode, err, sizeof(err)) < 0 || action != CLI_RUN) {
        fprintf(stderr, "fuzz_session: %s: %s\n", mode, err);
        abort();
    }
    log_set_level(p->cfg.log_level);
    struct listener_cfg *l = &p->cfg.listeners[0];
    if (l->mode == MODE_SS_SERVER) CHECK((l->replay = replay_new(100000, 1e-6, err, sizeof(err))) != NULL);
    p->w = workers_create(&p->cfg, 1, err, sizeof(err));
    if (!p->w) {
        fprintf(stderr, "fuzz_session: %s: %s\n", mode, err);
        abort();
    }
    p->addr = l->listen[0];          /* the port the kernel picked */
}

static void proxies_start(void)
{
    static const char pw[] = "-k fuzz-password";
    char ss[512], dest[128], ss_server[64], ss_server_name[64];
    snprintf(dest, sizeof(dest), "--allow-dest 127.0.0.1:%u --allow-dest [::1]:%u", sink_port, sink_port);
    snprintf(ss, sizeof(ss), "%s --handshake-timeout 1s %s", pw, dest);
    proxy_start(&proxies[P_SS_SERVER], "ss-server", ss);
    snprintf(ss_server, sizeof(ss_server), "-s 127.0.0.1:%u", net_addr_port(&proxies[P_SS_SERVER].addr));
    /* By name: the client's bytes arrive while the name resolves. */
    snprintf(ss_server_name, sizeof(ss_server_name), "-s ss.ferry.test:%u", net_addr_port(&proxies[P_SS_SERVER].addr));

    snprintf(ss, sizeof(ss), "%s --handshake-timeout 1s", dest);
    proxy_start(&proxies[P_SOCKS], "socks", ss);
    snprintf(ss, sizeof(ss), "%s --user fuzz:fuzz --allow-socks4 --no-splice --handshake-timeout 1s", dest);
    proxy_start(&proxies[P_SOCKS_AUTH], "socks", ss);
    snprintf(ss, sizeof(ss), "%s --toxic slicer:average_size=4000,size_variation=3999,delay=0,stream=downstream "
             "--toxic limit_data:bytes=100000,stream=upstream", dest);
    proxy_start(&proxies[P_SOCKS_TOXIC], "socks", ss);

    snprintf(ss, sizeof(ss), "%s %s --handshake-timeout 1s", ss_server, pw);
    proxy_start(&proxies[P_SS_LOCAL], "ss-local", ss);
    snprintf(ss, sizeof(ss), "%s %s --tunnel-to 127.0.0.1:%u", ss_server_name, pw, sink_port);
    proxy_start(&proxies[P_SS_TUNNEL], "ss-local", ss);
    snprintf(ss, sizeof(ss), "%s %s --toxic slicer:average_size=6000,size_variation=5999,delay=0,stream=upstream "
             "--toxic limit_data:bytes=150000,stream=downstream", ss_server_name, pw);
    proxy_start(&proxies[P_SS_LOCAL_TOXIC], "ss-local", ss);
}

/* One pass over every loop (no sleeping) and the harness's peers. >0 if
 * anything happened. */
static int step(void)
{
    int progress = 0;
    for (int i = 0; i < NPROXIES; i++) {
        int n = loop_run_once(proxies[i].w->rw.loop, 0);
        CHECK(n >= 0);
        progress |= n > 0;
    }
    progress |= sink_service();
    progress |= dns_service();
    return progress;
}

static unsigned sessions_open(void)
{
    unsigned n = 0;
    for (int i = 0; i < NPROXIES; i++) n += proxies[i].w->rw.nsessions;
    return n;
}

/* Nothing moved: wait a millisecond (timers are all that can still fire;
 * loopback delivers in the sender's system call). */
static void idle_wait(void)
{
    poll(NULL, 0, 1);
}

/* After every input: nothing left over, nothing held. */
static void check_quiet(void)
{
    for (int i = 0; i < NPROXIES; i++) {
        struct server_worker *w = proxies[i].w;
        CHECK(w->rw.nsessions == 0 && w->rw.sessions == NULL);
        CHECK(__atomic_load_n(&w->shared[0].sessions, __ATOMIC_RELAXED) == 0);
        CHECK(w->rw.bufs.in_use == 0);
        CHECK(w->rw.pipes.in_use == 0);
    }
}

static void harness_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    sock_raise_nofile();
    debug = getenv("FUZZ_SESSION_DEBUG") != NULL;
    for (size_t i = 0; i < sizeof(filler); i++) filler[i] = (uint8_t)(i * 131u + (i >> 8));
    sink_start();
    dns_fd = listen_on(AF_INET, 0, SOCK_DGRAM);
    CHECK(dns_fd >= 0);
    dns_port = local_port(dns_fd);
    proxies_start();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    harness_init();
    return 0;
}

/* ---- one client ---- */

/* The harness as a Shadowsocks client: salt, then the fuzzer's plaintext
 * and the filler as chunks, with the ss-server's key. */
static size_t seal(const uint8_t *plain, size_t plen, size_t early)
{
    const struct listener_cfg *l = &proxies[P_SS_SERVER].cfg.listeners[0];
    const struct ss_method *m = ss_method_find(l->ss_method);
    uint8_t salt[SS_SALT_MAX];
    struct ss_enc e;
    size_t n;
    CHECK(m && RAND_bytes(salt, (int)m->salt_len) == 1 && ss_enc_init(&e, m, l->ss_key, salt) == 0);
    n = ss_enc_write(&e, plain, plen, payload, sizeof(payload));
    if (early) n += ss_enc_write(&e, filler, early, payload + n, sizeof(payload) - n);
    ss_enc_free(&e);
    return n;
}

/* -1 if the system is out of something (fds, ports in TIME_WAIT on a
 * kernel without tcp_tw_reuse for loopback): the input is skipped. */
static int client_connect(const struct net_addr *to)
{
    int sndbuf = 1 << 20;
    int fd = socket(to->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    if (connect(fd, &to->u.sa, to->len) < 0 && errno != EINPROGRESS) {
        if (debug) fprintf(stderr, "fuzz_session: connect: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

struct client {
    int fd;
    int eof;                        /* ferry closed or reset its side */
    int reads;
};

/* Reads and drops what came back; >0 if anything did. */
static int client_read(struct client *c)
{
    uint8_t junk[16384];
    int progress = 0;
    for (int n = 0; !c->eof && c->reads && n < 8; n++) {
        ssize_t r = recv(c->fd, junk, sizeof(junk), 0);
        if (r < 0 && (errno == EAGAIN || errno == ENOTCONN)) break;
        if (r <= 0) c->eof = 1;
        progress = 1;
    }
    return progress;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    unsigned flags = data[0];
    struct proxy *p = &proxies[modes[flags & F_MODE].proxy];
    size_t early = early_len((unsigned)data[1] << 8 | data[2]);
    size_t plen = size - 3 > PREFIX_MAX ? PREFIX_MAX : size - 3, total;
    if (modes[flags & F_MODE].sealed) {
        total = seal(data + 3, plen, early);
    } else {
        memcpy(payload, data + 3, plen);
        memcpy(payload + plen, filler, early);
        total = plen + early;
    }
    sink_echo = (flags & F_ECHO) != 0;
    sink_bytes = 0;

    uint64_t start = clock_now_ms(), t0 = start;
    struct client c = { client_connect(&p->addr), 0, !(flags & F_NO_READ) };
    if (c.fd < 0) return 0;
    size_t sent = 0;
    /* Everything in one send() when the socket takes it: greeting, request
     * and early data arrive together, as a pipelining client sends them. */
    while (sent < total && !c.eof && clock_now_ms() - t0 < SEND_MAX_MS) {
        ssize_t n = send(c.fd, payload + sent, total - sent, MSG_NOSIGNAL);
        if (n > 0) sent += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != ENOTCONN) break;   /* reset by ferry */
        if (!(step() | client_read(&c)) && n <= 0) idle_wait();
    }
    if (flags & F_SHUT_WR) shutdown(c.fd, SHUT_WR);

    /* Ferry answers, relays, ends; or waits for more than the client has. */
    int quiet = 0, quiet_max = flags & F_PATIENT ? SS_FIRST_DATA_WAIT_US / 1000 + 1 : 1;
    t0 = clock_now_ms();
    while (!c.eof && quiet < quiet_max && clock_now_ms() - t0 < SETTLE_MAX_MS) {
        if (step() | client_read(&c)) {
            quiet = 0;
            continue;
        }
        quiet++;
        idle_wait();
    }
    if (flags & F_RST) {
        struct linger lg = { 1, 0 };
        setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(c.fd);

    /* Every session should now see its client go and end. */
    quiet = 0;
    t0 = clock_now_ms();
    while ((sessions_open() || sink_open()) && quiet < 3 && clock_now_ms() - t0 < CLOSE_MAX_MS) {
        if (step()) {
            quiet = 0;
            continue;
        }
        quiet++;
        idle_wait();
    }
    /* What is left (a Shadowsocks prober held to its deadline, a session
     * the client's close did not reach) ends as a drain would end it. */
    unsigned left = sessions_open();
    for (int i = 0; i < NPROXIES; i++) {
        worker_close_sessions(proxies[i].w);
        CHECK(loop_run_once(proxies[i].w->rw.loop, 0) >= 0);   /* the deferred frees */
    }
    sink_close_all();
    (void)dns_service();
    check_quiet();
    if (debug)
        fprintf(stderr, "fuzz_session: mode %u flags 0x%02x: sent %zu of %zu, client eof %d, sink got %llu, "
                "%u session(s) closed by the harness, %llu ms\n", flags & F_MODE, flags & ~F_MODE, sent, total,
                c.eof, (unsigned long long)sink_bytes, left, (unsigned long long)(clock_now_ms() - start));
    return 0;
}

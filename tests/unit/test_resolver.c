/* test_resolver.c - the c-ares resolver on the real loop, against a tiny
 * fake DNS server on 127.0.0.1 (UDP, same process, same loop).
 *
 * Fake zone: v4v6.test (2 A + 2 AAAA), v4.test (A only), v6.test (AAAA
 * only), ttl0.test (A, TTL 0), ttl1.test (A, TTL 1), other.test (A),
 * many.test (10 A + 10 AAAA), tcp.test (A, but truncated over UDP so c-ares
 * retries over TCP on the same port), blackhole.test and *.blackhole.test
 * (never answered);
 * everything else is NXDOMAIN.
 * Every test is bounded by a guard timer; alarm() is the last resort.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "resolver/resolver.h"

#define T_A 1
#define T_AAAA 28
#define TIMEOUT_MS 300u
#define SLACK_MS 200u                 /* generous: ASan, loaded CI machines */

/* ---- fake DNS server ---- */

struct fake_rec {
    const char *name;
    uint16_t type;
    const char *addr;
    uint32_t ttl;
};

static const struct fake_rec fake_recs[] = {
    { "v4v6.test", T_A, "192.0.2.1", 60 },
    { "v4v6.test", T_A, "192.0.2.2", 60 },
    { "v4v6.test", T_AAAA, "2001:db8::1", 60 },
    { "v4v6.test", T_AAAA, "2001:db8::2", 60 },
    { "v4.test", T_A, "192.0.2.10", 60 },
    { "v6.test", T_AAAA, "2001:db8::10", 60 },
    { "ttl0.test", T_A, "192.0.2.20", 0 },
    { "ttl1.test", T_A, "192.0.2.21", 1 },
    { "other.test", T_A, "192.0.2.30", 60 },
    { "tcp.test", T_A, "192.0.2.40", 60 },
};

static const char *const fake_names[] = {
    "v4v6.test", "v4.test", "v6.test", "ttl0.test", "ttl1.test", "other.test", "many.test",
    "tcp.test", "blackhole.test",
};
#define FAKE_NNAMES (sizeof(fake_names) / sizeof(fake_names[0]))

#define FAKE_MAX_CONNS 4

/* One accepted TCP connection: length-prefixed queries, accumulated. */
struct fake_conn {
    struct fake_dns *d;
    struct loop_io io;
    size_t len;
    uint8_t buf[1024];
};

struct fake_dns {
    int fd, tcp_fd;                   /* UDP and TCP on the same port */
    uint16_t port;
    struct loop *loop;
    struct loop_io io, tcp_io;
    unsigned total, nx, tcp;
    unsigned hits[FAKE_NNAMES];
    struct fake_conn *conns[FAKE_MAX_CONNS];
};

static int fake_name_index(const char *name)
{
    for (size_t i = 0; i < FAKE_NNAMES; i++)
        if (!strcmp(fake_names[i], name)) return (int)i;
    return -1;
}

static unsigned fake_hits(const struct fake_dns *d, const char *name)
{
    return d->hits[fake_name_index(name)];
}

/* Reads the question name into `out` (lowercase, dotted). Returns the offset
 * after the name or 0 if malformed. */
static size_t fake_qname(const uint8_t *p, size_t len, char *out, size_t outlen)
{
    size_t off = 12, o = 0;
    while (off < len && p[off]) {
        size_t l = p[off++];
        if (l > 63 || off + l > len || o + l + 2 > outlen) return 0;
        if (o) out[o++] = '.';
        for (size_t i = 0; i < l; i++) {
            char c = (char)p[off + i];
            out[o++] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
        }
        off += l;
    }
    out[o] = '\0';
    return off < len ? off + 1 : 0;
}

static size_t fake_put_rr(uint8_t *out, size_t o, uint16_t type, uint32_t ttl, const void *rdata,
                          uint16_t rdlen)
{
    const uint8_t hdr[] = { 0xc0, 0x0c, 0, (uint8_t)type, 0, 1,
                            (uint8_t)(ttl >> 24), (uint8_t)(ttl >> 16), (uint8_t)(ttl >> 8), (uint8_t)ttl,
                            0, (uint8_t)rdlen };
    memcpy(out + o, hdr, sizeof(hdr));
    memcpy(out + o + sizeof(hdr), rdata, rdlen);
    return o + sizeof(hdr) + rdlen;
}

/* Appends the answers for (name, type); returns the new length, counts in *an. */
static size_t fake_answers(const char *name, uint16_t type, uint8_t *out, size_t o, unsigned *an)
{
    uint8_t raw[16];
    for (size_t i = 0; i < sizeof(fake_recs) / sizeof(fake_recs[0]); i++) {
        const struct fake_rec *rec = &fake_recs[i];
        if (strcmp(rec->name, name) || rec->type != type) continue;
        inet_pton(type == T_A ? AF_INET : AF_INET6, rec->addr, raw);
        o = fake_put_rr(out, o, type, rec->ttl, raw, type == T_A ? 4 : 16);
        (*an)++;
    }
    for (unsigned i = 1; !strcmp(name, "many.test") && i <= 10; i++) {
        char txt[64];
        snprintf(txt, sizeof(txt), type == T_A ? "198.51.100.%u" : "2001:db8:1::%u", i);
        inet_pton(type == T_A ? AF_INET : AF_INET6, txt, raw);
        o = fake_put_rr(out, o, type, 60, raw, type == T_A ? 4 : 16);
        (*an)++;
    }
    return o;
}

/* Builds the reply to one query; returns its length, 0 = do not answer. */
static size_t fake_reply(struct fake_dns *d, const uint8_t *q, size_t len, uint8_t *out, int tcp)
{
    char name[256];
    size_t qend = len >= 12 ? fake_qname(q, len, name, sizeof(name)) : 0;
    unsigned an = 0;
    if (!qend || qend + 4 > len) return 0;
    uint16_t type = (uint16_t)(q[qend] << 8 | q[qend + 1]);
    int idx = fake_name_index(name);
    d->total++;
    if (idx < 0) d->nx++;
    else d->hits[idx]++;
    size_t nlen = strlen(name), sfx = sizeof(".blackhole.test") - 1;
    if (!strcmp(name, "blackhole.test") ||
        (nlen > sfx && !strcmp(name + nlen - sfx, ".blackhole.test"))) return 0;
    memcpy(out, q, qend + 4);                       /* header + question */
    int truncate = !tcp && !strcmp(name, "tcp.test");
    size_t o = idx >= 0 && !truncate ? fake_answers(name, type, out, qend + 4, &an) : qend + 4;
    out[2] = (uint8_t)(0x80 | (truncate ? 0x02 : 0) | (q[2] & 0x01));   /* QR, TC, keep RD */
    out[3] = 0x80 | (idx < 0 ? 3 : 0);              /* RA, NXDOMAIN or NOERROR */
    out[4] = 0; out[5] = 1;
    out[6] = 0; out[7] = (uint8_t)an;
    memset(out + 8, 0, 4);
    return o;
}

static void fake_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct fake_dns *d = io->owner;
    uint8_t in[512], out[1024];
    (void)l;
    (void)events;
    for (;;) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof(from);
        ssize_t n = recvfrom(d->fd, in, sizeof(in), 0, (struct sockaddr *)&from, &flen);
        if (n < 0) return;
        size_t olen = fake_reply(d, in, (size_t)n, out, 0);
        if (olen) sendto(d->fd, out, olen, 0, (struct sockaddr *)&from, flen);
    }
}

static void fake_conn_close(struct fake_dns *d, int i)
{
    struct fake_conn *c = d->conns[i];
    int fd = c->io.fd;
    loop_io_del(d->loop, &c->io);           /* before close: see loop.h */
    close(fd);
    d->conns[i] = NULL;
    loop_defer_free(d->loop, c, free);
}

static void fake_conn_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct fake_conn *c = io->owner;
    struct fake_dns *d = c->d;
    int fd = io->fd, i = 0;
    (void)l;
    (void)events;
    while (d->conns[i] != c) i++;
    ssize_t n = read(fd, c->buf + c->len, sizeof(c->buf) - c->len);
    if (n <= 0) {
        fake_conn_close(d, i);
        return;
    }
    c->len += (size_t)n;
    while (c->len >= 2 && c->len >= 2u + (size_t)(c->buf[0] << 8 | c->buf[1])) {
        size_t qlen = (size_t)(c->buf[0] << 8 | c->buf[1]);
        uint8_t out[1024 + 2];
        size_t olen = fake_reply(d, c->buf + 2, qlen, out + 2, 1);
        d->tcp++;
        out[0] = (uint8_t)(olen >> 8);
        out[1] = (uint8_t)olen;
        /* Loopback, a few hundred bytes into an empty socket: one write. */
        if (olen) assert_int_equal(write(fd, out, olen + 2), (ssize_t)(olen + 2));
        memmove(c->buf, c->buf + 2 + qlen, c->len - 2 - qlen);
        c->len -= 2 + qlen;
    }
}

static void fake_accept_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct fake_dns *d = io->owner;
    int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    (void)events;
    if (fd < 0) return;
    for (int i = 0; i < FAKE_MAX_CONNS; i++) {
        if (d->conns[i]) continue;
        struct fake_conn *c = calloc(1, sizeof(*c));
        assert_non_null(c);
        c->d = d;
        assert_int_equal(loop_io_add(l, &c->io, fd, LOOP_READ, fake_conn_cb, c), 0);
        d->conns[i] = c;
        return;
    }
    close(fd);
}

/* Binds TCP on an ephemeral port, then UDP on the same number. */
static int fake_bind(struct fake_dns *d)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t slen = sizeof(sin);
    d->tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(d->fd >= 0 && d->tcp_fd >= 0);
    if (bind(d->tcp_fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
        getsockname(d->tcp_fd, (struct sockaddr *)&sin, &slen) == 0 &&
        listen(d->tcp_fd, 8) == 0 &&
        bind(d->fd, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
        d->port = ntohs(sin.sin_port);
        return 0;
    }
    close(d->fd);
    close(d->tcp_fd);
    return -1;
}

static void fake_start(struct fake_dns *d, struct loop *l)
{
    int tries = 0;
    memset(d, 0, sizeof(*d));
    d->loop = l;
    while (fake_bind(d) < 0) assert_true(++tries < 20);
    assert_int_equal(loop_io_add(l, &d->io, d->fd, LOOP_READ, fake_cb, d), 0);
    assert_int_equal(loop_io_add(l, &d->tcp_io, d->tcp_fd, LOOP_READ, fake_accept_cb, d), 0);
}

static void fake_stop(struct fake_dns *d, struct loop *l)
{
    for (int i = 0; i < FAKE_MAX_CONNS; i++)
        if (d->conns[i]) fake_conn_close(d, i);
    loop_io_del(l, &d->io);
    loop_io_del(l, &d->tcp_io);
    close(d->fd);
    close(d->tcp_fd);
}

/* ---- fixture ---- */

struct fixture {
    struct loop *loop;
    struct fake_dns dns;
    struct resolver *r;
    char servers[64];
    int in_lookup;
    unsigned done, want;
    struct loop_timer guard, poll;
};

struct result {
    struct fixture *fx;
    int calls, status, inside_lookup;
    struct resolved res;
    uint64_t at_ms;
    struct resolver_query *cancel_on_call;   /* cancelled from this callback */
    int free_on_call;                        /* resolver_free() from this callback */
};

static void on_result(void *arg, int status, const struct resolved *res)
{
    struct result *rs = arg;
    struct fixture *fx = rs->fx;
    rs->calls++;
    rs->status = status;
    rs->res = *res;
    rs->at_ms = clock_now_ms();
    if (fx->in_lookup) rs->inside_lookup++;
    if (rs->cancel_on_call) resolver_cancel(rs->cancel_on_call);
    if (rs->free_on_call) {
        resolver_free(fx->r);
        fx->r = NULL;
    }
    fx->done++;
    if (fx->want && fx->done >= fx->want) loop_stop(fx->loop);
}

static void guard_cb(struct loop *l, struct loop_timer *t)
{
    (void)t;
    loop_stop(l);
}

static void poll_cb(struct loop *l, struct loop_timer *t)
{
    struct fixture *fx = t->owner;
    if (!fx->r || resolver_outstanding(fx->r) == 0) loop_stop(l);
    else loop_timer_arm_in(l, t, 5);
}

static struct resolver *new_resolver(struct fixture *fx, unsigned timeout_ms, unsigned cache)
{
    struct resolver_opts o = { .servers = fx->servers, .timeout_ms = timeout_ms, .cache_entries = cache };
    char err[256] = "";
    struct resolver *r = resolver_new(fx->loop, &o, err, sizeof(err));
    if (!r) fail_msg("resolver_new: %s", err);
    return r;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->loop = loop_new();
    assert_non_null(fx->loop);
    fake_start(&fx->dns, fx->loop);
    snprintf(fx->servers, sizeof(fx->servers), "127.0.0.1:%u", fx->dns.port);
    loop_timer_init(&fx->guard, guard_cb, fx);
    loop_timer_init(&fx->poll, poll_cb, fx);
    fx->r = new_resolver(fx, TIMEOUT_MS, 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    resolver_free(fx->r);
    loop_timer_cancel(fx->loop, &fx->guard);
    loop_timer_cancel(fx->loop, &fx->poll);
    fake_stop(&fx->dns, fx->loop);
    loop_free(fx->loop);
    free(fx);
    return 0;
}

/* Runs the loop until `want` callbacks in total have run (0: until the
 * guard), at most max_ms. */
static void run_until(struct fixture *fx, unsigned want, unsigned max_ms)
{
    fx->want = want;
    if (want && fx->done >= want) return;
    loop_timer_arm(fx->loop, &fx->guard, clock_now_ms() + max_ms);
    loop_run(fx->loop);
    loop_timer_cancel(fx->loop, &fx->guard);
    fx->want = 0;
}

/* Runs the loop until c-ares released every query, at most max_ms. */
static void run_until_idle(struct fixture *fx, unsigned max_ms)
{
    loop_timer_arm(fx->loop, &fx->guard, clock_now_ms() + max_ms);
    loop_timer_arm_in(fx->loop, &fx->poll, 0);
    loop_run(fx->loop);
    loop_timer_cancel(fx->loop, &fx->guard);
    loop_timer_cancel(fx->loop, &fx->poll);
}

static struct resolver_query *lookup(struct fixture *fx, const char *host, uint16_t port,
                                     enum resolver_family fam, struct result *rs)
{
    memset(rs, 0, sizeof(*rs));
    rs->fx = fx;
    fx->in_lookup = 1;
    struct resolver_query *q = resolver_lookup(fx->r, host, port, fam, on_result, rs);
    fx->in_lookup = 0;
    assert_non_null(q);
    assert_int_equal(rs->calls, 0);             /* never from inside resolver_lookup */
    return q;
}

static int addr_family(const struct resolved *res, size_t i)
{
    return res->addr[i].ss_family;
}

static uint16_t addr_port(const struct resolved *res, size_t i)
{
    if (res->addr[i].ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)&res->addr[i])->sin_port);
    return ntohs(((const struct sockaddr_in6 *)(const void *)&res->addr[i])->sin6_port);
}

static void assert_addr(const struct resolved *res, size_t i, const char *text, uint16_t port)
{
    char buf[INET6_ADDRSTRLEN] = "";
    const void *a = res->addr[i].ss_family == AF_INET
        ? (const void *)&((const struct sockaddr_in *)(const void *)&res->addr[i])->sin_addr
        : (const void *)&((const struct sockaddr_in6 *)(const void *)&res->addr[i])->sin6_addr;
    inet_ntop(res->addr[i].ss_family, a, buf, sizeof(buf));
    assert_string_equal(buf, text);
    assert_int_equal(addr_port(res, i), port);
    assert_int_equal(res->len[i], res->addr[i].ss_family == AF_INET
                     ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
}

static void assert_ok_once(const struct result *rs, size_t n)
{
    assert_int_equal(rs->calls, 1);
    assert_int_equal(rs->inside_lookup, 0);
    assert_int_equal(rs->status, RESOLVER_OK);
    assert_int_equal(rs->res.n, n);
}

static void assert_failed_once(const struct result *rs, int status)
{
    assert_int_equal(rs->calls, 1);
    assert_int_equal(rs->inside_lookup, 0);
    assert_int_equal(rs->status, status);
    assert_int_equal(rs->res.n, 0);
}

/* ---- tests ---- */

static void test_ipv4_literal(void **state)
{
    struct fixture *fx = *state;
    struct result a, b;
    lookup(fx, "192.0.2.7", 443, RESOLVER_PREFER_IPV6, &a);
    lookup(fx, "192.0.2.7", 443, RESOLVER_IPV6_ONLY, &b);
    run_until(fx, 2, 1000);
    assert_ok_once(&a, 1);
    assert_addr(&a.res, 0, "192.0.2.7", 443);
    assert_failed_once(&b, RESOLVER_NOTFOUND);
    assert_int_equal(fx->dns.total, 0);
    assert_int_equal(resolver_outstanding(fx->r), 0);
}

static void test_ipv6_literal(void **state)
{
    struct fixture *fx = *state;
    struct result a, b, c;
    lookup(fx, "2001:db8::7", 80, RESOLVER_PREFER_IPV4, &a);
    lookup(fx, "[2001:DB8::8]", 81, RESOLVER_IPV6_ONLY, &b);
    lookup(fx, "::1", 82, RESOLVER_IPV4_ONLY, &c);
    run_until(fx, 3, 1000);
    assert_ok_once(&a, 1);
    assert_addr(&a.res, 0, "2001:db8::7", 80);
    assert_ok_once(&b, 1);
    assert_addr(&b.res, 0, "2001:db8::8", 81);
    assert_failed_once(&c, RESOLVER_NOTFOUND);
    assert_int_equal(fx->dns.total, 0);
}

/* /etc/hosts maps localhost to 127.0.0.1 (required by every Linux system
 * we run on); no DNS query may be sent. */
static void test_localhost_hosts_file(void **state)
{
    struct fixture *fx = *state;
    struct result a;
    lookup(fx, "localhost", 1080, RESOLVER_PREFER_IPV4, &a);
    run_until(fx, 1, 1000);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, RESOLVER_OK);
    assert_true(a.res.n >= 1);
    assert_addr(&a.res, 0, "127.0.0.1", 1080);
    assert_int_equal(fx->dns.total, 0);
}

/* Same with the system configuration (servers = NULL): still no network. */
static void test_localhost_system_servers(void **state)
{
    struct fixture *fx = *state;
    struct resolver_opts o = { .timeout_ms = 1000 };
    char err[256] = "";
    struct result a;
    resolver_free(fx->r);
    fx->r = resolver_new(fx->loop, &o, err, sizeof(err));
    assert_non_null(fx->r);
    lookup(fx, "LocalHost", 7, RESOLVER_PREFER_IPV4, &a);
    run_until(fx, 1, 2000);
    assert_int_equal(a.status, RESOLVER_OK);
    assert_addr(&a.res, 0, "127.0.0.1", 7);
}

static void test_fake_server_families(void **state)
{
    struct fixture *fx = *state;
    struct result p4, p6, o4, o6, miss;
    lookup(fx, "v4v6.test", 8080, RESOLVER_PREFER_IPV4, &p4);
    lookup(fx, "V4V6.test", 8081, RESOLVER_PREFER_IPV6, &p6);
    lookup(fx, "v4v6.test", 8082, RESOLVER_IPV4_ONLY, &o4);
    lookup(fx, "v4v6.test", 8083, RESOLVER_IPV6_ONLY, &o6);
    lookup(fx, "v4.test", 8084, RESOLVER_IPV6_ONLY, &miss);
    run_until(fx, 5, 2000);

    assert_ok_once(&p4, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(addr_family(&p4.res, i), i < 2 ? AF_INET : AF_INET6);
        assert_int_equal(addr_port(&p4.res, i), 8080);
    }
    assert_ok_once(&p6, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(addr_family(&p6.res, i), i < 2 ? AF_INET6 : AF_INET);
        assert_int_equal(addr_port(&p6.res, i), 8081);
    }
    assert_ok_once(&o4, 2);
    assert_addr(&o4.res, 0, "192.0.2.1", 8082);
    assert_addr(&o4.res, 1, "192.0.2.2", 8082);
    assert_ok_once(&o6, 2);
    assert_addr(&o6.res, 0, "2001:db8::1", 8083);
    assert_addr(&o6.res, 1, "2001:db8::2", 8083);
    assert_failed_once(&miss, RESOLVER_NOTFOUND);
    assert_true(fake_hits(&fx->dns, "v4v6.test") >= 4);
}

static void test_single_family_names(void **state)
{
    struct fixture *fx = *state;
    struct result a, b;
    lookup(fx, "v4.test", 1, RESOLVER_PREFER_IPV6, &a);
    lookup(fx, "v6.test", 2, RESOLVER_PREFER_IPV4, &b);
    run_until(fx, 2, 2000);
    assert_ok_once(&a, 1);
    assert_addr(&a.res, 0, "192.0.2.10", 1);
    assert_ok_once(&b, 1);
    assert_addr(&b.res, 0, "2001:db8::10", 2);
}

/* 10 A + 10 AAAA: capped at RESOLVER_MAX_ADDRS, one slot kept for the
 * other family. */
static void test_many_addresses_capped(void **state)
{
    struct fixture *fx = *state;
    struct result a;
    lookup(fx, "many.test", 53, RESOLVER_PREFER_IPV6, &a);
    run_until(fx, 1, 2000);
    assert_ok_once(&a, RESOLVER_MAX_ADDRS);
    for (size_t i = 0; i < RESOLVER_MAX_ADDRS - 1; i++)
        assert_int_equal(addr_family(&a.res, i), AF_INET6);
    assert_int_equal(addr_family(&a.res, RESOLVER_MAX_ADDRS - 1), AF_INET);
}

static void test_nxdomain(void **state)
{
    struct fixture *fx = *state;
    struct result a, b;
    lookup(fx, "nosuch.test", 80, RESOLVER_PREFER_IPV4, &a);
    lookup(fx, "", 80, RESOLVER_PREFER_IPV4, &b);
    run_until(fx, 2, 2000);
    assert_failed_once(&a, RESOLVER_NOTFOUND);
    assert_failed_once(&b, RESOLVER_NOTFOUND);
    assert_true(fx->dns.nx >= 1);
}

/* A server that never answers: RESOLVER_TIMEOUT at timeout_ms, while a
 * literal started at the same moment answers at once. Then c-ares' own late
 * completion must be swallowed and the query memory reclaimed. */
static void test_timeout_while_literal_answers(void **state)
{
    struct fixture *fx = *state;
    struct result hole, lit;
    uint64_t t0 = clock_now_ms();
    lookup(fx, "blackhole.test", 80, RESOLVER_PREFER_IPV4, &hole);
    lookup(fx, "192.0.2.99", 80, RESOLVER_PREFER_IPV4, &lit);
    run_until(fx, 1, TIMEOUT_MS + SLACK_MS);
    assert_ok_once(&lit, 1);
    assert_int_equal(hole.calls, 0);
    assert_true(lit.at_ms - t0 < 100);

    run_until(fx, 2, TIMEOUT_MS + SLACK_MS);
    assert_failed_once(&hole, RESOLVER_TIMEOUT);
    assert_true(hole.at_ms - t0 >= TIMEOUT_MS - 5);
    assert_true(hole.at_ms - t0 <= TIMEOUT_MS + SLACK_MS);
    assert_true(fake_hits(&fx->dns, "blackhole.test") >= 1);

    run_until_idle(fx, 3 * TIMEOUT_MS);
    assert_int_equal(hole.calls, 1);
    assert_int_equal(resolver_outstanding(fx->r), 0);
}

static void test_cancel_before_answer(void **state)
{
    struct fixture *fx = *state;
    struct result dns, lit, cached, sentinel;
    struct resolver_query *q1 = lookup(fx, "v4v6.test", 80, RESOLVER_PREFER_IPV4, &dns);
    struct resolver_query *q2 = lookup(fx, "192.0.2.1", 80, RESOLVER_PREFER_IPV4, &lit);
    struct resolver_query *q3 = lookup(fx, "", 80, RESOLVER_PREFER_IPV4, &cached);
    resolver_cancel(q1);
    resolver_cancel(q2);
    resolver_cancel(q3);
    resolver_cancel(NULL);
    lookup(fx, "v4.test", 80, RESOLVER_PREFER_IPV4, &sentinel);
    run_until(fx, 1, 2000);
    run_until_idle(fx, 2000);
    assert_ok_once(&sentinel, 1);
    assert_int_equal(dns.calls + lit.calls + cached.calls, 0);
    assert_true(fake_hits(&fx->dns, "v4v6.test") >= 2);      /* the answer did arrive */
    assert_int_equal(resolver_outstanding(fx->r), 0);
}

static void test_cancel_from_other_callback(void **state)
{
    struct fixture *fx = *state;
    struct result victim, killer, victim2, killer2;
    /* A literal answers in the first loop pass; the DNS reply for the victim
     * needs at least a second one (the fake server reads, then replies). */
    struct resolver_query *qv = lookup(fx, "v4v6.test", 80, RESOLVER_PREFER_IPV4, &victim);
    lookup(fx, "192.0.2.5", 80, RESOLVER_PREFER_IPV4, &killer);
    killer.cancel_on_call = qv;
    /* A DNS answer cancels a query c-ares will hold until its own timeout. */
    struct resolver_query *qv2 = lookup(fx, "blackhole.test", 80, RESOLVER_PREFER_IPV4, &victim2);
    lookup(fx, "v4.test", 80, RESOLVER_PREFER_IPV4, &killer2);
    killer2.cancel_on_call = qv2;
    run_until(fx, 2, 2000);
    run_until(fx, 0, 100);
    assert_ok_once(&killer, 1);
    assert_int_equal(victim.calls, 0);
    assert_ok_once(&killer2, 1);
    assert_int_equal(victim2.calls, 0);
    run_until_idle(fx, 3 * TIMEOUT_MS);
    assert_int_equal(victim2.calls, 0);
    assert_int_equal(resolver_outstanding(fx->r), 0);
}

/* Every kind of immediate answer still goes through the loop. */
static void test_never_called_inside_lookup(void **state)
{
    struct fixture *fx = *state;
    struct result rs[6];
    resolver_free(fx->r);
    fx->r = new_resolver(fx, TIMEOUT_MS, 8);
    lookup(fx, "other.test", 1, RESOLVER_PREFER_IPV4, &rs[0]);
    run_until(fx, 1, 2000);
    assert_ok_once(&rs[0], 1);
    lookup(fx, "other.test", 1, RESOLVER_PREFER_IPV4, &rs[0]);   /* cache hit */
    lookup(fx, "10.1.2.3", 2, RESOLVER_PREFER_IPV4, &rs[1]);     /* literal */
    lookup(fx, "localhost", 3, RESOLVER_PREFER_IPV4, &rs[2]);    /* c-ares, hosts file */
    lookup(fx, "", 4, RESOLVER_PREFER_IPV4, &rs[3]);             /* impossible name */
    lookup(fx, "bad..name", 5, RESOLVER_PREFER_IPV4, &rs[4]);    /* c-ares rejects */
    lookup(fx, "::", 6, RESOLVER_IPV4_ONLY, &rs[5]);             /* literal, wrong family */
    run_until(fx, 7, 2000);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(rs[i].calls, 1);
        assert_int_equal(rs[i].inside_lookup, 0);
    }
    assert_int_equal(rs[0].status, RESOLVER_OK);
    assert_int_equal(rs[2].status, RESOLVER_OK);
    assert_int_equal(rs[3].status, RESOLVER_NOTFOUND);
    assert_int_not_equal(rs[4].status, RESOLVER_OK);
    assert_int_equal(rs[5].status, RESOLVER_NOTFOUND);
}

static void test_cache(void **state)
{
    struct fixture *fx = *state;
    struct result a;
    resolver_free(fx->r);
    fx->r = new_resolver(fx, TIMEOUT_MS, 2);

    lookup(fx, "v4v6.test", 80, RESOLVER_PREFER_IPV4, &a);
    run_until(fx, fx->done + 1, 2000);
    assert_ok_once(&a, 4);
    unsigned hits = fake_hits(&fx->dns, "v4v6.test");
    assert_true(hits >= 2);

    lookup(fx, "V4V6.TEST", 9999, RESOLVER_PREFER_IPV6, &a);   /* hit, other port/order */
    run_until(fx, fx->done + 1, 2000);
    assert_ok_once(&a, 4);
    assert_int_equal(addr_family(&a.res, 0), AF_INET6);
    for (size_t i = 0; i < 4; i++) assert_int_equal(addr_port(&a.res, i), 9999);
    assert_int_equal(fake_hits(&fx->dns, "v4v6.test"), hits);

    lookup(fx, "v4v6.test", 80, RESOLVER_IPV4_ONLY, &a);       /* other family class: miss */
    run_until(fx, fx->done + 1, 2000);
    assert_ok_once(&a, 2);
    assert_true(fake_hits(&fx->dns, "v4v6.test") > hits);

    unsigned nx = fx->dns.nx;                                  /* negative caching */
    lookup(fx, "nosuch.test", 80, RESOLVER_PREFER_IPV4, &a);
    run_until(fx, fx->done + 1, 2000);
    assert_failed_once(&a, RESOLVER_NOTFOUND);
    unsigned nx1 = fx->dns.nx;
    assert_true(nx1 > nx);
    lookup(fx, "nosuch.test", 80, RESOLVER_PREFER_IPV4, &a);
    run_until(fx, fx->done + 1, 2000);
    assert_failed_once(&a, RESOLVER_NOTFOUND);
    assert_int_equal(fx->dns.nx, nx1);

    for (int i = 0; i < 2; i++) {                              /* TTL 0: never cached */
        lookup(fx, "ttl0.test", 80, RESOLVER_PREFER_IPV4, &a);
        run_until(fx, fx->done + 1, 2000);
        assert_ok_once(&a, 1);
    }
    assert_true(fake_hits(&fx->dns, "ttl0.test") >= 4);

    /* Capacity 2: v4v6 (prefer class) was evicted by later names. */
    hits = fake_hits(&fx->dns, "v4v6.test");
    lookup(fx, "v4v6.test", 80, RESOLVER_PREFER_IPV4, &a);
    run_until(fx, fx->done + 1, 2000);
    assert_ok_once(&a, 4);
    assert_true(fake_hits(&fx->dns, "v4v6.test") > hits);
}

/* LRU order, replacement of a name answered twice, TTL expiry. */
static void test_cache_lru_and_ttl(void **state)
{
    struct fixture *fx = *state;
    struct result a, b;
    resolver_free(fx->r);
    fx->r = new_resolver(fx, TIMEOUT_MS, 2);

    lookup(fx, "v4.test", 80, RESOLVER_PREFER_IPV4, &a);       /* both stored: replace */
    lookup(fx, "v4.test", 81, RESOLVER_PREFER_IPV4, &b);
    run_until(fx, fx->done + 2, 2000);
    assert_ok_once(&a, 1);
    assert_ok_once(&b, 1);
    lookup(fx, "v6.test", 80, RESOLVER_PREFER_IPV4, &a);
    run_until(fx, fx->done + 1, 2000);
    unsigned h4 = fake_hits(&fx->dns, "v4.test"), h6 = fake_hits(&fx->dns, "v6.test");
    lookup(fx, "v4.test", 80, RESOLVER_PREFER_IPV4, &a);       /* hit: v4 becomes newest */
    run_until(fx, fx->done + 1, 2000);
    lookup(fx, "other.test", 80, RESOLVER_PREFER_IPV4, &a);    /* evicts v6, not v4 */
    run_until(fx, fx->done + 1, 2000);
    lookup(fx, "v4.test", 80, RESOLVER_PREFER_IPV4, &a);
    run_until(fx, fx->done + 1, 2000);
    assert_ok_once(&a, 1);
    assert_int_equal(fake_hits(&fx->dns, "v4.test"), h4);
    lookup(fx, "v6.test", 80, RESOLVER_PREFER_IPV4, &a);
    run_until(fx, fx->done + 1, 2000);
    assert_ok_once(&a, 1);
    assert_true(fake_hits(&fx->dns, "v6.test") > h6);

    lookup(fx, "ttl1.test", 80, RESOLVER_PREFER_IPV4, &a);
    run_until(fx, fx->done + 1, 2000);
    unsigned h1 = fake_hits(&fx->dns, "ttl1.test");
    lookup(fx, "ttl1.test", 80, RESOLVER_PREFER_IPV4, &a);     /* within the TTL: hit */
    run_until(fx, fx->done + 1, 2000);
    assert_ok_once(&a, 1);
    assert_int_equal(fake_hits(&fx->dns, "ttl1.test"), h1);
    run_until(fx, 0, 1050);
    lookup(fx, "ttl1.test", 80, RESOLVER_PREFER_IPV4, &a);     /* expired: asked again */
    run_until(fx, fx->done + 1, 2000);
    assert_ok_once(&a, 1);
    assert_true(fake_hits(&fx->dns, "ttl1.test") > h1);
}

/* A truncated UDP answer makes c-ares retry over TCP: the socket interest
 * changes (read+write while connecting, then read). */
static void test_tcp_fallback(void **state)
{
    struct fixture *fx = *state;
    struct result a;
    lookup(fx, "tcp.test", 53, RESOLVER_IPV4_ONLY, &a);
    run_until(fx, 1, 2000);
    assert_ok_once(&a, 1);
    assert_addr(&a.res, 0, "192.0.2.40", 53);
    assert_true(fx->dns.tcp >= 1);
}

static void test_no_cache(void **state)
{
    struct fixture *fx = *state;                /* fixture resolver: cache_entries 0 */
    struct result a;
    for (int i = 0; i < 2; i++) {
        lookup(fx, "other.test", 80, RESOLVER_PREFER_IPV4, &a);
        run_until(fx, fx->done + 1, 2000);
        assert_ok_once(&a, 1);
    }
    assert_true(fake_hits(&fx->dns, "other.test") >= 4);
}

/* Outstanding queries of every kind, then resolver_free: no callback, no
 * leak (LeakSanitizer), no stale event afterwards. */
static void test_free_with_outstanding(void **state)
{
    struct fixture *fx = *state;
    struct result rs[5];
    lookup(fx, "blackhole.test", 80, RESOLVER_PREFER_IPV4, &rs[0]);
    run_until(fx, 0, 50);                       /* sockets open, query sent */
    lookup(fx, "v4v6.test", 80, RESOLVER_PREFER_IPV4, &rs[1]);
    lookup(fx, "192.0.2.1", 80, RESOLVER_PREFER_IPV4, &rs[2]);
    lookup(fx, "localhost", 80, RESOLVER_PREFER_IPV4, &rs[3]);
    struct resolver_query *q = lookup(fx, "v6.test", 80, RESOLVER_PREFER_IPV4, &rs[4]);
    resolver_cancel(q);
    assert_true(resolver_outstanding(fx->r) >= 4);
    resolver_free(fx->r);
    fx->r = NULL;
    run_until(fx, 0, 100);                      /* replies arrive at a closed socket */
    for (int i = 0; i < 5; i++) assert_int_equal(rs[i].calls, 0);
}

/* A timed-out query still held by c-ares, freed with the resolver. */
static void test_free_after_timeout(void **state)
{
    struct fixture *fx = *state;
    struct result a;
    resolver_free(fx->r);
    fx->r = new_resolver(fx, 60, 0);
    lookup(fx, "blackhole.test", 80, RESOLVER_PREFER_IPV4, &a);
    run_until(fx, 1, 60 + SLACK_MS);
    assert_failed_once(&a, RESOLVER_TIMEOUT);
    resolver_free(fx->r);                       /* c-ares may still hold it */
    fx->r = NULL;
}

static void test_free_from_callback(void **state)
{
    struct fixture *fx = *state;
    struct result killer, pending[3];
    lookup(fx, "blackhole.test", 80, RESOLVER_PREFER_IPV4, &pending[0]);
    lookup(fx, "v4v6.test", 80, RESOLVER_PREFER_IPV4, &pending[1]);
    lookup(fx, "192.0.2.1", 80, RESOLVER_PREFER_IPV4, &killer);
    lookup(fx, "192.0.2.2", 80, RESOLVER_PREFER_IPV4, &pending[2]);
    killer.free_on_call = 1;
    run_until(fx, 1, 1000);
    run_until(fx, 0, 100);
    assert_int_equal(killer.calls, 1);
    assert_null(fx->r);
    /* pending[2] may have been answered in the same timer pass, before killer. */
    assert_int_equal(pending[0].calls + pending[1].calls, 0);
}

static struct resolver *new_capped_resolver(struct fixture *fx, unsigned timeout_ms, unsigned max_inflight,
                                            unsigned max_detached)
{
    struct resolver_opts o = { .servers = fx->servers, .timeout_ms = timeout_ms,
                               .max_inflight = max_inflight, .max_detached = max_detached };
    char err[256] = "";
    struct resolver *r = resolver_new(fx->loop, &o, err, sizeof(err));
    if (!r) fail_msg("resolver_new: %s", err);
    return r;
}

static void assert_stats(const struct resolver *r, size_t inflight, size_t detached, uint64_t refused)
{
    struct resolver_stats st;
    resolver_get_stats(r, &st);
    assert_int_equal(st.inflight, inflight);
    assert_int_equal(st.detached, detached);
    assert_int_equal(st.refused, refused);
}

/* Finding 7: cancelled lookups of a server that never answers stay with
 * c-ares until its timeout. N of them fill the detached cap: lookup N+1 is
 * refused (RESOLVER_BUSY, from the loop, counted), while literals still
 * answer; what c-ares holds never exceeds the cap; once c-ares lets go,
 * lookups are accepted again. */
static void test_detached_lookups_capped(void **state)
{
    struct fixture *fx = *state;
    enum { N = 4 };
    struct result rs[N + 2];
    char name[64];
    resolver_free(fx->r);
    fx->r = new_capped_resolver(fx, TIMEOUT_MS, 100, N);

    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "a%d.blackhole.test", i);
        resolver_cancel(lookup(fx, name, 80, RESOLVER_PREFER_IPV4, &rs[i]));
    }
    assert_stats(fx->r, N, N, 0);
    lookup(fx, "b.blackhole.test", 80, RESOLVER_PREFER_IPV4, &rs[N]);
    lookup(fx, "192.0.2.9", 80, RESOLVER_PREFER_IPV4, &rs[N + 1]);
    assert_stats(fx->r, N, N, 1);
    run_until(fx, 2, 1000);
    assert_failed_once(&rs[N], RESOLVER_BUSY);
    assert_ok_once(&rs[N + 1], 1);
    for (int i = 0; i < N; i++) assert_int_equal(rs[i].calls, 0);
    assert_string_equal(resolver_strerror(RESOLVER_BUSY), "too many DNS lookups in flight");

    run_until_idle(fx, 3 * TIMEOUT_MS + SLACK_MS);     /* c-ares times them out */
    assert_int_equal(resolver_outstanding(fx->r), 0);
    assert_stats(fx->r, 0, 0, 1);
    lookup(fx, "v4.test", 80, RESOLVER_PREFER_IPV4, &rs[0]);
    run_until(fx, fx->done + 1, 2000);
    assert_ok_once(&rs[0], 1);
}

/* Lookups a user still waits for count against max_inflight; a timed-out
 * one becomes detached. Every refusal is counted. */
static void test_inflight_lookups_capped(void **state)
{
    struct fixture *fx = *state;
    enum { N = 3 };
    struct result rs[N + 2];
    char name[64];
    resolver_free(fx->r);
    fx->r = new_capped_resolver(fx, TIMEOUT_MS, N, N);

    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "c%d.blackhole.test", i);
        lookup(fx, name, 80, RESOLVER_PREFER_IPV4, &rs[i]);
    }
    lookup(fx, "v4.test", 80, RESOLVER_PREFER_IPV4, &rs[N]);
    lookup(fx, "v6.test", 80, RESOLVER_PREFER_IPV4, &rs[N + 1]);
    assert_stats(fx->r, N, 0, 2);
    run_until(fx, 2, 1000);
    assert_failed_once(&rs[N], RESOLVER_BUSY);
    assert_failed_once(&rs[N + 1], RESOLVER_BUSY);
    assert_int_equal(fake_hits(&fx->dns, "v4.test") + fake_hits(&fx->dns, "v6.test"), 0);

    run_until(fx, N + 2, TIMEOUT_MS + SLACK_MS);      /* our deadline: detached now */
    for (int i = 0; i < N; i++) assert_failed_once(&rs[i], RESOLVER_TIMEOUT);
    struct resolver_stats st;
    resolver_get_stats(fx->r, &st);
    assert_true(st.inflight <= N && st.detached == st.inflight);
    run_until_idle(fx, 3 * TIMEOUT_MS + SLACK_MS);
    assert_stats(fx->r, 0, 0, 2);
}

/* The defaults: 1024 in flight, a quarter of them detached. */
static void test_default_caps(void **state)
{
    struct fixture *fx = *state;
    enum { N = 1024 / 4 };
    static struct result rs[N + 1];
    char name[64];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "d%d.blackhole.test", i);
        resolver_cancel(lookup(fx, name, 80, RESOLVER_PREFER_IPV4, &rs[i]));
    }
    lookup(fx, "e.blackhole.test", 80, RESOLVER_PREFER_IPV4, &rs[N]);
    assert_stats(fx->r, N, N, 1);
    run_until(fx, 1, 1000);
    assert_failed_once(&rs[N], RESOLVER_BUSY);
}

static void test_bad_servers(void **state)
{
    struct fixture *fx = *state;
    static const char *const bad[] = {
        "", "nonsense", "1.2.3.4:0", "1.2.3.4:70000", "1.2.3.4:", "1.2.3.4:5x",
        "[::1", "[::1]x", "[1.2.3.4]:53", "1.2.3.4,,5.6.7.8", "1.2.3.4,",
    };
    static const char *const good[] = {
        "127.0.0.1", "127.0.0.1:5353", "[::1]:5353", "::1", "[::1]", "10.0.0.1:53,[fd00::1]:5300",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct resolver_opts o = { .servers = bad[i] };
        char err[256] = "";
        struct resolver *r = resolver_new(fx->loop, &o, err, sizeof(err));
        if (r) fail_msg("accepted bad servers '%s'", bad[i]);
        assert_true(strlen(err) > 0);
        assert_null(strchr(err, '\n'));
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct resolver_opts o = { .servers = good[i] };
        char err[256] = "";
        struct resolver *r = resolver_new(fx->loop, &o, err, sizeof(err));
        if (!r) fail_msg("rejected '%s': %s", good[i], err);
        resolver_free(r);
    }
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(resolver_strerror(RESOLVER_OK), "ok");
    assert_string_equal(resolver_strerror(RESOLVER_NOTFOUND), "host not found");
    assert_string_equal(resolver_strerror(RESOLVER_TIMEOUT), "DNS timeout");
    assert_string_equal(resolver_strerror(RESOLVER_FAILED), "DNS failure");
    assert_non_null(resolver_strerror(42));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_ipv4_literal),
        T(test_ipv6_literal),
        T(test_localhost_hosts_file),
        T(test_localhost_system_servers),
        T(test_fake_server_families),
        T(test_single_family_names),
        T(test_many_addresses_capped),
        T(test_nxdomain),
        T(test_timeout_while_literal_answers),
        T(test_cancel_before_answer),
        T(test_cancel_from_other_callback),
        T(test_never_called_inside_lookup),
        T(test_cache),
        T(test_no_cache),
        T(test_cache_lru_and_ttl),
        T(test_tcp_fallback),
        T(test_free_with_outstanding),
        T(test_free_after_timeout),
        T(test_free_from_callback),
        T(test_detached_lookups_capped),
        T(test_inflight_lookups_capped),
        T(test_default_caps),
        T(test_bad_servers),
        T(test_strerror),
    };
    alarm(60);                                  /* last resort if a guard fails */
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_socks5.c - unit tests for proto/socks5 (RFC 1928 / RFC 1929) and
 * socks_addr_format().
 *
 * Every valid vector goes through expect_stream(): each proper prefix, in a
 * heap buffer of exactly that size (so ASan flags any read past len), must
 * give NEED_MORE without touching the outputs; then the whole message with
 * pipelined bytes after it must give DONE with consumed == message length.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/socks5.h"

#define SENTINEL_BYTE 0xA5
#define SENTINEL_SIZE ((size_t)0xDEADBEEF)

/* ---- generic driver -------------------------------------------------- */

struct parser {
    const char *name;
    size_t outsize;
    int (*parse)(const uint8_t *buf, size_t len, void *out, size_t *consumed);
};

static int p_greeting(const uint8_t *b, size_t l, void *o, size_t *c)
{
    return socks5_parse_greeting(b, l, o, c);
}

static int p_userpass(const uint8_t *b, size_t l, void *o, size_t *c)
{
    return socks5_parse_userpass(b, l, o, c);
}

/* *reply must be OK whenever the result is not INVALID. */
static int p_request(const uint8_t *b, size_t l, void *o, size_t *c)
{
    uint8_t rep = 0xEE;
    int st = socks5_parse_request(b, l, o, c, &rep);

    if (st != SOCKS_INVALID)
        assert_int_equal(rep, SOCKS5_REP_OK);
    return st;
}

static int p_addr(const uint8_t *b, size_t l, void *o, size_t *c)
{
    return socks5_parse_addr(b, l, o, c);
}

/* FRAG is written once len covers it; it must be 0 unless INVALID. */
static int p_udp(const uint8_t *b, size_t l, void *o, size_t *c)
{
    uint8_t frag = 0xEE;
    int st = socks5_parse_udp_header(b, l, o, &frag, c);

    if (l < 3)
        assert_int_equal(frag, 0xEE);
    else if (st != SOCKS_INVALID)
        assert_int_equal(frag, 0);
    return st;
}

static const struct parser GREETING = { "greeting", sizeof(struct socks5_greeting), p_greeting };
static const struct parser USERPASS = { "userpass", sizeof(struct socks5_userpass), p_userpass };
static const struct parser REQUEST = { "request", sizeof(struct socks5_request), p_request };
static const struct parser ADDR = { "addr", sizeof(struct socks_addr), p_addr };
static const struct parser UDP = { "udp", sizeof(struct socks_addr), p_udp };

static int all_sentinel(const void *p, size_t n)
{
    const uint8_t *b = p;

    for (size_t i = 0; i < n; i++)
        if (b[i] != SENTINEL_BYTE)
            return 0;
    return 1;
}

/* Runs p on exactly len bytes copied to the heap; outputs start as
 * sentinels. Returns the status; *out and *consumed as the parser left them. */
static int run_exact(const struct parser *p, const uint8_t *msg, size_t len, void *out, size_t *consumed)
{
    uint8_t *b = malloc(len ? len : 1);
    int st;

    assert_non_null(b);
    memcpy(b, msg, len);
    memset(out, SENTINEL_BYTE, p->outsize);
    *consumed = SENTINEL_SIZE;
    st = p->parse(len ? b : b + 1, len, out, consumed);  /* len 0: pointer one past */
    free(b);
    return st;
}

/* The every-prefix + pipelined check described at the top. On DONE the
 * parsed result is copied to result (p->outsize bytes). */
static void expect_stream(const struct parser *p, const uint8_t *msg, size_t len, void *result)
{
    static const uint8_t trailer[] = "PIPELINED PAYLOAD";
    void *out = malloc(p->outsize), *first = malloc(p->outsize);
    uint8_t *full = malloc(len + sizeof trailer);
    size_t consumed;
    int st;

    assert_non_null(out);
    assert_non_null(first);
    assert_non_null(full);
    for (size_t i = 0; i < len; i++) {
        st = run_exact(p, msg, i, out, &consumed);
        if (st != SOCKS_NEED_MORE)
            print_error("%s: prefix of %zu/%zu bytes gave %d\n", p->name, i, len, st);
        assert_int_equal(st, SOCKS_NEED_MORE);
        assert_true(consumed == SENTINEL_SIZE);
        assert_true(all_sentinel(out, p->outsize));
    }

    st = run_exact(p, msg, len, first, &consumed);
    assert_int_equal(st, SOCKS_DONE);
    assert_int_equal(consumed, len);

    memcpy(full, msg, len);
    memcpy(full + len, trailer, sizeof trailer);
    st = run_exact(p, full, len + sizeof trailer, out, &consumed);
    assert_int_equal(st, SOCKS_DONE);
    assert_int_equal(consumed, len);
    assert_memory_equal(out, first, p->outsize);  /* trailing bytes change nothing */

    if (result)
        memcpy(result, out, p->outsize);
    free(full);
    free(first);
    free(out);
}

/* INVALID on exactly len bytes, with outputs untouched. */
static void expect_invalid(const struct parser *p, const uint8_t *msg, size_t len)
{
    void *out = malloc(p->outsize);
    size_t consumed;

    assert_non_null(out);
    assert_int_equal(run_exact(p, msg, len, out, &consumed), SOCKS_INVALID);
    assert_true(consumed == SENTINEL_SIZE);
    assert_true(all_sentinel(out, p->outsize));
    free(out);
}

/* Request INVALID on exactly len bytes, with this reply code. */
static void expect_req_invalid(const uint8_t *msg, size_t len, uint8_t want_reply)
{
    uint8_t *b = malloc(len);
    struct socks5_request r;
    size_t consumed = SENTINEL_SIZE;
    uint8_t rep = 0xEE;

    assert_non_null(b);
    memcpy(b, msg, len);
    memset(&r, SENTINEL_BYTE, sizeof r);
    assert_int_equal(socks5_parse_request(b, len, &r, &consumed, &rep), SOCKS_INVALID);
    assert_int_equal(rep, want_reply);
    assert_true(consumed == SENTINEL_SIZE);
    assert_true(all_sentinel(&r, sizeof r));
    free(b);
}

/* Deterministic PRNG (xorshift32) so failures reproduce. */
static uint32_t rng_state = 0x12345678;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void fill_name(char *dst, size_t n, char c)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)(c + i % 26);
}

/* ---- greeting -------------------------------------------------------- */

static void test_greeting_valid(void **state)
{
    static const uint8_t one[] = { 0x05, 0x01, 0x00 };
    static const uint8_t two[] = { 0x05, 0x02, 0x00, 0x02 };
    struct socks5_greeting g;

    (void)state;
    expect_stream(&GREETING, one, sizeof one, &g);
    assert_int_equal(g.nmethods, 1);
    assert_int_equal(g.methods[0], 0);
    assert_true(socks5_greeting_offers(&g, SOCKS5_METHOD_NOAUTH));
    assert_false(socks5_greeting_offers(&g, SOCKS5_METHOD_USERPASS));

    expect_stream(&GREETING, two, sizeof two, &g);
    assert_int_equal(g.nmethods, 2);
    assert_true(socks5_greeting_offers(&g, SOCKS5_METHOD_NOAUTH));
    assert_true(socks5_greeting_offers(&g, SOCKS5_METHOD_USERPASS));
    assert_false(socks5_greeting_offers(&g, 0x01));
    assert_false(socks5_greeting_offers(&g, SOCKS5_METHOD_NONE));
}

/* 255 methods, 0x00..0xFE: the largest greeting; 0xFF is not offered. */
static void test_greeting_max(void **state)
{
    uint8_t msg[SOCKS5_GREETING_MAX];
    struct socks5_greeting g;

    (void)state;
    msg[0] = 5;
    msg[1] = 255;
    for (int i = 0; i < 255; i++)
        msg[2 + i] = (uint8_t)i;
    expect_stream(&GREETING, msg, sizeof msg, &g);
    assert_int_equal(g.nmethods, 255);
    assert_memory_equal(g.methods, msg + 2, 255);
    for (int m = 0; m < 255; m++)
        assert_true(socks5_greeting_offers(&g, (uint8_t)m));
    assert_false(socks5_greeting_offers(&g, SOCKS5_METHOD_NONE));
}

static void test_greeting_invalid(void **state)
{
    static const uint8_t v4[] = { 0x04, 0x01, 0x00 };
    static const uint8_t zero[] = { 0x05, 0x00 };
    static const uint8_t http[] = "GET / HTTP/1.1\r\n";

    (void)state;
    expect_invalid(&GREETING, v4, 1);           /* rejected on the first byte */
    expect_invalid(&GREETING, v4, sizeof v4);
    expect_invalid(&GREETING, zero, sizeof zero);
    expect_invalid(&GREETING, http, sizeof http - 1);
    for (int v = 0; v < 256; v++) {
        uint8_t b = (uint8_t)v;
        if (v != SOCKS5_VERSION)
            expect_invalid(&GREETING, &b, 1);
    }
}

/* ---- RFC 1929 username/password -------------------------------------- */

static void test_userpass_valid(void **state)
{
    static const uint8_t msg[] = { 0x01, 4, 'u', 's', 'e', 'r', 6, 's', 'e', 'c', 'r', 'e', 't' };
    struct socks5_userpass up;

    (void)state;
    expect_stream(&USERPASS, msg, sizeof msg, &up);
    assert_string_equal(up.user, "user");
    assert_string_equal(up.pass, "secret");
    assert_int_equal(up.ulen, 4);
    assert_int_equal(up.plen, 6);
}

/* Every prefix of a userpass message: the password's place is known from
 * the byte after UNAME on, and always covers exactly its bytes. */
static void test_userpass_secret_every_prefix(void **state)
{
    static const uint8_t msg[] = { 0x01, 5, 'a', 'l', 'i', 'c', 'e', 6, 'S', '3', 'c', 'r', 'e', 't' };
    (void)state;
    for (size_t len = 0; len <= sizeof msg; len++) {
        uint8_t *b = malloc(len ? len : 1);
        size_t off = 99, n = 99;
        assert_non_null(b);
        memcpy(b, msg, len);
        int r = socks5_userpass_secret(b, len, &off, &n);
        if (len < 8) {
            assert_int_equal(r, 0);
            assert_int_equal(off, 99);
        } else {
            assert_int_equal(r, 1);
            assert_int_equal(off, 8);
            assert_int_equal(n, 6);
        }
        free(b);
    }
    /* not RFC 1929, or an empty password */
    static const uint8_t bad[] = { 0x05, 1, 'a', 3, 'x', 'y', 'z' };
    static const uint8_t empty[] = { 0x01, 1, 'a', 0 };
    size_t off, n;
    assert_int_equal(socks5_userpass_secret(bad, sizeof bad, &off, &n), 0);
    assert_int_equal(socks5_userpass_secret(empty, sizeof empty, &off, &n), 1);
    assert_int_equal(off, 4);
    assert_int_equal(n, 0);
    /* malformed (NUL in UNAME): still says where the password is */
    static const uint8_t nul[] = { 0x01, 2, 'a', 0, 2, 'p', 'w' };
    assert_int_equal(socks5_userpass_secret(nul, 5, &off, &n), 1);
    assert_int_equal(off, 5);
    assert_int_equal(n, 2);
}

/* PLEN 0 is accepted (see socks5.h for why): empty password. */
static void test_userpass_empty_password(void **state)
{
    static const uint8_t msg[] = { 0x01, 1, 'a', 0 };
    struct socks5_userpass up;

    (void)state;
    expect_stream(&USERPASS, msg, sizeof msg, &up);
    assert_string_equal(up.user, "a");
    assert_string_equal(up.pass, "");
    assert_int_equal(up.ulen, 1);
    assert_int_equal(up.plen, 0);
}

static void test_userpass_max(void **state)
{
    uint8_t msg[SOCKS5_USERPASS_MAX];
    struct socks5_userpass up;
    char user[256] = { 0 }, pass[256] = { 0 };

    (void)state;
    fill_name(user, 255, 'a');
    fill_name(pass, 255, 'A');
    msg[0] = 1;
    msg[1] = 255;
    memcpy(msg + 2, user, 255);
    msg[257] = 255;
    memcpy(msg + 258, pass, 255);
    expect_stream(&USERPASS, msg, sizeof msg, &up);
    assert_int_equal(up.ulen, 255);
    assert_int_equal(up.plen, 255);
    assert_string_equal(up.user, user);
    assert_string_equal(up.pass, pass);
}

static void test_userpass_invalid(void **state)
{
    static const uint8_t ver5[] = { 0x05, 1, 'a', 1, 'b' };
    static const uint8_t ulen0[] = { 0x01, 0, 1, 'b' };
    static const uint8_t nul_user[] = { 0x01, 3, 'a', 0, 'c', 1, 'b' };
    static const uint8_t nul_pass[] = { 0x01, 1, 'a', 3, 'b', 'c', 0 };

    (void)state;
    expect_invalid(&USERPASS, ver5, 1);
    expect_invalid(&USERPASS, ver5, sizeof ver5);
    expect_invalid(&USERPASS, ulen0, 2);
    expect_invalid(&USERPASS, ulen0, sizeof ulen0);
    expect_invalid(&USERPASS, nul_user, 4);     /* as soon as the NUL arrives */
    expect_invalid(&USERPASS, nul_user, sizeof nul_user);
    expect_invalid(&USERPASS, nul_pass, sizeof nul_pass);

    /* ... and not before: the prefixes ahead of the NUL still need more. */
    {
        struct socks5_userpass up;
        size_t c;
        assert_int_equal(run_exact(&USERPASS, nul_user, 3, &up, &c), SOCKS_NEED_MORE);
        assert_int_equal(run_exact(&USERPASS, nul_pass, 6, &up, &c), SOCKS_NEED_MORE);
    }
}

/* ---- requests -------------------------------------------------------- */

static void test_request_ipv4(void **state)
{
    static const uint8_t msg[] = { 5, SOCKS5_CMD_CONNECT, 0, 1, 127, 0, 0, 1, 0x1F, 0x90 };
    struct socks5_request r;

    (void)state;
    expect_stream(&REQUEST, msg, sizeof msg, &r);
    assert_int_equal(r.cmd, SOCKS5_CMD_CONNECT);
    assert_int_equal(r.dst.atyp, SOCKS_ATYP_IPV4);
    assert_memory_equal(r.dst.ip, msg + 4, 4);
    assert_int_equal(r.dst.port, 8080);
    assert_string_equal(r.dst.host, "");
}

static void test_request_ipv6(void **state)
{
    static const uint8_t msg[] = { 5, SOCKS5_CMD_CONNECT, 0, 4,
                                   0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                                   0x01, 0xBB };
    struct socks5_request r;
    char s[SOCKS_ADDR_FMT_MAX];

    (void)state;
    expect_stream(&REQUEST, msg, sizeof msg, &r);
    assert_int_equal(r.cmd, SOCKS5_CMD_CONNECT);
    assert_int_equal(r.dst.atyp, SOCKS_ATYP_IPV6);
    assert_memory_equal(r.dst.ip, msg + 4, 16);
    assert_int_equal(r.dst.port, 443);
    socks_addr_format(&r.dst, s, sizeof s);
    assert_string_equal(s, "[2001:db8::1]:443");
}

static void test_request_domain(void **state)
{
    static const uint8_t msg[] = { 5, SOCKS5_CMD_CONNECT, 0, 3, 11,
                                   'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm', 0, 80 };
    static const uint8_t zero_ip[16] = { 0 };
    struct socks5_request r;

    (void)state;
    expect_stream(&REQUEST, msg, sizeof msg, &r);
    assert_int_equal(r.dst.atyp, SOCKS_ATYP_DOMAIN);
    assert_string_equal(r.dst.host, "example.com");
    assert_memory_equal(r.dst.ip, zero_ip, 16);
    assert_int_equal(r.dst.port, 80);
}

static void test_request_domain_max(void **state)
{
    uint8_t msg[SOCKS5_REQUEST_MAX];
    char name[256] = { 0 };
    struct socks5_request r;

    (void)state;
    fill_name(name, 255, 'a');
    msg[0] = 5, msg[1] = SOCKS5_CMD_CONNECT, msg[2] = 0, msg[3] = 3, msg[4] = 255;
    memcpy(msg + 5, name, 255);
    msg[260] = 0xFF, msg[261] = 0xFF;
    expect_stream(&REQUEST, msg, sizeof msg, &r);
    assert_string_equal(r.dst.host, name);
    assert_int_equal(strlen(r.dst.host), 255);
    assert_int_equal(r.dst.port, 65535);
}

static void test_request_commands(void **state)
{
    uint8_t msg[] = { 5, 0, 0, 1, 10, 0, 0, 1, 0, 22 };
    struct socks5_request r;

    (void)state;
    /* BIND and UDP ASSOCIATE parse like CONNECT; every other CMD value is
     * DONE too (caller answers CMD_UNSUPPORTED) with the message consumed. */
    for (int cmd = 0; cmd < 256; cmd++) {
        msg[1] = (uint8_t)cmd;
        expect_stream(&REQUEST, msg, sizeof msg, &r);
        assert_int_equal(r.cmd, cmd);
        assert_int_equal(r.dst.port, 22);
    }
}

/* RSV is ignored (see socks5.h). */
static void test_request_rsv_ignored(void **state)
{
    static const uint8_t msg[] = { 5, 1, 0x7F, 1, 1, 2, 3, 4, 0, 1 };
    struct socks5_request r;

    (void)state;
    expect_stream(&REQUEST, msg, sizeof msg, &r);
    assert_int_equal(r.dst.port, 1);
}

static void test_request_invalid(void **state)
{
    static const uint8_t v4[] = { 4, 1, 0, 1, 1, 2, 3, 4, 0, 80 };
    static const uint8_t dom0[] = { 5, 1, 0, 3, 0, 0, 80 };
    static const uint8_t domnul[] = { 5, 1, 0, 3, 4, 'a', 0, 'b', 'c', 0, 80 };
    static const uint8_t domnul_last[] = { 5, 1, 0, 3, 4, 'a', 'b', 'c', 0, 0, 80 };
    uint8_t atyp[] = { 5, 1, 0, 0 };
    struct socks5_request r;
    size_t c;
    uint8_t rep;

    (void)state;
    expect_req_invalid(v4, 1, SOCKS5_REP_FAIL);
    expect_req_invalid(v4, sizeof v4, SOCKS5_REP_FAIL);
    expect_req_invalid(dom0, 5, SOCKS5_REP_FAIL);
    expect_req_invalid(dom0, sizeof dom0, SOCKS5_REP_FAIL);
    expect_req_invalid(domnul, 7, SOCKS5_REP_FAIL);     /* as soon as the NUL arrives */
    expect_req_invalid(domnul, sizeof domnul, SOCKS5_REP_FAIL);
    expect_req_invalid(domnul_last, sizeof domnul_last, SOCKS5_REP_FAIL);
    assert_int_equal(socks5_parse_request(domnul, 6, &r, &c, &rep), SOCKS_NEED_MORE);
    assert_int_equal(rep, SOCKS5_REP_OK);

    /* Every ATYP other than 1, 3, 4 is refused on byte 4 with 0x08. */
    for (int a = 0; a < 256; a++) {
        atyp[3] = (uint8_t)a;
        if (a == SOCKS_ATYP_IPV4 || a == SOCKS_ATYP_DOMAIN || a == SOCKS_ATYP_IPV6) {
            assert_int_equal(socks5_parse_request(atyp, 4, &r, &c, &rep), SOCKS_NEED_MORE);
            assert_int_equal(rep, SOCKS5_REP_OK);
        } else {
            expect_req_invalid(atyp, 4, SOCKS5_REP_ATYP_UNSUPPORTED);
        }
    }
}

/* ---- address alone, write_addr round trip ---------------------------- */

/* Field by field: struct socks_addr has a padding byte before port. */
static void assert_addr_equal(const struct socks_addr *x, const struct socks_addr *y)
{
    assert_int_equal(x->atyp, y->atyp);
    assert_memory_equal(x->ip, y->ip, sizeof x->ip);
    assert_memory_equal(x->host, y->host, sizeof x->host);
    assert_int_equal(x->port, y->port);
}

static void roundtrip(const struct socks_addr *a, size_t want_len)
{
    uint8_t buf[SOCKS5_ADDR_MAX + 8];
    struct socks_addr back;
    size_t n;

    n = socks5_write_addr(buf, sizeof buf, a);
    assert_int_equal(n, want_len);
    expect_stream(&ADDR, buf, n, &back);
    assert_addr_equal(&back, a);

    /* exactly enough room works, one byte less writes nothing */
    memset(buf, 0xCC, sizeof buf);
    assert_int_equal(socks5_write_addr(buf, n - 1, a), 0);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0xCC);
    assert_int_equal(socks5_write_addr(buf, n, a), n);
    assert_int_equal(buf[n], 0xCC);
    assert_int_equal(socks5_write_addr(buf, 0, a), 0);
}

static void test_addr_roundtrip(void **state)
{
    struct socks_addr a;

    (void)state;
    memset(&a, 0, sizeof a);
    a.atyp = SOCKS_ATYP_IPV4;
    memcpy(a.ip, "\xC0\xA8\x01\x02", 4);
    a.port = 1080;
    roundtrip(&a, 7);

    memset(&a, 0, sizeof a);
    a.atyp = SOCKS_ATYP_IPV6;
    for (int i = 0; i < 16; i++)
        a.ip[i] = (uint8_t)(0xF0 + i);
    a.port = 0;
    roundtrip(&a, 19);

    memset(&a, 0, sizeof a);
    a.atyp = SOCKS_ATYP_DOMAIN;
    strcpy(a.host, "x");
    a.port = 65535;
    roundtrip(&a, 5);

    memset(&a, 0, sizeof a);
    a.atyp = SOCKS_ATYP_DOMAIN;
    fill_name(a.host, 255, 'a');
    a.port = 443;
    roundtrip(&a, SOCKS5_ADDR_MAX);

    /* random addresses of each type */
    for (int k = 0; k < 300; k++) {
        memset(&a, 0, sizeof a);
        a.port = (uint16_t)rng();
        switch (k % 3) {
        case 0:
            a.atyp = SOCKS_ATYP_IPV4;
            for (int i = 0; i < 4; i++)
                a.ip[i] = (uint8_t)rng();
            roundtrip(&a, 7);
            break;
        case 1:
            a.atyp = SOCKS_ATYP_IPV6;
            for (int i = 0; i < 16; i++)
                a.ip[i] = (uint8_t)rng();
            roundtrip(&a, 19);
            break;
        default: {
            size_t n = 1 + rng() % 255;
            a.atyp = SOCKS_ATYP_DOMAIN;
            for (size_t i = 0; i < n; i++)
                a.host[i] = (char)(1 + rng() % 255);   /* any byte but NUL */
            roundtrip(&a, 4 + n);
            break;
        }
        }
    }
}

static void test_addr_invalid(void **state)
{
    static const uint8_t bad_atyp[] = { 2, 1, 2, 3, 4, 0, 80 };
    static const uint8_t dom0[] = { 3, 0, 0, 80 };
    static const uint8_t domnul[] = { 3, 2, 'a', 0, 0, 80 };
    uint8_t b;

    (void)state;
    for (int a = 0; a < 256; a++) {
        b = (uint8_t)a;
        if (a != SOCKS_ATYP_IPV4 && a != SOCKS_ATYP_DOMAIN && a != SOCKS_ATYP_IPV6)
            expect_invalid(&ADDR, &b, 1);
    }
    expect_invalid(&ADDR, bad_atyp, sizeof bad_atyp);
    expect_invalid(&ADDR, dom0, 2);
    expect_invalid(&ADDR, domnul, 4);
    expect_invalid(&ADDR, domnul, sizeof domnul);
}

static void test_write_addr_unencodable(void **state)
{
    struct socks_addr a;
    uint8_t buf[SOCKS5_ADDR_MAX + 8];

    (void)state;
    memset(&a, 0, sizeof a);
    a.atyp = SOCKS_ATYP_DOMAIN;                 /* empty host */
    assert_int_equal(socks5_write_addr(buf, sizeof buf, &a), 0);
    memset(a.host, 'a', sizeof a.host);         /* host without its NUL */
    assert_int_equal(socks5_write_addr(buf, sizeof buf, &a), 0);
    a.host[255] = '\0';
    assert_int_equal(socks5_write_addr(buf, sizeof buf, &a), SOCKS5_ADDR_MAX);
    a.atyp = 2;                                 /* unknown atyp */
    assert_int_equal(socks5_write_addr(buf, sizeof buf, &a), 0);
    a.atyp = 0;
    assert_int_equal(socks5_write_addr(buf, sizeof buf, &a), 0);
}

/* ---- UDP header ------------------------------------------------------ */

static void test_udp_header(void **state)
{
    static const uint8_t v4[] = { 0, 0, 0, 1, 8, 8, 4, 4, 0, 53 };
    static const uint8_t v6[] = { 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x30, 0x39 };
    static const uint8_t dom[] = { 0, 0, 0, 3, 3, 'd', 'n', 's', 0, 53 };
    static const uint8_t rsv[] = { 0xAB, 0xCD, 0, 1, 8, 8, 4, 4, 0, 53 };
    struct socks_addr a;
    char s[SOCKS_ADDR_FMT_MAX];

    (void)state;
    expect_stream(&UDP, v4, sizeof v4, &a);
    socks_addr_format(&a, s, sizeof s);
    assert_string_equal(s, "8.8.4.4:53");
    expect_stream(&UDP, v6, sizeof v6, &a);
    socks_addr_format(&a, s, sizeof s);
    assert_string_equal(s, "[::1]:12345");
    expect_stream(&UDP, dom, sizeof dom, &a);
    assert_string_equal(a.host, "dns");
    assert_int_equal(a.port, 53);
    expect_stream(&UDP, rsv, sizeof rsv, &a);  /* RSV ignored */
}

static void test_udp_header_invalid(void **state)
{
    uint8_t frag_msg[] = { 0, 0, 1, 1, 8, 8, 4, 4, 0, 53 };
    static const uint8_t bad_atyp[] = { 0, 0, 0, 5, 1, 2, 3, 4, 0, 53 };
    struct socks_addr a;
    size_t c = SENTINEL_SIZE;
    uint8_t frag;

    (void)state;
    /* Any FRAG != 0 is dropped, on the FRAG byte, and reported in *frag. */
    for (int f = 1; f < 256; f++) {
        frag_msg[2] = (uint8_t)f;
        frag = 0xEE;
        assert_int_equal(socks5_parse_udp_header(frag_msg, 3, &a, &frag, &c), SOCKS_INVALID);
        assert_int_equal(frag, f);
        frag = 0xEE;
        assert_int_equal(socks5_parse_udp_header(frag_msg, sizeof frag_msg, &a, &frag, &c), SOCKS_INVALID);
        assert_int_equal(frag, f);
        assert_true(c == SENTINEL_SIZE);
    }
    expect_invalid(&UDP, bad_atyp, 4);
    expect_invalid(&UDP, bad_atyp, sizeof bad_atyp);
}

/* ---- reply builders -------------------------------------------------- */

static void test_build_small_replies(void **state)
{
    uint8_t out[2];

    (void)state;
    assert_int_equal(socks5_build_method_reply(out, SOCKS5_METHOD_USERPASS), 2);
    assert_memory_equal(out, "\x05\x02", 2);
    assert_int_equal(socks5_build_method_reply(out, SOCKS5_METHOD_NONE), 2);
    assert_memory_equal(out, "\x05\xFF", 2);
    assert_int_equal(socks5_build_auth_reply(out, SOCKS5_AUTH_OK), 2);
    assert_memory_equal(out, "\x01\x00", 2);
    assert_int_equal(socks5_build_auth_reply(out, SOCKS5_AUTH_FAIL), 2);
    assert_memory_equal(out, "\x01\x01", 2);
}

/* Exact bytes; cap one short writes nothing and returns 0. */
static void check_reply(uint8_t rep, const struct socks_addr *bound, const uint8_t *want, size_t wantlen)
{
    uint8_t out[SOCKS5_REPLY_MAX + 4];

    memset(out, 0xCC, sizeof out);
    assert_int_equal(socks5_build_reply(out, wantlen - 1, rep, bound), 0);
    for (size_t i = 0; i < sizeof out; i++)
        assert_int_equal(out[i], 0xCC);
    assert_int_equal(socks5_build_reply(out, wantlen, rep, bound), wantlen);
    assert_memory_equal(out, want, wantlen);
    assert_int_equal(out[wantlen], 0xCC);
    assert_int_equal(socks5_build_reply(out, sizeof out, rep, bound), wantlen);
    assert_memory_equal(out, want, wantlen);
}

static void test_build_reply(void **state)
{
    static const uint8_t null_fail[] = { 5, 1, 0, 1, 0, 0, 0, 0, 0, 0 };
    static const uint8_t v4_ok[] = { 5, 0, 0, 1, 10, 1, 2, 3, 0xC3, 0x50 };
    static const uint8_t v6_ok[] = { 5, 0, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xAB, 0xCD, 0, 1,
                                     0x04, 0x38 };
    static const uint8_t dom_ok[] = { 5, 0, 0, 3, 4, 'h', 'o', 's', 't', 0, 7 };
    struct socks_addr a;
    uint8_t out[4];

    (void)state;
    check_reply(SOCKS5_REP_FAIL, NULL, null_fail, sizeof null_fail);

    memset(&a, 0, sizeof a);
    a.atyp = SOCKS_ATYP_IPV4;
    memcpy(a.ip, "\x0A\x01\x02\x03", 4);
    a.port = 50000;
    check_reply(SOCKS5_REP_OK, &a, v4_ok, sizeof v4_ok);

    memset(&a, 0, sizeof a);
    a.atyp = SOCKS_ATYP_IPV6;
    memcpy(a.ip, v6_ok + 4, 16);
    a.port = 1080;
    check_reply(SOCKS5_REP_OK, &a, v6_ok, sizeof v6_ok);
    assert_int_equal(sizeof v6_ok, 22);

    memset(&a, 0, sizeof a);
    a.atyp = SOCKS_ATYP_DOMAIN;
    strcpy(a.host, "host");
    a.port = 7;
    check_reply(SOCKS5_REP_OK, &a, dom_ok, sizeof dom_ok);

    /* every REP code lands in byte 1 */
    for (int rep = SOCKS5_REP_OK; rep <= SOCKS5_REP_ATYP_UNSUPPORTED; rep++) {
        uint8_t want[10] = { 5, (uint8_t)rep, 0, 1, 0, 0, 0, 0, 0, 0 };
        check_reply((uint8_t)rep, NULL, want, sizeof want);
    }

    assert_int_equal(socks5_build_reply(out, 0, SOCKS5_REP_OK, NULL), 0);
    assert_int_equal(socks5_build_reply(out, 2, SOCKS5_REP_OK, NULL), 0);
    a.atyp = 9;
    assert_int_equal(socks5_build_reply(out, sizeof out, SOCKS5_REP_OK, &a), 0);
}

/* ---- socks_addr_format ----------------------------------------------- */

static void fmt(const struct socks_addr *a, const char *want)
{
    char s[SOCKS_ADDR_FMT_MAX];

    socks_addr_format(a, s, sizeof s);
    assert_string_equal(s, want);
}

static void set_v6(struct socks_addr *a, const char *text, uint16_t port)
{
    memset(a, 0, sizeof *a);
    a->atyp = SOCKS_ATYP_IPV6;
    a->port = port;
    assert_int_equal(inet_pton(AF_INET6, text, a->ip), 1);
}

static void test_format(void **state)
{
    struct socks_addr a;
    char s[SOCKS_ADDR_FMT_MAX];

    (void)state;
    memset(&a, 0, sizeof a);
    a.atyp = SOCKS_ATYP_IPV4;
    memcpy(a.ip, "\x01\x02\x03\x04", 4);
    a.port = 80;
    fmt(&a, "1.2.3.4:80");
    memcpy(a.ip, "\xFF\xFF\xFF\xFF", 4);
    a.port = 65535;
    fmt(&a, "255.255.255.255:65535");
    memcpy(a.ip, "\x00\x00\x00\x00", 4);
    a.port = 0;
    fmt(&a, "0.0.0.0:0");
    memcpy(a.ip, "\x0A\x00\x64\x09", 4);
    a.port = 1080;
    fmt(&a, "10.0.100.9:1080");
    socks_addr_host(&a, s, sizeof s);
    assert_string_equal(s, "10.0.100.9");
    socks_addr_host(&a, s, 10);                 /* does not fit: "", as inet_ntop */
    assert_string_equal(s, "");
    socks_addr_host(&a, s, 11);
    assert_string_equal(s, "10.0.100.9");

    set_v6(&a, "::1", 80);
    fmt(&a, "[::1]:80");
    set_v6(&a, "::", 0);
    fmt(&a, "[::]:0");
    set_v6(&a, "1::", 1);
    fmt(&a, "[1::]:1");
    set_v6(&a, "2001:db8:0:1:0:0:0:1", 2);
    fmt(&a, "[2001:db8:0:1::1]:2");         /* 0:1 single zero not compressed */
    set_v6(&a, "2001:0:0:1:0:0:0:1", 3);
    fmt(&a, "[2001:0:0:1::1]:3");           /* longest run wins */
    set_v6(&a, "2001:db8:0:0:1:0:0:1", 4);
    fmt(&a, "[2001:db8::1:0:0:1]:4");       /* tie: first run wins */
    set_v6(&a, "fe80:abcd:ef01:2345:6789:aBcD:eF01:2345", 5);
    fmt(&a, "[fe80:abcd:ef01:2345:6789:abcd:ef01:2345]:5");
    set_v6(&a, "::ffff:192.0.2.1", 6);
    fmt(&a, "[::ffff:192.0.2.1]:6");

    memset(&a, 0, sizeof a);
    a.atyp = SOCKS_ATYP_DOMAIN;
    strcpy(a.host, "example.com");
    a.port = 443;
    fmt(&a, "example.com:443");
    strcpy(a.host, "fe80::1%eth0");            /* a name with ':' is bracketed */
    fmt(&a, "[fe80::1%eth0]:443");

    /* longest possible output fits SOCKS_ADDR_FMT_MAX */
    memset(a.host, ':', 255);
    a.host[255] = '\0';
    a.port = 65535;
    socks_addr_format(&a, s, sizeof s);
    assert_int_equal(strlen(s), SOCKS_ADDR_FMT_MAX - 1);

    /* host without its NUL: bounded by the array */
    memset(a.host, 'h', sizeof a.host);
    a.port = 1;
    socks_addr_format(&a, s, sizeof s);
    assert_int_equal(strlen(s), 256 + 2);

    a.atyp = 0;
    fmt(&a, "?");
}

static void test_format_truncation(void **state)
{
    struct socks_addr a;
    char s[16];

    (void)state;
    memset(&a, 0, sizeof a);
    a.atyp = SOCKS_ATYP_IPV4;
    memcpy(a.ip, "\x01\x02\x03\x04", 4);
    a.port = 80;
    memset(s, 'X', sizeof s);
    socks_addr_format(&a, s, 5);
    assert_string_equal(s, "1.2.");
    assert_int_equal(s[5], 'X');
    memset(s, 'X', sizeof s);
    socks_addr_format(&a, s, 1);
    assert_int_equal(s[0], '\0');
    assert_int_equal(s[1], 'X');
    socks_addr_format(&a, s, 0);                /* writes nothing */
    assert_int_equal(s[0], '\0');
    assert_int_equal(s[1], 'X');

    set_v6(&a, "2001:db8::1", 443);
    memset(s, 'X', sizeof s);
    socks_addr_format(&a, s, 8);
    assert_string_equal(s, "[2001:d");
}

/* Our RFC 5952 formatter against glibc's inet_ntop over many addresses with
 * zero runs in every position. Skipped: the ::/96 block other than :: and
 * ::1, where glibc prints the deprecated IPv4-compatible form ("::1.2.3.4")
 * and RFC 5952 does not. */
static void test_format_vs_inet_ntop(void **state)
{
    struct socks_addr a;
    char want[INET6_ADDRSTRLEN + 16], ntop[INET6_ADDRSTRLEN], s[SOCKS_ADDR_FMT_MAX];
    static const uint8_t zero12[12] = { 0 };
    int checked = 0;

    (void)state;
    for (int k = 0; k < 20000; k++) {
        memset(&a, 0, sizeof a);
        a.atyp = SOCKS_ATYP_IPV6;
        a.port = (uint16_t)k;
        for (int g = 0; g < 8; g++) {
            uint32_t r = rng();
            uint16_t w = (r & 3) ? 0 : (uint16_t)(r >> 16);  /* mostly zero groups */
            if ((r & 0x1C) == 0x1C)
                w = (uint16_t)(r >> 16 & 0xF);               /* short groups */
            a.ip[2 * g] = (uint8_t)(w >> 8);
            a.ip[2 * g + 1] = (uint8_t)w;
        }
        if (k % 7 == 0)                                      /* some IPv4-mapped */
            memcpy(a.ip, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12);
        if (memcmp(a.ip, zero12, 12) == 0 && !(a.ip[12] == 0 && a.ip[13] == 0 && a.ip[14] == 0 && a.ip[15] <= 1))
            continue;
        assert_non_null(inet_ntop(AF_INET6, a.ip, ntop, sizeof ntop));
        snprintf(want, sizeof want, "[%s]:%u", ntop, a.port);
        socks_addr_format(&a, s, sizeof s);
        if (strcmp(s, want) != 0)
            print_error("ours %s, inet_ntop %s\n", s, want);
        assert_string_equal(s, want);
        checked++;
    }
    assert_true(checked > 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting_valid),
        cmocka_unit_test(test_greeting_max),
        cmocka_unit_test(test_greeting_invalid),
        cmocka_unit_test(test_userpass_valid),
        cmocka_unit_test(test_userpass_empty_password),
        cmocka_unit_test(test_userpass_max),
        cmocka_unit_test(test_userpass_invalid),
        cmocka_unit_test(test_request_ipv4),
        cmocka_unit_test(test_request_ipv6),
        cmocka_unit_test(test_request_domain),
        cmocka_unit_test(test_request_domain_max),
        cmocka_unit_test(test_request_commands),
        cmocka_unit_test(test_request_rsv_ignored),
        cmocka_unit_test(test_request_invalid),
        cmocka_unit_test(test_addr_roundtrip),
        cmocka_unit_test(test_addr_invalid),
        cmocka_unit_test(test_write_addr_unencodable),
        cmocka_unit_test(test_udp_header),
        cmocka_unit_test(test_udp_header_invalid),
        cmocka_unit_test(test_userpass_secret_every_prefix),
        cmocka_unit_test(test_build_small_replies),
        cmocka_unit_test(test_build_reply),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_truncation),
        cmocka_unit_test(test_format_vs_inet_ntop),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

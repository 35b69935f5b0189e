/* test_socks4.c - unit tests for proto/socks4 (SOCKS4 and SOCKS4a).
 *
 * Every valid vector goes through expect_stream(): each proper prefix, in a
 * heap buffer of exactly that size (so ASan flags any read past len), must
 * give NEED_MORE without touching the outputs; then the whole request with
 * pipelined bytes after it must give DONE with consumed == request length.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proto/socks4.h"

#define SENTINEL_BYTE 0xA5
#define SENTINEL_SIZE ((size_t)0xDEADBEEF)

static int all_sentinel(const void *p, size_t n)
{
    const uint8_t *b = p;

    for (size_t i = 0; i < n; i++)
        if (b[i] != SENTINEL_BYTE)
            return 0;
    return 1;
}

/* Parses exactly len bytes copied to the heap, outputs starting as
 * sentinels; len 0 passes a pointer one past a 1-byte block. */
static int run_exact(const uint8_t *msg, size_t len, struct socks4_request *out, size_t *consumed)
{
    uint8_t *b = malloc(len ? len : 1);
    int st;

    assert_non_null(b);
    memcpy(b, msg, len);
    memset(out, SENTINEL_BYTE, sizeof *out);
    *consumed = SENTINEL_SIZE;
    st = socks4_parse_request(len ? b : b + 1, len, out, consumed);
    free(b);
    return st;
}

static void expect_stream(const uint8_t *msg, size_t len, struct socks4_request *result)
{
    static const uint8_t trailer[] = "GET / HTTP/1.0\r\n\r\n";
    struct socks4_request out, first;
    uint8_t *full = malloc(len + sizeof trailer);
    size_t consumed;
    int st;

    assert_non_null(full);
    for (size_t i = 0; i < len; i++) {
        st = run_exact(msg, i, &out, &consumed);
        if (st != SOCKS_NEED_MORE)
            print_error("prefix of %zu/%zu bytes gave %d\n", i, len, st);
        assert_int_equal(st, SOCKS_NEED_MORE);
        assert_true(consumed == SENTINEL_SIZE);
        assert_true(all_sentinel(&out, sizeof out));
    }

    assert_int_equal(run_exact(msg, len, &first, &consumed), SOCKS_DONE);
    assert_int_equal(consumed, len);

    memcpy(full, msg, len);
    memcpy(full + len, trailer, sizeof trailer);
    assert_int_equal(run_exact(full, len + sizeof trailer, &out, &consumed), SOCKS_DONE);
    assert_int_equal(consumed, len);
    assert_memory_equal(&out, &first, sizeof out);

    *result = out;
    free(full);
}

static void expect_invalid(const uint8_t *msg, size_t len)
{
    struct socks4_request out;
    size_t consumed;

    assert_int_equal(run_exact(msg, len, &out, &consumed), SOCKS_INVALID);
    assert_true(consumed == SENTINEL_SIZE);
    assert_true(all_sentinel(&out, sizeof out));
}

static void fill_name(char *dst, size_t n, char c)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)(c + i % 26);
}

/* Builds VN CD PORT IP USERID NUL [HOST NUL] into buf; returns its length. */
static size_t build(uint8_t *buf, uint8_t vn, uint8_t cd, uint16_t port, const uint8_t ip[4], const char *user,
                    const char *host)
{
    size_t n = 8, l;

    buf[0] = vn, buf[1] = cd, buf[2] = (uint8_t)(port >> 8), buf[3] = (uint8_t)port;
    memcpy(buf + 4, ip, 4);
    l = strlen(user) + 1;
    memcpy(buf + n, user, l);
    n += l;
    if (host) {
        l = strlen(host) + 1;
        memcpy(buf + n, host, l);
        n += l;
    }
    return n;
}

static const uint8_t LOOPBACK[4] = { 127, 0, 0, 1 };
static const uint8_t IP4A[4] = { 0, 0, 0, 1 };
static const uint8_t ZERO16[16] = { 0 };

/* ---- SOCKS4 ---------------------------------------------------------- */

static void test_connect_no_userid(void **state)
{
    static const uint8_t msg[] = { 4, 1, 0x00, 0x50, 127, 0, 0, 1, 0 };
    struct socks4_request r;

    (void)state;
    expect_stream(msg, sizeof msg, &r);
    assert_int_equal(r.cmd, SOCKS4_CMD_CONNECT);
    assert_int_equal(r.dst.atyp, SOCKS_ATYP_IPV4);
    assert_memory_equal(r.dst.ip, LOOPBACK, 4);
    assert_memory_equal(r.dst.ip + 4, ZERO16, 12);
    assert_int_equal(r.dst.port, 80);
    assert_string_equal(r.dst.host, "");
    assert_string_equal(r.userid, "");
}

static void test_connect_userid(void **state)
{
    uint8_t msg[64];
    struct socks4_request r;
    size_t n = build(msg, 4, SOCKS4_CMD_CONNECT, 0xABCD, LOOPBACK, "alice", NULL);

    (void)state;
    assert_int_equal(n, 14);
    expect_stream(msg, n, &r);
    assert_string_equal(r.userid, "alice");
    assert_int_equal(r.dst.port, 0xABCD);
    assert_int_equal(r.dst.atyp, SOCKS_ATYP_IPV4);
}

static void test_bind(void **state)
{
    static const uint8_t ip[4] = { 192, 0, 2, 7 };
    uint8_t msg[64];
    struct socks4_request r;
    size_t n = build(msg, 4, SOCKS4_CMD_BIND, 21, ip, "u", NULL);

    (void)state;
    expect_stream(msg, n, &r);
    assert_int_equal(r.cmd, SOCKS4_CMD_BIND);
    assert_memory_equal(r.dst.ip, ip, 4);
}

/* Every CD value parses; the caller rejects the unknown ones with 0x5B. */
static void test_unknown_command(void **state)
{
    uint8_t msg[64];
    struct socks4_request r;

    (void)state;
    for (int cd = 0; cd < 256; cd++) {
        size_t n = build(msg, 4, (uint8_t)cd, 1, LOOPBACK, "", NULL);
        expect_stream(msg, n, &r);
        assert_int_equal(r.cmd, cd);
    }
}

/* Only 0.0.0.x with x != 0 means 4a; other small addresses are plain IPv4. */
static void test_not_4a(void **state)
{
    static const uint8_t ips[][4] = { { 0, 0, 0, 0 }, { 0, 0, 1, 0 }, { 0, 1, 0, 1 }, { 1, 0, 0, 1 } };
    uint8_t msg[64];
    struct socks4_request r;

    (void)state;
    for (size_t i = 0; i < sizeof ips / sizeof ips[0]; i++) {
        size_t n = build(msg, 4, 1, 80, ips[i], "x", NULL);
        expect_stream(msg, n, &r);
        assert_int_equal(r.dst.atyp, SOCKS_ATYP_IPV4);
        assert_memory_equal(r.dst.ip, ips[i], 4);
        assert_string_equal(r.dst.host, "");
    }
}

static void test_userid_max(void **state)
{
    uint8_t msg[SOCKS4_REQUEST_MAX];
    char user[256] = { 0 };
    struct socks4_request r;
    size_t n;

    (void)state;
    fill_name(user, 255, 'a');
    n = build(msg, 4, 1, 80, LOOPBACK, user, NULL);
    assert_int_equal(n, 8 + 256);
    expect_stream(msg, n, &r);
    assert_string_equal(r.userid, user);
}

/* 256 non-NUL USERID bytes: INVALID on the 256th, NEED_MORE one before. */
static void test_userid_too_long(void **state)
{
    uint8_t msg[8 + 300];
    struct socks4_request r;
    size_t c;

    (void)state;
    build(msg, 4, 1, 80, LOOPBACK, "", NULL);
    memset(msg + 8, 'u', 300);
    assert_int_equal(run_exact(msg, 8 + 255, &r, &c), SOCKS_NEED_MORE);
    expect_invalid(msg, 8 + 256);
    expect_invalid(msg, sizeof msg);
    msg[8 + 256] = 0;                           /* a NUL too late does not help */
    expect_invalid(msg, sizeof msg);
}

static void test_bad_version(void **state)
{
    uint8_t msg[64];
    size_t n = build(msg, 5, 1, 80, LOOPBACK, "", NULL);

    (void)state;
    expect_invalid(msg, n);
    for (int v = 0; v < 256; v++) {
        msg[0] = (uint8_t)v;
        if (v != SOCKS4_VERSION)
            expect_invalid(msg, 1);             /* rejected on the first byte */
    }
}

/* ---- SOCKS4a --------------------------------------------------------- */

static void test_4a(void **state)
{
    uint8_t msg[128];
    struct socks4_request r;
    size_t n = build(msg, 4, 1, 443, IP4A, "", "example.com");

    (void)state;
    expect_stream(msg, n, &r);
    assert_int_equal(r.dst.atyp, SOCKS_ATYP_DOMAIN);
    assert_string_equal(r.dst.host, "example.com");
    assert_memory_equal(r.dst.ip, ZERO16, 16);
    assert_int_equal(r.dst.port, 443);
    assert_string_equal(r.userid, "");

    n = build(msg, 4, 1, 8443, (const uint8_t[4]){ 0, 0, 0, 0xFF }, "bob", "h");
    expect_stream(msg, n, &r);
    assert_int_equal(r.dst.atyp, SOCKS_ATYP_DOMAIN);
    assert_string_equal(r.dst.host, "h");
    assert_string_equal(r.userid, "bob");
    assert_int_equal(r.dst.port, 8443);
}

/* USERID and HOST both 255: the longest request, SOCKS4_REQUEST_MAX. */
static void test_4a_max(void **state)
{
    uint8_t msg[SOCKS4_REQUEST_MAX];
    char user[256] = { 0 }, host[256] = { 0 };
    struct socks4_request r;
    size_t n;

    (void)state;
    fill_name(user, 255, 'A');
    fill_name(host, 255, 'a');
    n = build(msg, 4, 1, 80, IP4A, user, host);
    assert_int_equal(n, SOCKS4_REQUEST_MAX);
    expect_stream(msg, n, &r);
    assert_string_equal(r.userid, user);
    assert_string_equal(r.dst.host, host);
    assert_int_equal(strlen(r.dst.host), 255);
}

static void test_4a_invalid(void **state)
{
    uint8_t msg[8 + 4 + 300];
    struct socks4_request r;
    size_t c;

    (void)state;
    /* empty HOST: INVALID as soon as its NUL arrives */
    build(msg, 4, 1, 80, IP4A, "bob", "");
    expect_invalid(msg, 13);
    assert_int_equal(run_exact(msg, 12, &r, &c), SOCKS_NEED_MORE);

    /* HOST reaching 256 bytes without NUL */
    build(msg, 4, 1, 80, IP4A, "bob", "");
    memset(msg + 12, 'h', 300);
    assert_int_equal(run_exact(msg, 12 + 255, &r, &c), SOCKS_NEED_MORE);
    expect_invalid(msg, 12 + 256);
    expect_invalid(msg, sizeof msg);
}

/* ---- reply builder --------------------------------------------------- */

static void check_reply(uint8_t code, const struct socks_addr *bound, const uint8_t want[8])
{
    uint8_t out[16];

    memset(out, 0xCC, sizeof out);
    assert_int_equal(socks4_build_reply(out, code, bound), 8);
    assert_memory_equal(out, want, 8);
    for (size_t i = 8; i < sizeof out; i++)
        assert_int_equal(out[i], 0xCC);
}

static void test_build_reply(void **state)
{
    static const uint8_t granted0[8] = { 0, 0x5A, 0, 0, 0, 0, 0, 0 };
    static const uint8_t rejected0[8] = { 0, 0x5B, 0, 0, 0, 0, 0, 0 };
    static const uint8_t granted4[8] = { 0, 0x5A, 0x04, 0x38, 10, 0, 0, 9 };
    struct socks_addr a;

    (void)state;
    check_reply(SOCKS4_REP_GRANTED, NULL, granted0);
    check_reply(SOCKS4_REP_REJECTED, NULL, rejected0);

    memset(&a, 0, sizeof a);
    a.atyp = SOCKS_ATYP_IPV4;
    memcpy(a.ip, "\x0A\x00\x00\x09", 4);
    a.port = 1080;
    check_reply(SOCKS4_REP_GRANTED, &a, granted4);

    /* IPv6 or domain bound addresses cannot be expressed: zeros */
    a.atyp = SOCKS_ATYP_IPV6;
    memset(a.ip, 0x11, 16);
    check_reply(SOCKS4_REP_GRANTED, &a, granted0);
    a.atyp = SOCKS_ATYP_DOMAIN;
    strcpy(a.host, "x");
    check_reply(SOCKS4_REP_GRANTED, &a, granted0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_no_userid),
        cmocka_unit_test(test_connect_userid),
        cmocka_unit_test(test_bind),
        cmocka_unit_test(test_unknown_command),
        cmocka_unit_test(test_not_4a),
        cmocka_unit_test(test_userid_max),
        cmocka_unit_test(test_userid_too_long),
        cmocka_unit_test(test_bad_version),
        cmocka_unit_test(test_4a),
        cmocka_unit_test(test_4a_max),
        cmocka_unit_test(test_4a_invalid),
        cmocka_unit_test(test_build_reply),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

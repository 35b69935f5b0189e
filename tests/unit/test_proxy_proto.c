/* test_proxy_proto.c - unit tests for proto/proxy_proto (PROXY protocol v1, v2).
 *
 * Every valid vector goes through expect_valid(): each proper prefix, in a
 * heap buffer of exactly that size (ASan flags a read past len), gives
 * NEED_MORE with the outputs untouched; the whole header followed by
 * payload gives DONE with consumed == the header's length. Every invalid
 * vector goes through expect_invalid(): over its prefixes the status is
 * NEED_MORE until it turns INVALID, and stays INVALID, with the expected
 * error class.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proto/proxy_proto.h"

#define SENTINEL 0xA5

static const uint8_t SIG[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

static enum pp_status run_exact(const uint8_t *msg, size_t len, struct pp_header *out, size_t *consumed,
                                enum pp_error *err)
{
    uint8_t *b = malloc(len ? len : 1);
    assert_non_null(b);
    memcpy(b, msg, len);
    memset(out, SENTINEL, sizeof(*out));
    *consumed = (size_t)-1;
    *err = PP_ERR_NONE;
    enum pp_status st = pp_parse(len ? b : b + 1, len, out, consumed, err);
    free(b);
    return st;
}

static int untouched(const struct pp_header *h)
{
    const uint8_t *p = (const uint8_t *)h;
    for (size_t i = 0; i < sizeof(*h); i++)
        if (p[i] != SENTINEL) return 0;
    return 1;
}

static void expect_valid(const uint8_t *msg, size_t len, struct pp_header *result)
{
    static const uint8_t trailer[] = "\x05\x01\x00GET / HTTP/1.0\r\n";
    struct pp_header out;
    size_t consumed;
    enum pp_error err;
    for (size_t i = 0; i < len; i++) {
        enum pp_status st = run_exact(msg, i, &out, &consumed, &err);
        if (st != PP_NEED_MORE) print_error("prefix %zu/%zu gave %d (%s)\n", i, len, st, pp_error_name(err));
        assert_int_equal(st, PP_NEED_MORE);
        assert_true(untouched(&out));
        assert_true(consumed == (size_t)-1);
    }
    uint8_t *full = malloc(len + sizeof(trailer));
    assert_non_null(full);
    memcpy(full, msg, len);
    memcpy(full + len, trailer, sizeof(trailer));
    assert_int_equal(run_exact(full, len, &out, &consumed, &err), PP_DONE);
    assert_int_equal(consumed, len);
    assert_int_equal(run_exact(full, len + sizeof(trailer), result, &consumed, &err), PP_DONE);
    assert_int_equal(consumed, len);
    free(full);
}

static void expect_invalid(const uint8_t *msg, size_t len, enum pp_error want)
{
    struct pp_header out;
    size_t consumed;
    enum pp_error err;
    int turned = 0;
    for (size_t i = 1; i <= len; i++) {
        enum pp_status st = run_exact(msg, i, &out, &consumed, &err);
        assert_int_not_equal(st, PP_DONE);
        assert_true(untouched(&out));
        if (turned) assert_int_equal(st, PP_INVALID);
        if (st == PP_INVALID) {
            turned = 1;
            if (err != want) print_error("prefix %zu: %s, want %s\n", i, pp_error_name(err), pp_error_name(want));
            assert_int_equal(err, want);
        }
    }
    assert_true(turned);
}

#define TXT(s) (const uint8_t *)(s), sizeof(s) - 1

static void assert_addr(const struct pp_addr *a, int fam, const char *ip_bytes, uint16_t port)
{
    assert_int_equal(a->family, fam);
    assert_memory_equal(a->ip, ip_bytes, fam == 4 ? 4 : 16);
    assert_int_equal(a->port, port);
}

static void test_v1_tcp4(void **st)
{
    (void)st;
    struct pp_header h;
    expect_valid(TXT("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"), &h);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.local, 0);
    assert_addr(&h.src, 4, "\xc0\xa8\x00\x01", 56324);
    assert_addr(&h.dst, 4, "\xc0\xa8\x00\x0b", 443);
}

static void test_v1_tcp6(void **st)
{
    (void)st;
    struct pp_header h;
    expect_valid(TXT("PROXY TCP6 2001:db8::1 ::1 65535 0\r\n"), &h);
    assert_addr(&h.src, 6, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 65535);
    assert_addr(&h.dst, 6, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 0);
    /* The longest line there is, well under the bound. */
    expect_valid(TXT("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                     "65535 65535\r\n"), &h);
    assert_int_equal(h.src.port, 65535);
}

static void test_v1_unknown(void **st)
{
    (void)st;
    struct pp_header h;
    expect_valid(TXT("PROXY UNKNOWN\r\n"), &h);
    assert_int_equal(h.local, 1);
    assert_int_equal(h.src.family, 0);
    /* Whatever follows UNKNOWN is ignored, up to the bound (107 with CRLF). */
    char line[PP_V1_MAX + 1];
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + PP_V1_MAX - 2, "\r\n", 2);
    expect_valid((const uint8_t *)line, PP_V1_MAX, &h);
    assert_int_equal(h.local, 1);
    /* One more byte and it is too long. */
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    memcpy(line + PP_V1_MAX - 1, "\r\n", 2);
    expect_invalid((const uint8_t *)line, PP_V1_MAX + 1, PP_ERR_TOO_LONG);
}

static void test_v1_errors(void **st)
{
    (void)st;
    expect_invalid(TXT("GET / HTTP/1.1\r\n"), PP_ERR_SIGNATURE);
    expect_invalid(TXT("PROXX TCP4"), PP_ERR_SIGNATURE);
    expect_invalid(TXT("PROXY\tTCP4"), PP_ERR_SIGNATURE);
    expect_invalid(TXT("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), PP_ERR_V1_SYNTAX);
    expect_invalid(TXT("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), PP_ERR_V1_SYNTAX);
    expect_invalid(TXT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), PP_ERR_V1_SYNTAX);
    expect_invalid(TXT("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), PP_ERR_V1_SYNTAX);
    expect_invalid(TXT("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), PP_ERR_V1_SYNTAX);
    expect_invalid(TXT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), PP_ERR_V1_SYNTAX);
    expect_invalid(TXT("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n"), PP_ERR_V1_SYNTAX);
    expect_invalid(TXT("PROXY \r\n"), PP_ERR_V1_SYNTAX);
    expect_invalid(TXT("PROXY TCP4 ::1 ::1 1 2\r\n"), PP_ERR_V1_ADDRESS);
    expect_invalid(TXT("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), PP_ERR_V1_ADDRESS);
    expect_invalid(TXT("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"), PP_ERR_V1_ADDRESS);
    expect_invalid(TXT("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), PP_ERR_V1_PORT);
    expect_invalid(TXT("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"), PP_ERR_V1_PORT);
    expect_invalid(TXT("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"), PP_ERR_V1_PORT);
    expect_invalid(TXT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n"), PP_ERR_V1_PORT);
    /* No CRLF within the bound. */
    char line[200];
    memset(line, '1', sizeof(line));
    memcpy(line, "PROXY TCP4 ", 11);
    expect_invalid((const uint8_t *)line, sizeof(line), PP_ERR_TOO_LONG);
}

/* A v2 header: 16 bytes then body (blen bytes) in out; returns its length. */
static size_t v2(uint8_t *out, uint8_t vercmd, uint8_t fam, const void *body, size_t blen, size_t declared)
{
    memcpy(out, SIG, 12);
    out[12] = vercmd;
    out[13] = fam;
    out[14] = (uint8_t)(declared >> 8);
    out[15] = (uint8_t)declared;
    if (blen) memcpy(out + 16, body, blen);
    return 16 + blen;
}

static void test_v2_inet(void **st)
{
    (void)st;
    uint8_t m[64];
    struct pp_header h;
    static const uint8_t body[12] = { 127, 0, 0, 2, 10, 0, 0, 1, 0xC3, 0x50, 0x01, 0xBB };
    size_t n = v2(m, 0x21, 0x11, body, sizeof(body), sizeof(body));
    expect_valid(m, n, &h);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.local, 0);
    assert_addr(&h.src, 4, "\x7f\0\0\x02", 50000);
    assert_addr(&h.dst, 4, "\x0a\0\0\x01", 443);
}

static void test_v2_inet6_tlvs(void **st)
{
    (void)st;
    uint8_t body[36 + 12], m[128];
    struct pp_header h;
    memset(body, 0, sizeof(body));
    body[15] = 1;                           /* ::1 */
    body[16] = 0x20, body[17] = 0x01;       /* 2001:: */
    body[32] = 0x12, body[33] = 0x34, body[34] = 0, body[35] = 80;
    /* Two TLVs: PP2_TYPE_ALPN "h2", PP2_TYPE_NOOP of 3 bytes: skipped. */
    memcpy(body + 36, "\x01\x00\x02h2\x04\x00\x03\x00\x00\x00", 12);
    size_t n = v2(m, 0x21, 0x21, body, sizeof(body), sizeof(body));
    expect_valid(m, n, &h);
    assert_addr(&h.src, 6, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 0x1234);
    assert_addr(&h.dst, 6, "\x20\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 80);
}

static void test_v2_local_and_unusable(void **st)
{
    (void)st;
    uint8_t m[PP_MAX], body[PP_V2_MAX_LEN];
    struct pp_header h;
    memset(body, 7, sizeof(body));
    /* LOCAL (a balancer's health check), with and without addresses. */
    expect_valid(m, v2(m, 0x20, 0x00, NULL, 0, 0), &h);
    assert_int_equal(h.local, 1);
    expect_valid(m, v2(m, 0x20, 0x11, body, 12, 12), &h);
    assert_int_equal(h.local, 1);
    assert_int_equal(h.src.family, 0);
    /* PROXY over UNSPEC, UNIX, DGRAM: nothing to use. */
    expect_valid(m, v2(m, 0x21, 0x00, NULL, 0, 0), &h);
    assert_int_equal(h.local, 1);
    expect_valid(m, v2(m, 0x21, 0x31, body, 216, 216), &h);
    assert_int_equal(h.local, 1);
    expect_valid(m, v2(m, 0x21, 0x12, body, 12, 12), &h);
    assert_int_equal(h.local, 1);
    /* The bound itself is fine. */
    expect_valid(m, v2(m, 0x21, 0x11, body, PP_V2_MAX_LEN, PP_V2_MAX_LEN), &h);
    assert_int_equal(h.local, 0);
}

static void test_v2_errors(void **st)
{
    (void)st;
    uint8_t m[PP_MAX + 16], body[64];
    memset(body, 0, sizeof(body));
    static const uint8_t badsig[] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x58, 0x0A };
    expect_invalid(badsig, sizeof(badsig), PP_ERR_SIGNATURE);
    expect_invalid(TXT("\r\n\r\nGET"), PP_ERR_SIGNATURE);
    expect_invalid(m, v2(m, 0x11, 0x11, body, 12, 12), PP_ERR_V2_VERSION);
    expect_invalid(m, v2(m, 0x31, 0x11, body, 12, 12), PP_ERR_V2_VERSION);
    expect_invalid(m, v2(m, 0x22, 0x11, body, 12, 12), PP_ERR_V2_COMMAND);
    expect_invalid(m, v2(m, 0x21, 0x41, body, 12, 12), PP_ERR_V2_FAMILY);
    expect_invalid(m, v2(m, 0x21, 0x13, body, 12, 12), PP_ERR_V2_FAMILY);
    expect_invalid(m, v2(m, 0x21, 0x11, body, 11, 11), PP_ERR_V2_LENGTH);
    expect_invalid(m, v2(m, 0x21, 0x21, body, 35, 35), PP_ERR_V2_LENGTH);
    /* Over the bound: refused at the length field, not after 64 KiB. */
    expect_invalid(m, v2(m, 0x21, 0x11, NULL, 0, PP_V2_MAX_LEN + 1), PP_ERR_TOO_LONG);
    expect_invalid(m, v2(m, 0x21, 0x11, NULL, 0, 0xFFFF), PP_ERR_TOO_LONG);
    expect_invalid(TXT("\x16\x03\x01\x02\x00"), PP_ERR_SIGNATURE);   /* a TLS ClientHello */
    expect_invalid(TXT("\x05\x01\x00"), PP_ERR_SIGNATURE);           /* a SOCKS5 greeting */
}

static void roundtrip(const struct pp_addr *s, const struct pp_addr *d, int v, struct pp_header *h)
{
    uint8_t out[PP_BUILD_MAX];
    size_t consumed, n = v == 1 ? pp_build_v1(out, s, d) : pp_build_v2(out, s, d);
    assert_true(n > 0 && n <= PP_BUILD_MAX);
    expect_valid(out, n, h);
    assert_int_equal(h->version, v);
    enum pp_error err;
    assert_int_equal(pp_parse(out, n, h, &consumed, &err), PP_DONE);
}

static void test_build(void **st)
{
    (void)st;
    struct pp_addr s4 = { 4, { 127, 0, 0, 2 }, 40000 }, d4 = { 4, { 127, 0, 0, 1 }, 1080 };
    struct pp_addr s6 = { 6, { 0x20, 0x01, 0x0d, 0xb8, [15] = 9 }, 1 }, none = { 0, { 0 }, 0 };
    struct pp_header h;
    for (int v = 1; v <= 2; v++) {
        roundtrip(&s4, &d4, v, &h);
        assert_addr(&h.src, 4, "\x7f\0\0\x02", 40000);
        assert_addr(&h.dst, 4, "\x7f\0\0\x01", 1080);
        roundtrip(&s6, &s6, v, &h);
        assert_addr(&h.src, 6, (const char *)s6.ip, 1);
        /* Mixed families: both as IPv6, the IPv4 one v4-mapped. */
        roundtrip(&s4, &s6, v, &h);
        assert_addr(&h.src, 6, "\0\0\0\0\0\0\0\0\0\0\xff\xff\x7f\0\0\x02", 40000);
        assert_addr(&h.dst, 6, (const char *)s6.ip, 1);
        roundtrip(&none, &d4, v, &h);
        assert_int_equal(h.local, 1);
    }
    uint8_t out[PP_BUILD_MAX];
    size_t n = pp_build_v1(out, &s4, &d4);
    assert_int_equal(n, strlen("PROXY TCP4 127.0.0.2 127.0.0.1 40000 1080\r\n"));
    assert_memory_equal(out, "PROXY TCP4 127.0.0.2 127.0.0.1 40000 1080\r\n", n);
}

static void test_error_names(void **st)
{
    (void)st;
    assert_string_equal(pp_error_name(PP_ERR_SIGNATURE), "bad_signature");
    assert_string_equal(pp_error_name(PP_ERR_V2_LENGTH), "v2_length");
    assert_string_equal(pp_error_name((enum pp_error)99), "?");
    /* A NULL err is allowed. */
    size_t c;
    struct pp_header h;
    assert_int_equal(pp_parse(TXT("X"), &h, &c, NULL), PP_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),       cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_unknown),    cmocka_unit_test(test_v1_errors),
        cmocka_unit_test(test_v2_inet),       cmocka_unit_test(test_v2_inet6_tlvs),
        cmocka_unit_test(test_v2_local_and_unusable), cmocka_unit_test(test_v2_errors),
        cmocka_unit_test(test_build),         cmocka_unit_test(test_error_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_addr.c - unit tests for net/addr: HOST:PORT parsing and formatting.
 *
 * Strings are parsed from heap copies of exactly strlen + 1 bytes, so ASan
 * flags any read past the terminating NUL; every prefix of the valid inputs
 * is parsed too (STYLE habit 15), with the exact set of prefixes that must
 * succeed written down.
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

#include "net/addr.h"

#define ERRLEN 256

/* host_port_parse on an exact-size heap copy; err starts non-empty so a
 * failure that forgets to write a reason is visible. */
static int hp_parse(const char *s, struct host_port *out, int allow0, char *err)
{
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    int rc;

    assert_non_null(copy);
    memcpy(copy, s, n);
    strcpy(err, "untouched");
    rc = host_port_parse(copy, out, allow0, err, ERRLEN);
    free(copy);
    return rc;
}

static void expect_hp(const char *s, const char *host, uint16_t port)
{
    struct host_port hp;
    char err[ERRLEN];

    memset(&hp, 0xA5, sizeof hp);
    if (hp_parse(s, &hp, 0, err) != 0)
        fail_msg("'%s' rejected: %s", s, err);
    assert_string_equal(hp.host, host);
    assert_int_equal(hp.port, port);
}

/* A rejected input must say why, and quote the input. */
static void expect_hp_bad(const char *s, int allow0)
{
    struct host_port hp;
    char err[ERRLEN];

    if (hp_parse(s, &hp, allow0, err) != -1)
        fail_msg("'%s' accepted as host '%s' port %u", s, hp.host, hp.port);
    assert_string_not_equal(err, "untouched");
    assert_non_null(strstr(err, s));
}

static void test_hp_valid(void **state)
{
    (void)state;
    expect_hp("example.com:80", "example.com", 80);
    expect_hp("1.2.3.4:65535", "1.2.3.4", 65535);
    expect_hp("[::1]:443", "::1", 443);
    expect_hp("[2001:db8::1]:1", "2001:db8::1", 1);
    expect_hp("[::ffff:10.0.0.1]:8080", "::ffff:10.0.0.1", 8080);
    expect_hp(":8080", "", 8080);
    expect_hp("a:007", "a", 7);               /* leading zeros are decimal */
    expect_hp("under_score-host.:9", "under_score-host.", 9);
}

static void test_hp_port0(void **state)
{
    struct host_port hp;
    char err[ERRLEN];

    (void)state;
    expect_hp_bad("h:0", 0);
    expect_hp_bad("[::]:0", 0);
    assert_int_equal(hp_parse("h:0", &hp, 1, err), 0);
    assert_string_equal(hp.host, "h");
    assert_int_equal(hp.port, 0);
    assert_int_equal(hp_parse("[::]:00", &hp, 1, err), 0);
    assert_string_equal(hp.host, "::");
    assert_int_equal(hp.port, 0);
}

static void test_hp_invalid(void **state)
{
    static const char *const bad[] = {
        "", "h", "h:", ":", "h:65536", "h:99999999999999999999", "h:-1", "h:+1",
        "h: 1", "h:1 ", "h:1x", "h:0x10", "::1:80", "a:b:80", "[::1]", "[::1]80",
        "[::1]:", "[::1", "[]:80", "[zz::1]:80", "[1.2.3.4]:80", "[::1%lo]:80",
        "[example.com]:80", "[::1]:-5",
    };

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_hp_bad(bad[i], 0);
        expect_hp_bad(bad[i], 1);
    }
}

static void test_hp_host_length(void **state)
{
    char s[300], want[256];
    struct host_port hp;
    /* The message quotes the whole input before the reason: room for both. */
    char err[ERRLEN * 2];

    (void)state;
    memset(want, 'a', 255);
    want[255] = '\0';
    snprintf(s, sizeof s, "%s:1", want);
    assert_int_equal(host_port_parse(s, &hp, 0, err, sizeof err), 0);
    assert_string_equal(hp.host, want);

    snprintf(s, sizeof s, "a%s:1", want);      /* 256 bytes of host */
    assert_int_equal(host_port_parse(s, &hp, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "255"));
}

/* Every prefix of each input: exactly `ok` of them parse. */
static void test_hp_prefixes(void **state)
{
    static const struct {
        const char *s;
        int ok;          /* prefixes that parse (port 0 not allowed) */
    } v[] = {
        { "[::1]:80", 2 },              /* "[::1]:8", "[::1]:80" */
        { "example.com:443", 3 },       /* "example.com:4", ":44", ":443" */
        { ":1080", 4 },                 /* ":1", ":10", ":108", ":1080" */
        { "[2001:db8::]:65535", 5 },
    };
    struct host_port hp;
    char err[ERRLEN], pfx[64];

    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        int ok = 0;
        size_t len = strlen(v[i].s);

        for (size_t k = 0; k <= len; k++) {
            memcpy(pfx, v[i].s, k);
            pfx[k] = '\0';
            if (hp_parse(pfx, &hp, 0, err) == 0)
                ok++;
        }
        if (ok != v[i].ok)
            fail_msg("'%s': %d prefixes parsed, want %d", v[i].s, ok, v[i].ok);
    }
}

static void test_from_literal(void **state)
{
    struct net_addr a;
    uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };

    (void)state;
    assert_int_equal(net_addr_from_literal("10.1.2.3", 8080, &a), 0);
    assert_int_equal(a.u.sa.sa_family, AF_INET);
    assert_int_equal(a.len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohl(a.u.in.sin_addr.s_addr), 0x0A010203);
    assert_int_equal(ntohs(a.u.in.sin_port), 8080);
    assert_int_equal(net_addr_port(&a), 8080);

    assert_int_equal(net_addr_from_literal("2001:db8::1", 53, &a), 0);
    assert_int_equal(a.u.sa.sa_family, AF_INET6);
    assert_int_equal(a.len, sizeof(struct sockaddr_in6));
    assert_memory_equal(a.u.in6.sin6_addr.s6_addr, v6, 16);
    assert_int_equal(net_addr_port(&a), 53);

    /* Empty host: the IPv4 wildcard. */
    assert_int_equal(net_addr_from_literal("", 9, &a), 0);
    assert_int_equal(a.u.sa.sa_family, AF_INET);
    assert_int_equal(a.u.in.sin_addr.s_addr, htonl(INADDR_ANY));
    assert_int_equal(net_addr_port(&a), 9);

    assert_int_equal(net_addr_from_literal("example.com", 80, &a), -1);
    assert_int_equal(net_addr_from_literal("1.2.3", 80, &a), -1);
    assert_int_equal(net_addr_from_literal("1.2.3.4 ", 80, &a), -1);
    assert_int_equal(net_addr_from_literal("[::1]", 80, &a), -1);
}

static void test_parse(void **state)
{
    struct net_addr a;
    char err[ERRLEN], txt[NET_ADDR_STRLEN];

    (void)state;
    assert_int_equal(net_addr_parse("127.0.0.1:1080", &a, err, sizeof err), 0);
    assert_string_equal(net_addr_format(&a, txt, sizeof txt), "127.0.0.1:1080");
    assert_int_equal(net_addr_parse(":80", &a, err, sizeof err), 0);
    assert_string_equal(net_addr_format(&a, txt, sizeof txt), "0.0.0.0:80");
    /* Listen addresses may use port 0 (kernel picks one). */
    assert_int_equal(net_addr_parse("[::]:0", &a, err, sizeof err), 0);
    assert_string_equal(net_addr_format(&a, txt, sizeof txt), "[::]:0");

    /* localhost is 127.0.0.1 (not ::1), in any case. */
    assert_int_equal(net_addr_parse("localhost:80", &a, err, sizeof err), 0);
    assert_string_equal(net_addr_format(&a, txt, sizeof txt), "127.0.0.1:80");
    assert_int_equal(net_addr_parse("LocalHost:0", &a, err, sizeof err), 0);
    assert_string_equal(net_addr_format(&a, txt, sizeof txt), "127.0.0.1:0");
    assert_int_equal(net_addr_parse("example.com:80", &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "example.com:80"));
    assert_non_null(strstr(err, "IP address or localhost"));
    assert_int_equal(net_addr_parse("[localhost]:80", &a, err, sizeof err), -1);
    assert_int_equal(net_addr_parse("1.2.3.4", &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "1.2.3.4"));
}

#define LONGEST_V6 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"

static void test_format(void **state)
{
    struct net_addr a;
    char txt[NET_ADDR_STRLEN], small[8];

    (void)state;
    /* The longest text there is: must fit NET_ADDR_STRLEN. */
    assert_int_equal(net_addr_from_literal(LONGEST_V6, 65535, &a), 0);
    assert_string_equal(net_addr_format(&a, txt, sizeof txt), "[" LONGEST_V6 "]:65535");
    assert_int_equal(net_addr_from_literal("::ffff:1.2.3.4", 1, &a), 0);
    assert_string_equal(net_addr_format(&a, txt, sizeof txt), "[::ffff:1.2.3.4]:1");
    assert_int_equal(net_addr_from_literal("2001:DB8:0:0::1", 2, &a), 0);
    assert_string_equal(net_addr_format(&a, txt, sizeof txt), "[2001:db8::1]:2");

    /* Truncated, still NUL-terminated, and returns its buffer. */
    assert_int_equal(net_addr_from_literal("255.255.255.255", 65535, &a), 0);
    memset(small, 'X', sizeof small);
    assert_ptr_equal(net_addr_format(&a, small, sizeof small), small);
    assert_string_equal(small, "255.255");

    memset(&a, 0, sizeof a);
    assert_string_equal(net_addr_format(&a, txt, sizeof txt), "-");
}

/* parse -> format -> parse gives the same address. */
static void test_round_trip(void **state)
{
    static const char *const v[] = {
        "0.0.0.0:1", "10.20.30.40:5000", "[::]:65535", "[::1]:1", "[fe80::1:2]:99",
        "[::ffff:127.0.0.1]:22", "[2001:db8:0:1:1:1:1:1]:443",
    };
    struct net_addr a, b;
    char err[ERRLEN], txt[NET_ADDR_STRLEN];

    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        assert_int_equal(net_addr_parse(v[i], &a, err, sizeof err), 0);
        net_addr_format(&a, txt, sizeof txt);
        assert_string_equal(txt, v[i]);
        assert_int_equal(net_addr_parse(txt, &b, err, sizeof err), 0);
        assert_int_equal(a.len, b.len);
        assert_memory_equal(&a.u, &b.u, a.len);
    }
}

static int loopback(const char *ip)
{
    struct net_addr a;

    assert_int_equal(net_addr_from_literal(ip, 80, &a), 0);
    return net_addr_is_loopback(&a);
}

static void test_loopback(void **state)
{
    struct net_addr a;

    (void)state;
    assert_int_equal(loopback("127.0.0.1"), 1);
    assert_int_equal(loopback("127.255.255.254"), 1);
    assert_int_equal(loopback("126.255.255.255"), 0);
    assert_int_equal(loopback("128.0.0.1"), 0);
    assert_int_equal(loopback("0.0.0.0"), 0);
    assert_int_equal(loopback("::1"), 1);
    assert_int_equal(loopback("::2"), 0);
    assert_int_equal(loopback("::"), 0);
    assert_int_equal(loopback("::ffff:127.0.0.9"), 1);
    assert_int_equal(loopback("::ffff:10.0.0.1"), 0);
    assert_int_equal(loopback("::127.0.0.1"), 0);   /* IPv4-compatible, not mapped */
    memset(&a, 0, sizeof a);
    assert_int_equal(net_addr_is_loopback(&a), 0);
}

static void test_from_sockaddr(void **state)
{
    struct sockaddr_in6 sin6;
    struct sockaddr_storage big;
    struct net_addr a;
    char txt[NET_ADDR_STRLEN];

    (void)state;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(4242);
    sin6.sin6_addr.s6_addr[15] = 1;
    net_addr_from_sockaddr(&a, (const struct sockaddr *)&sin6, sizeof sin6);
    assert_int_equal(a.len, sizeof sin6);
    assert_string_equal(net_addr_format(&a, txt, sizeof txt), "[::1]:4242");

    /* A longer length than the union is clamped, not copied past it. */
    memset(&big, 0, sizeof big);
    memcpy(&big, &sin6, sizeof sin6);
    net_addr_from_sockaddr(&a, (const struct sockaddr *)&big, sizeof big);
    assert_int_equal(a.len, sizeof a.u);
    assert_int_equal(net_addr_port(&a), 4242);
}

/* Clashing listen addresses: same port and family, and the same IP or a
 * wildcard; port 0 never (each picks its own); v4 and v6 never (v6-only). */
static void test_overlap(void **state)
{
    static const struct {
        const char *a, *b;
        int clash;
    } cases[] = {
        { "127.0.0.1:80", "127.0.0.1:80", 1 },
        { "127.0.0.1:80", "localhost:80", 1 },
        { "0.0.0.0:80", "127.0.0.1:80", 1 },
        { "10.0.0.1:80", ":80", 1 },
        { "[::]:80", "[::1]:80", 1 },
        { "127.0.0.1:80", "127.0.0.2:80", 0 },
        { "127.0.0.1:80", "127.0.0.1:81", 0 },
        { "0.0.0.0:0", "0.0.0.0:0", 0 },
        { "0.0.0.0:80", "[::]:80", 0 },
        { "127.0.0.1:80", "[::1]:80", 0 },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct net_addr a, b;
        char err[ERRLEN];
        assert_int_equal(net_addr_parse(cases[i].a, &a, err, sizeof err), 0);
        assert_int_equal(net_addr_parse(cases[i].b, &b, err, sizeof err), 0);
        if (net_addr_overlap(&a, &b) != cases[i].clash || net_addr_overlap(&b, &a) != cases[i].clash)
            fail_msg("%s vs %s: want %d", cases[i].a, cases[i].b, cases[i].clash);
    }
}


/* Raw bytes from the wire (SOCKS, PROXY protocol) to an address, and a
 * port set afterwards; formatted back to check. */
static void test_from_ip_and_set_port(void **state)
{
    (void)state;
    static const uint8_t v4[4] = { 192, 0, 2, 7 };
    static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
    struct net_addr a;
    char buf[NET_ADDR_STRLEN];
    net_addr_from_ip(&a, 4, v4, 8080);
    assert_string_equal(net_addr_format(&a, buf, sizeof(buf)), "192.0.2.7:8080");
    net_addr_set_port(&a, 53);
    assert_string_equal(net_addr_format(&a, buf, sizeof(buf)), "192.0.2.7:53");
    net_addr_from_ip(&a, 6, v6, 443);
    assert_string_equal(net_addr_format(&a, buf, sizeof(buf)), "[2001:db8::1]:443");
    net_addr_set_port(&a, 0);
    assert_int_equal(net_addr_port(&a), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hp_valid),
        cmocka_unit_test(test_hp_port0),
        cmocka_unit_test(test_hp_invalid),
        cmocka_unit_test(test_hp_host_length),
        cmocka_unit_test(test_hp_prefixes),
        cmocka_unit_test(test_from_literal),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_from_sockaddr),
        cmocka_unit_test(test_from_ip_and_set_port),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

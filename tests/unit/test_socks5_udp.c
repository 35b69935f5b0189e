/* test_socks5_udp.c - unit tests for proto/socks5_udp (UDP ASSOCIATE
 * datagrams): the verdict on every prefix of every datagram, the reply
 * header builder, and who may send into an association.
 *
 * Each prefix is parsed from an exactly sized heap block, so ASan flags a
 * read past len.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "proto/socks5_udp.h"

#define UNTOUCHED ((size_t)0xDEADBEEF)

/* Parses exactly len bytes of msg from the heap. */
static enum socks5_udp_verdict parse_exact(const uint8_t *msg, size_t len, struct socks_addr *dst, size_t *off)
{
    uint8_t *b = malloc(len ? len : 1);
    enum socks5_udp_verdict v;

    assert_non_null(b);
    memcpy(b, msg, len);
    v = socks5_udp_parse(len ? b : b + 1, len, dst, off);
    free(b);
    return v;
}

/* hdr is a whole header of hdrlen bytes: every shorter prefix is SHORT
 * with the outputs untouched; the header alone and the header with a
 * payload are OK, the payload starting at hdrlen. */
static void expect_datagram(const uint8_t *hdr, size_t hdrlen, struct socks_addr *out)
{
    static const char payload[] = "payload bytes";
    uint8_t full[300];
    struct socks_addr a;
    size_t off;

    assert_true(hdrlen + sizeof payload <= sizeof full);
    for (size_t i = 0; i < hdrlen; i++) {
        memset(&a, 0xA5, sizeof a);
        off = UNTOUCHED;
        assert_int_equal(parse_exact(hdr, i, &a, &off), SOCKS5_UDP_SHORT);
        assert_true(off == UNTOUCHED);
        assert_int_equal(a.atyp, 0xA5);
    }
    off = UNTOUCHED;
    assert_int_equal(parse_exact(hdr, hdrlen, out, &off), SOCKS5_UDP_OK);
    assert_int_equal(off, hdrlen);
    memcpy(full, hdr, hdrlen);
    memcpy(full + hdrlen, payload, sizeof payload);
    off = UNTOUCHED;
    assert_int_equal(parse_exact(full, hdrlen + sizeof payload, &a, &off), SOCKS5_UDP_OK);
    assert_int_equal(off, hdrlen);
    assert_int_equal(a.port, out->port);
}

static void test_parse_v4_v6_domain(void **state)
{
    static const uint8_t v4[] = { 0, 0, 0, 1, 127, 0, 0, 9, 0, 53 };
    static const uint8_t v6[] = { 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x30, 0x39 };
    static const uint8_t dom[] = { 0, 0, 0, 3, 12, 't', 'e', 's', 't', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 53 };
    static const uint8_t rsv[] = { 0xFF, 0xFF, 0, 1, 10, 0, 0, 1, 0xFF, 0xFF };
    struct socks_addr a;
    char s[SOCKS_ADDR_FMT_MAX];

    (void)state;
    expect_datagram(v4, sizeof v4, &a);
    socks_addr_format(&a, s, sizeof s);
    assert_string_equal(s, "127.0.0.9:53");
    expect_datagram(v6, sizeof v6, &a);
    socks_addr_format(&a, s, sizeof s);
    assert_string_equal(s, "[::1]:12345");
    expect_datagram(dom, sizeof dom, &a);
    assert_int_equal(a.atyp, SOCKS_ATYP_DOMAIN);
    assert_string_equal(a.host, "test.example");
    assert_int_equal(a.port, 53);
    expect_datagram(rsv, sizeof rsv, &a);       /* RSV is ignored */
    assert_int_equal(a.port, 65535);
}

/* The longest header: a 255-byte name. */
static void test_parse_longest_name(void **state)
{
    uint8_t hdr[3 + 1 + 1 + 255 + 2];
    struct socks_addr a;

    (void)state;
    memset(hdr, 'n', sizeof hdr);
    hdr[0] = hdr[1] = hdr[2] = 0;
    hdr[3] = SOCKS_ATYP_DOMAIN;
    hdr[4] = 255;
    hdr[sizeof hdr - 2] = 0x01;
    hdr[sizeof hdr - 1] = 0xBB;
    expect_datagram(hdr, sizeof hdr, &a);
    assert_int_equal(strlen(a.host), 255);
    assert_int_equal(a.port, 443);
}

static void test_parse_drops(void **state)
{
    uint8_t frag[] = { 0, 0, 1, 1, 127, 0, 0, 1, 0, 53, 'x' };
    static const uint8_t bad_atyp[] = { 0, 0, 0, 2, 127, 0, 0, 1, 0, 53 };
    static const uint8_t empty_name[] = { 0, 0, 0, 3, 0, 0, 53 };
    static const uint8_t nul_name[] = { 0, 0, 0, 3, 3, 'a', 0, 'b', 0, 53 };
    struct socks_addr a;
    size_t off;

    (void)state;
    /* FRAG != 0 is told apart from a malformed header, from its byte on. */
    for (int f = 1; f < 256; f++) {
        frag[2] = (uint8_t)f;
        for (size_t len = 3; len <= sizeof frag; len++) {
            off = UNTOUCHED;
            assert_int_equal(parse_exact(frag, len, &a, &off), SOCKS5_UDP_FRAG);
            assert_true(off == UNTOUCHED);
        }
    }
    for (size_t len = 4; len <= sizeof bad_atyp; len++)
        assert_int_equal(parse_exact(bad_atyp, len, &a, &off), SOCKS5_UDP_BAD);
    assert_int_equal(parse_exact(empty_name, sizeof empty_name, &a, &off), SOCKS5_UDP_BAD);
    assert_int_equal(parse_exact(nul_name, sizeof nul_name, &a, &off), SOCKS5_UDP_BAD);
    assert_int_equal(parse_exact(nul_name, 6, &a, &off), SOCKS5_UDP_SHORT);  /* before the NUL */
}

static void test_build_header(void **state)
{
    struct socks_addr src, back;
    uint8_t out[SOCKS5_UDP_REPLY_HDR_MAX + 4];
    size_t n, off;

    (void)state;
    memset(&src, 0, sizeof src);
    src.atyp = SOCKS_ATYP_IPV4;
    inet_pton(AF_INET, "127.0.0.9", src.ip);
    src.port = 53;
    n = socks5_udp_build_header(out, sizeof out, &src);
    assert_int_equal(n, 10);
    static const uint8_t want4[] = { 0, 0, 0, 1, 127, 0, 0, 9, 0, 53 };
    assert_memory_equal(out, want4, sizeof want4);
    assert_int_equal(socks5_udp_parse(out, n, &back, &off), SOCKS5_UDP_OK);
    assert_int_equal(off, n);
    assert_memory_equal(back.ip, src.ip, 4);
    assert_int_equal(back.port, 53);
    assert_int_equal(socks5_udp_build_header(out, 9, &src), 0);      /* too small */

    src.atyp = SOCKS_ATYP_IPV6;
    inet_pton(AF_INET6, "2001:db8::1", src.ip);
    src.port = 65535;
    n = socks5_udp_build_header(out, sizeof out, &src);
    assert_int_equal(n, SOCKS5_UDP_REPLY_HDR_MAX);
    assert_int_equal(socks5_udp_parse(out, n, &back, &off), SOCKS5_UDP_OK);
    assert_memory_equal(back.ip, src.ip, 16);
    assert_int_equal(back.port, 65535);
    assert_int_equal(socks5_udp_build_header(out, SOCKS5_UDP_REPLY_HDR_MAX - 1, &src), 0);
    assert_int_equal(socks5_udp_build_header(out, 2, &src), 0);

    src.atyp = SOCKS_ATYP_DOMAIN;                   /* a reply never names a host */
    strcpy(src.host, "x");
    assert_int_equal(socks5_udp_build_header(out, sizeof out, &src), 0);
}

static void ip4(uint8_t *b, const char *s) { assert_int_equal(inet_pton(AF_INET, s, b), 1); }
static void ip6(uint8_t *b, const char *s) { assert_int_equal(inet_pton(AF_INET6, s, b), 1); }

static void test_peer_declared(void **state)
{
    struct socks_addr d;
    struct socks5_udp_peer p;
    uint8_t tcp[16], a[16];

    (void)state;
    ip4(tcp, "10.0.0.1");
    memset(&d, 0, sizeof d);
    d.atyp = SOCKS_ATYP_IPV4;
    ip4(d.ip, "10.0.0.2");
    d.port = 5000;
    socks5_udp_peer_init(&p, &d, 4, tcp);
    ip4(a, "10.0.0.2");
    assert_int_equal(socks5_udp_peer_accept(&p, 4, a, 5001), 0);   /* other port */
    assert_int_equal(socks5_udp_peer_accept(&p, 4, tcp, 5000), 0); /* the TCP IP is not the declared one */
    assert_int_equal(socks5_udp_peer_accept(&p, 4, a, 5000), 1);
    assert_int_equal(socks5_udp_peer_accept(&p, 4, a, 5000), 1);
    memset(a, 0, sizeof a);
    a[10] = a[11] = 0xff;
    ip4(a + 12, "10.0.0.2");                                      /* ::ffff:10.0.0.2 */
    assert_int_equal(socks5_udp_peer_accept(&p, 6, a, 5000), 1);
}

static void test_peer_zeros_learn_port(void **state)
{
    struct socks_addr d;
    struct socks5_udp_peer p;
    uint8_t tcp[16], a[16];

    (void)state;
    memset(&d, 0, sizeof d);
    d.atyp = SOCKS_ATYP_IPV4;                       /* 0.0.0.0:0 */
    ip4(tcp, "127.0.0.1");
    socks5_udp_peer_init(&p, &d, 4, tcp);
    ip4(a, "127.0.0.2");
    assert_int_equal(socks5_udp_peer_accept(&p, 4, a, 4000), 0);   /* a stranger learns nothing */
    assert_int_equal(p.port, 0);
    assert_int_equal(socks5_udp_peer_accept(&p, 4, tcp, 0), 0);
    assert_int_equal(socks5_udp_peer_accept(&p, 4, tcp, 4001), 1); /* first one fixes the port */
    assert_int_equal(p.port, 4001);
    assert_int_equal(socks5_udp_peer_accept(&p, 4, tcp, 4002), 0);
    assert_int_equal(socks5_udp_peer_accept(&p, 4, tcp, 4001), 1);

    /* Zeros of the other family, or a name, also mean the TCP client. */
    memset(&d, 0, sizeof d);
    d.atyp = SOCKS_ATYP_IPV6;
    d.port = 7;
    ip6(tcp, "::1");
    socks5_udp_peer_init(&p, &d, 6, tcp);
    assert_int_equal(p.family, 6);
    assert_int_equal(socks5_udp_peer_accept(&p, 6, tcp, 8), 0);
    assert_int_equal(socks5_udp_peer_accept(&p, 6, tcp, 7), 1);
    ip4(a, "127.0.0.1");
    assert_int_equal(socks5_udp_peer_accept(&p, 4, a, 7), 0);

    memset(&d, 0, sizeof d);
    d.atyp = SOCKS_ATYP_DOMAIN;
    strcpy(d.host, "client.example");
    ip4(tcp, "192.0.2.1");
    socks5_udp_peer_init(&p, &d, 4, tcp);
    assert_int_equal(socks5_udp_peer_accept(&p, 4, tcp, 9), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_v4_v6_domain),
        cmocka_unit_test(test_parse_longest_name),
        cmocka_unit_test(test_parse_drops),
        cmocka_unit_test(test_build_header),
        cmocka_unit_test(test_peer_declared),
        cmocka_unit_test(test_peer_zeros_learn_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_via.c - unit tests for proto/via_url (parent proxy URLs) and
 * proto/via_client (the client side of a parent's handshake).
 *
 * Every answer goes through feed_prefixes(): each proper prefix, in a heap
 * buffer of exactly that size (ASan flags any read past len), must give
 * NEED_MORE, and the whole answer with the destination's first bytes
 * behind it must give the expected status with consumed == its length.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/socks5.h"
#include "proto/via_client.h"
#include "proto/via_url.h"

/* ---- URLs ---- */

static void url_ok(const char *spec, uint8_t proto, const char *host, uint16_t port, const char *user,
                   const char *pass)
{
    struct via_hop h;
    char err[200] = "";
    if (via_url_parse(spec, &h, err, sizeof(err)) != 0) fail_msg("'%s': %s", spec, err);
    assert_int_equal(h.proto, proto);
    assert_string_equal(h.host, host);
    assert_int_equal(h.port, port);
    if (proto == VIA_SS) {
        assert_string_equal(h.method, user);
    } else {
        assert_string_equal(h.user, user);
        assert_int_equal(h.has_user, user[0] != '\0');
    }
    assert_string_equal(h.pass, pass);
}

static void url_bad(const char *spec, const char *why_part)
{
    struct via_hop h;
    char err[200] = "";
    assert_int_equal(via_url_parse(spec, &h, err, sizeof(err)), -1);
    if (!strstr(err, why_part)) fail_msg("'%s': error '%s' lacks '%s'", spec, err, why_part);
    assert_null(strstr(err, "hunter2"));        /* never the password */
    assert_int_equal(h.proto, 0);               /* nothing half-parsed left behind */
}

static void test_url_good(void **state)
{
    (void)state;
    url_ok("socks5://127.0.0.1:1080", VIA_SOCKS5, "127.0.0.1", 1080, "", "");
    url_ok("socks5h://proxy.example:1", VIA_SOCKS5, "proxy.example", 1, "", "");
    url_ok("SOCKS5://bob:hunter2@[::1]:1080/", VIA_SOCKS5, "::1", 1080, "bob", "hunter2");
    url_ok("socks5://bob@h:9", VIA_SOCKS5, "h", 9, "bob", "");
    url_ok("socks5://a%40b:p%3Aw@d@h:65535", VIA_SOCKS5, "h", 65535, "a@b", "p:w@d");
    url_ok("socks4a://alice@10.0.0.1:1080", VIA_SOCKS4A, "10.0.0.1", 1080, "alice", "");
    url_ok("socks4a://h:1080", VIA_SOCKS4A, "h", 1080, "", "");
    url_ok("http://u:p@proxy:3128", VIA_HTTP, "proxy", 3128, "u", "p");
    url_ok("ss://aes-128-gcm:hunter2@1.2.3.4:8388", VIA_SS, "1.2.3.4", 8388, "aes-128-gcm", "hunter2");
    url_ok("ss://a:b:c@h:1", VIA_SS, "h", 1, "a", "b:c");
    /* SIP002: base64url("aes-256-gcm:hunter2"), padding dropped */
    url_ok("ss://YWVzLTI1Ni1nY206aHVudGVyMg@h:8388", VIA_SS, "h", 8388, "aes-256-gcm", "hunter2");
}

static void test_url_bad(void **state)
{
    (void)state;
    url_bad("127.0.0.1:1080", "expected socks5://");
    url_bad("socks4://h:1", "expected socks5://");
    url_bad("socks5://h", "missing :PORT");
    url_bad("socks5://hunter2@", "missing :PORT");
    url_bad("socks5://:1080", "missing the parent's host");
    url_bad("socks5://h:0", "port from 1 to 65535");
    url_bad("socks5://h:65536", "port from 1 to 65535");
    url_bad("socks5://h:80x", "port from 1 to 65535");
    url_bad("socks5://h:", "port from 1 to 65535");
    url_bad("socks5://::1:1080", "brackets");
    url_bad("socks5://[::1]1080", "[IPv6]:PORT");
    url_bad("socks5://:hunter2@h:1", "bad user name");
    url_bad("socks5://u:hunter2%zz@h:1", "bad password");
    url_bad("socks5://u:hunter2%0a@h:1", "bad password");
    url_bad("socks5://h h:1", "bad character");
    url_bad("socks4a://u:hunter2@h:1", "user id, not a password");
    url_bad("ss://h:1", "METHOD:PASSWORD");
    url_bad("ss://aes-128-gcm:@h:1", "METHOD:PASSWORD");
    url_bad("ss://!!!@h:1", "METHOD:PASSWORD");
    char longhost[400];
    snprintf(longhost, sizeof(longhost), "http://%0300d:1", 0);
    url_bad(longhost, "longer than 255");
}

static void test_url_format_and_secret(void **state)
{
    struct via_hop h;
    char err[100], out[300];
    size_t off, n;
    (void)state;
    assert_int_equal(via_url_parse("http://u:hunter2@[::1]:8080", &h, err, sizeof(err)), 0);
    via_url_format(&h, out, sizeof(out));
    assert_string_equal(out, "http://[::1]:8080");
    assert_int_equal(via_url_parse("socks5://u:hunter2@h:1", &h, err, sizeof(err)), 0);
    via_url_format(&h, out, sizeof(out));
    assert_string_equal(out, "socks5://h:1");

    const char *s = "socks5://u:hunter2@h:1";
    assert_int_equal(via_url_secret(s, &off, &n), 1);
    assert_int_equal(n, 7);
    assert_memory_equal(s + off, "hunter2", 7);
    s = "ss://aes-128-gcm:pw@x@h:1";
    assert_int_equal(via_url_secret(s, &off, &n), 1);
    assert_memory_equal(s + off, "aes-128-gcm:pw@x", n);
    assert_int_equal(via_url_secret("socks5://u@h:1", &off, &n), 0);
    assert_int_equal(via_url_secret("socks5://h:1", &off, &n), 0);
    assert_int_equal(via_url_secret("garbage:hunter2@h", &off, &n), 0);
    s = "http://u:hunter2@bad";      /* blanked even when the URL is refused */
    assert_int_equal(via_url_secret(s, &off, &n), 1);
    assert_memory_equal(s + off, "hunter2", 7);
}

/* ---- handshakes ---- */

static struct via_hop hop_of(const char *spec)
{
    struct via_hop h;
    char err[200];
    if (via_url_parse(spec, &h, err, sizeof(err)) < 0) fail_msg("%s: %s", spec, err);
    return h;
}

static struct socks_addr domain(const char *host, uint16_t port)
{
    struct socks_addr a;
    memset(&a, 0, sizeof(a));
    a.atyp = SOCKS_ATYP_DOMAIN;
    snprintf(a.host, sizeof(a.host), "%s", host);
    a.port = port;
    return a;
}

static struct socks_addr ipv4(uint8_t a0, uint8_t a1, uint8_t a2, uint8_t a3, uint16_t port)
{
    struct socks_addr a;
    memset(&a, 0, sizeof(a));
    a.atyp = SOCKS_ATYP_IPV4;
    a.ip[0] = a0, a.ip[1] = a1, a.ip[2] = a2, a.ip[3] = a3;
    a.port = port;
    return a;
}

static void expect_output(struct via_client *c, const void *want, size_t wlen)
{
    uint8_t out[VIA_REQUEST_MAX];
    size_t n = via_client_output(c, out, sizeof(out));
    assert_int_equal(n, wlen);
    assert_memory_equal(out, want, wlen);
}

/* The answer msg[0, len) then the destination's bytes: every proper prefix
 * gives NEED_MORE (fed to one client, growing from the same start, as the
 * contract says); the whole gives `final` and consumes len. */
static void feed_prefixes(struct via_client *c, const uint8_t *msg, size_t len, enum via_status final)
{
    static const uint8_t banner[] = "220 smtp ready\r\n";
    uint8_t *whole = malloc(len + sizeof(banner));
    assert_non_null(whole);
    memcpy(whole, msg, len);
    memcpy(whole + len, banner, sizeof(banner));
    for (size_t i = 0; i < len; i++) {
        uint8_t *b = malloc(i ? i : 1);
        size_t used = 12345;
        assert_non_null(b);
        memcpy(b, msg, i);
        enum via_status st = via_client_input(c, i ? b : b + 1, i, &used);
        free(b);
        if (st != VIA_NEED_MORE) fail_msg("prefix %zu/%zu gave %d", i, len, st);
        assert_int_equal(used, 12345);
    }
    size_t used = 0;
    enum via_status st = via_client_input(c, whole, len + sizeof(banner), &used);
    free(whole);
    assert_int_equal(st, final);
    if (final != VIA_FAIL) assert_int_equal(used, len);
}

static void test_socks5_noauth(void **state)
{
    (void)state;
    struct via_hop h = hop_of("socks5://p:1080");
    struct socks_addr t = domain("example.com", 443);
    struct via_client c;
    via_client_init(&c, &h, &t);
    expect_output(&c, "\x05\x01\x00", 3);
    feed_prefixes(&c, (const uint8_t *)"\x05\x00", 2, VIA_SEND);
    expect_output(&c, "\x05\x01\x00\x03\x0b" "example.com\x01\xbb", 18);
    /* BND as IPv4, then as a domain */
    feed_prefixes(&c, (const uint8_t *)"\x05\x00\x00\x01\x7f\x00\x00\x01\x30\x39", 10, VIA_DONE);

    via_client_init(&c, &h, &t);
    expect_output(&c, "\x05\x01\x00", 3);
    feed_prefixes(&c, (const uint8_t *)"\x05\x00", 2, VIA_SEND);
    expect_output(&c, "\x05\x01\x00\x03\x0b" "example.com\x01\xbb", 18);
    feed_prefixes(&c, (const uint8_t *)"\x05\x00\x00\x03\x03" "abc\x00\x50", 10, VIA_DONE);
}

static void test_socks5_userpass(void **state)
{
    (void)state;
    struct via_hop h = hop_of("socks5://bob:secret@p:1080");
    struct socks_addr t = ipv4(10, 1, 2, 3, 80);
    struct via_client c;
    via_client_init(&c, &h, &t);
    expect_output(&c, "\x05\x02\x00\x02", 4);
    feed_prefixes(&c, (const uint8_t *)"\x05\x02", 2, VIA_SEND);
    expect_output(&c, "\x01\x03" "bob" "\x06" "secret", 12);
    feed_prefixes(&c, (const uint8_t *)"\x01\x00", 2, VIA_SEND);
    expect_output(&c, "\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50", 10);
    feed_prefixes(&c, (const uint8_t *)"\x05\x00\x00\x04" "0123456789abcdef\x00\x01", 22, VIA_DONE);
    /* A parent that needs no password is fine too. */
    via_client_init(&c, &h, &t);
    expect_output(&c, "\x05\x02\x00\x02", 4);
    feed_prefixes(&c, (const uint8_t *)"\x05\x00", 2, VIA_SEND);
    expect_output(&c, "\x05\x01\x00\x01\x0a\x01\x02\x03\x00\x50", 10);
}

static void socks5_at_reply(struct via_client *c, struct via_hop *h)
{
    struct socks_addr t = domain("d", 1);
    uint8_t out[VIA_REQUEST_MAX];
    size_t used;
    via_client_init(c, h, &t);
    assert_true(via_client_output(c, out, sizeof(out)) > 0);
    assert_int_equal(via_client_input(c, (const uint8_t *)"\x05\x00", 2, &used), VIA_SEND);
    assert_true(via_client_output(c, out, sizeof(out)) > 0);
}

static void test_socks5_failures(void **state)
{
    (void)state;
    struct via_hop h = hop_of("socks5://p:1080"), hu = hop_of("socks5://u:p@p:1080");
    struct socks_addr t = domain("d", 1);
    struct via_client c;
    uint8_t out[VIA_REQUEST_MAX];
    size_t used;
    /* Reply codes 1-6 pass through; 7, 8 and unknown ones are ours: 1. */
    for (unsigned rep = 1; rep <= 9; rep++) {
        uint8_t r[10] = { 5, (uint8_t)rep, 0, 1, 0, 0, 0, 0, 0, 0 };
        socks5_at_reply(&c, &h);
        assert_int_equal(via_client_input(&c, r, 1, &used), VIA_NEED_MORE);
        assert_int_equal(via_client_input(&c, r, 2, &used), VIA_FAIL);   /* at once */
        assert_int_equal(c.rep, rep <= 6 ? rep : 1);
        assert_int_equal(c.code, (int)rep);
        assert_non_null(c.why);
        assert_int_equal(via_client_input(&c, r, 10, &used), VIA_FAIL);  /* final */
    }
    socks5_at_reply(&c, &h);
    assert_int_equal(via_client_input(&c, (const uint8_t *)"\x04", 1, &used), VIA_FAIL);
    socks5_at_reply(&c, &h);      /* unknown ATYP */
    assert_int_equal(via_client_input(&c, (const uint8_t *)"\x05\x00\x00\x09", 4, &used), VIA_FAIL);
    assert_int_equal(c.rep, 1);
    /* No method we offered; a password wanted; a wrong password. */
    via_client_init(&c, &h, &t);
    via_client_output(&c, out, sizeof(out));
    assert_int_equal(via_client_input(&c, (const uint8_t *)"\x05\xff", 2, &used), VIA_FAIL);
    assert_non_null(strstr(c.why, "USER:PASS"));
    via_client_init(&c, &h, &t);
    via_client_output(&c, out, sizeof(out));
    assert_int_equal(via_client_input(&c, (const uint8_t *)"\x05\x02", 2, &used), VIA_FAIL);
    via_client_init(&c, &hu, &t);
    via_client_output(&c, out, sizeof(out));
    assert_int_equal(via_client_input(&c, (const uint8_t *)"\x05\x02", 2, &used), VIA_SEND);
    via_client_output(&c, out, sizeof(out));
    feed_prefixes(&c, (const uint8_t *)"\x01\x01", 2, VIA_FAIL);
    assert_int_equal(c.rep, 1);
    assert_int_equal(c.code, 1);
    /* Nothing to say before our request; no output into a small buffer. */
    via_client_init(&c, &h, &t);
    assert_int_equal(via_client_input(&c, (const uint8_t *)"\x05\x00", 2, &used), VIA_FAIL);
    via_client_init(&c, &h, &t);
    assert_int_equal(via_client_output(&c, out, 16), 0);
}

static void test_socks4a(void **state)
{
    (void)state;
    struct via_hop h = hop_of("socks4a://alice@p:1080"), anon = hop_of("socks4a://p:1080");
    struct socks_addr t = domain("example.com", 80), t4 = ipv4(192, 0, 2, 1, 8080);
    struct via_client c;
    via_client_init(&c, &h, &t);
    expect_output(&c, "\x04\x01\x00\x50\x00\x00\x00\x01" "alice\0" "example.com\0", 26);
    feed_prefixes(&c, (const uint8_t *)"\x00\x5a\x00\x00\x00\x00\x00\x00", 8, VIA_DONE);
    via_client_init(&c, &anon, &t4);
    expect_output(&c, "\x04\x01\x1f\x90\xc0\x00\x02\x01\0", 9);
    feed_prefixes(&c, (const uint8_t *)"\x00\x5a\x1f\x90\xc0\x00\x02\x01", 8, VIA_DONE);
    via_client_init(&c, &anon, &t4);
    via_client_output(&c, (uint8_t[VIA_REQUEST_MAX]){ 0 }, VIA_REQUEST_MAX);
    size_t used;
    assert_int_equal(via_client_input(&c, (const uint8_t *)"\x00\x5b", 2, &used), VIA_FAIL);
    assert_int_equal(c.rep, 1);
    assert_int_equal(c.code, 0x5b);
}

static void http_expect_request(struct via_client *c, const char *want)
{
    expect_output(c, want, strlen(want));
}

static void test_http_connect(void **state)
{
    (void)state;
    struct via_hop h = hop_of("http://p:3128"), hu = hop_of("http://bob:secret@p:3128");
    struct socks_addr t = domain("example.com", 443), t6;
    struct via_client c;
    via_client_init(&c, &h, &t);
    http_expect_request(&c, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    static const char ok[] = "HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n";
    feed_prefixes(&c, (const uint8_t *)ok, strlen(ok), VIA_DONE);

    memset(&t6, 0, sizeof(t6));
    t6.atyp = SOCKS_ATYP_IPV6;
    t6.ip[15] = 1;
    t6.port = 22;
    via_client_init(&c, &hu, &t6);
    http_expect_request(&c, "CONNECT [::1]:22 HTTP/1.1\r\nHost: [::1]:22\r\n"
                            "Proxy-Authorization: Basic Ym9iOnNlY3JldA==\r\n\r\n");
    static const char ok10[] = "HTTP/1.0 200 OK\r\n\r\n";
    feed_prefixes(&c, (const uint8_t *)ok10, strlen(ok10), VIA_DONE);
}

static void http_fails(const char *answer, uint8_t rep, int code)
{
    struct via_hop h = hop_of("http://p:3128");
    struct socks_addr t = domain("d", 1);
    struct via_client c;
    uint8_t out[VIA_REQUEST_MAX];
    via_client_init(&c, &h, &t);
    assert_true(via_client_output(&c, out, sizeof(out)) > 0);
    size_t used = 0;
    enum via_status st = VIA_NEED_MORE;
    for (size_t i = 0; i <= strlen(answer) && st == VIA_NEED_MORE; i++)
        st = via_client_input(&c, (const uint8_t *)answer, i, &used);
    assert_int_equal(st, VIA_FAIL);
    assert_int_equal(c.rep, rep);
    assert_int_equal(c.code, code);
}

static void test_http_failures(void **state)
{
    (void)state;
    http_fails("HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!", 2, 403);
    http_fails("HTTP/1.1 502 Bad Gateway\r\n\r\n", 5, 502);
    http_fails("HTTP/1.1 504 Gateway Timeout\r\n\r\n", 6, 504);
    http_fails("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", 1, 407);
    http_fails("HTTP/1.1 500 Oops\r\n\r\n", 1, 500);
    http_fails("SSH-2.0-OpenSSH\r\n", 1, -1);
    assert_int_equal(via_rep_from_http(404), 1);

    /* A head that never ends fails at VIA_REPLY_MAX. */
    struct via_hop h = hop_of("http://p:3128");
    struct socks_addr t = domain("d", 1);
    struct via_client c;
    uint8_t out[VIA_REQUEST_MAX];
    via_client_init(&c, &h, &t);
    assert_true(via_client_output(&c, out, sizeof(out)) > 0);
    size_t cap = VIA_REPLY_MAX + 100, used;
    char *big = malloc(cap);
    assert_non_null(big);
    size_t n = (size_t)snprintf(big, cap, "HTTP/1.1 200 OK\r\nX: ");
    memset(big + n, 'a', cap - n);
    assert_int_equal(via_client_input(&c, (const uint8_t *)big, VIA_REPLY_MAX - 1, &used), VIA_NEED_MORE);
    assert_int_equal(via_client_input(&c, (const uint8_t *)big, cap, &used), VIA_FAIL);
    free(big);

    /* A client's name that would break the request line is never sent. */
    t = domain("evil\r\nX-Injected: 1", 80);
    via_client_init(&c, &h, &t);
    assert_int_equal(via_client_output(&c, out, sizeof(out)), 0);
    assert_int_equal(via_client_input(&c, (const uint8_t *)"HTTP/1.1 200 OK\r\n\r\n", 19, &used), VIA_FAIL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_good),
        cmocka_unit_test(test_url_bad),
        cmocka_unit_test(test_url_format_and_secret),
        cmocka_unit_test(test_socks5_noauth),
        cmocka_unit_test(test_socks5_userpass),
        cmocka_unit_test(test_socks5_failures),
        cmocka_unit_test(test_socks4a),
        cmocka_unit_test(test_http_connect),
        cmocka_unit_test(test_http_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

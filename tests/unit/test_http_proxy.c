/* test_http_proxy.c - unit tests for proto/http_proxy (the HTTP proxy
 * request head on the SOCKS port).
 *
 * Every valid head goes through expect_stream() twice over: each prefix
 * parsed by a fresh parser, and the head grown one byte at a time through
 * one parser, each time from a new heap block of exactly that size (so
 * ASan flags a read past len, and a pointer kept from an earlier call
 * would point into freed memory). Every proper prefix must be NEED_MORE,
 * the whole head DONE with head_len at its end, also with bytes after it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "proto/http_proxy.h"
#include "stage/http_one.h"

static enum http_proxy_status feed_exact(struct http_proxy_req *r, const char *msg, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    assert_non_null(b);
    memcpy(b, msg, len);
    enum http_proxy_status st = http_proxy_feed(r, len ? b : b + 1, len);
    free(b);
    return st;
}

/* Parses msg (a head, maybe followed by other bytes) every way; *out is
 * the last parse, of the whole of msg, whose buffer is msg itself. */
static void expect_stream(const char *msg, size_t head_len, struct http_proxy_req *out)
{
    size_t len = strlen(msg);
    struct http_proxy_req r;
    for (size_t k = 0; k < head_len; k++) {
        http_proxy_init(&r);
        enum http_proxy_status st = feed_exact(&r, msg, k);
        if (st != HTTP_PROXY_NEED_MORE) print_error("prefix %zu/%zu gave %d (%d)\n", k, head_len, st, r.status);
        assert_int_equal(st, HTTP_PROXY_NEED_MORE);
    }
    /* One parser, one more byte each call, up to the end of what follows. */
    http_proxy_init(&r);
    for (size_t k = 0; k <= len; k++) {
        enum http_proxy_status st = feed_exact(&r, msg, k);
        assert_int_equal(st, k < head_len ? HTTP_PROXY_NEED_MORE : HTTP_PROXY_DONE);
    }
    assert_int_equal(r.head_len, head_len);
    /* At once, with whatever follows the head. */
    http_proxy_init(out);
    assert_int_equal(http_proxy_feed(out, (const uint8_t *)msg, len), HTTP_PROXY_DONE);
    assert_int_equal(out->head_len, head_len);
    assert_int_equal(out->nheaders, r.nheaders);
    assert_string_equal(out->host, r.host);
    assert_int_equal(out->port, r.port);
    assert_memory_equal(out->h, r.h, sizeof(r.h[0]) * r.nheaders);
}

static int expect_error(const char *msg, size_t len)
{
    struct http_proxy_req r;
    http_proxy_init(&r);
    enum http_proxy_status st = feed_exact(&r, msg, len);
    assert_int_equal(st, HTTP_PROXY_ERROR);
    /* Final. */
    assert_int_equal(http_proxy_feed(&r, (const uint8_t *)msg, len), HTTP_PROXY_ERROR);
    return http_proxy_error_status(&r);
}

static void assert_span(const char *buf, struct http_span sp, const char *want)
{
    char got[512];
    snprintf(got, sizeof(got), "%.*s", (int)sp.len, buf + sp.off);
    assert_string_equal(got, want);
}

static void test_connect(void **state)
{
    (void)state;
    static const char head[] = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                               "User-Agent: curl/7.88.1\r\n\r\n";
    char msg[256];
    snprintf(msg, sizeof(msg), "%s\x16\x03\x01", head);    /* a ClientHello sent at once */
    struct http_proxy_req r;
    expect_stream(msg, strlen(head), &r);
    assert_true(r.is_connect);
    assert_int_equal(r.method, HTTP_CONNECT);
    assert_string_equal(r.host, "example.com");
    assert_int_equal(r.port, 443);
    assert_int_equal(r.nheaders, 2);
    assert_span(msg, r.h[1].name, "User-Agent");
    assert_span(msg, r.h[1].value, "curl/7.88.1");
    assert_int_equal(r.http_major, 1);
    assert_int_equal(r.http_minor, 1);
}

static void test_connect_ipv6_and_bare_lf(void **state)
{
    (void)state;
    static const char msg[] = "CONNECT [::1]:8443 HTTP/1.0\n\n";
    struct http_proxy_req r;
    expect_stream(msg, strlen(msg), &r);
    assert_string_equal(r.host, "::1");
    assert_int_equal(r.port, 8443);
    assert_int_equal(r.http_minor, 0);
    assert_span(msg, r.authority, "[::1]:8443");
}

static void test_connect_needs_port(void **state)
{
    (void)state;
    static const char m1[] = "CONNECT example.com HTTP/1.1\r\n\r\n";
    static const char m2[] = "CONNECT example.com:0 HTTP/1.1\r\n\r\n";
    static const char m3[] = "CONNECT example.com:99999 HTTP/1.1\r\n\r\n";
    assert_int_equal(expect_error(m1, strlen(m1)), 400);
    assert_int_equal(expect_error(m2, strlen(m2)), 400);
    assert_int_equal(expect_error(m3, strlen(m3)), 400);
}

static void test_absolute_form(void **state)
{
    (void)state;
    static const char msg[] = "GET http://origin.test:8080/a/b?x=1#frag HTTP/1.1\r\n"
                              "Host: wrong.test\r\nAccept: */*\r\nProxy-Connection: Keep-Alive\r\n"
                              "Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n"
                              "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 300\r\n"
                              "TE: trailers\r\nTransfer-Encoding: chunked\r\nX-Empty:\r\nX-Trail:  v  \r\n\r\n"
                              "5\r\nhello\r\n0\r\n\r\n";
    size_t head = (size_t)(strstr(msg, "\r\n\r\n") - msg) + 4;
    struct http_proxy_req r;
    expect_stream(msg, head, &r);
    assert_false(r.is_connect);
    assert_int_equal(r.method, HTTP_GET);
    assert_string_equal(r.host, "origin.test");
    assert_int_equal(r.port, 8080);
    assert_span(msg, r.path, "/a/b?x=1");
    assert_span(msg, r.authority, "origin.test:8080");
    assert_int_equal(r.nheaders, 11);
    int i = http_proxy_find(&r, (const uint8_t *)msg, "x-empty");
    assert_true(i >= 0);
    assert_int_equal(r.h[i].value.len, 0);
    i = http_proxy_find(&r, (const uint8_t *)msg, "X-Trail");
    assert_span(msg, r.h[i].value, "v");

    char out[HTTP_PROXY_MAX_HEAD + HTTP_PROXY_FORWARD_EXTRA];
    size_t n = http_proxy_build_forward(&r, (const uint8_t *)msg, out, sizeof(out));
    assert_true(n > 0);
    out[n] = '\0';
    assert_string_equal(out, "GET /a/b?x=1 HTTP/1.1\r\nHost: origin.test:8080\r\nAccept: */*\r\n"
                             "Transfer-Encoding: chunked\r\nX-Empty: \r\nX-Trail: v\r\n"
                             "Connection: close\r\n\r\n");
    /* Too small: 0, nothing promised about out. */
    assert_int_equal(http_proxy_build_forward(&r, (const uint8_t *)msg, out, n - 1), 0);

    size_t off, len;
    assert_true(http_proxy_secret(&r, &off, &len));
    assert_int_equal(len, strlen("Basic YWxpY2U6c2VjcmV0"));
    assert_memory_equal(msg + off, "Basic YWxpY2U6c2VjcmV0", len);
}

static void test_absolute_no_path(void **state)
{
    (void)state;
    static const char m1[] = "HEAD http://[2001:db8::1] HTTP/1.0\r\n\r\n";
    static const char m2[] = "POST http://h.test?q=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
    char out[1024];
    struct http_proxy_req r;
    expect_stream(m1, strlen(m1), &r);
    assert_string_equal(r.host, "2001:db8::1");
    assert_int_equal(r.port, 80);
    size_t n = http_proxy_build_forward(&r, (const uint8_t *)m1, out, sizeof(out));
    out[n] = '\0';
    assert_string_equal(out, "HEAD / HTTP/1.0\r\nHost: [2001:db8::1]\r\nConnection: close\r\n\r\n");

    expect_stream(m2, strlen(m2) - 2, &r);
    n = http_proxy_build_forward(&r, (const uint8_t *)m2, out, sizeof(out));
    out[n] = '\0';
    assert_string_equal(out, "POST /?q=1 HTTP/1.1\r\nHost: h.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
}

/* A Proxy-Authorization value still arriving is already secret. */
static void test_secret_partial(void **state)
{
    (void)state;
    static const char msg[] = "CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: Basic YWxp";
    struct http_proxy_req r;
    size_t off, len;
    http_proxy_init(&r);
    assert_int_equal(feed_exact(&r, msg, strlen(msg) - 3), HTTP_PROXY_NEED_MORE);
    assert_true(http_proxy_secret(&r, &off, &len));
    assert_int_equal(off, strlen("CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: "));
    assert_int_equal(off + len, strlen(msg) - 3);
    assert_int_equal(feed_exact(&r, msg, strlen(msg)), HTTP_PROXY_NEED_MORE);
    assert_true(http_proxy_secret(&r, &off, &len));
    assert_int_equal(off + len, strlen(msg));

    http_proxy_init(&r);
    assert_int_equal(feed_exact(&r, msg, 30), HTTP_PROXY_NEED_MORE);
    assert_false(http_proxy_secret(&r, &off, &len));
}

static void test_errors(void **state)
{
    (void)state;
    static const struct { const char *msg; int status; } cases[] = {
        { "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400 },                   /* origin form */
        { "GET https://x/ HTTP/1.1\r\n\r\n", 400 },                      /* not http */
        { "GET ftp://x/ HTTP/1.1\r\n\r\n", 400 },
        { "GARBAGE http://x/ HTTP/1.1\r\n\r\n", 400 },                   /* unknown method */
        { "GET http://x/ HTTP/9.9\r\n\r\n", 505 },
        { "GET http://x/ HTTP/1.2\r\n\r\n", 505 },
        { "GET http://x/\r\n\r\n", 505 },                                /* HTTP/0.9 */
        { "GET http://x/ HTTP/1.1\r\nX: a\x01" "b\r\n\r\n", 400 },
        { "GET http://x/ HTTP/1.1\r\nBad Header: 1\r\n\r\n", 400 },
        { "GET http://x/ HTTP/1.1\r\nX: a\r\n  folded\r\n\r\n", 400 },   /* obs-fold */
        { "GET http://x/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400 },
        { "MKCOL http://x/d HTTP/1.1\r\n\r\n", 405 },
        { "PROPFIND http://x/ HTTP/1.1\r\n\r\n", 405 },
        { "CONNECT http://x:1/ HTTP/1.1\r\n\r\n", 400 },
        { "G\x01T http://x/ HTTP/1.1\r\n\r\n", 400 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int st = expect_error(cases[i].msg, strlen(cases[i].msg));
        if (st != cases[i].status) print_error("case %zu: %d\n", i, st);
        assert_int_equal(st, cases[i].status);
    }
}

static void test_bounds(void **state)
{
    (void)state;
    /* 64 headers fit; the 65th is 431. */
    char *m = malloc(HTTP_PROXY_MAX_HEAD * 2);
    assert_non_null(m);
    size_t n = (size_t)sprintf(m, "GET http://x/ HTTP/1.1\r\n");
    for (int i = 0; i < HTTP_PROXY_MAX_HEADERS; i++) n += (size_t)sprintf(m + n, "X-%d: %d\r\n", i, i);
    strcpy(m + n, "\r\n");
    struct http_proxy_req r;
    http_proxy_init(&r);
    assert_int_equal(http_proxy_feed(&r, (const uint8_t *)m, n + 2), HTTP_PROXY_DONE);
    assert_int_equal(r.nheaders, HTTP_PROXY_MAX_HEADERS);
    n += (size_t)sprintf(m + n, "X-last: 1\r\n\r\n");
    assert_int_equal(expect_error(m, n), 431);

    /* A head of exactly the bound is fine; one byte more is 431, even
     * while it is still arriving. */
    n = (size_t)sprintf(m, "GET http://x/ HTTP/1.1\r\nX: ");
    memset(m + n, 'a', HTTP_PROXY_MAX_HEAD - n - 4);
    memcpy(m + HTTP_PROXY_MAX_HEAD - 4, "\r\n\r\n", 4);
    http_proxy_init(&r);
    assert_int_equal(http_proxy_feed(&r, (const uint8_t *)m, HTTP_PROXY_MAX_HEAD), HTTP_PROXY_DONE);
    assert_int_equal(r.head_len, HTTP_PROXY_MAX_HEAD);
    memset(m + n, 'a', HTTP_PROXY_MAX_HEAD);
    http_proxy_init(&r);
    assert_int_equal(http_proxy_feed(&r, (const uint8_t *)m, HTTP_PROXY_MAX_HEAD - 1), HTTP_PROXY_NEED_MORE);
    assert_int_equal(http_proxy_feed(&r, (const uint8_t *)m, HTTP_PROXY_MAX_HEAD + 100), HTTP_PROXY_ERROR);
    assert_int_equal(http_proxy_error_status(&r), 431);
    free(m);
}

static void test_basic(void **state)
{
    (void)state;
    char u[256], p[256];
    static const char v1[] = "Basic YWxpY2U6c2VjcmV0";           /* alice:secret */
    assert_int_equal(http_proxy_basic((const uint8_t *)v1, strlen(v1), u, p), 0);
    assert_string_equal(u, "alice");
    assert_string_equal(p, "secret");
    static const char v2[] = "basic   YTo=";                      /* a: (empty password) */
    assert_int_equal(http_proxy_basic((const uint8_t *)v2, strlen(v2), u, p), 0);
    assert_string_equal(u, "a");
    assert_string_equal(p, "");
    static const char v3[] = "Basic YTpiOmM=";                    /* a:b:c, the password has a colon */
    assert_int_equal(http_proxy_basic((const uint8_t *)v3, strlen(v3), u, p), 0);
    assert_string_equal(p, "b:c");
    static const char *const bad[] = {
        "Bearer YWxpY2U6c2VjcmV0", "Basic", "Basic ", "BasicYWxpY2U6c2VjcmV0", "Basic YWxpY2U",
        "Basic YWxp!2U6", "Basic YWxpY2U=",                       /* "alice": no colon */
        "Basic YQBiOmM=",                                         /* a NUL b:c */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(http_proxy_basic((const uint8_t *)bad[i], strlen(bad[i]), u, p), -1);
    /* 256-byte user name: too long. */
    char cred[600], b64[900], val[920];
    memset(cred, 'u', 256);
    strcpy(cred + 256, ":p");
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)cred, (int)strlen(cred));
    snprintf(val, sizeof(val), "Basic %s", b64);
    assert_int_equal(http_proxy_basic((const uint8_t *)val, strlen(val), u, p), -1);
    cred[255] = ':';
    cred[256] = '\0';
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)cred, (int)strlen(cred));
    snprintf(val, sizeof(val), "Basic %s", b64);
    assert_int_equal(http_proxy_basic((const uint8_t *)val, strlen(val), u, p), 0);
    assert_int_equal(strlen(u), 255);
}

static void test_build_error(void **state)
{
    (void)state;
    char out[HTTP_PROXY_ERROR_MAX];
    static const int statuses[] = { 400, 403, 405, 407, 431, 502, 503, 504, 505, 500, 42 };
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        size_t n = http_proxy_build_error(out, sizeof(out), statuses[i]);
        assert_true(n > 0 && n < sizeof(out));
        /* A complete response a parser reads as such. */
        const char *body = strstr(out, "\r\n\r\n");
        assert_non_null(body);
        const char *cl = strstr(out, "Content-Length: ");
        assert_non_null(cl);
        assert_int_equal(atoi(cl + 16), (int)(n - (size_t)(body + 4 - out)));
        assert_non_null(strstr(out, "\r\nConnection: close\r\n"));
    }
    size_t n = http_proxy_build_error(out, sizeof(out), 407);
    assert_true(n > 0);
    assert_memory_equal(out, "HTTP/1.1 407 Proxy Authentication Required\r\n", 44);
    assert_non_null(strstr(out, "\r\nProxy-Authenticate: Basic realm=\"ferry\"\r\n"));
    assert_int_equal(http_proxy_build_error(out, 20, 407), 0);
}


/* ---- the body, and the end of the request ---- */

struct body_case {
    const char *head, *body;      /* body: exactly the request's, then NEXT follows */
    int known;                    /* http_proxy_known_end() says where it ends */
};

static const struct body_case body_cases[] = {
    { "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "", 1 },
    { "POST http://a/ HTTP/1.1\r\nContent-Length: 11\r\n\r\n", "hello world", 1 },
    { "POST http://a/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "", 1 },
    { "POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 0 },
    { "POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", 0 },
    { "GET http://a/ HTTP/1.0\r\n\r\n", "", 1 },
};
#define NEXT "GET http://b/ HTTP/1.1\r\nProxy-Authorization: Basic eDp5\r\n\r\n"

/* body + NEXT split at every point into two calls: the bytes taken are the
 * body's, DONE comes once it is whole, and NEXT is never taken. */
static void test_body_framing_every_split(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof(body_cases) / sizeof(body_cases[0]); c++) {
        const struct body_case *bc = &body_cases[c];
        char rest[256];
        size_t blen = strlen(bc->body);
        snprintf(rest, sizeof(rest), "%s%s", bc->body, NEXT);
        size_t rlen = strlen(rest);
        struct http_proxy_req r;
        http_proxy_init(&r);
        assert_int_equal(http_proxy_feed(&r, (const uint8_t *)bc->head, strlen(bc->head)), HTTP_PROXY_DONE);
        uint64_t end = 0;
        assert_int_equal(http_proxy_known_end(&r, &end), bc->known);
        if (bc->known) assert_int_equal(end, strlen(bc->head) + blen);
        for (size_t cut = 0; cut <= rlen; cut++) {
            struct http_proxy_body b;
            size_t used, taken = 0;
            http_proxy_body_init(&b, &r);
            enum http_proxy_status st = http_proxy_body_feed(&b, (const uint8_t *)rest, cut, &used);
            taken += used;
            assert_int_equal(st, taken == blen ? HTTP_PROXY_DONE : HTTP_PROXY_NEED_MORE);
            if (st == HTTP_PROXY_NEED_MORE) {
                assert_int_equal(used, cut);
                st = http_proxy_body_feed(&b, (const uint8_t *)rest + cut, rlen - cut, &used);
                taken += used;
            }
            if (taken != blen) print_error("case %zu cut %zu: took %zu of a %zu-byte body\n", c, cut, taken, blen);
            assert_int_equal(st, HTTP_PROXY_DONE);
            assert_int_equal(taken, blen);
            /* Final: nothing more is taken. */
            assert_int_equal(http_proxy_body_feed(&b, (const uint8_t *)NEXT, strlen(NEXT), &used), HTTP_PROXY_DONE);
            assert_int_equal(used, 0);
        }
    }
}

static void test_body_framing_errors(void **state)
{
    (void)state;
    /* A chunk size that is no number, and one past what http-parser takes. */
    static const char *const bad[] = { "zz\r\nhello\r\n0\r\n\r\n", "fffffffffffffffff\r\n" };
    const char *head = "POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct http_proxy_req r;
        struct http_proxy_body b;
        size_t used;
        http_proxy_init(&r);
        assert_int_equal(http_proxy_feed(&r, (const uint8_t *)head, strlen(head)), HTTP_PROXY_DONE);
        http_proxy_body_init(&b, &r);
        assert_int_equal(http_proxy_body_feed(&b, (const uint8_t *)bad[i], strlen(bad[i]), &used), HTTP_PROXY_ERROR);
        assert_int_equal(http_proxy_body_feed(&b, (const uint8_t *)"0\r\n\r\n", 5, &used), HTTP_PROXY_ERROR);
    }
}

/* The stage over plain arrays: the forwarded head passes, then the body;
 * an empty line after it is dropped; a next request is held (nothing
 * used, nothing made) until the grace time, then STAGE_CLOSE; the client's
 * EOF passes on. */
static enum stage_status one_call(void *st, const char *in, size_t inlen, uint64_t now, int eof, char *out,
                                  size_t *used, size_t *made, int *out_eof)
{
    struct stage_io io;
    memset(&io, 0, sizeof(io));
    io.in = (const uint8_t *)in;
    io.inlen = inlen;
    io.in_eof = eof;
    io.out = (uint8_t *)out;
    io.outcap = 4096;
    io.now_us = now;
    enum stage_status r = http_one_stage_ops.process(st, &io);
    *used = io.used;
    *made = io.made;
    *out_eof = io.out_eof;
    return r;
}

static void test_http_one_stage(void **state)
{
    (void)state;
    const char *head = "POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\n\r\n";
    const char *fwd = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\n";
    struct http_proxy_req r;
    char out[4096];
    size_t used, made;
    int eof;
    http_proxy_init(&r);
    assert_int_equal(http_proxy_feed(&r, (const uint8_t *)head, strlen(head)), HTTP_PROXY_DONE);
    void *st = http_one_new(&r, strlen(fwd));
    assert_non_null(st);
    /* The head, then the body and more in one input: only the body goes. */
    assert_int_equal(one_call(st, fwd, strlen(fwd), 10, 0, out, &used, &made, &eof), STAGE_OK);
    assert_int_equal(used, strlen(fwd));
    assert_int_equal(made, strlen(fwd));
    assert_int_equal(one_call(st, "abc\r\nGET", 8, 20, 0, out, &used, &made, &eof), STAGE_OK);
    assert_int_equal(used, 3);
    assert_memory_equal(out, "abc", 3);
    /* The CRLF is dropped; the next request is held. */
    assert_int_equal(one_call(st, "\r\nGET", 5, 30, 0, out, &used, &made, &eof), STAGE_OK);
    assert_int_equal(used, 2);
    assert_int_equal(made, 0);
    assert_int_equal(one_call(st, "GET", 3, 40, 0, out, &used, &made, &eof), STAGE_OK);
    assert_int_equal(used + made, 0);
    /* Seen first at 30, with the CRLF in front of it. */
    assert_int_equal(http_one_stage_ops.next_wakeup(st), 30 + HTTP_ONE_GRACE_US);
    assert_int_equal(one_call(st, "GET", 3, 30 + HTTP_ONE_GRACE_US - 1, 0, out, &used, &made, &eof), STAGE_OK);
    assert_int_equal(one_call(st, "GET", 3, 30 + HTTP_ONE_GRACE_US, 0, out, &used, &made, &eof), STAGE_CLOSE);
    assert_int_equal(used + made, 0);
    http_one_stage_ops.free(st);

    /* A GET: nothing after the head is body; the client's EOF goes on. */
    const char *get = "GET http://a/ HTTP/1.1\r\n\r\n";
    http_proxy_init(&r);
    assert_int_equal(http_proxy_feed(&r, (const uint8_t *)get, strlen(get)), HTTP_PROXY_DONE);
    st = http_one_new(&r, 4);
    assert_int_equal(one_call(st, "HEAD", 4, 1, 0, out, &used, &made, &eof), STAGE_OK);
    assert_int_equal(made, 4);
    assert_int_equal(one_call(st, "", 0, 2, 1, out, &used, &made, &eof), STAGE_OK);
    assert_true(eof);
    http_one_stage_ops.free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect),
        cmocka_unit_test(test_connect_ipv6_and_bare_lf),
        cmocka_unit_test(test_connect_needs_port),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_absolute_no_path),
        cmocka_unit_test(test_secret_partial),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_build_error),
        cmocka_unit_test(test_body_framing_every_split),
        cmocka_unit_test(test_body_framing_errors),
        cmocka_unit_test(test_http_one_stage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* fuzz_http_proxy.c - libFuzzer target for proto/http_proxy (HTTP proxy
 * request heads on the SOCKS port).
 *
 * Invariants checked (abort() on violation):
 *   - the input at once (a fresh parser) and the input grown a few bytes
 *     at a time through one parser, each call from a new exactly-sized
 *     heap block (ASan catches a read past len, or a pointer kept from an
 *     earlier call), end in the same status with the same head_len,
 *     headers, host and port (an ERROR's HTTP status may differ: see
 *     below); NEED_MORE holds until the status turns DONE
 *     or ERROR, which then never changes;
 *   - DONE: 0 < head_len <= min(len, HTTP_PROXY_MAX_HEAD), the head ends in
 *     LF, every span lies inside it, at most HTTP_PROXY_MAX_HEADERS
 *     headers, a non-empty host and a non-zero port; ERROR: one of the
 *     statuses the header names;
 *   - the forwarded head (absolute form) fits in head_len +
 *     HTTP_PROXY_FORWARD_EXTRA, ends in its only blank line (no header
 *     smuggled in), and carries no Proxy-Authorization;
 *   - Basic decoding of every header value stays within its bounds; the
 *     secret span lies within what was fed; every error reply builds;
 *   - after an absolute-form head, the body's framing (check_body) is the
 *     same whatever the reads, and ends where the head said it would.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http_proxy.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

#define INPUT_LIMIT (HTTP_PROXY_MAX_HEAD + 512)

static enum http_proxy_status feed_copy(struct http_proxy_req *r, const uint8_t *data, size_t k)
{
    uint8_t *b = malloc(k ? k : 1);
    if (!b) abort();
    memcpy(b, data, k);
    enum http_proxy_status st = http_proxy_feed(r, k ? b : b + 1, k);
    size_t off, n;
    if (http_proxy_secret(r, &off, &n)) CHECK(n > 0 && off + n <= k);
    free(b);
    return st;
}

static void check_done(const struct http_proxy_req *r, const uint8_t *buf, size_t len)
{
    CHECK(r->head_len > 0 && r->head_len <= len && r->head_len <= HTTP_PROXY_MAX_HEAD);
    CHECK(buf[r->head_len - 1] == '\n');
    CHECK(r->nheaders <= HTTP_PROXY_MAX_HEADERS);
    CHECK(r->host[0] && strlen(r->host) < sizeof(r->host) && r->port > 0);
    CHECK(r->url.off + r->url.len <= r->head_len);
    for (unsigned i = 0; i < r->nheaders; i++) {
        CHECK(r->h[i].name.len > 0 && r->h[i].name.off + r->h[i].name.len <= r->head_len);
        CHECK(r->h[i].value.off + r->h[i].value.len <= r->head_len);
        char u[256], p[256];
        if (http_proxy_basic(buf + r->h[i].value.off, r->h[i].value.len, u, p) == 0)
            CHECK(strlen(u) <= 255 && strlen(p) <= 255);
    }
    if (r->is_connect) return;
    CHECK(r->path.off + r->path.len <= r->head_len && r->authority.len > 0);
    size_t cap = r->head_len + HTTP_PROXY_FORWARD_EXTRA;
    char *out = malloc(cap);
    if (!out) abort();
    size_t n = http_proxy_build_forward(r, buf, out, cap);
    CHECK(n >= 4 && n <= cap);
    CHECK(memcmp(out + n - 4, "\r\n\r\n", 4) == 0);
    CHECK(memmem(out, n, "\r\n\r\n", 4) == out + n - 4);
    CHECK(!memmem(out, n, "\nProxy-Authorization:", 21));
    free(out);
}

static int same(const struct http_proxy_req *a, const struct http_proxy_req *b)
{
    return a->head_len == b->head_len && a->nheaders == b->nheaders && a->port == b->port &&
           strcmp(a->host, b->host) == 0 && memcmp(a->h, b->h, sizeof(a->h[0]) * a->nheaders) == 0 &&
           a->is_connect == b->is_connect;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The bytes after an absolute-form head, framed at once and split in two
 * at a point taken from the input: the same verdict and the same count of
 * body bytes; DONE never takes more than given and is final; a known end
 * (no body, Content-Length) is where DONE comes, when the input gets
 * there. */
static void check_body(const struct http_proxy_req *r, const uint8_t *rest, size_t n)
{
    struct http_proxy_body a, b;
    size_t ua = 0, ub1 = 0, ub2 = 0;
    http_proxy_body_init(&a, r);
    enum http_proxy_status sa = http_proxy_body_feed(&a, rest, n, &ua);
    CHECK(ua <= n);
    size_t cut = n ? rest[0] % (n + 1) : 0;
    http_proxy_body_init(&b, r);
    enum http_proxy_status sb = http_proxy_body_feed(&b, rest, cut, &ub1);
    if (sb == HTTP_PROXY_NEED_MORE) {
        CHECK(ub1 == cut);
        sb = http_proxy_body_feed(&b, rest + cut, n - cut, &ub2);
    }
    CHECK(sa == sb);
    if (sa != HTTP_PROXY_ERROR) CHECK(ua == ub1 + ub2);
    if (sa == HTTP_PROXY_DONE) CHECK(http_proxy_body_feed(&a, rest, n, &ua) == HTTP_PROXY_DONE && ua == 0);
    uint64_t end;
    if (http_proxy_known_end(r, &end) && sa != HTTP_PROXY_ERROR) {
        uint64_t body = end - r->head_len;
        if (body <= n) CHECK(sa == HTTP_PROXY_DONE && ub1 + ub2 == body);
        else CHECK(sa == HTTP_PROXY_NEED_MORE);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = size < INPUT_LIMIT ? size : INPUT_LIMIT;
    static struct http_proxy_req whole, grown;   /* large; not kept across inputs */
    http_proxy_init(&whole);
    enum http_proxy_status st = feed_copy(&whole, data, len);
    CHECK(st == HTTP_PROXY_NEED_MORE || st == HTTP_PROXY_DONE || st == HTTP_PROXY_ERROR);
    if (st == HTTP_PROXY_DONE) check_done(&whole, data, len);
    if (st == HTTP_PROXY_ERROR) {
        int e = http_proxy_error_status(&whole);
        CHECK(e == 400 || e == 405 || e == 431 || e == 505);
    }

    /* Grown: 1 byte a step for short inputs, then bigger steps. */
    http_proxy_init(&grown);
    enum http_proxy_status seen = HTTP_PROXY_NEED_MORE;
    size_t step = len <= 2048 ? 1 : 61;
    for (size_t k = 0;; k = k + step < len ? k + step : len) {
        enum http_proxy_status s = feed_copy(&grown, data, k);
        if (seen != HTTP_PROXY_NEED_MORE) CHECK(s == seen);
        seen = s;
        if (k == len) break;
    }
    /* A head complete before len was complete at once too, and the same. */
    CHECK(seen == st);
    if (st == HTTP_PROXY_DONE) CHECK(same(&whole, &grown));
    /* Not the same ERROR status, though: in a head with two faults (a 65th
     * header whose name is also bad) which one is met first depends on
     * where the reads end, as http-parser reports a name at a read's end. */

    if (st == HTTP_PROXY_DONE && !whole.is_connect) check_body(&whole, data + whole.head_len, len - whole.head_len);

    char out[HTTP_PROXY_ERROR_MAX];
    CHECK(http_proxy_build_error(out, sizeof(out), 400 + (int)(size % 200)) > 0);
    return 0;
}

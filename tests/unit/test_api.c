/* test_api.c - the HTTP API's sans-I/O halves: request assembly (api/http.c)
 * and routing (api/router.c) against an in-memory backend. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "api/router.h"
#include "api_fake.h"

/* ---- http ---- */

static enum api_req_state feed_all(struct api_req *r, const char *s, size_t len, size_t *used)
{
    return api_req_feed(r, s, len, used);
}

/* Every proper prefix, fed in one piece from an exact-size heap copy, needs
 * more; byte by byte the same request completes; whole, it is DONE. */
static void expect_request(const char *raw, const char *method, const char *url, const char *body)
{
    size_t len = strlen(raw), used;
    for (size_t n = 1; n < len; n++) {
        struct api_req r;
        char *copy = malloc(n);
        memcpy(copy, raw, n);
        api_req_init(&r);
        assert_int_equal(feed_all(&r, copy, n, &used), API_REQ_MORE);
        assert_int_equal(used, n);
        api_req_free(&r);
        free(copy);
    }
    struct api_req r;
    api_req_init(&r);
    enum api_req_state st = API_REQ_MORE;
    for (size_t i = 0; i < len; i++) {
        st = api_req_feed(&r, raw + i, 1, &used);
        assert_int_equal(used, 1);
        if (i + 1 < len) assert_int_equal(st, API_REQ_MORE);
    }
    assert_int_equal(st, API_REQ_DONE);
    assert_string_equal(r.method, method);
    assert_string_equal(r.url, url);
    if (body) assert_string_equal(r.body, body);
    else assert_null(r.body);
    api_req_free(&r);
}

static void test_http_requests(void **state)
{
    (void)state;
    expect_request("GET /proxies HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "/proxies", NULL);
    expect_request("POST /proxies HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", "POST", "/proxies", "{}");
    expect_request("POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "POST", "/p", "{}");
    expect_request("DELETE /proxies/a%20b HTTP/1.0\r\n\r\n", "DELETE", "/proxies/a%20b", NULL);
}

static void test_http_pipelining_and_keep_alive(void **state)
{
    (void)state;
    const char *two = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n";
    struct api_req r;
    size_t used, off = 0;
    api_req_init(&r);
    assert_int_equal(api_req_feed(&r, two, strlen(two), &used), API_REQ_DONE);
    assert_string_equal(r.url, "/a");
    assert_true(r.keep_alive);
    off += used;
    api_req_reset(&r);
    assert_int_equal(api_req_feed(&r, two + off, strlen(two) - off, &used), API_REQ_DONE);
    assert_string_equal(r.url, "/b");
    assert_false(r.keep_alive);
    assert_int_equal(off + used, strlen(two));
    api_req_free(&r);
}

static int error_of(const char *raw, size_t len)
{
    struct api_req r;
    size_t used;
    api_req_init(&r);
    enum api_req_state st = api_req_feed(&r, raw, len, &used);
    if (st == API_REQ_MORE) st = api_req_feed(&r, raw, 0, &used);   /* EOF */
    int e = st == API_REQ_ERROR ? r.error_status : 0;
    api_req_free(&r);
    return e;
}

static void test_http_bounds_and_errors(void **state)
{
    (void)state;
    const char *big = "POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n";
    assert_int_equal(error_of(big, strlen(big)), 413);
    size_t n = API_MAX_HEAD + 100;
    char *h = malloc(n + 64);
    int k = snprintf(h, 64, "GET / HTTP/1.1\r\nX: ");
    memset(h + k, 'a', n);
    assert_int_equal(error_of(h, (size_t)k + n), 431);
    free(h);
    const char *junk = "GET / HTTP/1.1\r\nbad header\r\n\r\n";
    assert_int_equal(error_of(junk, strlen(junk)), 400);
    const char *cut = "GET / HTTP/1.1\r\nHost:";
    assert_int_equal(error_of(cut, strlen(cut)), 400);

    struct api_req r;
    size_t used;
    const char *moz = "GET / HTTP/1.1\r\nuser-agent: Mozilla/5.0 (X11)\r\n\r\n";
    api_req_init(&r);
    assert_int_equal(api_req_feed(&r, moz, strlen(moz), &used), API_REQ_DONE);
    assert_true(r.browser);
    api_req_free(&r);
    /* Split anywhere, even inside "Mozilla/": still a browser. */
    for (size_t split = 1; split < strlen(moz); split++) {
        api_req_init(&r);
        enum api_req_state st = api_req_feed(&r, moz, split, &used);
        assert_int_equal(used, split);
        if (st != API_REQ_DONE) st = api_req_feed(&r, moz + split, strlen(moz) - split, &used);
        assert_int_equal(st, API_REQ_DONE);
        assert_true(r.browser);
        api_req_free(&r);
    }
}

/* api_req_refusal() after the request is fed whole, and the same after it
 * is fed in two pieces split anywhere (values arrive in pieces). */
static const char *refusal(const char *headers, const struct net_addr *local)
{
    char raw[1024];
    size_t used, len = (size_t)snprintf(raw, sizeof(raw), "GET /proxies HTTP/1.1\r\n%s\r\n", headers);
    const char *whole = NULL;
    assert_true(len < sizeof(raw));
    for (size_t split = 0; split < len; split++) {
        struct api_req r;
        api_req_init(&r);
        enum api_req_state st = api_req_feed(&r, raw, split ? split : len, &used);
        if (st != API_REQ_DONE) st = api_req_feed(&r, raw + split, len - split, &used);
        assert_int_equal(st, API_REQ_DONE);
        const char *why = api_req_refusal(&r, local);
        if (!split) whole = why;
        else if (why != whole) fail_msg("%s: split at %zu: '%s', whole: '%s'", headers, split, why ? why : "-",
                                        whole ? whole : "-");
        api_req_free(&r);
    }
    return whole;
}

static void allowed(const char *headers, const struct net_addr *local)
{
    const char *why = refusal(headers, local);
    if (why) fail_msg("refused (%s): %s", why, headers);
}

static void refused(const char *headers, const char *want, const struct net_addr *local)
{
    const char *why = refusal(headers, local);
    if (!why || strcmp(why, want) != 0) fail_msg("want '%s', got '%s': %s", want, why ? why : "allowed", headers);
}

/* What a web page's request looks like (a browser's User-Agent, Origin,
 * Sec-Fetch-Site, a Host other than loopback or the API's own address:
 * DNS rebinding) is refused; what curl, urllib and node clients send is not. */
static void test_http_refuses_what_a_web_page_sends(void **state)
{
    (void)state;
    struct net_addr lan;
    char err[100];
    assert_int_equal(net_addr_parse("192.0.2.7:8474", &lan, err, sizeof(err)), 0);

    allowed("", NULL);
    allowed("Host: 127.0.0.1:8474\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n", NULL);
    allowed("Host: localhost:8474\r\n", NULL);
    allowed("host: LocalHost\r\n", NULL);
    allowed("Host: 127.1.2.3\r\n", NULL);
    allowed("Host: [::1]:8474\r\n", NULL);
    allowed("Host: [::1]\r\n", NULL);
    allowed("Host: 127.0.0.1:8474  \r\n", NULL);
    allowed("Host:\r\n", NULL);
    allowed("Host: 192.0.2.7:8474\r\n", &lan);
    allowed("Sec-Fetch-Site: same-origin\r\nHost: localhost\r\n", NULL);
    allowed("Sec-Fetch-Site: none\r\n", NULL);
    allowed("User-Agent: node\r\nX-Origin: a\r\nOriginal: b\r\n", NULL);

    refused("Host: evil.example\r\n", "Host not allowed", NULL);
    refused("Host: evil.example:8474\r\n", "Host not allowed", NULL);
    refused("Host: localhost.\r\n", "Host not allowed", NULL);
    refused("Host: localhost.evil.example\r\n", "Host not allowed", NULL);
    refused("Host: 127.0.0.1.evil.example\r\n", "Host not allowed", NULL);
    refused("Host: 192.0.2.7:8474\r\n", "Host not allowed", NULL);
    refused("Host: 192.0.2.8:8474\r\n", "Host not allowed", &lan);
    refused("Host: ::1\r\n", "Host not allowed", NULL);
    refused("Host: [::1\r\n", "Host not allowed", NULL);
    refused("Host: [::1]x\r\n", "Host not allowed", NULL);
    refused("Host: 127.0.0.1:80x\r\n", "Host not allowed", NULL);
    refused("Host: :8474\r\n", "Host not allowed", NULL);
    refused("Host: 127.0.0.1\r\nHost: evil.example\r\n", "Host not allowed", NULL);
    refused("Host: 127.0.0.1:1\r\nHost: 127.0.0.1:1\r\n", "Host not allowed", NULL);
    refused("Origin: http://127.0.0.1:8474\r\nHost: 127.0.0.1\r\n", "Origin not allowed", NULL);
    refused("origin:\r\n", "Origin not allowed", NULL);
    refused("Origin: null\r\n", "Origin not allowed", NULL);
    refused("Sec-Fetch-Site: cross-site\r\n", "Cross-site request not allowed", NULL);
    refused("sec-fetch-site: Same-Site \r\n", "Cross-site request not allowed", NULL);
    refused("User-Agent: Mozilla/5.0\r\nHost: 127.0.0.1\r\n", "User agent not allowed", NULL);

    char big[600];
    int n = snprintf(big, sizeof(big), "Host: 127.0.0.1:");
    memset(big + n, '1', 400);
    memcpy(big + n + 400, "\r\n", 3);
    refused(big, "Host not allowed", NULL);
}

/* ---- router ---- */

struct ctx {
    struct fake f;
    struct api_backend b;
};

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    fake_init(&c->f, &c->b);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    fake_free(&c->f);
    free(c);
    return 0;
}

/* Routes and checks the status, and the body when want is not NULL. */
static void req(struct ctx *c, const char *method, const char *url, const char *body, int status, const char *want)
{
    struct api_response r;
    api_route(&c->b, method, url, body, body ? strlen(body) : 0, &r);
    if (r.status != status || (want && (!r.body || strcmp(r.body, want) != 0)))
        fail_msg("%s %s: got %d %s, want %d %s", method, url, r.status, r.body ? r.body : "(none)", status,
                 want ? want : "");
    if (status == 204) assert_null(r.body);
    api_response_free(&r);
}

static void test_router_proxies(void **state)
{
    struct ctx *c = *state;
    req(c, "GET", "/version", NULL, 200, "{\"version\":\"test\"}");
    req(c, "GET", "/proxies", NULL, 200, "{}");
    req(c, "POST", "/proxies", "{\"name\":\"a\",\"listen\":\"127.0.0.1:5\",\"upstream\":\"h:1\"}", 201,
        "{\"name\":\"a\",\"listen\":\"127.0.0.1:5\",\"upstream\":\"h:1\",\"enabled\":true,\"toxics\":[]}");
    req(c, "POST", "/proxies", "{\"name\":\"a\",\"upstream\":\"h:1\"}", 409,
        "{\"error\":\"proxy already exists\",\"status\":409}");
    req(c, "POST", "/proxies", "{\"name\":\"b\"}", 400, "{\"error\":\"missing required field: upstream\",\"status\":400}");
    req(c, "POST", "/proxies", "{\"name\":\"b\",\"upstream\":\"h:1\",\"listen\":\"127.0.0.1:1\"}", 500,
        "{\"error\":\"cannot listen on 127.0.0.1:1: Address already in use\",\"status\":500}");
    req(c, "POST", "/proxies", "[]", 400, NULL);
    req(c, "POST", "/proxies", "{\"name\":1}", 400, NULL);
    req(c, "POST", "/proxies", NULL, 400, NULL);
    req(c, "POST", "/proxies/a", "{\"enabled\":false}", 200,
        "{\"name\":\"a\",\"listen\":\"127.0.0.1:5\",\"upstream\":\"h:1\",\"enabled\":false,\"toxics\":[]}");
    req(c, "PATCH", "/proxies/a", "{\"enabled\":\"no\"}", 400, NULL);
    req(c, "GET", "/proxies/a?x=1", NULL, 200, NULL);
    req(c, "GET", "/proxies/%61", NULL, 200, NULL);      /* percent-decoded */
    req(c, "POST", "/reset", NULL, 204, NULL);
    req(c, "GET", "/proxies/a", NULL, 200,
        "{\"name\":\"a\",\"listen\":\"127.0.0.1:5\",\"upstream\":\"h:1\",\"enabled\":true,\"toxics\":[]}");
    req(c, "POST", "/populate", "[{\"name\":\"a\",\"upstream\":\"h:2\"},{\"name\":\"c\",\"upstream\":\"h:3\"}]", 201, NULL);
    req(c, "POST", "/populate", "[{\"name\":\"d\",\"upstream\":\"h:4\"},{\"name\":\"e\"}]", 400,
        "{\"error\":\"missing required field: upstream\",\"status\":400,\"proxies\":[{\"name\":\"d\",\"listen\":\"\","
        "\"upstream\":\"h:4\",\"enabled\":true,\"toxics\":[]}]}");
    req(c, "DELETE", "/proxies/c", NULL, 204, NULL);
    req(c, "DELETE", "/proxies/c", NULL, 404, "{\"error\":\"proxy not found\",\"status\":404}");
    req(c, "PUT", "/proxies/a", NULL, 405, NULL);
    req(c, "GET", "/nope", NULL, 404, NULL);
    req(c, "GET", "/proxies/a/b/c/d/e", NULL, 404, NULL);
}

static void test_router_toxics(void **state)
{
    struct ctx *c = *state;
    req(c, "POST", "/proxies", "{\"name\":\"p\",\"upstream\":\"h:1\"}", 201, NULL);
    req(c, "GET", "/proxies/p/toxics", NULL, 200, "[]");
    req(c, "POST", "/proxies/p/toxics", "{\"type\":\"latency\",\"attributes\":{\"latency\":100}}", 200,
        "{\"name\":\"latency_downstream\",\"type\":\"latency\",\"stream\":\"downstream\",\"toxicity\":1.0,"
        "\"attributes\":{\"latency\":100,\"jitter\":0}}");
    assert_int_equal(c->f.changed, 1);
    req(c, "POST", "/proxies/p/toxics", "{\"type\":\"latency\"}", 409, "{\"error\":\"toxic already exists\",\"status\":409}");
    req(c, "POST", "/proxies/p/toxics", "{\"type\":\"nope\"}", 400, "{\"error\":\"invalid toxic type\",\"status\":400}");
    req(c, "POST", "/proxies/p/toxics", "{\"type\":\"latency\",\"stream\":\"x\"}", 400,
        "{\"error\":\"stream was invalid, can be either upstream or downstream\",\"status\":400}");
    req(c, "POST", "/proxies/p/toxics", "{\"type\":\"latency\",\"name\":\"l2\",\"attributes\":{\"bogus\":1}}", 400, NULL);
    req(c, "POST", "/proxies/p/toxics", "{\"type\":\"latency\",\"name\":\"l2\",\"toxicity\":2}", 400, NULL);
    req(c, "POST", "/proxies/p/toxics", "{\"type\":\"timeout\",\"stream\":\"upstream\",\"toxicity\":0.5}", 200,
        "{\"name\":\"timeout_upstream\",\"type\":\"timeout\",\"stream\":\"upstream\",\"toxicity\":0.5,"
        "\"attributes\":{\"timeout\":0}}");
    req(c, "POST", "/proxies/p/toxics/latency_downstream", "{\"attributes\":{\"jitter\":5}}", 200,
        "{\"name\":\"latency_downstream\",\"type\":\"latency\",\"stream\":\"downstream\",\"toxicity\":1.0,"
        "\"attributes\":{\"latency\":100,\"jitter\":5}}");
    req(c, "GET", "/proxies/p/toxics/latency_downstream", NULL, 200, NULL);
    req(c, "GET", "/proxies/p/toxics/nope", NULL, 404, "{\"error\":\"toxic not found\",\"status\":404}");
    req(c, "DELETE", "/proxies/p/toxics/latency_downstream", NULL, 204, NULL);
    req(c, "GET", "/proxies/p/toxics", NULL, 200,
        "[{\"name\":\"timeout_upstream\",\"type\":\"timeout\",\"stream\":\"upstream\",\"toxicity\":0.5,"
        "\"attributes\":{\"timeout\":0}}]");
    req(c, "POST", "/reset", NULL, 204, NULL);
    req(c, "GET", "/proxies/p/toxics", NULL, 200, "[]");
    req(c, "POST", "/proxies/nope/toxics", "{}", 404, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_requests),
        cmocka_unit_test(test_http_pipelining_and_keep_alive),
        cmocka_unit_test(test_http_bounds_and_errors),
        cmocka_unit_test(test_http_refuses_what_a_web_page_sends),
        cmocka_unit_test_setup_teardown(test_router_proxies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_router_toxics, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

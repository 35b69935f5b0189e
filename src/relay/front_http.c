/* front_http.c - HTTP/1.x proxying on the SOCKS port (the "mixed port").
 *
 * The SOCKS front hands a session over at its first byte when that starts
 * an HTTP method (front_http_take_over). Glue between the pure parser
 * (proto/http_proxy.c) and the session, like front_socks.c: the same
 * users, destination policy and log keys.
 *
 * - CONNECT host:port: once connected, "200 Connection established"; the
 *   bytes after the request head are early data, as with SOCKS.
 * - GET http://host[:port]/path (and the other methods of RFC 7231 and
 *   PATCH): the head goes to host:port rewritten in origin form, without
 *   hop-by-hop headers and with "Connection: close"; the body is relayed
 *   as it comes, framed as the request says (stage/http_one.h). One
 *   request per client connection: the origin closes after its response,
 *   and so does ferry; a next request on the connection (a client keeping
 *   it alive, or pipelining) is held, never forwarded (stage/http_one.h),
 *   and the client sends it again on a new connection.
 * - Failures are HTTP responses with Connection: close: 400 malformed, 405
 *   a method not proxied, 407 no or wrong credentials (Basic, checked
 *   against the listener's users), 431 head too large, 403 destination
 *   policy, 502 connect refused / unreachable / name unknown, 504 connect
 *   timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "config/config.h"
#include "obs/log.h"
#include "proto/http_proxy.h"
#include "relay/front.h"
#include "relay/rlistener-t.h"
#include "relay/pipe.h"
#include "relay/session.h"
#include "stage/http_one.h"

struct http_state {
    struct http_proxy_req req;
    char *user;                /* the name a client authenticated (or tried) as, for the log */
    char *dest;                /* requested HOST:PORT, for the log */
    char *fwd;                 /* absolute form: the head for the origin, until attach */
    size_t fwd_len;
};

static struct http_state *st(const struct session *s) { return s->front_state; }
static const struct listener_cfg *cfg(const struct session *s) { return s->wl->cfg; }

int front_http_first_byte(uint8_t b)
{
    /* CONNECT, GET, HEAD, POST/PUT/PATCH, DELETE, OPTIONS, TRACE. */
    return b == 'C' || b == 'G' || b == 'H' || b == 'P' || b == 'D' || b == 'O' || b == 'T';
}

static int http_init(struct session *s)
{
    struct http_state *x = calloc(1, sizeof(*x));
    if (!x) return -1;
    http_proxy_init(&x->req);
    s->front_state = x;
    return 0;
}

static void http_free(struct session *s)
{
    struct http_state *x = st(s);
    if (!x) return;
    free(x->user);
    free(x->dest);
    free(x->fwd);
    free(x);
    s->front_state = NULL;
}

enum front_result front_http_take_over(struct session *s, const uint8_t *buf, size_t len, size_t *used)
{
    s->front->free(s);
    s->front = &front_http;
    if (http_init(s) < 0) return FRONT_FAIL;
    return front_http.on_data(s, buf, len, used);
}

static enum front_result reply_error(struct session *s, int status, enum sess_end why)
{
    char out[HTTP_PROXY_ERROR_MAX];
    size_t n = http_proxy_build_error(out, sizeof(out), status);
    if (n) sess_reply(s, out, n);
    sess_fail_reason(s, why);
    return FRONT_FAIL;
}

/* With users configured: Proxy-Authorization: Basic, checked against
 * them. 0 to go on, or the end reason of a 407. */
static enum sess_end check_auth(struct session *s, const uint8_t *buf)
{
    struct http_state *x = st(s);
    char user[256], pass[256];
    if (!cfg(s)->nusers) return END_NONE;
    int i = http_proxy_find(&x->req, buf, "Proxy-Authorization");
    if (i < 0) return cfg(s)->allow_anonymous ? END_NONE : END_NO_METHOD;
    const struct http_span v = x->req.h[i].value;
    if (http_proxy_basic(buf + v.off, v.len, user, pass) < 0) return END_AUTH_FAILED;
    int ok = front_user_check(s, user, strlen(user), pass, strlen(pass));
    OPENSSL_cleanse(pass, sizeof(pass));
    /* Logged either way: on auth_failed, user= is the name that was tried. */
    free(x->user);
    x->user = strdup(user);
    return ok ? END_NONE : END_AUTH_FAILED;
}

/* The origin's copy of an absolute-form head, kept until attach. */
static int make_forward(struct session *s, const uint8_t *buf)
{
    struct http_state *x = st(s);
    size_t cap = x->req.head_len + HTTP_PROXY_FORWARD_EXTRA;
    if (!(x->fwd = malloc(cap))) return -1;
    x->fwd_len = http_proxy_build_forward(&x->req, buf, x->fwd, cap);
    return x->fwd_len ? 0 : -1;
}

static enum front_result http_on_data(struct session *s, const uint8_t *buf, size_t len, size_t *used)
{
    struct http_state *x = st(s);
    size_t off, n;
    *used = 0;
    enum http_proxy_status r = http_proxy_feed(&x->req, buf, len);
    /* On every call: a head still arriving may hold part of a password. */
    if (http_proxy_secret(&x->req, &off, &n)) sess_secret(s, off, n);
    if (r == HTTP_PROXY_NEED_MORE) return FRONT_AGAIN;
    if (r == HTTP_PROXY_ERROR) {
        int status = http_proxy_error_status(&x->req);
        return reply_error(s, status, status == 405 ? END_BAD_COMMAND : END_HANDSHAKE_ERROR);
    }
    const struct http_proxy_req *q = &x->req;
    char dest[300];
    snprintf(dest, sizeof(dest), strchr(q->host, ':') ? "[%s]:%u" : "%s:%u", q->host, q->port);
    if (!(x->dest = strdup(dest))) return FRONT_FAIL;
    enum sess_end auth = check_auth(s, buf);
    if (auth != END_NONE) return reply_error(s, 407, auth);
    if (!q->is_connect && make_forward(s, buf) < 0) return FRONT_FAIL;
    if (!q->is_connect) {
        /* What may follow this request is never forwarded (stage/http_one.h),
         * and is a next request with its own credentials: starred in the
         * capture from the request's end, or from the head's for a chunked
         * body, whose end only its chunks tell. */
        uint64_t end;
        sess_secret_from(s, http_proxy_known_end(q, &end) ? (size_t)end : q->head_len);
    }
    if (sess_set_target(s, q->host, q->port, 1) < 0) return FRONT_FAIL;
    *used = q->head_len;
    return FRONT_CONNECT;
}

/* The origin's head goes ahead of the body the client already sent, and
 * the request's end is the end of what goes to this origin. */
static int http_attach(struct session *s)
{
    struct http_state *x = st(s);
    if (!x->fwd) return 0;
    int r = sess_forward(s, x->fwd, x->fwd_len);
    void *one = r == 0 ? http_one_new(&x->req, x->fwd_len) : NULL;
    free(x->fwd);
    x->fwd = NULL;
    return one ? pipe_add_stage(&s->up, &http_one_stage_ops, one, 1) : -1;
}

static void http_on_connected(struct session *s, const struct net_addr *bound)
{
    (void)bound;
    /* Absolute form: the origin's response is the answer. */
    if (st(s)->req.is_connect) sess_reply(s, HTTP_PROXY_ESTABLISHED, strlen(HTTP_PROXY_ESTABLISHED));
}

static void http_on_failed(struct session *s, enum sess_fail why)
{
    int status = why == FAIL_NOT_ALLOWED ? 403 : why == FAIL_TIMEOUT ? 504 : 502;
    char out[HTTP_PROXY_ERROR_MAX];
    size_t n = http_proxy_build_error(out, sizeof(out), status);
    if (n) sess_reply(s, out, n);
}

/* The SOCKS front's keys, so that a line from the port parses the same
 * whichever protocol the client spoke. */
static void http_log_fields(const struct session *s, char *out, size_t outlen)
{
    const struct http_state *x = st(s);
    char user[256], dest[300];
    log_sanitize(user, sizeof(user), x && x->user ? x->user : "-");
    log_sanitize(dest, sizeof(dest), x && x->dest ? x->dest : "-");
    snprintf(out, outlen, "proto=http user=%s socks4_userid=- dest=%s", user, dest);
}

static const char *http_user(const struct session *s)
{
    return st(s) ? st(s)->user : NULL;
}

const struct front_ops front_http = {
    .name = "http",
    .init = http_init,
    .on_data = http_on_data,
    .attach = http_attach,
    .on_connected = http_on_connected,
    .on_failed = http_on_failed,
    .log_fields = http_log_fields,
    .user = http_user,
    .free = http_free,
};

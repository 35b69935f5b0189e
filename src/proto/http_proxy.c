/* http_proxy.c - see http_proxy.h. */
#include "proto/http_proxy.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

static int fail(struct http_proxy_req *r, int status)
{
    if (!r->status) r->status = (uint16_t)status;
    return -1;     /* any non-zero return stops http-parser with an error */
}

static uint16_t off_of(const struct http_proxy_req *r, const char *at)
{
    return (uint16_t)((const uint8_t *)at - r->base);
}

/* A span arrives in pieces (one per call, at most): each must continue
 * the last, or the head is not what the spans say (an obs-fold line). */
static int extend(struct http_proxy_req *r, struct http_span *sp, const char *at, size_t n)
{
    if (off_of(r, at) != sp->off + sp->len) return fail(r, 400);
    sp->len = (uint16_t)(sp->len + n);
    return 0;
}

static int name_is(const uint8_t *buf, struct http_span sp, const char *name)
{
    return sp.len == strlen(name) && strncasecmp((const char *)buf + sp.off, name, sp.len) == 0;
}

static void end_header(struct http_proxy_req *r)
{
    struct http_proxy_header *h = &r->h[r->nheaders];
    if (r->in == 1) h->value = (struct http_span){ (uint16_t)(h->name.off + h->name.len), 0 };
    while (h->value.len && (r->base[h->value.off + h->value.len - 1] == ' ' ||
                            r->base[h->value.off + h->value.len - 1] == '\t'))
        h->value.len--;
    r->nheaders++;
    r->in = 0;
    r->in_secret = 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct http_proxy_req *r = p->data;
    if (r->url.len == 0) r->url.off = off_of(r, at);
    return extend(r, &r->url, at, n);
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct http_proxy_req *r = p->data;
    /* Right after a name: more of it, unless a line with an empty value
     * (no value callback) came in between. */
    if (r->in == 1 && off_of(r, at) == r->h[r->nheaders].name.off + r->h[r->nheaders].name.len)
        return extend(r, &r->h[r->nheaders].name, at, n);
    if (r->in) end_header(r);
    if (r->nheaders == HTTP_PROXY_MAX_HEADERS) return fail(r, 431);
    r->h[r->nheaders].name = (struct http_span){ off_of(r, at), (uint16_t)n };
    r->h[r->nheaders].value = (struct http_span){ 0, 0 };
    r->in = 1;
    return 0;
}

static void note_secret(struct http_proxy_req *r, struct http_span v)
{
    if (r->sec_lo == r->sec_hi) {
        r->sec_lo = v.off;
        r->sec_hi = (uint16_t)(v.off + v.len);
        return;
    }
    if (v.off < r->sec_lo) r->sec_lo = v.off;
    if (v.off + v.len > r->sec_hi) r->sec_hi = (uint16_t)(v.off + v.len);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct http_proxy_req *r = p->data;
    struct http_proxy_header *h = &r->h[r->nheaders];
    if (r->in == 1) {
        h->value = (struct http_span){ off_of(r, at), (uint16_t)n };
        r->in = 2;
        r->in_secret = name_is(r->base, h->name, "Proxy-Authorization");
    } else if (extend(r, &h->value, at, n) < 0) {
        return -1;
    }
    if (r->in_secret) note_secret(r, h->value);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct http_proxy_req *r = p->data;
    if (r->in) end_header(r);
    r->method = (uint8_t)p->method;
    r->http_major = (uint8_t)p->http_major;
    r->http_minor = (uint8_t)p->http_minor;
    r->done = 1;
    /* Stop at the end of the head: what follows is the caller's. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
};

/* ---- the body ---- */

static int on_message_complete(http_parser *p)
{
    struct http_proxy_body *b = p->data;
    b->complete = 1;
    http_parser_pause(p, 1);    /* paused on the request's last byte, which is counted */
    return 0;
}

/* Only the framing matters here: no header callbacks (chunked trailers
 * pass through unread). */
static const http_parser_settings body_settings = {
    .on_message_complete = on_message_complete,
};

int http_proxy_known_end(const struct http_proxy_req *r, uint64_t *end)
{
    if (r->p.flags & F_CHUNKED) return 0;
    uint64_t cl = r->p.content_length;
    /* http-parser's "none" is all ones: no Content-Length, no body (RFC
     * 9112 6.3: a request without either has none). */
    *end = r->head_len + (cl == (uint64_t)-1 ? 0 : cl);
    return 1;
}

void http_proxy_body_init(struct http_proxy_body *b, const struct http_proxy_req *r)
{
    memset(b, 0, sizeof(*b));
    b->p = r->p;
    b->p.data = b;
}

enum http_proxy_status http_proxy_body_feed(struct http_proxy_body *b, const uint8_t *buf, size_t len,
                                            size_t *used)
{
    *used = 0;
    if (b->complete) return HTTP_PROXY_DONE;
    if (HTTP_PARSER_ERRNO(&b->p) != HPE_OK && HTTP_PARSER_ERRNO(&b->p) != HPE_PAUSED) return HTTP_PROXY_ERROR;
    if (!b->started) {
        /* The head parser paused on the head's last byte without taking
         * it: given again, it decides how the body is framed (and a
         * request without one ends right there). */
        b->started = 1;
        http_parser_pause(&b->p, 0);
        http_parser_execute(&b->p, &body_settings, "\n", 1);
        if (b->complete) return HTTP_PROXY_DONE;
        if (HTTP_PARSER_ERRNO(&b->p) != HPE_OK) return HTTP_PROXY_ERROR;
    }
    if (len == 0) return HTTP_PROXY_NEED_MORE;
    size_t n = http_parser_execute(&b->p, &body_settings, (const char *)buf, len);
    if (b->complete) {
        *used = n;
        return HTTP_PROXY_DONE;
    }
    if (HTTP_PARSER_ERRNO(&b->p) != HPE_OK || n != len) return HTTP_PROXY_ERROR;
    *used = n;
    return HTTP_PROXY_NEED_MORE;
}

void http_proxy_init(struct http_proxy_req *r)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->p, HTTP_REQUEST);
    r->p.data = r;
}

static int proxied_method(unsigned m)
{
    switch (m) {
    case HTTP_GET: case HTTP_HEAD: case HTTP_POST: case HTTP_PUT: case HTTP_DELETE:
    case HTTP_OPTIONS: case HTTP_PATCH: case HTTP_TRACE:
        return 1;
    default:
        return 0;
    }
}

static struct http_span field(const struct http_proxy_req *r, const struct http_parser_url *u, int f)
{
    return (struct http_span){ (uint16_t)(r->url.off + u->field_data[f].off), u->field_data[f].len };
}

/* The request target -> host, port, authority and path. 0, or -1 (400). */
static int parse_target(struct http_proxy_req *r, const uint8_t *buf)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (r->url.len == 0 ||
        http_parser_parse_url((const char *)buf + r->url.off, r->url.len, r->is_connect, &u) != 0)
        return -1;
    if (!(u.field_set & (1 << UF_HOST))) return -1;
    if (!r->is_connect) {
        struct http_span sch = field(r, &u, UF_SCHEMA);
        if (!(u.field_set & (1 << UF_SCHEMA)) || !name_is(buf, sch, "http")) return -1;
    }
    struct http_span host = field(r, &u, UF_HOST);
    if (host.len == 0 || host.len >= sizeof(r->host)) return -1;
    memcpy(r->host, buf + host.off, host.len);
    r->host[host.len] = '\0';
    if (memchr(r->host, '\0', host.len)) return -1;
    r->port = (u.field_set & (1 << UF_PORT)) ? u.port : 80;
    if (r->port == 0) return -1;
    /* Authority: host[:port] as sent, brackets of an IPv6 literal kept. */
    uint16_t a_off = host.off, a_end = (uint16_t)(host.off + host.len);
    if (a_off > r->url.off && buf[a_off - 1] == '[') a_off--, a_end++;
    if (u.field_set & (1 << UF_PORT)) {
        struct http_span port = field(r, &u, UF_PORT);
        a_end = (uint16_t)(port.off + port.len);
    }
    r->authority = (struct http_span){ a_off, (uint16_t)(a_end - a_off) };
    /* Origin form: path and query, never the fragment. */
    int has_path = (u.field_set & (1 << UF_PATH)) != 0, has_query = (u.field_set & (1 << UF_QUERY)) != 0;
    if (has_path || has_query) {
        struct http_span q = field(r, &u, UF_QUERY);
        uint16_t p_off = has_path ? field(r, &u, UF_PATH).off : (uint16_t)(q.off - 1);
        uint16_t p_end = has_query ? (uint16_t)(q.off + q.len) : (uint16_t)(p_off + u.field_data[UF_PATH].len);
        r->path = (struct http_span){ p_off, (uint16_t)(p_end - p_off) };
    }
    return 0;
}

/* RFC 7230 3.2.6: http-parser (not built strict) lets more through, and
 * a name an origin reads differently is how requests are smuggled. */
static int is_token(const uint8_t *p, size_t n)
{
    static const char punct[] = "!#$%&'*+-.^_`|~";
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= '0' && p[i] <= '9') ||
              (p[i] && strchr(punct, p[i]))))
            return 0;
    return 1;
}

/* No control characters but tab in a value. */
static int is_value(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7F) return 0;
    return 1;
}

/* The head is complete: is it a request a proxy serves? */
static enum http_proxy_status finish(struct http_proxy_req *r, const uint8_t *buf)
{
    r->is_connect = r->method == HTTP_CONNECT;
    if (r->http_major != 1 || r->http_minor > 1) {
        fail(r, 505);
        return HTTP_PROXY_ERROR;
    }
    for (unsigned i = 0; i < r->nheaders; i++) {
        if (!is_token(buf + r->h[i].name.off, r->h[i].name.len) ||
            !is_value(buf + r->h[i].value.off, r->h[i].value.len)) {
            fail(r, 400);
            return HTTP_PROXY_ERROR;
        }
    }
    if (!r->is_connect && !proxied_method(r->method)) {
        fail(r, 405);
        return HTTP_PROXY_ERROR;
    }
    if (parse_target(r, buf) < 0) {
        fail(r, 400);
        return HTTP_PROXY_ERROR;
    }
    return HTTP_PROXY_DONE;
}

enum http_proxy_status http_proxy_feed(struct http_proxy_req *r, const uint8_t *buf, size_t len)
{
    if (r->status) return HTTP_PROXY_ERROR;
    if (r->done) return HTTP_PROXY_DONE;
    size_t want = len < HTTP_PROXY_MAX_HEAD ? len : HTTP_PROXY_MAX_HEAD;
    if (want > r->fed) {
        r->base = buf;
        size_t n = http_parser_execute(&r->p, &settings, (const char *)buf + r->fed, want - r->fed);
        if (r->status) return HTTP_PROXY_ERROR;
        if (r->done) {
            /* Paused on the head's last byte, which http-parser does not count. */
            r->head_len = r->fed + n + 1;
            r->fed = (uint32_t)r->head_len;
            if (r->head_len > want || buf[r->head_len - 1] != '\n') {
                fail(r, 400);
                return HTTP_PROXY_ERROR;
            }
            return finish(r, buf);
        }
        if (HTTP_PARSER_ERRNO(&r->p) != HPE_OK) {
            fail(r, 400);
            return HTTP_PROXY_ERROR;
        }
        r->fed = (uint32_t)want;
    }
    if (r->fed >= HTTP_PROXY_MAX_HEAD) {
        fail(r, 431);
        return HTTP_PROXY_ERROR;
    }
    return HTTP_PROXY_NEED_MORE;
}

int http_proxy_error_status(const struct http_proxy_req *r)
{
    return r->status;
}

int http_proxy_secret(const struct http_proxy_req *r, size_t *off, size_t *n)
{
    if (r->sec_lo == r->sec_hi) return 0;
    *off = r->sec_lo;
    *n = (size_t)(r->sec_hi - r->sec_lo);
    return 1;
}

int http_proxy_find(const struct http_proxy_req *r, const uint8_t *buf, const char *name)
{
    for (unsigned i = 0; i < r->nheaders; i++)
        if (name_is(buf, r->h[i].name, name)) return (int)i;
    return -1;
}

/* ---- Basic credentials ---- */

int http_proxy_basic(const uint8_t *value, size_t vlen, char user[256], char pass[256])
{
    /* 4/3 of "user:pass" at their longest, rounded up to whole quads. */
    enum { TOKEN_MAX = 4 * ((255 + 1 + 255 + 2) / 3) };
    unsigned char dec[TOKEN_MAX / 4 * 3 + 1];
    size_t i = 0;
    user[0] = pass[0] = '\0';
    while (i < vlen && (value[i] == ' ' || value[i] == '\t')) i++;
    if (vlen - i < 6 || strncasecmp((const char *)value + i, "Basic", 5) != 0 ||
        (value[i + 5] != ' ' && value[i + 5] != '\t'))
        return -1;
    i += 5;
    while (i < vlen && (value[i] == ' ' || value[i] == '\t')) i++;
    size_t tlen = vlen - i;
    if (tlen == 0 || tlen % 4 || tlen > TOKEN_MAX) return -1;
    int n = EVP_DecodeBlock(dec, value + i, (int)tlen);   /* counts the padding as zeros */
    if (n < 0) return -1;
    size_t pad = (value[i + tlen - 1] == '=') + (value[i + tlen - 2] == '=');
    size_t dlen = (size_t)n - pad;
    int rc = -1;
    const unsigned char *colon = memchr(dec, ':', dlen);
    if (colon && !memchr(dec, '\0', dlen)) {
        size_t ulen = (size_t)(colon - dec), plen = dlen - ulen - 1;
        if (ulen <= 255 && plen <= 255) {
            memcpy(user, dec, ulen);
            user[ulen] = '\0';
            memcpy(pass, colon + 1, plen);
            pass[plen] = '\0';
            rc = 0;
        }
    }
    OPENSSL_cleanse(dec, sizeof(dec));
    return rc;
}

/* ---- builders ---- */

struct out {
    char *p;
    size_t len, cap;
    int over;
};

static void put(struct out *o, const void *s, size_t n)
{
    if (o->over || o->len + n > o->cap) {
        o->over = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* Whether `name` is listed in a Connection header's comma-separated value. */
static int in_connection(const struct http_proxy_req *r, const uint8_t *buf, struct http_span name)
{
    for (unsigned i = 0; i < r->nheaders; i++) {
        if (!name_is(buf, r->h[i].name, "Connection")) continue;
        const uint8_t *v = buf + r->h[i].value.off, *end = v + r->h[i].value.len;
        while (v < end) {
            while (v < end && (*v == ' ' || *v == '\t' || *v == ',')) v++;
            const uint8_t *t = v;
            while (v < end && *v != ',' && *v != ' ' && *v != '\t') v++;
            if ((size_t)(v - t) == name.len && strncasecmp((const char *)t, (const char *)buf + name.off, name.len) == 0)
                return 1;
        }
    }
    return 0;
}

static int hop_by_hop(const struct http_proxy_req *r, const uint8_t *buf, struct http_span name)
{
    static const char *const drop[] = { "Connection", "Keep-Alive", "TE", "Trailer", "Upgrade", "Host" };
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (name_is(buf, name, drop[i])) return 1;
    if (name.len >= 6 && strncasecmp((const char *)buf + name.off, "Proxy-", 6) == 0) return 1;
    return in_connection(r, buf, name);
}

size_t http_proxy_build_forward(const struct http_proxy_req *r, const uint8_t *buf, char *out, size_t cap)
{
    struct out o = { out, 0, cap, 0 };
    char ver[32];
    puts_(&o, http_method_str((enum http_method)r->method));
    puts_(&o, " ");
    if (r->path.len == 0 || buf[r->path.off] != '/') puts_(&o, "/");
    put(&o, buf + r->path.off, r->path.len);
    snprintf(ver, sizeof(ver), " HTTP/%u.%u\r\nHost: ", r->http_major, r->http_minor);
    puts_(&o, ver);
    put(&o, buf + r->authority.off, r->authority.len);
    puts_(&o, "\r\n");
    for (unsigned i = 0; i < r->nheaders; i++) {
        if (hop_by_hop(r, buf, r->h[i].name)) continue;
        put(&o, buf + r->h[i].name.off, r->h[i].name.len);
        puts_(&o, ": ");
        put(&o, buf + r->h[i].value.off, r->h[i].value.len);
        puts_(&o, "\r\n");
    }
    puts_(&o, "Connection: close\r\n\r\n");
    return o.over ? 0 : o.len;
}

static const char *reason(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 405: return "Method Not Allowed";
    case 407: return "Proxy Authentication Required";
    case 431: return "Request Header Fields Too Large";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:  return "Internal Server Error";
    }
}

size_t http_proxy_build_error(char *out, size_t cap, int status)
{
    char body[64];
    if (status < 100 || status > 599) status = 500;
    int blen = snprintf(body, sizeof(body), "%d %s\n", status, reason(status));
    const char *extra = status == 407 ? "Proxy-Authenticate: Basic realm=\"ferry\"\r\n"
                      : status == 405 ? "Allow: CONNECT, GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE\r\n"
                      : "";
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, reason(status), extra, blen, body);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

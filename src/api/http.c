/* http.c - see http.h. */
#include "api/http.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int fail(struct api_req *r, int status)
{
    r->error_status = status;
    return -1;     /* any non-zero return makes http-parser stop with an error */
}

static int count_head(struct api_req *r, size_t n)
{
    r->head_bytes += n;
    return r->head_bytes > API_MAX_HEAD ? fail(r, 431) : 0;
}

static int append(char **buf, size_t *len, size_t *cap, const char *at, size_t n)
{
    if (!*buf || *len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n + 1) c *= 2;
        char *nb = realloc(*buf, c);
        if (!nb) return -1;
        *buf = nb;
        *cap = c;
    }
    memcpy(*buf + *len, at, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct api_req *r = p->data;
    if (count_head(r, n) < 0) return -1;
    return append(&r->url, &r->url_len, &r->url_cap, at, n) < 0 ? fail(r, 500) : 0;
}

/* The headers api_req_refusal() reads. */
enum hkind { H_OTHER, H_USER_AGENT, H_ORIGIN, H_FETCH_SITE, H_HOST };

static int hkind_of(const char *f, size_t n)
{
    static const struct { const char *name; enum hkind kind; } known[] = {
        { "User-Agent", H_USER_AGENT }, { "Origin", H_ORIGIN },
        { "Sec-Fetch-Site", H_FETCH_SITE }, { "Host", H_HOST },
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (n == strlen(known[i].name) && strncasecmp(f, known[i].name, n) == 0) return known[i].kind;
    return H_OTHER;
}

/* A value is complete (http-parser includes trailing blanks): keep what
 * the refusal checks need. */
static void end_value(struct api_req *r)
{
    size_t n = r->hval_len;
    while (n && (r->hval[n - 1] == ' ' || r->hval[n - 1] == '\t')) n--;
    switch (r->hkind) {
    case H_USER_AGENT:
        /* Browsers say "Mozilla/" (toxiproxy refuses them the same way). */
        if (n >= 8 && memcmp(r->hval, "Mozilla/", 8) == 0) r->browser = 1;
        break;
    case H_ORIGIN:
        r->has_origin = 1;
        break;
    case H_FETCH_SITE:
        snprintf(r->fetch_site, sizeof(r->fetch_site), "%.*s", (int)n, r->hval);
        break;
    case H_HOST:
        /* Two Hosts: which one would a check trust? Neither. */
        if (r->host_seen++ || r->hval_long) r->host_bad = 1;
        else snprintf(r->host, sizeof(r->host), "%.*s", (int)n, r->hval);
        break;
    default:
        break;
    }
    r->in_value = 0;
    r->hfield_len = 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct api_req *r = p->data;
    if (count_head(r, n) < 0) return -1;
    if (r->in_value) end_value(r);            /* a new field starts */
    if (r->hfield_len + n < sizeof(r->hfield)) {
        memcpy(r->hfield + r->hfield_len, at, n);
        r->hfield_len += n;
    } else {
        r->hfield_len = sizeof(r->hfield);    /* too long to be one we read */
    }
    return 0;
}

/* The value may come in pieces (split reads): its first bytes are
 * collected, for the headers we read only. */
static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct api_req *r = p->data;
    if (count_head(r, n) < 0) return -1;
    if (!r->in_value) {
        r->in_value = 1;
        r->hkind = hkind_of(r->hfield, r->hfield_len);
        r->hval_len = 0;
        r->hval_long = 0;
    }
    if (r->hkind == H_OTHER) return 0;
    size_t room = sizeof(r->hval) - 1 - r->hval_len;
    if (n > room) {
        r->hval_long = 1;
        n = room;
    }
    memcpy(r->hval + r->hval_len, at, n);
    r->hval_len += n;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct api_req *r = p->data;
    if (r->in_value) end_value(r);
    snprintf(r->method, sizeof(r->method), "%s", http_method_str((enum http_method)p->method));
    if (!(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX && p->content_length > API_MAX_BODY)
        return fail(r, 413);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct api_req *r = p->data;
    if (r->body_len + n > API_MAX_BODY) return fail(r, 413);
    return append(&r->body, &r->body_len, &r->body_cap, at, n) < 0 ? fail(r, 500) : 0;
}

static int on_message_complete(http_parser *p)
{
    struct api_req *r = p->data;
    r->keep_alive = http_should_keep_alive(p);
    r->done = 1;
    /* Stop here: bytes after this request are the next one's. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void api_req_init(struct api_req *r)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->p, HTTP_REQUEST);
    r->p.data = r;
}

void api_req_free(struct api_req *r)
{
    free(r->url);
    free(r->body);
    r->url = r->body = NULL;
}

void api_req_reset(struct api_req *r)
{
    api_req_free(r);
    api_req_init(r);
}

enum api_req_state api_req_feed(struct api_req *r, const char *data, size_t len, size_t *used)
{
    *used = 0;
    if (r->done) return API_REQ_DONE;
    if (r->error_status) return API_REQ_ERROR;
    size_t n = http_parser_execute(&r->p, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->p);
    *used = n;
    if (r->done) {
        /* http-parser counts the byte it paused on as parsed. */
        return API_REQ_DONE;
    }
    if (e != HPE_OK) {
        if (!r->error_status) r->error_status = 400;
        return API_REQ_ERROR;
    }
    if (len == 0) {                  /* EOF before the request was complete */
        r->error_status = 400;
        return API_REQ_ERROR;
    }
    return API_REQ_MORE;
}

/* ---- refusing what a web page may have sent ---- */

/* "NAME", "NAME:PORT", "[V6]" or "[V6]:PORT" -> NAME (brackets removed)
 * in name[]. 0, or -1 if it is none of these. */
static int host_name(const char *host, char *name, size_t namelen)
{
    const char *end, *rest;
    if (host[0] == '[') {
        if (!(end = strchr(host, ']'))) return -1;
        host++;
        rest = end + 1;
    } else {
        end = strchr(host, ':');
        if (!end) end = host + strlen(host);
        else if (strchr(end + 1, ':')) return -1;   /* IPv6 needs brackets */
        rest = end;
    }
    if (rest[0] == ':') rest += 1 + strspn(rest + 1, "0123456789");
    if (rest[0] || end == host || (size_t)(end - host) >= namelen) return -1;
    snprintf(name, namelen, "%.*s", (int)(end - host), host);
    return 0;
}

/* Loopback or the IP the request came to. A name other than localhost is
 * refused even if it resolves here: that is what DNS rebinding looks like. */
static int host_allowed(const char *host, const struct net_addr *local)
{
    char name[API_HOST_MAX];
    struct net_addr a;
    size_t la, lb;
    if (host_name(host, name, sizeof(name)) < 0) return 0;
    if (strcasecmp(name, "localhost") == 0) return 1;
    if (net_addr_from_literal(name, 0, &a) < 0) return 0;
    if (net_addr_is_loopback(&a)) return 1;
    if (!local || !local->len) return 0;
    const uint8_t *ia = net_addr_ip(&a, &la), *ib = net_addr_ip(local, &lb);
    return la == lb && memcmp(ia, ib, la) == 0;
}

const char *api_req_refusal(const struct api_req *r, const struct net_addr *local)
{
    if (r->browser) return "User agent not allowed";
    if (r->has_origin) return "Origin not allowed";
    if (strcasecmp(r->fetch_site, "cross-site") == 0 || strcasecmp(r->fetch_site, "same-site") == 0)
        return "Cross-site request not allowed";
    if (r->host_bad || (r->host[0] && !host_allowed(r->host, local))) return "Host not allowed";
    return NULL;
}

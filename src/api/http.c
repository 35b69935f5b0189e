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

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct api_req *r = p->data;
    if (count_head(r, n) < 0) return -1;
    if (r->ua_value) {                        /* a new field starts */
        r->hfield_len = 0;
        r->ua_value = 0;
    }
    if (r->hfield_len + n < sizeof(r->hfield)) {
        memcpy(r->hfield + r->hfield_len, at, n);
        r->hfield_len += n;
    } else {
        r->hfield_len = sizeof(r->hfield);    /* too long to be User-Agent */
    }
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct api_req *r = p->data;
    if (count_head(r, n) < 0) return -1;
    if (!r->ua_value) {                       /* first piece of this value */
        r->ua_value = 1;
        r->in_ua = r->hfield_len == 10 && strncasecmp(r->hfield, "User-Agent", 10) == 0;
        r->ua_head_len = 0;
    }
    if (!r->in_ua || r->ua_head_len == sizeof(r->ua_head)) return 0;
    /* The value may come in pieces (split reads): collect its head first.
     * Browsers say "Mozilla/": the API refuses them (cross-site requests
     * to a loopback API), as toxiproxy does. */
    size_t take = sizeof(r->ua_head) - r->ua_head_len;
    if (take > n) take = n;
    memcpy(r->ua_head + r->ua_head_len, at, take);
    r->ua_head_len += take;
    if (r->ua_head_len == sizeof(r->ua_head) && memcmp(r->ua_head, "Mozilla/", 8) == 0) r->browser = 1;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct api_req *r = p->data;
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

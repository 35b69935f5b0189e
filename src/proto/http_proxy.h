/* http_proxy.h - an HTTP/1.x proxy request head, sans-I/O, on nodejs'
 * http-parser.
 *
 * The caller keeps the head's bytes where they arrived and hands the
 * parser the whole of them on every call: (buf, len) starts at the
 * request's first byte each time and len only grows while the result is
 * NEED_MORE. Only the bytes not seen before are parsed, so a head that
 * comes a byte at a time costs no more than one that comes at once. What
 * the parser reports are spans (offset, length) into that buffer, never
 * pointers, so the caller may move the buffer between calls.
 *
 * Bounded: at most HTTP_PROXY_MAX_HEAD bytes of head and
 * HTTP_PROXY_MAX_HEADERS header fields; a head that reaches either without
 * its blank line is refused with 431. No allocation, no I/O, no logging.
 *
 * Two request forms are accepted (RFC 7230 5.3): authority form for
 * CONNECT (`CONNECT host:port HTTP/1.1`) and absolute form with the http
 * scheme for the other methods (`GET http://host[:port]/path HTTP/1.1`).
 */
#ifndef FERRY_PROTO_HTTP_PROXY_H
#define FERRY_PROTO_HTTP_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#define HTTP_PROXY_MAX_HEAD    16384
#define HTTP_PROXY_MAX_HEADERS 64
/* Longest error reply http_proxy_build_error() writes. */
#define HTTP_PROXY_ERROR_MAX   384
/* What http_proxy_build_forward() may add to a head: the Host line (up
 * to a 255-byte name, brackets and port), a blank after each header's
 * colon, a "/" for an empty path, and Connection: close. */
#define HTTP_PROXY_FORWARD_EXTRA 512

enum http_proxy_status { HTTP_PROXY_NEED_MORE, HTTP_PROXY_DONE, HTTP_PROXY_ERROR };

/* [off, off + len) of the caller's buffer. */
struct http_span {
    uint16_t off, len;
};

struct http_proxy_header {
    struct http_span name, value;      /* value without its trailing blanks */
};

struct http_proxy_req {
    /* Private. */
    http_parser p;
    const uint8_t *base;               /* the buffer of the current call */
    uint32_t fed;                      /* bytes of the head parsed so far */
    uint8_t in;                        /* 0 nothing, 1 in a name, 2 in a value */
    uint8_t done;
    uint8_t in_secret;                 /* the value being read is Proxy-Authorization's */
    uint16_t status;                   /* on ERROR: the HTTP status to answer */
    uint16_t sec_lo, sec_hi;           /* hull of Proxy-Authorization values */

    /* Out; complete on DONE, partial while NEED_MORE (headers so far). */
    uint8_t is_connect;                /* CONNECT (authority form) */
    uint8_t http_major, http_minor;
    uint8_t method;                    /* enum http_method */
    struct http_span url;              /* the request target as sent */
    struct http_span path;             /* absolute form: path and query (len 0: "/") */
    struct http_span authority;        /* absolute form: host[:port] as sent */
    char host[256];                    /* NUL-terminated, IPv6 without brackets */
    uint16_t port;
    unsigned nheaders;
    struct http_proxy_header h[HTTP_PROXY_MAX_HEADERS];
    size_t head_len;                   /* DONE: bytes up to and including the blank line */
};

void http_proxy_init(struct http_proxy_req *r);

/* Parses what buf[0, len) holds beyond the bytes seen by earlier calls.
 * NEED_MORE: a proper prefix of a head (len 0 included). DONE: the head is
 * complete, r->head_len bytes long; whatever follows it (a body, or a
 * tunnel's first bytes) is the caller's. ERROR: r->status is the answer
 * (400 malformed, 405 a method not proxied, 431 too large). DONE and
 * ERROR are final: later calls return them again without parsing. */
enum http_proxy_status http_proxy_feed(struct http_proxy_req *r, const uint8_t *buf, size_t len);
/* The HTTP status an ERROR answers; 0 otherwise. */
int http_proxy_error_status(const struct http_proxy_req *r);

/* Where the value of a Proxy-Authorization header lies, complete or still
 * arriving, so that recorders can hide it: 1 with the hull of every such
 * value seen so far in [*off, *off + *n), else 0. Meaningful after any
 * feed, whatever its result. */
int http_proxy_secret(const struct http_proxy_req *r, size_t *off, size_t *n);

/* The index of the first header named `name` (case-insensitive), or -1. */
int http_proxy_find(const struct http_proxy_req *r, const uint8_t *buf, const char *name);

/* A Basic credential "Basic base64(user:pass)" in value[0, vlen) -> user
 * and pass, NUL-terminated. 0, or -1 if it is not Basic, not base64, has
 * no ':', holds a NUL, or a part is over 255 bytes. user and pass must
 * hold 256 bytes each; on -1 they hold nothing secret. */
int http_proxy_basic(const uint8_t *value, size_t vlen, char user[256], char pass[256]);

/* The request as it goes to the origin server (DONE, not CONNECT):
 * request line in origin form, `Host:` from the request target (RFC 7230
 * 5.4: the client's Host lines are dropped), the client's headers but the
 * hop-by-hop ones (Connection and the names it lists, Keep-Alive,
 * Proxy-*, TE, Trailer, Upgrade; Transfer-Encoding stays: the body is
 * relayed as framed), then `Connection: close`. Returns its length, or 0
 * if it does not fit in cap (head_len + HTTP_PROXY_FORWARD_EXTRA always
 * does). */
size_t http_proxy_build_forward(const struct http_proxy_req *r, const uint8_t *buf, char *out, size_t cap);

/* A complete error response: status line, a Proxy-Authenticate challenge
 * (realm "ferry") for 407, a one-line text body with its Content-Length,
 * Connection: close. Returns its length (at most HTTP_PROXY_ERROR_MAX), or
 * 0 if cap is too small. */
size_t http_proxy_build_error(char *out, size_t cap, int status);

/* Where an absolute-form request's body ends, so that nothing the client
 * sends after it (a next request on a kept-alive connection, meant for
 * another host, with its own Proxy-Authorization) reaches this origin.
 * Content-Length, chunked (trailers included) or no body at all, as
 * http-parser frames requests. */
struct http_proxy_body {
    http_parser p;            /* the head's parser, carried on */
    uint8_t started, complete;
};

/* Where a request that came out DONE ends in its client's stream when its
 * head says (no body, or Content-Length): 1 and *end; 0 when only the
 * body's own framing will tell (chunked). */
int http_proxy_known_end(const struct http_proxy_req *r, uint64_t *end);

/* From a request that came out DONE (absolute form). */
void http_proxy_body_init(struct http_proxy_body *b, const struct http_proxy_req *r);

/* The bytes after the head, in order, over as many calls as they take.
 * NEED_MORE: all len bytes are the body, and it goes on. DONE: the request
 * ends after *used bytes (the rest belongs to a next request); final. ERROR:
 * the body's framing is malformed (a bad chunk size); final. */
enum http_proxy_status http_proxy_body_feed(struct http_proxy_body *b, const uint8_t *buf, size_t len,
                                            size_t *used);

/* The reply to a CONNECT once the tunnel is up. */
#define HTTP_PROXY_ESTABLISHED "HTTP/1.1 200 Connection established\r\n\r\n"

#endif /* FERRY_PROTO_HTTP_PROXY_H */

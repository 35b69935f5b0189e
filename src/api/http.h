/* http.h - one HTTP/1.x request at a time, assembled from bytes (sans-I/O).
 *
 * Parsing is nodejs' http-parser (libhttp-parser); this wrapper adds what
 * the API needs on top: bounds (16 KiB of request line and headers, 1 MiB
 * of body, Content-Length or chunked), the method, path and body of the
 * request collected into owned memory, keep-alive, and a stop after each
 * complete request so pipelined bytes wait for the next call. No sockets,
 * no logging.
 */
#ifndef FERRY_API_HTTP_H
#define FERRY_API_HTTP_H

#include <http_parser.h>
#include <stddef.h>

#include "net/addr.h"

#define API_MAX_HEAD (16u * 1024u)
#define API_MAX_BODY (1024u * 1024u)
#define API_HOST_MAX 300       /* longest Host value kept, NUL included */

enum api_req_state { API_REQ_MORE, API_REQ_DONE, API_REQ_ERROR };

struct api_req {
    http_parser p;
    char method[16];
    char *url;                 /* NUL-terminated, the request target as sent */
    size_t url_len, url_cap;
    char *body;                /* NUL-terminated (the JSON parser wants that), may be NULL */
    size_t body_len, body_cap;
    size_t head_bytes;         /* request line + headers so far */
    int keep_alive;
    int error_status;          /* API_REQ_ERROR: 400, 413 or 431 */
    /* What api_req_refusal() reads. */
    int browser;               /* User-Agent starts with "Mozilla/" */
    int has_origin;
    char fetch_site[16];       /* Sec-Fetch-Site ("" if absent), truncated */
    char host[API_HOST_MAX];   /* Host ("" if absent) */
    int host_bad;              /* Host repeated or longer than host[] */
    int host_seen;
    /* header being read */
    int in_value;              /* inside a value (the next field starts anew) */
    int hkind;                 /* which of the headers above it is (http.c) */
    char hfield[16];
    size_t hfield_len;
    char hval[API_HOST_MAX];   /* the value's first bytes, over however many pieces */
    size_t hval_len;
    int hval_long;             /* more bytes than hval holds */
    int done;
};

void api_req_init(struct api_req *r);
/* Frees what the request holds and gets ready for the next one. */
void api_req_reset(struct api_req *r);
void api_req_free(struct api_req *r);

/* Feeds bytes. *used says how many were taken: after DONE the rest belongs
 * to the next request (call api_req_reset() first). len 0 means EOF. */
enum api_req_state api_req_feed(struct api_req *r, const char *data, size_t len, size_t *used);

/* Why a complete request must be refused as one a web page may have made
 * (the API has no authentication, so a page must not drive it), or NULL:
 * a browser's User-Agent (as toxiproxy), any Origin, Sec-Fetch-Site
 * cross-site or same-site, or a Host that is neither loopback (127.0.0.0/8,
 * [::1], localhost; any port) nor the IP of `local`, the address the
 * request came to (DNS rebinding: a page's own name resolving to us). No
 * Host at all is allowed: browsers always send one. local may be NULL. */
const char *api_req_refusal(const struct api_req *r, const struct net_addr *local);

#endif

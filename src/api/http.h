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

#define API_MAX_HEAD (16u * 1024u)
#define API_MAX_BODY (1024u * 1024u)

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
    int browser;               /* User-Agent starts with "Mozilla/" */
    int error_status;          /* API_REQ_ERROR: 400, 413 or 431 */
    /* header being read */
    int ua_value;              /* inside a value (the next field starts anew) */
    int in_ua;                 /* ... of User-Agent */
    char ua_head[8];           /* its first bytes, over however many pieces */
    size_t ua_head_len;
    char hfield[16];
    size_t hfield_len;
    int done;
};

void api_req_init(struct api_req *r);
/* Frees what the request holds and gets ready for the next one. */
void api_req_reset(struct api_req *r);
void api_req_free(struct api_req *r);

/* Feeds bytes. *used says how many were taken: after DONE the rest belongs
 * to the next request (call api_req_reset() first). len 0 means EOF. */
enum api_req_state api_req_feed(struct api_req *r, const char *data, size_t len, size_t *used);

#endif

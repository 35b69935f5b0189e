/* http_one.c - see http_one.h. */
#include "stage/http_one.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct http_one {
    size_t head_left;              /* forwarded head bytes still to pass as they are */
    struct http_proxy_body body;
    uint64_t next_at_us;           /* when a next request was seen (0: not yet) */
};

void *http_one_new(const struct http_proxy_req *r, size_t head_len)
{
    struct http_one *h = malloc(sizeof(*h));
    if (!h) return NULL;
    h->head_left = head_len;
    h->next_at_us = 0;
    http_proxy_body_init(&h->body, r);
    return h;
}

/* Past the request: empty lines are dropped (RFC 9112 2.2 asks a server to
 * ignore at least one before a request line, and some clients send a CRLF
 * after a body). Anything else is a next request: it is held, never
 * passed on, so that the origin's answer to the first still reaches the
 * client (a pipelining client sent it early); the origin closes after that
 * answer (Connection: close), and so does the session. One that keeps the
 * connection open gets HTTP_ONE_GRACE_US, then the session ends. */
static enum stage_status after_request(struct http_one *h, struct stage_io *io)
{
    size_t skip = 0;
    while (!h->next_at_us && skip < io->inlen && (io->in[skip] == '\r' || io->in[skip] == '\n')) skip++;
    io->used = skip;
    if (skip < io->inlen && !h->next_at_us) h->next_at_us = io->now_us ? io->now_us : 1;
    if (h->next_at_us && io->now_us >= h->next_at_us + HTTP_ONE_GRACE_US) return STAGE_CLOSE;
    /* The client left: the origin gets the FIN (what it held goes nowhere). */
    if (io->in_eof && (skip == io->inlen || h->next_at_us)) io->out_eof = 1;
    return STAGE_OK;
}

static enum stage_status one_process(void *state, struct stage_io *io)
{
    struct http_one *h = state;
    size_t n = io->inlen < io->outcap ? io->inlen : io->outcap, pass;
    io->used = io->made = 0;
    if (h->head_left) {
        pass = n < h->head_left ? n : h->head_left;
        h->head_left -= pass;
    } else {
        switch (http_proxy_body_feed(&h->body, io->in, n, &pass)) {
        case HTTP_PROXY_ERROR:
            return STAGE_ERROR;
        case HTTP_PROXY_DONE:
            if (pass == 0) return after_request(h, io);
            break;
        case HTTP_PROXY_NEED_MORE:
            break;
        }
    }
    if (pass) memcpy(io->out, io->in, pass);
    io->used = io->made = pass;
    /* A client's EOF, whether or not the body was whole, goes on. */
    if (io->in_eof && io->used == io->inlen) io->out_eof = 1;
    return STAGE_OK;
}

static uint64_t one_next_wakeup(const void *state)
{
    const struct http_one *h = state;
    return h->next_at_us ? h->next_at_us + HTTP_ONE_GRACE_US : UINT64_MAX;
}

const struct stage_ops http_one_stage_ops = {
    .name = "http_one",
    .role = STAGE_DECODER,
    .process = one_process,
    .next_wakeup = one_next_wakeup,
    .free = free,
};

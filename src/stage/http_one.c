/* http_one.c - see http_one.h. */
#include "stage/http_one.h"

#include <stdlib.h>
#include <string.h>

struct http_one {
    size_t head_left;              /* forwarded head bytes still to pass as they are */
    struct http_proxy_body body;
};

void *http_one_new(const struct http_proxy_req *r, size_t head_len)
{
    struct http_one *h = malloc(sizeof(*h));
    if (!h) return NULL;
    h->head_left = head_len;
    http_proxy_body_init(&h->body, r);
    return h;
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
            /* Past the request: a next one. Its bytes go nowhere; what
             * came before them is already out (the pump calls with the
             * output empty). */
            if (pass == 0 && io->inlen > 0) return STAGE_CLOSE;
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

const struct stage_ops http_one_stage_ops = {
    .name = "http_one",
    .role = STAGE_DECODER,
    .process = one_process,
    .free = free,
};

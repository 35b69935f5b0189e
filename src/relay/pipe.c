/* pipe.c - see pipe.h.
 *
 * Return conventions (docs/ARCHITECTURE.md): the flush/fill helpers return
 * >0 bytes, 0 for "nothing now" / EOF as documented, -1 with errno.
 */
#include "relay/pipe.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stage/tap.h"

/* Bytes asked of one splice() into a kernel pipe: the default pipe holds
 * 64 KiB (16 pages); asking more only returns short. */
#define SPLICE_CHUNK (64u * 1024u)

/* A direction starts by copying; once one read brings this much, it is a
 * bulk transfer and switches to splice. For small messages splice costs
 * more syscalls than it saves copies (two splices vs recv + send). */
#define SPLICE_THRESHOLD (16u * 1024u)

/* 1 = the half is now empty, 0 = the sink would block, -1 = error. */
static int half_flush(struct half *h, struct pump_ctx *c)
{
    while (h->buf && !buf_empty(h->buf)) {
        ssize_t n = send(c->dst_fd, buf_rptr(h->buf), buf_len(h->buf), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN ? 0 : -1;
        }
        if (c->tap) tap_bytes(c->tap, !c->src_leg, 0, buf_rptr(h->buf), (size_t)n);
        buf_consumed(h->buf, (uint32_t)n);
        c->progressed = 1;
    }
    buf_put(c->bufs, h->buf);
    h->buf = NULL;
    while (h->kp && h->kp->len) {
        /* The pipe holds bytes, so EAGAIN here can only mean the socket's
         * send buffer is full. */
        ssize_t n = splice(h->kp->rfd, NULL, c->dst_fd, NULL, h->kp->len,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN ? 0 : -1;
        }
        h->kp->len -= (size_t)n;
        c->progressed = 1;
    }
    kpipe_put(c->pipes, h->kp);
    h->kp = NULL;
    return 1;
}

/* Reads once from the source into *slot, a buffer lent by the pool for the
 * call: if nothing was read and the buffer is empty it goes straight back,
 * so a direction never sits on an empty buffer (EOF, EAGAIN).
 * >0 bytes, 0 EOF, -1 errno (EAGAIN: nothing to read now; EPROTO: a full
 * buffer, which only a stuck codec can cause). */
static ssize_t recv_into(struct buf **slot, struct pump_ctx *c)
{
    if (!*slot && !(*slot = buf_get(c->bufs))) {
        errno = ENOMEM;
        return -1;
    }
    c->last_ask = buf_room(*slot);
    if (c->last_ask == 0) {
        errno = EPROTO;
        return -1;
    }
    ssize_t n = recv(c->src_fd, buf_wptr(*slot), c->last_ask, 0);
    if (n > 0) {
        if (c->tap) tap_bytes(c->tap, c->src_leg, 1, buf_wptr(*slot), (size_t)n);
        buf_produced(*slot, (uint32_t)n);
    } else if (buf_empty(*slot)) {
        int e = errno;
        buf_put(c->bufs, *slot);
        *slot = NULL;
        errno = e;
    }
    return n;
}

/* Reads once from the source into the (empty) half.
 * >0 bytes, 0 EOF, -1 errno (EAGAIN: nothing to read now). */
static ssize_t half_fill(struct half *h, struct pump_ctx *c)
{
    ssize_t n;
    if (c->allow_splice && h->bulk && !h->buf) {
        if (!h->kp) h->kp = kpipe_get(c->pipes);   /* NULL: fall back to copying */
        if (h->kp) {
            /* splice() into a pipe returns EAGAIN both when the socket is
             * empty and when the pipe is full; we only fill an empty pipe,
             * so here it means the socket is empty. */
            c->last_ask = SPLICE_CHUNK;
            n = splice(c->src_fd, NULL, h->kp->wfd, NULL, SPLICE_CHUNK,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                h->kp->len += (size_t)n;
            } else {
                int e = errno;
                kpipe_put(c->pipes, h->kp);    /* hold no empty pipe */
                h->kp = NULL;
                errno = e;
            }
            return n;
        }
    }
    n = recv_into(&h->buf, c);
    if (n >= (ssize_t)SPLICE_THRESHOLD) h->bulk = 1;
    return n;
}

/* Runs the codec over raw bytes into the (empty) ready buffer.
 * 1 = made ready bytes, 0 = needs more input, -1 = corrupt, -2 = no memory. */
static int half_transform(struct half *h, struct pump_ctx *c)
{
    if (!h->raw || buf_empty(h->raw)) return 0;
    if (h->hold) {
        if (!h->eof && buf_len(h->raw) <= h->hold) return 0;   /* keep waiting */
        h->hold = 0;                                          /* one shot */
    }
    if (!h->buf && !(h->buf = buf_get(c->bufs))) return -2;
    size_t used = 0, made = 0;
    if (h->codec->process(h->codec_state, buf_rptr(h->raw), buf_len(h->raw), &used,
                          buf_wptr(h->buf), buf_room(h->buf), &made) < 0)
        return -1;
    buf_consumed(h->raw, (uint32_t)used);
    buf_produced(h->buf, (uint32_t)made);
    if (h->codec->counts_output) {
        h->bytes += made;
        if (c->tap) tap_plain(c->tap, c->up, buf_wptr(h->buf) - made, made);
    }
    if (buf_empty(h->raw)) {
        buf_put(c->bufs, h->raw);
        h->raw = NULL;
    }
    if (made) return 1;
    buf_put(c->bufs, h->buf);
    h->buf = NULL;
    return 0;
}

enum pump_result pipe_pump(struct half *h, struct pump_ctx *c)
{
    for (;;) {
        if (c->dst_fd >= 0) {
            int r = half_flush(h, c);
            if (r < 0) {
                c->err = errno;
                return PUMP_DST_ERROR;
            }
            if (r == 0) return PUMP_OK;      /* sink full: stop reading */
        } else if (half_pending(h)) {
            return PUMP_OK;                  /* early data waits for the sink */
        }
        if (h->codec) {
            int t = half_transform(h, c);
            if (t == -1) return PUMP_CODEC_ERROR;
            if (t == -2) return PUMP_NOMEM;
            if (t == 1) continue;                /* flush what it made */
        }
        if (h->eof) {
            if (c->dst_fd >= 0 && !h->shut) {
                /* Failure only means the sink is already gone; the other
                 * direction will see that on its own. */
                (void)shutdown(c->dst_fd, SHUT_WR);
                if (c->tap) tap_fin(c->tap, !c->src_leg, 0);
                h->shut = 1;
                c->progressed = 1;
            }
            return PUMP_OK;
        }
        if (c->src_fd < 0 || c->budget == 0 || c->src_drained) return PUMP_OK;
        /* With a codec, source bytes are its input (raw); else they are ready. */
        ssize_t n = h->codec ? recv_into(&h->raw, c) : half_fill(h, c);
        if (n > 0) {
            /* Less than asked for: the socket is empty now. Level-triggered
             * epoll says when more comes; reading again would only earn an
             * EAGAIN. */
            if ((size_t)n < c->last_ask) c->src_drained = 1;
            if (!h->codec || !h->codec->counts_output) {
                h->bytes += (uint64_t)n;
                if (c->tap) tap_plain(c->tap, c->up, buf_wptr(h->codec ? h->raw : h->buf) - n, (size_t)n);
            }
            c->budget = (size_t)n >= c->budget ? 0 : c->budget - (size_t)n;
            c->progressed = 1;
        } else if (n == 0) {
            h->eof = 1;
            if (c->tap) tap_fin(c->tap, c->src_leg, 1);
            c->progressed = 1;
        } else if (errno == EAGAIN) {
            return PUMP_OK;
        } else if (errno != EINTR) {
            c->err = errno;
            if (errno == EPROTO) return PUMP_CODEC_ERROR;
            return errno == ENOMEM ? PUMP_NOMEM : PUMP_SRC_ERROR;
        }
    }
}

void pipe_release(struct half *h, struct buf_pool *bufs, struct kpipe_pool *pipes)
{
    if (h->codec && h->codec->free) h->codec->free(h->codec_state);
    h->codec = NULL;
    h->codec_state = NULL;
    buf_put(bufs, h->raw);
    h->raw = NULL;
    buf_put(bufs, h->buf);
    h->buf = NULL;
    kpipe_put(pipes, h->kp);
    h->kp = NULL;
}

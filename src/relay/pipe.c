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
#include "stage/toxq.h"

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
 * call, filling it to at most fill_to bytes (0: its whole room). If nothing
 * was read and the buffer is empty it goes straight back, so a direction
 * never sits on an empty buffer (EOF, EAGAIN).
 * >0 bytes, 0 EOF, -1 errno (EAGAIN: nothing to read now; EPROTO: a full
 * buffer, which only a stuck codec can cause). */
static ssize_t recv_into(struct buf **slot, struct pump_ctx *c, size_t fill_to)
{
    if (!*slot && !(*slot = buf_get(c->bufs))) {
        errno = ENOMEM;
        return -1;
    }
    c->last_ask = buf_room(*slot);
    if (fill_to > buf_len(*slot) && fill_to - buf_len(*slot) < c->last_ask)
        c->last_ask = fill_to - buf_len(*slot);
    if (c->last_ask == 0) {
        errno = EPROTO;
        return -1;
    }
    ssize_t n = recv(c->src_fd, buf_wptr(*slot), c->last_ask, 0);
    c->last_read = buf_wptr(*slot);
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
            c->last_ask = h->kp->cap;
            c->last_read = NULL;
            n = splice(c->src_fd, NULL, h->kp->wfd, NULL, h->kp->cap,
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
    n = recv_into(&h->buf, c, 0);
    if (n >= (ssize_t)SPLICE_THRESHOLD) h->bulk = 1;
    return n;
}

/* How much codec input one read may gather: what one process() call turns
 * into at most a buffer of output (0: no limit). */
static size_t codec_fill_to(const struct half *h, const struct pump_ctx *c)
{
    return h->codec->max_input ? h->codec->max_input(h->codec_state, c->bufs->bufsize) : 0;
}

/* The codec's input has ended: the source said EOF and, for an encoder
 * behind toxics, the toxics hold none of its input any more. */
static int codec_input_ended(const struct half *h, const struct pump_ctx *c)
{
    return h->eof && (h->codec->counts_output || !c->tox || toxq_empty(c->tox));
}

/* Runs the codec over raw bytes into the (empty) ready buffer.
 * 1 = made ready bytes, 0 = needs more input, -1 = corrupt, -2 = no memory. */
static int half_transform(struct half *h, struct pump_ctx *c)
{
    int has_input = h->raw && !buf_empty(h->raw);
    int released = 0;
    if (h->hold != HALF_HOLD_NONE) {
        if (h->hold == HALF_HOLD_WAIT && !has_input && !codec_input_ended(h, c)) return 0;   /* keep waiting */
        h->hold = HALF_HOLD_NONE;             /* one shot: the held output goes now */
        released = 1;
    }
    if (!has_input && !released) return 0;
    if (!h->buf && !(h->buf = buf_get(c->bufs))) return -2;
    size_t used = 0, made = 0;
    if (h->codec->process(h->codec_state, has_input ? buf_rptr(h->raw) : NULL, has_input ? buf_len(h->raw) : 0, &used,
                          buf_wptr(h->buf), buf_room(h->buf), &made) < 0)
        return -1;
    if (has_input) buf_consumed(h->raw, (uint32_t)used);
    buf_produced(h->buf, (uint32_t)made);
    if (h->codec->counts_output) {
        h->bytes += made;
        if (c->tap) tap_plain(c->tap, c->up, buf_wptr(h->buf) - made, made);
    }
    buf_put_if_empty(c->bufs, &h->raw);
    if (made) return 1;
    buf_put(c->bufs, h->buf);
    h->buf = NULL;
    return 0;
}

/* First step of both pumps: empty the half into the sink. DRAINED, or the
 * pump's result: PUMP_OK when the sink is full (stop reading: that is the
 * backpressure) or not connected yet (early data waits), PUMP_DST_ERROR. */
#define DRAINED (-1)
static int drain_to_sink(struct half *h, struct pump_ctx *c)
{
    if (c->dst_fd < 0) return half_pending(h) ? PUMP_OK : DRAINED;
    int r = half_flush(h, c);
    if (r < 0) {
        c->err = errno;
        return PUMP_DST_ERROR;
    }
    return r == 0 ? PUMP_OK : DRAINED;
}

/* What one read of the source means for the pump: bytes (go on), EOF
 * (go on: the next round forwards it), nothing now (done) or an error. */
#define READ_GO_ON (-1)
static int read_outcome(struct half *h, struct pump_ctx *c, ssize_t n)
{
    if (n > 0) {
        /* Less than asked for: the socket is empty now. Level-triggered
         * epoll says when more comes; reading again would only earn an
         * EAGAIN. */
        if ((size_t)n < c->last_ask) c->src_drained = 1;
        c->budget = (size_t)n >= c->budget ? 0 : c->budget - (size_t)n;
        c->progressed = 1;
        return READ_GO_ON;
    }
    if (n == 0) {
        h->eof = 1;
        if (c->tap) tap_fin(c->tap, c->src_leg, 1);
        c->progressed = 1;
        return READ_GO_ON;
    }
    if (errno == EAGAIN) return PUMP_OK;
    if (errno == EINTR) return READ_GO_ON;
    c->err = errno;
    if (errno == EPROTO) return PUMP_CODEC_ERROR;
    return errno == ENOMEM ? PUMP_NOMEM : PUMP_SRC_ERROR;
}

/* The source's EOF has reached the sink: pass the FIN on, unless the
 * session closes both sockets right after (close() sends it then). A failed
 * shutdown only means the sink is already gone; the other direction will
 * see that on its own. */
static void forward_eof(struct half *h, struct pump_ctx *c)
{
    if (!c->close_follows) (void)shutdown(c->dst_fd, SHUT_WR);
    if (c->tap) tap_fin(c->tap, !c->src_leg, 0);
    h->shut = 1;
    c->progressed = 1;
}

int half_wants_input(const struct half *h, const struct toxq *tox)
{
    return !h->eof && !half_pending(h) && (!tox || toxq_has_room(tox));
}

/* Reads the source into the toxics. >0 bytes, 0 EOF, -1 errno. */
static ssize_t toxic_fill(struct half *h, struct pump_ctx *c)
{
    uint8_t tmp[16384];
    size_t room = toxq_room(c->tox);
    int decoder = h->codec && h->codec->counts_output;
    if (decoder) {
        /* Ciphertext first: the toxics see what the decoder makes. */
        return recv_into(&h->raw, c, 0);
    }
    c->last_ask = room < sizeof(tmp) ? room : sizeof(tmp);
    ssize_t n = recv(c->src_fd, tmp, c->last_ask, 0);
    if (n > 0) {
        if (c->tap) tap_bytes(c->tap, c->src_leg, 1, tmp, (size_t)n);
        h->bytes += (uint64_t)n;     /* decoders count their output instead */
        if (c->tap) tap_plain(c->tap, c->up, tmp, (size_t)n);
        if (toxq_push(c->tox, tmp, (size_t)n, c->now_us) < 0) {
            errno = ENOMEM;
            return -1;
        }
    }
    return n;
}

/* Moves one due piece out of the toxics: into raw for an encoder, else
 * into the ready buffer. 1 moved, 0 nothing due, -1 no memory. */
static int toxic_release(struct half *h, struct pump_ctx *c)
{
    size_t len;
    const uint8_t *p = toxq_peek(c->tox, c->now_us, &len);
    if (!p) return 0;
    int encoder = h->codec && !h->codec->counts_output;
    struct buf **slot = encoder ? &h->raw : &h->buf;
    if (!*slot && !(*slot = buf_get(c->bufs))) return -1;
    uint32_t n = buf_append(*slot, p, (uint32_t)(len < UINT32_MAX ? len : UINT32_MAX));
    if (n == 0) return 0;
    toxq_consume(c->tox, n);
    return 1;
}

/* The pump with toxics: source -> [decoder] -> toxics -> [encoder] -> sink.
 * No splice: the toxics hold the bytes. One piece is released per flush,
 * so the slicer's pieces leave in separate writes. */
static enum pump_result pump_toxic(struct half *h, struct pump_ctx *c)
{
    int decoder = h->codec && h->codec->counts_output;
    for (;;) {
        int f = drain_to_sink(h, c);
        if (f != DRAINED) return (enum pump_result)f;
        enum toxq_action a = toxq_action(c->tox, c->now_us);
        if (a != TOXQ_NONE) return a == TOXQ_RESET ? PUMP_TOXIC_RESET : PUMP_TOXIC_CLOSE;
        if (h->codec && !decoder) {          /* encoder: encode what raw holds */
            int t = half_transform(h, c);
            if (t == -1) return PUMP_CODEC_ERROR;
            if (t == -2) return PUMP_NOMEM;
            if (t == 1) continue;
        }
        int m = toxic_release(h, c);
        if (m < 0) return PUMP_NOMEM;
        if (m > 0) {
            c->progressed = 1;
            continue;
        }
        if (decoder && toxq_has_room(c->tox)) {
            /* Decode into the ready buffer, then hand that to the toxics. */
            int t = half_transform(h, c);
            if (t == -1) return PUMP_CODEC_ERROR;
            if (t == -2) return PUMP_NOMEM;
            if (t == 1) {
                int e = toxq_push(c->tox, buf_rptr(h->buf), buf_len(h->buf), c->now_us);
                buf_put(c->bufs, h->buf);
                h->buf = NULL;
                if (e < 0) return PUMP_NOMEM;
                continue;
            }
        }
        if (h->eof) {
            /* A decoder still holding ciphertext waits for room to decode
             * it before the EOF enters the queue behind its output. */
            if (!(decoder && h->raw && !buf_empty(h->raw) && !toxq_has_room(c->tox)))
                toxq_push_eof(c->tox, c->now_us);
            if (c->dst_fd >= 0 && !h->shut && toxq_eof_due(c->tox, c->now_us)) forward_eof(h, c);
            return PUMP_OK;
        }
        if (c->src_fd < 0 || c->budget == 0 || c->src_drained || !toxq_has_room(c->tox)) return PUMP_OK;
        int r = read_outcome(h, c, toxic_fill(h, c));
        if (r != READ_GO_ON) return (enum pump_result)r;
    }
}

enum pump_result pipe_pump(struct half *h, struct pump_ctx *c)
{
    if (c->tox) return pump_toxic(h, c);
    for (;;) {
        int f = drain_to_sink(h, c);
        if (f != DRAINED) return (enum pump_result)f;
        if (h->codec) {
            int t = half_transform(h, c);
            if (t == -1) return PUMP_CODEC_ERROR;
            if (t == -2) return PUMP_NOMEM;
            if (t == 1) continue;                /* flush what it made */
        }
        if (h->eof) {
            if (c->dst_fd >= 0 && !h->shut) forward_eof(h, c);
            return PUMP_OK;
        }
        if (c->src_fd < 0 || c->budget == 0 || c->src_drained) return PUMP_OK;
        /* With a codec, source bytes are its input (raw); else they are ready. */
        ssize_t n = h->codec ? recv_into(&h->raw, c, codec_fill_to(h, c)) : half_fill(h, c);
        if (n > 0 && (!h->codec || !h->codec->counts_output)) {
            h->bytes += (uint64_t)n;
            /* A tapped session never splices, so its bytes are in a buffer. */
            if (c->tap && c->last_read) tap_plain(c->tap, c->up, c->last_read, (size_t)n);
        }
        int r = read_outcome(h, c, n);
        if (r != READ_GO_ON) return (enum pump_result)r;
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

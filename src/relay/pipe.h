/* pipe.h - the byte mover: one routine for both directions (STYLE habit 2).
 *
 * pipe_pump() flushes what the half holds into the sink, then reads from the
 * source only into an empty half: a full half stops reading its source, which
 * *is* the backpressure. EOF is forwarded as shutdown(SHUT_WR) once the half
 * is empty (half-close). Work per call is capped so one fast peer cannot
 * starve the others on the same loop.
 */
#ifndef FERRY_PIPE_H
#define FERRY_PIPE_H

#include "buf/buffer.h"
#include "buf/kpipe.h"
#include "relay/session-t.h"

enum pump_result {
    PUMP_OK = 0,
    PUMP_SRC_ERROR,    /* reading the source failed (errno in *err) */
    PUMP_DST_ERROR,    /* writing the sink failed */
    PUMP_NOMEM,
    PUMP_CODEC_ERROR,  /* the codec rejected the stream (bad tag...) */
    PUMP_TOXIC_CLOSE,  /* a toxic ends the session (timeout, limit_data) */
    PUMP_TOXIC_RESET,  /* a toxic resets it (reset_peer) */
};

struct toxq;

struct pump_ctx {
    struct buf_pool *bufs;
    struct kpipe_pool *pipes;
    int src_fd, dst_fd;        /* -1: not usable now (e.g. still connecting) */
    int allow_splice;
    size_t budget;             /* max bytes read this call */
    int err;                   /* errno of a failure */
    int progressed;            /* something was read or written */
    int src_drained;           /* a short read emptied the source this call */
    size_t last_ask;           /* bytes the last read asked for */
    const uint8_t *last_read;  /* where the last read put its bytes (NULL: spliced) */
    struct tap *tap;           /* observer of the bytes, or NULL */
    struct toxq *tox;          /* this direction's toxics, or NULL */
    uint64_t now_us;           /* monotonic, for toxics */
    int src_leg, up;           /* tap leg of the source; direction is client->upstream */
    int close_follows;         /* the other direction is shut: once this one
                                  forwards EOF the session closes, and close()
                                  sends the FIN, so no shutdown() is needed */
};

/* Bytes ready for the sink. */
static inline int half_pending(const struct half *h)
{
    return (h->buf && !buf_empty(h->buf)) || (h->kp && h->kp->len);
}

/* Whether the direction should read its source now: not at EOF, nothing
 * waiting for the sink, and its toxics (if any) have room. */
int half_wants_input(const struct half *h, const struct toxq *tox);

enum pump_result pipe_pump(struct half *h, struct pump_ctx *c);
/* Gives the half's buffer and pipe back (closing a non-empty pipe). */
void pipe_release(struct half *h, struct buf_pool *bufs, struct kpipe_pool *pipes);

#endif

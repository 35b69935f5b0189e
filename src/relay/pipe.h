/* pipe.h - the byte mover: one pump per direction over a chain of stages
 * (STYLE habits 2 and 9).
 *
 * pipe_pump() flushes the bytes ready for the sink, lets the stages turn
 * their input into output (the one nearest the sink first, each only into
 * an empty output), then reads the source, but only into an empty head
 * link: a direction whose sink or stages are full stops reading its source,
 * which *is* the backpressure. EOF travels the chain (each stage says when
 * its output has ended) and reaches the sink as a shutdown of its sending
 * side (half-close). Work per call is capped so one fast peer cannot starve
 * the others on the same loop.
 *
 * Taps see the wire at the two ends (what was read, what was written) and
 * the plaintext at one link: after the decoder if there is one, else at
 * the head. Application bytes (`bytes`) are counted at that same link.
 */
#ifndef FERRY_PIPE_H
#define FERRY_PIPE_H

#include <stddef.h>

#include "buf/buffer.h"
#include "buf/kpipe.h"
#include "relay/endpoint.h"
#include "relay/pipe-t.h"

enum pump_result {
    PUMP_OK = 0,
    PUMP_SRC_ERROR,    /* reading the source failed (errno in err) */
    PUMP_DST_ERROR,    /* writing the sink failed (errno in err) */
    PUMP_NOMEM,
    PUMP_STAGE_ERROR,  /* a stage found the stream bad (stage_role says which) */
    PUMP_STAGE_CLOSE,  /* a stage ends the session; what it let through is out */
    PUMP_STAGE_RESET,  /* a stage resets the session */
};

struct tap;

struct pump_ctx {
    /* In. */
    struct buf_pool *bufs;
    struct kpipe_pool *pipes;
    struct endpoint *src, *dst;    /* NULL: not usable now (e.g. still connecting) */
    int allow_splice;
    size_t budget;                 /* max bytes read this call */
    uint64_t now_us;               /* monotonic, for the stages */
    struct tap *tap;               /* observer of the bytes, or NULL */
    int src_leg, up;               /* tap leg of the source; direction is client->upstream */
    int close_follows;             /* the other direction is shut: once this one
                                      forwards EOF the session closes, and close()
                                      sends the FIN, so no shutdown is needed */
    /* In and out. */
    int src_drained;               /* a short read emptied the source (set to skip reading) */
    /* Out. */
    int err;                       /* errno of PUMP_SRC_ERROR / PUMP_DST_ERROR */
    int progressed;                /* something was read, made or written */
    uint8_t stage_role;            /* enum stage_role behind a PUMP_STAGE_* result */
    size_t last_ask;               /* bytes the last read asked for (private) */
};

/* Bytes ready for the sink. */
int half_pending(const struct half *h);
/* Whether the direction should read its source now: not at EOF, its head
 * link empty and nothing waiting for the sink. */
int half_wants_input(const struct half *h);

enum pump_result pipe_pump(struct half *h, struct pump_ctx *c);

/* Puts a stage into the chain at its role's place (stage.h) and takes
 * ownership of `state` (pipe_release frees it; so does this call if the
 * chain is full, returning -1). Bytes already waiting where it goes in
 * become its input with pending_is_input, else they count as its output
 * (a reply queued before a decoder is installed is not decoded). */
int pipe_add_stage(struct half *h, const struct stage_ops *ops, void *state, int pending_is_input);
/* The state of the direction's stage with these ops, or NULL. */
void *pipe_stage_state(const struct half *h, const struct stage_ops *ops);
/* The earliest time a stage asked to run again (UINT64_MAX: none). */
uint64_t pipe_next_wakeup(const struct half *h);

/* The head link, where handshake bytes collect before any stage exists.
 * pipe_read_head() reads once into it (tapped as wire bytes, not counted):
 * >0 bytes, 0 EOF, -1 errno (EAGAIN; ENOBUFS: the link is full, which a
 * front-end that bounds its messages never lets happen). last_ask says
 * how much it asked for. */
ssize_t pipe_read_head(struct half *h, struct pump_ctx *c);
const uint8_t *pipe_head(const struct half *h, size_t *len);
void pipe_head_consumed(struct half *h, struct buf_pool *bufs, size_t n);
/* The handshake is over: what the head link still holds is early data,
 * application bytes if no decoder comes before them (a decoder counts
 * what it makes). */
void pipe_head_is_payload(struct half *h);
/* Puts bytes in front of what the head link holds (a front-end's
 * rewritten request ahead of the early data). 0, or -1 if they do not fit. */
int pipe_head_prepend(struct half *h, struct buf_pool *bufs, const void *data, size_t len);
/* Appends bytes ready for the sink (replies). 0, or -1 if they do not fit. */
int pipe_push_ready(struct half *h, struct buf_pool *bufs, const void *data, size_t len);

/* Puts bytes ahead of everything the direction holds, to be written to the
 * sink first (a PROXY protocol header before the early data and whatever
 * the stages make): they pass no stage and are not application bytes.
 * 0, or -1 if they do not fit. */
int pipe_push_lead(struct half *h, struct buf_pool *bufs, const void *data, size_t len);

/* Drops every stage and every byte except those ready for the sink: the
 * session is ending and only what was already let through goes out. */
void pipe_keep_ready_only(struct half *h, struct buf_pool *bufs, struct kpipe_pool *pipes);
/* The chain as it is, for tests and tools. */
unsigned pipe_nstages(const struct half *h);
struct buf *pipe_link(const struct half *h, unsigned i);
const struct pipe_stage *pipe_stage_at(const struct half *h, unsigned i);
unsigned pipe_closing(const struct half *h);

/* Gives the half's buffers and pipe back and frees its stages. */
void pipe_release(struct half *h, struct buf_pool *bufs, struct kpipe_pool *pipes);

#endif

/* pipe-t.h - one direction of a session (types only; the mover is pipe.h).
 *
 * Bytes go source -> link 0 -> stage 0 -> link 1 -> ... -> stage n-1 ->
 * link n -> sink. Link i is stage i's input; link n holds bytes ready for
 * the sink. Link 0 is `head`, the others live in the chain. Without stages
 * the head is both: what was read is what is written, and then bulk bytes
 * may wait in a kernel pipe (kp) instead, never both. Every link holds a
 * pool buffer only while it holds bytes.
 */
#ifndef FERRY_PIPE_T_H
#define FERRY_PIPE_T_H

#include <stdint.h>

#include "stage/stage.h"

struct buf;
struct kpipe;

/* Decoder, rewrite, Lua, toxics, encoder, and one to spare. */
#define PIPE_MAX_STAGES 6

struct pipe_stage {
    const struct stage_ops *ops;
    void *state;                   /* owned: ops->free() at pipe_release */
    uint8_t done;                  /* its output has ended (stage_io.out_eof) */
};

/* A direction's stages and the links after them; allocated with the
 * first stage, so a direction without any costs one pointer. */
struct pipe_chain {
    struct buf *out[PIPE_MAX_STAGES];    /* out[i]: stage i's output = link i + 1 */
    struct pipe_stage stage[PIPE_MAX_STAGES];
    uint8_t n;
    uint8_t closing;               /* 1 + index of a stage that returned
                                      STAGE_CLOSE: what it made goes out, then
                                      the pump reports the close */
};

struct half {
    struct buf *head;              /* link 0: what the source gave */
    struct buf *lead;              /* bytes for the sink ahead of everything else
                                      (a PROXY header before early data), or NULL */
    struct kpipe *kp;
    struct pipe_chain *chain;      /* NULL: no stage */
    uint64_t bytes;                /* application bytes (the plaintext link) */
    uint64_t sent;                 /* bytes written to the sink (the wire: framing,
                                      headers and what stages changed included) */
    uint8_t eof;                   /* source said EOF */
    uint8_t shut;                  /* EOF forwarded to the sink */
    uint8_t bulk;                  /* a read filled SPLICE_THRESHOLD: worth splicing */
};

#endif

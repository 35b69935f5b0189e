/* stage.h - one link of a direction's chain of stages (types only).
 *
 * A direction moves bytes source -> stage 0 -> stage 1 -> ... -> sink.
 * Stages sit in a fixed order by role: decoder, filters (rewrite, Lua),
 * toxics, encoder. relay/pipe.c runs the chain; a stage never sees a socket,
 * a buffer pool or the session: it gets bytes in, writes bounded bytes out,
 * and says how it went. That makes every stage testable with plain arrays.
 *
 * The pump calls process() only when the stage's output is empty, so one
 * call's output reaches the next link (and, at the end, the sink) before the
 * next call: a stage that releases one piece per call has each piece leave
 * in its own write. A stage may leave input unused: the bytes stay, the link
 * before it cannot run, and at the head of the chain the source is not read.
 * That is backpressure, and it keeps memory bounded. A stage that keeps
 * bytes back inside itself must bound them.
 */
#ifndef FERRY_STAGE_H
#define FERRY_STAGE_H

#include <stddef.h>
#include <stdint.h>

/* The chain's order. A direction has at most one stage of each role except
 * STAGE_FILTER, and stages are kept sorted by role. */
enum stage_role {
    STAGE_DECODER,     /* wire -> plaintext (Shadowsocks AEAD) */
    STAGE_FILTER,      /* plaintext -> plaintext (rewrite rules, Lua) */
    STAGE_TOXICS,      /* plaintext, delayed or cut (toxiproxy's toxics) */
    STAGE_ENCODER,     /* plaintext -> wire */
};

enum stage_status {
    STAGE_OK,          /* used/made say what happened (possibly nothing) */
    STAGE_CLOSE,       /* end the session once what this stage has made so far
                          is delivered (toxics' timeout and limit_data, a
                          filter's s:close()) */
    STAGE_RESET,       /* end the session now with a reset on both sides */
    STAGE_ERROR,       /* the stream is bad (a tag that fails, a filter's
                          runtime error): end now, forward nothing more */
    STAGE_NOMEM,
};

struct stage_io {
    /* In: set by the pump. */
    const uint8_t *in;         /* input from the previous link (NULL if none) */
    size_t inlen;
    int in_eof;                /* no input will ever follow `in` */
    uint8_t *out;              /* room for output: at most outcap bytes */
    size_t outcap;
    uint64_t now_us;           /* monotonic clock (clock_now_us()) */
    /* Out: set by the stage. */
    size_t used;               /* input bytes taken (in[0, used)) */
    size_t made;               /* output bytes written (out[0, made)) */
    int out_eof;               /* nothing more will come out: set once the
                                  input has ended and everything held went */
};

struct stage_ops {
    const char *name;
    uint8_t role;              /* enum stage_role */
    enum stage_status (*process)(void *state, struct stage_io *io);
    /* Optional: when process() must run again even without input (a due
     * time, an injection from the other direction), as now_us; UINT64_MAX
     * when only input or its end can change anything. */
    uint64_t (*next_wakeup)(const void *state);
    /* Optional: the most input one process() call turns into at most outcap
     * bytes of output. The link before reads or makes no more, so a read is
     * encoded whole and leaves no tail for a tiny chunk and an extra write. */
    size_t (*max_input)(const void *state, size_t outcap);
    void (*free)(void *state);
};

/* What a filter may know of its session (Lua's `s`). Filled by the session
 * before the filter's stages are made; valid until they are freed. Strings
 * are NUL-terminated and already sanitised for logging; "" when unknown. */
struct stage_session {
    uint64_t id;
    const char *listener;
    char client[64];           /* "ip:port" / "[ip6]:port" */
    char dest_name[256];       /* what the client asked for (a name or a literal) */
    char dest_addr[64];        /* the address connected to */
    char user[256];            /* SOCKS user name */
};

#endif

/* pipe.c - see pipe.h.
 *
 * Return conventions (docs/ARCHITECTURE.md): the flush/read helpers return
 * >0 bytes, 0 for "nothing now" / EOF as documented, -1 with errno; the
 * pump's own outcomes are enum pump_result, never errno.
 */
#include "relay/pipe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stage/tap.h"

/* A direction starts by copying; once one read brings this much, it is a
 * bulk transfer and switches to splice. For small messages splice costs
 * more syscalls than it saves copies (two splices vs recv + send). */
#define SPLICE_THRESHOLD (16u * 1024u)

/* The chain is allocated with its first stage: a session without stages
 * (most of them) carries one pointer for it, not the arrays. */
static inline unsigned nst(const struct half *h) { return h->chain ? h->chain->n : 0; }
static inline unsigned closing_of(const struct half *h) { return h->chain ? h->chain->closing : 0; }

/* Link i: 0 is the head (what the source gave), i > 0 is stage i-1's output. */
static inline struct buf **lnk(const struct half *h, unsigned i)
{
    return i ? &h->chain->out[i - 1] : (struct buf **)&h->head;
}

static inline struct buf **sink_link(struct half *h) { return lnk(h, nst(h)); }

/* The link where bytes are plaintext: behind the decoder, if any. */
static unsigned plain_link(const struct half *h)
{
    return nst(h) && h->chain->stage[0].ops->role == STAGE_DECODER ? 1 : 0;
}

static int link_busy(const struct buf *b) { return b && !buf_empty(b); }

int half_pending(const struct half *h)
{
    return link_busy(h->lead) || link_busy(*lnk(h, nst(h))) || (h->kp && h->kp->len);
}

/* The head link takes more while it has room: a stage may leave the tail
 * of its input there (a partial Shadowsocks chunk) until more comes. Full,
 * it stops the source: one buffer is all a direction reads ahead. With a
 * first stage that takes at most max_input a pass, it is full at that: read
 * further (while that stage cannot run) and its passes end in a short tail,
 * a tiny chunk and an extra write, which max_input is there to prevent. */
static int head_has_room(const struct half *h)
{
    const struct buf *b = h->head;
    if (!b) return 1;
    size_t full = b->cap;
    if (nst(h) && h->chain->stage[0].ops->max_input) {
        size_t m = h->chain->stage[0].ops->max_input(h->chain->stage[0].state, b->cap);
        if (m < full) full = m;
    }
    return buf_len(b) < full;
}

int half_wants_input(const struct half *h)
{
    return !h->eof && head_has_room(h) && !half_pending(h);
}

/* Application bytes arrived at the plaintext link. */
static void count_plain(struct half *h, struct pump_ctx *c, const uint8_t *p, size_t n)
{
    h->bytes += n;
    if (c->tap && p) tap_plain(c->tap, c->up, p, n);
}

/* ---- the sink ---- */

enum flush { FLUSH_EMPTY, FLUSH_BLOCKED, FLUSH_ERROR };

static enum flush flush_buffer(struct half *h, struct buf **b, struct pump_ctx *c)
{
    while (link_busy(*b)) {
        ssize_t n = endpoint_write(c->dst, buf_rptr(*b), buf_len(*b));
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return FLUSH_BLOCKED;
            c->err = errno;
            return FLUSH_ERROR;
        }
        if (c->tap) tap_bytes(c->tap, !c->src_leg, 0, buf_rptr(*b), (size_t)n);
        buf_consumed(*b, (uint32_t)n);
        h->sent += (uint64_t)n;
        c->progressed = 1;
    }
    buf_put(c->bufs, *b);
    *b = NULL;
    return FLUSH_EMPTY;
}

static enum flush flush_kpipe(struct half *h, struct pump_ctx *c)
{
    while (h->kp && h->kp->len) {
        /* The pipe holds bytes, so EAGAIN here can only mean the socket's
         * send buffer is full. */
        ssize_t n = splice(h->kp->rfd, NULL, endpoint_fd(c->dst), NULL, h->kp->len,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return FLUSH_BLOCKED;
            c->err = errno;
            return FLUSH_ERROR;
        }
        h->kp->len -= (size_t)n;
        h->sent += (uint64_t)n;
        c->progressed = 1;
    }
    kpipe_put(c->pipes, h->kp);
    h->kp = NULL;
    return FLUSH_EMPTY;
}

/* Empties what is ready into the sink. BLOCKED also when the sink is not
 * usable yet (connecting): early data waits. */
static enum flush flush_sink(struct half *h, struct pump_ctx *c)
{
    if (!c->dst) return half_pending(h) ? FLUSH_BLOCKED : FLUSH_EMPTY;
    enum flush f = flush_buffer(h, &h->lead, c);
    if (f == FLUSH_EMPTY) f = flush_buffer(h, sink_link(h), c);
    return f == FLUSH_EMPTY ? flush_kpipe(h, c) : f;
}

/* The source's EOF has reached the sink: pass the FIN on, unless the
 * session closes both sockets right after (close() sends it then). */
static void forward_eof(struct half *h, struct pump_ctx *c)
{
    if (!c->close_follows) c->dst->ops->shutdown_write(c->dst);
    if (c->tap) tap_fin(c->tap, !c->src_leg, 0);
    h->shut = 1;
    c->progressed = 1;
}

/* Whether everything the source will ever give has left the chain. */
static int chain_ended(const struct half *h)
{
    return nst(h) ? h->chain->stage[nst(h) - 1].done : h->eof;
}

/* ---- the stages ---- */

/* How much output stage i may make: the room of its output, and no more
 * than the next stage takes in one pass (max_input). */
static size_t stage_outcap(struct half *h, struct pump_ctx *c, unsigned i)
{
    size_t cap = buf_room(*lnk(h, i + 1));
    if (i + 1 < nst(h)) {
        const struct pipe_stage *next = &h->chain->stage[i + 1];
        if (next->ops->max_input) {
            size_t m = next->ops->max_input(next->state, c->bufs->bufsize);
            if (m < cap) cap = m;
        }
    }
    return cap;
}

enum step { STEP_IDLE, STEP_MADE, STEP_END };

/* Runs stage i once, its output link being empty. */
static enum step stage_step(struct half *h, struct pump_ctx *c, unsigned i, enum pump_result *res)
{
    struct pipe_stage *st = &h->chain->stage[i];
    struct buf **in = lnk(h, i), **out = lnk(h, i + 1);
    if (!*out && !(*out = buf_get(c->bufs))) {
        *res = PUMP_NOMEM;
        return STEP_END;
    }
    struct stage_io io;
    memset(&io, 0, sizeof(io));
    if (link_busy(*in)) {
        io.in = buf_rptr(*in);
        io.inlen = buf_len(*in);
    }
    io.in_eof = i == 0 ? h->eof : h->chain->stage[i - 1].done;
    io.out = buf_wptr(*out);
    io.outcap = stage_outcap(h, c, i);
    io.now_us = c->now_us;
    enum stage_status r = st->ops->process(st->state, &io);
    if (io.used && *in) buf_consumed(*in, (uint32_t)io.used);   /* a stage never uses more than it got */
    buf_put_if_empty(c->bufs, in);
    buf_produced(*out, (uint32_t)io.made);
    if (io.made && i + 1 == plain_link(h)) count_plain(h, c, io.out, io.made);
    buf_put_if_empty(c->bufs, out);
    if (io.used || io.made) c->progressed = 1;
    if (r != STAGE_OK) {
        c->stage_role = st->ops->role;
        if (r == STAGE_CLOSE) {
            h->chain->closing = (uint8_t)(i + 1);
            return STEP_MADE;
        }
        *res = r == STAGE_RESET ? PUMP_STAGE_RESET : r == STAGE_NOMEM ? PUMP_NOMEM : PUMP_STAGE_ERROR;
        return STEP_END;
    }
    if (io.out_eof && !st->done) {
        st->done = 1;
        return STEP_MADE;
    }
    return io.made ? STEP_MADE : STEP_IDLE;
}

/* Gives each stage a turn, nearest the sink first, so bytes move toward the
 * sink before more come in. A stage runs only into an empty output: what it
 * made reaches the next link before it makes more. Stops at the first stage
 * that made something (the caller flushes, then comes back). Stages before
 * one that asked to close are not run again. */
static enum step run_stages(struct half *h, struct pump_ctx *c, enum pump_result *res)
{
    for (int i = (int)nst(h) - 1; i >= (int)closing_of(h); i--) {
        if (link_busy(*lnk(h, i + 1)) || h->chain->stage[i].done) continue;
        enum step s = stage_step(h, c, (unsigned)i, res);
        if (s != STEP_IDLE) return s;
    }
    return STEP_IDLE;
}

/* A stage asked to close: done once everything behind it has reached the sink. */
static int close_delivered(const struct half *h)
{
    for (unsigned i = closing_of(h); i <= nst(h); i++)
        if (link_busy(*lnk(h, i))) return 0;
    return 1;
}

/* ---- the source ---- */

/* Reads once from the source into the head link (which has room).
 * >0 bytes, 0 EOF, -1 errno (EAGAIN: nothing to read now). */
static ssize_t read_buffer(struct half *h, struct pump_ctx *c)
{
    struct buf **b = &h->head;
    if (!*b && !(*b = buf_get(c->bufs))) {
        errno = ENOMEM;
        return -1;
    }
    c->last_ask = buf_room(*b);
    if (nst(h) && h->chain->stage[0].ops->max_input) {
        /* Fill the link up to what the first stage takes in one pass. */
        size_t m = h->chain->stage[0].ops->max_input(h->chain->stage[0].state, c->bufs->bufsize), len = buf_len(*b);
        if (m > len && m - len < c->last_ask) c->last_ask = m - len;
    }
    ssize_t n = endpoint_read(c->src, buf_wptr(*b), c->last_ask);
    if (n > 0) {
        if (c->tap) tap_bytes(c->tap, c->src_leg, 1, buf_wptr(*b), (size_t)n);
        if (plain_link(h) == 0) count_plain(h, c, buf_wptr(*b), (size_t)n);
        buf_produced(*b, (uint32_t)n);
        if (n >= (ssize_t)SPLICE_THRESHOLD) h->bulk = 1;
    } else {
        int e = errno;
        buf_put_if_empty(c->bufs, b);      /* hold no empty buffer */
        errno = e;
    }
    return n;
}

/* splice() into a pipe returns EAGAIN both when the socket is empty and
 * when the pipe is full; we only fill an empty pipe, so here it means the
 * socket is empty. -2: no pipe to be had (copy instead). */
static ssize_t read_kpipe(struct half *h, struct pump_ctx *c)
{
    if (!h->kp && !(h->kp = kpipe_get(c->pipes))) return -2;
    c->last_ask = h->kp->cap;
    ssize_t n = splice(endpoint_fd(c->src), NULL, h->kp->wfd, NULL, h->kp->cap, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
        h->kp->len += (size_t)n;
        count_plain(h, c, NULL, (size_t)n);
    } else {
        int e = errno;
        kpipe_put(c->pipes, h->kp);    /* hold no empty pipe */
        h->kp = NULL;
        errno = e;
    }
    return n;
}

/* Zero copy: nothing needs the bytes, both ends are sockets, and the
 * direction has shown it is a bulk transfer. */
static int may_splice(const struct half *h, const struct pump_ctx *c)
{
    return c->allow_splice && h->bulk && !nst(h) && c->src && c->dst && endpoint_fd(c->src) >= 0 &&
           endpoint_fd(c->dst) >= 0;
}

static ssize_t read_source(struct half *h, struct pump_ctx *c)
{
    if (may_splice(h, c)) {
        ssize_t n = read_kpipe(h, c);
        if (n != -2) return n;
    }
    return read_buffer(h, c);
}

/* What one read means for the pump: 1 go on (bytes, or EOF: the next round
 * forwards it), 0 nothing now (done), -1 an error (*res set). */
static int read_outcome(struct half *h, struct pump_ctx *c, ssize_t n, enum pump_result *res)
{
    if (n > 0) {
        /* Less than asked for: the socket is empty now. Level-triggered
         * epoll says when more comes; reading again would only earn an
         * EAGAIN. */
        if ((size_t)n < c->last_ask) c->src_drained = 1;
        c->budget = (size_t)n >= c->budget ? 0 : c->budget - (size_t)n;
        c->progressed = 1;
        return 1;
    }
    if (n == 0) {
        h->eof = 1;
        if (c->tap) tap_fin(c->tap, c->src_leg, 1);
        c->progressed = 1;
        return 1;
    }
    if (errno == EAGAIN) return 0;
    if (errno == EINTR) return 1;
    c->err = errno;
    *res = errno == ENOMEM ? PUMP_NOMEM : PUMP_SRC_ERROR;
    return -1;
}

/* ---- the pump ---- */

enum pump_result pipe_pump(struct half *h, struct pump_ctx *c)
{
    enum pump_result res = PUMP_OK;
    for (;;) {
        enum flush f = flush_sink(h, c);
        if (f == FLUSH_ERROR) return PUMP_DST_ERROR;
        if (f == FLUSH_BLOCKED) return PUMP_OK;
        if (nst(h)) {
            enum step s = run_stages(h, c, &res);
            if (s == STEP_END) return res;
            if (s == STEP_MADE) continue;
        }
        if (closing_of(h)) {
            c->stage_role = h->chain->stage[closing_of(h) - 1].ops->role;
            return close_delivered(h) ? PUMP_STAGE_CLOSE : PUMP_OK;
        }
        if (chain_ended(h)) {
            if (c->dst && !h->shut) forward_eof(h, c);
            return PUMP_OK;
        }
        if (h->eof || !c->src || c->budget == 0 || c->src_drained || !head_has_room(h)) return PUMP_OK;
        int r = read_outcome(h, c, read_source(h, c), &res);
        if (r <= 0) return r < 0 ? res : PUMP_OK;
    }
}

/* ---- building the chain ---- */

int pipe_add_stage(struct half *h, const struct stage_ops *ops, void *state, int pending_is_input)
{
    if (!h->chain && !(h->chain = calloc(1, sizeof(*h->chain)))) {
        if (ops->free) ops->free(state);
        return -1;
    }
    struct pipe_chain *ch = h->chain;
    if (ch->n == PIPE_MAX_STAGES) {
        if (ops->free) ops->free(state);
        return -1;
    }
    unsigned at = 0;
    while (at < ch->n && ch->stage[at].ops->role <= ops->role) at++;
    /* The new stage's input and output: link `at` stays where it is and is
     * its input (pending_is_input), or moves up one to be its output. Links
     * from `from` on move up one; the one at `from` becomes a new, empty
     * link. */
    unsigned from = pending_is_input ? at + 1 : at;
    for (unsigned i = ch->n + 1; i > from; i--) *lnk(h, i) = *lnk(h, i - 1);
    *lnk(h, from) = NULL;
    memmove(&ch->stage[at + 1], &ch->stage[at], (ch->n - at) * sizeof(ch->stage[0]));
    ch->stage[at].ops = ops;
    ch->stage[at].state = state;
    ch->stage[at].done = 0;
    ch->n++;
    return 0;
}

void *pipe_stage_state(const struct half *h, const struct stage_ops *ops)
{
    for (unsigned i = 0; i < nst(h); i++)
        if (h->chain->stage[i].ops == ops) return h->chain->stage[i].state;
    return NULL;
}

uint64_t pipe_next_wakeup(const struct half *h)
{
    uint64_t due = UINT64_MAX;
    for (unsigned i = closing_of(h); i < nst(h); i++) {
        const struct pipe_stage *st = &h->chain->stage[i];
        /* A stage whose output still waits cannot run, whatever time it
         * asks for: the link ahead frees when the sink drains (an I/O
         * event) or the next stage runs (its own wakeup). Waking it now
         * would spin the loop while a slow client reads nothing. */
        if (link_busy(*lnk(h, i + 1))) continue;
        if (st->ops->next_wakeup && !st->done) {
            uint64_t t = st->ops->next_wakeup(st->state);
            if (t < due) due = t;
        }
    }
    return due;
}

/* ---- the head link and replies ---- */

ssize_t pipe_read_head(struct half *h, struct pump_ctx *c)
{
    struct buf **b = &h->head;
    if (!*b && !(*b = buf_get(c->bufs))) {
        errno = ENOMEM;
        return -1;
    }
    uint32_t room = buf_room(*b);
    if (room == 0) {
        errno = ENOBUFS;
        return -1;
    }
    ssize_t n = endpoint_read(c->src, buf_wptr(*b), room);
    c->last_ask = room;
    if (n > 0) {
        if (c->tap) tap_bytes(c->tap, c->src_leg, 1, buf_wptr(*b), (size_t)n);
        buf_produced(*b, (uint32_t)n);
    } else {
        int e = errno;
        buf_put_if_empty(c->bufs, b);
        errno = e;
    }
    return n;
}

const uint8_t *pipe_head(const struct half *h, size_t *len)
{
    struct buf *b = h->head;
    *len = b ? buf_len(b) : 0;
    return b ? buf_rptr(b) : NULL;
}

void pipe_head_consumed(struct half *h, struct buf_pool *bufs, size_t n)
{
    if (!h->head) return;
    buf_consumed(h->head, (uint32_t)n);
    buf_put_if_empty(bufs, &h->head);
}

void pipe_head_is_payload(struct half *h)
{
    if (plain_link(h) == 0) h->bytes = h->head ? buf_len(h->head) : 0;
}

int pipe_head_prepend(struct half *h, struct buf_pool *bufs, const void *data, size_t len)
{
    struct buf **b = &h->head;
    if (len > UINT32_MAX) return -1;
    if (!*b && !(*b = buf_get(bufs))) return -1;
    int r = buf_prepend(*b, data, (uint32_t)len);
    buf_put_if_empty(bufs, b);
    return r;
}

int pipe_push_ready(struct half *h, struct buf_pool *bufs, const void *data, size_t len)
{
    struct buf **b = sink_link(h);
    if (!*b && !(*b = buf_get(bufs))) return -1;
    return buf_append(*b, data, (uint32_t)len) == len ? 0 : -1;
}

int pipe_push_lead(struct half *h, struct buf_pool *bufs, const void *data, size_t len)
{
    if (!h->lead && !(h->lead = buf_get(bufs))) return -1;
    return buf_append(h->lead, data, (uint32_t)len) == len ? 0 : -1;
}

/* ---- the end ---- */

/* Frees the stages and the chain; link 0 (the head) stays. */
static void free_chain(struct half *h, struct buf_pool *bufs)
{
    if (!h->chain) return;
    for (unsigned i = 0; i < h->chain->n; i++) {
        const struct pipe_stage *st = &h->chain->stage[i];
        if (st->ops->free) st->ops->free(st->state);
        buf_put(bufs, h->chain->out[i]);
    }
    free(h->chain);
    h->chain = NULL;
}

void pipe_keep_ready_only(struct half *h, struct buf_pool *bufs, struct kpipe_pool *pipes)
{
    (void)pipes;
    struct buf *ready = *sink_link(h);
    *sink_link(h) = NULL;
    if (ready != h->head) buf_put(bufs, h->head);
    free_chain(h, bufs);
    h->head = ready;
}

void pipe_release(struct half *h, struct buf_pool *bufs, struct kpipe_pool *pipes)
{
    free_chain(h, bufs);
    buf_put(bufs, h->head);
    h->head = NULL;
    buf_put(bufs, h->lead);
    h->lead = NULL;
    kpipe_put(pipes, h->kp);
    h->kp = NULL;
}

/* For tests and tools: the chain as it is. */
unsigned pipe_nstages(const struct half *h) { return nst(h); }
struct buf *pipe_link(const struct half *h, unsigned i) { return i <= nst(h) ? *lnk(h, i) : NULL; }
const struct pipe_stage *pipe_stage_at(const struct half *h, unsigned i) { return i < nst(h) ? &h->chain->stage[i] : NULL; }
unsigned pipe_closing(const struct half *h) { return closing_of(h); }

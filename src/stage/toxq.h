/* toxq.h - the toxics of one direction of one session, sans-I/O.
 *
 * Bytes go in with the time they arrived (toxq_push); each toxic of the
 * chain, in order, decides their fate: delayed (latency, bandwidth,
 * slicer), changed (bitflip), cut (limit_data) or dropped (timeout,
 * reset_peer). What survives waits as pieces with a due time, released one
 * piece at a time (so the slicer's pieces leave in separate writes). The
 * queue is bounded in bytes and pieces: a full queue stops the caller from
 * reading its source, so a latency of seconds on a fast stream is
 * backpressure, not memory.
 *
 * Times are microseconds on the monotonic clock.
 */
#ifndef FERRY_TOXQ_H
#define FERRY_TOXQ_H

#include <stddef.h>
#include <stdint.h>

#include "stage/toxic.h"

#define TOXQ_MAX_BYTES (256u * 1024u)
#define TOXQ_MAX_PIECES 4096u
#define TOXQ_MAX_TOXICS 64u

enum toxq_action { TOXQ_NONE, TOXQ_CLOSE, TOXQ_RESET };

struct toxq_piece;

/* One toxic as applied to this direction: its spec and its running state. */
struct toxq_run {
    struct toxic_spec spec;
    uint8_t active;             /* the toxicity roll came up */
    uint64_t start_us;          /* when it began to apply */
    uint64_t next_us;           /* latency/bandwidth/slicer: when the last output leaves */
    uint64_t count;             /* limit_data: bytes passed; bitflip: bytes seen */
    uint64_t action_us;         /* timeout / reset_peer: when to act (0 = not armed) */
};

struct toxq {
    struct toxq_piece *head, *tail;
    size_t bytes, npieces;
    uint64_t last_due;          /* pieces leave in order */
    uint64_t rng;
    struct toxq_run *runs;
    size_t nruns;
    uint8_t eof_in;             /* the source ended */
    uint64_t eof_due;           /* when the EOF may pass (slow_close) */
    uint8_t cut;                /* limit_data reached: input dropped, close once drained */
};

void toxq_init(struct toxq *q, uint64_t seed);
void toxq_free(struct toxq *q);

/* Applies the toxics of `set` that act on `stream` (TOXIC_UPSTREAM or
 * TOXIC_DOWNSTREAM). A toxic already applied (same name and type) keeps its
 * state and its toxicity roll; a new one rolls now. Queued pieces become
 * due at once, as toxiproxy flushes a chain it rebuilds, and later data is
 * paced from now (a pending slow_close EOF keeps its time). 0, or -1 when
 * out of memory (the old toxics stay). */
int toxq_configure(struct toxq *q, const struct toxic_set *set, uint8_t stream, uint64_t now_us);

/* Whether the queue takes more input now, and how much at most. */
int toxq_has_room(const struct toxq *q);
size_t toxq_room(const struct toxq *q);

/* Input: bytes that arrived at now_us. 0, or -1 out of memory. */
int toxq_push(struct toxq *q, const uint8_t *p, size_t n, uint64_t now_us);
void toxq_push_eof(struct toxq *q, uint64_t now_us);

/* Output: the head piece if due (its bytes and length), else NULL. */
const uint8_t *toxq_peek(const struct toxq *q, uint64_t now_us, size_t *len);
void toxq_consume(struct toxq *q, size_t n);
static inline int toxq_empty(const struct toxq *q) { return q->head == NULL; }

/* The EOF has passed the chain: queue empty and slow_close waited out. */
int toxq_eof_due(const struct toxq *q, uint64_t now_us);
/* What the session must do now: close (timeout; limit_data once drained)
 * or reset (reset_peer). */
enum toxq_action toxq_action(const struct toxq *q, uint64_t now_us);
/* When the queue next needs attention (UINT64_MAX: only on input). */
uint64_t toxq_next_wakeup(const struct toxq *q);

#endif

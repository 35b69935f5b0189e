/* toxq_stage.c - see toxq_stage.h. */
#include "stage/toxq_stage.h"

#include <stdlib.h>
#include <string.h>

static enum stage_status toxq_process(void *state, struct stage_io *io)
{
    struct toxq *q = state;
    enum toxq_action a = toxq_action(q, io->now_us);
    if (a != TOXQ_NONE) return a == TOXQ_RESET ? STAGE_RESET : STAGE_CLOSE;
    if (io->inlen && toxq_has_room(q)) {
        size_t room = toxq_room(q);
        size_t n = io->inlen < room ? io->inlen : room;
        if (toxq_push(q, io->in, n, io->now_us) < 0) return STAGE_NOMEM;
        io->used = n;
    }
    if (io->in_eof && io->used == io->inlen) toxq_push_eof(q, io->now_us);
    size_t len;
    const uint8_t *p = toxq_peek(q, io->now_us, &len);
    if (p) {
        io->made = len < io->outcap ? len : io->outcap;
        memcpy(io->out, p, io->made);
        toxq_consume(q, io->made);
    }
    io->out_eof = q->eof_in && toxq_empty(q) && toxq_eof_due(q, io->now_us);
    return STAGE_OK;
}

static uint64_t toxq_stage_wakeup(const void *state) { return toxq_next_wakeup(state); }

static void toxq_stage_free(void *state)
{
    toxq_free(state);
    free(state);
}

const struct stage_ops toxq_stage_ops = {
    .name = "toxics", .role = STAGE_TOXICS, .process = toxq_process,
    .next_wakeup = toxq_stage_wakeup, .free = toxq_stage_free,
};

struct toxq *toxq_stage_new(uint64_t seed)
{
    struct toxq *q = malloc(sizeof(*q));
    if (q) toxq_init(q, seed);
    return q;
}

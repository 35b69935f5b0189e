/* rewrite.c - the rewrite filter stage: one scan over a direction's bytes
 * for all its rules. See rewrite.h for the semantics.
 *
 * What the stage has not decided yet sits in `hold`: bytes that may still
 * be the start of a match whose end has not arrived (a tail that is a
 * prefix of an active rule's match), so hold never exceeds the longest
 * match - 1 bytes, and is empty when the tail cannot become a match. Each call
 * scans the logical stream hold ++ input without joining the two: a match
 * that starts in hold is looked for in `seam`, a copy of hold and the first
 * bytes of input (less than two matches long); later ones in the input
 * itself. A replacement that does not fit the output is carried to the
 * next call (`carry` points into the rule, which outlives the stage).
 */
#include "stage/rewrite.h"

#include <stdlib.h>
#include <string.h>

#define RW_NONE ((size_t)-1)       /* no match up to the end of this call's bytes */
#define RW_UNKNOWN ((size_t)-2)    /* not searched yet in this call */

struct rw_state {
    size_t n;                      /* rules of this direction */
    const struct rewrite_rule **rules;
    uint32_t *count;               /* replacements made, per rule */
    size_t *next;                  /* this call: position of the rule's next match */
    size_t maxlen;                 /* longest match of the rules still active (>= 1) */
    size_t holdcap, hlen;
    uint8_t *hold;                 /* holdcap bytes */
    uint8_t *seam;                 /* 2 * holdcap bytes */
    const uint8_t *carry;          /* rest of a replacement still to go out */
    size_t carrylen;
    uint64_t held_since_us;        /* when hold last took bytes (0: empty) */
    int ended;                     /* out_eof was given */
};

/* One process() call: positions count bytes of hold (as it was at the
 * call's start) followed by the input. */
struct rw_call {
    struct rw_state *st;
    struct stage_io *io;
    size_t h0, total;              /* hold's length at the start; hold + input */
    size_t pos;                    /* bytes of that stream dealt with */
    int decide_all;                /* the input ended, or hold waited too long */
};

static int rule_active(const struct rw_state *st, size_t r)
{
    return !st->rules[r]->max || st->count[r] < st->rules[r]->max;
}

static void update_maxlen(struct rw_state *st)
{
    st->maxlen = 1;
    for (size_t r = 0; r < st->n; r++)
        if (rule_active(st, r) && st->rules[r]->match_len > st->maxlen) st->maxlen = st->rules[r]->match_len;
}

/* The first match of rule r at or after `from`, or RW_NONE. */
static size_t search(const struct rw_call *c, size_t r, size_t from)
{
    const struct rewrite_rule *rule = c->st->rules[r];
    size_t len = rule->match_len;
    if (from < c->h0) {
        /* Every match starting in hold ends within len - 1 bytes of input:
         * the seam holds all of them, and is a prefix of what follows
         * `from`, so its first hit (even one past hold) is the first. */
        size_t end = c->h0 + len - 1 < c->total ? c->h0 + len - 1 : c->total;
        size_t in_part = end - c->h0;
        memcpy(c->st->seam, c->st->hold + from, c->h0 - from);
        if (in_part) memcpy(c->st->seam + (c->h0 - from), c->io->in, in_part);
        const uint8_t *hit = memmem(c->st->seam, end - from, rule->match, len);
        if (hit) return from + (size_t)(hit - c->st->seam);
        from = c->h0;
    }
    size_t off = from - c->h0;
    if (c->io->inlen - off < len) return RW_NONE;
    const uint8_t *hit = memmem(c->io->in + off, c->io->inlen - off, rule->match, len);
    return hit ? c->h0 + (size_t)(hit - c->io->in) : RW_NONE;
}

/* The leftmost match at or after c->pos among the active rules (the first
 * rule wins a tie), or RW_NONE; *rule says whose. Each rule's next match is
 * remembered for the call, so a rule is searched again only once the scan
 * has gone past its match: linear in rules x bytes. */
static size_t leftmost(struct rw_call *c, size_t *rule)
{
    struct rw_state *st = c->st;
    size_t best = RW_NONE;
    for (size_t r = 0; r < st->n; r++) {
        if (!rule_active(st, r)) continue;
        if (st->next[r] == RW_UNKNOWN || (st->next[r] != RW_NONE && st->next[r] < c->pos))
            st->next[r] = search(c, r, c->pos);
        if (st->next[r] < best) {
            best = st->next[r];
            *rule = r;
        }
    }
    return best;
}

/* Copies the stream's bytes [pos, upto) out, as many as fit. 1 if all did. */
static int emit(struct rw_call *c, size_t upto)
{
    struct stage_io *io = c->io;
    while (c->pos < upto && io->made < io->outcap) {
        size_t room = io->outcap - io->made;
        int in_hold = c->pos < c->h0;
        size_t seg_end = in_hold && upto > c->h0 ? c->h0 : upto;
        size_t n = seg_end - c->pos < room ? seg_end - c->pos : room;
        const uint8_t *src = in_hold ? c->st->hold + c->pos : io->in + (c->pos - c->h0);
        memcpy(io->out + io->made, src, n);
        io->made += n;
        c->pos += n;
    }
    return c->pos == upto;
}

/* Sends what is left of a replacement. 1 once nothing is left. */
static int drain_carry(struct rw_state *st, struct stage_io *io)
{
    size_t room = io->outcap - io->made;
    size_t n = st->carrylen < room ? st->carrylen : room;
    if (!n) return st->carrylen == 0;
    memcpy(io->out + io->made, st->carry, n);
    io->made += n;
    st->carry += n;
    st->carrylen -= n;
    return st->carrylen == 0;
}

/* Replaces rule r's match at c->pos. 0 if the output filled up. */
static int replace(struct rw_call *c, size_t r)
{
    struct rw_state *st = c->st;
    const struct rewrite_rule *rule = st->rules[r];
    c->pos += rule->match_len;
    if (rule->max && ++st->count[r] == rule->max) {
        st->next[r] = RW_NONE;
        update_maxlen(st);
    }
    st->carry = rule->repl;
    st->carrylen = rule->repl_len;
    return drain_carry(st, c->io);
}

static uint8_t stream_byte(const struct rw_call *c, size_t p)
{
    return p < c->h0 ? c->st->hold[p] : c->io->in[p - c->h0];
}

/* Whether the bytes from q to the end are the start of an active rule's
 * match that has not arrived whole. */
static int may_grow_into_match(const struct rw_call *c, size_t q)
{
    size_t len = c->total - q;
    for (size_t r = 0; r < c->st->n; r++) {
        const struct rewrite_rule *rule = c->st->rules[r];
        if (!rule_active(c->st, r) || rule->match_len <= len) continue;
        size_t i = 0;
        while (i < len && stream_byte(c, q + i) == rule->match[i]) i++;
        if (i == len) return 1;
    }
    return 0;
}

/* The first position whose fate waits for more input (c->total: none).
 * Only a tail that could still become a match is held back, not always
 * the longest match - 1 bytes: a request/response protocol whose request
 * ends in a few plain bytes would otherwise wait forever for its answer. */
static size_t undecided_from(const struct rw_call *c)
{
    size_t q = c->total > c->st->maxlen - 1 ? c->total - (c->st->maxlen - 1) : 0;
    for (q = q > c->pos ? q : c->pos; q < c->total; q++)
        if (may_grow_into_match(c, q)) return q;
    return c->total;
}

/* Runs the scan until the output is full or nothing more is decided. A
 * whole match is decided once no match that would win over it (one
 * starting earlier, or an earlier rule at the same place) may still be
 * arriving. */
static void scan(struct rw_call *c)
{
    int eof = c->decide_all;
    for (;;) {
        size_t r = 0, p = leftmost(c, &r);
        size_t undecided = eof ? c->total : undecided_from(c);
        if (p != RW_NONE && (eof || undecided > p)) {
            if (!emit(c, p) || !replace(c, r)) return;
            continue;
        }
        /* No decided match: every position before `undecided` is plain bytes. */
        emit(c, undecided > c->pos ? undecided : c->pos);
        return;
    }
}

/* Ends the call: the undecided rest goes to hold when it fits (always so
 * when the output has room: the rest is then shorter than a match), else
 * the input not reached stays unused for the next call. */
static void settle(struct rw_call *c)
{
    struct rw_state *st = c->st;
    struct stage_io *io = c->io;
    size_t rest = c->total - c->pos;
    size_t from_hold = c->pos < c->h0 ? c->h0 - c->pos : 0;
    if (from_hold) memmove(st->hold, st->hold + c->pos, from_hold);
    if (rest <= st->holdcap) {
        size_t in_off = c->pos > c->h0 ? c->pos - c->h0 : 0;
        if (io->inlen > in_off) memcpy(st->hold + from_hold, io->in + in_off, io->inlen - in_off);
        st->hlen = rest;
        io->used = io->inlen;
    } else {
        st->hlen = from_hold;
        io->used = c->pos > c->h0 ? c->pos - c->h0 : 0;
    }
}

/* Held bytes wait for the rest of a match only this long: a peer that
 * sends a request ending in the first bytes of a match and then waits for
 * the answer would otherwise wait forever. The parts of one write arrive
 * within microseconds; a match split across writes further apart than
 * this is not found. */
static int hold_expired(const struct rw_state *st, const struct stage_io *io)
{
    return st->hlen && !io->inlen && io->now_us >= st->held_since_us + REWRITE_HOLD_MAX_US;
}

static enum stage_status rw_process(void *state, struct stage_io *io)
{
    struct rw_state *st = state;
    io->used = io->made = 0;
    io->out_eof = st->ended;
    if (st->ended || !drain_carry(st, io)) return STAGE_OK;
    struct rw_call c = { st, io, st->hlen, st->hlen + io->inlen, 0, io->in_eof || hold_expired(st, io) };
    for (size_t r = 0; r < st->n; r++) st->next[r] = RW_UNKNOWN;
    scan(&c);
    settle(&c);
    if (!st->hlen) st->held_since_us = 0;
    else if (io->used) st->held_since_us = io->now_us;
    if (io->in_eof && io->used == io->inlen && !st->hlen && !st->carrylen) st->ended = io->out_eof = 1;
    return STAGE_OK;
}

static uint64_t rw_next_wakeup(const void *state)
{
    const struct rw_state *st = state;
    return st->hlen && !st->ended ? st->held_since_us + REWRITE_HOLD_MAX_US : UINT64_MAX;
}

static void rw_free(void *state)
{
    free(state);
}

static const struct stage_ops rewrite_ops = {
    .name = "rewrite",
    .role = STAGE_FILTER,
    .process = rw_process,
    .next_wakeup = rw_next_wakeup,   /* held bytes stop waiting (REWRITE_HOLD_MAX_US) */
    .max_input = NULL,        /* a replacement may be longer than its match: no bound to give */
    .free = rw_free,
};

/* One block: the state, then its arrays, then hold and seam. */
int rewrite_stage_new(const struct rewrite_set *set, int upstream, const struct stage_ops **ops, void **state)
{
    uint8_t bit = upstream ? REWRITE_UPSTREAM : REWRITE_DOWNSTREAM;
    size_t n = rewrite_set_count(set, upstream), longest = 1;
    *ops = NULL;
    *state = NULL;
    if (!n) return 0;
    for (size_t i = 0; i < set->n; i++)
        if ((set->rules[i].dirs & bit) && set->rules[i].match_len > longest) longest = set->rules[i].match_len;
    size_t arrays = n * (sizeof(struct rewrite_rule *) + sizeof(size_t) + sizeof(uint32_t));
    /* hold: longest - 1; seam: hold plus the longest match - 1 of input. */
    struct rw_state *st = calloc(1, sizeof(*st) + arrays + 3 * longest);
    if (!st) return -1;
    st->rules = (const struct rewrite_rule **)(st + 1);
    st->next = (size_t *)(st->rules + n);
    st->count = (uint32_t *)(st->next + n);
    st->hold = (uint8_t *)(st->count + n);
    st->holdcap = longest - 1;
    st->seam = st->hold + st->holdcap;
    for (size_t i = 0; i < set->n; i++)
        if (set->rules[i].dirs & bit) st->rules[st->n++] = &set->rules[i];
    update_maxlen(st);
    *ops = &rewrite_ops;
    *state = st;
    return 0;
}

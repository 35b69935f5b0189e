/* toxq.c - see toxq.h. Each push runs the chain over a list of segments
 * (offset, length, due time) of one copy of the input; the survivors
 * become pieces. */
#include "stage/toxq.h"

#include <stdlib.h>
#include <string.h>

struct toxq_piece {
    struct toxq_piece *next;
    uint64_t due;
    uint32_t len, off;
    uint8_t data[];
};

struct seg {
    size_t off, len;
    uint64_t due;
};

struct segs {
    struct seg *v;
    size_t n, cap;
};

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: fault injection needs cheap, not secret, randomness. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, n) (n > 0). */
static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return rng_next(s) % n;
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) / 9007199254740992.0;   /* 2^53 */
}

void toxq_init(struct toxq *q, uint64_t seed)
{
    memset(q, 0, sizeof(*q));
    q->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
}

void toxq_free(struct toxq *q)
{
    while (q->head) {
        struct toxq_piece *p = q->head;
        q->head = p->next;
        free(p);
    }
    q->tail = NULL;
    q->bytes = q->npieces = 0;
    free(q->runs);
    q->runs = NULL;
    q->nruns = 0;
}

static void run_start(struct toxq *q, struct toxq_run *r, uint64_t now)
{
    r->active = r->spec.toxicity >= 1.0 || rng_unit(&q->rng) < r->spec.toxicity;
    r->start_us = now;
    r->next_us = 0;
    r->count = 0;
    r->action_us = 0;
    if (r->active && r->spec.type == TOXIC_TIMEOUT && r->spec.timeout)
        r->action_us = now + r->spec.timeout * 1000;
}

/* Whether the queue runs this toxic on this stream. A lua toxic is a
 * stage of its own (relay/sess_toxics.c), not a queue toxic. */
static int toxq_takes(const struct toxic_spec *t, uint8_t stream)
{
    return (t->streams & stream) && t->type != TOXIC_LUA;
}

int toxq_configure(struct toxq *q, const struct toxic_set *set, uint8_t stream, uint64_t now)
{
    size_t n = 0;
    for (size_t i = 0; set && i < set->n; i++)
        if (toxq_takes(&set->t[i], stream)) n++;
    if (n > TOXQ_MAX_TOXICS) n = TOXQ_MAX_TOXICS;
    struct toxq_run *runs = n ? calloc(n, sizeof(*runs)) : NULL;
    if (n && !runs) return -1;
    size_t k = 0;
    for (size_t i = 0; set && i < set->n && k < n; i++) {
        const struct toxic_spec *t = &set->t[i];
        if (!toxq_takes(t, stream)) continue;
        struct toxq_run *r = &runs[k++];
        const struct toxq_run *old = NULL;
        for (size_t j = 0; j < q->nruns; j++)
            if (q->runs[j].spec.type == t->type && strcmp(q->runs[j].spec.name, t->name) == 0) old = &q->runs[j];
        if (old) {
            *r = *old;
            r->spec = *t;
            /* The flush below makes queued pieces due now; the pacing of
             * later data must start from now too, not from the old
             * setting's schedule (a latency lowered from 3 s to 0 would
             * otherwise hold new data until the 3 s mark). */
            if (r->next_us > now) r->next_us = now;
            /* A changed timeout counts from when the toxic began. */
            if (r->active && t->type == TOXIC_TIMEOUT)
                r->action_us = t->timeout ? r->start_us + t->timeout * 1000 : 0;
        } else {
            r->spec = *t;
            run_start(q, r, now);
        }
    }
    free(q->runs);
    q->runs = runs;
    q->nruns = n;
    for (struct toxq_piece *p = q->head; p; p = p->next)
        if (p->due > now) p->due = now;
    if (q->last_due > now) q->last_due = now;
    return 0;
}

/* With a slicer, one push may become many pieces: take less at a time. */
size_t toxq_room(const struct toxq *q)
{
    if (q->npieces >= TOXQ_MAX_PIECES || q->bytes >= TOXQ_MAX_BYTES) return 0;
    size_t room = TOXQ_MAX_BYTES - q->bytes;
    for (size_t i = 0; i < q->nruns; i++) {
        const struct toxq_run *r = &q->runs[i];
        if (r->active && r->spec.type == TOXIC_SLICER && r->spec.average_size * 64 < room)
            room = (size_t)r->spec.average_size * 64;
    }
    return room;
}

int toxq_has_room(const struct toxq *q)
{
    return toxq_room(q) > 0;
}

static int segs_add(struct segs *s, size_t off, size_t len, uint64_t due)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct seg *v = realloc(s->v, cap * sizeof(*v));
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (struct seg){ off, len, due };
    return 0;
}

/* toxiproxy's slicer: halve around the middle +- variation until a part
 * is within variation of the average size. */
static int slice(struct toxq *q, const struct toxic_spec *t, struct segs *out, size_t off, size_t len,
                 uint64_t *due)
{
    if (len <= t->average_size + t->size_variation) {
        int r = segs_add(out, off, len, *due);
        *due += t->delay;
        return r;
    }
    int64_t var = (int64_t)t->size_variation;
    int64_t jitter = var ? (int64_t)rng_below(&q->rng, (uint64_t)(2 * var)) - var : 0;
    int64_t mid = (int64_t)len / 2 + jitter;
    if (mid < 1) mid = 1;
    if (mid >= (int64_t)len) mid = (int64_t)len - 1;
    if (slice(q, t, out, off, (size_t)mid, due) < 0) return -1;
    return slice(q, t, out, off + (size_t)mid, len - (size_t)mid, due);
}

/* Runs one toxic over the segments; the result replaces them. */
static int apply(struct toxq *q, struct toxq_run *r, uint8_t *data, struct segs *in, struct segs *out)
{
    const struct toxic_spec *t = &r->spec;
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        struct seg s = in->v[i];
        switch (t->type) {
        case TOXIC_LATENCY: {
            int64_t d = (int64_t)t->latency * 1000;
            if (t->jitter) d += (int64_t)rng_below(&q->rng, 2 * t->jitter * 1000 + 1) - (int64_t)t->jitter * 1000;
            uint64_t due = s.due + (uint64_t)(d > 0 ? d : 0);
            s.due = due > r->next_us ? due : r->next_us;
            r->next_us = s.due;
            if (segs_add(out, s.off, s.len, s.due) < 0) return -1;
            break;
        }
        case TOXIC_BANDWIDTH: {
            if (t->rate == 0) {
                if (segs_add(out, s.off, s.len, s.due) < 0) return -1;
                break;
            }
            /* rate KB/s = rate bytes per ms; release in 100 ms portions. */
            size_t portion = (size_t)(t->rate * 100);
            for (size_t done = 0; done < s.len;) {
                size_t n = s.len - done < portion ? s.len - done : portion;
                uint64_t start = s.due > r->next_us ? s.due : r->next_us;
                r->next_us = start + (uint64_t)n * 1000 / t->rate;
                if (segs_add(out, s.off + done, n, r->next_us) < 0) return -1;
                done += n;
            }
            break;
        }
        case TOXIC_SLICER: {
            uint64_t due = s.due > r->next_us ? s.due : r->next_us;
            if (slice(q, t, out, s.off, s.len, &due) < 0) return -1;
            r->next_us = due;
            break;
        }
        case TOXIC_BITFLIP:
            for (size_t j = 0; j < s.len; j++) {
                r->count++;
                int flip = t->every ? r->count % t->every == 0
                                    : t->probability > 0 && rng_unit(&q->rng) < t->probability;
                if (flip) data[s.off + j] ^= (uint8_t)(1u << rng_below(&q->rng, 8));
            }
            if (segs_add(out, s.off, s.len, s.due) < 0) return -1;
            break;
        case TOXIC_LIMIT_DATA: {
            uint64_t left = t->bytes > r->count ? t->bytes - r->count : 0;
            size_t n = s.len < left ? s.len : (size_t)left;
            r->count += n;
            if (n && segs_add(out, s.off, n, s.due) < 0) return -1;
            if (r->count >= t->bytes) q->cut = 1;
            break;
        }
        case TOXIC_TIMEOUT:
            break;      /* dropped on the floor, as toxiproxy does */
        case TOXIC_RESET_PEER:
            /* The first data starts the countdown; data is not forwarded. */
            if (!r->action_us) r->action_us = s.due + t->timeout * 1000;
            /* 0 means "not armed": with timeout=0 and a clock that starts
             * at 0 (times are the caller's), the reset is still due. */
            if (!r->action_us) r->action_us = 1;
            break;
        case TOXIC_SLOW_CLOSE:
        default:
            if (segs_add(out, s.off, s.len, s.due) < 0) return -1;
            break;
        }
    }
    return 0;
}

int toxq_push(struct toxq *q, const uint8_t *p, size_t n, uint64_t now)
{
    if (q->cut || n == 0) return 0;
    uint8_t *data = malloc(n);
    struct segs a = { 0 }, b = { 0 };
    int rc = -1;
    if (!data || segs_add(&a, 0, n, now) < 0) goto out;
    memcpy(data, p, n);
    for (size_t i = 0; i < q->nruns && a.n; i++) {
        if (!q->runs[i].active) continue;
        if (apply(q, &q->runs[i], data, &a, &b) < 0) goto out;
        struct segs tmp = a;
        a = b;
        b = tmp;
    }
    for (size_t i = 0; i < a.n; i++) {
        struct seg *s = &a.v[i];
        if (!s->len) continue;
        struct toxq_piece *pc = malloc(sizeof(*pc) + s->len);
        if (!pc) goto out;
        pc->next = NULL;
        pc->due = s->due > q->last_due ? s->due : q->last_due;
        q->last_due = pc->due;
        pc->len = (uint32_t)s->len;
        pc->off = 0;
        memcpy(pc->data, data + s->off, s->len);
        if (q->tail) q->tail->next = pc;
        else q->head = pc;
        q->tail = pc;
        q->bytes += s->len;
        q->npieces++;
    }
    rc = 0;
out:
    free(data);
    free(a.v);
    free(b.v);
    return rc;
}

void toxq_push_eof(struct toxq *q, uint64_t now)
{
    if (q->eof_in) return;
    uint64_t due = now > q->last_due ? now : q->last_due;
    for (size_t i = 0; i < q->nruns; i++)
        if (q->runs[i].active && q->runs[i].spec.type == TOXIC_SLOW_CLOSE) due += q->runs[i].spec.delay * 1000;
    q->eof_in = 1;
    q->eof_due = due;
}

const uint8_t *toxq_peek(const struct toxq *q, uint64_t now, size_t *len)
{
    const struct toxq_piece *p = q->head;
    if (!p || p->due > now) return NULL;
    *len = p->len - p->off;
    return p->data + p->off;
}

void toxq_consume(struct toxq *q, size_t n)
{
    struct toxq_piece *p = q->head;
    if (!p) return;
    p->off += (uint32_t)n;
    q->bytes -= n;
    if (p->off < p->len) return;
    q->head = p->next;
    if (!q->head) q->tail = NULL;
    q->npieces--;
    free(p);
}

int toxq_eof_due(const struct toxq *q, uint64_t now)
{
    return q->eof_in && !q->head && q->eof_due <= now;
}

enum toxq_action toxq_action(const struct toxq *q, uint64_t now)
{
    enum toxq_action a = TOXQ_NONE;
    for (size_t i = 0; i < q->nruns; i++) {
        const struct toxq_run *r = &q->runs[i];
        if (!r->active || !r->action_us || r->action_us > now) continue;
        if (r->spec.type == TOXIC_RESET_PEER) return TOXQ_RESET;
        a = TOXQ_CLOSE;
    }
    if (q->cut && !q->head) a = TOXQ_CLOSE;
    return a;
}

uint64_t toxq_next_wakeup(const struct toxq *q)
{
    uint64_t t = UINT64_MAX;
    if (q->head) t = q->head->due;
    else if (q->eof_in && q->eof_due < t) t = q->eof_due;
    for (size_t i = 0; i < q->nruns; i++) {
        const struct toxq_run *r = &q->runs[i];
        if (r->active && r->action_us && r->action_us < t) t = r->action_us;
    }
    return t;
}

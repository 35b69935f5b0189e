/* rewrite_ref.h - the rewrite rules' meaning, written the slow, obvious
 * way, for the unit test and the fuzz target to check the stage against:
 * at each position try the direction's rules in order (skipping those that
 * made their max), replace the first that matches and go on after its
 * match, else copy one byte.
 */
#ifndef FERRY_REWRITE_REF_H
#define FERRY_REWRITE_REF_H

#include <stdlib.h>
#include <string.h>

#include "stage/rewrite.h"

struct rw_ref_out {
    uint8_t *p;
    size_t n, cap;
};

/* Appends; aborts when out of memory (a test has nothing better to do). */
static inline void rw_ref_put(struct rw_ref_out *o, const uint8_t *p, size_t n)
{
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2 + 64;
        o->p = realloc(o->p, o->cap);
        if (!o->p) abort();
    }
    if (n) memcpy(o->p + o->n, p, n);
    o->n += n;
}

/* The whole output for `in` in one direction; o->p is malloc'ed. */
static inline struct rw_ref_out rw_ref_rewrite(const struct rewrite_set *set, int upstream, const uint8_t *in,
                                               size_t n)
{
    struct rw_ref_out out = { NULL, 0, 0 };
    uint32_t count[REWRITE_MAX_RULES] = { 0 };
    uint8_t bit = upstream ? REWRITE_UPSTREAM : REWRITE_DOWNSTREAM;
    for (size_t i = 0; i < n;) {
        size_t r;
        for (r = 0; r < set->n; r++) {
            const struct rewrite_rule *x = &set->rules[r];
            if (!(x->dirs & bit) || (x->max && count[r] == x->max)) continue;
            if (i + x->match_len <= n && memcmp(in + i, x->match, x->match_len) == 0) break;
        }
        if (r == set->n) {
            rw_ref_put(&out, in + i++, 1);
            continue;
        }
        rw_ref_put(&out, set->rules[r].repl, set->rules[r].repl_len);
        i += set->rules[r].match_len;
        count[r]++;
    }
    return out;
}

#endif

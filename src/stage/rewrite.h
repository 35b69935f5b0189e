/* rewrite.h - rewrite rules: search and replace on relayed bytes, as a
 * filter stage (stage/stage.h, role STAGE_FILTER). docs/FILTERS.md has the
 * user's view.
 *
 * A rule: a direction, a match (1..REWRITE_MAX_LEN bytes), a replacement
 * (0..REWRITE_MAX_LEN bytes) and at most how many replacements a session
 * makes with it, per direction. Spec (CLI `--rewrite`, config `rewrite:`):
 *
 *     DIR:MATCH:REPLACEMENT[:max=N]
 *
 * DIR is upstream (client -> server), downstream or both. MATCH and
 * REPLACEMENT are text with C escapes (\n \r \t \0 \\ \: \xHH), where an
 * unescaped ':' ends the field, or `hex:` and pairs of hex digits. Text that
 * begins with "hex:" literally is written "hex\:".
 *
 * The rules of one direction make one scan (not successive passes): at
 * each position, the first rule in the order given that matches there
 * wins, its match is replaced and the scan goes on after it; so matches are
 * leftmost and never overlap (sed's s///g), and a replacement is never
 * matched again. A rule that has made its max replacements stops matching.
 *
 * Pure: no sockets, no loop, no logging. Parsing does not allocate.
 */
#ifndef FERRY_REWRITE_H
#define FERRY_REWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "stage/stage.h"

#define REWRITE_MAX_LEN 4096      /* bytes of a match, and of a replacement */
#define REWRITE_MAX_RULES 32      /* per listener */
/* How long bytes that may start a match wait for the rest (see rewrite.c):
 * then they go on as they are. */
#define REWRITE_HOLD_MAX_US 20000u

enum { REWRITE_UPSTREAM = 1, REWRITE_DOWNSTREAM = 2 };

struct rewrite_rule {
    uint8_t dirs;                 /* REWRITE_UPSTREAM | REWRITE_DOWNSTREAM bits */
    uint32_t max;                 /* replacements per session and direction; 0 = no limit */
    size_t match_len, repl_len;   /* match_len >= 1 */
    uint8_t match[REWRITE_MAX_LEN];
    uint8_t repl[REWRITE_MAX_LEN];
};

/* A listener's rules, in the order given. Immutable once the listener
 * runs: stages point into it, so it must outlive every stage made from it. */
struct rewrite_set {
    struct rewrite_rule *rules;   /* malloc'ed; NULL when n == 0 */
    size_t n;
};

/* Parses one spec into *out. 0, or -1 with "column N: what is wrong" in
 * err (N counts bytes of spec from 1). */
int rewrite_parse(const char *spec, struct rewrite_rule *out, char *err, size_t errlen);

/* Appends a copy of r. 0, or -1 with a reason (too many rules, out of memory). */
int rewrite_set_add(struct rewrite_set *set, const struct rewrite_rule *r, char *err, size_t errlen);
void rewrite_set_free(struct rewrite_set *set);
/* How many of the set's rules apply to a direction (upstream: 1 for client
 * -> server, 0 for server -> client). */
size_t rewrite_set_count(const struct rewrite_set *set, int upstream);

/* The filter stage of one direction of one session. 0 with *ops and
 * *state set; 0 with both NULL when no rule applies to that direction (no
 * stage needed); -1 when out of memory. The state is released with
 * (*ops)->free(). It keeps back at most the longest match - 1 bytes of
 * input, plus the part of one replacement that did not fit the output. */
int rewrite_stage_new(const struct rewrite_set *set, int upstream, const struct stage_ops **ops, void **state);

#endif

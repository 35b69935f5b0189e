/* fuzz_rewrite.c - libFuzzer target for rewrite rules: the spec parser
 * (rewrite_parse) and the filter stage (stage/rewrite.c).
 *
 * Input: one control byte, then specs separated by '\n' up to the first
 * NUL byte (at most 8, each cut at 8192 bytes), then the data to relay.
 * The control byte seeds how the data is cut into chunks, how much output
 * room each call gets (1 to 16 bytes, or 64 KiB) and whether the end of
 * input comes with the last chunk or alone. Invariants (abort() on
 * violation):
 *   - rewrite_parse returns 0 or -1, the same with a tiny err buffer; on -1
 *     err is a printable line starting "column N: " with N inside the spec
 *     (or just past it); on 0 the rule has a direction, a match of 1 to
 *     REWRITE_MAX_LEN bytes and a replacement of at most that;
 *   - for each direction with rules: every call takes no more input than
 *     given and makes no more than outcap bytes, takes all input when it
 *     leaves room in the output, never stalls, ends with out_eof, and the
 *     output equals the reference's (tests/unit/rewrite_ref.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage/rewrite.h"
#include "../tests/unit/rewrite_ref.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define ERRLEN 160
#define MAX_SPECS 8
#define SPEC_MAX 8192

static void check_err(const char *err, size_t speclen)
{
    size_t n = strnlen(err, ERRLEN);
    unsigned long col = 0;
    CHECK(n > 0 && n < ERRLEN);
    for (size_t i = 0; i < n; i++) CHECK(err[i] >= 0x20 && err[i] < 0x7f);
    CHECK(sscanf(err, "column %lu: ", &col) == 1);
    CHECK(col >= 1 && col <= speclen + 1);
}

static void check_rule(const struct rewrite_rule *r)
{
    CHECK(r->dirs && !(r->dirs & ~(REWRITE_UPSTREAM | REWRITE_DOWNSTREAM)));
    CHECK(r->match_len >= 1 && r->match_len <= REWRITE_MAX_LEN);
    CHECK(r->repl_len <= REWRITE_MAX_LEN);
}

/* Parses one spec (len bytes, no NUL) and adds it to the set when good. */
static void one_spec(const uint8_t *p, size_t len, struct rewrite_set *set)
{
    char *s = malloc(len + 1), err[ERRLEN], tiny[4];
    struct rewrite_rule *r = malloc(sizeof(*r));
    if (!s || !r) abort();
    memcpy(s, p, len);
    s[len] = '\0';
    err[0] = '\0';
    int rc = rewrite_parse(s, r, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    CHECK(rewrite_parse(s, r, tiny, sizeof tiny) == rc);
    if (rc < 0) {
        check_err(err, len);
    } else {
        check_rule(r);
        if (set->n < REWRITE_MAX_RULES) CHECK(rewrite_set_add(set, r, err, sizeof err) == 0);
    }
    free(r);
    free(s);
}

/* xorshift: the feed's choices, reproducible from the control byte. */
static uint32_t next_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* Feeds data through a stage the way the pump does and checks it. */
static void run_stage(const struct rewrite_set *set, int up, const uint8_t *data, size_t n, uint8_t ctrl)
{
    const struct stage_ops *ops;
    void *st;
    CHECK(rewrite_stage_new(set, up, &ops, &st) == 0);
    if (!st) return;
    uint32_t x = 0x9e3779b9u ^ ctrl;
    size_t outcap = ctrl & 0x10 ? 65536 : 1 + (ctrl & 0x0f), pos = 0, chunk_end = 0;
    int eof_apart = (ctrl & 0x20) != 0;
    uint8_t *buf = malloc(outcap);
    struct rw_ref_out got = { NULL, 0, 0 };
    if (!buf) abort();
    for (;;) {
        if (pos == chunk_end && chunk_end < n) chunk_end += 1 + next_rand(&x) % (ctrl & 0x40 ? 4 : 600);
        if (chunk_end > n) chunk_end = n;
        struct stage_io io = { .in = chunk_end > pos ? data + pos : NULL, .inlen = chunk_end - pos,
                               .in_eof = chunk_end == n && (!eof_apart || pos == n), .out = buf,
                               .outcap = outcap };
        CHECK(ops->process(st, &io) == STAGE_OK);
        CHECK(io.used <= io.inlen && io.made <= outcap);
        CHECK(io.made == outcap || io.used == io.inlen);
        CHECK(io.used || io.made || io.out_eof);      /* else the chain would stall */
        rw_ref_put(&got, buf, io.made);
        if (io.out_eof) break;
        pos += io.used;
    }
    struct rw_ref_out want = rw_ref_rewrite(set, up, data, n);
    CHECK(want.n == got.n && (!want.n || memcmp(want.p, got.p, want.n) == 0));
    free(want.p);
    free(got.p);
    free(buf);
    ops->free(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rewrite_set set = { NULL, 0 };
    if (size < 1) return 0;
    uint8_t ctrl = data[0];
    const uint8_t *p = data + 1, *end = data + size;
    const uint8_t *nul = memchr(p, 0, (size_t)(end - p));
    const uint8_t *specs_end = nul ? nul : end;
    for (size_t k = 0; k < MAX_SPECS && p < specs_end; k++) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(specs_end - p));
        const uint8_t *e = nl ? nl : specs_end;
        size_t len = (size_t)(e - p);
        one_spec(p, len < SPEC_MAX ? len : SPEC_MAX, &set);
        p = nl ? nl + 1 : specs_end;
    }
    if (nul && set.n) {
        run_stage(&set, 1, nul + 1, (size_t)(end - nul - 1), ctrl);
        run_stage(&set, 0, nul + 1, (size_t)(end - nul - 1), ctrl);
    }
    rewrite_set_free(&set);
    return 0;
}

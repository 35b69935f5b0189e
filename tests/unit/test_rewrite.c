/* test_rewrite.c - unit tests for rewrite rules: the spec parser
 * (stage/rewrite_spec.c) and the filter stage (stage/rewrite.c).
 *
 * The stage is checked against a naive reference (rewrite_ref.h: at each
 * position try the rules in order, else copy one byte) over every way of cutting the
 * input: at every byte position, one byte at a time, with the end of input
 * given with the last bytes or apart, and with outputs of 1 to 7 bytes.
 * The driver plays the pump's part (stage.h): unused input is offered
 * again, and a call that leaves room in the output must take all input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage/rewrite.h"
#include "rewrite_ref.h"

/* ---- helpers ---- */

static struct rewrite_rule parse_ok(const char *spec)
{
    struct rewrite_rule r;
    char err[256] = "";
    if (rewrite_parse(spec, &r, err, sizeof err) != 0) fail_msg("rewrite_parse(%s): %s", spec, err);
    return r;
}

static void expect_error(const char *spec, const char *want)
{
    struct rewrite_rule r;
    char err[256] = "";
    assert_int_equal(rewrite_parse(spec, &r, err, sizeof err), -1);
    if (strcmp(err, want) != 0) fail_msg("rewrite_parse(%s):\n  got  %s\n  want %s", spec, err, want);
}

/* A set from NULL-terminated specs; freed with rewrite_set_free. */
static struct rewrite_set make_set(const char *first, ...)
{
    struct rewrite_set set = { NULL, 0 };
    char err[256];
    va_list ap;
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *)) {
        struct rewrite_rule r = parse_ok(s);
        assert_int_equal(rewrite_set_add(&set, &r, err, sizeof err), 0);
    }
    va_end(ap);
    return set;
}

#define SET(...) make_set(__VA_ARGS__, (const char *)NULL)

/* How the input reaches the stage: chunks ending at ends[0..nends) (the
 * last is the input's length), outcap bytes of room per call, and the end
 * of input with the last chunk or in a call of its own. */
struct feed {
    const size_t *ends;
    size_t nends;
    size_t outcap;
    int eof_apart;
};

static int one_call(const struct stage_ops *ops, void *st, struct stage_io *io, struct rw_ref_out *out)
{
    uint8_t *buf = malloc(io->outcap);
    assert_non_null(buf);
    io->out = buf;
    assert_int_equal(ops->process(st, io), STAGE_OK);
    assert_true(io->used <= io->inlen);
    assert_true(io->made <= io->outcap);
    /* Input left unused with room in the output would stall the chain. */
    if (io->made < io->outcap) assert_int_equal(io->used, io->inlen);
    rw_ref_put(out, buf, io->made);
    free(buf);
    return io->out_eof;
}

static struct rw_ref_out drive(const struct rewrite_set *set, int up, const uint8_t *in, size_t n, const struct feed *f)
{
    const struct stage_ops *ops;
    void *st;
    struct rw_ref_out out = { NULL, 0, 0 };
    size_t pos = 0, ci = 0, idle = 0;
    assert_int_equal(rewrite_stage_new(set, up, &ops, &st), 0);
    if (!st) {                    /* no rule for this direction: no stage, bytes as they are */
        rw_ref_put(&out, in, n);
        return out;
    }
    for (;;) {
        struct stage_io io = { 0 };
        size_t end = f->ends[ci];
        io.in = end > pos ? in + pos : NULL;
        io.inlen = end - pos;
        io.in_eof = ci + 1 == f->nends && (!f->eof_apart || pos == n);
        io.outcap = f->outcap;
        if (one_call(ops, st, &io, &out)) break;
        pos += io.used;
        int moved = io.used || io.made;
        if (pos == end && ci + 1 < f->nends) {
            ci++;
            moved = 1;
        }
        idle = moved ? 0 : idle + 1;
        if (idle > 2) fail_msg("stage stalled at %zu of %zu bytes", pos, n);
    }
    ops->free(st);
    return out;
}

static void expect_same(const struct rw_ref_out *want, const struct rw_ref_out *got, const char *how, size_t a, size_t b)
{
    if (want->n == got->n && (!want->n || memcmp(want->p, got->p, want->n) == 0)) return;
    fail_msg("%s (%zu, %zu): got %zu bytes '%.*s', want %zu bytes '%.*s'", how, a, b, got->n, (int)got->n,
             (const char *)got->p, want->n, (int)want->n, (const char *)want->p);
}

/* Every way of feeding `in` gives the reference's output. */
static void check_all_feeds(const struct rewrite_set *set, int up, const uint8_t *in, size_t n)
{
    struct rw_ref_out want = rw_ref_rewrite(set, up, in, n);
    size_t *ends = malloc((n + 1) * sizeof(*ends));
    assert_non_null(ends);
    for (size_t split = 0; split <= n; split++)
        for (int apart = 0; apart < 2; apart++) {
            size_t two[2] = { split, n };
            struct feed f = { two, 2, 65536, apart };
            struct rw_ref_out got = drive(set, up, in, n, &f);
            expect_same(&want, &got, "split at", split, (size_t)apart);
            free(got.p);
        }
    for (size_t i = 0; i < n; i++) ends[i] = i + 1;
    for (size_t cap = 1; cap <= 8; cap++)
        for (int apart = 0; apart < 2; apart++) {
            struct feed bytewise = { ends, n ? n : 1, cap == 8 ? 65536 : cap, apart };
            size_t whole[1] = { n };
            struct feed oneshot = { whole, 1, cap == 8 ? 65536 : cap, apart };
            if (!n) ends[0] = 0;
            struct rw_ref_out a = drive(set, up, in, n, &bytewise), b = drive(set, up, in, n, &oneshot);
            expect_same(&want, &a, "byte at a time, outcap", cap, (size_t)apart);
            expect_same(&want, &b, "one chunk, outcap", cap, (size_t)apart);
            free(a.p);
            free(b.p);
        }
    free(ends);
    free(want.p);
}

static void check_text(const struct rewrite_set *set, int up, const char *in, const char *want)
{
    struct rw_ref_out ref = rw_ref_rewrite(set, up, (const uint8_t *)in, strlen(in));
    struct rw_ref_out w = { (uint8_t *)want, strlen(want), 0 };
    expect_same(&w, &ref, "reference", 0, 0);
    free(ref.p);
    check_all_feeds(set, up, (const uint8_t *)in, strlen(in));
}

/* ---- the parser ---- */

static void test_parse_good(void **unused)
{
    struct rewrite_rule r = parse_ok("upstream:User-Agent\\: curl:User-Agent\\: ferry");
    assert_int_equal(r.dirs, REWRITE_UPSTREAM);
    assert_int_equal(r.match_len, 16);
    assert_memory_equal(r.match, "User-Agent: curl", 16);
    assert_int_equal(r.repl_len, 17);
    assert_memory_equal(r.repl, "User-Agent: ferry", 17);
    assert_int_equal(r.max, 0);

    r = parse_ok("downstream:hex:0D0a00ff:");
    assert_int_equal(r.dirs, REWRITE_DOWNSTREAM);
    assert_int_equal(r.match_len, 4);
    assert_memory_equal(r.match, "\r\n\0\xff", 4);
    assert_int_equal(r.repl_len, 0);

    r = parse_ok("both:a\\n\\r\\t\\0\\\\\\:\\x41\\xfF:hex:414243:max=7");
    assert_int_equal(r.dirs, REWRITE_UPSTREAM | REWRITE_DOWNSTREAM);
    assert_int_equal(r.match_len, 9);
    assert_memory_equal(r.match, "a\n\r\t\0\\:A\xff", 9);
    assert_memory_equal(r.repl, "ABC", 3);
    assert_int_equal(r.max, 7);

    r = parse_ok("upstream:hex\\:00:hexagon:max=4294967295");
    assert_memory_equal(r.match, "hex:00", 6);
    assert_int_equal(r.match_len, 6);
    assert_memory_equal(r.repl, "hexagon", 7);
    assert_int_equal(r.max, 4294967295u);

    r = parse_ok("upstream:x:hex:");    /* empty hex replacement */
    assert_int_equal(r.repl_len, 0);

    char big[9 + REWRITE_MAX_LEN + 1 + 1];
    memcpy(big, "upstream:", 9);
    memset(big + 9, 'a', REWRITE_MAX_LEN);
    memcpy(big + 9 + REWRITE_MAX_LEN, ":", 2);
    r = parse_ok(big);
    assert_int_equal(r.match_len, REWRITE_MAX_LEN);
}

static void test_parse_bad(void **unused)
{
    const char *dir = "expected upstream, downstream or both, then ':' (DIR:MATCH:REPLACEMENT[:max=N])";
    char want[200];
    snprintf(want, sizeof want, "column 1: %s", dir);
    expect_error("", want);
    expect_error("sideways:a:b", want);
    expect_error("up:a:b", want);
    expect_error("upstream", "column 9: expected ':' and the match after the direction");
    expect_error("upstream::b", "column 10: the match is empty");
    expect_error("upstream:hex::b", "column 10: the match is empty");
    expect_error("upstream:a", "column 11: expected ':' and the replacement after the match (it may be empty)");
    expect_error("upstream:a\\q:b",
                 "column 11: match: unknown escape '\\q' (use \\n \\r \\t \\0 \\\\ \\: or \\xHH)");
    expect_error("upstream:a:b\\\x01",
                 "column 13: replacement: unknown escape '\\\\x01' (use \\n \\r \\t \\0 \\\\ \\: or \\xHH)");
    expect_error("upstream:a:b\\", "column 13: replacement: a lone '\\' at the end (write \\\\ for a backslash)");
    expect_error("upstream:\\x4:b", "column 10: match: \\x needs two hex digits");
    expect_error("upstream:\\x", "column 10: match: \\x needs two hex digits");
    expect_error("upstream:hex:0g:b", "column 15: match: 'g' is not a hex digit");
    expect_error("upstream:hex: 0:b", "column 14: match: '\\x20' is not a hex digit");
    expect_error("upstream:hex:abc:b", "column 16: match: odd number of hex digits");
    expect_error("upstream:a:hex:1", "column 16: replacement: odd number of hex digits");
    expect_error("upstream:a:b:c", "column 14: expected max=N after the replacement (write \\: for a ':' in it)");
    expect_error("upstream:a:b:", "column 14: expected max=N after the replacement (write \\: for a ':' in it)");
    expect_error("upstream:a:b:max=1:", "column 18: max: expected a number from 1 to 4294967295");
    expect_error("upstream:a:b:max=0", "column 18: max: expected a number from 1 to 4294967295");
    expect_error("upstream:a:b:max=", "column 18: max: expected a number from 1 to 4294967295");
    expect_error("upstream:a:b:max=-1", "column 18: max: expected a number from 1 to 4294967295");
    expect_error("upstream:a:b:max=4294967296", "column 18: max: expected a number from 1 to 4294967295");

    char big[9 + 2 * (REWRITE_MAX_LEN + 1) + 2];
    memcpy(big, "upstream:", 9);
    memset(big + 9, 'a', REWRITE_MAX_LEN + 1);
    big[9 + REWRITE_MAX_LEN + 1] = '\0';
    expect_error(big, "column 4106: match: longer than 4096 bytes");
    memcpy(big + 9, "a:", 2);
    memset(big + 11, 'b', REWRITE_MAX_LEN + 1);
    big[11 + REWRITE_MAX_LEN + 1] = '\0';
    expect_error(big, "column 4108: replacement: longer than 4096 bytes");

    /* A tiny err buffer is cut, never overrun. */
    struct rewrite_rule r;
    char tiny[5] = "xxxx";
    assert_int_equal(rewrite_parse("nope", &r, tiny, sizeof tiny), -1);
    assert_string_equal(tiny, "colu");
}

static void test_set(void **unused)
{
    struct rewrite_set set = SET("upstream:a:b", "downstream:c:d", "both:e:f");
    char err[100];
    assert_int_equal(rewrite_set_count(&set, 1), 2);
    assert_int_equal(rewrite_set_count(&set, 0), 2);
    struct rewrite_rule r = parse_ok("upstream:a:b");
    while (set.n < REWRITE_MAX_RULES) assert_int_equal(rewrite_set_add(&set, &r, err, sizeof err), 0);
    assert_int_equal(rewrite_set_add(&set, &r, err, sizeof err), -1);
    assert_string_equal(err, "too many rewrite rules (max 32)");
    rewrite_set_free(&set);
    assert_null(set.rules);

    /* No rule for a direction: no stage. */
    const struct stage_ops *ops = (const void *)1;
    void *st = (void *)1;
    set = SET("upstream:a:b");
    assert_int_equal(rewrite_stage_new(&set, 0, &ops, &st), 0);
    assert_null(ops);
    assert_null(st);
    assert_int_equal(rewrite_stage_new(&set, 1, &ops, &st), 0);
    assert_non_null(st);
    assert_string_equal(ops->name, "rewrite");
    assert_int_equal(ops->role, STAGE_FILTER);
    ops->free(st);
    rewrite_set_free(&set);
}

/* ---- the stage ---- */

static void test_simple_and_straddling(void **unused)
{
    struct rewrite_set set = SET("upstream:Host\\: old.example:Host\\: new.example.org");
    check_text(&set, 1, "GET / HTTP/1.1\r\nHost: old.example\r\nX: Host: old.exampl\r\n\r\nHost: old.example",
               "GET / HTTP/1.1\r\nHost: new.example.org\r\nX: Host: old.exampl\r\n\r\nHost: new.example.org");
    check_text(&set, 0, "Host: old.example", "Host: old.example");   /* downstream: untouched */
    check_text(&set, 1, "", "");
    check_text(&set, 1, "Ho", "Ho");
    rewrite_set_free(&set);
}

static void test_leftmost_non_overlapping(void **unused)
{
    struct rewrite_set set = SET("both:aa:b");
    check_text(&set, 1, "aaaaa", "bba");
    check_text(&set, 0, "aaaa", "bb");
    rewrite_set_free(&set);
    set = SET("upstream:aba:X");
    check_text(&set, 1, "ababababa", "XbXba");
    rewrite_set_free(&set);
    /* The replacement is not scanned again. */
    set = SET("upstream:a:aa");
    check_text(&set, 1, "aaa", "aaaaaa");
    rewrite_set_free(&set);
}

static void test_several_rules_one_scan(void **unused)
{
    /* Same position: the first rule given wins. */
    struct rewrite_set set = SET("upstream:ab:1", "upstream:abc:2");
    check_text(&set, 1, "abcab", "1c1");
    rewrite_set_free(&set);
    set = SET("upstream:abc:2", "upstream:ab:1");
    check_text(&set, 1, "abcab", "21");
    rewrite_set_free(&set);
    /* Leftmost wins over rule order, even when the longer match is later
     * in the list and its end arrives last. */
    set = SET("upstream:bc:X", "upstream:abcd:Y");
    check_text(&set, 1, "abcd abc", "Y aX");
    rewrite_set_free(&set);
    /* One scan, not passes: b made by the first rule is not turned into c. */
    set = SET("downstream:a:b", "downstream:b:c");
    check_text(&set, 0, "ab", "bc");
    rewrite_set_free(&set);
}

static void test_max(void **unused)
{
    struct rewrite_set set = SET("upstream:a:b:max=2");
    check_text(&set, 1, "aaaa", "bbaa");
    check_text(&set, 1, "xaxaxax", "xbxbxax");
    rewrite_set_free(&set);
    /* Once the long rule is spent, the short one no longer waits for it. */
    set = SET("upstream:abcdef:1:max=1", "upstream:a:2");
    check_text(&set, 1, "abcdefabcdefab", "12bcdef2b");
    rewrite_set_free(&set);
    /* Counted per direction. */
    set = SET("both:x:y:max=1");
    check_text(&set, 1, "xx", "yx");
    check_text(&set, 0, "xx", "yx");
    rewrite_set_free(&set);
}

static void test_delete_and_long_replacement(void **unused)
{
    struct rewrite_set set = SET("downstream:\\r\\n:");
    check_text(&set, 0, "a\r\nb\r\r\n\n\r", "ab\r\n\r");
    rewrite_set_free(&set);
    char spec[300];
    snprintf(spec, sizeof spec, "upstream:x:%s", "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
    set = SET(spec);
    check_text(&set, 1, "xx-x", "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-"
                                "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
    rewrite_set_free(&set);
}

static void test_binary(void **unused)
{
    struct rewrite_set set = SET("downstream:hex:00ff00:hex:deadbeef", "downstream:hex:0000:hex:01");
    uint8_t in[200];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof in; i++) {
        x = x * 1103515245u + 12345u;
        in[i] = (uint8_t)((x >> 16) % 3 == 0 ? 0 : (x >> 16) % 3 == 1 ? 0xff : x >> 24);
    }
    memcpy(in + 50, "\x00\xff\x00\x00\x00", 5);
    check_all_feeds(&set, 0, in, sizeof in);
    rewrite_set_free(&set);
}

/* Random rules over a two-letter alphabet: many straddling and competing
 * matches, each checked under every feed. */
static void test_random(void **unused)
{
    uint32_t x = 99;
#define RND() (x = x * 1103515245u + 12345u, (x >> 16) & 0x7fff)
    for (int round = 0; round < 60; round++) {
        struct rewrite_set set = { NULL, 0 };
        char err[100];
        size_t nrules = 1 + RND() % 3;
        for (size_t k = 0; k < nrules; k++) {
            struct rewrite_rule r;
            memset(&r, 0, sizeof r);
            r.dirs = REWRITE_UPSTREAM;
            r.match_len = 1 + RND() % 4;
            r.repl_len = RND() % 4;
            r.max = RND() % 3 == 0 ? 1 + RND() % 3 : 0;
            for (size_t i = 0; i < r.match_len; i++) r.match[i] = (uint8_t)("ab"[RND() % 2]);
            for (size_t i = 0; i < r.repl_len; i++) r.repl[i] = (uint8_t)("XYZ"[RND() % 3]);
            assert_int_equal(rewrite_set_add(&set, &r, err, sizeof err), 0);
        }
        uint8_t in[40];
        size_t n = RND() % sizeof in;
        for (size_t i = 0; i < n; i++) in[i] = (uint8_t)("ab"[RND() % 2]);
        check_all_feeds(&set, 1, in, n);
        rewrite_set_free(&set);
    }
#undef RND
}

/* After out_eof, calls make nothing and say out_eof again; before the end
 * of input, the undecided tail is held, not sent. */
static void test_eof(void **unused)
{
    struct rewrite_set set = SET("upstream:abc:X");
    const struct stage_ops *ops;
    void *st;
    uint8_t out[16];
    assert_int_equal(rewrite_stage_new(&set, 1, &ops, &st), 0);
    struct stage_io io = { .in = (const uint8_t *)"xxab", .inlen = 4, .out = out, .outcap = sizeof out };
    ops->process(st, &io);
    assert_int_equal(io.used, 4);
    assert_int_equal(io.made, 2);      /* "ab" held: it may become "abc" */
    assert_false(io.out_eof);
    io = (struct stage_io){ .in = NULL, .inlen = 0, .in_eof = 1, .out = out, .outcap = 1 };
    ops->process(st, &io);
    assert_int_equal(io.made, 1);
    assert_false(io.out_eof);          /* "b" still held */
    io = (struct stage_io){ .in = NULL, .inlen = 0, .in_eof = 1, .out = out, .outcap = 1 };
    ops->process(st, &io);
    assert_int_equal(io.made, 1);
    assert_int_equal(out[0], 'b');
    assert_true(io.out_eof);
    io = (struct stage_io){ .in = NULL, .inlen = 0, .in_eof = 1, .out = out, .outcap = 1 };
    ops->process(st, &io);
    assert_int_equal(io.made, 0);
    assert_true(io.out_eof);
    ops->free(st);
    rewrite_set_free(&set);
}

/* Without EOF, only a tail that could still become a match waits: a
 * request that ends in plain bytes goes out whole, or a request/response
 * protocol would wait forever for its answer. */
static void test_holds_only_a_possible_match(void **unused)
{
    struct rewrite_set set = SET("upstream:Host\\: a:Host\\: b", "upstream:zz:y");
    const struct stage_ops *ops;
    void *st;
    uint8_t out[64];
    assert_int_equal(rewrite_stage_new(&set, 1, &ops, &st), 0);
    const char *req = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    struct stage_io io = { .in = (const uint8_t *)req, .inlen = strlen(req), .out = out, .outcap = sizeof out };
    ops->process(st, &io);
    assert_int_equal(io.used, strlen(req));
    assert_int_equal(io.made, strlen(req));
    assert_memory_equal(out, "GET / HTTP/1.1\r\nHost: b\r\n\r\n", io.made);
    io = (struct stage_io){ .in = (const uint8_t *)"xHost", .inlen = 5, .out = out, .outcap = sizeof out };
    ops->process(st, &io);
    assert_int_equal(io.made, 1);      /* "Host" may become "Host: a" */
    io = (struct stage_io){ .in = (const uint8_t *)"z", .inlen = 1, .out = out, .outcap = sizeof out };
    ops->process(st, &io);
    assert_int_equal(io.made, 4);      /* "Hostz" cannot: "Host" goes, "z" may become "zz" */
    assert_memory_equal(out, "Host", 4);
    ops->free(st);
    rewrite_set_free(&set);
}

/* A tail that may start a match waits REWRITE_HOLD_MAX_US for the rest,
 * and asks to be woken then; after that it goes on unmatched. */
static void test_hold_expires(void **unused)
{
    struct rewrite_set set = SET("upstream:abc:X");
    const struct stage_ops *ops;
    void *st;
    uint8_t out[16];
    assert_int_equal(rewrite_stage_new(&set, 1, &ops, &st), 0);
    struct stage_io io = { .in = (const uint8_t *)"xxab", .inlen = 4, .out = out, .outcap = sizeof out,
                           .now_us = 1000 };
    ops->process(st, &io);
    assert_int_equal(io.made, 2);
    assert_int_equal(ops->next_wakeup(st), 1000 + REWRITE_HOLD_MAX_US);
    io = (struct stage_io){ .out = out, .outcap = sizeof out, .now_us = 1000 + REWRITE_HOLD_MAX_US - 1 };
    ops->process(st, &io);
    assert_int_equal(io.made, 0);      /* still waiting */
    io = (struct stage_io){ .out = out, .outcap = sizeof out, .now_us = 1000 + REWRITE_HOLD_MAX_US };
    ops->process(st, &io);
    assert_int_equal(io.made, 2);
    assert_memory_equal(out, "ab", 2);
    assert_int_equal(ops->next_wakeup(st), UINT64_MAX);
    io = (struct stage_io){ .in = (const uint8_t *)"c", .inlen = 1, .out = out, .outcap = sizeof out,
                            .now_us = 30000 };
    ops->process(st, &io);
    assert_int_equal(io.made, 1);      /* "ab" + "c" arrived too far apart: no match */
    assert_int_equal(out[0], 'c');
    ops->free(st);
    rewrite_set_free(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_simple_and_straddling),
        cmocka_unit_test(test_leftmost_non_overlapping),
        cmocka_unit_test(test_several_rules_one_scan),
        cmocka_unit_test(test_max),
        cmocka_unit_test(test_delete_and_long_replacement),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_eof),
        cmocka_unit_test(test_holds_only_a_possible_match),
        cmocka_unit_test(test_hold_expires),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

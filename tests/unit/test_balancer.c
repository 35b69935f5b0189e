/* test_balancer.c - unit tests for upstream/balancer (smooth weighted RR).
 *
 * Expected sequences are nginx's: each pick adds every eligible server's
 * weight to its score, takes the highest (first on ties) and subtracts the
 * eligible total from it. The balancer is pure, so no clock is involved.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "upstream/balancer.h"

#define MAXS 70

struct fixture {
    struct lb_server s[MAXS];
    struct lb_group g;
};

static void setup_weights(struct fixture *f, const int *w, size_t n)
{
    memset(f, 0, sizeof *f);
    for (size_t i = 0; i < n; i++)
        f->s[i].weight = w[i];
    f->g.servers = f->s;
    f->g.n = n;
}

/* Picks len servers and writes them as letters: "aabacaa". */
static void picks(struct fixture *f, unsigned long long exclude, char *out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        int idx = lb_pick(&f->g, exclude);

        assert_in_range(idx, 0, (int)f->g.n - 1);
        out[i] = (char)('a' + idx);
    }
    out[len] = '\0';
}

static void test_nginx_5_1_1(void **state)
{
    static const int w[] = { 5, 1, 1 };
    struct fixture f;
    char seq[32];

    (void)state;
    setup_weights(&f, w, 3);
    picks(&f, 0, seq, 14);
    assert_string_equal(seq, "aabacaaaabacaa");
    /* After one full period every score is back to zero. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(f.s[i].current, 0);
}

static void test_3_1_interleaved(void **state)
{
    static const int w[] = { 3, 1 };
    struct fixture f;
    char seq[16];

    (void)state;
    setup_weights(&f, w, 2);
    picks(&f, 0, seq, 12);
    assert_string_equal(seq, "aabaaabaaaba");
}

/* Smoothness for 5:1:1: a plain weighted round robin would give runs of 5
 * ("aaaaabc"); the smooth one never more than 4 ("...c a a | a a b..."). */
static void test_5_1_1_longest_run(void **state)
{
    static const int w[] = { 5, 1, 1 };
    struct fixture f;
    char seq[701];
    size_t run = 0, longest = 0;

    (void)state;
    setup_weights(&f, w, 3);
    picks(&f, 0, seq, 700);
    for (size_t i = 0; i < 700; i++) {
        run = seq[i] == 'a' ? run + 1 : 0;
        if (run > longest)
            longest = run;
    }
    assert_int_equal(longest, 4);
}

/* Exact proportions over whole periods, and never a run longer than the
 * smooth algorithm allows. */
static void test_3_1_exact_over_4000(void **state)
{
    static const int w[] = { 3, 1 };
    struct fixture f;
    unsigned count[2] = { 0, 0 };
    int run = 0, longest = 0, prev = -1;

    (void)state;
    setup_weights(&f, w, 2);
    for (int i = 0; i < 4000; i++) {
        int idx = lb_pick(&f.g, 0);

        assert_in_range(idx, 0, 1);
        count[idx]++;
        run = idx == prev ? run + 1 : 1;
        prev = idx;
        if (idx == 0 && run > longest)
            longest = run;
    }
    assert_int_equal(count[0], 3000);
    assert_int_equal(count[1], 1000);
    /* The period is "aaba", so "...b a | a a b..." makes runs of 3. */
    assert_int_equal(longest, 3);
}

static void test_equal_weights_round_robin(void **state)
{
    static const int w[] = { 1, 1, 1, 1 };
    struct fixture f;
    char seq[16];

    (void)state;
    setup_weights(&f, w, 4);
    picks(&f, 0, seq, 9);
    assert_string_equal(seq, "abcdabcda");
}

static void test_many_weights_exact(void **state)
{
    static const int w[] = { 7, 3, 2, 1, 1000 };
    struct fixture f;
    unsigned count[5] = { 0 };
    const int total = 7 + 3 + 2 + 1 + 1000;

    (void)state;
    setup_weights(&f, w, 5);
    for (int i = 0; i < total * 3; i++)
        count[lb_pick(&f.g, 0)]++;
    for (int i = 0; i < 5; i++)
        assert_int_equal(count[i], 3 * w[i]);
}

/* Tried servers are skipped; they keep their score untouched. */
static void test_exclude(void **state)
{
    static const int w[] = { 3, 1, 1 };
    struct fixture f;
    char seq[16];

    (void)state;
    setup_weights(&f, w, 3);
    picks(&f, 1ULL << 0, seq, 4);
    assert_string_equal(seq, "bcbc");
    assert_int_equal(f.s[0].current, 0);
    assert_int_equal(f.s[0].active, 0);
    /* The winner pays the total of the eligible servers only (1 + 1), so
     * after a whole period of b and c their scores are back to zero. */
    assert_int_equal(f.s[1].current, 0);
    assert_int_equal(f.s[2].current, 0);

    picks(&f, (1ULL << 0) | (1ULL << 2), seq, 3);
    assert_string_equal(seq, "bbb");
    assert_int_equal(lb_pick(&f.g, 7), -1);
    assert_int_equal(lb_pick(&f.g, ~0ULL), -1);
    /* Bits above n mean nothing. */
    picks(&f, 1ULL << 40, seq, 1);
}

/* The failover pattern used by the relay: exclude what was tried. */
static void test_exclude_retry_visits_each_once(void **state)
{
    static const int w[] = { 5, 2, 1, 1 };
    struct fixture f;
    unsigned long long tried = 0;
    int idx;

    (void)state;
    setup_weights(&f, w, 4);
    for (int k = 0; k < 4; k++) {
        idx = lb_pick(&f.g, tried);
        assert_in_range(idx, 0, 3);
        assert_int_equal(tried & (1ULL << idx), 0);
        tried |= 1ULL << idx;
        lb_release(&f.g, idx, 1);
    }
    assert_int_equal(tried, 0xF);
    assert_int_equal(lb_pick(&f.g, tried), -1);
}

static void test_empty_group(void **state)
{
    struct lb_group g = { .servers = NULL, .n = 0 };

    (void)state;
    assert_int_equal(lb_pick(&g, 0), -1);
    lb_release(&g, 0, 1);           /* out of range: ignored */
}

/* Only the first 64 servers fit in the exclusion mask; the rest are never
 * picked (the config caps upstreams at 64). */
static void test_more_than_64(void **state)
{
    int w[MAXS];
    struct fixture f;
    unsigned seen[MAXS] = { 0 };

    (void)state;
    for (int i = 0; i < MAXS; i++)
        w[i] = 1;
    setup_weights(&f, w, MAXS);
    for (int i = 0; i < 64 * 2; i++)
        seen[lb_pick(&f.g, 0)]++;
    for (int i = 0; i < 64; i++)
        assert_int_equal(seen[i], 2);
    for (int i = 64; i < MAXS; i++)
        assert_int_equal(seen[i], 0);
}

static void test_release_bookkeeping(void **state)
{
    static const int w[] = { 1, 1 };
    struct fixture f;

    (void)state;
    setup_weights(&f, w, 2);
    assert_int_equal(lb_pick(&f.g, 0), 0);
    assert_int_equal(lb_pick(&f.g, 0), 1);
    assert_int_equal(lb_pick(&f.g, 0), 0);
    assert_int_equal(f.s[0].active, 2);
    assert_int_equal(f.s[1].active, 1);

    lb_release(&f.g, 0, 1);
    lb_release(&f.g, 0, 1);
    assert_int_equal(f.s[0].active, 0);
    assert_int_equal(f.s[0].fails, 2);
    /* No underflow when released more than picked. */
    lb_release(&f.g, 0, 1);
    assert_int_equal(f.s[0].active, 0);
    assert_int_equal(f.s[0].fails, 3);
    /* A success resets the consecutive-failure count. */
    lb_release(&f.g, 0, 0);
    assert_int_equal(f.s[0].fails, 0);

    lb_release(&f.g, 1, 0);
    assert_int_equal(f.s[1].active, 0);
    assert_int_equal(f.s[1].fails, 0);

    /* Out-of-range indexes change nothing. */
    lb_release(&f.g, -1, 1);
    lb_release(&f.g, 2, 1);
    assert_int_equal(f.s[0].fails + f.s[1].fails, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nginx_5_1_1),
        cmocka_unit_test(test_3_1_interleaved),
        cmocka_unit_test(test_3_1_exact_over_4000),
        cmocka_unit_test(test_5_1_1_longest_run),
        cmocka_unit_test(test_equal_weights_round_robin),
        cmocka_unit_test(test_many_weights_exact),
        cmocka_unit_test(test_exclude),
        cmocka_unit_test(test_exclude_retry_visits_each_once),
        cmocka_unit_test(test_empty_group),
        cmocka_unit_test(test_more_than_64),
        cmocka_unit_test(test_release_bookkeeping),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

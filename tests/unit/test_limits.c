/* test_limits.c - unit tests for policy/limits: per-IP connection counts,
 * token buckets (single and per IP) and time-of-day windows.
 *
 * Time is passed in, so the tests step a fake clock; no sleeps. The tables
 * are checked against simple reference models over pseudo-random traces.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "policy/limits.h"

static const uint8_t secret[LIMITS_KEY_LEN] = "0123456789abcdef";

static void v4(uint8_t ip[4], unsigned k)
{
    ip[0] = 10;
    ip[1] = (uint8_t)(k >> 16);
    ip[2] = (uint8_t)(k >> 8);
    ip[3] = (uint8_t)k;
}

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* ---- ipcount ---- */

static void test_ipcount_init_errors(void **state)
{
    struct ipcount t;
    char err[128];

    (void)state;
    assert_int_equal(ipcount_init(&t, 0, 128, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "table size 0"));
    assert_int_equal(ipcount_init(&t, LIMITS_MAX_IPS + 1, 128, NULL, err, sizeof err), -1);
    assert_int_equal(ipcount_init(&t, 10, 0, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "/0"));
    assert_int_equal(ipcount_init(&t, 10, 129, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "/129"));
    /* A failed init leaves a table that refuses everything, safely. */
    assert_int_equal(ipcount_inc(&t, (const uint8_t *)"\1\2\3\4", 4), -1);
    assert_int_equal(ipcount_get(&t, (const uint8_t *)"\1\2\3\4", 4), 0);
    ipcount_free(&t);
}

static void test_ipcount_basic(void **state)
{
    struct ipcount t;
    char err[128];
    uint8_t a[4], b[4];

    (void)state;
    assert_int_equal(ipcount_init(&t, 100, 128, secret, err, sizeof err), 0);
    v4(a, 1);
    v4(b, 2);
    assert_int_equal(ipcount_inc(&t, a, 4), 1);
    assert_int_equal(ipcount_inc(&t, a, 4), 2);
    assert_int_equal(ipcount_inc(&t, b, 4), 1);
    assert_int_equal(ipcount_inc(&t, a, 4), 3);
    assert_int_equal(ipcount_get(&t, a, 4), 3);
    assert_int_equal(t.used, 2);
    assert_int_equal(ipcount_dec(&t, a, 4), 2);
    assert_int_equal(ipcount_dec(&t, a, 4), 1);
    assert_int_equal(ipcount_dec(&t, a, 4), 0);
    assert_int_equal(t.used, 1);                    /* removed at zero */
    assert_int_equal(ipcount_dec(&t, a, 4), -1);    /* not counted */
    assert_int_equal(ipcount_get(&t, a, 4), 0);
    assert_int_equal(ipcount_get(&t, b, 4), 1);
    /* Bad lengths are refused and change nothing. */
    assert_int_equal(ipcount_inc(&t, a, 3), -1);
    assert_int_equal(ipcount_inc(&t, NULL, 4), -1);
    assert_int_equal(ipcount_dec(&t, b, 5), -1);
    assert_int_equal(ipcount_get(&t, b, 0), 0);
    assert_int_equal(t.used, 1);
    ipcount_free(&t);
    assert_null(t.slots);
}

/* ::ffff:10.0.0.1 is 10.0.0.1; IPv6 groups by prefix when asked. */
static void test_ipcount_mapped_and_prefix(void **state)
{
    static const uint8_t v4a[4] = { 10, 0, 0, 1 };
    static const uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff, 10, 0, 0, 1 };
    static const uint8_t x1[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, [15] = 1 };
    static const uint8_t x2[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, [8] = 0xaa, [15] = 2 };
    static const uint8_t y[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 2, [15] = 1 };
    struct ipcount t;
    char err[128];

    (void)state;
    assert_int_equal(ipcount_init(&t, 100, 64, secret, err, sizeof err), 0);
    assert_int_equal(ipcount_inc(&t, v4a, 4), 1);
    assert_int_equal(ipcount_inc(&t, mapped, 16), 2);
    assert_int_equal(ipcount_dec(&t, v4a, 4), 1);
    assert_int_equal(ipcount_get(&t, mapped, 16), 1);
    /* Mapped addresses are never masked by the v6 prefix: 10.0.0.2 is not
     * 10.0.0.1. */
    assert_int_equal(ipcount_inc(&t, (const uint8_t *)"\12\0\0\2", 4), 1);
    assert_int_equal(ipcount_inc(&t, x1, 16), 1);
    assert_int_equal(ipcount_inc(&t, x2, 16), 2);   /* same /64 */
    assert_int_equal(ipcount_inc(&t, y, 16), 1);    /* another /64 */
    ipcount_free(&t);

    assert_int_equal(ipcount_init(&t, 100, 128, secret, err, sizeof err), 0);
    assert_int_equal(ipcount_inc(&t, x1, 16), 1);
    assert_int_equal(ipcount_inc(&t, x2, 16), 1);
    ipcount_free(&t);
}

/* Full table: new IPs are refused (fail closed), known ones still count,
 * and a slot freed at zero is reusable. */
static void test_ipcount_full_fails_closed(void **state)
{
    struct ipcount t;
    char err[128];
    uint8_t ip[4];

    (void)state;
    assert_int_equal(ipcount_init(&t, 4, 128, secret, err, sizeof err), 0);
    for (unsigned k = 0; k < 4; k++) {
        v4(ip, k);
        assert_int_equal(ipcount_inc(&t, ip, 4), 1);
    }
    v4(ip, 4);
    assert_int_equal(ipcount_inc(&t, ip, 4), -1);
    assert_int_equal(ipcount_get(&t, ip, 4), 0);
    v4(ip, 2);
    assert_int_equal(ipcount_inc(&t, ip, 4), 2);
    assert_int_equal(ipcount_dec(&t, ip, 4), 1);
    assert_int_equal(ipcount_dec(&t, ip, 4), 0);
    v4(ip, 4);
    assert_int_equal(ipcount_inc(&t, ip, 4), 1);
    v4(ip, 5);
    assert_int_equal(ipcount_inc(&t, ip, 4), -1);
    assert_int_equal(t.used, 4);
    ipcount_free(&t);
}

/* Random inc/dec over more IPs than slots, in a tiny table (collisions and
 * wrap-around everywhere), against a plain array: checks the backward-shift
 * deletion never loses or duplicates an entry. */
static void test_ipcount_model(void **state)
{
    enum { NIP = 40, MAX = 8, STEPS = 200000 };
    struct ipcount t;
    char err[128];
    unsigned model[NIP] = { 0 }, used = 0;
    uint64_t seed = 12345;
    uint8_t ip[4];

    (void)state;
    assert_int_equal(ipcount_init(&t, MAX, 128, secret, err, sizeof err), 0);
    assert_int_equal(t.mask + 1, 16);
    for (int step = 0; step < STEPS; step++) {
        unsigned k = (unsigned)(lcg(&seed) % NIP);
        int up = lcg(&seed) % 2;

        v4(ip, k);
        if (up) {
            int want = model[k] ? (int)model[k] + 1 : used < MAX ? 1 : -1;

            assert_int_equal(ipcount_inc(&t, ip, 4), want);
            if (want > 0) {
                used += model[k] == 0;
                model[k]++;
            }
        } else {
            assert_int_equal(ipcount_dec(&t, ip, 4), model[k] ? (int)model[k] - 1 : -1);
            if (model[k] && --model[k] == 0)
                used--;
        }
        assert_int_equal(t.used, used);
    }
    for (unsigned k = 0; k < NIP; k++) {
        v4(ip, k);
        assert_int_equal(ipcount_get(&t, ip, 4), model[k]);
    }
    ipcount_free(&t);
}

/* ---- tbucket ---- */

static void test_tbucket_exact(void **state)
{
    struct tbucket b;

    (void)state;
    tbucket_init(&b, 2, 5, 1000);               /* 2/s, burst 5 */
    for (int i = 0; i < 5; i++)
        assert_int_equal(tbucket_take(&b, 1000), 1);
    assert_int_equal(tbucket_take(&b, 1000), 0);
    assert_int_equal(tbucket_take(&b, 1499), 0);    /* 0.998 tokens */
    assert_int_equal(tbucket_take(&b, 1500), 1);
    assert_int_equal(tbucket_take(&b, 1500), 0);
    /* A clock going backwards adds nothing, and does not break later
     * refills. */
    assert_int_equal(tbucket_take(&b, 900), 0);
    assert_int_equal(tbucket_take(&b, 2000), 1);
    /* A long idle refills to the burst, not beyond. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(tbucket_take(&b, 3600000), 1);
    assert_int_equal(tbucket_take(&b, 3600000), 0);
    /* A huge jump must not overflow elapsed * rate (2^61 * 1000 wraps to
     * 0 in 64 bits). */
    tbucket_init(&b, 1000, 1, 0);
    assert_int_equal(tbucket_take(&b, 0), 1);
    assert_int_equal(tbucket_take(&b, 1ULL << 61), 1);
}

/* Over 10 s at a steady demand of 10/ms, rate 1000/s burst 10 lets through
 * exactly the burst plus 1000 per second. */
static void test_tbucket_sustained(void **state)
{
    struct tbucket b;
    unsigned ok = 0;

    (void)state;
    tbucket_init(&b, 1000, 10, 0);
    for (uint64_t now = 0; now < 10000; now++)
        for (int i = 0; i < 10; i++)
            ok += (unsigned)tbucket_take(&b, now);
    assert_int_equal(ok, 10 + 9999);
}

/* ---- per-IP rate table ---- */

static void test_rate_init_errors(void **state)
{
    struct ratelimit t;
    char err[128];

    (void)state;
    assert_int_equal(rate_init(&t, 0, 1, 10, 128, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "rate 0/s"));
    assert_int_equal(rate_init(&t, 1, 0, 10, 128, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "burst 0"));
    assert_int_equal(rate_init(&t, 1, 1, 0, 128, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "table size 0"));
    assert_int_equal(rate_init(&t, 1, 1, 10, 200, NULL, err, sizeof err), -1);
    assert_int_equal(rate_allow(&t, (const uint8_t *)"\1\2\3\4", 4, 0), 0);
    rate_free(&t);
}

static void test_rate_per_ip(void **state)
{
    static const uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff, 10, 0, 0, 1 };
    struct ratelimit t;
    char err[128];
    uint8_t a[4], b[4];

    (void)state;
    assert_int_equal(rate_init(&t, 1, 3, 1000, 64, secret, err, sizeof err), 0);
    v4(a, 1);                                   /* 10.0.0.1 */
    v4(b, 2);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rate_allow(&t, a, 4, 0), 1);
    assert_int_equal(rate_allow(&t, a, 4, 0), 0);
    assert_int_equal(rate_allow(&t, mapped, 16, 10), 0);    /* same client */
    assert_int_equal(rate_allow(&t, b, 4, 10), 1);          /* its own bucket */
    assert_int_equal(rate_allow(&t, a, 4, 999), 0);
    assert_int_equal(rate_allow(&t, a, 4, 1000), 1);
    assert_int_equal(rate_allow(&t, a, 3, 5000), 0);        /* bad length */
    assert_int_equal(rate_allow(&t, NULL, 4, 5000), 0);
    assert_int_equal(t.evicted_live, 0);
    rate_free(&t);
}

/* One set of 8 ways: a ninth IP evicts the least recently used one. If
 * that bucket was not full yet, it is counted (and its IP starts afresh);
 * if it was idle long enough to be full, nobody can tell. */
static void test_rate_eviction(void **state)
{
    struct ratelimit t;
    char err[128];
    uint8_t ip[4];

    (void)state;
    assert_int_equal(rate_init(&t, 1, 1, 8, 128, secret, err, sizeof err), 0);
    assert_int_equal(t.set_mask, 0);
    assert_int_equal(t.idle_ms, 1000);
    for (unsigned k = 0; k < 8; k++) {
        v4(ip, k);
        assert_int_equal(rate_allow(&t, ip, 4, k), 1);
    }
    v4(ip, 0);
    assert_int_equal(rate_allow(&t, ip, 4, 50), 0);     /* seen: LRU is k=1 */
    v4(ip, 8);
    assert_int_equal(rate_allow(&t, ip, 4, 100), 1);
    assert_int_equal(t.evicted_live, 1);
    for (unsigned k = 0; k < 8; k++) {                  /* still there */
        v4(ip, k);
        if (k != 1)
            assert_int_equal(rate_allow(&t, ip, 4, 200), 0);
    }
    v4(ip, 1);                                  /* forgotten: fresh burst */
    assert_int_equal(rate_allow(&t, ip, 4, 300), 1);
    assert_int_equal(t.evicted_live, 2);        /* evicted k=8 (used at 100) */
    v4(ip, 8);                                  /* and it evicts k=0 */
    assert_int_equal(rate_allow(&t, ip, 4, 310), 1);
    assert_int_equal(t.evicted_live, 3);
    /* After idle_ms everyone is full: evictions are free. */
    for (unsigned k = 100; k < 116; k++) {
        v4(ip, k);
        assert_int_equal(rate_allow(&t, ip, 4, 2000 + (k - 100) * 1000), 1);
    }
    assert_int_equal(t.evicted_live, 3);
    rate_free(&t);
}

/* A big table gives the same verdicts as one ideal bucket per IP. */
static void test_rate_model(void **state)
{
    enum { NIP = 100, STEPS = 100000 };
    static struct tbucket model[NIP];
    struct ratelimit t;
    char err[128];
    uint64_t seed = 99, now = 0;
    unsigned allowed = 0;
    uint8_t ip[4];

    (void)state;
    assert_int_equal(rate_init(&t, 2, 3, 4096, 128, secret, err, sizeof err), 0);
    for (unsigned k = 0; k < NIP; k++)
        tbucket_init(&model[k], 2, 3, 0);
    for (int step = 0; step < STEPS; step++) {
        unsigned k = (unsigned)(lcg(&seed) % NIP);
        int got, want;

        now += lcg(&seed) % 7;
        v4(ip, k);
        got = rate_allow(&t, ip, 4, now);
        want = tbucket_take(&model[k], now);
        assert_int_equal(got, want);
        allowed += (unsigned)got;
    }
    assert_int_equal(t.evicted_live, 0);
    /* The trace must exercise both verdicts. */
    assert_true(allowed > STEPS / 10 && allowed < STEPS * 9 / 10);
    rate_free(&t);
}

/* ---- time windows ---- */

static struct timewin parse_ok(const char *s)
{
    struct timewin w;
    char err[128] = "";

    if (timewin_parse(s, &w, err, sizeof err) != 0)
        fail_msg("'%s' should parse: %s", s, err);
    return w;
}

static void test_timewin_simple(void **state)
{
    struct timewin w = parse_ok("08:00-18:00");

    (void)state;
    assert_int_equal(w.n, 1);
    assert_int_equal(timewin_allows(&w, 479), 0);
    assert_int_equal(timewin_allows(&w, 480), 1);
    assert_int_equal(timewin_allows(&w, 1079), 1);
    assert_int_equal(timewin_allows(&w, 1080), 0);
    assert_int_equal(timewin_allows(&w, 0), 0);
    assert_int_equal(timewin_allows(&w, 1440), 0);      /* out of range */
    assert_int_equal(timewin_allows(&w, 100000), 0);
}

static void test_timewin_list_and_midnight(void **state)
{
    struct timewin w = parse_ok("08:00-12:00,13:00-18:00");
    struct timewin night = parse_ok("22:00-06:00");
    struct timewin all = parse_ok("00:00-24:00");
    struct timewin none = { .n = 0 };

    (void)state;
    assert_int_equal(w.n, 2);
    assert_int_equal(timewin_allows(&w, 719), 1);
    assert_int_equal(timewin_allows(&w, 720), 0);       /* lunch */
    assert_int_equal(timewin_allows(&w, 779), 0);
    assert_int_equal(timewin_allows(&w, 780), 1);
    assert_int_equal(timewin_allows(&night, 1319), 0);
    assert_int_equal(timewin_allows(&night, 1320), 1);
    assert_int_equal(timewin_allows(&night, 1439), 1);
    assert_int_equal(timewin_allows(&night, 0), 1);
    assert_int_equal(timewin_allows(&night, 359), 1);
    assert_int_equal(timewin_allows(&night, 360), 0);
    assert_int_equal(timewin_allows(&night, 720), 0);
    for (unsigned m = 0; m < 1440; m++)
        assert_int_equal(timewin_allows(&all, m), 1);
    assert_int_equal(timewin_allows(&none, 5), 1);      /* no restriction */
}

static void test_timewin_lenient_forms(void **state)
{
    struct timewin w = parse_ok(" 8:00 - 9:30 ,\t22:15-00:00 ");
    struct timewin single;

    (void)state;
    assert_int_equal(w.n, 2);
    assert_int_equal(w.w[0].start, 480);
    assert_int_equal(w.w[0].end, 570);
    assert_int_equal(w.w[1].start, 1335);
    assert_int_equal(w.w[1].end, 0);
    assert_int_equal(timewin_allows(&w, 1439), 1);
    assert_int_equal(timewin_allows(&w, 0), 0);
    single = parse_ok("00:00-00:01");
    assert_int_equal(timewin_allows(&single, 0), 1);
    assert_int_equal(timewin_allows(&single, 1), 0);
}

static void test_timewin_errors(void **state)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        { "", "time window: empty" },
        { "  ", "time window: empty" },
        { "08:00", "time window 1 '08:00': expected '-' after the start time" },
        { "08:00-", "time window 1 '08:00-': end: expected HH:MM" },
        { "8-9", "time window 1 '8-9': start: expected HH:MM" },
        { "25:00-26:00", "start: hour 25: expected 00-23" },
        { "08:00-24:30", "end: hour 24: expected 00-23 (or 24:00 as an end)" },
        { "08:60-09:00", "start: minute 60: expected 00-59" },
        { "24:00-06:00", "start: 24:00 can only end a window" },
        { "08:00-08:00", "start equals end (use 00:00-24:00" },
        { "08:00-12:00,", "time window 2 '': empty window" },
        { "08:00-12:00,,13:00-14:00", "time window 2 '': empty window" },
        { "08:00-12:00,x", "time window 2 'x': start: expected HH:MM" },
        { "08:00-12:00 x", "unexpected text after the end time" },
        { "008:00-09:00", "start: expected HH:MM" },
        { "08:000-09:00", "start: expected HH:MM" },
        { "08:0-09:00", "start: expected HH:MM" },
        { "+8:00-09:00", "start: expected HH:MM" },
        { "08:00-09:00\n", "time window 1 '08:00-09:00?': unexpected text" },
        { "08:00--09:00", "end: expected HH:MM" },
        { "1:00-2:00,2:00-3:00,3:00-4:00,4:00-5:00,5:00-6:00,6:00-7:00,7:00-8:00,"
          "8:00-9:00,9:00-10:00", "time windows: more than 8" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct timewin w;
        char err[160] = "";

        if (timewin_parse(cases[i].in, &w, err, sizeof err) != -1)
            fail_msg("'%s' should not parse", cases[i].in);
        if (!strstr(err, cases[i].want))
            fail_msg("'%s': got \"%s\", want \"%s\"", cases[i].in, err, cases[i].want);
        assert_null(strchr(err, '\n'));
    }
}

/* Every prefix of a valid list: no crash, a reason on failure, and only the
 * two complete prefixes parse. A tiny err buffer is never overrun. */
static void test_timewin_prefixes(void **state)
{
    static const char full[] = "08:00-12:00,13:00-18:00";
    char buf[sizeof full], err[160], tiny[8];
    unsigned ok = 0;

    (void)state;
    for (size_t n = 0; n <= strlen(full); n++) {
        struct timewin w;
        int rc;

        memcpy(buf, full, n);
        buf[n] = '\0';
        err[0] = '\0';
        rc = timewin_parse(buf, &w, err, sizeof err);
        assert_true(rc == 0 || rc == -1);
        if (rc == 0)
            ok++;
        else
            assert_true(strlen(err) > 0);
        assert_int_equal(timewin_parse(buf, &w, tiny, sizeof tiny), rc);
        if (rc < 0)
            assert_int_equal(strlen(tiny), sizeof tiny - 1);
    }
    assert_int_equal(ok, 2);
}

static void test_timewin_format(void **state)
{
    struct timewin w = parse_ok(" 8:00-9:30, 22:00-24:00,23:59-0:00");
    struct timewin again, empty = { .n = 0 };
    char out[TIMEWIN_STRLEN], small[6];

    (void)state;
    assert_int_equal(timewin_format(&w, out, sizeof out), 35);
    assert_string_equal(out, "08:00-09:30,22:00-24:00,23:59-00:00");
    again = parse_ok(out);
    assert_memory_equal(&again, &w, sizeof w);
    assert_int_equal(timewin_format(&w, small, sizeof small), 35);
    assert_string_equal(small, "08:00");
    assert_int_equal(timewin_format(&empty, out, sizeof out), 0);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipcount_init_errors),
        cmocka_unit_test(test_ipcount_basic),
        cmocka_unit_test(test_ipcount_mapped_and_prefix),
        cmocka_unit_test(test_ipcount_full_fails_closed),
        cmocka_unit_test(test_ipcount_model),
        cmocka_unit_test(test_tbucket_exact),
        cmocka_unit_test(test_tbucket_sustained),
        cmocka_unit_test(test_rate_init_errors),
        cmocka_unit_test(test_rate_per_ip),
        cmocka_unit_test(test_rate_eviction),
        cmocka_unit_test(test_rate_model),
        cmocka_unit_test(test_timewin_simple),
        cmocka_unit_test(test_timewin_list_and_midnight),
        cmocka_unit_test(test_timewin_lenient_forms),
        cmocka_unit_test(test_timewin_errors),
        cmocka_unit_test(test_timewin_prefixes),
        cmocka_unit_test(test_timewin_format),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_lb_algos.c - unit tests for the balancer algorithms and server state:
 * leastconn, source (rendezvous hash), random2, backup servers, maxconn,
 * passive ejection and the health-check state machine.
 *
 * Smooth round robin itself is covered by test_balancer.c. Everything here
 * is deterministic: random2 is seeded, source hashes fixed addresses.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "upstream/balancer.h"

#define MAXS 8
#define NCLIENTS 30000

static const char *const algos[] = { "roundrobin", "leastconn", "source", "random2" };

struct fixture {
    struct lb_server s[MAXS];
    struct lb_group g;
};

static void setup(struct fixture *f, const char *algo, const int *w, size_t n)
{
    char err[128];

    memset(f, 0, sizeof *f);
    for (size_t i = 0; i < n; i++)
        f->s[i].weight = w[i];
    assert_int_equal(lb_group_init(&f->g, f->s, n, algo, err, sizeof err), 0);
    assert_string_equal(f->g.ops->name, algo);
}

/* Client number k as an IPv4 address 10.x.y.z. */
static void client_ip(unsigned k, uint8_t ip[4])
{
    ip[0] = 10;
    ip[1] = (uint8_t)(k >> 16);
    ip[2] = (uint8_t)(k >> 8);
    ip[3] = (uint8_t)k;
}

/* A source pick, released at once (source ignores load). */
static int source_of(struct fixture *f, unsigned k, uint64_t exclude)
{
    uint8_t ip[4];
    int idx;

    client_ip(k, ip);
    idx = lb_choose(&f->g, exclude, ip, 4);
    if (idx >= 0)
        lb_release(&f->g, idx, 0);
    return idx;
}

static void test_init_errors(void **state)
{
    struct lb_server s[2] = { { .weight = 1 }, { .weight = 0 } };
    struct lb_group g;
    char err[128];

    (void)state;
    assert_int_equal(lb_group_init(&g, s, 2, "fastest", err, sizeof err), -1);
    assert_non_null(strstr(err, "'fastest'"));
    assert_int_equal(lb_group_init(&g, s, 2, "leastconn", err, sizeof err), -1);
    assert_non_null(strstr(err, "upstream 2: weight 0"));
    assert_int_equal(lb_group_init(&g, s, 65, "leastconn", err, sizeof err), -1);
    assert_non_null(strstr(err, "at most 64"));
    s[1].weight = 2;
    assert_int_equal(lb_group_init(&g, s, 2, NULL, err, sizeof err), 0);
    assert_ptr_equal(g.ops, &lb_roundrobin);
    assert_int_equal(g.rise, 2);
    assert_int_equal(g.fall, 3);
    assert_int_equal(g.passive, 0);
    assert_ptr_equal(lb_ops_find("random2"), &lb_random2);
    assert_ptr_equal(lb_ops_find("source"), &lb_source);
    assert_null(lb_ops_find("Source"));
    assert_null(lb_ops_find(""));
    assert_int_equal(lb_key("a:80"), lb_key("a:80"));
    assert_int_not_equal(lb_key("a:80"), lb_key("a:81"));
    assert_int_not_equal(lb_key(""), 0);
}

/* The ops table path gives nginx's sequence too. */
static void test_roundrobin_via_ops(void **state)
{
    static const int w[] = { 5, 1, 1 };
    struct fixture f;
    char seq[15];

    (void)state;
    setup(&f, "roundrobin", w, 3);
    for (int i = 0; i < 14; i++) {
        int idx = lb_choose(&f.g, 0, NULL, 0);

        assert_in_range(idx, 0, 2);
        seq[i] = (char)('a' + idx);
        lb_release(&f.g, idx, 0);
    }
    seq[14] = '\0';
    assert_string_equal(seq, "aabacaaaabacaa");
}

/* Short connections (released at once) tie every time: equal servers take
 * turns instead of all landing on the first. */
static void test_leastconn_ties_share(void **state)
{
    static const int w[] = { 1, 1, 1 };
    struct fixture f;
    char seq[10];

    (void)state;
    setup(&f, "leastconn", w, 3);
    for (int i = 0; i < 9; i++) {
        int idx = lb_choose(&f.g, 0, NULL, 0);

        seq[i] = (char)('a' + idx);
        lb_release(&f.g, idx, 0);
    }
    seq[9] = '\0';
    assert_string_equal(seq, "abcabcabc");
}

/* Held sessions: load follows the weights exactly, and a server that frees
 * a slot gets the next client. */
static void test_leastconn_held(void **state)
{
    static const int w[] = { 3, 1, 2 };
    struct fixture f;

    (void)state;
    setup(&f, "leastconn", w, 3);
    for (int i = 0; i < 600; i++)
        assert_in_range(lb_choose(&f.g, 0, NULL, 0), 0, 2);
    assert_int_equal(f.s[0].active, 300);
    assert_int_equal(f.s[1].active, 100);
    assert_int_equal(f.s[2].active, 200);
    /* At every step no server is more than one session ahead of its share. */
    lb_release(&f.g, 1, 0);
    lb_release(&f.g, 1, 0);
    assert_int_equal(lb_choose(&f.g, 0, NULL, 0), 1);
    assert_int_equal(lb_choose(&f.g, 0, NULL, 0), 1);
    /* A preloaded server is avoided until the others catch up. */
    f.s[2].active += 10;
    for (int i = 0; i < 20; i++)
        assert_int_not_equal(lb_choose(&f.g, 0, NULL, 0), 2);
}

static void test_leastconn_exclude(void **state)
{
    static const int w[] = { 1, 1, 1 };
    struct fixture f;

    (void)state;
    setup(&f, "leastconn", w, 3);
    f.s[0].active = 0;
    f.s[1].active = 5;
    f.s[2].active = 9;
    assert_int_equal(lb_choose(&f.g, 1ULL << 0, NULL, 0), 1);
    assert_int_equal(lb_choose(&f.g, 3, NULL, 0), 2);
    assert_int_equal(lb_choose(&f.g, 7, NULL, 0), LB_NONE);
}

static void test_source_sticky_and_mapped(void **state)
{
    static const int w[] = { 1, 1, 1, 1 };
    static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 7 };
    uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff, 192, 0, 2, 1 };
    struct fixture f;
    unsigned changed = 0;

    (void)state;
    setup(&f, "source", w, 4);
    for (unsigned k = 0; k < 1000; k++) {
        int first = source_of(&f, k, 0);

        assert_in_range(first, 0, 3);
        for (int r = 0; r < 3; r++)
            assert_int_equal(source_of(&f, k, 0), first);
    }
    /* ::ffff:192.0.2.1 is client 192.0.2.1. */
    int a = lb_choose(&f.g, 0, mapped + 12, 4);
    int b = lb_choose(&f.g, 0, mapped, 16);
    assert_int_equal(a, b);
    /* IPv6 clients hash too, and stickily. */
    a = lb_choose(&f.g, 0, v6, 16);
    assert_int_equal(lb_choose(&f.g, 0, v6, 16), a);
    /* Neighbouring mapped addresses are not all sent to one server. */
    for (int k = 0; k < 64; k++) {
        mapped[15] = (uint8_t)k;
        if (lb_choose(&f.g, 0, mapped, 16) != a)
            changed++;
    }
    assert_true(changed > 16);
}

static void count_source(struct fixture *f, unsigned *count, size_t n)
{
    memset(count, 0, n * sizeof *count);
    for (unsigned k = 0; k < NCLIENTS; k++)
        count[source_of(f, k, 0)]++;
}

/* Shares follow the weights within 5% (relative) over 30000 clients. */
static void test_source_distribution(void **state)
{
    static const int eq[] = { 1, 1, 1, 1, 1 };
    static const int w[] = { 1, 2, 3, 4 };
    struct fixture f;
    unsigned count[5];

    (void)state;
    setup(&f, "source", eq, 5);
    count_source(&f, count, 5);
    for (int i = 0; i < 5; i++)
        assert_in_range(count[i], NCLIENTS / 5 * 95 / 100, NCLIENTS / 5 * 105 / 100);

    setup(&f, "source", w, 4);
    count_source(&f, count, 4);
    for (int i = 0; i < 4; i++) {
        unsigned want = NCLIENTS / 10 * (unsigned)w[i];

        assert_in_range(count[i], want * 95 / 100, want * 105 / 100);
    }
}

static void set_keys(struct fixture *f, size_t n)
{
    static const char *const names[] = { "a:80", "b:80", "c:80", "d:80", "e:80", "f:80" };

    for (size_t i = 0; i < n; i++)
        f->s[i].key = lb_key(names[i]);
}

/* Removing server c (of 5) moves exactly c's clients, spread over the four
 * others; rebuilding the group without c (keys from the names) maps every
 * client as marking c down does. */
static void test_source_remove_one(void **state)
{
    static const int w[] = { 1, 1, 1, 1, 1 };
    static const int w4[] = { 1, 1, 1, 1 };
    static int before[NCLIENTS];
    struct fixture f, g4;
    unsigned moved_to[5] = { 0 };

    (void)state;
    setup(&f, "source", w, 5);
    set_keys(&f, 5);
    for (unsigned k = 0; k < NCLIENTS; k++)
        before[k] = source_of(&f, k, 0);

    lb_set_up(&f.g, 2, 0);
    setup(&g4, "source", w4, 4);
    g4.s[0].key = lb_key("a:80");
    g4.s[1].key = lb_key("b:80");
    g4.s[2].key = lb_key("d:80");
    g4.s[3].key = lb_key("e:80");
    for (unsigned k = 0; k < NCLIENTS; k++) {
        int now = source_of(&f, k, 0);
        int rebuilt = source_of(&g4, k, 0);

        assert_int_equal(rebuilt < 2 ? rebuilt : rebuilt + 1, now);
        if (before[k] != 2) {
            assert_int_equal(now, before[k]);
        } else {
            assert_int_not_equal(now, 2);
            moved_to[now]++;
        }
    }
    /* c's ~6000 clients go to the others about equally (1500 each). */
    for (int i = 0; i < 5; i++)
        if (i != 2)
            assert_in_range(moved_to[i], 1200, 1800);
    /* And when c is back, everyone is back where they were. */
    lb_set_up(&f.g, 2, 1);
    for (unsigned k = 0; k < NCLIENTS; k++)
        assert_int_equal(source_of(&f, k, 0), before[k]);
}

/* Adding a sixth server moves about 1/6 of the clients, all to it. */
static void test_source_add_one(void **state)
{
    static const int w[] = { 1, 1, 1, 1, 1, 1 };
    static int before[NCLIENTS];
    struct fixture f5, f6;
    unsigned moved = 0;

    (void)state;
    setup(&f5, "source", w, 5);
    set_keys(&f5, 5);
    setup(&f6, "source", w, 6);
    set_keys(&f6, 6);
    for (unsigned k = 0; k < NCLIENTS; k++)
        before[k] = source_of(&f5, k, 0);
    for (unsigned k = 0; k < NCLIENTS; k++) {
        int now = source_of(&f6, k, 0);

        if (now != before[k]) {
            assert_int_equal(now, 5);
            moved++;
        }
    }
    /* 1/6 = 5000; allow +-8%. */
    assert_in_range(moved, 4600, 5400);
}

/* An excluded server (already tried) sends the client to its runner-up;
 * nobody else moves. */
static void test_source_exclude(void **state)
{
    static const int w[] = { 1, 1, 1 };
    struct fixture f;
    unsigned moved = 0;

    (void)state;
    setup(&f, "source", w, 3);
    for (unsigned k = 0; k < 3000; k++) {
        int first = source_of(&f, k, 0);
        int second = source_of(&f, k, 1ULL << first);
        int third = source_of(&f, k, (1ULL << first) | (1ULL << second));

        assert_int_not_equal(second, first);
        assert_int_not_equal(third, first);
        assert_int_not_equal(third, second);
        assert_int_equal(source_of(&f, k, 7), LB_NONE);
        /* Excluding a server that is not this client's leaves it alone. */
        if (source_of(&f, k, 1ULL << third) != first)
            moved++;
    }
    assert_int_equal(moved, 0);
}

/* Without a client address, source degrades to round robin. */
static void test_source_without_address(void **state)
{
    static const int w[] = { 1, 1 };
    struct fixture f;

    (void)state;
    setup(&f, "source", w, 2);
    assert_int_equal(lb_pick(&f.g, 0), 0);
    assert_int_equal(lb_pick(&f.g, 0), 1);
    assert_int_equal(lb_choose(&f.g, 0, (const uint8_t *)"abc", 3), 0);
}

/* Weighted shares within 1.5 percentage points over 60000 picks. */
static void test_random2_distribution(void **state)
{
    static const int w[] = { 1, 2, 3 };
    struct fixture f;
    unsigned count[3] = { 0 };

    (void)state;
    setup(&f, "random2", w, 3);
    lb_group_seed(&f.g, 42);
    for (int i = 0; i < 60000; i++) {
        int idx = lb_choose(&f.g, 0, NULL, 0);

        assert_in_range(idx, 0, 2);
        count[idx]++;
        lb_release(&f.g, idx, 0);
    }
    assert_in_range(count[0], 10000 - 900, 10000 + 900);
    assert_in_range(count[1], 20000 - 900, 20000 + 900);
    assert_in_range(count[2], 30000 - 900, 30000 + 900);
}

/* Same seed, same sequence; another seed, another sequence. */
static void test_random2_seeded(void **state)
{
    static const int w[] = { 1, 1, 1, 1 };
    struct fixture a, b, c;
    unsigned differ = 0;

    (void)state;
    setup(&a, "random2", w, 4);
    setup(&b, "random2", w, 4);
    setup(&c, "random2", w, 4);
    lb_group_seed(&a.g, 7);
    lb_group_seed(&b.g, 7);
    lb_group_seed(&c.g, 8);
    for (int i = 0; i < 200; i++) {
        int x = lb_choose(&a.g, 0, NULL, 0), y = lb_choose(&b.g, 0, NULL, 0);
        int z = lb_choose(&c.g, 0, NULL, 0);

        assert_int_equal(x, y);
        differ += x != z;
        lb_release(&a.g, x, 0);
        lb_release(&b.g, y, 0);
        lb_release(&c.g, z, 0);
    }
    assert_true(differ > 50);
}

/* Held sessions: two choices keep the loads within a few sessions of each
 * other (one random choice would drift by ~sqrt(1000) = 30). */
static void test_random2_held_balanced(void **state)
{
    static const int w[] = { 1, 1, 1, 1 };
    struct fixture f;
    unsigned lo = ~0u, hi = 0;

    (void)state;
    setup(&f, "random2", w, 4);
    lb_group_seed(&f.g, 1);
    for (int i = 0; i < 4000; i++)
        assert_in_range(lb_choose(&f.g, 0, NULL, 0), 0, 3);
    for (int i = 0; i < 4; i++) {
        lo = f.s[i].active < lo ? f.s[i].active : lo;
        hi = f.s[i].active > hi ? f.s[i].active : hi;
    }
    assert_int_equal(f.s[0].active + f.s[1].active + f.s[2].active + f.s[3].active, 4000);
    assert_true(hi - lo <= 8);
}

/* The second choice is never the first one again: a light server next to
 * a heavily loaded, heavily weighted one is always compared, so it wins
 * until its load per weight catches up (10 sessions here). */
static void test_random2_distinct_choices(void **state)
{
    static const int w[] = { 1, 100 };
    struct fixture f;

    (void)state;
    setup(&f, "random2", w, 2);
    lb_group_seed(&f.g, 3);
    f.s[1].active = 1000;
    for (int i = 0; i < 10; i++)
        assert_int_equal(lb_choose(&f.g, 0, NULL, 0), 0);
    assert_int_equal(f.s[0].active, 10);
}

/* Retrying with the tried mask visits each server exactly once, whatever
 * the algorithm. */
static void test_exclude_every_algo(void **state)
{
    static const int w[] = { 5, 2, 1, 1, 3 };
    static const uint8_t ip[4] = { 192, 0, 2, 9 };

    (void)state;
    for (size_t a = 0; a < 4; a++) {
        struct fixture f;
        uint64_t tried = 0;

        setup(&f, algos[a], w, 5);
        for (int k = 0; k < 5; k++) {
            int idx = lb_choose(&f.g, tried, ip, 4);

            assert_in_range(idx, 0, 4);
            assert_int_equal(tried & (1ULL << idx), 0);
            tried |= 1ULL << idx;
            lb_release(&f.g, idx, 1);
        }
        assert_int_equal(tried, 0x1F);
        assert_int_equal(lb_choose(&f.g, tried, ip, 4), LB_NONE);
        for (int i = 0; i < 5; i++)
            assert_int_equal(f.s[i].active, 0);
    }
}

/* c is a backup: never used while a or b is eligible, used when neither
 * is, whatever the reason (down, tried, full). */
static void test_backup(void **state)
{
    static const int w[] = { 1, 1, 10 };
    static const uint8_t ip[4] = { 198, 51, 100, 1 };

    (void)state;
    for (size_t a = 0; a < 4; a++) {
        struct fixture f;

        setup(&f, algos[a], w, 3);
        f.s[2].backup = 1;
        for (int i = 0; i < 100; i++) {
            int idx = lb_choose(&f.g, 0, ip, 4);

            assert_in_range(idx, 0, 1);
            lb_release(&f.g, idx, 0);
        }
        lb_set_up(&f.g, 0, 0);
        assert_int_equal(lb_choose(&f.g, 0, ip, 4), 1);
        assert_int_equal(lb_choose(&f.g, 1ULL << 1, ip, 4), 2);
        f.s[1].maxconn = 1;                         /* b now holds 1: full */
        assert_int_equal(lb_choose(&f.g, 0, ip, 4), 2);
        lb_set_up(&f.g, 2, 0);
        assert_int_equal(lb_choose(&f.g, 0, ip, 4), LB_FULL);
        assert_int_equal(lb_choose(&f.g, 1ULL << 1, ip, 4), LB_NONE);
        lb_set_up(&f.g, 0, 1);
        assert_int_equal(lb_choose(&f.g, 0, ip, 4), 0);
    }
}

/* maxconn is a hard cap: exactly 3 + 2 picks succeed, then LB_FULL until a
 * release; lb_pick folds LB_FULL into -1. */
static void test_maxconn_exact(void **state)
{
    static const int w[] = { 1, 5, 1 };
    static const uint8_t ip[4] = { 203, 0, 113, 5 };

    (void)state;
    for (size_t a = 0; a < 4; a++) {
        struct fixture f;
        unsigned count[3] = { 0 };

        setup(&f, algos[a], w, 3);
        f.s[0].maxconn = 3;
        f.s[1].maxconn = 2;
        lb_set_up(&f.g, 2, 0);
        for (int i = 0; i < 5; i++) {
            int idx = lb_choose(&f.g, 0, ip, 4);

            assert_in_range(idx, 0, 1);
            count[idx]++;
        }
        assert_int_equal(count[0], 3);
        assert_int_equal(count[1], 2);
        assert_int_equal(lb_choose(&f.g, 0, ip, 4), LB_FULL);
        assert_int_equal(lb_pick(&f.g, 0), -1);
        /* Full and tried: still full (the untried one may free up). */
        assert_int_equal(lb_choose(&f.g, 1ULL << 1, ip, 4), LB_FULL);
        lb_release(&f.g, 0, 0);
        assert_int_equal(lb_choose(&f.g, 0, ip, 4), 0);
        assert_int_equal(f.s[0].active, 3);
        assert_int_equal(lb_choose(&f.g, 0, ip, 4), LB_FULL);
    }
}

static void test_health_rise_fall(void **state)
{
    static const int w[] = { 1, 1 };
    struct fixture f;

    (void)state;
    setup(&f, "roundrobin", w, 2);
    f.g.rise = 2;
    f.g.fall = 3;
    assert_int_equal(lb_health_result(&f.g, 0, 0), 0);
    assert_int_equal(lb_health_result(&f.g, 0, 0), 0);
    assert_int_equal(lb_is_up(&f.g, 0), 1);
    assert_int_equal(lb_health_result(&f.g, 0, 0), 1);
    assert_int_equal(lb_is_up(&f.g, 0), 0);
    assert_int_equal(lb_health_result(&f.g, 0, 0), 0);  /* already down */
    for (int i = 0; i < 4; i++)
        assert_int_equal(lb_choose(&f.g, 0, NULL, 0), 1);
    /* Flapping never reaches rise. */
    for (int i = 0; i < 10; i++)
        assert_int_equal(lb_health_result(&f.g, 0, !(i & 1)), 0);
    assert_int_equal(lb_is_up(&f.g, 0), 0);
    assert_int_equal(lb_health_result(&f.g, 0, 1), 0);
    assert_int_equal(lb_health_result(&f.g, 0, 1), 1);
    assert_int_equal(lb_is_up(&f.g, 0), 1);
    assert_int_equal(lb_health_result(&f.g, 0, 1), 0);  /* already up */
    /* An up server's failures must be consecutive. */
    for (int i = 0; i < 10; i++)
        assert_int_equal(lb_health_result(&f.g, 0, (i % 3) != 2), 0);
    assert_int_equal(lb_is_up(&f.g, 0), 1);
    /* rise/fall 0 act as 1; out-of-range indexes change nothing. */
    f.g.rise = f.g.fall = 0;
    assert_int_equal(lb_health_result(&f.g, 1, 0), 1);
    assert_int_equal(lb_health_result(&f.g, 1, 1), 1);
    assert_int_equal(lb_health_result(&f.g, 2, 0), 0);
    assert_int_equal(lb_health_result(&f.g, -1, 0), 0);
    assert_int_equal(lb_is_up(&f.g, 2), 0);
}

/* Passive ejection: fall consecutive connect failures mark a server down
 * (and lb_release says so once); a success in between resets the count;
 * only checks bring it back. Off unless g.passive. */
static void test_passive_fall(void **state)
{
    static const int w[] = { 1, 1 };
    struct fixture f;
    int idx;

    (void)state;
    setup(&f, "roundrobin", w, 2);
    f.g.fall = 2;
    for (int i = 0; i < 5; i++)
        assert_int_equal(lb_release(&f.g, 0, 1), 0);
    assert_int_equal(lb_is_up(&f.g, 0), 1);             /* passive off */
    lb_release(&f.g, 0, 0);

    f.g.passive = 1;
    assert_int_equal(lb_release(&f.g, 0, 1), 0);
    assert_int_equal(lb_release(&f.g, 0, 0), 0);        /* reset */
    assert_int_equal(lb_release(&f.g, 0, 1), 0);
    assert_int_equal(lb_release(&f.g, 0, 1), 1);
    assert_int_equal(lb_is_up(&f.g, 0), 0);
    assert_int_equal(lb_release(&f.g, 0, 0), 0);        /* no way back */
    assert_int_equal(lb_is_up(&f.g, 0), 0);
    assert_int_equal(lb_release(&f.g, 0, 1), 0);        /* said once */
    assert_int_equal(f.s[0].fails, 1);
    idx = lb_choose(&f.g, 0, NULL, 0);
    assert_int_equal(idx, 1);
    lb_release(&f.g, idx, 0);
    /* Down by connect failures: checks must pass rise times afresh. */
    f.g.rise = 2;
    assert_int_equal(lb_health_result(&f.g, 0, 1), 0);
    assert_int_equal(lb_health_result(&f.g, 0, 1), 1);
    /* Back up with a clean slate: one more failure does not eject it. */
    assert_int_equal(f.s[0].fails, 0);
    assert_int_equal(lb_release(&f.g, 0, 1), 0);
    assert_int_equal(lb_is_up(&f.g, 0), 1);
    /* lb_set_up forces, and reports only real changes. */
    assert_int_equal(lb_set_up(&f.g, 1, 0), 1);
    assert_int_equal(lb_set_up(&f.g, 1, 0), 0);
    assert_int_equal(lb_set_up(&f.g, 1, 1), 1);
    assert_int_equal(lb_set_up(&f.g, 1, 1), 0);
    assert_int_equal(lb_set_up(&f.g, 5, 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_roundrobin_via_ops),
        cmocka_unit_test(test_leastconn_ties_share),
        cmocka_unit_test(test_leastconn_held),
        cmocka_unit_test(test_leastconn_exclude),
        cmocka_unit_test(test_source_sticky_and_mapped),
        cmocka_unit_test(test_source_distribution),
        cmocka_unit_test(test_source_remove_one),
        cmocka_unit_test(test_source_add_one),
        cmocka_unit_test(test_source_exclude),
        cmocka_unit_test(test_source_without_address),
        cmocka_unit_test(test_random2_distribution),
        cmocka_unit_test(test_random2_seeded),
        cmocka_unit_test(test_random2_held_balanced),
        cmocka_unit_test(test_random2_distinct_choices),
        cmocka_unit_test(test_exclude_every_algo),
        cmocka_unit_test(test_backup),
        cmocka_unit_test(test_maxconn_exact),
        cmocka_unit_test(test_health_rise_fall),
        cmocka_unit_test(test_passive_fall),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

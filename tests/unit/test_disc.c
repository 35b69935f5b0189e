/* test_disc.c - unit tests for upstream/disc (the server set of a
 * DNS-discovered group: diffing, SRV priority and weight, TTL clamping),
 * and the balancer's `off` servers it relies on. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "upstream/balancer.h"
#include "upstream/disc.h"

static struct disc_server srv(const char *host, uint16_t port, int weight, int backup)
{
    struct disc_server s;
    memset(&s, 0, sizeof(s));
    snprintf(s.host, sizeof(s.host), "%s", host);
    s.port = port;
    s.weight = weight;
    s.backup = (uint8_t)backup;
    return s;
}

static int slot_of(const struct disc_set *set, const char *host, uint16_t port)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->slot[i].s.port == port && strcmp(set->slot[i].s.host, host) == 0) return (int)i;
    return -1;
}

static void test_add_keep_remove(void **state)
{
    (void)state;
    static struct disc_set set;
    struct disc_diff d;
    struct disc_server w[3] = { srv("10.0.0.1", 80, 1, 0), srv("10.0.0.2", 80, 1, 0) };
    memset(&set, 0, sizeof(set));

    disc_apply(&set, w, 2, &d);
    assert_int_equal(d.added, 2);
    assert_int_equal(d.removed, 0);
    assert_int_equal(set.n, 2);
    assert_int_equal(d.changed, 3);
    uint32_t ver1 = set.slot[1].ver;

    /* Same answer: nothing changes. */
    disc_apply(&set, w, 2, &d);
    assert_int_equal(d.added + d.removed + d.updated, 0);
    assert_int_equal(d.kept, 2);
    assert_int_equal(d.changed, 0);

    /* .1 goes, .3 comes: .2 keeps its slot, .1 drains, .3 takes a new slot. */
    w[0] = srv("10.0.0.3", 80, 1, 0);
    disc_apply(&set, w, 2, &d);
    assert_int_equal(d.added, 1);
    assert_int_equal(d.removed, 1);
    assert_int_equal(d.kept, 1);
    assert_int_equal(slot_of(&set, "10.0.0.2", 80), 1);
    assert_int_equal(set.slot[1].ver, ver1);
    assert_int_equal(set.slot[0].state, DISC_DRAINING);
    assert_int_equal(slot_of(&set, "10.0.0.3", 80), 2);
    assert_int_equal(set.slot[2].state, DISC_ACTIVE);
    assert_int_equal(d.changed, 1 | 4);

    /* .1 is named again: back in its old slot, same version. */
    uint32_t ver0 = set.slot[0].ver;
    w[2] = srv("10.0.0.1", 80, 1, 0);
    disc_apply(&set, w, 3, &d);
    assert_int_equal(d.added, 1);
    assert_int_equal(set.slot[0].state, DISC_ACTIVE);
    assert_int_equal(set.slot[0].ver, ver0);
    assert_int_equal(set.n, 3);

    /* An empty list drains everything (the caller never passes one for a
     * failed lookup: it keeps the last set). */
    disc_apply(&set, w, 0, &d);
    assert_int_equal(d.removed, 3);
    for (size_t i = 0; i < set.n; i++) assert_int_equal(set.slot[i].state, DISC_DRAINING);
}

static void test_weight_and_backup_updates(void **state)
{
    (void)state;
    static struct disc_set set;
    struct disc_diff d;
    struct disc_server w[2] = { srv("a", 1, 1, 0), srv("b", 1, 1, 0) };
    memset(&set, 0, sizeof(set));
    disc_apply(&set, w, 2, &d);
    uint32_t ver = set.slot[0].ver;
    w[0].weight = 7;
    w[1].backup = 1;
    disc_apply(&set, w, 2, &d);
    assert_int_equal(d.updated, 2);
    assert_int_equal(d.added, 0);
    assert_int_equal(set.slot[0].s.weight, 7);
    assert_int_equal(set.slot[1].s.backup, 1);
    assert_int_equal(set.slot[0].ver, ver);    /* same server: workers keep its state */
}

static void test_duplicates_and_case(void **state)
{
    (void)state;
    static struct disc_set set;
    struct disc_diff d;
    struct disc_server w[3] = { srv("Host", 1, 1, 0), srv("host", 1, 5, 0), srv("host", 2, 1, 0) };
    memset(&set, 0, sizeof(set));
    disc_apply(&set, w, 3, &d);
    assert_int_equal(d.added, 2);
    assert_int_equal(set.n, 2);
    assert_int_equal(set.slot[0].s.weight, 1);   /* the first listed wins */
}

/* More than DISC_MAX servers: the rest are dropped and counted. Once the
 * table is full, new servers reuse the slot that has drained longest. */
static void test_capacity_and_reuse(void **state)
{
    (void)state;
    static struct disc_set set;
    static struct disc_server w[DISC_MAX + 5];
    struct disc_diff d;
    char h[32];
    memset(&set, 0, sizeof(set));
    for (size_t i = 0; i < DISC_MAX + 5; i++) {
        snprintf(h, sizeof(h), "10.0.%zu.%zu", i / 250, i % 250);
        w[i] = srv(h, 80, 1, 0);
    }
    disc_apply(&set, w, DISC_MAX + 5, &d);
    assert_int_equal(d.added, DISC_MAX);
    assert_int_equal(d.dropped, 5);
    assert_int_equal(set.n, DISC_MAX);

    /* Keep all but slots 3 and 9; drop 9 first, then 3. */
    disc_apply(&set, w, 9, &d);                    /* 0..8 kept, 9.. drain */
    assert_int_equal(d.removed, DISC_MAX - 9);
    struct disc_server two[2] = { srv("192.0.2.1", 80, 1, 0), srv("192.0.2.2", 80, 1, 0) };
    disc_apply(&set, two, 2, &d);                  /* 0..8 drain after 9.. */
    assert_int_equal(d.added, 2);
    /* Slot 9 began draining first (lowest sequence, first in the scan). */
    assert_int_equal(slot_of(&set, "192.0.2.1", 80), 9);
    assert_int_equal(slot_of(&set, "192.0.2.2", 80), 10);
    assert_int_equal(set.slot[9].ver, 2);
}

static void test_srv_priority_weight(void **state)
{
    (void)state;
    const struct disc_srv recs[] = {
        { "127.0.0.3", 9003, 20, 5 },
        { "127.0.0.1", 9001, 10, 3 },
        { "127.0.0.2", 9002, 10, 0 },
    };
    struct disc_server out[4];
    size_t n = 0;
    assert_int_equal(disc_from_srv(recs, 3, 0, 7, 2, out, &n, 4), 0);
    assert_int_equal(n, 3);
    assert_int_equal(out[0].backup, 1);     /* priority 20: backup */
    assert_int_equal(out[1].backup, 0);
    assert_int_equal(out[2].backup, 0);
    assert_int_equal(out[1].weight, 3);
    assert_int_equal(out[2].weight, 1);     /* weight 0 counts as 1 */
    assert_int_equal(out[0].maxconn, 7);
    assert_int_equal(out[0].spec, 2);
    assert_string_equal(out[1].host, "127.0.0.1");

    /* backup_all; and the cap. */
    n = 3;
    assert_int_equal(disc_from_srv(recs, 3, 1, 0, 0, out, &n, 4), 2);
    assert_int_equal(n, 4);
    assert_int_equal(out[3].backup, 1);
}

/* The set's ACTIVE servers feed the balancer: draining ones are `off`. */
static void test_balancer_skips_off(void **state)
{
    (void)state;
    struct lb_server s[3] = { { .weight = 1 }, { .weight = 1, .off = 1 }, { .weight = 1, .backup = 1 } };
    struct lb_group g = { .servers = s, .n = 3 };
    for (int i = 0; i < 6; i++) assert_int_equal(lb_pick(&g, 0), 0);
    s[0].off = 1;
    assert_int_equal(lb_pick(&g, 0), 2);           /* only the backup is left */
    s[2].off = 1;
    assert_int_equal(lb_choose(&g, 0, NULL, 0), LB_NONE);
}

static void test_refresh_clamp(void **state)
{
    (void)state;
    assert_int_equal(disc_refresh_ms(0, 1000, 300000), 300000);      /* no TTL: the max */
    assert_int_equal(disc_refresh_ms(1, 1000, 300000), 1000);
    assert_int_equal(disc_refresh_ms(30, 1000, 300000), 30000);
    assert_int_equal(disc_refresh_ms(86400, 1000, 300000), 300000);
    assert_int_equal(disc_refresh_ms(5, 10000, 300000), 10000);     /* below the min */
    assert_int_equal(disc_refresh_ms(4000000000u, 1000, 300000), 300000);   /* no overflow */
    assert_int_equal(disc_refresh_ms(3, 5000, 2000), 5000);          /* min > max: min */
}

static void test_server_name(void **state)
{
    (void)state;
    char out[300];
    struct disc_server a = srv("::1", 80, 1, 0), b = srv("127.0.0.1", 81, 1, 0);
    disc_server_name(&a, out, sizeof(out));
    assert_string_equal(out, "[::1]:80");
    disc_server_name(&b, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1:81");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_keep_remove),
        cmocka_unit_test(test_weight_and_backup_updates),
        cmocka_unit_test(test_duplicates_and_case),
        cmocka_unit_test(test_capacity_and_reuse),
        cmocka_unit_test(test_srv_priority_weight),
        cmocka_unit_test(test_balancer_skips_off),
        cmocka_unit_test(test_refresh_clamp),
        cmocka_unit_test(test_server_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

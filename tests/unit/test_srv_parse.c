/* test_srv_parse.c - unit tests for resolver_srv_parse (resolver/srv.c):
 * records, TTLs, compression, the "." target, rcodes, and every truncation
 * of a good answer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "resolver/resolver.h"

/* _x._tcp.t IN SRV: two answers (10 5 9001 a.t, TTL 30; 20 0 9002 "." ,
 * TTL 7) and one (10 1 9003 b.<ptr to t>, TTL 60). */
static const uint8_t answer[] = {
    0x12, 0x34, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0,
    /* question at 12: _x._tcp.t */
    2, '_', 'x', 4, '_', 't', 'c', 'p', 1, 't', 0, 0, 33, 0, 1,
    /* answer 1: name ptr to 12 */
    0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 30, 0, 11,
    0, 10, 0, 5, 0x23, 0x29, 1, 'a', 1, 't', 0,
    /* answer 2: "." target */
    0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 7, 0, 7,
    0, 20, 0, 0, 0x23, 0x2a, 0,
    /* answer 3: b + pointer to "t" at 20 */
    0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60, 0, 10,
    0, 10, 0, 1, 0x23, 0x2b, 1, 'b', 0xc0, 20,
};

static void test_good(void **state)
{
    (void)state;
    struct resolved_srv *r = malloc(sizeof(*r));
    assert_non_null(r);
    assert_int_equal(resolver_srv_parse(answer, sizeof(answer), r), RESOLVER_OK);
    assert_int_equal(r->n, 2);
    assert_int_equal(r->ttl, 7);
    assert_string_equal(r->rec[0].target, "a.t");
    assert_int_equal(r->rec[0].priority, 10);
    assert_int_equal(r->rec[0].weight, 5);
    assert_int_equal(r->rec[0].port, 9001);
    assert_string_equal(r->rec[1].target, "b.t");
    assert_int_equal(r->rec[1].port, 9003);
    free(r);
}

static void test_every_prefix_fails(void **state)
{
    (void)state;
    struct resolved_srv *r = malloc(sizeof(*r));
    assert_non_null(r);
    for (size_t len = 0; len < sizeof(answer); len++)
        assert_int_equal(resolver_srv_parse(answer, len, r), RESOLVER_FAILED);
    free(r);
}

static void test_rcodes_and_loops(void **state)
{
    (void)state;
    struct resolved_srv *r = malloc(sizeof(*r));
    uint8_t m[sizeof(answer)];
    assert_non_null(r);
    memcpy(m, answer, sizeof(m));
    m[3] = 0x83;                                  /* NXDOMAIN */
    assert_int_equal(resolver_srv_parse(m, sizeof(m), r), RESOLVER_NOTFOUND);
    m[3] = 0x82;                                  /* SERVFAIL */
    assert_int_equal(resolver_srv_parse(m, sizeof(m), r), RESOLVER_FAILED);
    m[3] = 0x80;
    m[7] = 0;                                     /* no answers: NODATA */
    assert_int_equal(resolver_srv_parse(m, sizeof(m), r), RESOLVER_NOTFOUND);
    memcpy(m, answer, sizeof(m));
    m[sizeof(m) - 1] = (uint8_t)(sizeof(m) - 2);   /* b's pointer points at itself */
    assert_int_equal(resolver_srv_parse(m, sizeof(m), r), RESOLVER_FAILED);
    assert_int_equal(r->n, 0);                    /* the good records before it are not kept */
    free(r);
}

/* Only "." targets: nothing to use. */
static void test_only_dot(void **state)
{
    (void)state;
    static const uint8_t m[] = {
        0, 0, 0x81, 0x80, 0, 0, 0, 1, 0, 0, 0, 0,
        1, 'x', 0, 0, 33, 0, 1, 0, 0, 0, 5, 0, 7, 0, 1, 0, 1, 0, 80, 0,
    };
    struct resolved_srv *r = malloc(sizeof(*r));
    assert_non_null(r);
    assert_int_equal(resolver_srv_parse(m, sizeof(m), r), RESOLVER_NOTFOUND);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_every_prefix_fails),
        cmocka_unit_test(test_rcodes_and_loops),
        cmocka_unit_test(test_only_dot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

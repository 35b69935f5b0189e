/* test_capfilter.c - unit tests for stage/capfilter: syntax, errors that
 * name the bad term, OR within a kind, AND across kinds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "stage/capfilter.h"

static int client_ok(const struct capfilter *f, const char *ip)
{
    uint8_t a[16];
    if (inet_pton(AF_INET, ip, a) == 1) return capfilter_client_ok(f, 4, a);
    assert_int_equal(inet_pton(AF_INET6, ip, a), 1);
    return capfilter_client_ok(f, 6, a);
}

static void test_empty_matches_all(void **state)
{
    (void)state;
    struct capfilter f;
    memset(&f, 0, sizeof(f));
    assert_true(client_ok(&f, "8.8.8.8"));
    assert_true(capfilter_port_ok(&f, 1));
}

static void test_terms(void **state)
{
    (void)state;
    struct capfilter f;
    char err[200];
    memset(&f, 0, sizeof(f));
    assert_int_equal(capfilter_parse(&f, "client=10.0.0.0/8,client=::1,port=443,port=8000-8080", err, sizeof(err)), 0);
    assert_int_equal(f.nnets, 2);
    assert_int_equal(f.nports, 2);
    assert_true(client_ok(&f, "10.9.8.7"));
    assert_true(client_ok(&f, "::1"));
    assert_true(client_ok(&f, "::ffff:10.1.1.1"));
    assert_false(client_ok(&f, "11.0.0.1"));
    assert_false(client_ok(&f, "::2"));
    assert_true(capfilter_port_ok(&f, 443));
    assert_true(capfilter_port_ok(&f, 8000));
    assert_true(capfilter_port_ok(&f, 8080));
    assert_false(capfilter_port_ok(&f, 8081));
    assert_false(capfilter_port_ok(&f, 80));
    /* a second spec adds terms */
    assert_int_equal(capfilter_parse(&f, "port=80", err, sizeof(err)), 0);
    assert_true(capfilter_port_ok(&f, 80));
}

static void expect_error(const char *spec, const char *names)
{
    struct capfilter f;
    char err[200] = "";
    memset(&f, 0, sizeof(f));
    assert_int_equal(capfilter_parse(&f, "port=1", err, sizeof(err)), 0);
    assert_int_equal(capfilter_parse(&f, spec, err, sizeof(err)), -1);
    assert_non_null(strstr(err, names));
    assert_null(strchr(err, '\n'));
    assert_int_equal(f.nports, 1);      /* unchanged on error */
    assert_int_equal(f.nnets, 0);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("client=10.0.0.0/33", "'client=10.0.0.0/33'");
    expect_error("client=10.0.0.0/8,port=0", "'port=0'");
    expect_error("port=70000", "'port=70000'");
    expect_error("port=90-80", "'port=90-80'");
    expect_error("port=-80", "'port=-80'");
    expect_error("port=8-", "'port=8-'");
    expect_error("host=x", "'host=x'");
    expect_error("port=80,", "empty term");
    expect_error("", "empty term");
    expect_error("port=1,port=2,port=3,port=4,port=5,port=6,port=7,port=8,port=9,port=10,port=11,"
                 "port=12,port=13,port=14,port=15,port=16", "too many");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_matches_all),
        cmocka_unit_test(test_terms),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_cfgdiff.c - unit tests for what a reload changes (config/cfgdiff.c):
 * two configs loaded from YAML, as a reload loads them, and diffed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "config/cfgdiff.h"
#include "config/yaml.h"
#include "config/yaml_node.h"

/* Only a config that fails to load says something. */
static void quiet(void *arg, int is_error, const char *line)
{
    (void)arg;
    if (is_error) print_message("%s\n", line);
}

static void load(struct ferry_cfg *c, const char *text)
{
    struct cfg_diag d = { quiet, NULL, 0, 0 };
    memset(c, 0, sizeof(*c));
    assert_int_equal(cfg_load_string("t.yaml", text, strlen(text), c, &d), 0);
}

#define HEAD "threads: 2\nlisteners:\n"
#define A "  - {name: a, mode: relay, listen: \"127.0.0.1:7001\", upstream: \"127.0.0.1:9001\"}\n"
#define B "  - {name: b, mode: socks, listen: \"127.0.0.1:7002\", user: [\"u:p\"]}\n"
#define C "  - {name: c, mode: relay, listen: \"127.0.0.1:7003\", upstream: \"127.0.0.1:9003\"}\n"

struct diff {
    struct ferry_cfg old, nw;
    const struct listener_cfg *olds[8];
    enum cfg_change what[8];
    long old_idx[8];
    unsigned char retire[8];
    struct cfg_diff d;
};

static void diff(struct diff *x, const char *old_text, const char *new_text)
{
    load(&x->old, old_text);
    load(&x->nw, new_text);
    for (size_t i = 0; i < x->old.nlisteners; i++) x->olds[i] = &x->old.listeners[i];
    x->d = (struct cfg_diff){ x->what, x->old_idx, x->retire, 0, 0, 0, 0 };
    assert_int_equal(cfg_diff_listeners(x->olds, x->old.nlisteners, x->nw.listeners, x->nw.nlisteners, &x->d), 0);
}

static void done(struct diff *x)
{
    cfg_free(&x->old);
    cfg_free(&x->nw);
}

static void test_same_config_keeps_all(void **state)
{
    (void)state;
    struct diff x;
    diff(&x, HEAD A B, HEAD A B);
    assert_int_equal(x.d.kept, 2);
    assert_int_equal(x.d.added + x.d.removed + x.d.changed, 0);
    assert_int_equal(x.what[0], CFG_KEPT);
    assert_int_equal(x.old_idx[1], 1);
    assert_int_equal(x.retire[0] + x.retire[1], 0);
    assert_null(cfg_global_change(&x.old, &x.nw));
    done(&x);
}

static void test_added_removed_by_name_in_any_order(void **state)
{
    (void)state;
    struct diff x;
    diff(&x, HEAD A B, HEAD C A);
    assert_int_equal(x.d.added, 1);
    assert_int_equal(x.d.removed, 1);
    assert_int_equal(x.d.kept, 1);
    assert_int_equal(x.what[0], CFG_ADDED);
    assert_int_equal(x.old_idx[0], -1);
    assert_int_equal(x.what[1], CFG_KEPT);
    assert_int_equal(x.old_idx[1], 0);
    assert_int_equal(x.retire[0], 0);
    assert_int_equal(x.retire[1], 1);            /* b removed */
    done(&x);
}

/* Each a change an operator makes; every one must make the listener
 * "changed", including those that live behind pointers. */
static void test_changes_behind_pointers_are_seen(void **state)
{
    (void)state;
    static const char *const variants[] = {
        "  - {name: b, mode: socks, listen: \"127.0.0.1:7002\", user: [\"u:q\"]}\n",          /* password */
        "  - {name: b, mode: socks, listen: \"127.0.0.1:7002\", user: [\"u:p\", \"v:p\"]}\n", /* a user more */
        "  - {name: b, mode: socks, listen: \"127.0.0.1:7002\", user: [\"u:p\"], allow: [10.0.0.0/8]}\n",
        "  - {name: b, mode: socks, listen: \"127.0.0.1:7002\", user: [\"u:p\"], deny-dest: [10.0.0.0/8]}\n",
        "  - {name: b, mode: socks, listen: \"127.0.0.1:7002\", user: [\"u:p\"], toxic: [\"latency:latency=10\"]}\n",
        "  - {name: b, mode: socks, listen: \"127.0.0.1:7002\", user: [\"u:p\"], rewrite: [\"upstream:a:b\"]}\n",
        "  - {name: b, mode: socks, listen: \"127.0.0.1:7002\", user: [\"u:p\"], maxconn: 5}\n",
        "  - {name: b, mode: socks, listen: \"127.0.0.1:7012\", user: [\"u:p\"]}\n",              /* address */
    };
    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
        char text[1024];
        struct diff x;
        snprintf(text, sizeof(text), HEAD A "%s", variants[v]);
        diff(&x, HEAD A B, text);
        if (x.d.changed != 1) fail_msg("variant %zu not seen as a change: %s", v, variants[v]);
        assert_int_equal(x.what[1], CFG_CHANGED);
        assert_int_equal(x.retire[1], 1);
        assert_int_equal(x.what[0], CFG_KEPT);
        done(&x);
    }
}

static void test_group_change_changes_its_listeners(void **state)
{
    (void)state;
    struct diff x;
    const char *g1 = "upstreams:\n  g: {servers: [\"127.0.0.1:9001\"], balance: leastconn}\n" HEAD
                     "  - {name: a, mode: relay, listen: \"127.0.0.1:7001\", upstream: g}\n";
    const char *g2 = "upstreams:\n  g: {servers: [\"127.0.0.1:9001\"], balance: source}\n" HEAD
                     "  - {name: a, mode: relay, listen: \"127.0.0.1:7001\", upstream: g}\n";
    diff(&x, g1, g2);
    assert_int_equal(x.d.changed, 1);
    done(&x);
    diff(&x, g1, g1);
    assert_int_equal(x.d.kept, 1);
    done(&x);
}

static void test_filter_content_is_part_of_the_listener(void **state)
{
    (void)state;
    struct diff x;
    diff(&x, HEAD A, HEAD A);
    x.old.listeners[0].filter_sum = 1;
    x.nw.listeners[0].filter_sum = 2;
    assert_false(cfg_listener_same(&x.old.listeners[0], &x.nw.listeners[0]));
    x.nw.listeners[0].filter_sum = 1;
    assert_true(cfg_listener_same(&x.old.listeners[0], &x.nw.listeners[0]));
    done(&x);
}

static void test_global_changes_are_named(void **state)
{
    (void)state;
    struct diff x;
    diff(&x, HEAD A, "threads: 3\nlisteners:\n" A);
    assert_string_equal(cfg_global_change(&x.old, &x.nw), "--threads");
    done(&x);
    diff(&x, HEAD A, "drain-timeout: 3s\n" HEAD A);
    assert_string_equal(cfg_global_change(&x.old, &x.nw), "--drain-timeout");
    done(&x);
}

static void test_held_addresses_are_those_of_retired_listeners(void **state)
{
    (void)state;
    struct diff x;
    /* a changed (its address passes on), b removed (its address is free
     * to take over), c added on b's address. */
    diff(&x, HEAD A B,
         HEAD "  - {name: a, mode: relay, listen: \"127.0.0.1:7001\", upstream: \"127.0.0.1:9009\"}\n"
              "  - {name: c, mode: relay, listen: \"127.0.0.1:7002\", upstream: \"127.0.0.1:9003\"}\n");
    assert_int_equal(x.d.changed, 1);
    assert_int_equal(x.d.added, 1);
    assert_int_equal(x.d.removed, 1);
    assert_true(cfg_diff_address_held(x.olds, 2, x.retire, &x.nw.listeners[0].listen[0]));
    assert_true(cfg_diff_address_held(x.olds, 2, x.retire, &x.nw.listeners[1].listen[0]));
    done(&x);
    /* kept: its address is not handed over */
    diff(&x, HEAD A, HEAD A);
    assert_false(cfg_diff_address_held(x.olds, 1, x.retire, &x.nw.listeners[0].listen[0]));
    done(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_config_keeps_all),
        cmocka_unit_test(test_added_removed_by_name_in_any_order),
        cmocka_unit_test(test_changes_behind_pointers_are_seen),
        cmocka_unit_test(test_group_change_changes_its_listeners),
        cmocka_unit_test(test_filter_content_is_part_of_the_listener),
        cmocka_unit_test(test_global_changes_are_named),
        cmocka_unit_test(test_held_addresses_are_those_of_retired_listeners),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_metrics.c - unit tests for obs/metrics: histogram buckets, label
 * escaping, the exposition text summed over worker blocks (threads with
 * their own slot), classification counters, servers through their ops. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/metrics.h"

static char *render(void)
{
    struct metrics_out o;
    assert_int_equal(metrics_render(&o, "1.2.3"), 0);
    assert_non_null(o.buf);
    assert_int_equal(strlen(o.buf), o.len);
    return o.buf;
}

static void has(const char *text, const char *line)
{
    if (!strstr(text, line)) fail_msg("missing: %s\n--- in:\n%s", line, text);
}

static void test_hist_buckets(void **state)
{
    (void)state;
    static const struct metrics_buckets b = { 3, { 10, 100, 1000 } };
    struct metrics_hist h, sum;
    memset(&h, 0, sizeof(h));
    memset(&sum, 0, sizeof(sum));
    metrics_hist_observe(&h, &b, 0);
    metrics_hist_observe(&h, &b, 10);       /* le is inclusive */
    metrics_hist_observe(&h, &b, 11);
    metrics_hist_observe(&h, &b, 1000);
    metrics_hist_observe(&h, &b, 1001);
    assert_int_equal(h.bucket[0], 2);
    assert_int_equal(h.bucket[1], 1);
    assert_int_equal(h.bucket[2], 1);
    assert_int_equal(h.bucket[3], 1);
    assert_int_equal(h.count, 5);
    assert_int_equal(h.sum, 2022);
    metrics_hist_sum(&sum, &h, &b);
    metrics_hist_sum(&sum, &h, &b);
    assert_int_equal(sum.bucket[3], 2);
    assert_int_equal(sum.count, 10);
}

static void test_escape(void **state)
{
    (void)state;
    struct metrics_out o = { 0 };
    metrics_escape_label(&o, "a\\b\"c\nd\x01\xff" "e");
    assert_string_equal(o.buf, "a\\\\b\\\"c\\nd??e");
    free(o.buf);
    /* Bounded: a long client-supplied value is cut at 128 bytes. */
    char big[400];
    memset(big, '"', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    memset(&o, 0, sizeof(o));
    metrics_escape_label(&o, big);
    assert_int_equal(strlen(o.buf), 256);
    free(o.buf);
}

struct worker_arg {
    struct metrics_listener *m;
    int id, n;
};

/* A worker: its own slot, n sessions of 10 ms with 100 up / 1000 down. */
static void *worker(void *p)
{
    struct worker_arg *a = p;
    metrics_thread_slot(a->id);
    for (int i = 0; i < a->n; i++) {
        metrics_conn_opened(a->m);
        struct metrics_session_end e = { .end = 1, .end_name = "client_closed", .refuse = MREF_N,
                                         .up = 100, .down = 1000, .duration_ms = 10, .user = "al\"ice",
                                         .sent_up = 110, .sent_down = 1010 };
        metrics_session_closed(a->m, &e);
    }
    metrics_conn_opened(a->m);        /* one left open */
    return NULL;
}

static void test_render_sums_workers(void **state)
{
    (void)state;
    assert_int_equal(metrics_init(2), 0);
    metrics_set_users(1);
    struct metrics_listener *m = metrics_listener_new("we\"b");
    assert_non_null(m);
    pthread_t t[2];
    struct worker_arg a[2] = { { m, 0, 5 }, { m, 1, 7 } };
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, &a[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    /* From this (non-worker) thread: the shared block. */
    metrics_refused(m, MREF_ACL);
    metrics_refused(m, MREF_LIMIT);
    metrics_refused(m, MREF_LIMIT);
    struct metrics_session_end e = { .end = 13, .end_name = "auth_failed", .refuse = MREF_AUTH,
                                     .hs_proto = "socks", .duration_ms = 4000 };
    metrics_conn_opened(m);
    metrics_session_closed(m, &e);
    metrics_dns_lookup(MDNS_OK, 300);
    metrics_dns_lookup(MDNS_CACHED, 0);

    char *s = render();
    has(s, "# HELP ferry_build_info ");
    has(s, "# TYPE ferry_build_info gauge\nferry_build_info{version=\"1.2.3\"} 1\n");
    has(s, "# TYPE ferry_listener_connections_total counter\n");
    has(s, "ferry_listener_connections_total{listener=\"we\\\"b\"} 15\n");
    has(s, "ferry_listener_current_connections{listener=\"we\\\"b\"} 2\n");
    has(s, "ferry_listener_refused_connections_total{listener=\"we\\\"b\",reason=\"acl\"} 1\n");
    has(s, "ferry_listener_refused_connections_total{listener=\"we\\\"b\",reason=\"limit\"} 2\n");
    has(s, "ferry_listener_refused_connections_total{listener=\"we\\\"b\",reason=\"auth\"} 1\n");
    has(s, "ferry_listener_refused_connections_total{listener=\"we\\\"b\",reason=\"time_window\"} 0\n");
    has(s, "ferry_received_bytes_total{listener=\"we\\\"b\",direction=\"up\"} 1200\n");
    has(s, "ferry_sent_bytes_total{listener=\"we\\\"b\",direction=\"down\"} 12120\n");   /* written, not read */
    has(s, "ferry_sent_bytes_total{listener=\"we\\\"b\",direction=\"up\"} 1320\n");
    has(s, "ferry_session_ends_total{listener=\"we\\\"b\",reason=\"client_closed\"} 12\n");
    has(s, "ferry_handshake_failures_total{listener=\"we\\\"b\",proto=\"socks\",reason=\"auth_failed\"} 1\n");
    has(s, "# TYPE ferry_session_duration_seconds histogram\n");
    has(s, "ferry_session_duration_seconds_bucket{listener=\"we\\\"b\",le=\"0.005\"} 0\n");
    has(s, "ferry_session_duration_seconds_bucket{listener=\"we\\\"b\",le=\"0.025\"} 12\n");
    has(s, "ferry_session_duration_seconds_bucket{listener=\"we\\\"b\",le=\"2.5\"} 12\n");
    has(s, "ferry_session_duration_seconds_bucket{listener=\"we\\\"b\",le=\"10\"} 13\n");
    has(s, "ferry_session_duration_seconds_bucket{listener=\"we\\\"b\",le=\"+Inf\"} 13\n");
    has(s, "ferry_session_duration_seconds_sum{listener=\"we\\\"b\"} 4.120000\n");
    has(s, "ferry_session_duration_seconds_count{listener=\"we\\\"b\"} 13\n");
    /* Users: merged over both workers, escaped; the failed one not counted. */
    has(s, "ferry_user_sessions_total{listener=\"we\\\"b\",user=\"al\\\"ice\"} 12\n");
    has(s, "ferry_user_sent_bytes_total{listener=\"we\\\"b\",user=\"al\\\"ice\"} 12000\n");
    has(s, "ferry_dns_lookups_total{result=\"ok\"} 1\n");
    has(s, "ferry_dns_lookups_total{result=\"cached\"} 1\n");
    has(s, "ferry_dns_lookup_duration_seconds_bucket{le=\"0.0005\"} 1\n");
    has(s, "ferry_dns_lookup_duration_seconds_count 1\n");
    has(s, "process_open_fds ");
    has(s, "process_resident_memory_bytes ");
    /* Each family's HELP and TYPE exactly once. */
    assert_null(strstr(strstr(s, "# TYPE ferry_sent_bytes_total") + 1, "# TYPE ferry_sent_bytes_total"));
    free(s);
    metrics_listener_free(m);
    s = render();
    assert_null(strstr(s, "we\\\"b"));
    free(s);
    metrics_set_users(0);
    metrics_shutdown();
}

static size_t srv_count(void *ctx) { (void)ctx; return 2; }
static void srv_name(void *ctx, size_t i, char *out, size_t len) { (void)ctx; snprintf(out, len, "s%zu:80", i); }
static int srv_up(void *ctx, size_t i) { (void)ctx; return i == 0; }
static uint64_t srv_trans(void *ctx, size_t i) { (void)ctx; return i * 3; }
static const struct metrics_server_ops srv_ops = { srv_count, srv_name, srv_up, srv_trans };

static void test_servers(void **state)
{
    (void)state;
    assert_int_equal(metrics_init(1), 0);
    struct metrics_listener *m = metrics_listener_new("r");
    metrics_listener_servers(m, &srv_ops, NULL);
    metrics_thread_slot(0);
    metrics_server_connected(m, 0, 200);
    metrics_server_connected(m, 0, 3000);
    metrics_server_closed(m, 0);
    metrics_server_failed(m, 1);
    metrics_server_failed(m, 99);          /* out of range: ignored */
    metrics_thread_slot(-1);
    char *s = render();
    has(s, "ferry_server_up{listener=\"r\",server=\"s0:80\"} 1\n");
    has(s, "ferry_server_up{listener=\"r\",server=\"s1:80\"} 0\n");
    has(s, "ferry_server_current_connections{listener=\"r\",server=\"s0:80\"} 1\n");
    has(s, "ferry_server_connections_total{listener=\"r\",server=\"s0:80\"} 2\n");
    has(s, "ferry_server_connect_failures_total{listener=\"r\",server=\"s1:80\"} 1\n");
    has(s, "ferry_server_check_transitions_total{listener=\"r\",server=\"s1:80\"} 3\n");
    has(s, "ferry_server_connect_duration_seconds_bucket{listener=\"r\",server=\"s0:80\",le=\"0.00025\"} 1\n");
    has(s, "ferry_server_connect_duration_seconds_bucket{listener=\"r\",server=\"s0:80\",le=\"0.005\"} 2\n");
    has(s, "ferry_server_connect_duration_seconds_count{listener=\"r\",server=\"s0:80\"} 2\n");
    free(s);
    metrics_listener_free(m);
    metrics_shutdown();
}

/* Only occurrences of needle in hay. */
static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) n++;
    return n;
}

/* A reload's changed listener: the old one drains beside the new one of
 * the same name. One series per name, the sums of both; freeing the old
 * one moves its totals to the new one, so no counter goes back. */
static void test_reload_twins(void **state)
{
    (void)state;
    assert_int_equal(metrics_init(1), 0);
    struct metrics_listener *old = metrics_listener_new("web");
    metrics_listener_servers(old, &srv_ops, NULL);
    metrics_thread_slot(0);
    metrics_conn_opened(old);
    struct metrics_session_end e = { .end = 1, .end_name = "client_closed", .refuse = MREF_N, .up = 10,
                                     .down = 20, .duration_ms = 5, .sent_up = 10, .sent_down = 20 };
    metrics_session_closed(old, &e);
    metrics_conn_opened(old);                    /* still draining */
    metrics_server_connected(old, 0, 100);
    struct metrics_listener *neu = metrics_listener_new("web");
    metrics_listener_servers(neu, &srv_ops, NULL);
    metrics_conn_opened(neu);
    metrics_session_closed(neu, &e);
    metrics_thread_slot(-1);
    char *s = render();
    assert_int_equal(count_of(s, "ferry_listener_connections_total{listener=\"web\"}"), 1);
    has(s, "ferry_listener_connections_total{listener=\"web\"} 3\n");
    has(s, "ferry_listener_current_connections{listener=\"web\"} 1\n");
    has(s, "ferry_received_bytes_total{listener=\"web\",direction=\"up\"} 20\n");
    has(s, "ferry_session_duration_seconds_count{listener=\"web\"} 2\n");
    assert_int_equal(count_of(s, "ferry_server_up{listener=\"web\",server=\"s0:80\"}"), 1);
    free(s);
    metrics_listener_free(old);
    s = render();
    has(s, "ferry_listener_connections_total{listener=\"web\"} 3\n");
    has(s, "ferry_received_bytes_total{listener=\"web\",direction=\"up\"} 20\n");
    has(s, "ferry_session_duration_seconds_count{listener=\"web\"} 2\n");
    free(s);
    metrics_listener_free(neu);
    metrics_shutdown();
}

/* Hooks before metrics_init (ferry without --metrics): nothing, no crash. */
static void test_off(void **state)
{
    (void)state;
    assert_null(metrics_listener_new("x"));
    metrics_conn_opened(NULL);
    metrics_refused(NULL, MREF_ACL);
    metrics_server_failed(NULL, 0);
    metrics_dns_lookup(MDNS_OK, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_buckets),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_off),
        cmocka_unit_test(test_render_sums_workers),
        cmocka_unit_test(test_servers),
        cmocka_unit_test(test_reload_twins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_spool.c - unit tests for stage/spool: records arrive whole and in
 * order from several threads; when the writer is stuck, puts do not wait:
 * they drop and count. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "obs/metrics.h"
#include "stage/spool.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int entered, released, batches;
static uint32_t seen[4][2000];
static size_t nseen[4], nrec;

static void rec_block(void *ctx, uint8_t *rec, size_t len)
{
    (void)ctx;
    pthread_mutex_lock(&mu);
    nrec++;
    entered = 1;
    pthread_cond_broadcast(&cv);
    while (!released) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    assert_int_equal(len, 20);
    (void)rec;
}

static void test_full_means_drop_not_wait(void **state)
{
    (void)state;
    static const struct spool_ops ops = { rec_block, NULL, METRICS_TAP_PCAP };
    char err[100];
    struct spool *sp = spool_new(64, &ops, NULL, "test", err, sizeof(err));
    assert_non_null(sp);
    uint8_t r[20] = { 0 };
    struct spool_part p = { r, sizeof(r) };
    assert_int_equal(spool_put(sp, &p, 1), 0);
    pthread_mutex_lock(&mu);
    while (!entered) pthread_cond_wait(&cv, &mu);   /* the writer holds record 1 */
    pthread_mutex_unlock(&mu);
    assert_int_equal(spool_put(sp, &p, 1), 0);      /* 24 bytes framed: two fit in 64 */
    assert_int_equal(spool_put(sp, &p, 1), 0);
    assert_int_equal(spool_put(sp, &p, 1), -1);
    spool_count_drop(sp);
    pthread_mutex_lock(&mu);
    released = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    assert_int_equal(spool_close(sp), 2);
    assert_int_equal(nrec, 3);
    /* Both drops reach the scrape's counter for the spool's output. */
    assert_int_equal(metrics_tap_dropped_total(METRICS_TAP_PCAP), 2);
    assert_int_equal(metrics_tap_dropped_total(METRICS_TAP_HEXDUMP), 0);
}

static void rec_order(void *ctx, uint8_t *rec, size_t len)
{
    (void)ctx;
    uint32_t v[3];
    assert_int_equal(len, sizeof(v));
    memcpy(v, rec, sizeof(v));
    assert_int_equal(v[2], v[0] ^ v[1]);          /* whole, not torn */
    seen[v[0]][nseen[v[0]]++] = v[1];
}

static void on_batch(void *ctx) { (void)ctx; batches++; }

static struct spool *shared;

static void *producer(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    for (uint32_t i = 0; i < 2000; i++) {
        uint32_t v[3] = { id, i, id ^ i };
        struct spool_part parts[2] = { { v, 8 }, { v + 2, 4 } };
        while (spool_put(shared, parts, 2) < 0) {}   /* retry: the test wants them all */
    }
    return NULL;
}

static void test_threads_in_order(void **state)
{
    (void)state;
    static const struct spool_ops ops = { rec_order, on_batch, METRICS_TAP_HEXDUMP };
    char err[100];
    pthread_t th[4];
    shared = spool_new(4096, &ops, NULL, "test", err, sizeof(err));
    assert_non_null(shared);
    for (uintptr_t i = 0; i < 4; i++) pthread_create(&th[i], NULL, producer, (void *)i);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    spool_close(shared);
    for (int t = 0; t < 4; t++) {
        assert_int_equal(nseen[t], 2000);
        for (uint32_t i = 0; i < 2000; i++) assert_int_equal(seen[t][i], i);   /* per producer: in order */
    }
    assert_true(batches >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_means_drop_not_wait),
        cmocka_unit_test(test_threads_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

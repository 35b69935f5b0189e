/* test_buffer.c - unit tests for buf/buffer: the pool and the byte buffer.
 *
 * Run under ASan, these also prove that buffers dropped past max_free and
 * those left in the pool at destroy time are really freed (no leak report),
 * and that buf_room()/buf_append() never touch bytes past cap.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "buf/buffer.h"

static void test_pool_lend_and_return(void **state)
{
    struct buf_pool p;
    struct buf *a, *b;

    (void)state;
    buf_pool_init(&p, 64, 4);
    assert_int_equal(p.in_use, 0);
    assert_int_equal(p.nfree, 0);
    assert_null(p.free);

    a = buf_get(&p);
    assert_non_null(a);
    assert_int_equal(a->cap, 64);
    assert_int_equal(a->head, 0);
    assert_int_equal(a->tail, 0);
    assert_int_equal(p.in_use, 1);
    b = buf_get(&p);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_int_equal(p.in_use, 2);

    buf_put(&p, a);
    assert_int_equal(p.in_use, 1);
    assert_int_equal(p.nfree, 1);
    /* A cached buffer is lent again, last in first out. */
    assert_ptr_equal(buf_get(&p), a);
    assert_int_equal(p.nfree, 0);
    assert_int_equal(p.in_use, 2);

    buf_put(&p, a);
    buf_put(&p, b);
    assert_int_equal(p.in_use, 0);
    assert_int_equal(p.nfree, 2);
    buf_put(&p, NULL);                 /* ignored */
    assert_int_equal(p.in_use, 0);
    buf_pool_destroy(&p);
    assert_int_equal(p.nfree, 0);
    assert_null(p.free);
}

/* A recycled buffer comes back empty, whatever it held. */
static void test_pool_resets_buffer(void **state)
{
    struct buf_pool p;
    struct buf *b;

    (void)state;
    buf_pool_init(&p, 16, 1);
    b = buf_get(&p);
    assert_int_equal(buf_append(b, "0123456789", 10), 10);
    buf_consumed(b, 3);
    buf_put(&p, b);
    b = buf_get(&p);
    assert_int_equal(b->head, 0);
    assert_int_equal(b->tail, 0);
    assert_int_equal(b->cap, 16);
    assert_int_equal(buf_room(b), 16);
    buf_put(&p, b);
    buf_pool_destroy(&p);
}

static void test_pool_max_free(void **state)
{
    struct buf_pool p;
    struct buf *b[6];

    (void)state;
    buf_pool_init(&p, 32, 2);
    for (int i = 0; i < 6; i++)
        assert_non_null(b[i] = buf_get(&p));
    assert_int_equal(p.in_use, 6);
    for (int i = 0; i < 6; i++)
        buf_put(&p, b[i]);
    assert_int_equal(p.in_use, 0);
    assert_int_equal(p.nfree, 2);
    /* The two kept are the first two returned. */
    assert_ptr_equal(p.free, b[1]);
    assert_ptr_equal(p.free->u.next_free, b[0]);
    buf_pool_destroy(&p);
}

static void test_pool_max_free_zero(void **state)
{
    struct buf_pool p;

    (void)state;
    buf_pool_init(&p, 8, 0);
    buf_put(&p, buf_get(&p));
    assert_int_equal(p.nfree, 0);
    assert_null(p.free);
    assert_int_equal(p.in_use, 0);
    buf_pool_destroy(&p);
}

/* A buffer of another size (e.g. from before a bufsize change) is freed,
 * not cached where it would be lent with the wrong capacity. */
static void test_pool_rejects_foreign_size(void **state)
{
    struct buf_pool small, big;
    struct buf *s, *b;

    (void)state;
    buf_pool_init(&small, 16, 4);
    buf_pool_init(&big, 32, 4);
    s = buf_get(&small);
    b = buf_get(&big);
    buf_put(&big, s);
    assert_int_equal(big.nfree, 0);
    assert_int_equal(big.in_use, 0);
    /* And the other way round. */
    buf_put(&small, b);
    assert_int_equal(small.nfree, 0);
    assert_int_equal(small.in_use, 0);
    buf_pool_destroy(&small);
    buf_pool_destroy(&big);
}

static void test_room_and_consume(void **state)
{
    struct buf_pool p;
    struct buf *b;

    (void)state;
    buf_pool_init(&p, 16, 1);
    b = buf_get(&p);
    assert_true(buf_empty(b));
    assert_int_equal(buf_room(b), 16);
    memcpy(buf_wptr(b), "abcdef", 6);
    buf_produced(b, 6);
    assert_false(buf_empty(b));
    assert_int_equal(buf_len(b), 6);
    assert_int_equal(buf_room(b), 10);
    buf_consumed(b, 2);
    assert_int_equal(buf_len(b), 4);
    assert_memory_equal(buf_rptr(b), "cdef", 4);
    /* Draining completely rewinds to the start: full room again. */
    buf_consumed(b, 4);
    assert_true(buf_empty(b));
    assert_int_equal(b->head, 0);
    assert_int_equal(b->tail, 0);
    assert_int_equal(buf_room(b), 16);
    buf_put(&p, b);
    buf_pool_destroy(&p);
}

/* Full at the tail with consumed bytes in front: buf_room() moves the
 * unread bytes to the front and reports the space that made. */
static void test_room_compacts_when_tail_full(void **state)
{
    struct buf_pool p;
    struct buf *b;

    (void)state;
    buf_pool_init(&p, 16, 1);
    b = buf_get(&p);
    assert_int_equal(buf_append(b, "0123456789ABCDEF", 16), 16);
    buf_consumed(b, 10);
    assert_int_equal(b->head, 10);
    assert_int_equal(buf_room(b), 10);
    assert_int_equal(b->head, 0);
    assert_int_equal(b->tail, 6);
    assert_memory_equal(buf_rptr(b), "ABCDEF", 6);
    buf_put(&p, b);
    buf_pool_destroy(&p);
}

/* With space left at the tail the data may stay where it is; whatever the
 * strategy, no unread byte is lost and the room is at least cap - tail. */
static void test_room_keeps_data(void **state)
{
    struct buf_pool p;
    struct buf *b;
    uint32_t room;

    (void)state;
    buf_pool_init(&p, 16, 1);
    b = buf_get(&p);
    assert_int_equal(buf_append(b, "0123456789AB", 12), 12);
    buf_consumed(b, 10);
    room = buf_room(b);
    assert_true(room >= 4);
    assert_int_equal(room, b->cap - b->tail);
    assert_int_equal(buf_len(b), 2);
    assert_memory_equal(buf_rptr(b), "AB", 2);
    buf_put(&p, b);
    buf_pool_destroy(&p);
}

static void test_append_partial_fit(void **state)
{
    struct buf_pool p;
    struct buf *b;

    (void)state;
    buf_pool_init(&p, 8, 1);
    b = buf_get(&p);
    assert_int_equal(buf_append(b, "0123456789", 10), 8);
    assert_int_equal(buf_len(b), 8);
    assert_memory_equal(buf_rptr(b), "01234567", 8);
    assert_int_equal(buf_append(b, "x", 1), 0);          /* full */
    assert_int_equal(buf_append(b, "", 0), 0);

    /* Consuming 3 at the front lets exactly 3 more in, after compaction. */
    buf_consumed(b, 3);
    assert_int_equal(buf_append(b, "abcdef", 6), 3);
    assert_int_equal(buf_len(b), 8);
    assert_memory_equal(buf_rptr(b), "34567abc", 8);
    assert_int_equal(b->head, 0);
    assert_int_equal(b->tail, 8);
    buf_put(&p, b);
    buf_pool_destroy(&p);
}

/* Prepending: into the room a consumed head left, else by moving the
 * bytes in flight; nothing changes when it cannot fit. */
static void test_prepend(void **state)
{
    struct buf_pool p;
    struct buf *b;

    (void)state;
    buf_pool_init(&p, 8, 1);
    b = buf_get(&p);
    assert_int_equal(buf_append(b, "HEADbody", 8), 8);
    buf_consumed(b, 4);
    assert_int_equal(buf_prepend(b, "GET", 3), 0);       /* fits in front */
    assert_int_equal(b->head, 1);
    assert_memory_equal(buf_rptr(b), "GETbody", 7);
    assert_int_equal(buf_prepend(b, "xy", 2), -1);       /* 9 > 8: untouched */
    assert_memory_equal(buf_rptr(b), "GETbody", 7);
    assert_int_equal(buf_prepend(b, "", 0), 0);
    buf_consumed(b, 7);
    assert_int_equal(buf_append(b, "ab", 2), 2);         /* head 0 */
    assert_int_equal(buf_prepend(b, "012345", 6), 0);    /* moves "ab" */
    assert_int_equal(buf_len(b), 8);
    assert_memory_equal(buf_rptr(b), "012345ab", 8);
    buf_put(&p, b);
    buf_pool_destroy(&p);
}

/* A stream pushed through a small buffer in uneven chunks comes out intact
 * and in order: the invariant head <= tail <= cap holds throughout. */
static void test_stream_through_buffer(void **state)
{
    struct buf_pool p;
    struct buf *b;
    uint8_t in[1000], out[1000];
    size_t written = 0, read = 0;
    unsigned step = 1;

    (void)state;
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (uint8_t)(i * 7 + 3);
    buf_pool_init(&p, 13, 1);
    b = buf_get(&p);
    while (read < sizeof in) {
        uint32_t want = (uint32_t)((step * 5) % 11 + 1), n;

        if (written < sizeof in) {
            if (want > sizeof in - written)
                want = (uint32_t)(sizeof in - written);
            written += buf_append(b, in + written, want);
        }
        assert_true(b->head <= b->tail && b->tail <= b->cap);
        n = buf_len(b) < (step % 4) + 1 ? buf_len(b) : (step % 4) + 1;
        memcpy(out + read, buf_rptr(b), n);
        buf_consumed(b, n);
        read += n;
        step++;
        assert_true(step < 10000);
    }
    assert_memory_equal(in, out, sizeof in);
    buf_put(&p, b);
    buf_pool_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_lend_and_return),
        cmocka_unit_test(test_pool_resets_buffer),
        cmocka_unit_test(test_pool_max_free),
        cmocka_unit_test(test_pool_max_free_zero),
        cmocka_unit_test(test_pool_rejects_foreign_size),
        cmocka_unit_test(test_room_and_consume),
        cmocka_unit_test(test_room_compacts_when_tail_full),
        cmocka_unit_test(test_room_keeps_data),
        cmocka_unit_test(test_append_partial_fit),
        cmocka_unit_test(test_prepend),
        cmocka_unit_test(test_stream_through_buffer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_hexdump.c - unit tests for stage/hexdump: the dump lines are exactly
 * what `xxd` prints for the same bytes (expected text taken from xxd), the
 * header line, offsets that continue across chunks, and the size bound. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "stage/hexdump.h"

static char *dump(const struct hexdump_hdr *h, const void *p, size_t n)
{
    char *out = malloc(HEXDUMP_BOUND(n));
    memset(out, 'Z', HEXDUMP_BOUND(n));
    size_t len = hexdump_format(out, h, p, n);
    assert_int_equal(strlen(out), len);
    assert_true(len < HEXDUMP_BOUND(n));
    return out;
}

static void test_like_xxd(void **state)
{
    (void)state;
    struct hexdump_hdr h = { .ts_us = 1714564800123456LL, .sess_id = 42, .up = 1, .offset = 0 };
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    char *out = dump(&h, req, strlen(req));
    assert_string_equal(out,
        "2024-05-01T12:00:00.123456Z sess=42 client>upstream len=27 offset=0\n"
        "00000000: 4745 5420 2f20 4854 5450 2f31 2e31 0d0a  GET / HTTP/1.1..\n"
        "00000010: 486f 7374 3a20 780d 0a0d 0a              Host: x....\n");
    free(out);
}

static void test_nonprintable_and_offset(void **state)
{
    (void)state;
    struct hexdump_hdr h = { .ts_us = 5, .sess_id = 7, .up = 0, .offset = 0x1fff8 };
    char *out = dump(&h, "\x00\x01\xff~ \x7f", 6);
    assert_string_equal(out,
        "1970-01-01T00:00:00.000005Z sess=7 upstream>client len=6 offset=131064\n"
        "0001fff8: 0001 ff7e 207f                           ...~ .\n");
    free(out);
}

static void test_empty_and_bound(void **state)
{
    (void)state;
    struct hexdump_hdr h = { .ts_us = 0, .sess_id = UINT64_MAX, .up = 1, .offset = UINT64_MAX - 64 };
    char *out = dump(&h, "", 0);
    assert_string_equal(out, "1970-01-01T00:00:00.000000Z sess=18446744073709551615 client>upstream len=0 "
                             "offset=18446744073709551551\n");
    free(out);
    /* wide offsets (more than 8 digits) and many lines stay in the bound */
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (uint8_t)i;
    for (size_t n = 1; n <= sizeof(buf); n += 37) {
        out = dump(&h, buf, n);
        size_t lines = 0;
        for (char *c = out; *c; c++) lines += *c == '\n';
        assert_int_equal(lines, 1 + (n + 15) / 16);
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_like_xxd),
        cmocka_unit_test(test_nonprintable_and_offset),
        cmocka_unit_test(test_empty_and_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

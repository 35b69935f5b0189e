/* hexdump.c - see hexdump.h. Built by hand, not with a printf per byte:
 * the writer thread formats every relayed byte of a dumped session. */
#include "stage/hexdump.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char hexdig[] = "0123456789abcdef";

static size_t header(char *out, const struct hexdump_hdr *h, size_t n)
{
    struct tm tm;
    time_t sec = (time_t)(h->ts_us / 1000000);
    long usec = (long)(h->ts_us % 1000000);
    gmtime_r(&sec, &tm);
    int k = snprintf(out, 128, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ sess=%llu %s len=%zu offset=%llu\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec,
                     (unsigned long long)h->sess_id, h->up ? "client>upstream" : "upstream>client", n,
                     (unsigned long long)h->offset);
    return k < 0 ? 0 : (size_t)k < 128 ? (size_t)k : 127;
}

/* "00000010: 486f 7374 3a20 780d 0a0d 0a              Host: x....\n" */
static size_t line(char *o, uint64_t off, const uint8_t *p, size_t k)
{
    char *s = o;
    int digits = 8;
    while (digits < 16 && (off >> (4 * digits))) digits++;
    for (int i = digits - 1; i >= 0; i--) *s++ = hexdig[(off >> (4 * i)) & 15];
    *s++ = ':';
    *s++ = ' ';
    for (size_t i = 0; i < 16; i++) {
        if (i < k) {
            *s++ = hexdig[p[i] >> 4];
            *s++ = hexdig[p[i] & 15];
        } else {
            *s++ = ' ';            /* pad so the text column lines up */
            *s++ = ' ';
        }
        if (i & 1) *s++ = ' ';
    }
    *s++ = ' ';
    for (size_t i = 0; i < k; i++) *s++ = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.';
    *s++ = '\n';
    return (size_t)(s - o);
}

size_t hexdump_format(char *out, const struct hexdump_hdr *h, const uint8_t *p, size_t n)
{
    size_t len = header(out, h, n);
    for (size_t i = 0; i < n; i += 16) len += line(out + len, h->offset + i, p + i, n - i < 16 ? n - i : 16);
    out[len] = '\0';
    return len;
}

/* hexdump.h - one chunk of a session's bytes as text, like `xxd` (pure).
 *
 *   2024-05-01T12:00:00.123456Z sess=42 client>upstream len=37 offset=0
 *   00000000: 4745 5420 2f20 4854 5450 2f31 2e31 0d0a  GET / HTTP/1.1..
 *   00000010: 486f 7374 3a20 780d 0a0d 0a              Host: x....
 *
 * The offset counts the direction's bytes since the session began, so a
 * stream's dump reads on from chunk to chunk; lines start at the chunk's
 * first byte (not aligned to 16). Bytes outside printable ASCII show as '.'.
 */
#ifndef FERRY_HEXDUMP_H
#define FERRY_HEXDUMP_H

#include <stddef.h>
#include <stdint.h>

struct hexdump_hdr {
    int64_t ts_us;          /* wall clock, microseconds since the epoch */
    uint64_t sess_id;
    int up;                 /* 1: client>upstream, 0: upstream>client */
    uint64_t offset;        /* of the chunk's first byte in its direction */
};

/* Bytes hexdump_format() may write for n bytes of data (with its NUL). */
#define HEXDUMP_BOUND(n) (128 + ((size_t)(n) + 15) / 16 * 96)

/* Writes the header line and the dump lines (each ending in '\n') into
 * out, which holds HEXDUMP_BOUND(n) bytes. Returns the length written
 * (without the NUL). */
size_t hexdump_format(char *out, const struct hexdump_hdr *h, const uint8_t *p, size_t n);

#endif

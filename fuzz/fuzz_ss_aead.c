/* fuzz_ss_aead.c - libFuzzer target for proto/ss_aead (Shadowsocks AEAD
 * stream decoder and encoder), with fixed keys.
 *
 * Input layout: byte 0 picks the method (bits 0-1) and the mode (bits 2-3);
 * bytes 1-4 seed the split sizes; byte 5 picks the plaintext room per call
 * (and, by mode, a repeat count or a tamper flag); the rest is the body.
 *
 * Modes:
 *   0 raw      the body is ciphertext (salt first; the seeds hold valid
 *              streams for the fixed key). Decoded at random splits and
 *              room, and again in one call: both runs must agree exactly
 *              (result, plaintext), so splitting never changes meaning.
 *   1 trip     the body (repeated 1..16 times, so chunks reach 0x3FFF) is
 *              plaintext, encoded in seed-chosen write sizes, optionally with
 *              one byte flipped, then decoded at seed-chosen splits.
 *              Untouched: output == plaintext and the stream ends cleanly.
 *              Flipped: SS_DEC_ERROR, after a prefix of the plaintext.
 *   2 forged   the body is records [len_hi][len_lo][n][n bytes]: the length
 *              field (any value) and the n-byte payload are sealed with the
 *              real key, so the decoder's length checks are reachable.
 *              Output is always a prefix of the payloads of the leading
 *              records whose declared length equals n and is in 1..0x3FFF;
 *              if all records are such, output is all of them.
 *
 * Checked everywhere (abort() on violation): consumed <= len, plain_len <=
 * room, results in {ERROR, NEED_MORE, NEED_ROOM}, once ERROR always ERROR,
 * and every call reads only its exactly-sized heap copy (ASan).
 *
 * Build: clang -O1 -g -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc \
 *   fuzz/fuzz_ss_aead.c src/proto/ss_aead.c src/crypto/ss_cipher.c src/crypto/replay.c \
 *   -lcrypto -o fuzz_ss_aead
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/ss_cipher.h"
#include "proto/ss_aead.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static const char *const method_names[4] = {
    "chacha20-ietf-poly1305", "aes-256-gcm", "aes-192-gcm", "aes-128-gcm",
};

struct fz {
    const struct ss_method *m;
    uint8_t key[SS_KEY_MAX];
    uint32_t rng;     /* xorshift32 state for split and write sizes */
    size_t room;      /* plaintext room offered per call */
    bool whole;       /* hand over all input at once */
};

static uint32_t rnd(struct fz *f)
{
    uint32_t x = f->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return f->rng = x;
}

/* Next piece length: mostly tiny (to split inside salt and length field),
 * sometimes around a chunk, sometimes everything. */
static size_t piece(struct fz *f, size_t left)
{
    uint32_t r = rnd(f);
    size_t n;

    if (f->whole)
        return left;
    switch (r & 3) {
    case 0: n = 1 + (r >> 8) % 4; break;
    case 1: n = 1 + (r >> 8) % 40; break;
    case 2: n = 1 + (r >> 8) % (SS_MAX_CHUNK + 64); break;
    default: n = left; break;
    }
    return n < left ? n : left;
}

/* After a non-error call that left the decoder at s[start..end). */
static void check_accessors(const struct ss_dec *d, const uint8_t *s,
                            size_t start, size_t end, size_t got)
{
    size_t sl = d->m->salt_len;

    if (start >= sl)
        CHECK(ss_dec_salt(d) != NULL && memcmp(ss_dec_salt(d), s, sl) == 0);
    else
        CHECK(ss_dec_salt(d) == NULL && start == end);
    CHECK(ss_dec_authenticated(d) == (got > 0));
    CHECK(ss_dec_need(d) > 0);
    if (ss_dec_next_len(d) > 0)
        CHECK(ss_dec_need(d) == ss_dec_next_len(d) + SS_TAG_LEN);
    else
        CHECK(start == end);  /* salt and length bytes are always taken */
}

/* Decode s[0..n) as a receiver would: bytes arrive in random pieces;
 * unconsumed ones are handed again, each call on an exact heap copy.
 * Output accumulates in out (cap outcap). Returns the final result. */
static int decode(struct fz *f, const uint8_t *s, size_t n, uint8_t *out,
                  size_t outcap, size_t *outlen)
{
    struct ss_dec d;
    size_t start = 0, end = 0, got = 0;
    int rc = SS_DEC_NEED_MORE;
    bool dead = false;

    ss_dec_init(&d, f->m, f->key);
    while (start < n || rc == SS_DEC_NEED_ROOM) {
        if (rc != SS_DEC_NEED_ROOM || end == start)
            end += piece(f, n - end);
        size_t room = f->room;
        if (rc == SS_DEC_NEED_ROOM && room < ss_dec_next_len(&d))
            room = ss_dec_next_len(&d);  /* a caller drains until it fits */
        if (room > outcap - got)
            room = outcap - got;
        uint8_t *in = malloc(end - start + 1);
        memcpy(in, s + start, end - start);
        size_t c = 0, pl = 0;
        rc = ss_dec_feed(&d, in, end - start, &c, out + got, room, &pl);
        free(in);
        CHECK(rc == SS_DEC_ERROR || rc == SS_DEC_NEED_MORE || rc == SS_DEC_NEED_ROOM);
        CHECK(c <= end - start && pl <= room);
        CHECK(!dead || rc == SS_DEC_ERROR);
        start += c;
        got += pl;
        if (rc == SS_DEC_ERROR) {
            dead = true;
            break;
        }
        check_accessors(&d, s, start, end, got);
        if (rc == SS_DEC_NEED_ROOM && outcap - got < ss_dec_next_len(&d))
            break;                           /* output full: stop */
        if (rc == SS_DEC_NEED_MORE && end == n)
            break;                           /* stream ended mid-chunk */
    }
    if (dead) {
        size_t c, pl;
        CHECK(ss_dec_feed(&d, s, n, &c, out, 0, &pl) == SS_DEC_ERROR);
    }
    ss_dec_free(&d);
    *outlen = got;
    return rc;
}

/* The result must not depend on how the bytes were split or how much room
 * each call had: compare with one call on the whole input. */
static void mode_raw(struct fz *f, const uint8_t *body, size_t n)
{
    uint8_t *out = malloc(n + 1), *ref = malloc(n + 1);
    size_t got, refgot;
    struct fz whole = *f;

    int rc = decode(f, body, n, out, n, &got);
    whole.whole = true;
    whole.room = n;
    int refrc = decode(&whole, body, n, ref, n, &refgot);
    CHECK(rc == refrc && got == refgot && memcmp(out, ref, got) == 0);
    free(out), free(ref);
}

/* Encode plain in random write sizes; returns malloc'd stream. */
static uint8_t *encode(struct fz *f, const uint8_t *plain, size_t n,
                       size_t *slen)
{
    uint8_t salt[SS_SALT_MAX];
    struct ss_enc e;
    size_t cap = SS_SALT_MAX + n + (n + 1) * SS_CHUNK_OVERHEAD, off = 0;
    uint8_t *s = malloc(cap);

    memset(salt, 0x5a, sizeof(salt));
    CHECK(ss_enc_init(&e, f->m, f->key, salt) == 0);
    for (size_t at = 0; at < n || off == 0;) {
        size_t k = piece(f, n - at);
        size_t want = ss_enc_size(&e, k);
        size_t fit = ss_enc_max_plain(&e, want);
        CHECK(fit >= k && ss_enc_size(&e, fit) <= want);
        CHECK(ss_enc_write(&e, plain + at, k, s + off, want - 1) == 0);
        CHECK(ss_enc_write(&e, plain + at, k, s + off, cap - off) == want);
        off += want;
        at += k;
    }
    ss_enc_free(&e);
    *slen = off;
    return s;
}

static void mode_trip(struct fz *f, const uint8_t *body, size_t n, uint8_t ctl)
{
    size_t reps = 1 + (ctl >> 4), total = n * reps, slen, got;
    uint8_t *plain = malloc(total + 1), *out = malloc(total + 1);

    for (size_t i = 0; i < reps; i++)
        memcpy(plain + i * n, body, n);
    uint8_t *s = encode(f, plain, total, &slen);
    bool tamper = (ctl & 1) && total > 0;  /* a bare salt has nothing to fail */
    if (tamper)
        s[rnd(f) % slen] ^= (uint8_t)(1 + (ctl >> 1) % 255);
    int rc = decode(f, s, slen, out, total, &got);
    CHECK(got <= total && memcmp(out, plain, got) == 0);
    if (tamper) {
        CHECK(rc == SS_DEC_ERROR);
    } else {
        CHECK(rc == SS_DEC_NEED_MORE && got == total);
    }
    free(s), free(plain), free(out);
}

/* Build the forged stream from records; want[] gets the payloads of the
 * leading valid records. */
static uint8_t *forge(struct fz *f, const uint8_t *body, size_t n, size_t *slen,
                      uint8_t *want, size_t *wantlen, bool *all_valid)
{
    uint8_t salt[SS_SALT_MAX];
    struct ss_aead a;
    uint8_t *s = malloc(SS_SALT_MAX + n * (1 + 2 * SS_TAG_LEN) + 1);
    size_t off = f->m->salt_len, w = 0;
    bool valid = true;

    memset(salt, 0xa5, sizeof(salt));
    memcpy(s, salt, f->m->salt_len);
    CHECK(ss_aead_init(&a, f->m, f->key, salt) == 0);
    for (size_t i = 0; i + 3 <= n;) {
        unsigned len = (unsigned)body[i] << 8 | body[i + 1];
        size_t k = body[i + 2];
        if (i + 3 + k > n)
            break;
        CHECK(ss_aead_seal(&a, s + off, body + i, 2) == 0);
        off += SS_LEN_BLOCK;
        CHECK(ss_aead_seal(&a, s + off, body + i + 3, k) == 0);
        off += k + SS_TAG_LEN;
        if (valid && len == k && len >= 1 && len <= SS_MAX_PAYLOAD) {
            memcpy(want + w, body + i + 3, k);
            w += k;
        } else {
            valid = false;
        }
        i += 3 + k;
    }
    ss_aead_free(&a);
    *slen = off;
    *wantlen = w;
    *all_valid = valid;
    return s;
}

static void mode_forged(struct fz *f, const uint8_t *body, size_t n)
{
    uint8_t *want = malloc(n + 1), *out = malloc(n + 1);
    size_t slen, wlen, got;
    bool all_valid;
    uint8_t *s = forge(f, body, n, &slen, want, &wlen, &all_valid);

    int rc = decode(f, s, slen, out, n, &got);
    CHECK(got <= wlen && memcmp(out, want, got) == 0);
    if (all_valid)
        CHECK(rc == SS_DEC_NEED_MORE && got == wlen);
    free(s), free(want), free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t keys[4][SS_KEY_MAX];
    static bool ready;
    struct fz f;

    if (!ready) {
        for (int i = 0; i < 4; i++)
            CHECK(ss_key_from_password(ss_method_find(method_names[i]), "fuzz", keys[i]) == 0);
        ready = true;
    }
    if (size < 6)
        return 0;
    f.m = ss_method_find(method_names[data[0] & 3]);
    memcpy(f.key, keys[data[0] & 3], SS_KEY_MAX);
    f.whole = false;
    f.rng = ((uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 |
             (uint32_t)data[3] << 8 | data[4]) | 1;
    f.room = data[5] < 128 ? 1 + (size_t)data[5] * 8 : SS_MAX_PAYLOAD * (size_t)(data[5] - 127);
    const uint8_t *body = data + 6;
    size_t n = size - 6;
    switch ((data[0] >> 2) & 3) {
    case 0: mode_raw(&f, body, n); break;
    case 1: mode_trip(&f, body, n, data[5]); break;
    case 2: mode_forged(&f, body, n); break;
    default: break;
    }
    return 0;
}

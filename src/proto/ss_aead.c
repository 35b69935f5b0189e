/* ss_aead.c - Shadowsocks AEAD stream framing. Contracts in ss_aead.h. */
#include "proto/ss_aead.h"

#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>

/* ---- encoder ------------------------------------------------------------ */

int ss_enc_init(struct ss_enc *e, const struct ss_method *m,
                const uint8_t *master, const uint8_t *salt)
{
    memset(e, 0, sizeof(*e));
    if (ss_aead_init(&e->aead, m, master, salt) != 0)
        return -1;
    memcpy(e->salt, salt, m->salt_len);
    return 0;
}

size_t ss_enc_size(const struct ss_enc *e, size_t len)
{
    size_t salt = e->salt_sent ? 0 : e->aead.m->salt_len;
    size_t chunks = len / SS_MAX_PAYLOAD + (len % SS_MAX_PAYLOAD != 0);

    /* Overhead is < 0.3 %, so this only saturates for absurd lengths. */
    if (len > SIZE_MAX / 2)
        return SIZE_MAX;
    return salt + chunks * SS_CHUNK_OVERHEAD + len;
}

size_t ss_enc_max_plain(const struct ss_enc *e, size_t outcap)
{
    size_t salt = e->salt_sent ? 0 : e->aead.m->salt_len;

    if (outcap < salt)
        return 0;
    size_t avail = outcap - salt;
    size_t rest = avail % SS_MAX_CHUNK;
    return avail / SS_MAX_CHUNK * SS_MAX_PAYLOAD +
           (rest > SS_CHUNK_OVERHEAD ? rest - SS_CHUNK_OVERHEAD : 0);
}

/* Seal one chunk of n (1..SS_MAX_PAYLOAD) bytes at out; returns 0 or -1. */
static int enc_chunk(struct ss_enc *e, const uint8_t *plain, size_t n,
                     uint8_t *out)
{
    uint8_t be[2] = { (uint8_t)(n >> 8), (uint8_t)n };

    if (ss_aead_seal(&e->aead, out, be, sizeof(be)) != 0)
        return -1;
    return ss_aead_seal(&e->aead, out + SS_LEN_BLOCK, plain, n);
}

size_t ss_enc_write(struct ss_enc *e, const uint8_t *plain, size_t len,
                    uint8_t *out, size_t outcap)
{
    size_t off = 0;

    if (e->failed || outcap < ss_enc_size(e, len))
        return 0;
    if (!e->salt_sent) {
        memcpy(out, e->salt, e->aead.m->salt_len);
        off = e->aead.m->salt_len;
    }
    while (len > 0) {
        size_t n = len < SS_MAX_PAYLOAD ? len : SS_MAX_PAYLOAD;
        if (enc_chunk(e, plain, n, out + off) != 0) {
            e->failed = true;
            return 0;
        }
        off += SS_CHUNK_OVERHEAD + n;
        plain += n;
        len -= n;
    }
    e->salt_sent = true;
    return off;
}

void ss_enc_free(struct ss_enc *e)
{
    ss_aead_free(&e->aead);
    OPENSSL_cleanse(e->salt, sizeof(e->salt));
}

/* ---- decoder ------------------------------------------------------------ */

/* Internal step results: the public codes, plus "go on with the next step". */
enum { DEC_CONTINUE = 2 };

void ss_dec_init(struct ss_dec *d, const struct ss_method *m,
                 const uint8_t *master)
{
    memset(d, 0, sizeof(*d));
    d->m = m;
    memcpy(d->master, master, m->key_len);
    d->state = SS_DEC_S_SALT;
}

static int dec_fail(struct ss_dec *d)
{
    d->state = SS_DEC_S_DEAD;
    return SS_DEC_ERROR;
}

/* Append up to want - d->have bytes of in[*off..len) to buf. True once buf
 * holds want bytes. */
static bool dec_fill(struct ss_dec *d, uint8_t *buf, size_t want,
                     const uint8_t *in, size_t len, size_t *off)
{
    size_t n = want - d->have;

    if (n > len - *off)
        n = len - *off;
    if (n == 0)                 /* in may be NULL when len == 0 */
        return d->have == want;
    memcpy(buf + d->have, in + *off, n);
    d->have = (uint8_t)(d->have + n);
    *off += n;
    return d->have == want;
}

static int dec_salt(struct ss_dec *d, const uint8_t *in, size_t len, size_t *off)
{
    if (!dec_fill(d, d->salt, d->m->salt_len, in, len, off))
        return SS_DEC_NEED_MORE;
    d->have = 0;
    int rc = ss_aead_init(&d->aead, d->m, d->master, d->salt);
    OPENSSL_cleanse(d->master, sizeof(d->master));
    if (rc != 0)
        return dec_fail(d);
    d->state = SS_DEC_S_LEN;
    return DEC_CONTINUE;
}

static int dec_len(struct ss_dec *d, const uint8_t *in, size_t len, size_t *off)
{
    const uint8_t *blk;
    uint8_t be[2];

    if (d->have == 0 && len - *off >= SS_LEN_BLOCK) {
        blk = in + *off;                   /* whole block in place: no copy */
        *off += SS_LEN_BLOCK;
    } else {
        if (!dec_fill(d, d->lenblk, SS_LEN_BLOCK, in, len, off))
            return SS_DEC_NEED_MORE;
        blk = d->lenblk;
        d->have = 0;
    }
    if (ss_aead_open(&d->aead, be, blk, SS_LEN_BLOCK) != 0)
        return dec_fail(d);
    d->plen = (uint16_t)(be[0] << 8 | be[1]);
    /* ss-libev masks the length with 0x3FFF; SIP004 says larger lengths are
     * invalid, and a zero length is rejected by ss-libev too. */
    if (d->plen == 0 || d->plen > SS_MAX_PAYLOAD)
        return dec_fail(d);
    d->state = SS_DEC_S_PAYLOAD;
    return DEC_CONTINUE;
}

static int dec_payload(struct ss_dec *d, const uint8_t *in, size_t len,
                       size_t *off, uint8_t *out, size_t cap, size_t *plain_len)
{
    size_t blk = (size_t)d->plen + d->m->tag_len;

    if (cap - *plain_len < d->plen)
        return SS_DEC_NEED_ROOM;
    if (len - *off < blk)
        return SS_DEC_NEED_MORE;
    if (ss_aead_open(&d->aead, out + *plain_len, in + *off, blk) != 0)
        return dec_fail(d);
    *off += blk;
    *plain_len += d->plen;
    d->authenticated = true;
    d->plen = 0;
    d->state = SS_DEC_S_LEN;
    return DEC_CONTINUE;
}

int ss_dec_feed(struct ss_dec *d, const uint8_t *in, size_t len,
                size_t *consumed, uint8_t *plain_out, size_t plain_cap,
                size_t *plain_len)
{
    int rc = DEC_CONTINUE;

    *consumed = 0;
    *plain_len = 0;
    while (rc == DEC_CONTINUE) {
        switch (d->state) {
        case SS_DEC_S_SALT:
            rc = dec_salt(d, in, len, consumed);
            break;
        case SS_DEC_S_LEN:
            rc = dec_len(d, in, len, consumed);
            break;
        case SS_DEC_S_PAYLOAD:
            rc = dec_payload(d, in, len, consumed, plain_out, plain_cap,
                             plain_len);
            break;
        default:
            rc = SS_DEC_ERROR;
            break;
        }
    }
    return rc;
}

const uint8_t *ss_dec_salt(const struct ss_dec *d)
{
    return d->state == SS_DEC_S_SALT ? NULL : d->salt;
}

bool ss_dec_authenticated(const struct ss_dec *d)
{
    return d->authenticated;
}

size_t ss_dec_next_len(const struct ss_dec *d)
{
    return d->state == SS_DEC_S_PAYLOAD ? d->plen : 0;
}

size_t ss_dec_need(const struct ss_dec *d)
{
    switch (d->state) {
    case SS_DEC_S_SALT:
        return d->m->salt_len - d->have;
    case SS_DEC_S_LEN:
        return SS_LEN_BLOCK - d->have;
    case SS_DEC_S_PAYLOAD:
        return (size_t)d->plen + d->m->tag_len;
    default:
        return 0;
    }
}

void ss_dec_free(struct ss_dec *d)
{
    ss_aead_free(&d->aead);
    OPENSSL_cleanse(d->master, sizeof(d->master));
    OPENSSL_cleanse(d->salt, sizeof(d->salt));
    OPENSSL_cleanse(d->lenblk, sizeof(d->lenblk));
    d->state = SS_DEC_S_DEAD;
}

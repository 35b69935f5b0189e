/* ss_aead.h - Shadowsocks AEAD stream framing (SIP004), sans-I/O.
 *
 * Wire format of one direction:
 *
 *   [salt: salt_len] then chunks, each
 *   [seal(2-byte big-endian payload length) : 2 + 16][seal(payload) : len + 16]
 *
 * with 1 <= len <= SS_MAX_PAYLOAD (0x3FFF). Every seal/open advances the
 * nonce, so a chunk consumes two nonces.
 *
 * Pure: bytes in, bytes out, no sockets, no logging, no malloc. The salt is
 * chosen by the caller (RAND_bytes in production, fixed in tests).
 */
#ifndef FERRY_SS_AEAD_H
#define FERRY_SS_AEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/ss_cipher.h"

enum {
    SS_MAX_PAYLOAD = 0x3FFF,                    /* largest payload per chunk */
    SS_LEN_BLOCK   = 2 + SS_TAG_LEN,            /* sealed length field: 18 */
    SS_CHUNK_OVERHEAD = SS_LEN_BLOCK + SS_TAG_LEN, /* 34 bytes per chunk */
    SS_MAX_CHUNK   = SS_CHUNK_OVERHEAD + SS_MAX_PAYLOAD, /* 16417 */
    /* The largest block the decoder needs contiguous in one `in` (a payload
     * block with its tag). A caller's receive buffer must be able to hold at
     * least this many unconsumed bytes contiguously. */
    SS_DEC_MAX_PENDING = SS_MAX_PAYLOAD + SS_TAG_LEN, /* 16399 */
};

/* ---- encoder ------------------------------------------------------------ */

struct ss_enc {
    struct ss_aead aead;
    uint8_t salt[SS_SALT_MAX];
    bool salt_sent;   /* the salt has been written by ss_enc_write() */
    bool failed;      /* a libcrypto call failed; the stream is unusable */
};

/* Set up an encoder (104 bytes plus libcrypto's cipher context, allocated
 * here, never per chunk): subkey from (master, salt); the salt (m->salt_len
 * bytes, from RAND_bytes in production) is emitted in front of the first
 * output. master is not kept. Returns 0, or -1 on a libcrypto failure
 * (nothing to free then). */
int ss_enc_init(struct ss_enc *e, const struct ss_method *m,
                const uint8_t *master, const uint8_t *salt);

/* Exact number of bytes ss_enc_write(e, _, len, ...) would write now: the
 * salt if not yet sent, plus SS_CHUNK_OVERHEAD per started 0x3FFF bytes,
 * plus len. */
size_t ss_enc_size(const struct ss_enc *e, size_t len);

/* Largest plaintext length whose encoding fits in outcap bytes now (0 if not
 * even the salt, or one byte of payload, fits). Useful to fill a bounded
 * output buffer: ss_enc_write(e, p, min(avail, ss_enc_max_plain(e, cap))). */
size_t ss_enc_max_plain(const struct ss_enc *e, size_t outcap);

/* Encrypt len bytes of plain into out, split into chunks of at most
 * SS_MAX_PAYLOAD, preceded by the salt on the first call. len == 0 writes
 * only the salt if it is still due (no empty chunk is ever produced).
 * out must not overlap plain.
 * Returns the number of bytes written, which is exactly ss_enc_size(e, len)
 * as computed before the call. Returns 0 and writes nothing useful if
 * outcap < ss_enc_size(e, len) (caller bug; the encoder is unchanged), or if
 * libcrypto fails (then e->failed is set and every later call returns 0:
 * close the connection). */
size_t ss_enc_write(struct ss_enc *e, const uint8_t *plain, size_t len,
                    uint8_t *out, size_t outcap);

/* Wipe the subkey and free the cipher context. Idempotent. */
void ss_enc_free(struct ss_enc *e);

/* ---- decoder ------------------------------------------------------------ */

/* ss_dec_feed() results. Progress is reported through *consumed and
 * *plain_len, which may both be non-zero with any result. */
enum {
    SS_DEC_ERROR     = -1, /* bad tag, length 0 or > 0x3FFF: stream dead */
    SS_DEC_NEED_MORE = 0,  /* input exhausted: call again with more bytes */
    SS_DEC_NEED_ROOM = 1,  /* next chunk's payload (ss_dec_next_len()) does
                              not fit in what is left of plain_cap: drain the
                              plaintext, then call again */
};

enum ss_dec_state { SS_DEC_S_SALT, SS_DEC_S_LEN, SS_DEC_S_PAYLOAD, SS_DEC_S_DEAD };

/* Decoder state: 160 bytes (x86-64), no payload buffer, plus the cipher
 * context libcrypto allocates once, when the salt completes (the only
 * allocation; never per chunk).
 *
 * What it buffers: only the salt (up to salt_len <= 32 bytes) and the sealed
 * length field (up to 18 bytes), one at a time, so the input may be split
 * anywhere inside them. A payload block (len + 16 bytes) is never copied: it
 * is decrypted only once it is whole inside one `in`, straight into
 * plain_out; until then it is left unconsumed and the caller must present
 * those bytes again at the front of the next `in`, followed by more. Hence a
 * caller's receive buffer must hold SS_DEC_MAX_PENDING contiguous bytes. */
struct ss_dec {
    struct ss_aead aead;
    const struct ss_method *m;
    uint8_t master[SS_KEY_MAX]; /* wiped as soon as the subkey is derived */
    uint8_t salt[SS_SALT_MAX];
    uint8_t lenblk[SS_LEN_BLOCK];
    uint8_t have;               /* bytes buffered in salt[] or lenblk[] */
    uint8_t state;              /* enum ss_dec_state */
    bool authenticated;         /* at least one chunk passed its tags */
    uint16_t plen;              /* payload length of the pending chunk */
};

/* Set up a decoder for master (m->key_len bytes, copied, and wiped as soon
 * as the salt arrives). Cannot fail; a libcrypto failure while deriving the
 * subkey later shows as SS_DEC_ERROR. */
void ss_dec_init(struct ss_dec *d, const struct ss_method *m,
                 const uint8_t *master);

/* Feed ciphertext. Buffers salt and length-field bytes, and decrypts every
 * whole chunk available in `in` whose payload fits in the remaining
 * plain_cap, in order, into plain_out. Sets *consumed to the bytes of `in`
 * used (the rest, a partial payload block or a block that did not fit, must
 * be passed again) and *plain_len to the plaintext bytes written, all of it
 * authenticated (also on SS_DEC_ERROR: the chunks before the bad one).
 * Returns SS_DEC_NEED_MORE, SS_DEC_NEED_ROOM or SS_DEC_ERROR; after an
 * error every call returns SS_DEC_ERROR. in may be NULL if len is 0,
 * plain_out if plain_cap is 0; plain_out must not overlap in. */
int ss_dec_feed(struct ss_dec *d, const uint8_t *in, size_t len,
                size_t *consumed, uint8_t *plain_out, size_t plain_cap,
                size_t *plain_len);

/* The peer's salt once all of it was read (for the replay filter), else
 * NULL. The replay check belongs right after the salt arrives; adding the
 * salt to the filter is best done once ss_dec_authenticated() is true, so
 * unauthenticated junk cannot flush the filter. */
const uint8_t *ss_dec_salt(const struct ss_dec *d);

/* True once at least one whole chunk was authenticated. */
bool ss_dec_authenticated(const struct ss_dec *d);

/* Payload length of the pending chunk after its length field was read
 * (what SS_DEC_NEED_ROOM asks room for), else 0. */
size_t ss_dec_next_len(const struct ss_dec *d);

/* How many bytes the next step needs at the front of `in`: the rest of the
 * salt or length field (any part of these also helps), or the whole payload
 * block (len + 16, which must arrive contiguously). */
size_t ss_dec_need(const struct ss_dec *d);

/* Wipe keys and free the cipher context. Idempotent. */
void ss_dec_free(struct ss_dec *d);

#endif /* FERRY_SS_AEAD_H */

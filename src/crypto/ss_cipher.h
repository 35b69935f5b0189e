/* ss_cipher.h - Shadowsocks AEAD ciphers (SIP004): method table, master key,
 * per-session subkey, and a reusable AEAD context.
 *
 * Pure: no sockets, no loop, no logging. All primitives come from OpenSSL
 * libcrypto (EVP); nothing here implements a primitive by hand. HKDF is
 * RFC 5869's two steps over libcrypto's HMAC-SHA1 (checked against
 * OpenSSL's own HKDF in the unit tests), because EVP_KDF fetched HMAC and
 * SHA1 and built three contexts on every derive.
 *
 * Key schedule (per direction of a connection):
 *   master = EVP_BytesToKey(MD5, password)        or raw key from base64
 *   salt   = salt_len random bytes, sent in clear first (chosen by the caller)
 *   subkey = HKDF-SHA1(ikm = master, salt = salt, info = "ss-subkey"), key_len
 *   nonce  = 12-byte little-endian counter from 0, +1 after every seal/open
 *
 * Return codes: 0 success, -1 failure (authentication failure for open).
 */
#ifndef FERRY_SS_CIPHER_H
#define FERRY_SS_CIPHER_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

enum {
    SS_KEY_MAX   = 32, /* largest key_len (and salt_len) in the table */
    SS_SALT_MAX  = 32,
    SS_NONCE_LEN = 12,
    SS_TAG_LEN   = 16,
};

struct ss_method {
    const char *name;      /* as on the ss-libev command line */
    size_t key_len;        /* master key and subkey length */
    size_t salt_len;       /* == key_len for every SIP004 method */
    size_t nonce_len;      /* SS_NONCE_LEN */
    size_t tag_len;        /* SS_TAG_LEN */
    const char *evp_name;  /* OpenSSL algorithm name */
};

/* Method by name ("chacha20-ietf-poly1305", "aes-128-gcm", "aes-192-gcm",
 * "aes-256-gcm"; exact, case-sensitive). NULL if unknown or if the linked
 * libcrypto lacks the cipher. Thread-safe. */
const struct ss_method *ss_method_find(const char *name);

/* The method's EVP cipher. Algorithms are fetched from the default library
 * context once per process (explicit fetches make per-connection setup about
 * twice as fast as OpenSSL 3's implicit fetch on every init) and kept for the
 * process lifetime. Never NULL for a method ss_method_find() returned. */
const EVP_CIPHER *ss_method_cipher(const struct ss_method *m);

/* Default method when none is configured (same as ss-libev). */
#define SS_METHOD_DEFAULT "chacha20-ietf-poly1305"

/* Master key from a password: OpenSSL EVP_BytesToKey with MD5, no salt, one
 * iteration (D1 = MD5(pw), Di = MD5(Di-1 || pw)), truncated to key_len.
 * Writes m->key_len bytes to key. Returns 0, or -1 on a libcrypto failure. */
int ss_key_from_password(const struct ss_method *m, const char *password,
                         uint8_t *key);

/* Master key from base64 text (ss-libev's --key). Accepts the URL-safe
 * alphabet ss-libev emits ('-', '_') and the standard one ('+', '/'), with or
 * without '=' padding; no whitespace. The decoded length must be exactly
 * m->key_len. Writes key on success and returns 0; on failure returns -1 and
 * writes a one-line reason to err (if errlen > 0); key is left wiped. */
int ss_key_from_base64(const struct ss_method *m, const char *b64,
                       uint8_t *key, char *err, size_t errlen);

/* subkey (m->key_len bytes) = HKDF-SHA1(master, salt (m->salt_len bytes),
 * "ss-subkey"). Thread-safe: each thread keeps one HMAC context, freed when
 * the thread exits. Returns 0 or -1. */
int ss_subkey(const struct ss_method *m, const uint8_t *master,
              const uint8_t *salt, uint8_t *subkey);

/* One direction's AEAD state. The EVP context is created once in
 * ss_aead_init() with the subkey and reused for every chunk (only the nonce
 * changes per call). Not thread-safe; may be moved with memcpy only before
 * init or after free. */
struct ss_aead {
    const struct ss_method *m;
    EVP_CIPHER_CTX *ctx;
    uint8_t subkey[SS_KEY_MAX];
    uint8_t nonce[SS_NONCE_LEN];
};

/* Derive the subkey from (master, salt) and set up the context with nonce 0.
 * salt is m->salt_len bytes. Returns 0, or -1 (nothing to free then). */
int ss_aead_init(struct ss_aead *a, const struct ss_method *m,
                 const uint8_t *master, const uint8_t *salt);

/* Encrypt inlen bytes of in into out: inlen bytes of ciphertext followed by
 * the tag_len-byte tag (out needs inlen + tag_len bytes; it may equal in,
 * but must not otherwise overlap). No associated data. Advances the nonce.
 * Returns 0, or -1 on a libcrypto failure (context unusable afterwards). */
int ss_aead_seal(struct ss_aead *a, uint8_t *out, const uint8_t *in,
                 size_t inlen);

/* Decrypt and authenticate: in is ciphertext || tag, inlen >= tag_len;
 * writes inlen - tag_len bytes of plaintext to out (may equal in). Advances
 * the nonce even on failure. Returns 0, or -1 if authentication failed or
 * inlen < tag_len; on -1 out holds garbage the caller must not use, and the
 * stream is dead (there is no resynchronising after a bad tag). */
int ss_aead_open(struct ss_aead *a, uint8_t *out, const uint8_t *in,
                 size_t inlen);

/* Free the EVP context and wipe the subkey and nonce. Idempotent; safe on a
 * zeroed struct or after a failed init. */
void ss_aead_free(struct ss_aead *a);

#endif /* FERRY_SS_CIPHER_H */

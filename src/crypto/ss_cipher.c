/* ss_cipher.c - Shadowsocks AEAD key schedule and cipher wrapper on EVP.
 * Contracts are in ss_cipher.h. */
#include "crypto/ss_cipher.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#define SS_NMETHODS 4
#define SS_SHA1_LEN 20

static const struct ss_method ss_methods[SS_NMETHODS] = {
    { "chacha20-ietf-poly1305", 32, 32, SS_NONCE_LEN, SS_TAG_LEN, "ChaCha20-Poly1305" },
    { "aes-256-gcm",            32, 32, SS_NONCE_LEN, SS_TAG_LEN, "AES-256-GCM" },
    { "aes-192-gcm",            24, 24, SS_NONCE_LEN, SS_TAG_LEN, "AES-192-GCM" },
    { "aes-128-gcm",            16, 16, SS_NONCE_LEN, SS_TAG_LEN, "AES-128-GCM" },
};

/* Fetched once (pthread_once), immutable afterwards, shared by all threads;
 * deliberately never freed. NULL where the library lacks an algorithm. */
static pthread_once_t ss_fetch_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *ss_ciphers[SS_NMETHODS];
static EVP_MAC *ss_hmac;
static pthread_key_t ss_mac_key;        /* each thread's HMAC-SHA1 context */
static int ss_mac_key_ok;

static void ss_mac_ctx_free(void *ctx) { EVP_MAC_CTX_free(ctx); }

static void ss_fetch(void)
{
    for (size_t i = 0; i < SS_NMETHODS; i++)
        ss_ciphers[i] = EVP_CIPHER_fetch(NULL, ss_methods[i].evp_name, NULL);
    ss_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    ss_mac_key_ok = pthread_key_create(&ss_mac_key, ss_mac_ctx_free) == 0;
}

const struct ss_method *ss_method_find(const char *name)
{
    if (name == NULL)
        return NULL;
    pthread_once(&ss_fetch_once, ss_fetch);
    for (size_t i = 0; i < SS_NMETHODS; i++) {
        if (strcmp(ss_methods[i].name, name) == 0)
            return ss_ciphers[i] != NULL && ss_hmac != NULL && ss_mac_key_ok ? &ss_methods[i] : NULL;
    }
    return NULL;
}

const EVP_CIPHER *ss_method_cipher(const struct ss_method *m)
{
    pthread_once(&ss_fetch_once, ss_fetch);
    return ss_ciphers[m - ss_methods];
}

int ss_key_from_password(const struct ss_method *m, const char *password,
                         uint8_t *key)
{
    size_t len = strlen(password);

    if (len > INT_MAX)
        return -1;
    /* The cipher argument only fixes how many key bytes are produced; every
     * method's EVP key length equals its key_len. No IV is requested. */
    int n = EVP_BytesToKey(ss_method_cipher(m), EVP_md5(), NULL,
                           (const unsigned char *)password, (int)len, 1, key, NULL);
    return n == (int)m->key_len ? 0 : -1;
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

/* Base64 of SS_KEY_MAX bytes is at most 44 characters with padding. */
#define SS_B64_MAX (4 * ((SS_KEY_MAX + 2) / 3))

/* Copy b64 into std (standard alphabet, '=' padded to a multiple of 4).
 * Returns the number of data characters (without '='), or -1 with err. */
static int b64_normalize(const char *b64, char std[SS_B64_MAX + 1],
                         char *err, size_t errlen)
{
    size_t n = strnlen(b64, SS_B64_MAX + 1), pad = 0, i;

    if (n > SS_B64_MAX) {
        set_err(err, errlen, "base64 key too long");
        return -1;
    }
    while (pad < 2 && n > pad && b64[n - 1 - pad] == '=')
        pad++;
    n -= pad;
    for (i = 0; i < n; i++) {
        char c = b64[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '+' || c == '/')) {
            set_err(err, errlen, "base64 key has an invalid character");
            return -1;
        }
        std[i] = c;
    }
    if (n % 4 == 1) {
        set_err(err, errlen, "base64 key has a truncated final group");
        return -1;
    }
    while (i % 4 != 0)
        std[i++] = '=';
    std[i] = '\0';
    return (int)n;
}

int ss_key_from_base64(const struct ss_method *m, const char *b64,
                       uint8_t *key, char *err, size_t errlen)
{
    char std[SS_B64_MAX + 1];
    uint8_t raw[SS_B64_MAX / 4 * 3];
    int rc = -1;
    int data = b64_normalize(b64, std, err, errlen);

    if (data < 0)
        goto out;
    /* EVP_DecodeBlock counts '=' as zero bytes; the true length comes from
     * the number of data characters. */
    size_t got = (size_t)data * 3 / 4;
    if (got != m->key_len) {
        if (errlen > 0)
            snprintf(err, errlen, "base64 key decodes to %zu bytes, %s needs %zu",
                     got, m->name, m->key_len);
        goto out;
    }
    if (EVP_DecodeBlock(raw, (const unsigned char *)std, (int)strlen(std)) < (int)got) {
        set_err(err, errlen, "base64 key does not decode");
        goto out;
    }
    memcpy(key, raw, got);
    rc = 0;
out:
    if (rc != 0)
        OPENSSL_cleanse(key, m->key_len);
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(std, sizeof(std));
    return rc;
}

/* This thread's HMAC-SHA1 context, made on first use and freed when the
 * thread exits. The digest is set once: passing it by name on every use
 * (as EVP_KDF's HKDF does inside each derive, along with fetching HMAC
 * and SHA1 and making and freeing three contexts) cost about 34 000
 * instructions per subkey, half of an ss-server's user time per
 * connection. NULL on failure. */
static EVP_MAC_CTX *thread_hmac_sha1(void)
{
    EVP_MAC_CTX *ctx = pthread_getspecific(ss_mac_key);
    if (ctx != NULL)
        return ctx;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA1", 0),
        OSSL_PARAM_construct_end(),
    };
    ctx = EVP_MAC_CTX_new(ss_hmac);
    if (ctx == NULL || EVP_MAC_CTX_set_params(ctx, params) != 1 ||
        pthread_setspecific(ss_mac_key, ctx) != 0) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* One HMAC over up to three pieces; key NULL re-uses the previous key. */
static int hmac3(EVP_MAC_CTX *ctx, const uint8_t *key, size_t keylen,
                 const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                 const uint8_t *c, size_t clen, uint8_t out[SS_SHA1_LEN])
{
    size_t outl = 0;

    return EVP_MAC_init(ctx, key, keylen, NULL) == 1 &&
           (alen == 0 || EVP_MAC_update(ctx, a, alen) == 1) &&
           (blen == 0 || EVP_MAC_update(ctx, b, blen) == 1) &&
           (clen == 0 || EVP_MAC_update(ctx, c, clen) == 1) &&
           EVP_MAC_final(ctx, out, &outl, SS_SHA1_LEN) == 1 && outl == SS_SHA1_LEN;
}

/* HKDF (RFC 5869) with HMAC-SHA1 from libcrypto: extract, then expand to
 * key_len (<= 2 blocks of 20 bytes). What the thread's HMAC context keeps
 * afterwards (the PRK's pads) reveals no more than the master key and the
 * salt, which stay in memory and on the wire anyway. */
int ss_subkey(const struct ss_method *m, const uint8_t *master,
              const uint8_t *salt, uint8_t *subkey)
{
    static const uint8_t info[] = "ss-subkey";
    const size_t info_len = sizeof(info) - 1;
    const uint8_t one = 1, two = 2;
    uint8_t prk[SS_SHA1_LEN], t[2 * SS_SHA1_LEN];

    pthread_once(&ss_fetch_once, ss_fetch);
    EVP_MAC_CTX *ctx = ss_mac_key_ok && ss_hmac != NULL ? thread_hmac_sha1() : NULL;
    int ok = ctx != NULL && m->key_len <= sizeof(t) &&
             hmac3(ctx, salt, m->salt_len, master, m->key_len, NULL, 0, NULL, 0, prk) &&
             hmac3(ctx, prk, sizeof(prk), info, info_len, &one, 1, NULL, 0, t);
    if (ok && m->key_len > SS_SHA1_LEN)
        ok = hmac3(ctx, NULL, 0, t, SS_SHA1_LEN, info, info_len, &two, 1, t + SS_SHA1_LEN);
    if (ok)
        memcpy(subkey, t, m->key_len);
    OPENSSL_cleanse(prk, sizeof(prk));
    OPENSSL_cleanse(t, sizeof(t));
    return ok ? 0 : -1;
}

int ss_aead_init(struct ss_aead *a, const struct ss_method *m,
                 const uint8_t *master, const uint8_t *salt)
{
    memset(a, 0, sizeof(*a));
    a->m = m;
    if (ss_subkey(m, master, salt, a->subkey) != 0)
        goto fail;
    a->ctx = EVP_CIPHER_CTX_new();
    /* Key once here; each chunk re-inits with only the nonce (see crypt). */
    if (a->ctx == NULL ||
        EVP_CipherInit_ex(a->ctx, ss_method_cipher(m), NULL, a->subkey, NULL, 1) != 1)
        goto fail;
    return 0;
fail:
    ss_aead_free(a);
    return -1;
}

/* Little-endian increment, as libsodium's sodium_increment() which ss-libev
 * uses: the first byte is least significant. */
static void nonce_inc(uint8_t *n, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (++n[i] != 0)
            break;
    }
}

/* Restart the context on the current nonce for one message, then advance
 * the nonce (whatever happens next, a nonce is never used twice). */
static int crypt_begin(struct ss_aead *a, int enc)
{
    int ok = EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, a->nonce, enc) == 1;

    nonce_inc(a->nonce, sizeof(a->nonce));
    return ok ? 0 : -1;
}

int ss_aead_seal(struct ss_aead *a, uint8_t *out, const uint8_t *in,
                 size_t inlen)
{
    int n = 0, f = 0;

    if (inlen > INT_MAX || crypt_begin(a, 1) != 0)
        return -1;
    if (inlen > 0 && EVP_CipherUpdate(a->ctx, out, &n, in, (int)inlen) != 1)
        return -1;
    if (EVP_CipherFinal_ex(a->ctx, out + n, &f) != 1 || (size_t)n + (size_t)f != inlen)
        return -1;
    return EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, (int)a->m->tag_len,
                               out + inlen) == 1 ? 0 : -1;
}

int ss_aead_open(struct ss_aead *a, uint8_t *out, const uint8_t *in,
                 size_t inlen)
{
    int n = 0, f = 0;

    if (inlen < a->m->tag_len || inlen - a->m->tag_len > INT_MAX) {
        nonce_inc(a->nonce, sizeof(a->nonce));
        return -1;
    }
    size_t clen = inlen - a->m->tag_len;
    if (crypt_begin(a, 0) != 0)
        return -1;
    /* The tag is handed over before Update so that in-place decryption
     * (out == in) cannot clobber it; Update never writes past out + clen. */
    if (EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, (int)a->m->tag_len,
                            (void *)(in + clen)) != 1)
        return -1;
    if (clen > 0 && EVP_CipherUpdate(a->ctx, out, &n, in, (int)clen) != 1)
        return -1;
    if (EVP_CipherFinal_ex(a->ctx, out + n, &f) != 1 || (size_t)n + (size_t)f != clen)
        return -1;
    return 0;
}

void ss_aead_free(struct ss_aead *a)
{
    EVP_CIPHER_CTX_free(a->ctx); /* NULL-safe; cleanses the key schedule */
    a->ctx = NULL;
    OPENSSL_cleanse(a->subkey, sizeof(a->subkey));
    OPENSSL_cleanse(a->nonce, sizeof(a->nonce));
}

/* ss_cipher.c - Shadowsocks AEAD key schedule and cipher wrapper on EVP.
 * Contracts are in ss_cipher.h. */
#include "crypto/ss_cipher.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#define SS_NMETHODS 4

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
static EVP_KDF *ss_hkdf;

static void ss_fetch(void)
{
    for (size_t i = 0; i < SS_NMETHODS; i++)
        ss_ciphers[i] = EVP_CIPHER_fetch(NULL, ss_methods[i].evp_name, NULL);
    ss_hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
}

const struct ss_method *ss_method_find(const char *name)
{
    if (name == NULL)
        return NULL;
    pthread_once(&ss_fetch_once, ss_fetch);
    for (size_t i = 0; i < SS_NMETHODS; i++) {
        if (strcmp(ss_methods[i].name, name) == 0)
            return ss_ciphers[i] != NULL && ss_hkdf != NULL ? &ss_methods[i] : NULL;
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

int ss_subkey(const struct ss_method *m, const uint8_t *master,
              const uint8_t *salt, uint8_t *subkey)
{
    static const char info[] = "ss-subkey";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA1", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)master, m->key_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, m->salt_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, sizeof(info) - 1),
        OSSL_PARAM_construct_end(),
    };

    pthread_once(&ss_fetch_once, ss_fetch);
    EVP_KDF_CTX *kctx = ss_hkdf != NULL ? EVP_KDF_CTX_new(ss_hkdf) : NULL;
    int ok = kctx != NULL && EVP_KDF_derive(kctx, subkey, m->key_len, params) == 1;

    EVP_KDF_CTX_free(kctx); /* also wipes its copy of the key */
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

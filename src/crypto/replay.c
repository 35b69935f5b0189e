/* replay.c - ping-pong Bloom filter for Shadowsocks salts. See replay.h. */
#include "crypto/replay.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define REPLAY_KEY_LEN 16

struct replay {
    pthread_mutex_t lock;
    uint64_t *bits[2];     /* each nwords 64-bit words */
    size_t nwords;
    uint64_t nbits;        /* bits per filter (nwords * 64) */
    unsigned k;            /* hash functions */
    size_t capacity;       /* entries per filter before rotation */
    size_t count;          /* entries in the current filter */
    int cur;               /* index of the filter being added to */
    bool lock_ok;          /* the mutex was initialized */
    EVP_MD *sha256;
    EVP_MD_CTX *md;        /* reused under lock */
    uint8_t key[REPLAY_KEY_LEN];
};

#define LN2 0.69314718055994530942

/* Natural log for x in (0, 1], without libm (the project does not link it):
 * x = f * 2^e with f in [0.5, 1), ln f = 2 atanh((f - 1) / (f + 1)), whose
 * series converges fast for |t| <= 1/3. Accurate to ~1e-12 here. */
static double ln_unit(double x)
{
    int e = 0;

    while (x < 0.5) {
        x *= 2;
        e--;
    }
    double t = (x - 1) / (x + 1), t2 = t * t, term = t, sum = 0;
    for (int i = 1; i < 40; i += 2) {
        sum += term / i;
        term *= t2;
    }
    return 2 * sum + e * LN2;
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

/* Size one filter for `capacity` entries at false-positive rate p:
 * m = n ln(1/p) / ln2^2 bits, k = log2(1/p) hashes (the optimum). */
static void replay_size(struct replay *r, size_t capacity, double p)
{
    double nl = -ln_unit(p);
    double m = (double)capacity * nl / (LN2 * LN2);

    r->nwords = (size_t)(m / 64) + 1;
    r->nbits = (uint64_t)r->nwords * 64;
    r->k = (unsigned)(nl / LN2 + 0.5);
    if (r->k < 1)
        r->k = 1;
}

struct replay *replay_new(size_t capacity, double fp_rate, char *err,
                          size_t errlen)
{
    if (capacity < 1 || capacity > ((size_t)1 << 30) ||
        !(fp_rate >= 1e-15 && fp_rate <= 0.1)) {
        set_err(err, errlen, "replay filter: capacity must be 1..2^30 and "
                "false-positive rate 1e-15..0.1");
        return NULL;
    }
    struct replay *r = calloc(1, sizeof(*r));
    if (r == NULL)
        goto nomem;
    r->capacity = capacity;
    replay_size(r, capacity, fp_rate / 2);
    r->bits[0] = calloc(r->nwords, sizeof(uint64_t));
    r->bits[1] = calloc(r->nwords, sizeof(uint64_t));
    r->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    r->md = EVP_MD_CTX_new();
    if (r->bits[0] == NULL || r->bits[1] == NULL || r->sha256 == NULL ||
        r->md == NULL || RAND_bytes(r->key, sizeof(r->key)) != 1 ||
        !(r->lock_ok = pthread_mutex_init(&r->lock, NULL) == 0)) {
        replay_free(r);
        goto nomem;
    }
    return r;
nomem:
    set_err(err, errlen, "replay filter: out of memory or no SHA-256/RNG");
    return NULL;
}

void replay_free(struct replay *r)
{
    if (r == NULL)
        return;
    if (r->lock_ok)
        pthread_mutex_destroy(&r->lock);
    free(r->bits[0]);
    free(r->bits[1]);
    EVP_MD_CTX_free(r->md);
    EVP_MD_free(r->sha256);
    OPENSSL_cleanse(r->key, sizeof(r->key));
    free(r);
}

/* Two 64-bit hashes of salt (keyed SHA-256). Caller holds the lock.
 * If libcrypto fails (it should not), falls back to hashing nothing but the
 * key, which only raises the false-positive rate; never a false negative
 * since add and check use the same path. */
static void replay_hash(struct replay *r, const uint8_t *salt, size_t len,
                        uint64_t h[2])
{
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;

    memset(d, 0, sizeof(d));
    if (EVP_DigestInit_ex(r->md, r->sha256, NULL) != 1 ||
        EVP_DigestUpdate(r->md, r->key, sizeof(r->key)) != 1 ||
        EVP_DigestUpdate(r->md, salt, len) != 1 ||
        EVP_DigestFinal_ex(r->md, d, &dl) != 1)
        memset(d, 0, sizeof(d));
    memcpy(&h[0], d, 8);
    memcpy(&h[1], d + 8, 8);
    /* Odd stride: never a multiple of nbits (a multiple of 64), so the k
     * probes never all fall on one bit. */
    h[1] |= 1;
}

static bool filter_has(const struct replay *r, const uint64_t *bits,
                       const uint64_t h[2])
{
    for (unsigned i = 0; i < r->k; i++) {
        uint64_t b = (h[0] + (uint64_t)i * h[1]) % r->nbits;
        if (!(bits[b / 64] & ((uint64_t)1 << (b % 64))))
            return false;
    }
    return true;
}

static void filter_set(const struct replay *r, uint64_t *bits,
                       const uint64_t h[2])
{
    for (unsigned i = 0; i < r->k; i++) {
        uint64_t b = (h[0] + (uint64_t)i * h[1]) % r->nbits;
        bits[b / 64] |= (uint64_t)1 << (b % 64);
    }
}

/* Caller holds the lock. */
static bool seen_locked(const struct replay *r, const uint64_t h[2])
{
    return filter_has(r, r->bits[0], h) || filter_has(r, r->bits[1], h);
}

/* Caller holds the lock. Rotates once the current filter is full: the
 * other one (the older generation) is cleared and takes over. */
static void add_locked(struct replay *r, const uint64_t h[2])
{
    filter_set(r, r->bits[r->cur], h);
    if (++r->count >= r->capacity) {
        r->cur ^= 1;
        memset(r->bits[r->cur], 0, r->nwords * sizeof(uint64_t));
        r->count = 0;
    }
}

int replay_check(struct replay *r, const uint8_t *salt, size_t len)
{
    uint64_t h[2];

    pthread_mutex_lock(&r->lock);
    replay_hash(r, salt, len, h);
    bool seen = seen_locked(r, h);
    pthread_mutex_unlock(&r->lock);
    return seen;
}

void replay_add(struct replay *r, const uint8_t *salt, size_t len)
{
    uint64_t h[2];

    pthread_mutex_lock(&r->lock);
    replay_hash(r, salt, len, h);
    add_locked(r, h);
    pthread_mutex_unlock(&r->lock);
}

int replay_check_and_add(struct replay *r, const uint8_t *salt, size_t len)
{
    uint64_t h[2];

    pthread_mutex_lock(&r->lock);
    replay_hash(r, salt, len, h);
    bool seen = seen_locked(r, h);
    if (!seen)
        add_locked(r, h);
    pthread_mutex_unlock(&r->lock);
    return seen;
}

void replay_key_of(struct replay *r, const uint8_t *salt, size_t len,
                   struct replay_key *key)
{
    pthread_mutex_lock(&r->lock);
    replay_hash(r, salt, len, key->h);
    pthread_mutex_unlock(&r->lock);
}

int replay_check_key(struct replay *r, const struct replay_key *key)
{
    pthread_mutex_lock(&r->lock);
    bool seen = seen_locked(r, key->h);
    pthread_mutex_unlock(&r->lock);
    return seen;
}

void replay_add_key(struct replay *r, const struct replay_key *key)
{
    pthread_mutex_lock(&r->lock);
    add_locked(r, key->h);
    pthread_mutex_unlock(&r->lock);
}

size_t replay_memory(const struct replay *r)
{
    return 2 * r->nwords * sizeof(uint64_t);
}

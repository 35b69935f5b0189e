/* limits.c - see limits.h. */
#include "policy/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- keys and hashing ---- */

static const uint8_t v4mapped[12] = { [10] = 0xff, [11] = 0xff };

/* Canonical 16-byte key: IPv4 and IPv4-mapped IPv6 as ::ffff:a.b.c.d, other
 * IPv6 with the bits after v6_prefix cleared. -1 for a bad length. */
static int make_key(const uint8_t *ip, size_t len, unsigned v6_prefix, uint8_t key[16])
{
    if (!ip || (len != 4 && len != 16)) return -1;
    if (len == 4) {
        memcpy(key, v4mapped, 12);
        memcpy(key + 12, ip, 4);
        return 0;
    }
    memcpy(key, ip, 16);
    if (memcmp(key, v4mapped, 12) == 0) return 0;
    for (unsigned bit = v6_prefix; bit < 128; bit++)
        key[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
    return 0;
}

static uint64_t load64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void sipround(uint64_t v[4])
{
    v[0] += v[1]; v[1] = ROTL(v[1], 13); v[1] ^= v[0]; v[0] = ROTL(v[0], 32);
    v[2] += v[3]; v[3] = ROTL(v[3], 16); v[3] ^= v[2];
    v[0] += v[3]; v[3] = ROTL(v[3], 21); v[3] ^= v[0];
    v[2] += v[1]; v[1] = ROTL(v[1], 17); v[1] ^= v[2]; v[2] = ROTL(v[2], 32);
}

/* SipHash-2-4 (Aumasson and Bernstein) of exactly 16 bytes: a keyed PRF,
 * so collisions cannot be precomputed without the key. */
static uint64_t siphash16(uint64_t k0, uint64_t k1, const uint8_t in[16])
{
    uint64_t v[4] = { k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL,
                      k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL };
    uint64_t m[3] = { load64le(in), load64le(in + 8), 16ULL << 56 };
    for (int i = 0; i < 3; i++) {
        v[3] ^= m[i];
        sipround(v);
        sipround(v);
        v[0] ^= m[i];
    }
    v[2] ^= 0xff;
    for (int i = 0; i < 4; i++)
        sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static void set_hash_key(uint64_t *k0, uint64_t *k1, const uint8_t *key)
{
    static const uint8_t zero[LIMITS_KEY_LEN];
    if (!key) key = zero;
    *k0 = load64le(key);
    *k1 = load64le(key + 8);
}

/* Shared argument checks for both tables. */
static int check_common(size_t max_ips, unsigned v6_prefix, char *err, size_t errlen)
{
    if (max_ips < 1 || max_ips > LIMITS_MAX_IPS) {
        snprintf(err, errlen, "table size %zu: expected 1..%u addresses", max_ips,
                 LIMITS_MAX_IPS);
        return -1;
    }
    if (v6_prefix < 1 || v6_prefix > 128) {
        snprintf(err, errlen, "IPv6 prefix /%u: expected 1..128", v6_prefix);
        return -1;
    }
    return 0;
}

static size_t pow2_at_least(size_t v)
{
    size_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

/* ---- ipcount: open addressing, linear probing ---- */

int ipcount_init(struct ipcount *t, size_t max_ips, unsigned v6_prefix, const uint8_t *key,
                 char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    if (check_common(max_ips, v6_prefix, err, errlen) < 0) return -1;
    /* Load <= 2/3: expected probes stay ~2 even when full, and an empty slot
     * always ends a search. */
    size_t nslots = pow2_at_least(max_ips + max_ips / 2);
    if (!(t->slots = calloc(nslots, sizeof(*t->slots)))) {
        snprintf(err, errlen, "per-IP table: out of memory for %zu addresses", max_ips);
        return -1;
    }
    t->mask = nslots - 1;
    t->max = max_ips;
    t->v6_prefix = (uint8_t)v6_prefix;
    set_hash_key(&t->k0, &t->k1, key);
    return 0;
}

void ipcount_free(struct ipcount *t)
{
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

/* Slot holding k, or the empty slot where it would go. */
static size_t ipcount_find(const struct ipcount *t, const uint8_t k[16], uint32_t h)
{
    size_t i = h & t->mask;
    while (t->slots[i].count && memcmp(t->slots[i].ip, k, 16) != 0)
        i = (i + 1) & t->mask;
    return i;
}

static int ipcount_lookup(const struct ipcount *t, const uint8_t *ip, size_t len, uint8_t k[16],
                          uint32_t *h, size_t *slot)
{
    if (!t->slots || make_key(ip, len, t->v6_prefix, k) < 0) return -1;
    *h = (uint32_t)siphash16(t->k0, t->k1, k);
    *slot = ipcount_find(t, k, *h);
    return 0;
}

int ipcount_inc(struct ipcount *t, const uint8_t *ip, size_t len)
{
    uint8_t k[16];
    uint32_t h;
    size_t i;
    if (ipcount_lookup(t, ip, len, k, &h, &i) < 0) return -1;
    struct ipcount_slot *s = &t->slots[i];
    if (s->count) {
        if (s->count >= INT32_MAX) return -1;
        return (int)++s->count;
    }
    if (t->used >= t->max) return -1;          /* fail closed */
    memcpy(s->ip, k, 16);
    s->hash = h;
    s->count = 1;
    t->used++;
    return 1;
}

/* Removes slot i without tombstones (backward-shift deletion): later
 * entries of the same probe run move back into the hole when their home
 * slot is not cyclically inside (hole, their position]. */
static void ipcount_remove(struct ipcount *t, size_t hole)
{
    size_t j = hole;
    for (;;) {
        j = (j + 1) & t->mask;
        if (!t->slots[j].count) break;
        size_t home = t->slots[j].hash & t->mask;
        int stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    memset(&t->slots[hole], 0, sizeof(t->slots[hole]));
    t->used--;
}

int ipcount_dec(struct ipcount *t, const uint8_t *ip, size_t len)
{
    uint8_t k[16];
    uint32_t h;
    size_t i;
    if (ipcount_lookup(t, ip, len, k, &h, &i) < 0 || !t->slots[i].count) return -1;
    if (--t->slots[i].count) return (int)t->slots[i].count;
    ipcount_remove(t, i);
    return 0;
}

unsigned ipcount_get(const struct ipcount *t, const uint8_t *ip, size_t len)
{
    uint8_t k[16];
    uint32_t h;
    size_t i;
    if (ipcount_lookup(t, ip, len, k, &h, &i) < 0) return 0;
    return t->slots[i].count;
}

/* ---- token buckets ---- */

/* Refills (rate tokens/s = rate milli-tokens/ms) up to burst, then takes one
 * token if there is one. Past idle_ms the bucket is full whatever it held,
 * which also keeps elapsed * rate from overflowing. */
static int bucket_take(uint64_t *milli, uint64_t *last_ms, uint32_t rate, uint32_t burst,
                       uint64_t now_ms)
{
    uint64_t cap = (uint64_t)burst * 1000;
    uint64_t idle_ms = (cap + rate - 1) / rate;
    if (now_ms > *last_ms) {
        uint64_t elapsed = now_ms - *last_ms;
        *milli = elapsed >= idle_ms ? cap : *milli + elapsed * rate;
        if (*milli > cap) *milli = cap;
        *last_ms = now_ms;
    }
    if (*milli < 1000) return 0;
    *milli -= 1000;
    return 1;
}

void tbucket_init(struct tbucket *b, uint32_t rate, uint32_t burst, uint64_t now_ms)
{
    b->rate = rate ? rate : 1;
    b->burst = burst;
    b->milli = (uint64_t)burst * 1000;
    b->last_ms = now_ms;
}

int tbucket_take(struct tbucket *b, uint64_t now_ms)
{
    return bucket_take(&b->milli, &b->last_ms, b->rate, b->burst, now_ms);
}

/* ---- per-IP rate table: set-associative, LRU within a set ---- */

int rate_init(struct ratelimit *t, uint32_t rate, uint32_t burst, size_t max_ips,
              unsigned v6_prefix, const uint8_t *key, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    if (rate < 1 || rate > 1000000) {
        snprintf(err, errlen, "rate %u/s: expected 1..1000000", rate);
        return -1;
    }
    if (burst < 1 || burst > 1000000) {
        snprintf(err, errlen, "burst %u: expected 1..1000000", burst);
        return -1;
    }
    if (check_common(max_ips, v6_prefix, err, errlen) < 0) return -1;
    size_t nsets = pow2_at_least((max_ips + RATE_WAYS - 1) / RATE_WAYS);
    if (!(t->slots = calloc(nsets * RATE_WAYS, sizeof(*t->slots)))) {
        snprintf(err, errlen, "rate table: out of memory for %zu addresses", max_ips);
        return -1;
    }
    t->set_mask = nsets - 1;
    t->rate = rate;
    t->burst = burst;
    t->idle_ms = ((uint64_t)burst * 1000 + rate - 1) / rate;
    t->v6_prefix = (uint8_t)v6_prefix;
    set_hash_key(&t->k0, &t->k1, key);
    return 0;
}

void rate_free(struct ratelimit *t)
{
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

/* ip's slot in its set: its own, else a free one, else the least recently
 * used (then counted if it was not yet idle long enough to be full). The
 * returned slot is reset to a full bucket unless it was ip's. */
static struct rate_slot *rate_slot_for(struct ratelimit *t, const uint8_t k[16], uint64_t now_ms)
{
    size_t set = (size_t)siphash16(t->k0, t->k1, k) & t->set_mask;
    struct rate_slot *ways = &t->slots[set * RATE_WAYS], *victim = NULL;
    for (int i = 0; i < RATE_WAYS; i++) {
        struct rate_slot *s = &ways[i];
        if (s->used && memcmp(s->ip, k, 16) == 0) return s;
        if (!victim || (victim->used && (!s->used || s->last_ms < victim->last_ms))) victim = s;
    }
    if (victim->used && (now_ms < victim->last_ms || now_ms - victim->last_ms < t->idle_ms))
        t->evicted_live++;
    memcpy(victim->ip, k, 16);
    victim->used = 1;
    victim->milli = (uint64_t)t->burst * 1000;
    victim->last_ms = now_ms;
    return victim;
}

int rate_allow(struct ratelimit *t, const uint8_t *ip, size_t len, uint64_t now_ms)
{
    uint8_t k[16];
    if (!t->slots || make_key(ip, len, t->v6_prefix, k) < 0) return 0;
    struct rate_slot *s = rate_slot_for(t, k, now_ms);
    return bucket_take(&s->milli, &s->last_ms, t->rate, t->burst, now_ms);
}

/* ---- time-of-day windows ---- */

#define DAY_MIN 1440u

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static const char *skip_blanks(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* "H:MM" or "HH:MM" after optional blanks: minutes since midnight, up to
 * 1440 ("24:00"; whether that may start a window is the caller's call). */
static int parse_hhmm(const char **pp, const char *end, unsigned *out, char *why, size_t whylen)
{
    const char *p = skip_blanks(*pp, end);
    unsigned h = 0, m, digits = 0;
    while (p < end && is_digit(*p) && digits < 3) {
        h = h * 10 + (unsigned)(*p++ - '0');
        digits++;
    }
    if (digits < 1 || digits > 2 || p == end || *p != ':' || end - p < 3 || !is_digit(p[1]) ||
        !is_digit(p[2]) || (end - p > 3 && is_digit(p[3]))) {
        snprintf(why, whylen, "expected HH:MM");
        return -1;
    }
    m = (unsigned)(p[1] - '0') * 10 + (unsigned)(p[2] - '0');
    if (h > 24 || (h == 24 && m != 0)) {
        snprintf(why, whylen, "hour %u: expected 00-23 (or 24:00 as an end)", h);
        return -1;
    }
    if (m > 59) {
        snprintf(why, whylen, "minute %u: expected 00-59", m);
        return -1;
    }
    *out = h * 60 + m;
    *pp = p + 3;
    return 0;
}

/* One "START-END" in [p, end). why gets the reason on -1. */
static int parse_window(const char *p, const char *end, unsigned *start, unsigned *stop,
                        char *why, size_t whylen)
{
    char sub[80];
    if (skip_blanks(p, end) == end) {
        snprintf(why, whylen, "empty window");
        return -1;
    }
    if (parse_hhmm(&p, end, start, sub, sizeof(sub)) < 0) {
        snprintf(why, whylen, "start: %s", sub);
        return -1;
    }
    p = skip_blanks(p, end);
    if (p == end || *p != '-') {
        snprintf(why, whylen, "expected '-' after the start time");
        return -1;
    }
    p++;
    if (parse_hhmm(&p, end, stop, sub, sizeof(sub)) < 0) {
        snprintf(why, whylen, "end: %s", sub);
        return -1;
    }
    if (skip_blanks(p, end) != end) {
        snprintf(why, whylen, "unexpected text after the end time");
        return -1;
    }
    if (*start == DAY_MIN) {
        snprintf(why, whylen, "start: 24:00 can only end a window");
        return -1;
    }
    if (*start == *stop) {
        snprintf(why, whylen, "start equals end (use 00:00-24:00 for the whole day)");
        return -1;
    }
    return 0;
}

/* The window's text for an error message: at most 40 bytes, unprintable
 * bytes as '?', so that the message stays one printable line. */
static void quote_part(const char *p, const char *end, char *out, size_t outlen)
{
    size_t n = 0;
    for (; p < end && n + 4 < outlen && n < 40; p++)
        out[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
    if (p < end && n + 4 <= outlen) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

int timewin_parse(const char *s, struct timewin *w, char *err, size_t errlen)
{
    const char *p = s;
    memset(w, 0, sizeof(*w));
    if (*skip_blanks(s, s + strlen(s)) == '\0') {
        snprintf(err, errlen, "time window: empty; expected HH:MM-HH:MM[,HH:MM-HH:MM...]");
        return -1;
    }
    for (unsigned idx = 1;; idx++) {
        const char *end = strchrnul(p, ',');
        char why[96], part[48];
        unsigned start = 0, stop = 0;
        if (w->n == TIMEWIN_MAX) {
            snprintf(err, errlen, "time windows: more than %d", TIMEWIN_MAX);
            return -1;
        }
        if (parse_window(p, end, &start, &stop, why, sizeof(why)) < 0) {
            quote_part(p, end, part, sizeof(part));
            snprintf(err, errlen, "time window %u '%s': %s", idx, part, why);
            return -1;
        }
        w->w[w->n].start = (uint16_t)start;
        w->w[w->n].end = (uint16_t)stop;
        w->n++;
        if (!*end) return 0;
        p = end + 1;
    }
}

int timewin_allows(const struct timewin *w, unsigned minute_of_day)
{
    if (w->n == 0) return 1;
    if (minute_of_day >= DAY_MIN) return 0;
    for (unsigned i = 0; i < w->n && i < TIMEWIN_MAX; i++) {
        unsigned a = w->w[i].start, b = w->w[i].end;
        int in = a < b ? (minute_of_day >= a && minute_of_day < b)
                       : (minute_of_day >= a || minute_of_day < b);
        if (in) return 1;
    }
    return 0;
}

int timewin_format(const struct timewin *w, char *out, size_t outlen)
{
    size_t len = 0;
    if (outlen) out[0] = '\0';
    for (unsigned i = 0; i < w->n && i < TIMEWIN_MAX; i++) {
        unsigned a = w->w[i].start, b = w->w[i].end;
        int n = snprintf(len < outlen ? out + len : NULL, len < outlen ? outlen - len : 0,
                         "%s%02u:%02u-%02u:%02u", i ? "," : "", a / 60, a % 60, b / 60, b % 60);
        if (n < 0) return n;
        len += (size_t)n;
    }
    return (int)len;
}

/* limits.h - connection limits, rate limits and time windows (pure: no
 * sockets, no clock: time is an argument, in milliseconds of any monotonic
 * clock, or a local minute of the day).
 *
 * Addresses are raw bytes, 4 (IPv4) or 16 (IPv6); any other length is
 * refused. An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack
 * listener reports) counts as the IPv4 address a.b.c.d. IPv6 addresses can
 * be grouped by prefix (v6_prefix, e.g. 64), since one client usually holds
 * a whole /64 and would otherwise get a fresh limit per address.
 *
 * The tables are bounded (sized once at init, never grown) and hash their
 * keys with SipHash-2-4 under a caller-supplied secret, so that clients who
 * pick their addresses cannot build long collision chains. They are not
 * thread-safe: one per worker, or guarded by the caller.
 */
#ifndef FERRY_LIMITS_H
#define FERRY_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#define LIMITS_MAX_IPS (1u << 24)   /* upper bound for max_ips */
#define LIMITS_KEY_LEN 16           /* hash secret, e.g. from getrandom() */

/* ---- concurrent connections per source IP ---- */

struct ipcount_slot {
    uint8_t ip[16];          /* normalised: IPv4 as ::ffff:a.b.c.d */
    uint32_t count;          /* 0 = empty slot */
    uint32_t hash;           /* low bits of the key's hash (home slot) */
};

struct ipcount {
    struct ipcount_slot *slots;
    size_t mask;             /* slots - 1; slots is a power of two */
    size_t used, max;        /* IPs counted now, and at most */
    uint64_t k0, k1;         /* SipHash key */
    uint8_t v6_prefix;
};

/* Room for max_ips distinct addresses (1..LIMITS_MAX_IPS), ~24 bytes each
 * times 1.5 to 3 (load kept <= 2/3 for short probes). key: LIMITS_KEY_LEN
 * secret bytes, or NULL for all-zero (tests only). v6_prefix: 1..128.
 * Returns 0, or -1 with err. */
int ipcount_init(struct ipcount *t, size_t max_ips, unsigned v6_prefix, const uint8_t *key,
                 char *err, size_t errlen);
void ipcount_free(struct ipcount *t);

/* One more connection from ip: returns the new count (>= 1). Fails closed:
 * returns -1, counting nothing, when ip is new and the table already holds
 * max IPs (or len is not 4/16), so the caller refuses the connection; IPs
 * already present keep being counted. */
int ipcount_inc(struct ipcount *t, const uint8_t *ip, size_t len);
/* One connection fewer: returns the new count (>= 0; the entry is removed
 * at 0), or -1 if ip was not counted (a caller bug: nothing changes). */
int ipcount_dec(struct ipcount *t, const uint8_t *ip, size_t len);
/* Current count (0 when absent or len is bad). */
unsigned ipcount_get(const struct ipcount *t, const uint8_t *ip, size_t len);

/* ---- token buckets ---- */

/* One bucket: `rate` tokens per second, at most `burst` stored, full at
 * start. Tokens are kept in thousandths so that any integer rate refills
 * exactly per millisecond. For a global accept rate limit. */
struct tbucket {
    uint32_t rate, burst;
    uint64_t milli;          /* tokens * 1000 */
    uint64_t last_ms;
};

void tbucket_init(struct tbucket *b, uint32_t rate, uint32_t burst, uint64_t now_ms);
/* 1: a token was taken, go ahead; 0: empty, refuse. A clock going backwards
 * adds nothing. */
int tbucket_take(struct tbucket *b, uint64_t now_ms);

/* One bucket per source IP, in a set-associative table: an IP lives in one
 * of RATE_WAYS slots chosen by its hash. A new IP takes a free slot, else
 * the least recently used one of its set. A bucket idle for idle_ms (the
 * time to refill from empty) is full, i.e. equal to no entry, so evicting it
 * is invisible; evicting a busier one (table too small for the number of
 * active IPs) hands that IP a fresh burst and is counted in evicted_live. */
#define RATE_WAYS 8

struct rate_slot {
    uint8_t ip[16];
    uint8_t used;
    uint64_t milli;
    uint64_t last_ms;
};

struct ratelimit {
    struct rate_slot *slots; /* nsets * RATE_WAYS */
    size_t set_mask;         /* nsets - 1 */
    uint32_t rate, burst;
    uint64_t idle_ms;
    uint64_t k0, k1;
    uint8_t v6_prefix;
    uint64_t evicted_live;   /* stat: buckets dropped before they were full */
};

/* rate 1..1000000 per second, burst 1..1000000, room for max_ips active
 * IPs (1..LIMITS_MAX_IPS, rounded up to whole sets of RATE_WAYS), ~40 bytes
 * each. key and v6_prefix as for ipcount_init. Returns 0 or -1 with err. */
int rate_init(struct ratelimit *t, uint32_t rate, uint32_t burst, size_t max_ips,
              unsigned v6_prefix, const uint8_t *key, char *err, size_t errlen);
void rate_free(struct ratelimit *t);
/* 1: allowed (a token was taken from ip's bucket), 0: refused (empty bucket,
 * or len not 4/16). */
int rate_allow(struct ratelimit *t, const uint8_t *ip, size_t len, uint64_t now_ms);

/* ---- time-of-day windows ---- */

#define TIMEWIN_MAX 8
#define TIMEWIN_STRLEN (TIMEWIN_MAX * 12)   /* timewin_format, with NUL */

/* Minutes of the day, start inclusive, end exclusive; end < start crosses
 * midnight ("22:00-06:00"); end 1440 is "24:00". start != end. */
struct timewin {
    unsigned n;
    struct {
        uint16_t start, end;
    } w[TIMEWIN_MAX];
};

/* "HH:MM-HH:MM[,HH:MM-HH:MM]..." (hours may have one digit; blanks around
 * the parts are allowed; "24:00" only as an end; at most TIMEWIN_MAX).
 * Returns 0, or -1 with err naming the bad window and what is wrong in it;
 * *w is then unspecified. */
int timewin_parse(const char *s, struct timewin *w, char *err, size_t errlen);
/* 1 if minute_of_day (0..1439, local time, computed by the caller) is in
 * some window; 0 otherwise, or if it is out of range. No windows (n == 0)
 * means no restriction: 1. */
int timewin_allows(const struct timewin *w, unsigned minute_of_day);
/* Canonical text ("08:00-12:00,22:00-06:00"), which parses back to the
 * same windows. Returns the length it needed, as snprintf. */
int timewin_format(const struct timewin *w, char *out, size_t outlen);

#endif

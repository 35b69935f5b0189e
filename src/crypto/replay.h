/* replay.h - salt replay filter: two rotating Bloom filters ("ping-pong",
 * after shadowsocks-libev's ppbloom).
 *
 * Salts are added to the current filter; when it holds `capacity` entries
 * the other filter is cleared and becomes current. A lookup checks both. So
 * the last `capacity` salts added are always remembered (up to
 * 2 * capacity - 1 are), false negatives never happen within that window,
 * and a lookup of a salt never added reports "seen" with probability at
 * most fp_rate (each filter is sized for fp_rate / 2 at `capacity`
 * entries).
 *
 * Memory, fixed at creation: 2 * ceil(capacity * ln(2 / fp_rate) / ln(2)^2)
 * bits, i.e. about 2 * capacity * (1.44 * log2(2 / fp_rate)) bits. For the
 * defaults (1,000,000 entries, 1e-6): 2 x 3.8 MB = 7.6 MB, 21 hashes.
 *
 * Hash: SHA-256 (libcrypto) of a random per-filter 16-byte key followed by
 * the salt; its first two 64-bit words drive double hashing. The key keeps
 * bit positions unpredictable to a peer choosing salts.
 *
 * Thread-safe: one filter is meant to be shared by every worker (a replay
 * may land on any thread); calls serialize on an internal mutex.
 */
#ifndef FERRY_REPLAY_H
#define FERRY_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#define REPLAY_DEFAULT_CAPACITY 1000000
#define REPLAY_DEFAULT_FP_RATE  1e-6

struct replay;

/* capacity in [1, 2^30], fp_rate in [1e-15, 0.1]. Returns NULL with a
 * one-line reason in err on bad arguments or allocation failure. */
struct replay *replay_new(size_t capacity, double fp_rate, char *err,
                          size_t errlen);
void replay_free(struct replay *r);

/* 1 if salt was (probably) seen, 0 if certainly not. */
int replay_check(struct replay *r, const uint8_t *salt, size_t len);

/* Remember salt (may rotate the filters). */
void replay_add(struct replay *r, const uint8_t *salt, size_t len);

/* Atomically: 1 if salt was (probably) seen; otherwise remember it and
 * return 0. */
int replay_check_and_add(struct replay *r, const uint8_t *salt, size_t len);

/* A salt's hash, computed once when a check and a later add concern the
 * same salt (ss-server checks a client's salt on arrival and adds it once
 * a chunk authenticates): the keyed SHA-256 runs under the filter's lock. */
struct replay_key {
    uint64_t h[2];
};

/* key = the salt's hash in this filter. */
void replay_key_of(struct replay *r, const uint8_t *salt, size_t len,
                   struct replay_key *key);
/* replay_check() and replay_add() for a hash from replay_key_of() on the
 * same filter. */
int replay_check_key(struct replay *r, const struct replay_key *key);
void replay_add_key(struct replay *r, const struct replay_key *key);

/* Bytes held by the bit arrays (the bound stated above). */
size_t replay_memory(const struct replay *r);

#endif /* FERRY_REPLAY_H */

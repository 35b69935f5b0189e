/* rand_pool.h - random bytes for per-connection values, drawn from
 * libcrypto's DRBG in batches.
 *
 * RAND_bytes costs ~6 700 instructions and a getpid() (OpenSSL's fork
 * check) per call whatever the length, and a Shadowsocks connection
 * needed three (two salts, the anti-probing deadline). Each thread keeps
 * RAND_POOL_SIZE bytes drawn in one call and hands them out in order.
 *
 * For values that are public once used (salts, sent in clear) or only need
 * to be unpredictable to a peer (a timeout's jitter): never for keys. The
 * pool is not wiped and is not fork-safe (ferry does not fork). Pure: no
 * sockets, no loop.
 */
#ifndef FERRY_RAND_POOL_H
#define FERRY_RAND_POOL_H

#include <stddef.h>

#define RAND_POOL_SIZE 1024

/* Fills buf with n random bytes (n <= RAND_POOL_SIZE; larger n are drawn
 * directly). Returns 0, or -1 if libcrypto's generator failed (buf is then
 * unusable). Thread-safe: each thread has its own pool. */
int rand_pool_bytes(void *buf, size_t n);

#endif /* FERRY_RAND_POOL_H */

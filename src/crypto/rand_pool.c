/* rand_pool.c - see rand_pool.h. */
#include "crypto/rand_pool.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <openssl/rand.h>

/* Bytes [RAND_POOL_SIZE - left, RAND_POOL_SIZE) are unused. */
static __thread struct {
    uint8_t buf[RAND_POOL_SIZE];
    size_t left;
} pool;

int rand_pool_bytes(void *buf, size_t n)
{
    if (n > RAND_POOL_SIZE)
        return n <= INT_MAX && RAND_bytes(buf, (int)n) == 1 ? 0 : -1;
    if (pool.left < n) {
        if (RAND_bytes(pool.buf, RAND_POOL_SIZE) != 1) {
            pool.left = 0;
            return -1;
        }
        pool.left = RAND_POOL_SIZE;
    }
    memcpy(buf, pool.buf + RAND_POOL_SIZE - pool.left, n);
    pool.left -= n;
    return 0;
}

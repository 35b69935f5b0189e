/* describe.h - the start-up line of a listener (no secrets). */
#ifndef FERRY_DESCRIBE_H
#define FERRY_DESCRIBE_H

#include <stddef.h>

#include "config/config.h"

/* "NAME listening on ADDR[,ADDR] (N threads): mode=... key=value ...":
 * upstreams, auth (users counted, never a password), tunnel target,
 * client and destination filters (rules counted, default denies apart),
 * toxics. Cut to outlen; returns the length written. */
size_t cfg_describe_listener(const struct listener_cfg *l, unsigned threads, char *out, size_t outlen);

#endif

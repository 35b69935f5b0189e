/* capfilter.h - which sessions --capture records (pure: no sockets).
 *
 * Syntax: comma-separated terms, e.g. "client=10.0.0.0/8,client=::1,port=443"
 *   client=CIDR     the client's address is in CIDR (a bare IP is a /32 or /128)
 *   port=N | N-M    the upstream connection's destination port
 * Terms of one kind are OR'ed, the two kinds AND'ed; a kind with no terms
 * matches everything. The client is known at accept, the port only once the
 * upstream connection is made (tap_upstream), which is why they are asked
 * separately.
 */
#ifndef FERRY_CAPFILTER_H
#define FERRY_CAPFILTER_H

#include <stddef.h>
#include <stdint.h>

#include "policy/acl.h"

#define CAPFILTER_MAX 16       /* terms of each kind */

struct capfilter {
    struct cidr nets[CAPFILTER_MAX];
    struct { uint16_t lo, hi; } ports[CAPFILTER_MAX];
    uint8_t nnets, nports;
};

/* Adds the terms of spec to f. 0, or -1 with a one-line reason naming the
 * bad term (f then unchanged). */
int capfilter_parse(struct capfilter *f, const char *spec, char *err, size_t errlen);
/* 1 if the client address (family 4 or 6, raw bytes) passes. */
int capfilter_client_ok(const struct capfilter *f, int family, const uint8_t *addr);
/* 1 if the destination port passes. */
int capfilter_port_ok(const struct capfilter *f, uint16_t port);

#endif

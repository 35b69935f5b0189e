/* ss_udp.h - Shadowsocks AEAD UDP packets (SIP004), sans-I/O.
 *
 * One datagram is one packet, sealed on its own:
 *
 *   [salt: salt_len][seal(payload) : len + 16]
 *
 * with the subkey HKDF-SHA1(master, salt, "ss-subkey") as for a TCP
 * stream and the nonce zero (each packet has a fresh salt, so a key is
 * used once). The payload is ATYP ADDR PORT DATA: the destination on the
 * way out, the reply's source on the way back (socks5_parse_addr()).
 *
 * Pure: bytes in, bytes out; no sockets, no logging, no malloc beyond the
 * cipher context libcrypto makes for each packet. The salt is the
 * caller's (rand_pool in production, fixed in tests).
 */
#ifndef FERRY_SS_UDP_H
#define FERRY_SS_UDP_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/ss_cipher.h"
#include "proto/socks_addr.h"

/* Bytes a packet adds to its payload: the salt and the tag. */
#define SS_UDP_OVERHEAD(m) ((m)->salt_len + (m)->tag_len)
#define SS_UDP_OVERHEAD_MAX (SS_SALT_MAX + SS_TAG_LEN)

/* Seals payload [p, p + n) under a key from master and salt (m->salt_len
 * bytes) into out: salt, ciphertext, tag. out must not overlap p. Returns
 * the packet's length (n + SS_UDP_OVERHEAD(m)), or 0 if cap is too small
 * or libcrypto failed. */
size_t ss_udp_seal(const struct ss_method *m, const uint8_t *master, const uint8_t *salt, const uint8_t *p,
                   size_t n, uint8_t *out, size_t cap);

enum ss_udp_verdict {
    SS_UDP_OK = 0,
    SS_UDP_SHORT,        /* shorter than a salt and a tag */
    SS_UDP_AUTH,         /* the tag does not match: wrong key, or forged */
    SS_UDP_BAD_ADDR,     /* authentic, but no valid ATYP ADDR PORT in front */
};

/* Opens the packet [pkt, pkt + len) into out (cap >= len): the plaintext
 * is [out, out + *plain_len), its address *dst and its data from
 * out + *data_off. The salt is pkt's first m->salt_len bytes (for the
 * replay filter: check it before, add it after SS_UDP_OK). */
enum ss_udp_verdict ss_udp_open(const struct ss_method *m, const uint8_t *master, const uint8_t *pkt, size_t len,
                                uint8_t *out, size_t cap, size_t *plain_len, struct socks_addr *dst,
                                size_t *data_off);

#endif /* FERRY_SS_UDP_H */

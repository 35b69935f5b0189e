/* ss_codec.h - Shadowsocks AEAD as session codecs.
 *
 * Wraps the pure encoder/decoder (proto/ss_aead.c) in codec_ops so the byte
 * mover can encrypt or decrypt a direction. Used by the ss-server front-end
 * and by ss-local's tunnel egress.
 */
#ifndef FERRY_SS_CODEC_H
#define FERRY_SS_CODEC_H

#include "proto/ss_aead.h"
#include "relay/session-t.h"

struct listener_cfg;
struct replay;

struct ss_dec_codec {
    struct ss_dec dec;
    struct replay *replay;      /* NULL: no replay check (client side) */
    int salt_checked;
};

extern const struct codec_ops ss_enc_codec_ops;
extern const struct codec_ops ss_dec_codec_ops;

struct ss_enc_codec;

/* New encoder with a fresh random salt (also recorded in `replay` if given,
 * so a reflected stream of ours is refused). `prefix` (at most
 * SOCKS5_ADDR_MAX bytes; NULL and 0 for none) goes out in front of the
 * first input, in the same chunk: ss-local's target address. NULL on
 * failure. */
struct ss_enc_codec *ss_codec_new_encoder(const struct listener_cfg *cfg, struct replay *replay,
                                          const uint8_t *prefix, size_t prefix_len);
struct ss_dec_codec *ss_codec_new_decoder(const struct listener_cfg *cfg, struct replay *replay);

/* Salt replay check for a decoder whose salt just became available:
 * 1 = replayed (refuse), 0 = fresh or not yet known. */
int ss_codec_replayed(struct ss_dec_codec *c);

/* How long the address header waits for the client's first bytes. The
 * client talks to ss-local over loopback or a LAN: its first data follows
 * the SOCKS reply within a millisecond; only server-speaks-first protocols
 * (SMTP, FTP...) wait this long, once per connection. */
#define SS_FIRST_DATA_WAIT_MS 10

/* ss-local: once the tunnel to the ss-server is up, encrypt the client's
 * bytes behind the target address header, and decrypt the server's answer.
 * Returns 0, or -1 (out of memory: nothing was installed, the session
 * should close). */
int ss_tunnel_attach(struct session *s);

#endif

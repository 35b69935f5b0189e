/* ss_codec.h - Shadowsocks AEAD as stages (stage/stage.h).
 *
 * Wraps the pure encoder/decoder (proto/ss_aead.c) in stage_ops so the byte
 * mover can encrypt or decrypt a direction. Used by the ss-server front-end
 * and by ss-local's tunnel egress.
 */
#ifndef FERRY_SS_CODEC_H
#define FERRY_SS_CODEC_H

#include "crypto/replay.h"
#include "proto/ss_aead.h"
#include "relay/session-t.h"
#include "stage/stage.h"

struct listener_cfg;

struct ss_dec_codec {
    struct ss_dec dec;
    struct replay *replay;      /* NULL: no replay check (client side) */
    int salt_checked;
    struct replay_key salt_key; /* the salt's hash, once salt_checked */
    /* Plaintext decrypted before the decoder became a stage (ss-server's
     * first chunk, behind the address): its first output. Owned. */
    uint8_t *early;
    size_t early_off, early_len;
};

extern const struct stage_ops ss_enc_stage_ops;
extern const struct stage_ops ss_dec_stage_ops;

struct ss_enc_codec;

/* New encoder with a fresh random salt (also recorded in `replay` if given,
 * so a reflected stream of ours is refused). `prefix` (at most
 * SOCKS5_ADDR_MAX bytes; NULL and 0 for none) goes out in front of the
 * first input, in the same chunk: ss-local's target address. NULL on
 * failure. */
struct ss_enc_codec *ss_codec_new_encoder(const struct listener_cfg *cfg, struct replay *replay,
                                          const uint8_t *prefix, size_t prefix_len);
struct ss_dec_codec *ss_codec_new_decoder(const struct listener_cfg *cfg, struct replay *replay);
/* Frees a decoder that never became a stage. */
void ss_codec_free_decoder(struct ss_dec_codec *c);
/* Hands over `buf` (malloc'ed): bytes [off, off + len) are plaintext the
 * decoder gives out before anything it decrypts from then on. */
void ss_codec_give_early(struct ss_dec_codec *c, uint8_t *buf, size_t off, size_t len);

/* Decrypts whole chunks from in into out (the front-end's handshake, and
 * the stage). 0, or -1: the stream is corrupt or replayed. */
int ss_codec_decrypt(struct ss_dec_codec *c, const uint8_t *in, size_t inlen, size_t *used,
                     uint8_t *out, size_t outcap, size_t *made);

/* Salt replay check for a decoder whose salt just became available:
 * 1 = replayed (refuse), 0 = fresh or not yet known. */
int ss_codec_replayed(struct ss_dec_codec *c);

/* How long the address header waits for the client's first bytes. The
 * client talks to ss-local over loopback or a LAN: its first data follows
 * the SOCKS reply within a millisecond; only server-speaks-first protocols
 * (SMTP, FTP...) wait this long, once per connection. The encoder asks to
 * be woken then (next_wakeup) and sends the header alone. */
#define SS_FIRST_DATA_WAIT_US 10000u

/* ss-local: once the tunnel to the ss-server is up, encrypt the client's
 * bytes behind the target address header, and decrypt the server's answer.
 * Returns 0, or -1 (out of memory: the session should close; what was
 * installed is freed with it). */
int ss_tunnel_attach(struct session *s);
/* The same towards any Shadowsocks server (a --via ss:// parent): dest is
 * the address the header names, m and key the server's. */
int ss_tunnel_attach_to(struct session *s, const struct sess_target *dest, const struct ss_method *m,
                        const uint8_t *key);

#endif

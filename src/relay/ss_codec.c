/* ss_codec.c - see ss_codec.h. */
#include "relay/ss_codec.h"

#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/loop.h"
#include "crypto/rand_pool.h"
#include "crypto/replay.h"
#include "proto/socks5.h"
#include "relay/front.h"
#include "relay/pipe.h"
#include "relay/rlistener-t.h"
#include "relay/session.h"

/* The encoder, and what it must send before its first input. */
struct ss_enc_codec {
    struct ss_enc enc;
    uint64_t wait_until_us;     /* the prefix waits for input until then */
    uint16_t prefix_len;
    uint8_t prefix[SOCKS5_ADDR_MAX];
};

/* The prefix and the first input share one chunk, as every Shadowsocks
 * client sends its address: one packet, and no chunk of a telling size.
 * Makes nothing (and keeps the prefix) if even the prefix does not fit. */
static int enc_first_chunk(struct ss_enc_codec *c, const uint8_t *in, size_t inlen, size_t *used,
                           uint8_t *out, size_t outcap, size_t *made)
{
    uint8_t plain[SS_MAX_PAYLOAD];
    size_t room = ss_enc_max_plain(&c->enc, outcap);
    if (room > sizeof(plain)) room = sizeof(plain);
    if (room < c->prefix_len) return 0;
    size_t take = inlen < room - c->prefix_len ? inlen : room - c->prefix_len;
    memcpy(plain, c->prefix, c->prefix_len);
    if (take) memcpy(plain + c->prefix_len, in, take);
    size_t n = ss_enc_write(&c->enc, plain, c->prefix_len + take, out, outcap);
    if (n == 0) return -1;      /* libcrypto failure: the encoder is dead */
    c->prefix_len = 0;
    *used = take;
    *made = n;
    return 0;
}

static int enc_encode(struct ss_enc_codec *c, const uint8_t *in, size_t inlen, size_t *used,
                      uint8_t *out, size_t outcap, size_t *made)
{
    size_t first = 0, first_made = 0;
    *used = 0;
    *made = 0;
    if (c->prefix_len) {
        if (enc_first_chunk(c, in, inlen, &first, out, outcap, &first_made) < 0) return -1;
        if (c->prefix_len) return 0;
    }
    size_t take = ss_enc_max_plain(&c->enc, outcap - first_made);
    if (take > inlen - first) take = inlen - first;
    size_t n = 0;
    if (take && (n = ss_enc_write(&c->enc, in + first, take, out + first_made, outcap - first_made)) == 0)
        return -1;
    *used = first + take;
    *made = first_made + n;
    return 0;
}

static size_t enc_max_input(const void *state, size_t outcap)
{
    const struct ss_enc_codec *c = state;
    /* The prefix is encoded as if it were input in front of the rest. */
    size_t m = ss_enc_max_plain(&c->enc, outcap);
    return m > c->prefix_len ? m - c->prefix_len : 1;
}

static void enc_free(void *state)
{
    struct ss_enc_codec *c = state;
    ss_enc_free(&c->enc);
    free(c);
}

/* A prefix with no input yet waits, until its deadline or the input's end:
 * then it leaves alone (server-speaks-first protocols). */
static enum stage_status enc_process(void *state, struct stage_io *io)
{
    struct ss_enc_codec *c = state;
    if (c->prefix_len && !io->inlen && !io->in_eof && io->now_us < c->wait_until_us) return STAGE_OK;
    if (enc_encode(c, io->in, io->inlen, &io->used, io->out, io->outcap, &io->made) < 0) return STAGE_ERROR;
    io->out_eof = io->in_eof && io->used == io->inlen && !c->prefix_len;
    return STAGE_OK;
}

static uint64_t enc_next_wakeup(const void *state)
{
    const struct ss_enc_codec *c = state;
    return c->prefix_len ? c->wait_until_us : UINT64_MAX;
}

int ss_codec_decrypt(struct ss_dec_codec *c, const uint8_t *in, size_t inlen, size_t *used,
                     uint8_t *out, size_t outcap, size_t *made)
{
    *used = 0;
    *made = 0;
    /* Whole chunks until input or output runs out. */
    for (;;) {
        size_t u = 0, m = 0;
        int r = ss_dec_feed(&c->dec, in + *used, inlen - *used, &u, out + *made, outcap - *made, &m);
        if (r == SS_DEC_ERROR) return -1;
        if (ss_codec_replayed(c)) return -1;
        if (c->replay && ss_dec_authenticated(&c->dec) && c->salt_checked == 1) {
            replay_add_key(c->replay, &c->salt_key);
            c->salt_checked = 2;
        }
        *used += u;
        *made += m;
        if (r != SS_DEC_NEED_MORE || (u == 0 && m == 0) || *used == inlen) return 0;
    }
}

void ss_codec_free_decoder(struct ss_dec_codec *c)
{
    if (!c) return;
    ss_dec_free(&c->dec);
    free(c->early);
    free(c);
}

static void dec_free(void *state) { ss_codec_free_decoder(state); }

/* Gives out what is left of the early plaintext. */
static size_t dec_early(struct ss_dec_codec *c, uint8_t *out, size_t outcap)
{
    size_t n = c->early_len < outcap ? c->early_len : outcap;
    memcpy(out, c->early + c->early_off, n);
    c->early_off += n;
    c->early_len -= n;
    if (!c->early_len) {
        free(c->early);       /* 16 KiB an established session does not need */
        c->early = NULL;
    }
    return n;
}

static enum stage_status dec_process(void *state, struct stage_io *io)
{
    struct ss_dec_codec *c = state;
    size_t early = c->early_len ? dec_early(c, io->out, io->outcap) : 0;
    if (c->early_len) {
        io->made = early;
        return STAGE_OK;
    }
    if (io->inlen && ss_codec_decrypt(c, io->in, io->inlen, &io->used, io->out + early, io->outcap - early,
                                      &io->made) < 0)
        return STAGE_ERROR;
    io->made += early;
    io->out_eof = io->in_eof && io->used == io->inlen;
    return STAGE_OK;
}

void ss_codec_give_early(struct ss_dec_codec *c, uint8_t *buf, size_t off, size_t len)
{
    free(c->early);
    c->early = len ? buf : NULL;
    c->early_off = off;
    c->early_len = len;
    if (!len) free(buf);
}

const struct stage_ops ss_enc_stage_ops = {
    .name = "ss-encoder", .role = STAGE_ENCODER, .process = enc_process,
    .next_wakeup = enc_next_wakeup, .max_input = enc_max_input, .free = enc_free,
};
const struct stage_ops ss_dec_stage_ops = {
    .name = "ss-decoder", .role = STAGE_DECODER, .process = dec_process, .free = dec_free,
};

int ss_codec_replayed(struct ss_dec_codec *c)
{
    const uint8_t *salt = ss_dec_salt(&c->dec);
    if (!c->replay || c->salt_checked || !salt) return 0;
    c->salt_checked = 1;
    /* Added only once a chunk authenticates (dec_process / the front-end),
     * so random junk from probers cannot fill the filter. */
    replay_key_of(c->replay, salt, c->dec.m->salt_len, &c->salt_key);
    return replay_check_key(c->replay, &c->salt_key);
}

static struct ss_enc_codec *new_encoder(const struct ss_method *m, const uint8_t *key, struct replay *replay,
                                        const uint8_t *prefix, size_t prefix_len)
{
    uint8_t salt[SS_SALT_MAX];
    if (prefix_len > SOCKS5_ADDR_MAX) return NULL;
    struct ss_enc_codec *c = calloc(1, sizeof(*c));
    if (!c || rand_pool_bytes(salt, m->salt_len) != 0 || ss_enc_init(&c->enc, m, key, salt) < 0) {
        free(c);
        return NULL;
    }
    if (prefix_len) memcpy(c->prefix, prefix, prefix_len);
    c->prefix_len = (uint16_t)prefix_len;
    if (replay) replay_add(replay, salt, m->salt_len);
    return c;
}

struct ss_enc_codec *ss_codec_new_encoder(const struct listener_cfg *cfg, struct replay *replay,
                                          const uint8_t *prefix, size_t prefix_len)
{
    return new_encoder(ss_method_find(cfg->ss_method), cfg->ss_key, replay, prefix, prefix_len);
}

static struct ss_dec_codec *new_decoder(const struct ss_method *m, const uint8_t *key, struct replay *replay)
{
    struct ss_dec_codec *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    ss_dec_init(&c->dec, m, key);
    c->replay = replay;
    return c;
}

struct ss_dec_codec *ss_codec_new_decoder(const struct listener_cfg *cfg, struct replay *replay)
{
    return new_decoder(ss_method_find(cfg->ss_method), cfg->ss_key, replay);
}

int ss_tunnel_attach(struct session *s)
{
    const struct listener_cfg *cfg = s->wl->cfg;
    return ss_tunnel_attach_to(s, s->dest, ss_method_find(cfg->ss_method), cfg->ss_key);
}

int ss_tunnel_attach_to(struct session *s, const struct sess_target *dest, const struct ss_method *m,
                        const uint8_t *key)
{
    uint8_t header[SOCKS5_ADDR_MAX];
    size_t hlen = front_socks_encode_target(dest, header, sizeof(header));
    struct ss_enc_codec *e = hlen ? new_encoder(m, key, NULL, header, hlen) : NULL;
    struct ss_dec_codec *d = new_decoder(m, key, NULL);
    if (!e || !d) {
        if (e) enc_free(e);
        ss_codec_free_decoder(d);
        return -1;
    }
    /* What the client already sent is the encoder's first input, behind the
     * address header. If the client has not spoken yet, the header waits
     * for it, up to SS_FIRST_DATA_WAIT_US (server-speaks-first protocols).
     * The SOCKS reply already queued to the client is not the decoder's. */
    e->wait_until_us = clock_now_us() + SS_FIRST_DATA_WAIT_US;
    if (pipe_add_stage(&s->up, &ss_enc_stage_ops, e, 1) < 0) {
        ss_codec_free_decoder(d);
        return -1;
    }
    return pipe_add_stage(&s->down, &ss_dec_stage_ops, d, 0);
}

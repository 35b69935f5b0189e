/* ss_codec.c - see ss_codec.h. */
#include "relay/ss_codec.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "config/config.h"
#include "core/worker-t.h"
#include "crypto/replay.h"
#include "proto/socks5.h"
#include "relay/front.h"
#include "relay/session.h"

static int enc_process(void *state, const uint8_t *in, size_t inlen, size_t *used,
                       uint8_t *out, size_t outcap, size_t *made)
{
    struct ss_enc *e = state;
    size_t take = ss_enc_max_plain(e, outcap);
    if (take > inlen) take = inlen;
    *used = 0;
    *made = 0;
    if (take == 0) return 0;
    size_t n = ss_enc_write(e, in, take, out, outcap);
    if (n == 0) return -1;      /* libcrypto failure: the encoder is dead */
    *used = take;
    *made = n;
    return 0;
}

static size_t enc_max_input(const void *state, size_t outcap)
{
    return ss_enc_max_plain(state, outcap);
}

static void enc_free(void *state)
{
    ss_enc_free(state);
    free(state);
}

static int dec_process(void *state, const uint8_t *in, size_t inlen, size_t *used,
                       uint8_t *out, size_t outcap, size_t *made)
{
    struct ss_dec_codec *c = state;
    *used = 0;
    *made = 0;
    /* Whole chunks until input or output runs out. */
    for (;;) {
        size_t u = 0, m = 0;
        int r = ss_dec_feed(&c->dec, in + *used, inlen - *used, &u, out + *made, outcap - *made, &m);
        if (r == SS_DEC_ERROR) return -1;
        if (ss_codec_replayed(c)) return -1;
        if (c->replay && ss_dec_authenticated(&c->dec) && c->salt_checked == 1) {
            replay_add(c->replay, ss_dec_salt(&c->dec), c->dec.m->salt_len);
            c->salt_checked = 2;
        }
        *used += u;
        *made += m;
        if (r != SS_DEC_NEED_MORE || (u == 0 && m == 0) || *used == inlen) return 0;
    }
}

static void dec_free(void *state)
{
    struct ss_dec_codec *c = state;
    ss_dec_free(&c->dec);
    free(c);
}

const struct codec_ops ss_enc_codec_ops = { enc_process, enc_free, 0, enc_max_input };
const struct codec_ops ss_dec_codec_ops = { dec_process, dec_free, 1, NULL };

int ss_codec_replayed(struct ss_dec_codec *c)
{
    const uint8_t *salt = ss_dec_salt(&c->dec);
    if (!c->replay || c->salt_checked || !salt) return 0;
    c->salt_checked = 1;
    /* Added only once a chunk authenticates (dec_process / the front-end),
     * so random junk from probers cannot fill the filter. */
    return replay_check(c->replay, salt, c->dec.m->salt_len);
}

struct ss_enc *ss_codec_new_encoder(const struct listener_cfg *cfg, struct replay *replay)
{
    const struct ss_method *m = ss_method_find(cfg->ss_method);
    uint8_t salt[SS_SALT_MAX];
    struct ss_enc *e = calloc(1, sizeof(*e));
    if (!e || RAND_bytes(salt, (int)m->salt_len) != 1 || ss_enc_init(e, m, cfg->ss_key, salt) < 0) {
        free(e);
        return NULL;
    }
    if (replay) replay_add(replay, salt, m->salt_len);
    return e;
}

struct ss_dec_codec *ss_codec_new_decoder(const struct listener_cfg *cfg, struct replay *replay)
{
    struct ss_dec_codec *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    ss_dec_init(&c->dec, ss_method_find(cfg->ss_method), cfg->ss_key);
    c->replay = replay;
    return c;
}

int ss_tunnel_attach(struct session *s)
{
    const struct listener_cfg *cfg = s->wl->cfg;
    struct socks_addr a;
    uint8_t header[SOCKS5_ADDR_MAX];
    struct net_addr lit;

    if (net_addr_from_literal(s->dest->host, s->dest->port, &lit) == 0) {
        front_socks_addr(&lit, &a);
    } else {
        memset(&a, 0, sizeof(a));
        a.atyp = SOCKS_ATYP_DOMAIN;
        a.port = s->dest->port;
        snprintf(a.host, sizeof(a.host), "%s", s->dest->host);
    }
    size_t hlen = socks5_write_addr(header, sizeof(header), &a);
    struct ss_enc *e = ss_codec_new_encoder(cfg, NULL);
    struct ss_dec_codec *d = ss_codec_new_decoder(cfg, NULL);
    if (!hlen || !e || !d) {
        if (e) enc_free(e);
        if (d) dec_free(d);
        return -1;
    }
    /* The header goes in front of whatever the client already sent, so
     * address and first data share one chunk and one packet. If the client
     * has not spoken yet, the header waits for it (the session ends the
     * wait after SS_FIRST_DATA_WAIT_MS for server-speaks-first protocols). */
    int client_spoke = s->up.buf && !buf_empty(s->up.buf);
    if (sess_install_codec(s, &s->up, &ss_enc_codec_ops, e, header, hlen, 1) < 0) {
        enc_free(e);
        dec_free(d);
        return -1;
    }
    if (!client_spoke && !s->up.eof) s->up.hold = (uint16_t)hlen;
    if (sess_install_codec(s, &s->down, &ss_dec_codec_ops, d, NULL, 0, 0) < 0) {
        dec_free(d);
        return -1;
    }
    return 0;
}

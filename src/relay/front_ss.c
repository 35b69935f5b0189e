/* front_ss.c - the ss-server front-end: decrypt the client's first chunk,
 * refuse replayed salts, read the target address, then keep decrypting the
 * client's bytes and encrypt the upstream's answer.
 *
 * A client that fails authentication gets nothing distinguishable: no reply,
 * no FIN at a fixed byte count; the session reads and discards until a
 * random deadline, then closes (resists active probing).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "crypto/replay.h"
#include "obs/log.h"
#include "proto/socks5.h"
#include "relay/front.h"
#include "relay/pipe.h"
#include "relay/rlistener-t.h"
#include "relay/session.h"
#include "relay/ss_codec.h"

struct ss_front {
    struct ss_dec_codec *dec;        /* becomes the up codec after the handshake */
    size_t plain_len;
    size_t addr_len;
    char *dest;                      /* for the log */
    uint8_t *plain;                  /* first chunk's plaintext; freed after the handshake */
};

#define FIRST_PLAIN_MAX SS_MAX_PAYLOAD

static struct ss_front *st(const struct session *s) { return s->front_state; }

static int ss_front_init(struct session *s)
{
    struct ss_front *f = calloc(1, sizeof(*f));
    if (!f) return -1;
    f->dec = ss_codec_new_decoder(s->wl->cfg, s->wl->cfg->replay);
    f->plain = malloc(FIRST_PLAIN_MAX);
    if (!f->dec || !f->plain) {
        ss_codec_free_decoder(f->dec);
        free(f->plain);
        free(f);
        return -1;
    }
    s->front_state = f;
    return 0;
}

static void ss_front_free(struct session *s)
{
    struct ss_front *f = st(s);
    if (!f) return;
    ss_codec_free_decoder(f->dec);
    free(f->dest);
    free(f->plain);
    free(f);
    s->front_state = NULL;
}

/* Decrypts what arrived into f->plain until the address can be parsed. */
static enum front_result ss_on_data(struct session *s, const uint8_t *buf, size_t len, size_t *used)
{
    struct ss_front *f = st(s);
    struct socks_addr a;
    size_t made = 0, n = 0;
    *used = 0;
    if (ss_codec_decrypt(f->dec, buf, len, used, f->plain + f->plain_len, FIRST_PLAIN_MAX - f->plain_len, &made) < 0)
        return FRONT_SILENT_FAIL;
    f->plain_len += made;
    int r = socks5_parse_addr(f->plain, f->plain_len, &a, &n);
    if (r == SOCKS_INVALID) return FRONT_SILENT_FAIL;
    if (r == SOCKS_NEED_MORE) {
        /* The address must fit in the first chunk, as every client sends it. */
        return ss_dec_authenticated(&f->dec->dec) ? FRONT_SILENT_FAIL : FRONT_AGAIN;
    }
    char host[SOCKS_ADDR_FMT_MAX], full[SOCKS_ADDR_FMT_MAX];
    socks_addr_host(&a, host, sizeof(host));
    socks_addr_format(&a, full, sizeof(full));
    f->addr_len = n;
    f->dest = strdup(full);
    if (!f->dest || sess_set_target(s, host, a.port, 1) < 0) return FRONT_FAIL;
    return FRONT_CONNECT;
}

/* Handshake done: the decoder becomes the up direction's first stage. The
 * rest of the client's ciphertext (still in the head link) is its input;
 * plaintext already decrypted behind the address is its first output, so
 * it is counted and passes later stages like any other. */
static int ss_attach(struct session *s)
{
    struct ss_front *f = st(s);
    ss_codec_give_early(f->dec, f->plain, f->addr_len, f->plain_len - f->addr_len);
    f->plain = NULL;
    struct ss_dec_codec *dec = f->dec;
    f->dec = NULL;           /* the session owns it now, even on failure */
    return pipe_add_stage(&s->up, &ss_dec_stage_ops, dec, 1);
}

static void ss_on_connected(struct session *s, const struct net_addr *bound)
{
    (void)bound;
    struct ss_enc_codec *e = ss_codec_new_encoder(s->wl->cfg, s->wl->cfg->replay, NULL, 0);
    if (!e) {
        sess_close(s, END_LOCAL_ERROR);
        return;
    }
    if (pipe_add_stage(&s->down, &ss_enc_stage_ops, e, 0) < 0) sess_close(s, END_LOCAL_ERROR);
}

static void ss_log_fields(const struct session *s, char *out, size_t outlen)
{
    char dest[SOCKS_ADDR_FMT_MAX];
    log_sanitize(dest, sizeof(dest), st(s) && st(s)->dest ? st(s)->dest : "-");
    snprintf(out, outlen, "proto=ss dest=%s", dest);
}

const struct front_ops front_ss_server = {
    .name = "ss-server",
    .init = ss_front_init,
    .on_data = ss_on_data,
    .attach = ss_attach,
    .on_connected = ss_on_connected,
    .on_failed = NULL,          /* Shadowsocks has no failure reply: just close */
    .log_fields = ss_log_fields,
    .free = ss_front_free,
    .hides_endings = 1,
};

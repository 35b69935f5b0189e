/* via.c - see via.h.
 *
 * A parent's answer is read with MSG_PEEK and consumed to its exact
 * length: whatever the destination sends right behind the last answer (a
 * server-speaks-first banner in the same segment) stays in the socket for
 * the relay, and reaches the client after its own success reply. Every
 * byte of a proper prefix of an answer is the answer's, so a prefix is
 * consumed at once and level-triggered epoll does not report it again.
 * The handshake bytes pass no tap: a capture's upstream leg starts with
 * the relayed bytes, and never records a parent's password.
 */
#include "relay/via.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/crypto.h>

#include "config/config.h"
#include "crypto/ss_cipher.h"
#include "obs/log.h"
#include "policy/acl.h"
#include "proto/socks5.h"
#include "proto/via_client.h"
#include "relay/rlistener-t.h"
#include "relay/session.h"
#include "relay/ss_codec.h"

struct via_state {
    struct via_client cl;
    uint8_t hop;                   /* the parent being spoken to */
    uint8_t nhs;                   /* parents with a handshake (an ss:// last one has none) */
    uint16_t outoff, outlen;       /* out[outoff, outlen) is still to be sent */
    uint16_t inlen;                /* in[0, inlen): the answer so far */
    uint8_t out[VIA_REQUEST_MAX];
    uint8_t in[VIA_REPLY_MAX];
};

static const struct listener_cfg *cfg_of(const struct session *s) { return s->wl->cfg; }

/* host:port as the parents see it: an IP literal, else a name. */
static void target_addr(const char *host, uint16_t port, struct socks_addr *a)
{
    struct net_addr lit;
    size_t len;
    memset(a, 0, sizeof(*a));
    a->port = port;
    if (net_addr_from_literal(host, port, &lit) == 0) {
        const uint8_t *ip = net_addr_ip(&lit, &len);
        a->atyp = len == 4 ? SOCKS_ATYP_IPV4 : SOCKS_ATYP_IPV6;
        memcpy(a->ip, ip, len);
        return;
    }
    a->atyp = SOCKS_ATYP_DOMAIN;
    snprintf(a->host, sizeof(a->host), "%s", host);
}

/* Nothing is resolved here, so a name meets the name rules only (and an
 * allow list that names no host refuses it); an IP literal meets every
 * rule. */
static int dest_allowed(const struct session *s)
{
    const struct sess_target *t = s->target;
    struct net_addr lit;
    size_t len;
    if (!t->check_policy) return 1;
    if (net_addr_from_literal(t->host, t->port, &lit) == 0) {
        const uint8_t *ip = net_addr_ip(&lit, &len);
        return acl_check_dest(&cfg_of(s)->dest_acl, NULL, len == 4 ? 4 : 6, ip, t->port);
    }
    return acl_check_dest(&cfg_of(s)->dest_acl, t->host, 0, NULL, t->port);
}

int via_take_target(struct session *s)
{
    const struct via_hop *first = &cfg_of(s)->via[0];
    if (!dest_allowed(s)) {
        sess_connect_failed(s, FAIL_NOT_ALLOWED, END_DENIED);
        return -1;
    }
    /* A relay's retry brings the next server: the old one goes. */
    free(s->dest);
    s->dest = s->target;
    s->target = NULL;
    if (sess_set_target(s, first->host, first->port, 0) < 0) {
        sess_close(s, END_LOCAL_ERROR);
        return -1;
    }
    return 0;
}

void via_free(struct session *s)
{
    if (!s->via) return;
    OPENSSL_cleanse(s->via, sizeof(*s->via));      /* out[] may hold a parent's password */
    free(s->via);
    s->via = NULL;
}

static const char *dest_text(const struct session *s, char *out, size_t outlen)
{
    char host[256];
    log_sanitize(host, sizeof(host), s->dest->host);
    snprintf(out, outlen, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, s->dest->port);
    return out;
}

static void log_hop(const struct session *s, int level, const char *what, const char *detail)
{
    char v[300];
    const struct via_state *x = s->via;
    via_url_format(&cfg_of(s)->via[x->hop], v, sizeof(v));
    log_msg(level, "sess=%llu via=%s hop=%u/%zu %s%s", (unsigned long long)s->id, v, x->hop + 1u,
            cfg_of(s)->nvia, what, detail);
}

/* Ends the handshakes: the client hears `why` in its protocol. */
static void give_up(struct session *s, enum sess_fail why, enum sess_end end, const char *what)
{
    if (log_enabled(LOG_INFO)) log_hop(s, LOG_INFO, "failed: ", what);
    endpoint_close(&s->uep, 0);
    via_free(s);
    sess_connect_failed(s, why, end);
}

/* A parent answered no: its SOCKS5-coded reason, passed on. */
static void refused(struct session *s)
{
    static const struct { uint8_t why, end; } map[] = {
        [SOCKS5_REP_FAIL] = { FAIL_GENERAL, END_CONNECT_ERROR },
        [SOCKS5_REP_NOT_ALLOWED] = { FAIL_NOT_ALLOWED, END_DENIED },
        [SOCKS5_REP_NET_UNREACH] = { FAIL_NET_UNREACH, END_CONNECT_ERROR },
        [SOCKS5_REP_HOST_UNREACH] = { FAIL_HOST_UNREACH, END_CONNECT_ERROR },
        [SOCKS5_REP_REFUSED] = { FAIL_REFUSED, END_CONNECT_REFUSED },
        [SOCKS5_REP_TTL] = { FAIL_TIMEOUT, END_CONNECT_TIMEOUT },
    };
    const struct via_client *c = &s->via->cl;
    uint8_t rep = c->rep >= 1 && c->rep <= SOCKS5_REP_TTL ? c->rep : SOCKS5_REP_FAIL;
    char what[160];
    uint8_t proto = cfg_of(s)->via[s->via->hop].proto;
    if (c->code < 0) snprintf(what, sizeof(what), "%s", c->why);
    else if (proto == VIA_HTTP) snprintf(what, sizeof(what), "%s (HTTP %d)", c->why, c->code);
    else snprintf(what, sizeof(what), "%s (reply 0x%02x)", c->why, (unsigned)c->code);
    give_up(s, map[rep].why, map[rep].end, what);
}

/* The last parent is open to the destination: relay. */
static void finish(struct session *s)
{
    const struct listener_cfg *cfg = cfg_of(s);
    const struct via_hop *last = &cfg->via[cfg->nvia - 1];
    via_free(s);
    if (last->proto == VIA_SS && ss_tunnel_attach_to(s, s->dest, ss_method_find(last->method), last->key) < 0) {
        sess_close(s, END_LOCAL_ERROR);
        return;
    }
    sess_relay_start(s, endpoint_fd(&s->uep));
}

static void send_out(struct session *s)
{
    struct via_state *x = s->via;
    while (x->outoff < x->outlen) {
        ssize_t n = endpoint_write(&s->uep, x->out + x->outoff, x->outlen - x->outoff);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            endpoint_want(&s->uep, LOOP_WRITE);
            return;
        }
        if (n < 0) {
            give_up(s, FAIL_GENERAL, END_CONNECT_ERROR, strerror(errno));
            return;
        }
        x->outoff = (uint16_t)(x->outoff + n);
    }
    OPENSSL_cleanse(x->out, x->outlen);
    endpoint_want(&s->uep, LOOP_READ);
}

static void next_message(struct session *s)
{
    struct via_state *x = s->via;
    size_t n = via_client_output(&x->cl, x->out, sizeof(x->out));
    if (n == 0) {
        give_up(s, FAIL_GENERAL, END_CONNECT_ERROR, x->cl.why ? x->cl.why : "request does not fit");
        return;
    }
    x->outoff = 0;
    x->outlen = (uint16_t)n;
    send_out(s);
}

/* Parent `hop` is connected (to us, or through the ones before it). */
static void start_hop(struct session *s, unsigned hop)
{
    const struct listener_cfg *cfg = cfg_of(s);
    struct socks_addr a;
    if (hop + 1 < cfg->nvia) target_addr(cfg->via[hop + 1].host, cfg->via[hop + 1].port, &a);
    else target_addr(s->dest->host, s->dest->port, &a);
    s->via->hop = (uint8_t)hop;
    s->via->inlen = 0;
    via_client_init(&s->via->cl, &cfg->via[hop], &a);
    next_message(s);
}

static void hop_done(struct session *s)
{
    char d[300];
    struct via_state *x = s->via;
    if (log_enabled(LOG_DEBUG)) log_hop(s, LOG_DEBUG, "open to ", x->hop + 1u < cfg_of(s)->nvia ? "the next parent"
                                                                                   : dest_text(s, d, sizeof(d)));
    if (x->hop + 1u < x->nhs) start_hop(s, x->hop + 1u);
    else finish(s);
}

/* Peeks at what came, lets the parser judge the answer so far, and
 * consumes exactly the answer's bytes. */
static void read_answer(struct session *s)
{
    struct via_state *x = s->via;
    int fd = endpoint_fd(&s->uep);
    ssize_t n = recv(fd, x->in + x->inlen, sizeof(x->in) - x->inlen, MSG_PEEK);
    if (n == 0) {
        give_up(s, FAIL_GENERAL, END_CONNECT_ERROR, "the parent closed the connection");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) give_up(s, FAIL_GENERAL, END_CONNECT_ERROR, strerror(errno));
        return;
    }
    size_t used = 0, have = x->inlen + (size_t)n;
    enum via_status st = via_client_input(&x->cl, x->in, have, &used);
    if (st == VIA_FAIL) {
        refused(s);
        return;
    }
    size_t take = st == VIA_NEED_MORE ? (size_t)n : used - x->inlen;
    if (take && recv(fd, x->in + x->inlen, take, 0) != (ssize_t)take) {
        give_up(s, FAIL_GENERAL, END_CONNECT_ERROR, "short read of a peeked answer");
        return;
    }
    if (st == VIA_NEED_MORE) {
        x->inlen = (uint16_t)have;
        return;
    }
    x->inlen = 0;
    if (st == VIA_SEND) next_message(s);
    else hop_done(s);
}

void via_start(struct session *s)
{
    const struct listener_cfg *cfg = cfg_of(s);
    unsigned nhs = (unsigned)cfg->nvia - (cfg->via[cfg->nvia - 1].proto == VIA_SS);
    if (nhs == 0) {
        finish(s);
        return;
    }
    if (!(s->via = calloc(1, sizeof(*s->via)))) {
        sess_close(s, END_LOCAL_ERROR);
        return;
    }
    s->via->nhs = (uint8_t)nhs;
    s->state = SESS_VIA;
    /* One deadline for every parent's answer. */
    loop_timer_arm_in(s->wl->w->loop, &s->timer, cfg->connect_timeout_ms);
    start_hop(s, 0);
}

void via_ready(struct session *s, uint32_t events)
{
    (void)events;      /* level-triggered: the step we are at says what to try */
    if (s->via->outoff < s->via->outlen) send_out(s);
    else read_answer(s);
}

void via_timeout(struct session *s)
{
    give_up(s, FAIL_TIMEOUT, END_CONNECT_TIMEOUT, "no answer in time (--connect-timeout)");
}

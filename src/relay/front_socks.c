/* front_socks.c - SOCKS 4, 4a and 5 on one port, told apart by the first byte.
 *
 * Glue between the pure parsers (proto/socks4.c, proto/socks5.c) and the
 * session: it picks the auth method, checks credentials, names the target,
 * and answers with the protocol's exact reply code. After the success reply
 * the session relays like any other. A first byte that starts an HTTP
 * method hands the session to front_http.c (unless --no-http).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "config/config.h"
#include "obs/log.h"
#include "proto/socks4.h"
#include "proto/socks5.h"
#include "relay/front.h"
#include "relay/rlistener-t.h"
#include "relay/session.h"
#include "relay/udp_assoc.h"

enum socks_phase { PH_FIRST, PH_GREETING, PH_AUTH, PH_REQUEST, PH_DONE };

struct socks_state {
    uint8_t phase;
    uint8_t version;         /* 4 or 5 */
    uint8_t is4a;
    char *user;              /* authenticated SOCKS5 user, for the log */
    char *userid4;           /* SOCKS4 USERID: anyone can send any, so never logged as user= */
    char *dest;              /* requested HOST:PORT, for the log */
    struct udp_assoc *udp;   /* after a UDP ASSOCIATE (plain SOCKS listeners) */
};

static struct socks_state *st(const struct session *s) { return s->front_state; }
static const struct listener_cfg *cfg(const struct session *s) { return s->wl->cfg; }

static int socks_init(struct session *s)
{
    s->front_state = calloc(1, sizeof(struct socks_state));
    return s->front_state ? 0 : -1;
}

static void socks_free(struct session *s)
{
    struct socks_state *x = st(s);
    if (!x) return;
    udp_assoc_free(x->udp);
    free(x->user);
    free(x->userid4);
    free(x->dest);
    free(x);
    s->front_state = NULL;
}

/* Constant time in the password: both sides are compared over the full
 * 255-byte field, so neither content nor length leaks through timing. */
static int user_matches(const struct user_cfg *u, const char *user, size_t ulen, const char *pass, size_t plen)
{
    unsigned char a[256] = { 0 }, b[256] = { 0 };
    memcpy(a, pass, plen);
    memcpy(b, u->pass, u->pass_len);
    int same_pass = CRYPTO_memcmp(a, b, sizeof(a)) == 0;
    int same_len = plen == u->pass_len;
    int same_name = ulen == u->name_len && memcmp(user, u->name, ulen) == 0;
    OPENSSL_cleanse(a, sizeof(a));
    return same_pass & same_len & same_name;
}

int front_user_check(const struct session *s, const char *user, size_t ulen, const char *pass, size_t plen)
{
    int ok = 0;
    if (ulen > 255 || plen > 255) return 0;
    /* Walk every user: the time taken does not tell which name exists. */
    for (size_t i = 0; i < cfg(s)->nusers; i++) ok |= user_matches(&cfg(s)->users[i], user, ulen, pass, plen);
    return ok;
}

static int authenticate(const struct session *s, const struct socks5_userpass *up)
{
    return front_user_check(s, up->user, up->ulen, up->pass, up->plen);
}

static uint8_t choose_method(const struct session *s, const struct socks5_greeting *g)
{
    if (cfg(s)->nusers) {
        if (socks5_greeting_offers(g, SOCKS5_METHOD_USERPASS)) return SOCKS5_METHOD_USERPASS;
        if (cfg(s)->allow_anonymous && socks5_greeting_offers(g, SOCKS5_METHOD_NOAUTH))
            return SOCKS5_METHOD_NOAUTH;
        return SOCKS5_METHOD_NONE;
    }
    return socks5_greeting_offers(g, SOCKS5_METHOD_NOAUTH) ? SOCKS5_METHOD_NOAUTH : SOCKS5_METHOD_NONE;
}

/* A refusal the log names (end=), so that tools like fail2ban can tell a
 * wrong password from a scanner. */
static enum front_result refuse(struct session *s, enum sess_end why)
{
    sess_fail_reason(s, why);
    return FRONT_FAIL;
}

static enum front_result reply5(struct session *s, uint8_t rep)
{
    uint8_t out[SOCKS5_REPLY_MAX];
    size_t n = socks5_build_reply(out, sizeof(out), rep, NULL);
    sess_reply(s, out, n);
    return FRONT_FAIL;
}

static enum front_result reply4_reject(struct session *s)
{
    uint8_t out[SOCKS4_REPLY_LEN];
    sess_reply(s, out, socks4_build_reply(out, SOCKS4_REP_REJECTED, NULL));
    return FRONT_FAIL;
}

/* The requested HOST:PORT, for the log's dest=. 0, or -1 out of memory. */
static int set_dest(struct session *s, const struct socks_addr *a)
{
    char full[SOCKS_ADDR_FMT_MAX];
    socks_addr_format(a, full, sizeof(full));
    free(st(s)->dest);
    st(s)->dest = strdup(full);
    return st(s)->dest ? 0 : -1;
}

/* Target -> session; literal addresses are formatted, names passed as is. */
static enum front_result set_target(struct session *s, const struct socks_addr *a)
{
    char host[SOCKS_ADDR_FMT_MAX];
    socks_addr_host(a, host, sizeof(host));
    if (set_dest(s, a) < 0 || sess_set_target(s, host, a->port, 1) < 0) return FRONT_FAIL;
    st(s)->phase = PH_DONE;
    return FRONT_CONNECT;
}

static enum front_result on_greeting(struct session *s, const uint8_t *buf, size_t len, size_t *used)
{
    struct socks5_greeting g;
    uint8_t out[2];
    int r = socks5_parse_greeting(buf, len, &g, used);
    if (r == SOCKS_NEED_MORE) return FRONT_AGAIN;
    if (r == SOCKS_INVALID) return FRONT_FAIL;
    uint8_t m = choose_method(s, &g);
    sess_reply(s, out, socks5_build_method_reply(out, m));
    if (m == SOCKS5_METHOD_NONE) return refuse(s, END_NO_METHOD);
    st(s)->phase = m == SOCKS5_METHOD_USERPASS ? PH_AUTH : PH_REQUEST;
    return FRONT_AGAIN;
}

static enum front_result on_auth(struct session *s, const uint8_t *buf, size_t len, size_t *used)
{
    struct socks5_userpass up;
    uint8_t out[2];
    size_t pw_off, pw_len;
    /* Before parsing, on every call: a message still incomplete, or
     * malformed, may hold part of a password already. */
    if (socks5_userpass_secret(buf, len, &pw_off, &pw_len)) sess_secret(s, pw_off, pw_len);
    int r = socks5_parse_userpass(buf, len, &up, used);
    if (r == SOCKS_NEED_MORE) return FRONT_AGAIN;
    int ok = r == SOCKS_DONE && authenticate(s, &up);
    OPENSSL_cleanse(up.pass, sizeof(up.pass));
    sess_reply(s, out, socks5_build_auth_reply(out, ok ? SOCKS5_AUTH_OK : SOCKS5_AUTH_FAIL));
    if (r != SOCKS_DONE) return FRONT_FAIL;
    /* Logged either way: on auth_failed, user= is the name that was tried. */
    st(s)->user = strndup(up.user, up.ulen);
    if (!ok) return refuse(s, END_AUTH_FAILED);
    st(s)->phase = PH_REQUEST;
    return FRONT_AGAIN;
}

/* UDP ASSOCIATE: the reply names the relay's UDP address; the TCP
 * connection then only keeps the association alive (FRONT_HOLD). On
 * ss-local only with -u (the datagrams go to the ss-server); not behind
 * parents (--via), past which datagrams would leave directly, nor on
 * mux-local, whose streams carry TCP only: those answer 0x07. */
static int udp_allowed(const struct session *s)
{
    const struct listener_cfg *c = cfg(s);
    return (c->mode == MODE_SOCKS && !c->nvia) || (c->mode == MODE_SS_LOCAL && c->udp && !c->has_tunnel_to);
}

static enum front_result on_udp(struct session *s, const struct socks_addr *declared)
{
    struct socks_addr bound;
    uint8_t out[SOCKS5_REPLY_MAX], rep;
    enum sess_end why;
    if (set_dest(s, declared) < 0) return FRONT_FAIL;
    st(s)->udp = udp_assoc_open(s, declared, &bound, &rep, &why);
    if (!st(s)->udp) {
        sess_fail_reason(s, why);
        return reply5(s, rep);
    }
    sess_reply(s, out, socks5_build_reply(out, sizeof(out), SOCKS5_REP_OK, &bound));
    st(s)->phase = PH_DONE;
    return FRONT_HOLD;
}

/* BIND: ferry listens for the peer the request names (the target, for the
 * log and --bind-strict); bind.c sends both replies through the hooks. Not
 * through a tunnel (ss-local, mux-local) or parents (--via): their far end
 * would have to listen. */
static int bind_allowed(const struct session *s) { return cfg(s)->mode == MODE_SOCKS && !cfg(s)->nvia; }

static enum front_result on_bind(struct session *s, const struct socks_addr *peer)
{
    enum front_result r = set_target(s, peer);
    if (r == FRONT_CONNECT) s->bind = 1;
    return r;
}

static enum front_result on_request5(struct session *s, const uint8_t *buf, size_t len, size_t *used)
{
    struct socks5_request req;
    uint8_t rep;
    int r = socks5_parse_request(buf, len, &req, used, &rep);
    if (r == SOCKS_NEED_MORE) return FRONT_AGAIN;
    if (r == SOCKS_INVALID) {
        if (rep == SOCKS5_REP_ATYP_UNSUPPORTED) sess_fail_reason(s, END_BAD_ATYP);
        return reply5(s, rep);
    }
    /* Behind parents (--via) datagrams would leave directly: refused (0x07). */
    if (req.cmd == SOCKS5_CMD_UDP && udp_allowed(s)) return on_udp(s, &req.dst);
    if (req.cmd == SOCKS5_CMD_BIND && bind_allowed(s)) return on_bind(s, &req.dst);
    if (req.cmd != SOCKS5_CMD_CONNECT) {
        sess_fail_reason(s, END_BAD_COMMAND);
        set_dest(s, &req.dst);
        return reply5(s, SOCKS5_REP_CMD_UNSUPPORTED);
    }
    return set_target(s, &req.dst);
}

static enum front_result on_request4(struct session *s, const uint8_t *buf, size_t len, size_t *used)
{
    struct socks4_request req;
    /* SOCKS4 carries no password: with users configured it is refused
     * unless the operator opted in. */
    if (cfg(s)->nusers && !cfg(s)->allow_socks4) {
        sess_fail_reason(s, END_SOCKS4_REFUSED);
        return reply4_reject(s);
    }
    int r = socks4_parse_request(buf, len, &req, used);
    if (r == SOCKS_NEED_MORE) return FRONT_AGAIN;
    if (r == SOCKS_INVALID) return reply4_reject(s);
    st(s)->is4a = req.dst.atyp == SOCKS_ATYP_DOMAIN;
    if (req.userid[0]) st(s)->userid4 = strdup(req.userid);
    if (req.cmd == SOCKS4_CMD_BIND && bind_allowed(s)) return on_bind(s, &req.dst);
    if (req.cmd != SOCKS4_CMD_CONNECT) {
        sess_fail_reason(s, END_BAD_COMMAND);
        set_dest(s, &req.dst);
        return reply4_reject(s);
    }
    return set_target(s, &req.dst);
}

static enum front_result socks_on_data(struct session *s, const uint8_t *buf, size_t len, size_t *used)
{
    struct socks_state *x = st(s);
    *used = 0;
    if (len == 0) return FRONT_AGAIN;
    switch (x->phase) {
    case PH_FIRST:
        /* A method's first letter: an HTTP proxy request (the "mixed port"). */
        if (!cfg(s)->no_http && front_http_first_byte(buf[0])) return front_http_take_over(s, buf, len, used);
        if (buf[0] != 4 && buf[0] != 5) return refuse(s, END_UNKNOWN_PROTOCOL);   /* not SOCKS: no reply */
        x->version = buf[0];
        x->phase = x->version == 5 ? PH_GREETING : PH_REQUEST;
        return socks_on_data(s, buf, len, used);
    case PH_GREETING:
        return on_greeting(s, buf, len, used);
    case PH_AUTH:
        return on_auth(s, buf, len, used);
    case PH_REQUEST:
        return x->version == 5 ? on_request5(s, buf, len, used) : on_request4(s, buf, len, used);
    default:
        return FRONT_FAIL;
    }
}

void front_socks_addr(const struct net_addr *a, struct socks_addr *out)
{
    size_t len;
    memset(out, 0, sizeof(*out));
    out->atyp = SOCKS_ATYP_IPV4;
    if (a->len == 0) return;    /* no address (a multiplexed stream): 0.0.0.0:0 */
    const uint8_t *ip = net_addr_ip(a, &len);
    out->atyp = len == 4 ? SOCKS_ATYP_IPV4 : SOCKS_ATYP_IPV6;
    memcpy(out->ip, ip, len);
    out->port = net_addr_port(a);
}

size_t front_socks_encode_target(const struct sess_target *t, uint8_t *out, size_t cap)
{
    struct socks_addr a;
    struct net_addr lit;
    if (net_addr_from_literal(t->host, t->port, &lit) == 0) {
        front_socks_addr(&lit, &a);
    } else {
        memset(&a, 0, sizeof(a));
        a.atyp = SOCKS_ATYP_DOMAIN;
        a.port = t->port;
        snprintf(a.host, sizeof(a.host), "%s", t->host);
    }
    return socks5_write_addr(out, cap, &a);
}

/* The success reply naming addr: where the upstream connection is bound,
 * or for BIND where ferry listens, then the peer that came. */
static void reply_ok(struct session *s, const struct net_addr *addr)
{
    struct socks_addr b;
    uint8_t out[SOCKS5_REPLY_MAX];
    front_socks_addr(addr, &b);
    if (st(s)->version == 5) {
        sess_reply(s, out, socks5_build_reply(out, sizeof(out), SOCKS5_REP_OK, &b));
    } else {
        /* SOCKS4 replies carry IPv4 only; an IPv6 bound address is zeroed. */
        sess_reply(s, out, socks4_build_reply(out, SOCKS4_REP_GRANTED,
                                              b.atyp == SOCKS_ATYP_IPV4 ? &b : NULL));
    }
}

/* BND.ADDR names ferry's socket to the destination. Through a tunnel
 * (ss-local; mux-local's streams have no socket) or a parent (--via) that
 * socket leads to the tunnel's server or the parent, of no use to the
 * client: 0.0.0.0:0 then, as shadowsocks-libev's ss-local answers, and no
 * getsockname per connection. */
static int reply_names_socket(const struct session *s)
{
    return !s->bind && cfg(s)->mode == MODE_SOCKS && !cfg(s)->nvia;
}

static void socks_on_connected(struct session *s, const struct net_addr *bound)
{
    static const struct net_addr none;
    /* BIND's second reply: the peer. */
    reply_ok(s, s->bind ? &s->upstream : reply_names_socket(s) ? bound : &none);
}

/* BIND's first reply: where ferry listens. */
static void socks_on_listening(struct session *s, const struct net_addr *bound) { reply_ok(s, bound); }

static void socks_on_failed(struct session *s, enum sess_fail why)
{
    static const uint8_t rep5[] = {
        [FAIL_GENERAL] = SOCKS5_REP_FAIL,          [FAIL_NOT_ALLOWED] = SOCKS5_REP_NOT_ALLOWED,
        [FAIL_NET_UNREACH] = SOCKS5_REP_NET_UNREACH, [FAIL_HOST_UNREACH] = SOCKS5_REP_HOST_UNREACH,
        [FAIL_REFUSED] = SOCKS5_REP_REFUSED,       [FAIL_TIMEOUT] = SOCKS5_REP_TTL,
    };
    if (st(s)->version == 5) reply5(s, rep5[why]);
    else reply4_reject(s);
}

/* The same keys on every line, whatever the version and however far the
 * handshake got, so a line can be parsed without knowing either. */
static void socks_log_fields(const struct session *s, char *out, size_t outlen)
{
    const struct socks_state *x = st(s);
    const char *proto = !x || !x->version ? "socks" : x->version == 5 ? "socks5" : x->is4a ? "socks4a" : "socks4";
    char user[256], userid[256], dest[SOCKS_ADDR_FMT_MAX], udp[1024] = "";
    log_sanitize(user, sizeof(user), x && x->user ? x->user : "-");
    log_sanitize(userid, sizeof(userid), x && x->userid4 ? x->userid4 : "-");
    log_sanitize(dest, sizeof(dest), x && x->dest ? x->dest : "-");
    /* An association's counters, after the keys every line has. */
    if (x && x->udp) udp_assoc_log_fields(x->udp, udp, sizeof(udp));
    snprintf(out, outlen, "proto=%s user=%s socks4_userid=%s dest=%s%s%s", proto, user, userid, dest,
             udp[0] ? " " : "", udp);
}

static const char *socks_user(const struct session *s)
{
    return st(s) ? st(s)->user : NULL;
}

const struct front_ops front_socks = {
    .name = "socks",
    .init = socks_init,
    .on_data = socks_on_data,
    .on_connected = socks_on_connected,
    .needs_bound = reply_names_socket,      /* BND.ADDR / DSTIP of the reply */
    .on_listening = socks_on_listening,
    .on_failed = socks_on_failed,
    .log_fields = socks_log_fields,
    .user = socks_user,
    .free = socks_free,
};

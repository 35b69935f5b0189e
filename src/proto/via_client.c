/* via_client.c - see via_client.h. */
#include "proto/via_client.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "proto/socks4.h"
#include "proto/socks5.h"

enum {
    S_START,
    S5_WAIT_METHOD, S5_SEND_AUTH, S5_WAIT_AUTH, S5_SEND_REQ, S5_WAIT_REPLY,
    S4_WAIT_REPLY,
    H_WAIT,
    S_DONE, S_FAIL,
};

void via_client_init(struct via_client *c, const struct via_hop *hop, const struct socks_addr *target)
{
    memset(c, 0, sizeof(*c));
    c->hop = hop;
    c->target = *target;
    c->code = -1;
}

static enum via_status fail(struct via_client *c, uint8_t rep, int code, const char *why)
{
    c->step = S_FAIL;
    c->rep = rep;
    c->code = code;
    c->why = why;
    return VIA_FAIL;
}

uint8_t via_rep_from_http(int status)
{
    switch (status) {
    case 403: return SOCKS5_REP_NOT_ALLOWED;
    case 502: return SOCKS5_REP_REFUSED;
    case 504: return SOCKS5_REP_TTL;
    default: return SOCKS5_REP_FAIL;
    }
}

/* ---- what we send ---- */

static size_t s5_greeting(const struct via_client *c, uint8_t *out)
{
    size_t n = 0;
    out[n++] = SOCKS5_VERSION;
    out[n++] = c->hop->has_user ? 2 : 1;
    out[n++] = SOCKS5_METHOD_NOAUTH;
    if (c->hop->has_user) out[n++] = SOCKS5_METHOD_USERPASS;
    return n;
}

static size_t s5_userpass(const struct via_client *c, uint8_t *out)
{
    size_t ul = strlen(c->hop->user), pl = strlen(c->hop->pass), n = 0;
    out[n++] = SOCKS5_USERPASS_VERSION;
    out[n++] = (uint8_t)ul;
    memcpy(out + n, c->hop->user, ul);
    n += ul;
    out[n++] = (uint8_t)pl;
    memcpy(out + n, c->hop->pass, pl);
    return n + pl;
}

static size_t s5_request(const struct via_client *c, uint8_t *out, size_t cap)
{
    out[0] = SOCKS5_VERSION;
    out[1] = SOCKS5_CMD_CONNECT;
    out[2] = 0;
    size_t n = socks5_write_addr(out + 3, cap - 3, &c->target);
    return n ? n + 3 : 0;
}

/* SOCKS4 for an IPv4 target, 4a (DSTIP 0.0.0.1 and the host after the
 * USERID) for a name or an IPv6 literal, which SOCKS4 cannot carry. */
static size_t s4_request(const struct via_client *c, uint8_t *out)
{
    char host[256];
    size_t n = 0, ul = strlen(c->hop->user);
    out[n++] = SOCKS4_VERSION;
    out[n++] = SOCKS4_CMD_CONNECT;
    out[n++] = (uint8_t)(c->target.port >> 8);
    out[n++] = (uint8_t)c->target.port;
    int v4 = c->target.atyp == SOCKS_ATYP_IPV4;
    static const uint8_t four_a[4] = { 0, 0, 0, 1 };
    memcpy(out + n, v4 ? c->target.ip : four_a, 4);
    n += 4;
    memcpy(out + n, c->hop->user, ul + 1);
    n += ul + 1;
    if (!v4) {
        socks_addr_host(&c->target, host, sizeof(host));
        size_t hl = strlen(host);
        memcpy(out + n, host, hl + 1);
        n += hl + 1;
    }
    return n;
}

/* A name from a client may hold any byte but NUL: one that would break
 * the request line (or add a header) is not sent. */
static int http_host_ok(const char *h)
{
    for (; *h; h++)
        if ((unsigned char)*h <= 0x20 || *h == 0x7f) return 0;
    return 1;
}

static size_t http_request(struct via_client *c, uint8_t *out, size_t cap)
{
    char host[256], auth[768], cred[520];
    int v6 = c->target.atyp == SOCKS_ATYP_IPV6;
    socks_addr_host(&c->target, host, sizeof(host));
    if (!http_host_ok(host)) {
        fail(c, SOCKS5_REP_FAIL, -1, "the destination name cannot go into an HTTP request line");
        return 0;
    }
    auth[0] = '\0';
    if (c->hop->has_user) {
        int cl = snprintf(cred, sizeof(cred), "%s:%s", c->hop->user, c->hop->pass);
        char b64[700];
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)cred, cl);
        snprintf(auth, sizeof(auth), "Proxy-Authorization: Basic %s\r\n", b64);
        OPENSSL_cleanse(cred, sizeof(cred));
        OPENSSL_cleanse(b64, sizeof(b64));
    }
    const char *lb = v6 ? "[" : "", *rb = v6 ? "]" : "";
    int n = snprintf((char *)out, cap, "CONNECT %s%s%s:%u HTTP/1.1\r\nHost: %s%s%s:%u\r\n%s\r\n", lb, host, rb,
                     c->target.port, lb, host, rb, c->target.port, auth);
    OPENSSL_cleanse(auth, sizeof(auth));
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t via_client_output(struct via_client *c, uint8_t *out, size_t cap)
{
    if (cap < VIA_REQUEST_MAX) return 0;
    switch (c->step) {
    case S_START:
        if (c->hop->proto == VIA_SOCKS5) {
            c->step = S5_WAIT_METHOD;
            return s5_greeting(c, out);
        }
        if (c->hop->proto == VIA_SOCKS4A) {
            c->step = S4_WAIT_REPLY;
            return s4_request(c, out);
        }
        if (c->hop->proto == VIA_HTTP) {
            c->step = H_WAIT;
            http_parser_init(&c->hp, HTTP_RESPONSE);
            c->hp.data = c;
            return http_request(c, out, cap);
        }
        fail(c, SOCKS5_REP_FAIL, -1, "not a handshake parent");
        return 0;
    case S5_SEND_AUTH:
        c->step = S5_WAIT_AUTH;
        return s5_userpass(c, out);
    case S5_SEND_REQ:
        c->step = S5_WAIT_REPLY;
        return s5_request(c, out, cap);
    default:
        return 0;
    }
}

/* ---- what the parent answers ---- */

static enum via_status s5_method(struct via_client *c, const uint8_t *buf, size_t len, size_t *consumed)
{
    if (len >= 1 && buf[0] != SOCKS5_VERSION) return fail(c, SOCKS5_REP_FAIL, -1, "not a SOCKS5 answer");
    if (len < 2) return VIA_NEED_MORE;
    *consumed = 2;
    if (buf[1] == SOCKS5_METHOD_NOAUTH) {
        c->step = S5_SEND_REQ;
        return VIA_SEND;
    }
    if (buf[1] == SOCKS5_METHOD_USERPASS && c->hop->has_user) {
        c->step = S5_SEND_AUTH;
        return VIA_SEND;
    }
    if (buf[1] == SOCKS5_METHOD_NONE)
        return fail(c, SOCKS5_REP_FAIL, buf[1], c->hop->has_user ? "accepts none of our authentication methods"
                                                                 : "wants a user name and password (USER:PASS@)");
    return fail(c, SOCKS5_REP_FAIL, buf[1], "chose an authentication method we did not offer");
}

static enum via_status s5_auth(struct via_client *c, const uint8_t *buf, size_t len, size_t *consumed)
{
    if (len < 2) return VIA_NEED_MORE;
    if (buf[1] != SOCKS5_AUTH_OK) return fail(c, SOCKS5_REP_FAIL, buf[1], "refused the user name or password");
    *consumed = 2;
    c->step = S5_SEND_REQ;
    return VIA_SEND;
}

static const char *s5_rep_text(uint8_t rep)
{
    static const char *const t[] = {
        "succeeded", "general failure", "not allowed by its rules", "network unreachable", "host unreachable",
        "connection refused", "TTL expired (timeout)", "command not supported", "address type not supported",
    };
    return rep < sizeof(t) / sizeof(t[0]) ? t[rep] : "an unknown reply code";
}

static enum via_status s5_reply(struct via_client *c, const uint8_t *buf, size_t len, size_t *consumed)
{
    struct socks5_request r;
    uint8_t code;
    size_t used;
    if (len >= 1 && buf[0] != SOCKS5_VERSION) return fail(c, SOCKS5_REP_FAIL, -1, "not a SOCKS5 answer");
    if (len >= 2 && buf[1] != SOCKS5_REP_OK)
        return fail(c, buf[1] <= SOCKS5_REP_TTL ? buf[1] : SOCKS5_REP_FAIL, buf[1], s5_rep_text(buf[1]));
    /* VER REP RSV ATYP ADDR PORT is a request's shape, REP in CMD's place. */
    int st = socks5_parse_request(buf, len, &r, &used, &code);
    if (st == SOCKS_NEED_MORE) return VIA_NEED_MORE;
    if (st == SOCKS_INVALID) return fail(c, SOCKS5_REP_FAIL, -1, "a malformed SOCKS5 reply");
    *consumed = used;
    c->step = S_DONE;
    return VIA_DONE;
}

static enum via_status s4_reply(struct via_client *c, const uint8_t *buf, size_t len, size_t *consumed)
{
    if (len >= 1 && buf[0] != 0 && buf[0] != SOCKS4_VERSION) return fail(c, SOCKS5_REP_FAIL, -1, "not a SOCKS4 answer");
    if (len >= 2 && buf[1] != SOCKS4_REP_GRANTED)
        return fail(c, SOCKS5_REP_FAIL, buf[1], "rejected the request (SOCKS4 has no reason codes)");
    if (len < SOCKS4_REPLY_LEN) return VIA_NEED_MORE;
    *consumed = SOCKS4_REPLY_LEN;
    c->step = S_DONE;
    return VIA_DONE;
}

static int on_headers_complete(http_parser *p)
{
    struct via_client *c = p->data;
    c->head_done = 1;
    http_parser_pause(p, 1);   /* stop at the head's end: what follows is the destination's */
    return 0;
}

static const http_parser_settings http_settings = { .on_headers_complete = on_headers_complete };

static enum via_status http_reply(struct via_client *c, const uint8_t *buf, size_t len, size_t *consumed)
{
    size_t want = len < VIA_REPLY_MAX ? len : VIA_REPLY_MAX;
    if (want > c->fed) {
        size_t n = http_parser_execute(&c->hp, &http_settings, (const char *)buf + c->fed, want - c->fed);
        if (c->head_done) {
            /* Paused on the head's last byte, which http-parser does not count. */
            size_t head = c->fed + n + 1;
            if (head > want || buf[head - 1] != '\n') return fail(c, SOCKS5_REP_FAIL, -1, "a malformed HTTP answer");
            int status = c->hp.status_code;
            if (status < 200 || status > 299) {
                return fail(c, via_rep_from_http(status), status,
                            status == 407 ? "wants other credentials (407)" : "refused the CONNECT");
            }
            *consumed = head;
            c->step = S_DONE;
            return VIA_DONE;
        }
        if (HTTP_PARSER_ERRNO(&c->hp) != HPE_OK) return fail(c, SOCKS5_REP_FAIL, -1, "not an HTTP answer");
        c->fed = (uint32_t)want;
    }
    if (c->fed >= VIA_REPLY_MAX) return fail(c, SOCKS5_REP_FAIL, -1, "an HTTP answer head over 8 KiB");
    return VIA_NEED_MORE;
}

enum via_status via_client_input(struct via_client *c, const uint8_t *buf, size_t len, size_t *consumed)
{
    switch (c->step) {
    case S5_WAIT_METHOD: return s5_method(c, buf, len, consumed);
    case S5_WAIT_AUTH: return s5_auth(c, buf, len, consumed);
    case S5_WAIT_REPLY: return s5_reply(c, buf, len, consumed);
    case S4_WAIT_REPLY: return s4_reply(c, buf, len, consumed);
    case H_WAIT: return http_reply(c, buf, len, consumed);
    case S_DONE: return VIA_DONE;
    case S_FAIL: return VIA_FAIL;
    default: return fail(c, SOCKS5_REP_FAIL, -1, "an answer before our request");
    }
}

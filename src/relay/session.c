/* session.c - the session state machine: accept -> handshake -> connect ->
 * relay -> close, with one timer per session and deferred free.
 *
 * All socket I/O of a session happens here and in pipe.c; front-ends only
 * see bytes. Connecting (resolution, address list, upstream retries) lives
 * in connect.c.
 */
#include "relay/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crypto/rand_pool.h"
#include "net/sock.h"
#include "obs/log.h"
#include "relay/connect.h"
#include "relay/endpoint.h"
#include "relay/pipe.h"
#include "relay/sess_filters.h"
#include "relay/sess_metrics.h"
#include "relay/sess_proxy.h"
#include "relay/rlistener.h"
#include "relay/sess_toxics.h"
#include "relay/ss_codec.h"
#include "stage/tap.h"

/* Bytes read per direction per wakeup before yielding to other sessions. */
#define PUMP_BUDGET (512u * 1024u)

static const char *const end_names[] = {
    [END_NONE] = "none",
    [END_CLIENT_CLOSED] = "client_closed",
    [END_UPSTREAM_CLOSED] = "upstream_closed",
    [END_CLIENT_RESET] = "client_reset",
    [END_UPSTREAM_RESET] = "upstream_reset",
    [END_CONNECT_REFUSED] = "connect_refused",
    [END_CONNECT_TIMEOUT] = "connect_timeout",
    [END_CONNECT_ERROR] = "connect_error",
    [END_IDLE_TIMEOUT] = "idle_timeout",
    [END_HANDSHAKE_TIMEOUT] = "handshake_timeout",
    [END_HANDSHAKE_ERROR] = "handshake_error",
    [END_UNKNOWN_PROTOCOL] = "unknown_protocol",
    [END_NO_METHOD] = "no_method",
    [END_AUTH_FAILED] = "auth_failed",
    [END_SOCKS4_REFUSED] = "socks4_refused",
    [END_BAD_COMMAND] = "bad_command",
    [END_BAD_ATYP] = "bad_atyp",
    [END_RESOLVE_FAILED] = "resolve_failed",
    [END_RESOLVE_LIMIT] = "resolve_limit",
    [END_DENIED] = "denied",
    [END_DRAIN] = "drain",
    [END_LOCAL_ERROR] = "local_error",
    [END_CRYPTO_ERROR] = "crypto_error",
    [END_PROBE] = "probe",
    [END_LIMIT] = "limit",
    [END_QUEUE_TIMEOUT] = "queue_timeout",
    [END_MAX_SESSION_TIME] = "max_session_time",
    [END_TOXIC] = "toxic",
    [END_API] = "api",
    [END_UPSTREAM_SILENT] = "upstream_closed_silently",
    [END_FILTER] = "filter",
    [END_FILTER_ERROR] = "filter_error",
    [END_MUX_ERROR] = "mux_error",
    [END_MUX_REFUSED] = "mux_refused",
    [END_HTTP_NEXT_REQUEST] = "http_next_request",
};

const char *sess_end_name(enum sess_end e)
{
    return (unsigned)e < sizeof(end_names) / sizeof(end_names[0]) ? end_names[e] : "?";
}

static uint64_t next_session_id = 1;   /* shared by all workers, atomic */

uint64_t sess_new_id(void) { return __atomic_fetch_add(&next_session_id, 1, __ATOMIC_RELAXED); }

static void client_cb(struct loop *l, struct loop_io *io, uint32_t events);
static void timer_cb(struct loop *l, struct loop_timer *t);

/* ---- logging ---- */

/* upstream=: the address connected to (or last tried). Before there is one,
 * an upstream the operator named (relay server, ss-server, --tunnel-to) is
 * logged by name, so a name that does not resolve shows which; a client's
 * destination is left to the front-end's dest= field. */
static const char *upstream_field(const struct session *s, char *out, size_t outlen)
{
    char host[256];
    if (s->upstream.len) return net_addr_format(&s->upstream, out, outlen);
    if (!s->target || s->target->check_policy || !s->target->host[0]) return "-";
    log_sanitize(host, sizeof(host), s->target->host);
    snprintf(out, outlen, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, s->target->port);
    return out;
}

/* " mux=N stream=ID" for an endpoint that is a multiplexed stream. */
static void endpoints_describe(const struct session *s, char *out, size_t outlen)
{
    out[0] = 0;
    if (s->cep.ops->describe) s->cep.ops->describe(&s->cep, out, outlen);
    else if (s->uep.ops->describe) s->uep.ops->describe(&s->uep, out, outlen);
}

/* --log-sessions start: a line when bytes start to flow, so a long tunnel
 * shows before it ends. */
static void sess_log_start(const struct session *s)
{
    char c[NET_ADDR_STRLEN], u[300], extra[1280] = "", mux[96];
    if (!(log_sessions() & LOG_SESS_START) || !log_enabled(LOG_INFO)) return;
    if (s->front && s->front->log_fields) s->front->log_fields(s, extra, sizeof(extra));
    endpoints_describe(s, mux, sizeof(mux));
    log_msg(LOG_INFO, "sess=%llu listener=%s client=%s upstream=%s event=start%s%s%s", (unsigned long long)s->id,
            s->wl->cfg->name, net_addr_format(&s->client, c, sizeof(c)), upstream_field(s, u, sizeof(u)), mux,
            extra[0] ? " " : "", extra);
}

static void sess_log(const struct session *s)
{
    /* A session itself only meets one limit: the full wait queue. */
    const char *limit = s->end == END_LIMIT ? " limit=queue_full" : "";
    char c[NET_ADDR_STRLEN], u[300], extra[1280] = "", mux[96];
    if (!(log_sessions() & LOG_SESS_END) || !log_enabled(LOG_INFO)) return;
    if (s->front && s->front->log_fields) s->front->log_fields(s, extra, sizeof(extra));
    endpoints_describe(s, mux, sizeof(mux));
    uint64_t now = clock_now_ms();
    log_msg(LOG_INFO, "sess=%llu listener=%s client=%s upstream=%s up=%llu down=%llu dur_ms=%llu end=%s%s%s%s%s",
            (unsigned long long)s->id, s->wl->cfg->name, net_addr_format(&s->client, c, sizeof(c)),
            upstream_field(s, u, sizeof(u)),
            (unsigned long long)s->up.bytes, (unsigned long long)s->down.bytes,
            (unsigned long long)(now - s->start_ms), sess_end_name(s->end), limit, mux, extra[0] ? " " : "", extra);
}

/* ---- close ---- */

static void sess_free(void *p)
{
    free(p);
}

static void worker_unlink(struct session *s)
{
    struct worker *w = s->wl->w;
    if (s->prev) s->prev->next = s->next;
    else w->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    w->nsessions--;
}

/* ss-local: an ss-server that cannot authenticate the stream (a wrong
 * password or method on either side) never answers, and closes in its own
 * time. A plain upstream_closed would hide that; logged at 1, 2, 4, 8...
 * such sessions, so the hint is seen without filling the log. */
static enum sess_end upstream_silent(const struct session *s, enum sess_end why)
{
    static unsigned seen;   /* all workers, atomic */
    char host[256];
    if (s->wl->cfg->mode != MODE_SS_LOCAL || s->state != SESS_RELAYING || s->down.bytes != 0) return why;
    if (why != END_UPSTREAM_RESET && !(why == END_UPSTREAM_CLOSED && s->first_eof == 2)) return why;
    unsigned n = __atomic_add_fetch(&seen, 1, __ATOMIC_RELAXED);
    if ((n & (n - 1)) == 0 && log_enabled(LOG_WARN)) {
        log_sanitize(host, sizeof(host), s->wl->cfg->ss_server.host);
        log_warn("listener=%s ss-server %s:%u closed %u session%s without answering: most likely the password or "
                 "method differs from the server's, else it could not reach the destination "
                 "(end=upstream_closed_silently)", s->wl->cfg->name, host,
                 s->wl->cfg->ss_server.port, n, n == 1 ? "" : "s");
    }
    return END_UPSTREAM_SILENT;
}

void sess_close(struct session *s, enum sess_end why)
{
    struct worker *w = s->wl->w;
    if (s->state == SESS_CLOSED) return;
    if (s->end == END_NONE) s->end = (uint8_t)upstream_silent(s, why);
    s->state = SESS_CLOSED;
    sess_log(s);
    sess_metrics_closed(s);
    connect_cleanup(s);
    loop_timer_cancel(w->loop, &s->timer);
    loop_timer_cancel(w->loop, &s->stage_timer);
    if (s->tap) tap_close(s->tap, s->reset_client, s->reset_upstream);
    s->tap = NULL;
    endpoint_close(&s->cep, s->reset_client);
    endpoint_close(&s->uep, s->reset_upstream);
    pipe_release(&s->up, &w->bufs, &w->pipes);
    pipe_release(&s->down, &w->bufs, &w->pipes);
    sess_toxics_free(s);
    if (s->front && s->front->free) s->front->free(s);
    worker_unlink(s);
    loop_defer_free(w->loop, s, sess_free);
    rlistener_session_closed(s->wl, &s->client, s->counted_ip);
}

/* ---- interest and completion ---- */

static int reading_client_allowed(const struct session *s)
{
    switch (s->state) {
    case SESS_HANDSHAKE:
        return 1;
    case SESS_QUEUED:
    case SESS_RESOLVING:
    case SESS_CONNECTING:
    case SESS_RELAYING:
        return half_wants_input(&s->up);
    default:
        return 0;
    }
}

/* Early data (what came with or after the handshake) waits for the
 * upstream: the client is not read until it has been flushed. */
static int early_data_waits(const struct session *s)
{
    return (s->state == SESS_QUEUED || s->state == SESS_RESOLVING || s->state == SESS_CONNECTING) &&
           half_pending(&s->up);
}

static void update_interest(struct session *s)
{
    uint32_t cw = 0, uw = 0;
    if (reading_client_allowed(s)) cw |= LOOP_READ;
    /* Lazily: while early data waits, a read interest still armed from the
     * handshake stays until it fires. Most clients send nothing more before
     * the upstream answers, and dropping the interest only to add it back
     * once connected costs two epoll_ctl per connection (ss-server always
     * has early data). If it does fire, client_cb drops it, and it is not
     * re-armed until reading is allowed, so level-triggered epoll cannot
     * spin. */
    else if (early_data_waits(s)) cw |= endpoint_wanted(&s->cep) & LOOP_READ;
    if (half_pending(&s->down)) cw |= LOOP_WRITE;
    if (s->state == SESS_CONNECTING) {
        uw = s->bind ? LOOP_READ : LOOP_WRITE;    /* BIND: a listening socket */
    } else if (s->state == SESS_VIA) {
        uw = endpoint_wanted(&s->uep);       /* via.c keeps it */
    } else if (s->state == SESS_RELAYING) {
        if (half_wants_input(&s->down)) uw |= LOOP_READ;
        if (half_pending(&s->up)) uw |= LOOP_WRITE;
    }
    if (endpoint_is_open(&s->cep)) endpoint_want(&s->cep, cw);
    if (endpoint_is_open(&s->uep)) endpoint_want(&s->uep, uw);
}

/* Fills the mover's context for one direction. src/dst NULL: not usable
 * now (handshake, connecting, flushing). */
static void pump_ctx_init(struct session *s, struct pump_ctx *c, const struct half *h, struct endpoint *src,
                          struct endpoint *dst, int splice_ok)
{
    struct worker *w = s->wl->w;
    memset(c, 0, sizeof(*c));
    c->bufs = &w->bufs;
    c->pipes = &w->pipes;
    c->src = src;
    c->dst = dst;
    c->allow_splice = splice_ok && s->splice;
    c->budget = PUMP_BUDGET;
    if (h->chain) c->now_us = clock_now_us();
    c->tap = s->tap;
    c->up = h == &s->up;
    c->src_leg = c->up ? TAP_CLIENT : TAP_UPSTREAM;
    c->close_follows = s->state == SESS_RELAYING && (c->up ? s->down.shut : s->up.shut);
}

/* After a failure reply: write it, send FIN, then read and discard what the
 * client still sends until it closes (or the timer fires). Closing with
 * unread input would send RST, and an RST can destroy the reply in the
 * client's receive queue before the client reads it (nginx's lingering close). */
static void linger_client(struct session *s)
{
    struct pump_ctx c;
    uint8_t junk[4096];
    pump_ctx_init(s, &c, &s->down, NULL, &s->cep, 0);
    enum pump_result r = pipe_pump(&s->down, &c);
    if (r != PUMP_OK && r != PUMP_STAGE_CLOSE) {
        sess_close(s, END_NONE);
        return;
    }
    if (half_pending(&s->down)) {
        endpoint_want(&s->cep, LOOP_WRITE);
        return;
    }
    if (!s->down.shut && !s->silent) {
        endpoint_shutdown_write(&s->cep);
        if (s->tap) tap_fin(s->tap, TAP_CLIENT, 0);
        s->down.shut = 1;
    }
    for (int i = 0; i < 16; i++) {
        ssize_t n = endpoint_read(&s->cep, junk, sizeof(junk));
        if (n > 0 && s->tap) tap_bytes(s->tap, TAP_CLIENT, 1, junk, (size_t)n);
        if (n > 0) continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        sess_close(s, END_NONE);
        return;
    }
    endpoint_want(&s->cep, LOOP_READ);
}

/* A random part of the handshake timeout T, uniform in [T/2, T]:
 * unpredictable to a prober. */
static uint64_t random_handshake_wait(const struct session *s)
{
    unsigned hs = s->wl->cfg->handshake_timeout_ms, r = 0;
    (void)rand_pool_bytes(&r, sizeof(r));
    return hs / 2 + r % (hs / 2 + 1);
}

/* Anti-probing (front->hides_endings): the first bytes fix when the
 * session ends unless it authenticates. Timing out and failing then close
 * alike, at that one deadline, so the close tells a prober nothing about
 * how far its bytes got (where the length tag sits, hence the salt size). */
static void draw_handshake_deadline(struct session *s)
{
    if (!s->front->hides_endings || s->deadline_drawn) return;
    s->deadline_drawn = 1;
    loop_timer_arm_in(s->wl->w->loop, &s->timer, random_handshake_wait(s));
}

static void enter_flushing(struct session *s, enum sess_end end)
{
    struct worker *w = s->wl->w;
    s->end = (uint8_t)end;
    s->state = SESS_FLUSHING;
    pipe_release(&s->up, &w->bufs, &w->pipes);   /* early data has nowhere to go */
    /* Silent: hold the connection, reading and discarding, until the drawn
     * deadline (or a random one), then close as a timeout would. */
    if (!(s->silent && s->deadline_drawn))
        loop_timer_arm_in(w->loop, &s->timer, s->silent ? random_handshake_wait(s) : 2000);
    linger_client(s);
}

/* Why a stage ended the session, for the log's end=. */
static enum sess_end stage_end(enum pump_result r, uint8_t role)
{
    /* Only a lua toxic's script fails: the toxic queue never does. */
    if (role == STAGE_TOXICS) return r == PUMP_STAGE_ERROR ? END_FILTER_ERROR : END_TOXIC;
    if (role == STAGE_FILTER) return r == PUMP_STAGE_ERROR ? END_FILTER_ERROR : END_FILTER;
    /* A decoder closes only past a message's end: HTTP's one request per
     * connection, whose origin stayed open (stage/http_one.h). */
    if (role == STAGE_DECODER && r == PUMP_STAGE_CLOSE) return END_HTTP_NEXT_REQUEST;
    return END_CRYPTO_ERROR;        /* a decoder or encoder refused the stream */
}

/* A stage ended the session. A reset resets both sides. A close is not a
 * reset: the client must get every byte let through (limit_data's exact
 * count), so it is FINed and drained rather than close()d over unread
 * bytes, which would send RST. An error forwards nothing more. */
static void end_by_stage(struct session *s, enum pump_result r, uint8_t role)
{
    struct worker *w = s->wl->w;
    if (r == PUMP_STAGE_RESET) {
        s->reset_client = s->reset_upstream = 1;
        sess_close(s, stage_end(r, role));
        return;
    }
    if (r == PUMP_STAGE_ERROR) {
        sess_close(s, stage_end(r, role));
        return;
    }
    sess_toxics_free(s);
    pipe_keep_ready_only(&s->down, &w->bufs, &w->pipes);
    if (s->tap && endpoint_is_open(&s->uep)) tap_fin(s->tap, TAP_UPSTREAM, 0);
    endpoint_close(&s->uep, 0);
    enter_flushing(s, stage_end(r, role));
}

/* Ends the session on what the pump of one direction reported (not OK). */
static void end_by_pump(struct session *s, int up, enum pump_result r, const struct pump_ctx *c)
{
    switch (r) {
    case PUMP_STAGE_ERROR:
    case PUMP_STAGE_CLOSE:
    case PUMP_STAGE_RESET:
        end_by_stage(s, r, c->stage_role);
        return;
    case PUMP_NOMEM:
        sess_close(s, END_LOCAL_ERROR);
        return;
    default:
        break;
    }
    /* A socket failed: the client's if it was up's source or down's sink.
     * A reset is propagated as a reset to the other side (SO_LINGER 0). */
    int client_side = up == (r == PUMP_SRC_ERROR);
    if (c->err == ENOMEM) {
        sess_close(s, END_LOCAL_ERROR);
        return;
    }
    if (c->err == ECONNABORTED) {       /* a stream's shared connection died */
        sess_close(s, END_MUX_ERROR);
        return;
    }
    if (client_side) s->reset_upstream = 1;
    else s->reset_client = 1;
    sess_close(s, client_side ? END_CLIENT_RESET : END_UPSTREAM_RESET);
}

/* Wakes the session when the earliest stage asked to run again. */
static void arm_stage_timer(struct session *s)
{
    uint64_t a = pipe_next_wakeup(&s->up), b = pipe_next_wakeup(&s->down);
    uint64_t due = a < b ? a : b;
    struct loop *l = s->wl->w->loop;
    if (due == UINT64_MAX) {
        if (loop_timer_armed(&s->stage_timer)) loop_timer_cancel(l, &s->stage_timer);
        return;
    }
    /* Microseconds to the loop's milliseconds, rounded up: never early. */
    uint64_t now_us = clock_now_us(), now_ms = loop_update_now(l);
    uint64_t wait_us = due > now_us ? due - now_us : 0;
    loop_timer_arm(l, &s->stage_timer, now_ms + (wait_us + 999) / 1000);
}

/* Which sources sess_pump_ex() may read. A source is read when its socket
 * reported data, or when backpressure had stopped reading it (then data is
 * almost surely waiting); other reads would mostly earn EAGAIN, and
 * level-triggered epoll says when there is more. */
enum { READ_CLIENT = 1, READ_UPSTREAM = 2 };

static int stopped_reading(const struct endpoint *e)
{
    return endpoint_is_open(e) && !(endpoint_wanted(e) & LOOP_READ);
}

static int read_flags(const struct session *s, int client_side, uint32_t events)
{
    int f = 0;
    int hit = events & (EPOLLIN | EPOLLHUP | EPOLLERR);
    if ((client_side && hit) || stopped_reading(&s->cep)) f |= READ_CLIENT;
    if ((!client_side && hit) || stopped_reading(&s->uep)) f |= READ_UPSTREAM;
    return f;
}

/* SESS_HOLDING (FRONT_HOLD, SOCKS5 UDP ASSOCIATE): the connection only
 * says how long the front-end's object lives. Writes the queued reply,
 * reads and discards what the client sends, and ends at its EOF or error. */
static void hold_pump(struct session *s, int may_read)
{
    struct pump_ctx c;
    uint8_t junk[1024];
    pump_ctx_init(s, &c, &s->down, NULL, &s->cep, 0);
    if (pipe_pump(&s->down, &c) != PUMP_OK) {
        sess_close(s, END_CLIENT_RESET);
        return;
    }
    for (int i = 0; (may_read & READ_CLIENT) && i < 16; i++) {
        ssize_t n = endpoint_read(&s->cep, junk, sizeof(junk));
        if (n > 0) continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        sess_close(s, n == 0 ? END_CLIENT_CLOSED : END_CLIENT_RESET);
        return;
    }
    endpoint_want(&s->cep, LOOP_READ | (half_pending(&s->down) ? LOOP_WRITE : 0));
}

/* Moves bytes both ways as far as the sockets allow, then decides interest
 * and whether the session is over. The only place RELAYING data moves.
 * may_read: READ_* bits (0 after a state change: only flush). */
static void sess_pump_ex(struct session *s, int may_read)
{
    if (s->state == SESS_FLUSHING) {
        linger_client(s);
        return;
    }
    if (s->state == SESS_HOLDING) {
        hold_pump(s, may_read);
        return;
    }
    int relaying = s->state == SESS_RELAYING, progressed = 0;
    for (int up = 1; up >= 0; up--) {
        struct half *h = up ? &s->up : &s->down;
        /* The client is read once the handshake is done (early data even
         * while connecting); the upstream only once relaying. */
        struct endpoint *client = s->state == SESS_HANDSHAKE ? NULL : &s->cep;
        struct endpoint *upstream = relaying ? &s->uep : NULL;
        struct pump_ctx c;
        pump_ctx_init(s, &c, h, up ? client : upstream, up ? upstream : &s->cep, relaying);
        c.src_drained = !(may_read & (up ? READ_CLIENT : READ_UPSTREAM));
        enum pump_result r = pipe_pump(h, &c);
        if (r != PUMP_OK) {
            end_by_pump(s, up, r, &c);
            return;
        }
        progressed |= c.progressed;
        if (h->eof && !s->first_eof) s->first_eof = up ? 1 : 2;
    }
    if (s->state == SESS_QUEUED && s->up.eof && s->up.bytes == 0) {
        /* Gave up waiting before saying anything: nothing to forward, and
         * a server slot must not go to a client that has left. (A client
         * that sent its request and then FIN is a half-close: it stays.) */
        sess_close(s, END_CLIENT_CLOSED);
        return;
    }
    if (progressed) s->last_ms = loop_now(s->wl->w->loop);

    if (relaying && s->up.shut && s->down.shut) {
        sess_close(s, s->first_eof == 2 ? END_UPSTREAM_CLOSED : END_CLIENT_CLOSED);
        return;
    }
    arm_stage_timer(s);
    update_interest(s);
}

/* ---- handshake (front-ends) ---- */

int sess_reply(struct session *s, const void *data, size_t len)
{
    if (s->tap) tap_plain(s->tap, 0, data, len);
    return pipe_push_ready(&s->down, &s->wl->w->bufs, data, len);
}

void sess_secret(struct session *s, size_t off, size_t n)
{
    if (s->tap) tap_secret(s->tap, (uint64_t)s->hs_used + off, n);
}

void sess_secret_from(struct session *s, size_t off)
{
    if (s->tap) tap_secret_from(s->tap, (uint64_t)s->hs_used + off);
}

int sess_forward(struct session *s, const void *data, size_t len)
{
    return pipe_head_prepend(&s->up, &s->wl->w->bufs, data, len);
}

void sess_fail_reason(struct session *s, enum sess_end why)
{
    if (s->state == SESS_HANDSHAKE) s->end = (uint8_t)why;
}

int sess_set_target(struct session *s, const char *host, uint16_t port, int check_policy)
{
    char copy[256];         /* host may be the old target's own */
    size_t len = strnlen(host, 255);
    memcpy(copy, host, len);
    struct sess_target *t = realloc(s->target, sizeof(*t) + len + 1);
    if (!t) return -1;
    s->target = t;
    memcpy(t->host, copy, len);
    t->host[len] = 0;
    t->port = port;
    s->target->check_policy = (uint8_t)check_policy;
    return 0;
}

/* Feeds what the client sent so far to the front-end. Handshake bytes
 * accumulate in the up direction's head link; whatever follows the
 * handshake stays there as early data for the upstream. */
static void sess_handshake(struct session *s)
{
    struct half *h = &s->up;
    struct buf_pool *bufs = &s->wl->w->bufs;
    for (;;) {
        size_t used = 0, len;
        const uint8_t *p = pipe_head(h, &len);
        enum front_result r = s->front->on_data(s, p, len, &used);
        pipe_head_consumed(h, bufs, used);
        s->hs_used += (uint32_t)used;
        if (r == FRONT_FAIL || r == FRONT_SILENT_FAIL) {
            s->silent = r == FRONT_SILENT_FAIL;
            enter_flushing(s, s->silent ? END_PROBE : s->end != END_NONE ? s->end : END_HANDSHAKE_ERROR);
            return;
        }
        if (r == FRONT_HOLD) {
            struct worker *w = s->wl->w;
            s->state = SESS_HOLDING;
            pipe_release(&s->up, &w->bufs, &w->pipes);   /* nothing goes upstream */
            loop_timer_cancel(w->loop, &s->timer);       /* the front-end's object keeps time */
            sess_log_start(s);
            return;                                      /* client_cb pumps next */
        }
        if (r == FRONT_CONNECT) {
            if (s->front->attach && s->front->attach(s) < 0) {
                sess_close(s, END_LOCAL_ERROR);
                return;
            }
            pipe_head_is_payload(h);       /* early data */
            connect_start(s);
            return;
        }
        if (used == 0) break;
    }
}

/* Reads what the client sent during the handshake. Returns 1 when the read
 * filled what it asked for (the socket may hold more), else 0. */
static int handshake_read(struct session *s)
{
    struct pump_ctx c;
    pump_ctx_init(s, &c, &s->up, &s->cep, NULL, 0);
    if (s->tap) tap_hold(s->tap);     /* recorded once the front-end has seen them: it marks secrets */
    ssize_t n = pipe_read_head(&s->up, &c);
    if (n > 0) {
        size_t len;
        const uint8_t *p = pipe_head(&s->up, &len);
        if (s->tap) tap_plain(s->tap, 1, p + len - (size_t)n, (size_t)n);
        draw_handshake_deadline(s);
        sess_handshake(s);
        tap_release(s->tap);      /* NULL if the session closed: tap_close released */
        return (size_t)n == c.last_ask;
    }
    tap_release(s->tap);
    if (n == 0) {
        if (s->tap) tap_fin(s->tap, TAP_CLIENT, 1);
        sess_close(s, END_CLIENT_CLOSED);
    } else if (errno == ENOMEM) {
        sess_close(s, END_LOCAL_ERROR);
    } else if (errno == ENOBUFS) {
        /* Front-ends bound their messages far below a buffer: a full buffer
         * means a front-end bug, not a slow client. */
        sess_close(s, END_HANDSHAKE_ERROR);
    } else if (errno != EAGAIN && errno != EINTR) {
        sess_close(s, END_CLIENT_RESET);
    }
    return 0;
}

/* ---- callbacks ---- */

static void client_ready(void *owner, uint32_t events)
{
    struct session *s = owner;
    int client_drained = 0;
    if (s->state == SESS_HANDSHAKE && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        client_drained = !handshake_read(s);
        if (s->state == SESS_CLOSED) return;
    } else if (early_data_waits(s)) {
        endpoint_want(&s->cep, endpoint_wanted(&s->cep) & ~LOOP_READ);   /* the lazily kept interest fired */
    }
    /* A handshake read that came back short emptied the socket: reading
     * again for early data would only earn an EAGAIN. */
    int may_read = read_flags(s, 1, events);
    if (client_drained) may_read &= ~READ_CLIENT;
    sess_pump_ex(s, may_read);
}

static void upstream_ready(void *owner, uint32_t events)
{
    struct session *s = owner;
    if (s->state == SESS_CONNECTING || s->state == SESS_VIA) {
        connect_ready(s, events);
        return;
    }
    sess_pump_ex(s, read_flags(s, 0, events));
}

static void client_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    (void)l;
    client_ready(io->owner, events);
}

static void upstream_cb(struct loop *l, struct loop_io *io, uint32_t events)
{
    (void)l;
    upstream_ready(io->owner, events);
}

/* When a relaying session's timer is due: at its idle deadline, or at its
 * --max-session-time if that comes first. */
static uint64_t relay_deadline(const struct session *s)
{
    uint64_t idle_due = s->last_ms + s->wl->cfg->idle_timeout_ms, max = s->wl->cfg->max_session_ms;
    return max && s->start_ms + max < idle_due ? s->start_ms + max : idle_due;
}

/* Connected: the front-end answers the client, then bytes flow. */
void sess_relay_start(struct session *s, int fd)
{
    struct worker *w = s->wl->w;
    if (s->uio.fd < 0 && loop_io_add(w->loop, &s->uio, fd, 0, upstream_cb, s) < 0) {
        close(fd);
        sess_close(s, END_LOCAL_ERROR);
        return;
    }
    sess_relay_start_endpoint(s);
}

void sess_relay_start_endpoint(struct session *s)
{
    struct worker *w = s->wl->w;
    struct net_addr bound;
    int fd = endpoint_fd(&s->uep);
    s->state = SESS_RELAYING;
    memset(&bound, 0, sizeof(bound));
    int want = s->front && s->front->needs_bound && s->front->needs_bound(s);
    if (fd >= 0 && (want || tap_captures(s->tap))) {
        if (sock_local_addr(fd, &bound) < 0) memset(&bound, 0, sizeof(bound));
        tap_upstream(s->tap, &bound, &s->upstream);
    }
    endpoint_established(&s->cep);     /* a stream the peer opened: accepted now */
    if (s->front && s->front->on_connected) {
        s->front->on_connected(s, &bound);
        if (s->state == SESS_CLOSED) return;
    }
    /* The chains: each stage goes in at its role's place, and what the
     * client already sent (early data) is the input of whatever comes
     * first, so toxics see it as plaintext ahead of ss-local's encoder. */
    int f = sess_filters_attach(s);
    if (f == 0) f = sess_toxics_attach(s);
    if (f == 0 && s->wl->cfg->mode == MODE_SS_LOCAL) f = ss_tunnel_attach(s);
    if (f == 0) f = sess_proxy_attach(s);     /* --send-proxy: ahead of all of it */
    if (f < 0) {
        sess_close(s, f == -2 ? END_FILTER_ERROR : END_LOCAL_ERROR);   /* -2: a script refused it */
        return;
    }
    s->last_ms = loop_now(w->loop);
    loop_timer_arm(w->loop, &s->timer, relay_deadline(s));
    sess_log_start(s);
    sess_pump_ex(s, 0);
}

int sess_upstream_register(struct session *s, int fd)
{
    return loop_io_add(s->wl->w->loop, &s->uio, fd, LOOP_WRITE, upstream_cb, s);
}

/* Connecting failed for good: tell the client in its protocol, then close. */
void sess_connect_failed(struct session *s, enum sess_fail why, enum sess_end end)
{
    if (s->front && s->front->on_failed) s->front->on_failed(s, why);
    if (!half_pending(&s->down)) {
        /* No reply to deliver (relay): close now, RST if input is unread. */
        sess_close(s, end);
        return;
    }
    enter_flushing(s, end);
}

/* Re-evaluates interest after a state change made outside sess_pump_ex(). */
void sess_kick(struct session *s)
{
    sess_pump_ex(s, 0);
}

/* One timer per session; what expiry means depends on the state. The idle
 * deadline is re-armed lazily: activity only updates last_ms. */
static void timer_cb(struct loop *l, struct loop_timer *t)
{
    struct session *s = t->owner;
    switch (s->state) {
    case SESS_HANDSHAKE:
        sess_close(s, END_HANDSHAKE_TIMEOUT);
        break;
    case SESS_QUEUED:
        sess_close(s, END_QUEUE_TIMEOUT);
        break;
    case SESS_RESOLVING:
    case SESS_CONNECTING:
    case SESS_VIA:
        connect_timeout(s);
        break;
    case SESS_RELAYING: {
        uint64_t max = s->wl->cfg->max_session_ms;
        if (max && loop_now(l) >= s->start_ms + max) sess_close(s, END_MAX_SESSION_TIME);
        else if (s->last_ms + s->wl->cfg->idle_timeout_ms > loop_now(l)) loop_timer_arm(l, t, relay_deadline(s));
        else sess_close(s, END_IDLE_TIMEOUT);
        break;
    }
    default:
        sess_close(s, END_NONE);
        break;
    }
}

/* A stage asked to run at this time (a toxic's due piece, ss-local's
 * address header that stops waiting for data). */
static void stage_timer_cb(struct loop *l, struct loop_timer *t)
{
    (void)l;
    sess_kick(t->owner);
}

/* A new session on wl's worker, linked and counted; NULL if out of memory.
 * Both endpoints are sockets until told otherwise. */
static struct session *sess_new(struct relay_listener *wl, const struct net_addr *peer, int counted_ip)
{
    struct worker *w = wl->w;
    struct session *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->counted_ip = (uint8_t)counted_ip;
    s->wl = wl;
    s->id = sess_new_id();
    s->client = *peer;
    s->cio.fd = s->uio.fd = -1;
    s->lb_idx = -1;
    s->start_ms = s->last_ms = loop_now(w->loop);
    sess_metrics_accepted(s);
    s->splice = !wl->cfg->no_splice;
    loop_timer_init(&s->timer, timer_cb, s);
    loop_timer_init(&s->stage_timer, stage_timer_cb, s);
    endpoint_socket(&s->cep, w->loop, &s->cio);
    endpoint_socket(&s->uep, w->loop, &s->uio);
    s->cep.ready = client_ready;
    s->uep.ready = upstream_ready;
    s->cep.owner = s->uep.owner = s;
    s->next = w->sessions;
    if (w->sessions) w->sessions->prev = s;
    w->sessions = s;
    w->nsessions++;
    return s;
}

/* The front-end a listener's clients meet, or NULL (plain relay). */
static const struct front_ops *front_of(const struct listener_cfg *cfg)
{
    if (cfg->mode == MODE_SS_SERVER) return &front_ss_server;
    if (cfg_socks_front(cfg)) return &front_socks;
    if (cfg->mode == MODE_MUX_SERVER && cfg->mux_dynamic) return &front_mux_dynamic;
    return NULL;
}

/* The session's client is ready to be served: its handshake, or straight
 * to connecting. */
static void sess_begin(struct session *s)
{
    struct relay_listener *wl = s->wl;
    const struct listener_cfg *cfg = wl->cfg;
    s->front = front_of(cfg);
    if (s->front) {
        if (s->front->init(s) < 0) {
            sess_close(s, END_LOCAL_ERROR);
            return;
        }
        s->state = SESS_HANDSHAKE;
        loop_timer_arm_in(wl->w->loop, &s->timer, cfg->handshake_timeout_ms);
        update_interest(s);
        return;
    }
    if (cfg->has_tunnel_to && sess_set_target(s, cfg->tunnel_to.host, cfg->tunnel_to.port, 0) < 0) {
        sess_close(s, END_LOCAL_ERROR);
        return;
    }
    connect_start(s);
}

int sess_accept_endpoint(struct relay_listener *wl, const struct net_addr *peer, int counted_ip,
                         sess_bind_client_fn *bind, void *arg)
{
    struct session *s = sess_new(wl, peer, counted_ip);
    if (!s) return -1;
    s->splice = 0;
    if (bind(&s->cep, arg) < 0) {
        sess_close(s, END_LOCAL_ERROR);   /* releases the admission counts */
        return 0;
    }
    if (tap_enabled(wl->cfg)) {
        struct net_addr local;
        memset(&local, 0, sizeof(local));     /* a stream has no local address */
        s->tap = tap_open(wl->cfg, s->id, peer, &local);
    }
    sess_begin(s);
    return 0;
}

int sess_accept(struct relay_listener *wl, int fd, const struct net_addr *peer, int counted_ip)
{
    struct worker *w = wl->w;
    struct session *s = sess_new(wl, peer, counted_ip);
    if (!s) {
        close(fd);
        return -1;
    }

    /* TCP_NODELAY came with the listener (sock_listen). */
    if (tap_enabled(wl->cfg)) {
        struct net_addr local;
        memset(&local, 0, sizeof(local));
        if (tap_wants_addresses(wl->cfg) && sock_local_addr(fd, &local) < 0) memset(&local, 0, sizeof(local));
        s->tap = tap_open(wl->cfg, s->id, peer, &local);
        if (s->tap) s->splice = 0;   /* the tap must see the bytes */
    }
    if (loop_io_add(w->loop, &s->cio, fd, 0, client_cb, s) < 0) {
        close(fd);
        sess_close(s, END_LOCAL_ERROR);   /* releases the admission counts */
        return 0;
    }
    sess_begin(s);
    return 0;
}

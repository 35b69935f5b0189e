/* yamux.c - yamux frame codec and one side's connection state, sans-I/O.
 *
 * Receiving is split in two halves so that every check happens before any
 * event is reported: when a frame's 12th header byte arrives, rx_header()
 * validates the frame against the connection and applies all of its state
 * changes (stream admitted, windows, FIN, RST) at once, and records which
 * events it owes in rx.pending; rx_step() then only reports them, one per
 * yamux_feed() call, handing out payload bytes as they arrive. So a
 * protocol error never surfaces half-way through a frame's events, and the
 * event sequence cannot depend on how the input was split.
 *
 * The stream table is an open addressing hash with linear probing, at most
 * half full, with backward-shift deletion (no tombstones, so lookups stay
 * short however many streams come and go).
 */
#include "proto/yamux.h"

#include <stdlib.h>
#include <string.h>

/* Events a frame owes, in the order they are reported. */
enum {
    RX_OPEN = 0x01, RX_REFUSE = 0x02, RX_ACK = 0x04, RX_BODY = 0x08, RX_FIN = 0x10,
    RX_RST = 0x20, RX_PING = 0x40, RX_GOAWAY = 0x80,
};

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- frame header codec ---------------------------------------------- */

int yamux_parse_header(const uint8_t *buf, size_t len, struct yamux_header *out, size_t *consumed,
                       const char **why)
{
    int session_type;

    /* Rejected as early as the bytes allow, like the SOCKS parsers. */
    if (len >= 1 && buf[0] != YAMUX_VERSION)
        return *why = "unsupported version", YAMUX_PARSE_INVALID;
    if (len >= 2 && buf[1] > YAMUX_GO_AWAY)
        return *why = "unknown frame type", YAMUX_PARSE_INVALID;
    if (len < 8)
        return YAMUX_PARSE_NEED_MORE;
    session_type = buf[1] == YAMUX_PING || buf[1] == YAMUX_GO_AWAY;
    if (session_type && rd32(buf + 4) != 0)
        return *why = "ping or go-away on a stream", YAMUX_PARSE_INVALID;
    if (!session_type && rd32(buf + 4) == 0)
        return *why = "data or window update on stream 0", YAMUX_PARSE_INVALID;
    if (len < YAMUX_HEADER_SIZE)
        return YAMUX_PARSE_NEED_MORE;

    out->version = buf[0];
    out->type = buf[1];
    out->flags = (uint16_t)(buf[2] << 8 | buf[3]);
    out->stream = rd32(buf + 4);
    out->length = rd32(buf + 8);
    *consumed = YAMUX_HEADER_SIZE;
    return YAMUX_PARSE_DONE;
}

void yamux_write_header(uint8_t out[YAMUX_HEADER_SIZE], const struct yamux_header *h)
{
    out[0] = h->version;
    out[1] = h->type;
    out[2] = (uint8_t)(h->flags >> 8);
    out[3] = (uint8_t)h->flags;
    wr32(out + 4, h->stream);
    wr32(out + 8, h->length);
}

static void put(uint8_t out[YAMUX_HEADER_SIZE], uint8_t type, uint16_t flags, uint32_t id, uint32_t length)
{
    struct yamux_header h = { YAMUX_VERSION, type, flags, id, length };

    yamux_write_header(out, &h);
}

void yamux_build_ping(uint8_t out[YAMUX_HEADER_SIZE], uint32_t value, int is_ack)
{
    put(out, YAMUX_PING, is_ack ? YAMUX_ACK : YAMUX_SYN, 0, value);
}

/* ---- stream table ---------------------------------------------------- */

static uint32_t home(const struct yamux_conn *c, uint32_t id)
{
    uint32_t h = id * 2654435761u;  /* Knuth; ids are sequential, so mix */

    return (h ^ h >> 16) & c->mask;
}

static struct yamux_stream *tab_find(const struct yamux_conn *c, uint32_t id)
{
    for (uint32_t i = home(c, id);; i = (i + 1) & c->mask) {
        if (c->tab[i].id == id)
            return &c->tab[i];
        if (c->tab[i].id == 0)
            return NULL;
    }
}

/* Caller checked nstreams < max_streams, so a free slot exists. */
static struct yamux_stream *tab_add(struct yamux_conn *c, uint32_t id, uint8_t st)
{
    uint32_t i = home(c, id);

    while (c->tab[i].id != 0)
        i = (i + 1) & c->mask;
    c->tab[i] = (struct yamux_stream){ id, YAMUX_INITIAL_WINDOW, YAMUX_INITIAL_WINDOW, 0, st, NULL };
    c->nstreams++;
    return &c->tab[i];
}

/* 1 if slot k's entry (home h) may not move back to hole i: h lies
 * cyclically in (i, k]. */
static int stays(uint32_t i, uint32_t k, uint32_t h)
{
    return i <= k ? (i < h && h <= k) : (i < h || h <= k);
}

static void tab_del(struct yamux_conn *c, struct yamux_stream *s)
{
    uint32_t i = (uint32_t)(s - c->tab), k = i;

    c->nstreams--;
    c->tab[i].id = 0;
    for (;;) {
        k = (k + 1) & c->mask;
        if (c->tab[k].id == 0)
            return;
        if (stays(i, k, home(c, c->tab[k].id)))
            continue;
        c->tab[i] = c->tab[k];      /* fill the hole; the hole moves to k */
        c->tab[k].id = 0;
        i = k;
    }
}

int yamux_conn_init(struct yamux_conn *c, enum yamux_role role, uint32_t max_streams)
{
    uint32_t slots = 2;

    if (max_streams == 0)
        max_streams = YAMUX_DEFAULT_MAX_STREAMS;
    if (max_streams > YAMUX_MAX_STREAMS_LIMIT || (role != YAMUX_CLIENT && role != YAMUX_SERVER))
        return -1;
    while (slots < 2 * max_streams)     /* at most half full */
        slots *= 2;
    memset(c, 0, sizeof *c);
    c->tab = calloc(slots, sizeof *c->tab);
    if (!c->tab)
        return -1;
    c->role = role;
    c->max_streams = max_streams;
    c->mask = slots - 1;
    c->next_local = role == YAMUX_CLIENT ? 1 : 2;
    return 0;
}

void yamux_conn_free(struct yamux_conn *c)
{
    free(c->tab);
    c->tab = NULL;
}

/* ---- receiving ------------------------------------------------------- */

static int die(struct yamux_conn *c, const char *why)
{
    c->dead = why;
    return -1;
}

static int local_parity(const struct yamux_conn *c, uint32_t id)
{
    return (id & 1) == (c->role == YAMUX_CLIENT);
}

/* Whether id was ever opened by either side (ids only grow). */
static int ever_opened(const struct yamux_conn *c, uint32_t id)
{
    return local_parity(c, id) ? id < c->next_local : id <= c->last_remote;
}

/* A SYN from the peer. *s is the admitted stream, or NULL when refused
 * (table full, or our go-away sent), which is the peer's bad luck, not a
 * protocol error: it cannot know our limit. */
static int rx_syn(struct yamux_conn *c, uint32_t id, struct yamux_stream **s)
{
    if (local_parity(c, id))
        return die(c, "SYN with our parity");
    if (tab_find(c, id))
        return die(c, "stream id reused while open");
    /* Go's yamux takes ids in order but sends concurrent SYNs in any
     * order, so an id a little below the newest is fine; far below, it can
     * only be a reuse. */
    if (id < c->last_remote && c->last_remote - id > YAMUX_SYN_REORDER)
        return die(c, "stream id reused (far below the newest)");
    if (id > c->last_remote)
        c->last_remote = id;
    *s = NULL;
    if (c->local_goaway || c->nstreams >= c->max_streams)
        return 0;
    *s = tab_add(c, id, YAMUX_ST_OPEN | YAMUX_ST_ACK_OWED);
    return 0;
}

/* Applies a Data or WindowUpdate frame's window and flags to s. */
static int rx_apply(struct yamux_conn *c, struct yamux_stream *s, const struct yamux_header *h)
{
    if ((h->flags & YAMUX_ACK) && (s->st & YAMUX_ST_LOCAL) && !(s->st & YAMUX_ST_ESTAB)) {
        s->st |= YAMUX_ST_ESTAB;
        c->rx.pending |= RX_ACK;
    }
    if (h->type == YAMUX_DATA) {
        if (h->length && (s->st & YAMUX_ST_REMOTE_FIN))
            return die(c, "data after FIN");
        if (h->length > s->recv_window)
            return die(c, "receive window exceeded");
        s->recv_window -= h->length;
    } else {
        if (h->length > UINT32_MAX - s->send_window)
            return die(c, "send window overflow");
        s->send_window += h->length;
        if (h->length)
            c->rx.pending |= RX_BODY;
    }
    if (h->flags & YAMUX_FIN) {
        if (s->st & YAMUX_ST_REMOTE_FIN)
            return die(c, "second FIN");
        s->st |= YAMUX_ST_REMOTE_FIN;
        c->rx.pending |= RX_FIN;
    }
    if (h->flags & YAMUX_RST) {
        /* The reset supersedes the frame's window, FIN and payload. */
        c->rx.pending = (uint8_t)((c->rx.pending & RX_OPEN) | RX_RST);
        c->rx.drop = 1;
        tab_del(c, s);
    } else if ((s->st & YAMUX_ST_LOCAL_FIN) && (s->st & YAMUX_ST_REMOTE_FIN)) {
        tab_del(c, s);
    }
    return 0;
}

static int rx_stream_frame(struct yamux_conn *c)
{
    const struct yamux_header *h = &c->rx.h;
    struct yamux_stream *s;

    if (h->flags & YAMUX_SYN) {
        if (rx_syn(c, h->stream, &s) < 0)
            return -1;
        c->rx.pending = s ? RX_OPEN : RX_REFUSE;
    } else {
        s = tab_find(c, h->stream);
        if (!s && !ever_opened(c, h->stream))
            return die(c, "frame for a stream never opened");
    }
    c->rx.user = s ? s->user : NULL;    /* before rx_apply may forget s */
    if (s && rx_apply(c, s, h) < 0)
        return -1;
    if (!s)
        c->rx.drop = 1;
    if (h->type == YAMUX_DATA) {
        /* A forgotten stream's window is forgotten too; no peer can have
         * been granted more than the initial window at once. */
        if (!s && h->length > YAMUX_INITIAL_WINDOW)
            return die(c, "data beyond any window on a closed stream");
        c->rx.left = h->length;
        if (h->length)
            c->rx.pending |= RX_BODY;
    }
    return 0;
}

/* The 12th header byte arrived: check and apply the whole frame. */
static int rx_header(struct yamux_conn *c)
{
    const char *why = NULL;
    size_t n;

    c->rx.pending = 0;
    c->rx.drop = 0;
    c->rx.left = 0;
    c->rx.user = NULL;
    if (yamux_parse_header(c->rx.hdr, YAMUX_HEADER_SIZE, &c->rx.h, &n, &why) != YAMUX_PARSE_DONE)
        return die(c, why);
    switch (c->rx.h.type) {
    case YAMUX_PING:
        c->rx.pending = RX_PING;
        return 0;
    case YAMUX_GO_AWAY:
        c->remote_goaway = 1;
        c->rx.pending = RX_GOAWAY;
        return 0;
    default:
        return rx_stream_frame(c);
    }
}

/* Payload of the current Data frame: up to avail bytes at p, *n taken. */
static enum yamux_ev_type rx_body(struct yamux_conn *c, const uint8_t *p, size_t avail, struct yamux_event *ev,
                                  size_t *n)
{
    size_t take = avail < c->rx.left ? avail : c->rx.left;

    *n = take;
    c->rx.left -= (uint32_t)take;
    if (c->rx.left == 0)
        c->rx.pending &= (uint8_t)~RX_BODY;
    if (take == 0 || c->rx.drop)
        return YAMUX_EV_NONE;
    ev->data = p;
    ev->len = take;
    return YAMUX_EV_DATA;
}

/* Reports the first event the current frame still owes. NONE means: bytes
 * skipped (*n > 0), or payload bytes needed (*n == 0). */
static enum yamux_ev_type rx_step(struct yamux_conn *c, const uint8_t *p, size_t avail, struct yamux_event *ev,
                                  size_t *n)
{
    const struct yamux_header *h = &c->rx.h;
    uint8_t bit = c->rx.pending & (uint8_t)-c->rx.pending;     /* lowest set */

    *n = 0;
    ev->id = h->stream;
    ev->user = c->rx.user;
    if (bit == RX_BODY && h->type == YAMUX_DATA)
        return rx_body(c, p, avail, ev, n);
    c->rx.pending &= (uint8_t)~bit;
    switch (bit) {
    case RX_OPEN:   return YAMUX_EV_OPENED;
    case RX_REFUSE: return YAMUX_EV_REFUSED;
    case RX_ACK:    return YAMUX_EV_ACKED;
    case RX_BODY:   ev->value = h->length; return YAMUX_EV_WINDOW;
    case RX_FIN:    return YAMUX_EV_FIN;
    case RX_RST:    return YAMUX_EV_RST;
    case RX_PING:
        ev->value = h->length;
        ev->ack = !(h->flags & YAMUX_SYN);      /* as Go's yamux: not a request = an answer */
        return YAMUX_EV_PING;
    default:        /* RX_GOAWAY */
        ev->value = h->length;
        return YAMUX_EV_GOAWAY;
    }
}

static enum yamux_ev_type rx_error(const struct yamux_conn *c, struct yamux_event *ev)
{
    ev->type = YAMUX_EV_ERROR;
    ev->id = 0;
    ev->value = YAMUX_GOAWAY_PROTO;
    ev->reason = c->dead;
    return YAMUX_EV_ERROR;
}

enum yamux_ev_type yamux_feed(struct yamux_conn *c, const uint8_t *buf, size_t len, struct yamux_event *ev,
                              size_t *used)
{
    size_t off = 0, n;
    enum yamux_ev_type t;

    memset(ev, 0, sizeof *ev);
    *used = 0;
    if (c->dead)
        return rx_error(c, ev);
    for (;;) {
        if (c->rx.have < YAMUX_HEADER_SIZE) {
            n = YAMUX_HEADER_SIZE - c->rx.have;
            n = n < len - off ? n : len - off;
            memcpy(c->rx.hdr + c->rx.have, buf + off, n);
            c->rx.have = (uint8_t)(c->rx.have + n);
            *used = off += n;
            if (c->rx.have < YAMUX_HEADER_SIZE)
                return YAMUX_EV_NONE;
            if (rx_header(c) < 0)
                return rx_error(c, ev);
        }
        if (c->rx.pending == 0) {
            c->rx.have = 0;     /* frame done: the next header */
            continue;
        }
        t = rx_step(c, buf + off, len - off, ev, &n);
        *used = off += n;
        if (t != YAMUX_EV_NONE)
            return ev->type = t;
        if (n == 0 && (c->rx.pending & RX_BODY))
            return YAMUX_EV_NONE;   /* payload to come */
    }
}

/* ---- sending --------------------------------------------------------- */

/* The ACK a stream the peer opened is owed rides on our first frame. */
static uint16_t tx_flags(struct yamux_stream *s)
{
    if (!(s->st & YAMUX_ST_ACK_OWED))
        return 0;
    s->st = (uint8_t)((s->st & ~YAMUX_ST_ACK_OWED) | YAMUX_ST_ESTAB);
    return YAMUX_ACK;
}

/* The open stream id, or an error code in *rc. */
static struct yamux_stream *tx_stream(struct yamux_conn *c, uint32_t id, int *rc)
{
    struct yamux_stream *s = NULL;

    if (c->dead)
        *rc = YAMUX_E_DEAD;
    else if (id == 0 || !(s = tab_find(c, id)))
        *rc = YAMUX_E_NOSTREAM;
    else
        *rc = YAMUX_OK;
    return s;
}

int yamux_open_stream(struct yamux_conn *c, uint32_t *id, uint8_t out[YAMUX_HEADER_SIZE])
{
    if (c->dead)
        return YAMUX_E_DEAD;
    if (c->local_goaway || c->remote_goaway)
        return YAMUX_E_GOAWAY;
    if (c->next_local > UINT32_MAX)
        return YAMUX_E_IDS;
    if (c->nstreams >= c->max_streams)
        return YAMUX_E_FULL;
    *id = (uint32_t)c->next_local;
    c->next_local += 2;
    tab_add(c, *id, YAMUX_ST_OPEN | YAMUX_ST_LOCAL);
    put(out, YAMUX_WINDOW_UPDATE, YAMUX_SYN, *id, 0);
    return YAMUX_OK;
}

int yamux_build_data(struct yamux_conn *c, uint32_t id, size_t want, uint8_t out[YAMUX_HEADER_SIZE], uint32_t *n)
{
    int rc;
    struct yamux_stream *s = tx_stream(c, id, &rc);
    uint32_t take;

    *n = 0;
    if (!s)
        return rc;
    if (s->st & YAMUX_ST_LOCAL_FIN)
        return YAMUX_E_STATE;
    take = want < s->send_window ? (uint32_t)want : s->send_window;
    if (take == 0 && !(want == 0 && (s->st & YAMUX_ST_ACK_OWED)))
        return YAMUX_IDLE;
    s->send_window -= take;
    put(out, YAMUX_DATA, tx_flags(s), id, take);
    *n = take;
    return YAMUX_OK;
}

int yamux_build_window_update(struct yamux_conn *c, uint32_t id, uint32_t drained, uint8_t out[YAMUX_HEADER_SIZE])
{
    int rc;
    struct yamux_stream *s = tx_stream(c, id, &rc);
    uint32_t delta;

    if (!s)
        return rc;
    /* recv_window + credit is what the peer was granted and we hold; the
     * caller cannot drain more than that. */
    if ((uint64_t)s->recv_window + s->credit + drained > YAMUX_INITIAL_WINDOW)
        return YAMUX_E_ARG;
    s->credit += drained;
    if (!(s->st & YAMUX_ST_ACK_OWED)
        && (s->credit < YAMUX_INITIAL_WINDOW / 2 || (s->st & YAMUX_ST_REMOTE_FIN)))
        return YAMUX_IDLE;  /* small, or useless after the peer's FIN */
    delta = s->credit;
    s->recv_window += delta;
    s->credit = 0;
    put(out, YAMUX_WINDOW_UPDATE, tx_flags(s), id, delta);
    return YAMUX_OK;
}

int yamux_build_fin(struct yamux_conn *c, uint32_t id, uint8_t out[YAMUX_HEADER_SIZE])
{
    int rc;
    struct yamux_stream *s = tx_stream(c, id, &rc);

    if (!s)
        return rc;
    if (s->st & YAMUX_ST_LOCAL_FIN)
        return YAMUX_E_STATE;
    put(out, YAMUX_WINDOW_UPDATE, (uint16_t)(YAMUX_FIN | tx_flags(s)), id, 0);
    s->st |= YAMUX_ST_LOCAL_FIN;
    if (s->st & YAMUX_ST_REMOTE_FIN)
        tab_del(c, s);
    return YAMUX_OK;
}

int yamux_build_rst(struct yamux_conn *c, uint32_t id, uint8_t out[YAMUX_HEADER_SIZE])
{
    struct yamux_stream *s;

    if (id == 0)
        return YAMUX_E_NOSTREAM;
    if (c->tab && (s = tab_find(c, id)) != NULL)
        tab_del(c, s);
    put(out, YAMUX_WINDOW_UPDATE, YAMUX_RST, id, 0);
    return YAMUX_OK;
}

int yamux_build_goaway(struct yamux_conn *c, uint32_t code, uint8_t out[YAMUX_HEADER_SIZE])
{
    c->local_goaway = 1;
    put(out, YAMUX_GO_AWAY, 0, 0, code);
    return YAMUX_OK;
}

/* ---- queries --------------------------------------------------------- */

int yamux_set_user(struct yamux_conn *c, uint32_t id, void *user)
{
    struct yamux_stream *s = id ? tab_find(c, id) : NULL;

    /* The rest of the frame being fed carries it, even if id was forgotten
     * meanwhile (our RST or FIN): the caller about to free what the old
     * pointer points at clears it with NULL. */
    if (id && c->rx.h.stream == id)
        c->rx.user = user;
    if (!s)
        return YAMUX_E_NOSTREAM;
    s->user = user;
    return YAMUX_OK;
}

unsigned yamux_stream_state(const struct yamux_conn *c, uint32_t id)
{
    const struct yamux_stream *s = id ? tab_find(c, id) : NULL;

    return s ? s->st : 0;
}

uint32_t yamux_send_window(const struct yamux_conn *c, uint32_t id)
{
    const struct yamux_stream *s = id ? tab_find(c, id) : NULL;

    return s ? s->send_window : 0;
}

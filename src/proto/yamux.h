/* yamux.h - yamux stream multiplexing (hashicorp/yamux spec.md), sans-I/O.
 *
 * Two layers:
 *
 *  - the frame header codec: yamux_parse_header() / yamux_write_header(),
 *    pure functions over (buf, len) like the SOCKS parsers;
 *  - struct yamux_conn, the protocol state of ONE side (client or server)
 *    of one multiplexed connection: a bounded stream table, per-stream
 *    state and flow-control windows, ping and go-away.
 *
 * The connection never reads or writes a socket. Bytes that arrived are
 * handed to yamux_feed(), which returns one event at a time; frames to send
 * are built by the yamux_build_* / yamux_open_stream functions into a
 * caller buffer, and the caller writes them (data frames: the 12-byte
 * header is built here, the payload is the caller's own bytes, sent right
 * after it, so nothing is copied).
 *
 * Wire format: a 12-byte header, all fields big endian:
 *   version(1)=0 type(1) flags(2) stream id(4) length(4)
 * Data: length payload bytes follow. WindowUpdate: length is a window
 * delta. Ping: length is an opaque value, stream 0, SYN asks, ACK answers.
 * GoAway: stream 0, length is a YAMUX_GOAWAY_* code. SYN opens a stream,
 * ACK accepts it, FIN half-closes, RST resets. Client stream ids are odd,
 * server ids even; every stream starts with a 256 KiB window each way.
 */
#ifndef FERRY_PROTO_YAMUX_H
#define FERRY_PROTO_YAMUX_H

#include <stddef.h>
#include <stdint.h>

#define YAMUX_VERSION        0
#define YAMUX_HEADER_SIZE    12
/* The spec's initial per-stream window, the same for both directions. */
#define YAMUX_INITIAL_WINDOW (256u * 1024u)
#define YAMUX_DEFAULT_MAX_STREAMS 1024u
/* Upper bound for max_streams: keeps the one allocation of the stream
 * table (see yamux_conn_init) below a few tens of MiB. */
#define YAMUX_MAX_STREAMS_LIMIT (1u << 20)
/* How far below the newest id the peer opened a new SYN may be: peers open
 * streams from several threads, and their SYNs overtake each other. */
#define YAMUX_SYN_REORDER    65536u

enum yamux_type { YAMUX_DATA = 0, YAMUX_WINDOW_UPDATE = 1, YAMUX_PING = 2, YAMUX_GO_AWAY = 3 };
enum { YAMUX_SYN = 1, YAMUX_ACK = 2, YAMUX_FIN = 4, YAMUX_RST = 8 };
enum { YAMUX_GOAWAY_NORMAL = 0, YAMUX_GOAWAY_PROTO = 1, YAMUX_GOAWAY_INTERNAL = 2 };

/* ---- frame header codec ---------------------------------------------- */

enum yamux_parse { YAMUX_PARSE_INVALID = -1, YAMUX_PARSE_NEED_MORE = 0, YAMUX_PARSE_DONE = 1 };

struct yamux_header {
    uint8_t  version;
    uint8_t  type;      /* enum yamux_type */
    uint16_t flags;     /* YAMUX_SYN | ...; unknown bits are kept, not refused */
    uint32_t stream;
    uint32_t length;
};

/* Parses one header at buf. DONE: *out filled, *consumed = 12. NEED_MORE
 * while len < 12 (nothing written). INVALID, with *why set to a static
 * string, for what no state can make valid: version != 0, type > 3, Ping or
 * GoAway on a stream other than 0, Data or WindowUpdate on stream 0.
 * The Data length is not bounded here: only the connection knows the
 * window it advertised. *out and *consumed are written only on DONE. */
int yamux_parse_header(const uint8_t *buf, size_t len, struct yamux_header *out, size_t *consumed,
                       const char **why);

/* Writes h as 12 bytes at out (h->version included, as given). */
void yamux_write_header(uint8_t out[YAMUX_HEADER_SIZE], const struct yamux_header *h);

/* Ping frame: SYN for a request, ACK for the answer (which echoes the
 * request's value). Needs no connection state. */
void yamux_build_ping(uint8_t out[YAMUX_HEADER_SIZE], uint32_t value, int is_ack);

/* ---- connection state --------------------------------------------------- */

enum yamux_role { YAMUX_CLIENT = 1, YAMUX_SERVER = 2 };

/* One stream's entry. Internal to yamux.c; here only for sizeof. */
struct yamux_stream {
    uint32_t id;            /* 0: free slot */
    uint32_t send_window;   /* payload bytes we may still send */
    uint32_t recv_window;   /* payload bytes the peer may still send */
    uint32_t credit;        /* drained by the caller, not yet advertised */
    uint8_t  st;            /* YAMUX_ST_* bits */
    void    *user;          /* the caller's, see yamux_set_user() */
};

/* Stream state bits, as yamux_stream_state() reports them. A stream that
 * was reset, or closed in both directions, is forgotten at once: its id
 * then reports 0 (unknown). */
enum {
    YAMUX_ST_OPEN       = 0x01, /* in the table */
    YAMUX_ST_LOCAL      = 0x02, /* we opened it (SYN sent) */
    YAMUX_ST_ACK_OWED   = 0x04, /* the peer opened it; our next frame carries ACK */
    YAMUX_ST_ESTAB      = 0x08, /* ACK sent or received */
    YAMUX_ST_LOCAL_FIN  = 0x10, /* we sent FIN: no more data from us */
    YAMUX_ST_REMOTE_FIN = 0x20, /* peer sent FIN: no more data from it */
};

struct yamux_conn {
    enum yamux_role role;
    uint32_t max_streams;   /* streams in the table at once */
    uint32_t nstreams;
    uint32_t mask;          /* table slots - 1 (a power of two) */
    struct yamux_stream *tab;
    uint64_t next_local;    /* id our next yamux_open_stream() takes (64 bits: may pass 2^32 - 1) */
    uint32_t last_remote;   /* highest id the peer has opened; new ones must be above */
    uint8_t  local_goaway, remote_goaway;
    const char *dead;       /* set on the first protocol error: the reason */
    /* Receive side: the frame being parsed, so feeding may split anywhere. */
    struct {
        uint8_t  hdr[YAMUX_HEADER_SIZE];
        uint8_t  have;      /* header bytes gathered */
        uint8_t  pending;   /* events the frame still has to report (RX_* bits) */
        uint8_t  drop;      /* frame for a forgotten stream: skip it */
        struct yamux_header h;
        uint32_t left;      /* Data payload bytes not yet delivered */
        void    *user;      /* the frame's stream's user pointer */
    } rx;
};

/* Sets up c for one side. max_streams 0 means YAMUX_DEFAULT_MAX_STREAMS.
 * The stream table is the one allocation of the connection (an open
 * addressing hash sized for max_streams, never resized); frames allocate
 * nothing. Returns 0, or -1 if max_streams > YAMUX_MAX_STREAMS_LIMIT or
 * the allocation fails. Free with yamux_conn_free(). */
int yamux_conn_init(struct yamux_conn *c, enum yamux_role role, uint32_t max_streams);
void yamux_conn_free(struct yamux_conn *c);

/* ---- receiving ------------------------------------------------------------ */

enum yamux_ev_type {
    YAMUX_EV_NONE = 0,  /* all of buf used, nothing to report: feed more */
    YAMUX_EV_OPENED,    /* the peer opened stream id: answer with an ACK soon
                         * (yamux_build_window_update(c, id, 0, ...) sends it;
                         * Go's yamux aborts a session whose SYN goes unacked).
                         * If the same frame carried RST, the RST event follows
                         * and id is already forgotten (builders: E_NOSTREAM). */
    YAMUX_EV_REFUSED,   /* the peer tried to open id while the table was full or
                         * after our go-away: not admitted; send yamux_build_rst(id).
                         * Its later frames are skipped. */
    YAMUX_EV_ACKED,     /* the peer accepted stream id, which we opened */
    YAMUX_EV_DATA,      /* data, len bytes at data (a pointer into the fed buffer).
                         * One frame may come as several DATA events, as its
                         * bytes arrive: no frame is ever buffered here. */
    YAMUX_EV_WINDOW,    /* the peer granted value more bytes of send window */
    YAMUX_EV_FIN,       /* the peer half-closed id: no more data will come */
    YAMUX_EV_RST,       /* the peer reset id; it is forgotten */
    YAMUX_EV_PING,      /* value, ack: a request (ack 0) must be answered with
                         * yamux_build_ping(out, value, 1) */
    YAMUX_EV_GOAWAY,    /* the peer opens no more streams; value is its code.
                         * Open streams go on. */
    YAMUX_EV_ERROR,     /* protocol error (value YAMUX_GOAWAY_PROTO, reason).
                         * Sticky: the connection is dead. Send
                         * yamux_build_goaway(PROTO) and close. */
};

struct yamux_event {
    enum yamux_ev_type type;
    uint32_t id;            /* stream id; 0 for PING, GOAWAY, ERROR */
    const uint8_t *data;    /* DATA */
    size_t   len;           /* DATA */
    uint32_t value;         /* WINDOW delta, PING value, GOAWAY / ERROR code */
    int      ack;           /* PING: 1 answer, 0 request */
    const char *reason;     /* ERROR: static text */
    void    *user;          /* the stream's user pointer (yamux_set_user), even
                             * when this event made the stream forgotten (RST,
                             * FIN after ours); NULL for OPENED */
};

/* Consumes a prefix of buf[0..len) and reports at most one event.
 * *used is how many bytes were consumed (always set); call again with
 * buf + *used until NONE. Bytes of a partial header are kept inside c, so
 * the caller never re-feeds anything and may split the input anywhere: the
 * sequence of events (DATA pieces aside) does not depend on the split.
 * The return value is ev->type. A frame's events come in this order:
 * OPENED or REFUSED, then ACKED, then DATA or WINDOW, then FIN, then RST.
 * Errors found (each sticky): a header that yamux_parse_header refuses;
 * SYN with the wrong parity, for an id open now, or for one more than
 * YAMUX_SYN_REORDER below the newest the peer opened (a reuse; a closed id
 * within that distance is taken as new, as Go's yamux does); a frame for an id never opened; Data beyond the receive
 * window; Data or FIN after the peer's FIN; a window growing past
 * 2^32 - 1; a Data length above the initial window on a forgotten stream.
 * Frames for forgotten streams (reset, or closed both ways) are skipped
 * silently, because the peer may have sent them before it saw our RST. */
enum yamux_ev_type yamux_feed(struct yamux_conn *c, const uint8_t *buf, size_t len, struct yamux_event *ev,
                              size_t *used);

/* ---- sending ---------------------------------------------------------------
 * Every builder writes one 12-byte header at out, and returns: */
enum yamux_rc {
    YAMUX_OK = 0,           /* a frame is at out: send it */
    YAMUX_IDLE = 1,         /* nothing to send now (out untouched) */
    YAMUX_E_NOSTREAM = -1,  /* id is not open (never, or forgotten) */
    YAMUX_E_STATE = -2,     /* not allowed after our FIN */
    YAMUX_E_FULL = -3,      /* max_streams streams are open */
    YAMUX_E_GOAWAY = -4,    /* a go-away was sent or received: no new streams */
    YAMUX_E_IDS = -5,       /* stream ids exhausted */
    YAMUX_E_ARG = -6,       /* more drained than was ever received */
    YAMUX_E_DEAD = -7,      /* the connection had a protocol error */
};

/* Opens a stream: takes the next id of our parity (*id) and writes its
 * WindowUpdate+SYN frame. Data may follow at once, without waiting for the
 * ACK (the spec allows it). */
int yamux_open_stream(struct yamux_conn *c, uint32_t *id, uint8_t out[YAMUX_HEADER_SIZE]);

/* Header of a Data frame for up to want payload bytes: *n (<= want) is how
 * many the send window allows now; send those bytes right after the header.
 * IDLE when the window is closed (wait for a WINDOW event), or when
 * want == 0 and no ACK is owed. want == 0 with an ACK owed writes an empty
 * frame carrying it. E_STATE after our FIN. */
int yamux_build_data(struct yamux_conn *c, uint32_t id, size_t want, uint8_t out[YAMUX_HEADER_SIZE], uint32_t *n);

/* The caller's sink drained `drained` more bytes of id's data: they count
 * as credit, advertised in a WindowUpdate once it reaches half the initial
 * window (fewer, larger updates; the peer still has the other half to send
 * meanwhile, so nothing stalls) or when an ACK is owed. IDLE otherwise.
 * E_ARG if the credit would exceed what the peer was ever allowed to send.
 * E_NOSTREAM for a forgotten stream: nothing to advertise any more. */
int yamux_build_window_update(struct yamux_conn *c, uint32_t id, uint32_t drained, uint8_t out[YAMUX_HEADER_SIZE]);

/* Half-close: WindowUpdate+FIN (with ACK if owed). The stream is forgotten
 * if the peer had closed too. E_STATE if we already sent FIN. */
int yamux_build_fin(struct yamux_conn *c, uint32_t id, uint8_t out[YAMUX_HEADER_SIZE]);

/* Reset: WindowUpdate+RST. Forgets id if open; also answers a REFUSED id,
 * which was never admitted. E_NOSTREAM only for id 0. */
int yamux_build_rst(struct yamux_conn *c, uint32_t id, uint8_t out[YAMUX_HEADER_SIZE]);

/* Go-away with code (YAMUX_GOAWAY_*): from now on the peer's new streams
 * are REFUSED and yamux_open_stream fails. Allowed on a dead connection
 * (that is what a protocol error is answered with). */
int yamux_build_goaway(struct yamux_conn *c, uint32_t code, uint8_t out[YAMUX_HEADER_SIZE]);

/* ---- queries ---------------------------------------------------------------- */

/* Ties a pointer of the caller's to open stream id; events of id carry it
 * (ev->user). 0, or YAMUX_E_NOSTREAM. The rest of a frame of id being fed
 * takes it even when id is no longer open: before freeing what a stream's
 * pointer points at, set it to NULL, or a frame still arriving reports the
 * old one. */
int yamux_set_user(struct yamux_conn *c, uint32_t id, void *user);

/* YAMUX_ST_* bits of id, 0 if unknown. */
unsigned yamux_stream_state(const struct yamux_conn *c, uint32_t id);
/* Payload bytes id may send now; 0 if unknown. */
uint32_t yamux_send_window(const struct yamux_conn *c, uint32_t id);

#endif /* FERRY_PROTO_YAMUX_H */

/* session-t.h - the session: one client, at most one upstream, two directions.
 *
 * State machine: HANDSHAKE (front-ends such as SOCKS) -> RESOLVING ->
 * CONNECTING -> [VIA: parent proxies' handshakes] -> RELAYING; any state
 * may end in close. A session that has queued a failure reply sits in
 * FLUSHING until the reply is written.
 */
#ifndef FERRY_SESSION_T_H
#define FERRY_SESSION_T_H

#include <stdint.h>

#include "core/loop.h"
#include "net/addr.h"
#include "relay/endpoint.h"
#include "relay/pipe-t.h"

struct relay_listener;
struct front_ops;
struct resolver_query;
struct resolved;
struct tap;
struct sess_toxics;
struct via_state;

enum sess_state {
    SESS_HANDSHAKE,
    SESS_QUEUED,       /* every server full: waiting for a slot */
    SESS_RESOLVING,
    SESS_CONNECTING,
    SESS_RELAYING,
    SESS_FLUSHING,     /* failure reply queued; close once it is written */
    SESS_HOLDING,      /* control channel of a front-end's object (FRONT_HOLD) */
    SESS_VIA,          /* connected to a parent proxy (--via): its handshake (via.c) */
    SESS_CLOSED,
};

/* How a session ended: the log's end= field. Keep sess_end_names in sync. */
enum sess_end {
    END_NONE,
    END_CLIENT_CLOSED,
    END_UPSTREAM_CLOSED,
    END_CLIENT_RESET,
    END_UPSTREAM_RESET,
    END_CONNECT_REFUSED,
    END_CONNECT_TIMEOUT,
    END_CONNECT_ERROR,
    END_IDLE_TIMEOUT,
    END_HANDSHAKE_TIMEOUT,
    END_HANDSHAKE_ERROR,   /* malformed handshake */
    END_UNKNOWN_PROTOCOL,  /* the first bytes are not the listener's protocol */
    END_NO_METHOD,         /* SOCKS5: no authentication method we accept offered */
    END_AUTH_FAILED,       /* wrong user name or password */
    END_SOCKS4_REFUSED,    /* SOCKS4/4a with users configured (no --allow-socks4) */
    END_BAD_COMMAND,       /* a SOCKS command other than CONNECT */
    END_BAD_ATYP,          /* a SOCKS5 address type we do not know */
    END_RESOLVE_FAILED,
    END_RESOLVE_LIMIT, /* the resolver refused: too many lookups in flight */
    END_DENIED,
    END_DRAIN,
    END_LOCAL_ERROR,
    END_CRYPTO_ERROR,
    END_PROBE,
    END_LIMIT,
    END_QUEUE_TIMEOUT,
    END_MAX_SESSION_TIME,
    END_TOXIC,
    END_API,           /* its listener was disabled or removed through the API */
    END_UPSTREAM_SILENT, /* ss-local: the ss-server closed without a byte of answer */
    END_FILTER,        /* a filter closed or reset the session (Lua s:close(), s:reset()) */
    END_FILTER_ERROR,  /* a filter failed: a script error, or over its budget */
    END_MUX_ERROR,     /* the multiplexed connection under a stream failed or was lost */
    END_MUX_REFUSED,   /* the mux peer refused or reset the stream before it opened */
    END_HTTP_NEXT_REQUEST, /* an absolute-form HTTP client sent a next request: not forwarded */
};

/* Why connecting failed, for the front-end's reply (SOCKS maps these). */
enum sess_fail {
    FAIL_GENERAL,
    FAIL_NOT_ALLOWED,
    FAIL_NET_UNREACH,
    FAIL_HOST_UNREACH,
    FAIL_REFUSED,
    FAIL_TIMEOUT,
};

/* Where to connect: a literal address, or a name to resolve, and whether the
 * destination policy applies (client-chosen destinations do, relay upstreams
 * chosen by the operator do not). */
struct sess_target {
    uint16_t port;
    uint8_t check_policy;
    char host[];        /* NUL-terminated, at most 255 bytes; sized to fit (an
                           idle session keeps its target: 24 bytes, not 264) */
};

struct session {
    struct session *prev, *next;
    struct session *qprev, *qnext;    /* listener's wait queue */
    struct relay_listener *wl;
    uint64_t id;

    struct loop_io cio, uio;          /* client, upstream */
    struct endpoint cep, uep;         /* the mover's view of them */
    struct half up, down;             /* up: client -> upstream */
    struct loop_timer timer;          /* one deadline, meaning depends on state */
    struct loop_timer stage_timer;    /* the earliest time a stage asked for */
    uint64_t start_ms, last_ms;

    struct net_addr client, upstream;

    uint8_t state;
    uint8_t end;
    uint8_t first_eof;                /* 1 client, 2 upstream */
    uint8_t splice;                   /* zero-copy allowed for this session */
    uint8_t reset_client, reset_upstream;  /* close that side with RST */
    uint8_t silent;                   /* FLUSHING without FIN (anti-probing) */
    uint8_t deadline_drawn;           /* front->hides_endings: the handshake
                                         deadline is the random one */
    uint8_t counted_ip;               /* holds a per-IP connection count */
    uint8_t bind;                     /* SOCKS BIND: the upstream is accepted, not connected (bind.c) */
    uint8_t target_idx;               /* next address in targets to try */
    int8_t lb_idx;                    /* relay: server in use, -1 none */
    uint64_t lb_tried;                /* relay: servers already tried */
    unsigned lb_attempts;
    uint64_t lb_start_us;             /* relay: when trying lb_idx began (metrics) */
    uint8_t lb_connected;             /* relay: connected to lb_idx */
    int last_errno;                   /* last connect error */
    uint32_t hs_used;                 /* handshake bytes the front-end consumed:
                                         where up.buf starts in the client's stream */
    uint8_t unresolved;               /* relay: the current server's name did not resolve */

    const struct front_ops *front;
    void *front_state;
    struct sess_target *target;       /* while resolving/connecting */
    struct sess_target *dest;         /* ss-local: what the client asked for */
    struct resolver_query *rq;
    struct resolved *targets;         /* resolved addresses to try, in order */
    struct tap *tap;                  /* capture / hexdump, NULL when off */
    struct sess_toxics *tox;          /* toxics in effect, NULL when none */
    struct via_state *via;            /* --via: the parents' handshakes, NULL otherwise */
};

#endif

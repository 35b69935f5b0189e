/* config.h - what ferry was asked to do: global settings and listeners.
 *
 * Filled from the command line now (and from YAML with the config-file
 * issue) through one option table, options.c, so every flag has a single
 * definition: name, type, bounds, default, help.
 */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "net/addr.h"
#include "policy/acl.h"
#include "policy/limits.h"
#include "proto/via_url.h"
#include "stage/capfilter.h"
#include "stage/rewrite.h"

enum ferry_mode {
    MODE_SOCKS = 1, MODE_RELAY = 2, MODE_SS_SERVER = 4, MODE_SS_LOCAL = 8, MODE_MUX_SERVER = 16, MODE_MUX_LOCAL = 32
};
#define MODE_ALL (MODE_SOCKS | MODE_RELAY | MODE_SS_SERVER | MODE_SS_LOCAL | MODE_MUX_SERVER | MODE_MUX_LOCAL)
#define MODE_MUX (MODE_MUX_SERVER | MODE_MUX_LOCAL)
#define MODE_SS (MODE_SS_SERVER | MODE_SS_LOCAL)

struct replay;
struct capture;
struct hexlog;
struct toxic_spec;

#define CFG_MAX_LISTEN 16
#define CFG_MAX_UPSTREAMS 64

struct upstream_cfg {
    struct host_port hp;
    int weight;
    unsigned backup;         /* config file only: used when no primary is */
    unsigned maxconn;        /* config file only: 0 = no limit */
    /* DNS discovery (upstream/disc.h, docs/CONFIG.md): srv: hp.host names
     * an SRV record (port 0: the records give it); resolve_all: every
     * address of hp.host is a server. */
    unsigned srv, resolve_all;
};

/* Active health checks of an upstream group (config file `health-check:`).
 * interval_ms 0 = none; timeout_ms 0 = min(interval, 2s). See
 * docs/CONFIG.md for what is enforced. */
struct health_cfg {
    unsigned interval_ms, timeout_ms, rise, fall;
    char send[1025], expect[1025];   /* "" = none */
};

/* A named upstream group (config file `upstreams:`), shared by the relay
 * listeners that name it. Listeners also get a copy of its servers in
 * their upstreams[] (what the balancer reads). */
struct upstream_group_cfg {
    char name[32];
    struct upstream_cfg servers[CFG_MAX_UPSTREAMS];
    size_t nservers;
    unsigned balance;        /* index in roundrobin, leastconn, source, random2 */
    unsigned retries, retries_set;
    struct health_cfg health;
    unsigned resolve;        /* `resolve: all` (1) for every server of the group */
};

struct user_cfg {
    char *name;
    char *pass;              /* never logged */
    uint8_t name_len, pass_len;
};

struct listener_cfg {
    char name[32];
    int mode;
    struct net_addr listen[CFG_MAX_LISTEN];
    size_t nlisten;

    struct upstream_cfg upstreams[CFG_MAX_UPSTREAMS];
    size_t nupstreams;
    unsigned retries;
    const struct upstream_group_cfg *group;   /* config file `upstream: NAME`, else NULL */

    struct user_cfg *users;
    size_t nusers;
    int allow_anonymous, allow_socks4, prefer_ipv6;
    int no_http;                      /* SOCKS front: refuse HTTP proxy requests */

    struct acl client_acl;
    struct acl dest_acl;
    char dns_servers[256];

    unsigned connect_timeout_ms, idle_timeout_ms, handshake_timeout_ms, resolve_timeout_ms;
    unsigned resolve_max_inflight;    /* DNS queries in flight, per worker thread */
    unsigned maxconn;                 /* sessions of this listener, all threads */
    unsigned maxconn_per_ip;
    unsigned rate_per_ip, rate_burst; /* new connections per second per IP */
    unsigned max_session_ms;          /* 0 = no limit */
    unsigned udp_timeout_ms;          /* SOCKS5 UDP ASSOCIATE: idle association ends */
    struct timewin hours;             /* n == 0: any time */

    /* Relay balancing (a named group's settings win: see cfg_effective_*). */
    unsigned balance;                 /* index in cfg_balance_names */
    struct health_cfg health;         /* interval_ms 0 = no active checks */
    unsigned queue_timeout_ms, queue_size;
    /* DNS discovery: --resolve all, and how often discovered sets are
     * looked up again (the TTL clamped to [min, max]). */
    unsigned resolve_all;
    unsigned dns_refresh_min_ms, dns_refresh_max_ms;

    unsigned backlog;
    int no_splice;
    /* PROXY protocol (proto/proxy_proto.h, server/proxyin.c). */
    int accept_proxy;                 /* clients start with a PROXY header */
    struct acl proxy_from;            /* ... and only these may connect (n == 0: any) */
    unsigned accept_proxy_timeout_ms; /* ... which must have come by then */
    unsigned send_proxy;              /* 0 off, 1 or 2: header version sent to upstreams */
    int open;                /* allow an unauthenticated public SOCKS listener */
    int bind_strict;         /* SOCKS BIND: only the peer the request named may connect */
    int dest_denies_added;   /* default denies cfg_listener_exposure() appended, the last
                                rules of dest_acl (0: none) */

    /* Shadowsocks (ss-server, ss-local). The password is turned into the
     * master key by cfg_listener_finish() and wiped. */
    char ss_method[32];
    char *ss_password;
    char *ss_key_b64;
    uint8_t ss_key[32];
    struct host_port ss_server;      /* ss-local: where the ss-server is */
    struct host_port tunnel_to;      /* ss-local: fixed target, no SOCKS */
    int has_ss_server, has_tunnel_to;
    unsigned pool, pool_max_age_ms;  /* ss-local: connections opened ahead, per worker */
    int udp;                         /* -u: Shadowsocks UDP (ss-local: UDP ASSOCIATE over it) */

    /* Multiplexing (yamux): mux-server, mux-local. mux-local's server is
     * ss_server (-s), its SOCKS front --socks. */
    int mux_dynamic;                 /* mux-server: streams start with a SOCKS5 address */
    int mux_socks;                   /* mux-local: SOCKS front, target at the stream's start */
    unsigned mux_conns;              /* mux-local: connections per worker */
    unsigned mux_max_streams;        /* streams open at once per connection */
    unsigned mux_keepalive_ms;       /* ping interval (0 = none) */

    /* Parent proxies (--via, relay/via.c): the chain, first parent first;
     * only the last may be ss://. Passwords are secrets (wiped by
     * cfg_free); an ss:// parent's key is made when it is parsed. */
    struct via_hop via[VIA_MAX_HOPS];
    size_t nvia;

    struct replay *replay;   /* runtime (ss-server): salts seen, all workers */

    /* Capture and hexdump (src/stage/, docs/CAPTURE.md). */
    char capture_path[256];          /* --capture FILE; "" = none */
    uint64_t capture_rotate;         /* bytes; 0 = one file */
    struct capfilter capture_filter; /* no terms: every session */
    int capture_secrets;             /* SOCKS5 passwords in clear in capture and hexdump */
    int hexdump;
    char hexdump_file[256];          /* "" = stderr */
    struct capture *capture;         /* runtime: tap_global_start(), shared by path */
    struct hexlog *hexlog;           /* runtime: likewise */
    struct toxic_spec *toxics;       /* --toxic: the listener's initial toxics */
    size_t ntoxics;
    struct rewrite_set rewrite;      /* --rewrite: search and replace rules, in order */
    char filter_path[256];           /* --filter FILE.lua (stage/lua_filter.h); "" = none */
    /* The filter file's content when the config was loaded (cfg_content_sum,
     * set by the reload code; 0 = not read): a reload that finds the same
     * path with other content changes the listener (config/cfgdiff.h). */
    uint64_t filter_sum;
};

struct opt_def;

struct ferry_cfg {
    unsigned threads;        /* 0 = number of CPUs */
    unsigned global_maxconn; /* sessions of all listeners; 0 = no limit */
    int log_level;
    int log_format;                  /* LOG_TEXT or LOG_JSON (obs/log.h) */
    int log_sessions;                /* LOG_SESS_* bits */
    char log_file[256];      /* --log-file; "" = stderr (obs/log.h) */
    char syslog_target[256];         /* --syslog; "" = none (obs/syslog.h) */
    int syslog_facility;             /* --syslog-facility: 0..23 */
    char syslog_tag[32];             /* --syslog-tag: a name (cfg_name_ok) */
    unsigned drain_timeout_ms;
    char run_as[64], run_as_group[64];        /* privilege drop (core/privdrop.h); "" = none */
    char chroot_dir[256];
    struct net_addr api_addr;                 /* --api: toxiproxy-compatible HTTP API */
    int has_api, api_open;
    struct net_addr metrics_addr;             /* --metrics: Prometheus text at /metrics */
    int has_metrics, metrics_open, metrics_users;
    struct listener_cfg *listeners;
    size_t nlisteners;
    const char *config_path;                  /* ferry run/check -c FILE (argv, not owned) */
    /* ferry run/check: global options given on the command line (argv, not
     * owned), applied after the file's: the command line wins. */
    const struct opt_def *cli_over[16];
    const char *cli_over_val[16];
    size_t ncli_over;
    struct upstream_group_cfg *groups;        /* config file `upstreams:` */
    size_t ngroups;
};

/* Where `ferry socks` listens without -l. */
#define CFG_SOCKS_LISTEN "127.0.0.1:1080"

extern const char *const cfg_balance_names[];   /* roundrobin, leastconn, source, random2 */

/* What the engine uses for a relay listener: its group's settings when it
 * names one (config file), else its own (command line). */
const struct health_cfg *cfg_effective_health(const struct listener_cfg *l);
/* The listener answers SOCKS (socks, and ss-local without --tunnel-to). */
int cfg_socks_front(const struct listener_cfg *l);
/* 1 if the listener balances over upstream servers (-u): relay, and a
 * mux-server that is not --dynamic. */
int cfg_balanced(const struct listener_cfg *l);
unsigned cfg_effective_balance(const struct listener_cfg *l);
/* The relay listener has a server found through DNS at run time (an SRV
 * record or `resolve all`): its set changes (upstream/disc.h). */
int cfg_discovered(const struct listener_cfg *l);

/* The first of l's listen addresses [0, n) that clashes with a
 * (net_addr_overlap), or NULL. */
const struct net_addr *cfg_listen_clash(const struct listener_cfg *l, size_t n, const struct net_addr *a);
/* The one wording for a clash, wherever it is found (-l, the config file,
 * --api, the HTTP API): "A is listed twice", "A overlaps B, listed before"
 * (owner NULL: the same listener), "A is also used by OWNER", "A overlaps B
 * of OWNER" (OWNER e.g. "listener 'web'"). */
void cfg_clash_text(const struct net_addr *a, const struct net_addr *had, const char *owner, char *err,
                    size_t errlen);
/* -1 with "server 'SPEC' is listed twice" when u's host (any case) and
 * port are in list[0, n): -u and the config file's servers alike. */
int cfg_upstream_unique(const struct upstream_cfg *list, size_t n, const struct upstream_cfg *u,
                        const char *spec, char *err, size_t errlen);

void cfg_free(struct ferry_cfg *c);
/* Checks a listener once all its options are in (CLI or config file):
 * required options, mode-specific defaults (destination policy for public
 * listeners), Shadowsocks key derivation. 0, or -1 with a reason. */
int cfg_listener_finish(struct listener_cfg *l, char *err, size_t errlen);
/* The part of cfg_listener_finish() that depends on the listen addresses,
 * run again by the API whenever it moves a listener (api/control.c), so a
 * run-time change meets the start-up rules: on a public address a SOCKS
 * front needs users, an allow list or --open, and SOCKS and ss-server get
 * the default destination denies (appended to l->dest_acl, once). 0, or -1
 * with a reason. */
int cfg_listener_exposure(struct listener_cfg *l, char *err, size_t errlen);
/* The same for the global options that only make sense together (--api on
 * a non-loopback address needs --api-open; --chroot and --run-as-group need
 * --run-as; --chroot takes an absolute path), so `ferry check` refuses what
 * `ferry run` would. 0, or -1 with a reason and *key, the option to blame. */
int cfg_global_finish(const struct ferry_cfg *g, const char **key, char *err, size_t errlen);

#endif

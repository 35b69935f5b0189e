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

enum ferry_mode { MODE_SOCKS = 1, MODE_RELAY = 2 };
#define MODE_ALL (MODE_SOCKS | MODE_RELAY)

#define CFG_MAX_LISTEN 16
#define CFG_MAX_UPSTREAMS 64

struct upstream_cfg {
    struct host_port hp;
    int weight;
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

    struct user_cfg *users;
    size_t nusers;
    int allow_anonymous, allow_socks4, prefer_ipv6;

    struct acl client_acl;
    struct acl dest_acl;
    char dns_servers[256];

    unsigned connect_timeout_ms, idle_timeout_ms, handshake_timeout_ms, resolve_timeout_ms;
    unsigned maxconn;
    unsigned backlog;
    int no_splice;
};

struct ferry_cfg {
    unsigned threads;        /* 0 = number of CPUs */
    int log_level;
    unsigned drain_timeout_ms;
    struct listener_cfg *listeners;
    size_t nlisteners;
};

void cfg_free(struct ferry_cfg *c);

#endif

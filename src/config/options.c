/* options.c - the option table and its value parsers. See options.h. */
#include "config/options.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "crypto/replay.h"
#include "crypto/ss_cipher.h"
#include "obs/log.h"
#include "obs/syslog.h"
#include "resolver/resolver.h"
#include "stage/rewrite.h"
#include "stage/lua_filter.h"
#include "stage/toxic.h"

#define G(field) offsetof(struct ferry_cfg, field)
#define L(field) offsetof(struct listener_cfg, field)

/* Digits, optionally one '.', then digits: no sign, blank, hex or exponent. */
static int plain_decimal_prefix(const char *s)
{
    size_t n = 0, dots = 0;
    for (; (s[n] >= '0' && s[n] <= '9') || (s[n] == '.' && !dots++); n++) {}
    return n > 0 && s[0] != '.' && s[n - 1] != '.' ? (int)n : -1;
}

int opt_parse_duration(const char *s, unsigned *ms)
{
    char *end;
    if (plain_decimal_prefix(s) < 0) return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end != s + plain_decimal_prefix(s)) return -1;
    double mult;
    if (strcmp(end, "ms") == 0) mult = 1;
    else if (strcmp(end, "s") == 0 || *end == '\0') mult = 1000;
    else if (strcmp(end, "m") == 0) mult = 60000;
    else if (strcmp(end, "h") == 0) mult = 3600000;
    else return -1;
    v *= mult;
    if (v < 0 || v > 4e9) return -1;
    *ms = (unsigned)v;
    return 0;
}

const struct net_addr *cfg_listen_clash(const struct listener_cfg *l, size_t n, const struct net_addr *a)
{
    for (size_t i = 0; i < n && i < l->nlisten; i++)
        if (net_addr_overlap(&l->listen[i], a)) return &l->listen[i];
    return NULL;
}

void cfg_clash_text(const struct net_addr *a, const struct net_addr *had, const char *owner, char *err,
                    size_t errlen)
{
    char as[NET_ADDR_STRLEN], hs[NET_ADDR_STRLEN];
    net_addr_format(a, as, sizeof(as));
    net_addr_format(had, hs, sizeof(hs));
    if (!owner && net_addr_equal(a, had)) snprintf(err, errlen, "%s is listed twice", as);
    else if (!owner) snprintf(err, errlen, "%s overlaps %s, listed before", as, hs);
    else if (net_addr_equal(a, had)) snprintf(err, errlen, "%s is also used by %s", as, owner);
    else snprintf(err, errlen, "%s overlaps %s of %s", as, hs, owner);
}

/* Also refuses an address clashing with one given before: both binds would
 * succeed (SO_REUSEPORT) and the kernel would split the connections. */
static int parse_listen(void *base, const char *val, char *err, size_t errlen)
{
    struct listener_cfg *l = base;
    struct net_addr a;
    const struct net_addr *had;
    if (l->nlisten == CFG_MAX_LISTEN) {
        snprintf(err, errlen, "too many listen addresses (max %d)", CFG_MAX_LISTEN);
        return -1;
    }
    if (net_addr_parse(val, &a, err, errlen) < 0) return -1;
    if ((had = cfg_listen_clash(l, l->nlisten, &a))) {
        cfg_clash_text(&a, had, NULL, err, errlen);
        return -1;
    }
    l->listen[l->nlisten++] = a;
    return 0;
}

/* ",weight=N", ",backup", ",maxconn=N" after an upstream address. */
static int parse_server_param(struct upstream_cfg *u, const char *p, char *err, size_t errlen)
{
    char *end;
    long v;
    if (strcmp(p, "backup") == 0) {
        u->backup = 1;
        return 0;
    }
    if (strncmp(p, "weight=", 7) == 0 && p[7] >= '0' && p[7] <= '9') {
        v = strtol(p + 7, &end, 10);
        if (*end || v < 1 || v > 1000) goto bad;
        u->weight = (int)v;
        return 0;
    }
    if (strncmp(p, "maxconn=", 8) == 0 && p[8] >= '0' && p[8] <= '9') {
        v = strtol(p + 8, &end, 10);
        if (*end || v < 0 || v > 10000000) goto bad;
        u->maxconn = (unsigned)v;
        return 0;
    }
bad:
    snprintf(err, errlen, "'%.60s': expected weight=1-1000, backup or maxconn=N", p);
    return -1;
}

int cfg_upstream_unique(const struct upstream_cfg *list, size_t n, const struct upstream_cfg *u,
                        const char *spec, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        if (list[i].hp.port == u->hp.port && strcasecmp(list[i].hp.host, u->hp.host) == 0) {
            snprintf(err, errlen, "server '%.80s' is listed twice", spec);
            return -1;
        }
    return 0;
}

/* The NAME of srv://NAME: a DNS name (letters, digits, '-', '_', dots
 * between non-empty labels of at most 63 bytes), no port. */
static int parse_srv_name(const char *name, struct upstream_cfg *u, const char *val, char *err, size_t errlen)
{
    size_t len = strlen(name), label = 0;
    if (len == 0 || len > 253) {
        snprintf(err, errlen, "'%.80s': srv:// needs a DNS name of 1 to 253 bytes, e.g. srv://_http._tcp.example",
                 val);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (c == ':') {
            snprintf(err, errlen, "'%.80s': no port after an SRV name: the records give each server's port", val);
            return -1;
        }
        if (c == '.' ? label == 0 && i + 1 < len : !(c == '-' || c == '_' || (c >= '0' && c <= '9') ||
                                                    ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))) {
            snprintf(err, errlen, "'%.80s': not a DNS name at byte %zu", val, i + 1);
            return -1;
        }
        label = c == '.' ? 0 : label + 1;
        if (label > 63) {
            snprintf(err, errlen, "'%.80s': a DNS label is at most 63 bytes", val);
            return -1;
        }
    }
    snprintf(u->hp.host, sizeof(u->hp.host), "%s", name);
    u->hp.port = 0;
    u->srv = 1;
    return 0;
}

/* HOST:PORT[,weight=N][,backup][,maxconn=N], or srv://NAME[,backup][,maxconn=N] */
static int parse_upstream(void *base, const char *val, char *err, size_t errlen)
{
    struct listener_cfg *l = base;
    char hp[300];
    const char *comma = strchr(val, ',');
    size_t n = comma ? (size_t)(comma - val) : strlen(val);
    if (l->nupstreams == CFG_MAX_UPSTREAMS) {
        snprintf(err, errlen, "too many upstreams (max %d)", CFG_MAX_UPSTREAMS);
        return -1;
    }
    if (n >= sizeof(hp)) {
        snprintf(err, errlen, "'%s': too long", val);
        return -1;
    }
    memcpy(hp, val, n);
    hp[n] = '\0';
    struct upstream_cfg *u = &l->upstreams[l->nupstreams];
    memset(u, 0, sizeof(*u));
    if (strncasecmp(hp, "srv://", 6) == 0) {
        if (parse_srv_name(hp + 6, u, val, err, errlen) < 0) return -1;
    } else if (host_port_parse(hp, &u->hp, 0, err, errlen) < 0) {
        return -1;
    }
    if (u->hp.host[0] == '\0') {
        snprintf(err, errlen, "'%s': upstream needs a host", val);
        return -1;
    }
    u->weight = 1;
    u->backup = 0;
    u->maxconn = 0;
    unsigned seen = 0;
    while (comma) {
        char param[64];
        const char *next = strchr(comma + 1, ',');
        size_t plen = next ? (size_t)(next - comma - 1) : strlen(comma + 1);
        if (plen >= sizeof(param)) plen = sizeof(param) - 1;
        memcpy(param, comma + 1, plen);
        param[plen] = '\0';
        unsigned bit = param[0] == 'w' ? 1 : param[0] == 'b' ? 2 : param[0] == 'm' ? 4 : 8;
        if (seen & bit) {
            snprintf(err, errlen, "'%.80s': parameter given twice", val);
            return -1;
        }
        seen |= bit;
        if (parse_server_param(u, param, err, errlen) < 0) return -1;
        if (u->srv && bit == 1) {
            snprintf(err, errlen, "'%.80s': no weight for an SRV name: each record gives its server's weight", val);
            return -1;
        }
        comma = next;
    }
    if (cfg_upstream_unique(l->upstreams, l->nupstreams, u, hp, err, errlen) < 0) return -1;
    l->nupstreams++;
    return 0;
}

static int add_user(struct listener_cfg *l, const char *val, size_t len, char *err, size_t errlen)
{
    const char *colon = memchr(val, ':', len);
    size_t nlen = colon ? (size_t)(colon - val) : 0;
    size_t plen = colon ? len - nlen - 1 : 0;
    /* RFC 1929 carries each in one length byte. */
    if (!colon || nlen == 0 || nlen > 255 || plen == 0 || plen > 255) {
        snprintf(err, errlen, "expected NAME:PASSWORD (each 1-255 bytes)");
        return -1;
    }
    struct user_cfg *u = realloc(l->users, (l->nusers + 1) * sizeof(*u));
    if (!u) goto oom;
    l->users = u;
    u = &l->users[l->nusers];
    u->name = strndup(val, nlen);
    u->pass = strndup(colon + 1, plen);
    if (!u->name || !u->pass) {
        free(u->name);
        free(u->pass);
        goto oom;
    }
    u->name_len = (uint8_t)nlen;
    u->pass_len = (uint8_t)plen;
    l->nusers++;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

static int parse_user(void *base, const char *val, char *err, size_t errlen)
{
    return add_user(base, val, strlen(val), err, errlen);
}

/* Reads one line into line[cap] without its newline. Returns 1 for a line,
 * 0 at end of file, -1 with a reason. Comment lines may be any length (the
 * rest is skipped); other lines must fit and hold no NUL byte, so that a
 * long line is never split into a second, unintended entry. */
static int read_line(FILE *f, char *line, size_t cap, const char **why)
{
    size_t n = 0;
    int c;
    while ((c = getc(f)) != EOF && c != '\n') {
        if (c == '\0') {
            *why = "NUL byte in line";
            return -1;
        }
        if (n + 1 < cap) line[n++] = (char)c;
        else if (line[0] != '#') {
            *why = "line too long";
            return -1;
        }
    }
    if (ferror(f)) {
        *why = strerror(errno);
        return -1;
    }
    if (n && line[n - 1] == '\r') n--;
    line[n] = '\0';
    return c == EOF && n == 0 ? 0 : 1;
}

/* One "name:password" per line; blank lines and '#' comments skipped. A file
 * that yields no user is an error: it would silently turn auth off. */
static int parse_users_file(void *base, const char *path, char *err, size_t errlen)
{
    struct listener_cfg *l = base;
    size_t before = l->nusers;
    char line[1024], why[200];
    const char *rwhy = NULL;
    int lineno = 0, r;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "'%.200s': %s", path, strerror(errno));
        return -1;
    }
    while ((r = read_line(f, line, sizeof(line), &rwhy)) > 0) {
        lineno++;
        if (line[0] == '\0' || line[0] == '#') continue;
        if (add_user(l, line, strlen(line), why, sizeof(why)) < 0) break;
    }
    fclose(f);
    if (r < 0 || (r > 0)) {
        snprintf(err, errlen, "%.200s:%d: %s", path, lineno + (r < 0), r < 0 ? rwhy : why);
        return -1;
    }
    if (l->nusers == before) {
        snprintf(err, errlen, "'%.200s': no users in file", path);
        return -1;
    }
    return 0;
}

static int parse_allow(void *b, const char *v, char *e, size_t n)
{
    return acl_add_client(&((struct listener_cfg *)b)->client_acl, 1, v, e, n);
}
static int parse_deny(void *b, const char *v, char *e, size_t n)
{
    return acl_add_client(&((struct listener_cfg *)b)->client_acl, 0, v, e, n);
}
/* --accept-proxy-from: the balancers that may speak for clients; implies
 * --accept-proxy. */
static int parse_accept_proxy_from(void *b, const char *v, char *e, size_t n)
{
    struct listener_cfg *l = b;
    l->accept_proxy = 1;
    return acl_add_client(&l->proxy_from, 1, v, e, n);
}
static int parse_allow_dest(void *b, const char *v, char *e, size_t n)
{
    return acl_add_dest(&((struct listener_cfg *)b)->dest_acl, 1, v, e, n);
}
static int parse_deny_dest(void *b, const char *v, char *e, size_t n)
{
    return acl_add_dest(&((struct listener_cfg *)b)->dest_acl, 0, v, e, n);
}

static int parse_log_format(void *base, const char *val, char *err, size_t errlen)
{
    int f = log_format_parse(val);
    if (f < 0) {
        snprintf(err, errlen, "'%s': expected text or json", val);
        return -1;
    }
    ((struct ferry_cfg *)base)->log_format = f;
    return 0;
}

static int parse_log_sessions(void *base, const char *val, char *err, size_t errlen)
{
    int m = log_sessions_parse(val);
    if (m < 0) {
        snprintf(err, errlen, "'%s': expected start, end or start,end", val);
        return -1;
    }
    ((struct ferry_cfg *)base)->log_sessions = m;
    return 0;
}

static int parse_log_level(void *base, const char *val, char *err, size_t errlen)
{
    int lv = log_level_parse(val);
    if (lv < 0) {
        snprintf(err, errlen, "'%s': expected quiet, error, warn, info or debug", val);
        return -1;
    }
    ((struct ferry_cfg *)base)->log_level = lv;
    return 0;
}

static int parse_api(void *base, const char *val, char *err, size_t errlen)
{
    struct ferry_cfg *g = base;
    if (net_addr_parse(val, &g->api_addr, err, errlen) < 0) return -1;
    g->has_api = 1;
    return 0;
}

static int parse_metrics(void *base, const char *val, char *err, size_t errlen)
{
    struct ferry_cfg *g = base;
    if (net_addr_parse(val, &g->metrics_addr, err, errlen) < 0) return -1;
    g->has_metrics = 1;
    return 0;
}

/* "IP", "IP:PORT", "v6", "[v6]" or "[v6]:PORT" -> "IP:PORT" / "[v6]:PORT"
 * appended to the comma-separated list c-ares takes. */
static int parse_dns(void *base, const char *val, char *err, size_t errlen)
{
    struct listener_cfg *l = base;
    struct host_port hp;
    struct net_addr a;
    char tmp[300];
    const char *first = strchr(val, ':');
    size_t vlen = strlen(val);
    if (val[0] == '[' && vlen > 1 && val[vlen - 1] == ']')
        snprintf(tmp, sizeof(tmp), "%s:53", val);            /* [v6] NOLINT(bugprone-branch-clone): as IPv4, apart to name the cases */
    else if (val[0] != '[' && first && strchr(first + 1, ':'))
        snprintf(tmp, sizeof(tmp), "[%s]:53", val);          /* bare v6 */
    else if (!first)
        snprintf(tmp, sizeof(tmp), "%s:53", val);            /* IPv4 */
    else
        snprintf(tmp, sizeof(tmp), "%s", val);
    if (host_port_parse(tmp, &hp, 0, err, errlen) < 0 || hp.host[0] == '\0' ||
        net_addr_from_literal(hp.host, hp.port, &a) < 0) {
        snprintf(err, errlen, "'%.80s': expected IP[:PORT] or [IPv6]:PORT", val);
        return -1;
    }
    size_t used = strlen(l->dns_servers), add = strlen(tmp), n = used ? 1 : 0;
    for (const char *c = l->dns_servers; (c = strchr(c, ',')); c++) n++;
    if (n == RESOLVER_MAX_SERVERS || used + add + 2 > sizeof(l->dns_servers)) {
        snprintf(err, errlen, "too many DNS servers (at most %d)", RESOLVER_MAX_SERVERS);
        return -1;
    }
    if (used) l->dns_servers[used++] = ',';
    memcpy(l->dns_servers + used, tmp, add + 1);
    return 0;
}

static int parse_secret(char **field, const char *val, char *err, size_t errlen)
{
    if (!*val) {
        snprintf(err, errlen, "must not be empty");
        return -1;
    }
    if (*field) {
        explicit_bzero(*field, strlen(*field));
        free(*field);
    }
    if (!(*field = strdup(val))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int parse_password(void *b, const char *v, char *e, size_t n)
{
    return parse_secret(&((struct listener_cfg *)b)->ss_password, v, e, n);
}

static int parse_key(void *b, const char *v, char *e, size_t n)
{
    return parse_secret(&((struct listener_cfg *)b)->ss_key_b64, v, e, n);
}

/* First line of a file, so the secret never shows in `ps`. */
static int parse_password_file(void *base, const char *path, char *err, size_t errlen)
{
    char line[1024];
    const char *why = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "'%.200s': %s", path, strerror(errno));
        return -1;
    }
    int r = read_line(f, line, sizeof(line), &why);
    fclose(f);
    if (r <= 0) {
        snprintf(err, errlen, "'%.200s': %s", path, r < 0 ? why : "empty file");
        return -1;
    }
    r = parse_password(base, line, err, errlen);
    explicit_bzero(line, sizeof(line));
    return r;
}

/* --via URL: one more parent at the end of the chain. */
static int parse_via(void *base, const char *val, char *err, size_t errlen)
{
    struct listener_cfg *l = base;
    struct via_hop *h;
    if (l->nvia == VIA_MAX_HOPS) {
        snprintf(err, errlen, "at most %d parents in a chain", VIA_MAX_HOPS);
        return -1;
    }
    if (l->nvia && l->via[l->nvia - 1].proto == VIA_SS) {
        snprintf(err, errlen, "an ss:// parent must be the last --via (nothing can be asked of a parent "
                 "behind a Shadowsocks server)");
        return -1;
    }
    h = &l->via[l->nvia];
    if (via_url_parse(val, h, err, errlen) < 0) return -1;
    if (h->proto == VIA_SS) {
        const struct ss_method *m = ss_method_find(h->method);
        int r = m ? ss_key_from_password(m, h->pass, h->key) : -1;
        explicit_bzero(h->pass, sizeof(h->pass));
        if (r < 0) {
            explicit_bzero(h, sizeof(*h));
            snprintf(err, errlen, m ? "cannot derive the key from the password"
                                    : "ss://: unknown method (chacha20-ietf-poly1305, aes-128-gcm, aes-192-gcm, "
                                      "aes-256-gcm)");
            return -1;
        }
    }
    l->nvia++;
    return 0;
}

static int parse_method(void *base, const char *val, char *err, size_t errlen)
{
    struct listener_cfg *l = base;
    if (!ss_method_find(val)) {
        snprintf(err, errlen, "'%.40s': unknown method (chacha20-ietf-poly1305, aes-128-gcm, "
                 "aes-192-gcm, aes-256-gcm)", val);
        return -1;
    }
    snprintf(l->ss_method, sizeof(l->ss_method), "%s", val);
    return 0;
}

static int parse_target(struct host_port *hp, int *has, const char *val, char *err, size_t errlen)
{
    if (host_port_parse(val, hp, 0, err, errlen) < 0) return -1;
    if (!hp->host[0]) {
        snprintf(err, errlen, "'%.80s': needs a host", val);
        return -1;
    }
    *has = 1;
    return 0;
}

static int parse_server(void *b, const char *v, char *e, size_t n)
{
    struct listener_cfg *l = b;
    return parse_target(&l->ss_server, &l->has_ss_server, v, e, n);
}

static int parse_tunnel_to(void *b, const char *v, char *e, size_t n)
{
    struct listener_cfg *l = b;
    return parse_target(&l->tunnel_to, &l->has_tunnel_to, v, e, n);
}

/* The listener modes: subcommand names (`ferry relay`), the config file's
 * `mode:` values and what `ferry --help` says of each. */
const struct opt_mode opt_modes[OPT_NMODES] = {
    { "socks", MODE_SOCKS, "SOCKS 4, 4a and 5 server (the default: " CFG_SOCKS_LISTEN ")" },
    { "relay", MODE_RELAY, "TCP relay / load balancer to one or more upstreams" },
    { "ss-server", MODE_SS_SERVER, "Shadowsocks AEAD server (wire compatible with shadowsocks-libev)" },
    { "ss-local", MODE_SS_LOCAL, "SOCKS front that tunnels through a Shadowsocks server" },
    { "mux-server", MODE_MUX_SERVER, "1:N: yamux streams in, each relayed to an upstream (-u, --dynamic)" },
    { "mux-local", MODE_MUX_LOCAL, "N:1: every client a yamux stream to a mux-server (-s, --socks)" },
};

int opt_mode_by_name(const char *name)
{
    for (size_t i = 0; i < OPT_NMODES; i++)
        if (strcmp(opt_modes[i].name, name) == 0) return opt_modes[i].mode;
    return 0;
}

const char *opt_mode_name(int mode)
{
    for (size_t i = 0; i < OPT_NMODES; i++)
        if (opt_modes[i].mode == mode) return opt_modes[i].name;
    return NULL;
}

const char *const cfg_balance_names[] = { "roundrobin", "leastconn", "source", "random2", NULL };

static int parse_balance(void *base, const char *val, char *err, size_t errlen)
{
    for (unsigned i = 0; cfg_balance_names[i]; i++)
        if (strcmp(val, cfg_balance_names[i]) == 0) {
            ((struct listener_cfg *)base)->balance = i;
            return 0;
        }
    snprintf(err, errlen, "'%.40s': expected roundrobin, leastconn, source or random2", val);
    return -1;
}

static int parse_resolve(void *base, const char *val, char *err, size_t errlen)
{
    struct listener_cfg *l = base;
    if (strcmp(val, "first") == 0 || strcmp(val, "all") == 0) {
        l->resolve_all = val[0] == 'a';
        return 0;
    }
    snprintf(err, errlen, "'%.40s': expected first or all", val);
    return -1;
}

static int parse_send_proxy(void *base, const char *val, char *err, size_t errlen)
{
    struct listener_cfg *l = base;
    if (strcmp(val, "v1") == 0 || strcmp(val, "v2") == 0) {
        l->send_proxy = val[1] == '1' ? 1 : 2;
        return 0;
    }
    snprintf(err, errlen, "'%.40s': expected v1 or v2", val);
    return -1;
}

static int parse_text(char *field, size_t cap, const char *val, char *err, size_t errlen)
{
    if (strlen(val) >= cap) {
        snprintf(err, errlen, "longer than %zu bytes", cap - 1);
        return -1;
    }
    memcpy(field, val, strlen(val) + 1);
    return 0;
}

static int parse_check_send(void *b, const char *v, char *e, size_t n)
{
    struct listener_cfg *l = b;
    return parse_text(l->health.send, sizeof(l->health.send), v, e, n);
}

static int parse_check_expect(void *b, const char *v, char *e, size_t n)
{
    struct listener_cfg *l = b;
    return parse_text(l->health.expect, sizeof(l->health.expect), v, e, n);
}

/* "N/s" (or a bare N): new connections per second. */
static int parse_rate(void *base, const char *val, char *err, size_t errlen)
{
    size_t n = strcspn(val, "/");
    unsigned long v = 0;
    if (n == 0 || n > 7 || (val[n] && strcmp(val + n, "/s") != 0)) goto bad;
    for (size_t i = 0; i < n; i++) {
        if (val[i] < '0' || val[i] > '9') goto bad;
        v = v * 10 + (unsigned long)(val[i] - '0');
        if (v > 1000000) goto bad;
    }
    ((struct listener_cfg *)base)->rate_per_ip = (unsigned)v;
    return 0;
bad:
    snprintf(err, errlen, "'%.40s': expected N/s (new connections per second, 0-1000000)", val);
    return -1;
}

/* "N", "Nk", "NM", "NG" (powers of 1024) -> bytes. */
int opt_parse_size(const char *s, uint64_t *bytes)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > (1ull << 40)) return -1;
    }
    if (i == 0) return -1;
    const char *units = "kMG";
    const char *u = s[i] ? strchr(units, s[i]) : NULL;
    if (s[i] && (!u || s[i + 1])) return -1;
    if (u) {
        unsigned shift = 10 * (unsigned)(u - units + 1);
        if (v > (UINT64_MAX >> shift)) return -1;   /* 2^64 would wrap to 0: "never" */
        v <<= shift;
    }
    *bytes = v;
    return 0;
}

/* A file name: parse_text, but never empty. */
static int parse_file_name(char *field, size_t cap, const char *v, char *e, size_t n)
{
    if (!*v) {
        snprintf(e, n, "expected a file name");
        return -1;
    }
    return parse_text(field, cap, v, e, n);
}

static int parse_capture(void *b, const char *v, char *e, size_t n)
{
    struct listener_cfg *l = b;
    return parse_file_name(l->capture_path, sizeof(l->capture_path), v, e, n);
}

static int parse_capture_rotate(void *b, const char *v, char *e, size_t n)
{
    struct listener_cfg *l = b;
    if (opt_parse_size(v, &l->capture_rotate) < 0 || (l->capture_rotate && l->capture_rotate < 1024)) {
        snprintf(e, n, "'%.40s': expected a size like 500k, 10M or 1G (at least 1k; 0 = never)", v);
        return -1;
    }
    return 0;
}

static int parse_capture_filter(void *b, const char *v, char *e, size_t n)
{
    return capfilter_parse(&((struct listener_cfg *)b)->capture_filter, v, e, n);
}

/* The script is loaded and run once here, in a sandbox of its own, so a
 * syntax error stops ferry (and `ferry check`) with FILE:LINE: message
 * instead of failing every session. */
static int parse_filter(void *b, const char *v, char *e, size_t n)
{
    struct listener_cfg *l = b;
    if (l->filter_path[0]) {
        snprintf(e, n, "one filter per listener (already %.200s)", l->filter_path);
        return -1;
    }
    if (parse_file_name(l->filter_path, sizeof(l->filter_path), v, e, n) < 0) return -1;
    if (lua_filter_check(l->filter_path, e, n) == 0) return 0;
    l->filter_path[0] = '\0';
    return -1;
}

/* A file for the dump implies --hexdump. */
static int parse_hexdump_file(void *b, const char *v, char *e, size_t n)
{
    struct listener_cfg *l = b;
    if (parse_file_name(l->hexdump_file, sizeof(l->hexdump_file), v, e, n) < 0) return -1;
    l->hexdump = 1;
    return 0;
}

/* --toxic TYPE[:key=value,...], repeatable: applied in the order given. */
static int parse_toxic(void *base, const char *val, char *err, size_t errlen)
{
    struct listener_cfg *l = base;
    struct toxic_spec t;
    if (toxic_spec_parse(val, &t, err, errlen) < 0) return -1;
    if (t.type == TOXIC_LUA && lua_filter_check(t.file, err, errlen) < 0) return -1;
    if (toxic_find(l->toxics, l->ntoxics, t.name) >= 0) {
        snprintf(err, errlen, "two toxics named '%s' (add name=...)", t.name);
        return -1;
    }
    if (l->ntoxics == TOXIC_MAX) {
        snprintf(err, errlen, "too many toxics (max %d)", TOXIC_MAX);
        return -1;
    }
    struct toxic_spec *n = realloc(l->toxics, (l->ntoxics + 1) * sizeof(*n));
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    l->toxics = n;
    l->toxics[l->ntoxics++] = t;
    return 0;
}

/* --rewrite DIR:MATCH:REPLACEMENT[:max=N], repeatable: one scan, the
 * earlier rule winning where two match at the same place (stage/rewrite.h). */
static int parse_rewrite(void *b, const char *v, char *e, size_t n)
{
    struct listener_cfg *l = b;
    struct rewrite_rule r;
    if (rewrite_parse(v, &r, e, n) < 0) return -1;
    return rewrite_set_add(&l->rewrite, &r, e, n);
}

static int parse_hours(void *b, const char *v, char *e, size_t n)
{
    return timewin_parse(v, &((struct listener_cfg *)b)->hours, e, n);
}

/* Opened at start (main.c), not here: `ferry check` creates no file. */
static int parse_log_file(void *b, const char *v, char *e, size_t n)
{
    struct ferry_cfg *g = b;
    return parse_file_name(g->log_file, sizeof(g->log_file), v, e, n);
}

/* --syslog TARGET: checked here, opened at start (main.c): a name is looked
 * up then, and `ferry check` sends nothing. */
static int parse_syslog(void *base, const char *val, char *err, size_t errlen)
{
    struct ferry_cfg *g = base;
    struct syslog_target t;
    if (syslog_target_parse(val, &t, err, errlen) < 0) return -1;
    return parse_text(g->syslog_target, sizeof(g->syslog_target), val, err, errlen);
}

static int parse_syslog_facility(void *base, const char *val, char *err, size_t errlen)
{
    int f = syslog_facility_parse(val);
    if (f < 0) {
        snprintf(err, errlen, "'%.40s': expected kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, "
                 "authpriv, ftp or local0 to local7", val);
        return -1;
    }
    ((struct ferry_cfg *)base)->syslog_facility = f;
    return 0;
}

/* A tag is a name like a listener's: one token, within RFC 3164's 32. */
_Static_assert(CFG_NAME_MAX <= SYSLOG_TAG_MAX, "a name must fit a syslog tag");
static int parse_syslog_tag(void *base, const char *val, char *err, size_t errlen)
{
    struct ferry_cfg *g = base;
    if (!cfg_name_ok(val)) {
        snprintf(err, errlen, "'%.40s': expected 1 to %d letters, digits, '-', '_' or '.'", val, CFG_NAME_MAX);
        return -1;
    }
    return parse_text(g->syslog_tag, sizeof(g->syslog_tag), val, err, errlen);
}

/* Names are looked up at start (core/privdrop.c), not here: parsing stays pure. */
static int parse_run_as(void *b, const char *v, char *e, size_t n)
{
    struct ferry_cfg *g = b;
    return parse_text(g->run_as, sizeof(g->run_as), v, e, n);
}

static int parse_run_as_group(void *b, const char *v, char *e, size_t n)
{
    struct ferry_cfg *g = b;
    return parse_text(g->run_as_group, sizeof(g->run_as_group), v, e, n);
}

static int parse_chroot(void *b, const char *v, char *e, size_t n)
{
    struct ferry_cfg *g = b;
    return parse_text(g->chroot_dir, sizeof(g->chroot_dir), v, e, n);
}

const struct health_cfg *cfg_effective_health(const struct listener_cfg *l)
{
    return l->group && l->group->health.interval_ms ? &l->group->health : &l->health;
}

int cfg_socks_front(const struct listener_cfg *l)
{
    return l->mode == MODE_SOCKS || (l->mode == MODE_SS_LOCAL && !l->has_tunnel_to) ||
           (l->mode == MODE_MUX_LOCAL && l->mux_socks);
}

int cfg_balanced(const struct listener_cfg *l)
{
    return l->mode == MODE_RELAY || (l->mode == MODE_MUX_SERVER && !l->mux_dynamic);
}

unsigned cfg_effective_balance(const struct listener_cfg *l)
{
    return l->balance;   /* a group's balance is applied to the listener through the table */
}

#define H(field) offsetof(struct listener_cfg, health.field)

#define MODE_SOCKS_FRONT (MODE_SOCKS | MODE_SS_LOCAL | MODE_MUX_LOCAL)
#define MODE_DEST_POLICY (MODE_SOCKS | MODE_SS_SERVER | MODE_MUX_SERVER)
#define MODE_BALANCED (MODE_RELAY | MODE_MUX_SERVER)

const struct opt_def opt_table[] = {
    { "listen", 'l', OPT_CUSTOM, SCOPE_LISTENER, MODE_ALL, 0, 0, 0, NULL, parse_listen,
      "ADDR", "listen address IP:PORT, [v6]:PORT, :PORT or localhost:PORT (repeatable)" },
    { "upstream", 'u', OPT_CUSTOM, SCOPE_LISTENER, MODE_BALANCED, 0, 0, 0, NULL, parse_upstream,
      "HOST:PORT[,weight=N][,backup][,maxconn=N]",
      "upstream server (repeatable); srv://NAME[,backup][,maxconn=N]: the servers of a DNS SRV record, "
      "followed as it changes (lowest priority active, others backup; the records' weights)" },
    { "resolve", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_BALANCED, 0, 0, 0, "first", parse_resolve,
      "first|all", "all: every address of an upstream's name is a server, followed as DNS changes; "
      "first: the name is one server, connected to at its first address that answers" },
    { "dns-refresh-min", 0, OPT_DURATION, SCOPE_LISTENER, MODE_BALANCED, L(dns_refresh_min_ms), 1000, 300000, "1s",
      NULL, "DUR", "discovered servers (srv://, --resolve all) are looked up again after their TTL, "
      "but not sooner than this (also the retry delay after a failed lookup)" },
    { "dns-refresh-max", 0, OPT_DURATION, SCOPE_LISTENER, MODE_BALANCED, L(dns_refresh_max_ms), 1000, 300000,
      "300s", NULL, "DUR", "... and not later than this (TTLs above 300s count as 300s)" },
    { "retries", 0, OPT_UINT, SCOPE_LISTENER, MODE_BALANCED, L(retries), 0, 16, "2", NULL,
      "N", "other upstreams tried after a failed connect" },
    { "balance", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_BALANCED, 0, 0, 0, "roundrobin", parse_balance,
      "ALGO", "roundrobin (smooth weighted), leastconn, source (client IP hash) or random2" },
    { "check-interval", 0, OPT_DURATION, SCOPE_LISTENER, MODE_BALANCED, H(interval_ms), 0, 3600000, "0",
      NULL, "DUR", "active health check of every upstream this often (0 = off)" },
    { "check-timeout", 0, OPT_DURATION, SCOPE_LISTENER, MODE_BALANCED, H(timeout_ms), 0, 3600000, "0",
      NULL, "DUR", "a check fails after this long (0 = the interval, at most 2s)" },
    { "check-rise", 0, OPT_UINT, SCOPE_LISTENER, MODE_BALANCED, H(rise), 1, 100, "2", NULL,
      "N", "passed checks in a row that bring a server up" },
    { "check-fall", 0, OPT_UINT, SCOPE_LISTENER, MODE_BALANCED, H(fall), 1, 100, "3", NULL,
      "N", "failed checks (or connects) in a row that take a server down" },
    { "check-send", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_BALANCED, 0, 0, 0, NULL, parse_check_send,
      "TEXT", "bytes a check sends after connecting" },
    { "check-expect", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_BALANCED, 0, 0, 0, NULL, parse_check_expect,
      "TEXT", "text the server's answer must contain for the check to pass" },
    { "queue-timeout", 0, OPT_DURATION, SCOPE_LISTENER, MODE_BALANCED, L(queue_timeout_ms), 1, 3600000,
      "5s", NULL, "DUR", "when every server is at its maxconn, a client waits this long at most" },
    { "queue-size", 0, OPT_UINT, SCOPE_LISTENER, MODE_BALANCED | MODE_MUX_LOCAL, L(queue_size), 0, 1000000, "1024",
      NULL, "N", "clients waiting for a server slot (mux-local: for a connection to the mux-server), per worker "
      "thread (0 = refuse at once)" },
    { "user", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_SOCKS_FRONT, 0, 0, 0, NULL, parse_user,
      "NAME:PASS", "accept this user (repeatable); turns authentication on (blanked in ps; --users-file keeps "
      "passwords out of argv entirely)" },
    { "users-file", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_SOCKS_FRONT, 0, 0, 0, NULL, parse_users_file,
      "FILE", "users, one name:password a line ('#' comments)" },
    { "allow-anonymous", 0, OPT_FLAG, SCOPE_LISTENER, MODE_SOCKS_FRONT, L(allow_anonymous), 0, 1, NULL, NULL,
      NULL, "with users configured, still accept SOCKS5 and HTTP clients without authentication" },
    { "allow-socks4", 0, OPT_FLAG, SCOPE_LISTENER, MODE_SOCKS_FRONT, L(allow_socks4), 0, 1, NULL, NULL,
      NULL, "with users configured, still accept SOCKS4/4a (which has no passwords)" },
    { "no-http", 0, OPT_FLAG, SCOPE_LISTENER, MODE_SOCKS_FRONT, L(no_http), 0, 1, NULL, NULL,
      NULL, "SOCKS only: do not also serve HTTP proxy requests (CONNECT, http:// URLs) on this port" },
    { "allow-dest", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_DEST_POLICY, 0, 0, 0, NULL, parse_allow_dest,
      "CIDR|HOST[:PORT]", "allow destinations (repeatable, first match wins)" },
    { "deny-dest", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_DEST_POLICY, 0, 0, 0, NULL, parse_deny_dest,
      "CIDR|HOST[:PORT]", "deny destinations (repeatable, first match wins)" },
    { "prefer-ipv6", 0, OPT_FLAG, SCOPE_LISTENER, MODE_ALL, L(prefer_ipv6), 0, 1, NULL, NULL,
      NULL, "try IPv6 addresses of a name before IPv4 ones" },
    { "dns-server", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_ALL, 0, 0, 0, NULL, parse_dns,
      "IP[:PORT]", "DNS server to use instead of /etc/resolv.conf (repeatable)" },
    { "resolve-timeout", 0, OPT_DURATION, SCOPE_LISTENER, MODE_ALL, L(resolve_timeout_ms), 1, 600000,
      "5s", NULL, "DUR", "give up resolving a name after this long" },
    { "resolve-max-inflight", 0, OPT_UINT, SCOPE_LISTENER, MODE_ALL, L(resolve_max_inflight), 1, 1000000,
      "1024", NULL, "N", "DNS queries in flight per worker thread of this listener, at most a quarter of them abandoned; "
      "more are refused (end=resolve_limit)" },
    { "connect-timeout", 0, OPT_DURATION, SCOPE_LISTENER, MODE_ALL, L(connect_timeout_ms), 1, 3600000,
      "10s", NULL, "DUR", "give up connecting to an upstream after this long" },
    { "idle-timeout", 0, OPT_DURATION, SCOPE_LISTENER, MODE_ALL, L(idle_timeout_ms), 1, 4000000000UL,
      "300s", NULL, "DUR", "close a session with no traffic for this long" },
    { "udp-timeout", 0, OPT_DURATION, SCOPE_LISTENER, MODE_SOCKS | MODE_SS, L(udp_timeout_ms), 1, 4000000000UL,
      "60s", NULL, "DUR", "end a SOCKS5 UDP ASSOCIATE (or an ss-server's UDP client) after this long without a "
      "datagram either way" },
    { "handshake-timeout", 0, OPT_DURATION, SCOPE_LISTENER, MODE_SOCKS_FRONT | MODE_SS_SERVER | MODE_MUX_SERVER, L(handshake_timeout_ms), 1,
      3600000, "10s", NULL, "DUR", "close a client that has not finished its handshake by then" },
    { "maxconn", 0, OPT_UINT, SCOPE_LISTENER, MODE_ALL, L(maxconn), 0, 10000000, "0", NULL,
      "N", "at most N sessions on this listener, all threads together (0 = no limit)" },
    { "maxconn-per-ip", 0, OPT_UINT, SCOPE_LISTENER, MODE_ALL, L(maxconn_per_ip), 0, 10000000, "0", NULL,
      "N", "at most N sessions per client IP (0 = no limit)" },
    { "rate-per-ip", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_ALL, 0, 0, 0, NULL, parse_rate,
      "N/s", "at most N new connections per second per client IP (token bucket)" },
    { "rate-burst", 0, OPT_UINT, SCOPE_LISTENER, MODE_ALL, L(rate_burst), 0, 1000000, "0", NULL,
      "N", "connections a client IP may open at once before --rate-per-ip applies (0 = the rate)" },
    { "max-session-time", 0, OPT_DURATION, SCOPE_LISTENER, MODE_ALL, L(max_session_ms), 0, 4000000000UL,
      "0", NULL, "DUR", "close sessions older than this (0 = no limit)" },
    { "allow-hours", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_ALL, 0, 0, 0, NULL, parse_hours,
      "HH:MM-HH:MM[,...]", "accept new connections only in these local-time windows" },
    { "allow", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_ALL, 0, 0, 0, NULL, parse_allow,
      "CIDR", "accept clients from this network (repeatable, first match wins)" },
    { "deny", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_ALL, 0, 0, 0, NULL, parse_deny,
      "CIDR", "refuse clients from this network (repeatable, first match wins)" },
    { "backlog", 0, OPT_UINT, SCOPE_LISTENER, MODE_ALL, L(backlog), 1, 65535, "4096", NULL,
      "N", "listen() backlog" },
    { "no-splice", 0, OPT_FLAG, SCOPE_LISTENER, MODE_ALL, L(no_splice), 0, 1, NULL, NULL,
      NULL, "copy through user space instead of zero-copy splice()" },
    { "accept-proxy", 0, OPT_FLAG, SCOPE_LISTENER, MODE_ALL, L(accept_proxy), 0, 1, NULL, NULL,
      NULL, "clients start with a PROXY protocol header (v1 or v2, from HAProxy or an L4 balancer): its client "
      "address is the one ACLs, limits, logs and capture use; a bad or missing header closes the connection" },
    { "accept-proxy-from", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_ALL, 0, 0, 0, NULL, parse_accept_proxy_from,
      "CIDR", "only these sources (your balancers) may connect and send a PROXY header; any other connection is "
      "refused (end=denied), so nobody else can claim to speak for a client (repeatable; implies --accept-proxy)" },
    { "accept-proxy-timeout", 0, OPT_DURATION, SCOPE_LISTENER, MODE_ALL, L(accept_proxy_timeout_ms), 1, 600000,
      "3s", NULL, "DUR", "with --accept-proxy: close a connection whose PROXY header has not come by then" },
    { "send-proxy", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_SOCKS | MODE_RELAY, 0, 0, 0, NULL, parse_send_proxy,
      "v1|v2", "start every upstream connection with a PROXY protocol header naming the client and the "
      "address it connected to" },
    { "capture", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_ALL, 0, 0, 0, NULL, parse_capture,
      "FILE.pcap", "record both legs of every session as TCP/IP packets in a pcap file (Wireshark, tshark)" },
    { "capture-rotate", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_ALL, 0, 0, 0, NULL, parse_capture_rotate,
      "SIZE", "start a new capture file when one exceeds SIZE (500k, 10M, 1G): x.pcap, x.1.pcap, ..." },
    { "capture-filter", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_ALL, 0, 0, 0, NULL, parse_capture_filter,
      "client=CIDR,port=N", "capture only these sessions (terms of a kind OR'ed, kinds AND'ed; port: upstream's)" },
    { "capture-secrets", 0, OPT_FLAG, SCOPE_LISTENER, MODE_SOCKS_FRONT, L(capture_secrets), 0, 1, NULL, NULL,
      NULL, "keep SOCKS5 passwords in --capture and --hexdump (by default they are written as stars)" },
    { "hexdump", 0, OPT_FLAG, SCOPE_LISTENER, MODE_ALL, L(hexdump), 0, 1, NULL, NULL,
      NULL, "log every chunk of every session as an xxd-style dump (stderr unless --hexdump-file)" },
    { "hexdump-file", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_ALL, 0, 0, 0, NULL, parse_hexdump_file,
      "FILE", "append the hexdump to FILE instead of stderr (implies --hexdump)" },
    { "via", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_SOCKS | MODE_RELAY | MODE_SS_SERVER, 0, 0, 0, NULL, parse_via,
      "URL", "reach destinations through this parent proxy: socks5://[USER:PASS@]HOST:PORT, "
      "socks4a://[USERID@]HOST:PORT, http://[USER:PASS@]HOST:PORT (CONNECT) or ss://METHOD:PASSWORD@HOST:PORT; "
      "repeatable: a chain, first parent first (ss:// only last). Names are passed on unresolved; passwords "
      "are blanked in ps" },
    { "password", 'k', OPT_CUSTOM, SCOPE_LISTENER, MODE_SS, 0, 0, 0, NULL, parse_password,
      "PASSWORD", "Shadowsocks password (blanked in ps; --password-file keeps it out of argv entirely)" },
    { "password-file", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_SS, 0, 0, 0, NULL, parse_password_file,
      "FILE", "read the Shadowsocks password from the first line of FILE" },
    { "key", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_SS, 0, 0, 0, NULL, parse_key,
      "BASE64", "raw Shadowsocks master key instead of a password (blanked in ps)" },
    { "method", 'm', OPT_CUSTOM, SCOPE_LISTENER, MODE_SS, 0, 0, 0, "chacha20-ietf-poly1305", parse_method,
      "METHOD", "AEAD cipher: chacha20-ietf-poly1305, aes-128-gcm, aes-192-gcm, aes-256-gcm" },
    { "server", 's', OPT_CUSTOM, SCOPE_LISTENER, MODE_SS_LOCAL | MODE_MUX_LOCAL, 0, 0, 0, NULL, parse_server,
      "HOST:PORT", "the ss-server to tunnel through (ss-local), the mux-server to multiplex over (mux-local)" },
    { "tunnel-to", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_SS_LOCAL, 0, 0, 0, NULL, parse_tunnel_to,
      "HOST:PORT", "forward every connection to this fixed target (no SOCKS; like ss-tunnel)" },
    { "udp", 'u', OPT_FLAG, SCOPE_LISTENER, MODE_SS, L(udp), 0, 1, NULL, NULL,
      NULL, "relay UDP too, as ss-libev's -u: ss-local carries SOCKS5 UDP ASSOCIATE to the ss-server as "
      "Shadowsocks UDP packets; ss-server takes them on its TCP port's number" },
    { "pool", 0, OPT_UINT, SCOPE_LISTENER, MODE_SS_LOCAL, L(pool), 0, 1024, "0", NULL,
      "N", "keep N connections to the ss-server open ahead, per worker thread (0 = none)" },
    { "pool-max-age", 0, OPT_DURATION, SCOPE_LISTENER, MODE_SS_LOCAL, L(pool_max_age_ms), 1000, 3600000,
      "8s", NULL, "DUR", "replace a pooled connection this old (keep it below the server's handshake timeout)" },
    { "open", 0, OPT_FLAG, SCOPE_LISTENER, MODE_SOCKS_FRONT | MODE_MUX_SERVER, L(open), 0, 1, NULL, NULL,
      NULL, "allow a SOCKS listener (or a mux-server --dynamic) on a public address without users or --allow rules" },
    { "bind-strict", 0, OPT_FLAG, SCOPE_LISTENER, MODE_SOCKS, L(bind_strict), 0, 1, NULL, NULL,
      NULL, "SOCKS BIND: accept the inbound connection only from the address the request named (by default any "
      "peer, as RFC 1928 allows)" },
    { "dynamic", 0, OPT_FLAG, SCOPE_LISTENER, MODE_MUX_SERVER, L(mux_dynamic), 0, 1, NULL, NULL,
      NULL, "every stream starts with its target in SOCKS5 address form (ATYP, address, port), as from "
      "mux-local --socks; the destination policy applies as on ss-server" },
    { "socks", 0, OPT_FLAG, SCOPE_LISTENER, MODE_MUX_LOCAL, L(mux_socks), 0, 1, NULL, NULL,
      NULL, "a SOCKS 4/4a/5 (and HTTP proxy) front: the client's target goes at the stream's start, for a "
      "mux-server --dynamic; the reply is sent once the server has connected" },
    { "mux-conns", 0, OPT_UINT, SCOPE_LISTENER, MODE_MUX_LOCAL, L(mux_conns), 1, 64, "1", NULL,
      "N", "long-lived connections to the mux-server per worker thread, opened at start and re-dialled with "
      "backoff; streams go to the least loaded" },
    { "mux-max-streams", 0, OPT_UINT, SCOPE_LISTENER, MODE_MUX, L(mux_max_streams), 1, 1048576, "1024", NULL,
      "N", "streams open at once per mux connection; beyond it a stream is refused (RST) and its client closed" },
    { "mux-keepalive", 0, OPT_DURATION, SCOPE_LISTENER, MODE_MUX, L(mux_keepalive_ms), 0, 3600000, "30s", NULL,
      "DUR", "ping every mux connection this often; one that has not answered by the next ping is dropped "
      "(0 = no pings)" },
    { "toxic", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_ALL, 0, 0, 0, NULL, parse_toxic,
      "TYPE[:key=value,...]", "inject a fault, as toxiproxy's toxics: latency, bandwidth, slow_close, timeout, "
      "reset_peer, slicer, limit_data, bitflip, lua (repeatable; see docs/TOXICS.md)" },
    { "rewrite", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_ALL, 0, 0, 0, NULL, parse_rewrite,
      "DIR:MATCH:REPLACEMENT[:max=N]", "replace MATCH with REPLACEMENT in the relayed plaintext: DIR upstream "
      "(client to server), downstream or both; text with \\n \\r \\t \\xHH \\: escapes, or hex:HEX; "
      "at most N times per session and direction (repeatable, in order; see docs/FILTERS.md)" },
    { "filter", 0, OPT_CUSTOM, SCOPE_LISTENER, MODE_ALL, 0, 0, 0, NULL, parse_filter,
      "FILE.lua", "run every session's bytes through this Lua 5.4 script's hooks (sandboxed; see docs/FILTERS.md)" },
    { "global-maxconn", 0, OPT_UINT, SCOPE_GLOBAL, MODE_ALL, G(global_maxconn), 0, 10000000, "0", NULL,
      "N", "at most N sessions in the whole process (0 = no limit)" },
    { "threads", 0, OPT_UINT, SCOPE_GLOBAL, MODE_ALL, G(threads), 0, 256, "0", NULL,
      "N", "worker threads (0 = one per CPU)" },
    { "log-level", 0, OPT_CUSTOM, SCOPE_GLOBAL, MODE_ALL, 0, 0, 0, "info", parse_log_level,
      "LEVEL", "quiet, error, warn, info (one line per session) or debug" },
    { "log-format", 0, OPT_CUSTOM, SCOPE_GLOBAL, MODE_ALL, 0, 0, 0, "text", parse_log_format,
      "FORMAT", "text (TIME LEVEL key=value ...) or json (one object per line, the key=value pairs as fields)" },
    { "log-sessions", 0, OPT_CUSTOM, SCOPE_GLOBAL, MODE_ALL, 0, 0, 0, "end", parse_log_sessions,
      "LIST", "session lines to log: end (one line when a session ends), start (when bytes begin to flow), "
      "or start,end" },
    { "log-file", 0, OPT_CUSTOM, SCOPE_GLOBAL, MODE_ALL, 0, 0, 0, NULL, parse_log_file,
      "FILE", "append log lines to FILE instead of stderr; SIGUSR1 reopens it (logrotate)" },
    { "syslog", 0, OPT_CUSTOM, SCOPE_GLOBAL, MODE_ALL, 0, 0, 0, NULL, parse_syslog,
      "TARGET", "also send log lines to syslog (RFC 3164), to a local socket (unix:/dev/log, or any absolute path) "
      "or over UDP (udp:HOST:PORT, HOST:PORT, [v6]:PORT; a name is looked up once, at start); SIGUSR1 reconnects" },
    { "syslog-facility", 0, OPT_CUSTOM, SCOPE_GLOBAL, MODE_ALL, 0, 0, 0, "daemon", parse_syslog_facility,
      "NAME", "with --syslog: the facility, as syslog.conf names it (kern, user, daemon, auth, local0 to local7...)" },
    { "syslog-tag", 0, OPT_CUSTOM, SCOPE_GLOBAL, MODE_ALL, 0, 0, 0, "ferry", parse_syslog_tag,
      "TAG", "with --syslog: the name each message is tagged with, as TAG[PID]" },
    { "drain-timeout", 0, OPT_DURATION, SCOPE_GLOBAL, MODE_ALL, G(drain_timeout_ms), 0, 3600000,
      "10s", NULL, "DUR", "on SIGTERM/SIGINT, wait this long for sessions to finish" },
    { "run-as", 0, OPT_CUSTOM, SCOPE_GLOBAL, MODE_ALL, 0, 0, 0, NULL, parse_run_as,
      "USER", "once listening, switch to this user (start as root; not root itself)" },
    { "run-as-group", 0, OPT_CUSTOM, SCOPE_GLOBAL, MODE_ALL, 0, 0, 0, NULL, parse_run_as_group,
      "GROUP", "with --run-as: this group instead of the user's own" },
    { "chroot", 0, OPT_CUSTOM, SCOPE_GLOBAL, MODE_ALL, 0, 0, 0, NULL, parse_chroot,
      "DIR", "with --run-as: confine ferry to DIR once listening (see docs/RELIABILITY.md)" },
    { "api", 0, OPT_CUSTOM, SCOPE_GLOBAL, MODE_ALL, 0, 0, 0, NULL, parse_api,
      "ADDR", "serve toxiproxy's HTTP API (proxies, toxics) here; loopback only unless --api-open" },
    { "api-open", 0, OPT_FLAG, SCOPE_GLOBAL, MODE_ALL, G(api_open), 0, 1, NULL, NULL,
      NULL, "allow --api on a non-loopback address: whoever reaches it can open relays and break traffic" },
    { "metrics", 0, OPT_CUSTOM, SCOPE_GLOBAL, MODE_ALL, 0, 0, 0, NULL, parse_metrics,
      "ADDR", "serve Prometheus metrics at http://ADDR/metrics (see docs/METRICS.md); loopback only unless "
      "--metrics-open" },
    { "metrics-open", 0, OPT_FLAG, SCOPE_GLOBAL, MODE_ALL, G(metrics_open), 0, 1, NULL, NULL,
      NULL, "allow --metrics on a non-loopback address: whoever reaches it sees listener names, upstream "
      "servers and traffic volumes" },
    { "metrics-users", 0, OPT_FLAG, SCOPE_GLOBAL, MODE_ALL, G(metrics_users), 0, 1, NULL, NULL,
      NULL, "with --metrics: also count sessions and bytes per authenticated user (a user label)" },
    { NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL },
};

int cfg_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CFG_NAME_MAX) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return 0;
    return 1;
}

int opt_is_secret(const struct opt_def *o)
{
    return o->parse == parse_user || o->parse == parse_password || o->parse == parse_key;
}

int opt_secret_span(const struct opt_def *o, const char *val, size_t *off, size_t *n)
{
    if (o->parse == parse_via) return via_url_secret(val, off, n);
    if (!opt_is_secret(o)) return 0;
    *off = 0;
    *n = strlen(val);
    return 1;
}

const struct opt_def *opt_find_long(const char *name)
{
    for (const struct opt_def *o = opt_table; o->name; o++)
        if (strcmp(o->name, name) == 0) return o;
    return NULL;
}

const struct opt_def *opt_find_short(char c, int mode)
{
    const struct opt_def *first = NULL;
    for (const struct opt_def *o = opt_table; o->name; o++) {
        if (o->short_name != c) continue;
        if (o->modes & mode) return o;
        if (!first) first = o;
    }
    return first;
}

int opt_apply(const struct opt_def *o, struct ferry_cfg *g, struct listener_cfg *l,
              const char *val, char *err, size_t errlen)
{
    void *base = o->scope == SCOPE_GLOBAL ? (void *)g : (void *)l;
    unsigned *field = (unsigned *)((char *)base + o->offset);
    unsigned long v = 0;
    char *end;
    switch (o->type) {
    case OPT_FLAG:
        *(int *)((char *)base + o->offset) = 1;
        return 0;
    case OPT_CUSTOM:
        return o->parse(base, val, err, errlen);
    case OPT_DURATION:
        if (opt_parse_duration(val, field) < 0) {
            snprintf(err, errlen, "'%s': expected a duration like 250ms, 10s, 5m", val);
            return -1;
        }
        v = *field;
        break;
    case OPT_UINT:
        errno = 0;
        v = strtoul(val, &end, 10);
        if (errno || *end || end == val || val[0] < '0' || val[0] > '9' || v > o->max) {
            snprintf(err, errlen, "'%s': expected a whole number from %lu to %lu", val, o->min, o->max);
            return -1;
        }
        break;
    }
    if (v < o->min || v > o->max) {
        snprintf(err, errlen, "'%s': out of range", val);
        return -1;
    }
    *field = (unsigned)v;
    return 0;
}

int opt_defaults(struct ferry_cfg *g, struct listener_cfg *l, char *err, size_t errlen)
{
    for (const struct opt_def *o = opt_table; o->name; o++) {
        if (!o->defval || !(o->modes & l->mode)) continue;
        if (opt_apply(o, g, l, o->defval, err, errlen) < 0) return -1;
    }
    return 0;
}

static void free_secret(char **p)
{
    if (!*p) return;
    explicit_bzero(*p, strlen(*p));
    free(*p);
    *p = NULL;
}

static int any_public_listen(const struct listener_cfg *l)
{
    for (size_t i = 0; i < l->nlisten; i++)
        if (!net_addr_is_loopback(&l->listen[i])) return 1;
    return 0;
}

/* A service bound to 0.0.0.0 or :: answers on every address of the host,
 * so each of them is as much "this host" as loopback is. Read once at
 * start-up: an address added later is not denied. */
static int add_host_addr_denies(struct listener_cfg *l, char *err, size_t errlen)
{
    struct ifaddrs *ifs, *i;
    char ip[INET6_ADDRSTRLEN], spec[INET6_ADDRSTRLEN + 8];
    int rc = 0;
    if (getifaddrs(&ifs) < 0) {
        snprintf(err, errlen, "%s: cannot list this host's addresses (to deny them as destinations): %s",
                 l->name, strerror(errno));
        return -1;
    }
    for (i = ifs; i && rc == 0; i = i->ifa_next) {
        const struct sockaddr *sa = i->ifa_addr;
        int v4 = sa && sa->sa_family == AF_INET;
        if (!sa || (!v4 && sa->sa_family != AF_INET6)) continue;
        const void *a = v4 ? (const void *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr
                           : (const void *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (!inet_ntop(sa->sa_family, a, ip, sizeof(ip))) continue;
        snprintf(spec, sizeof(spec), "%s/%d", ip, v4 ? 32 : 128);
        rc = acl_add_dest(&l->dest_acl, 0, spec, err, errlen);
    }
    freeifaddrs(ifs);
    return rc;
}

/* Destinations a proxy reachable from the network must not reach unless the
 * operator allows them explicitly (SSRF): the shared table of policy/acl.h
 * (ss-server with the private ranges too) and the host's own addresses.
 * Appended after the operator's rules, so an explicit allow still wins
 * (first match wins). */
static int add_default_dest_denies(struct listener_cfg *l, char *err, size_t errlen)
{
    if (acl_add_default_denies(&l->dest_acl, l->mode == MODE_SS_SERVER || l->mode == MODE_MUX_SERVER, err, errlen) < 0)
        return -1;
    return add_host_addr_denies(l, err, errlen);
}

static int finish_ss(struct listener_cfg *l, char *err, size_t errlen)
{
    const struct ss_method *m = ss_method_find(l->ss_method);
    if (!l->ss_password == !l->ss_key_b64) {
        snprintf(err, errlen, "%s needs exactly one of --password, --password-file or --key",
                 l->mode == MODE_SS_SERVER ? "ss-server" : "ss-local");
        return -1;
    }
    if (l->mode == MODE_SS_LOCAL && !l->has_ss_server) {
        snprintf(err, errlen, "ss-local needs the server: -s HOST:PORT");
        return -1;
    }
    if (l->udp && l->nvia) {
        snprintf(err, errlen, "--udp with --via: datagrams cannot go through parent proxies, and would leave "
                 "directly");
        return -1;
    }
    if (l->udp && l->has_tunnel_to) {
        snprintf(err, errlen, "--udp with --tunnel-to: a fixed-target UDP tunnel is not supported (UDP comes "
                 "through the SOCKS front's UDP ASSOCIATE)");
        return -1;
    }
    int from_password = l->ss_password != NULL;
    int r = from_password ? ss_key_from_password(m, l->ss_password, l->ss_key)
                          : ss_key_from_base64(m, l->ss_key_b64, l->ss_key, err, errlen);
    free_secret(&l->ss_password);
    free_secret(&l->ss_key_b64);
    if (r < 0 && from_password) snprintf(err, errlen, "cannot derive the key from the password");
    return r < 0 ? -1 : 0;
}

/* --resolve all applies to every HOST:PORT upstream; the refresh bounds
 * must make sense together. */
static int finish_discovery(struct listener_cfg *l, char *err, size_t errlen)
{
    if (l->dns_refresh_min_ms > l->dns_refresh_max_ms) {
        snprintf(err, errlen, "--dns-refresh-min (%ums) is above --dns-refresh-max (%ums)", l->dns_refresh_min_ms,
                 l->dns_refresh_max_ms);
        return -1;
    }
    for (size_t i = 0; i < l->nupstreams; i++)
        if (l->resolve_all && !l->upstreams[i].srv) l->upstreams[i].resolve_all = 1;
    return 0;
}

int cfg_discovered(const struct listener_cfg *l)
{
    if (!cfg_balanced(l)) return 0;
    for (size_t i = 0; i < l->nupstreams; i++)
        if (l->upstreams[i].srv || l->upstreams[i].resolve_all) return 1;
    return 0;
}

int cfg_listener_finish(struct listener_cfg *l, char *err, size_t errlen)
{
    if (l->nlisten == 0) {
        if (l->mode != MODE_SOCKS) {
            snprintf(err, errlen, "%s needs a listen address: -l HOST:PORT", l->name);
            return -1;
        }
        net_addr_parse(CFG_SOCKS_LISTEN, &l->listen[l->nlisten++], err, errlen);
    }
    if (l->mode == MODE_RELAY && l->nupstreams == 0) {
        snprintf(err, errlen, "relay needs at least one upstream: -u HOST:PORT");
        return -1;
    }
    if (l->mode == MODE_MUX_SERVER && !l->mux_dynamic == !l->nupstreams) {
        snprintf(err, errlen, "mux-server needs either upstreams (-u HOST:PORT) or --dynamic, not both");
        return -1;
    }
    if (l->mode == MODE_MUX_LOCAL && !l->has_ss_server) {
        snprintf(err, errlen, "mux-local needs the mux-server: -s HOST:PORT");
        return -1;
    }
    if ((l->mode & MODE_SS) && finish_ss(l, err, errlen) < 0) return -1;
    if (cfg_balanced(l) && finish_discovery(l, err, errlen) < 0) return -1;
    if (!l->capture_path[0] && (l->capture_rotate || l->capture_filter.nnets || l->capture_filter.nports)) {
        snprintf(err, errlen, "%s: --capture-%s needs --capture FILE", l->name,
                 l->capture_rotate ? "rotate" : "filter");
        return -1;
    }
    if (l->capture_secrets && !l->capture_path[0] && !l->hexdump) {
        snprintf(err, errlen, "%s: --capture-secrets needs --capture FILE or --hexdump", l->name);
        return -1;
    }
    /* Rotating stdout would write files named "-.1", "-.2", ... */
    if (strcmp(l->capture_path, "-") == 0 && l->capture_rotate) {
        snprintf(err, errlen, "%s: --capture - writes to stdout, which cannot be rotated: drop --capture-rotate",
                 l->name);
        return -1;
    }
    return cfg_listener_exposure(l, err, errlen);
}

int cfg_listener_exposure(struct listener_cfg *l, char *err, size_t errlen)
{
    if (!any_public_listen(l)) return 0;
    if (cfg_socks_front(l) && !l->nusers && !l->client_acl.n && !l->open) {
        snprintf(err, errlen, "refusing to run an open SOCKS proxy on a public address: add --user, "
                 "--allow CIDR, or --open if that is really what you want");
        return -1;
    }
    /* yamux has no authentication: a public --dynamic mux-server is an
     * open proxy unless only known clients may connect (or it sits behind
     * an ss-server on loopback, the usual way). */
    if (l->mode == MODE_MUX_SERVER && l->mux_dynamic && !l->client_acl.n && !l->open) {
        snprintf(err, errlen, "refusing to run mux-server --dynamic (an open proxy: yamux has no authentication) "
                 "on a public address: add --allow CIDR, put it behind ss-server on loopback, or --open");
        return -1;
    }
    /* Once: a listener the API moves between public addresses keeps one set. */
    if ((l->mode & MODE_DEST_POLICY) && !l->dest_denies_added) {
        size_t before = l->dest_acl.n;
        if (add_default_dest_denies(l, err, errlen) < 0) return -1;
        l->dest_denies_added = (int)(l->dest_acl.n - before);
    }
    return 0;
}

void cfg_free(struct ferry_cfg *c)
{
    for (size_t i = 0; i < c->nlisteners; i++) {
        struct listener_cfg *l = &c->listeners[i];
        for (size_t u = 0; u < l->nusers; u++) {
            free(l->users[u].name);
            /* Wipe the password bytes before handing memory back. */
            explicit_bzero(l->users[u].pass, l->users[u].pass_len);
            free(l->users[u].pass);
        }
        free(l->users);
        free_secret(&l->ss_password);
        free_secret(&l->ss_key_b64);
        explicit_bzero(l->ss_key, sizeof(l->ss_key));
        explicit_bzero(l->via, sizeof(l->via));
        if (l->replay) replay_free(l->replay);
        acl_free(&l->client_acl);
        acl_free(&l->proxy_from);
        acl_free(&l->dest_acl);
        free(l->toxics);
        rewrite_set_free(&l->rewrite);
    }
    free(c->listeners);
    c->listeners = NULL;
    c->nlisteners = 0;
    free(c->groups);
    c->groups = NULL;
    c->ngroups = 0;
}

int cfg_global_finish(const struct ferry_cfg *g, const char **key, char *err, size_t errlen)
{
    /* The API can open relays to anywhere and break traffic on purpose,
     * with no authentication (as toxiproxy's): reachable from the network,
     * it would be an open proxy and a remote off switch. */
    if (g->has_api && !g->api_open && !net_addr_is_loopback(&g->api_addr)) {
        *key = "api";
        snprintf(err, errlen, "refusing to serve the API on a non-loopback address (it has no authentication): "
                 "use 127.0.0.1:PORT, or add --api-open if that is really what you want");
        return -1;
    }
    if (g->has_metrics && !g->metrics_open && !net_addr_is_loopback(&g->metrics_addr)) {
        *key = "metrics";
        snprintf(err, errlen, "refusing to serve metrics on a non-loopback address (no authentication): "
                 "use 127.0.0.1:PORT, or add --metrics-open if that is really what you want");
        return -1;
    }
    if (g->has_metrics && g->has_api && net_addr_overlap(&g->metrics_addr, &g->api_addr)) {
        *key = "metrics";
        snprintf(err, errlen, "--metrics: the API already serves /metrics: leave --metrics out, or give it "
                 "another address");
        return -1;
    }
    for (size_t i = 0; g->has_metrics && i < g->nlisteners; i++) {
        const struct listener_cfg *l = &g->listeners[i];
        const struct net_addr *had = cfg_listen_clash(l, l->nlisten, &g->metrics_addr);
        if (had) {
            char owner[64], why[200];
            *key = "metrics";
            snprintf(owner, sizeof(owner), "listener '%s'", l->name);
            cfg_clash_text(&g->metrics_addr, had, owner, why, sizeof(why));
            snprintf(err, errlen, "--metrics %s", why);
            return -1;
        }
    }
    for (size_t i = 0; g->has_api && i < g->nlisteners; i++) {
        const struct listener_cfg *l = &g->listeners[i];
        const struct net_addr *had = cfg_listen_clash(l, l->nlisten, &g->api_addr);
        if (had) {
            char owner[64], why[200];
            *key = "api";
            snprintf(owner, sizeof(owner), "listener '%s'", l->name);
            cfg_clash_text(&g->api_addr, had, owner, why, sizeof(why));
            snprintf(err, errlen, "--api %s", why);
            return -1;
        }
    }
    /* Root keeps every capability inside a chroot, and a group change alone
     * leaves root root: neither protects anything. */
    if (!g->run_as[0] && (g->run_as_group[0] || g->chroot_dir[0])) {
        *key = g->chroot_dir[0] ? "chroot" : "run-as-group";
        snprintf(err, errlen, "--%s needs --run-as USER", *key);
        return -1;
    }
    if (!g->syslog_target[0] && (g->syslog_facility != SYSLOG_FACILITY_DEFAULT || strcmp(g->syslog_tag, "ferry") != 0)) {
        *key = g->syslog_facility != SYSLOG_FACILITY_DEFAULT ? "syslog-facility" : "syslog-tag";
        snprintf(err, errlen, "--%s needs --syslog TARGET", *key);
        return -1;
    }
    if (g->chroot_dir[0] && g->chroot_dir[0] != '/') {
        *key = "chroot";
        snprintf(err, errlen, "--chroot '%.200s': needs an absolute path", g->chroot_dir);
        return -1;
    }
    return 0;
}

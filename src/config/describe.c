/* describe.c - a listener's start-up line: what it will do, without secrets.
 *
 * One line per listener, key=value after the listen addresses, so an
 * operator sees at start what the configuration means (upstreams, who may
 * authenticate, filters, toxics, rewrite rules counted by direction) rather than what was typed. Names are
 * sanitised (an API-made listener's hosts come from a client of the API);
 * passwords and keys are never read here, only counted or named by method.
 */
#include "config/describe.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config/options.h"
#include "obs/log.h"
#include "stage/rewrite.h"
#include "stage/toxic.h"

struct out {
    char *p;
    size_t len, cap;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends; a line that does not fit is cut, never overrun. */
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    if (o->len >= o->cap) return;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0) o->len = o->len + (size_t)n < o->cap ? o->len + (size_t)n : o->cap - 1;
}

static void put_host_port(struct out *o, const struct host_port *hp)
{
    char host[256];
    log_sanitize(host, sizeof(host), hp->host);
    put(o, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, hp->port);
}

static void put_upstreams(struct out *o, const struct listener_cfg *l)
{
    put(o, " upstreams=");
    if (l->group) put(o, "%s:", l->group->name);
    for (size_t i = 0; i < l->nupstreams; i++) {
        const struct upstream_cfg *u = &l->upstreams[i];
        put(o, i ? "," : "");
        if (u->srv) put(o, "srv://%s", u->hp.host);
        else put_host_port(o, &u->hp);
        if (u->resolve_all) put(o, "/all");
        if (u->weight != 1) put(o, "/w%d", u->weight);
        if (u->backup) put(o, "/backup");
        if (u->maxconn) put(o, "/maxconn%u", u->maxconn);
    }
    put(o, " balance=%s retries=%u", cfg_balance_names[cfg_effective_balance(l)], l->retries);
    if (cfg_discovered(l)) put(o, " dns-refresh=%u-%ums", l->dns_refresh_min_ms, l->dns_refresh_max_ms);
    const struct health_cfg *h = cfg_effective_health(l);
    if (h->interval_ms) put(o, " checks=%ums", h->interval_ms);
    else put(o, " checks=off");
}

/* Who may use a SOCKS front: never a password, only how many users. */
static void put_auth(struct out *o, const struct listener_cfg *l)
{
    if (!l->nusers) {
        put(o, " auth=none");
        return;
    }
    put(o, " auth=users:%zu", l->nusers);
    if (l->allow_anonymous) put(o, "+anonymous");
    if (l->allow_socks4) put(o, "+socks4");
}

static void count_rules(const struct acl *a, size_t n, unsigned *allow, unsigned *deny)
{
    *allow = *deny = 0;
    for (size_t i = 0; i < n && i < a->n; i++) (a->rules[i].allow ? allow : deny)[0]++;
}

/* Filters: the operator's rules counted, the default denies named apart. */
static void put_filters(struct out *o, const struct listener_cfg *l)
{
    unsigned allow, deny;
    count_rules(&l->client_acl, l->client_acl.n, &allow, &deny);
    put(o, " clients=%s", l->client_acl.n ? "" : "any");
    if (l->client_acl.n) put(o, "allow:%u,deny:%u", allow, deny);
    if (l->mode != MODE_SOCKS && l->mode != MODE_SS_SERVER) return;
    size_t defaults = (size_t)l->dest_denies_added;
    size_t own = l->dest_acl.n > defaults ? l->dest_acl.n - defaults : 0;
    count_rules(&l->dest_acl, own, &allow, &deny);
    put(o, " dests=");
    if (own) put(o, "allow:%u,deny:%u", allow, deny);
    else put(o, "any");
    if (defaults) put(o, "+default_denies:%zu", defaults);
}

static void put_toxics(struct out *o, const struct listener_cfg *l)
{
    char name[64];
    put(o, " toxics=");
    if (!l->ntoxics) put(o, "none");
    for (size_t i = 0; i < l->ntoxics; i++) {
        const struct toxic_spec *t = &l->toxics[i];
        log_sanitize(name, sizeof(name), t->name);
        put(o, "%s%s(%s,%s", i ? "," : "", name, toxic_type_name(t->type), toxic_stream_name(t->streams));
        if (t->toxicity < 1.0) put(o, ",toxicity=%g", t->toxicity);
        put(o, ")");
    }
}

size_t cfg_describe_listener(const struct listener_cfg *l, unsigned threads, char *out, size_t outlen)
{
    struct out o = { out, 0, outlen };
    char a[NET_ADDR_STRLEN];
    if (!outlen) return 0;
    out[0] = '\0';
    put(&o, "%s listening on ", l->name);
    for (size_t j = 0; j < l->nlisten; j++)
        put(&o, "%s%s", j ? "," : "", net_addr_format(&l->listen[j], a, sizeof(a)));
    put(&o, " (%u thread%s): mode=%s", threads, threads == 1 ? "" : "s", opt_mode_name(l->mode));
    if (cfg_balanced(l)) put_upstreams(&o, l);
    if (l->mode == MODE_MUX_SERVER && l->mux_dynamic) put(&o, " dynamic=on");
    if (l->mode & MODE_SS) put(&o, " method=%s udp=%s", l->ss_method, l->udp ? "on" : "off");
    if (l->mode == MODE_MUX_LOCAL) {
        put(&o, " server=");
        put_host_port(&o, &l->ss_server);
        put(&o, " conns=%u", l->mux_conns);
    }
    if (l->mode & MODE_MUX) put(&o, " max_streams=%u keepalive_ms=%u", l->mux_max_streams, l->mux_keepalive_ms);
    if (l->mode == MODE_SS_LOCAL) {
        put(&o, " server=");
        put_host_port(&o, &l->ss_server);
        if (l->pool) put(&o, " pool=%u", l->pool);
    }
    if (l->has_tunnel_to) {
        put(&o, " tunnel_to=");
        put_host_port(&o, &l->tunnel_to);
    }
    for (size_t i = 0; i < l->nvia; i++) {
        char v[300];
        via_url_format(&l->via[i], v, sizeof(v));    /* no user, no password */
        put(&o, "%s%s", i ? "," : " via=", v);
    }
    if (cfg_socks_front(l)) {
        put(&o, " http=%s", l->no_http ? "off" : "on");
        put_auth(&o, l);
    }
    put_filters(&o, l);
    put_toxics(&o, l);
    if (l->rewrite.n)
        put(&o, " rewrite=upstream:%zu,downstream:%zu", rewrite_set_count(&l->rewrite, 1),
            rewrite_set_count(&l->rewrite, 0));
    if (l->maxconn) put(&o, " maxconn=%u", l->maxconn);
    if (l->accept_proxy) put(&o, " accept_proxy=on");
    if (l->send_proxy) put(&o, " send_proxy=v%u", l->send_proxy);
    if (l->capture_path[0]) put(&o, " capture=on");
    if (l->hexdump) put(&o, " hexdump=on");
    return o.len;
}

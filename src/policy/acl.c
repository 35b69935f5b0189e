/* acl.c - see acl.h. */
#include "policy/acl.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whole decimal number, digits only (strtoul alone accepts "+8", " 8"). */
static int parse_decimal(const char *s, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > max) return -1;
    }
    *out = v;
    return 0;
}

int cidr_parse(const char *s, struct cidr *out, char *err, size_t errlen)
{
    char ip[64];
    const char *slash = strchr(s, '/');
    size_t iplen = slash ? (size_t)(slash - s) : strlen(s);
    memset(out, 0, sizeof(*out));
    if (iplen == 0 || iplen >= sizeof(ip)) goto bad;
    memcpy(ip, s, iplen);
    ip[iplen] = '\0';
    if (inet_pton(AF_INET, ip, out->addr) == 1) out->family = 4;
    else if (inet_pton(AF_INET6, ip, out->addr) == 1) out->family = 6;
    else goto bad;
    unsigned max = out->family == 4 ? 32 : 128;
    out->prefix = (uint8_t)max;
    if (slash) {
        unsigned long p;
        if (parse_decimal(slash + 1, max, &p) < 0) goto bad;
        out->prefix = (uint8_t)p;
    }
    for (unsigned bit = out->prefix; bit < max; bit++)
        out->addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
    return 0;
bad:
    snprintf(err, errlen, "'%.80s': expected an IP address or CIDR (e.g. 10.0.0.0/8, ::1/128)", s);
    return -1;
}

int cidr_match(const struct cidr *c, int family, const uint8_t *addr)
{
    uint8_t mapped[4];
    /* An IPv4-mapped IPv6 peer (::ffff:a.b.c.d) matches IPv4 rules. */
    if (c->family == 4 && family == 6 &&
        memcmp(addr, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
        memcpy(mapped, addr + 12, 4);
        addr = mapped;
        family = 4;
    }
    if (c->family != family) return 0;
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->addr, addr, full) != 0) return 0;
    if (rest == 0) return 1;
    uint8_t mask = (uint8_t)(0xFFu << (8 - rest));
    return (addr[full] & mask) == c->addr[full];
}

static struct acl_rule *acl_push(struct acl *a, int allow)
{
    struct acl_rule *r = realloc(a->rules, (a->n + 1) * sizeof(*r));
    if (!r) return NULL;
    a->rules = r;
    r = &a->rules[a->n++];
    memset(r, 0, sizeof(*r));
    r->allow = (uint8_t)(allow != 0);
    if (allow) a->explicit_allow = 1;
    return r;
}

int acl_add_client(struct acl *a, int allow, const char *spec, char *err, size_t errlen)
{
    struct cidr c;
    if (cidr_parse(spec, &c, err, errlen) < 0) return -1;
    struct acl_rule *r = acl_push(a, allow);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->net = c;
    return 0;
}

/* Splits "X:PORT" / "[v6]/n:PORT" / "X" into the network part and port.
 * Brackets are for IPv6 only. Returns 0, or -1 on any malformed part. */
static int split_port(const char *spec, char *what, size_t whatlen, uint16_t *port)
{
    const char *colon = NULL;
    struct in6_addr a6;
    char ip[INET6_ADDRSTRLEN];
    *port = 0;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || (size_t)(close - spec - 1) >= sizeof(ip)) return -1;
        memcpy(ip, spec + 1, (size_t)(close - spec - 1));
        ip[close - spec - 1] = '\0';
        if (inet_pton(AF_INET6, ip, &a6) != 1) return -1;
        const char *after = close + 1;
        size_t prefix = *after == '/' ? strcspn(after, ":") : 0;
        colon = after[prefix] == ':' ? after + prefix : NULL;
        if (after[prefix] && !colon) return -1;
        if (strlen(ip) + prefix >= whatlen) return -1;
        snprintf(what, whatlen, "%s%.*s", ip, (int)prefix, after);
    } else {
        colon = strchr(spec, ':');
        if (colon && strchr(colon + 1, ':')) colon = NULL;   /* bare IPv6 CIDR */
        size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
        if (n >= whatlen) return -1;
        memcpy(what, spec, n);
        what[n] = '\0';
    }
    if (colon) {
        unsigned long p;
        if (parse_decimal(colon + 1, 65535, &p) < 0 || p == 0) return -1;
        *port = (uint16_t)p;
    }
    return what[0] ? 0 : -1;
}

/* Labels are non-empty: "a..b", ".a" or "a.." names no host a request can
 * carry (one trailing dot is stripped from both sides), so such a rule
 * would silently never match. One trailing dot is allowed. */
static int valid_host_rule(const char *h)
{
    if (h[0] == '*' && h[1] == '.') h += 2;
    if (!*h || *h == '.' || strstr(h, "..")) return 0;
    for (; *h; h++)
        if (!isalnum((unsigned char)*h) && *h != '-' && *h != '.' && *h != '_') return 0;
    return 1;
}

int acl_add_dest(struct acl *a, int allow, const char *spec, char *err, size_t errlen)
{
    char what[256];
    uint16_t port;
    struct cidr c;
    char ignore[8];
    if (split_port(spec, what, sizeof(what), &port) < 0) {
        snprintf(err, errlen, "'%.80s': expected CIDR|HOST[:PORT]", spec);
        return -1;
    }
    int is_cidr = cidr_parse(what, &c, ignore, sizeof(ignore)) == 0;
    if (!is_cidr && !valid_host_rule(what)) {
        snprintf(err, errlen, "'%.80s': expected CIDR|HOST[:PORT]", spec);
        return -1;
    }
    struct acl_rule *r = acl_push(a, allow);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->port = port;
    r->is_host = (uint8_t)!is_cidr;
    if (is_cidr) {
        r->net = c;
    } else {
        size_t n = strlen(what);
        if (n > 1 && what[n - 1] == '.') what[--n] = '\0';   /* "a.b." is "a.b" */
        for (size_t i = 0; i <= n; i++) r->host[i] = (char)tolower((unsigned char)what[i]);
    }
    return 0;
}

void acl_free(struct acl *a)
{
    free(a->rules);
    a->rules = NULL;
    a->n = 0;
    a->explicit_allow = 0;
}

int acl_copy(struct acl *dst, const struct acl *src)
{
    *dst = *src;
    dst->rules = NULL;
    if (!src->n) return 0;
    dst->rules = malloc(src->n * sizeof(*src->rules));
    if (!dst->rules) {
        dst->n = 0;
        dst->explicit_allow = 0;
        return -1;
    }
    memcpy(dst->rules, src->rules, src->n * sizeof(*src->rules));
    return 0;
}

static int verdict_default(const struct acl *a)
{
    return a->n == 0 || !a->explicit_allow;
}

int acl_check_addr(const struct acl *a, int family, const uint8_t *addr)
{
    for (size_t i = 0; i < a->n; i++)
        if (!a->rules[i].is_host && cidr_match(&a->rules[i].net, family, addr))
            return a->rules[i].allow;
    return verdict_default(a);
}

/* Case-insensitive; one trailing dot on the requested name is ignored
 * ("evil.test." is the same host as "evil.test" to any resolver, so it must
 * be to the rules too). */
static int host_match(const char *rule, const char *host)
{
    size_t hl = strlen(host);
    if (hl > 1 && host[hl - 1] == '.') hl--;
    if (rule[0] == '*' && rule[1] == '.') {
        const char *suffix = rule + 2;
        size_t sl = strlen(suffix);
        if (hl == sl) return strncasecmp(host, suffix, sl) == 0;
        return hl > sl && host[hl - sl - 1] == '.' && strncasecmp(host + hl - sl, suffix, sl) == 0;
    }
    return strlen(rule) == hl && strncasecmp(rule, host, hl) == 0;
}

int acl_check_dest(const struct acl *a, const char *host, int family, const uint8_t *addr,
                   uint16_t port)
{
    for (size_t i = 0; i < a->n; i++) {
        const struct acl_rule *r = &a->rules[i];
        if (r->port && r->port != port) continue;
        if (r->is_host ? (host && host_match(r->host, host))
                       : (addr && cidr_match(&r->net, family, addr)))
            return r->allow;
    }
    return verdict_default(a);
}

enum acl_verdict acl_check_dest_name(const struct acl *a, const char *host, uint16_t port)
{
    for (size_t i = 0; i < a->n; i++) {
        const struct acl_rule *r = &a->rules[i];
        if (r->port && r->port != port) continue;
        if (!r->is_host) return ACL_UNDECIDED;
        if (host_match(r->host, host)) return r->allow ? ACL_ALLOW : ACL_DENY;
    }
    return verdict_default(a) ? ACL_ALLOW : ACL_DENY;
}

/* Cloud metadata services live in link-local (169.254.169.254, fe80::),
 * unique-local (AWS fd00:ec2::254) and shared CGN space (Alibaba
 * 100.100.100.200): all three are denied in every mode, like loopback and
 * "this host" (0.0.0.0/8 and :: reach local services on Linux). */
const struct acl_default_deny acl_default_denies[] = {
    { "127.0.0.0/8", 0 },
    { "::1/128", 0 },
    { "0.0.0.0/8", 0 },
    { "::/128", 0 },
    { "169.254.0.0/16", 0 },
    { "fe80::/10", 0 },
    { "100.64.0.0/10", 0 },
    { "fc00::/7", 0 },
    { "10.0.0.0/8", 1 },
    { "172.16.0.0/12", 1 },
    { "192.168.0.0/16", 1 },
    { NULL, 0 },
};

int acl_add_default_denies(struct acl *a, int with_private, char *err, size_t errlen)
{
    for (const struct acl_default_deny *d = acl_default_denies; d->cidr; d++)
        if ((with_private || !d->private_net) && acl_add_dest(a, 0, d->cidr, err, errlen) < 0) return -1;
    return 0;
}

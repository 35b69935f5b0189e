/* fuzz_addr.c - libFuzzer target for the address and rule parsers:
 * host_port_parse, net_addr_parse, cidr_parse, acl_add_client/acl_add_dest.
 *
 * The input (cut at 1024 bytes) is made a NUL-terminated string in an
 * exactly-sized heap block, as the CLI would pass it. Invariants checked
 * (abort() on violation):
 *   - every parser returns 0 or -1; on -1 err is a non-empty string that fits
 *     its buffer, on 0 the outputs are in range;
 *   - HOST:PORT written back from a parsed host_port parses to the same;
 *     port 0 only with allow_port0; what parses without port 0 also parses
 *     with it, identically;
 *   - a parsed net_addr formats within NET_ADDR_STRLEN and re-parses to the
 *     same bytes; net_addr_is_loopback agrees with a direct check;
 *   - a parsed CIDR has its host bits clear, matches its own network (and,
 *     for IPv4, the IPv4-mapped form), matches with the first host bit
 *     flipped, not with the last network bit flipped, and "IP/PREFIX"
 *     written back re-parses to the same;
 *   - acl_add_client accepts exactly what cidr_parse accepts;
 *   - a destination rule that parses is matched by the request it names
 *     (verdict = the rule's allow bit), its port is honoured, and a host rule
 *     is lowercase [a-z0-9._-] with "*." only in front;
 *   - the input used as a request host against fixed "*.example.com" and
 *     "exact.test" rules agrees with a reference matcher (suffix on a label
 *     boundary, case-insensitive).
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/addr.h"
#include "policy/acl.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define INPUT_MAX 1024
#define ERRLEN 128

/* A failed parse leaves a reason that fits; a successful one may leave err
 * as it was. */
static void check_err(int rc, const char *err)
{
    CHECK(rc == 0 || rc == -1);
    if (rc < 0) {
        size_t n = strnlen(err, ERRLEN);

        CHECK(n > 0 && n < ERRLEN);
    }
}

static void same_host_port(const struct host_port *a, const struct host_port *b)
{
    CHECK(strcmp(a->host, b->host) == 0 && a->port == b->port);
}

static void fuzz_host_port(const char *s)
{
    struct host_port hp, hp0, again;
    char err[ERRLEN], text[300];
    int rc = host_port_parse(s, &hp, 0, err, sizeof err);
    int rc0 = host_port_parse(s, &hp0, 1, err, sizeof err);

    check_err(rc, err);
    check_err(rc0, err);
    if (rc == 0) {
        CHECK(rc0 == 0 && hp.port != 0);
        same_host_port(&hp, &hp0);
    }
    if (rc0 < 0)
        return;
    CHECK(strnlen(hp0.host, sizeof hp0.host) < sizeof hp0.host);
    /* A colon in the host only comes from the bracketed IPv6 form. */
    if (strchr(hp0.host, ':')) {
        struct in6_addr a6;

        CHECK(s[0] == '[' && inet_pton(AF_INET6, hp0.host, &a6) == 1);
        snprintf(text, sizeof text, "[%s]:%u", hp0.host, hp0.port);
    } else {
        CHECK(s[0] != '[');
        snprintf(text, sizeof text, "%s:%u", hp0.host, hp0.port);
    }
    CHECK(host_port_parse(text, &again, 1, err, sizeof err) == 0);
    same_host_port(&hp0, &again);
}

static int expect_loopback(const struct net_addr *a)
{
    static const uint8_t one[16] = { [15] = 1 };
    static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
    const uint8_t *b = a->u.in6.sin6_addr.s6_addr;

    if (a->u.sa.sa_family == AF_INET)
        return ((const uint8_t *)&a->u.in.sin_addr)[0] == 127;
    return memcmp(b, one, 16) == 0 || (memcmp(b, mapped, 12) == 0 && b[12] == 127);
}

static void fuzz_net_addr(const char *s)
{
    struct net_addr a, b;
    struct host_port hp;
    char err[ERRLEN], text[NET_ADDR_STRLEN];
    int rc = net_addr_parse(s, &a, err, sizeof err);

    check_err(rc, err);
    if (rc < 0)
        return;
    CHECK(host_port_parse(s, &hp, 1, err, sizeof err) == 0);
    CHECK((a.u.sa.sa_family == AF_INET && a.len == sizeof a.u.in) ||
          (a.u.sa.sa_family == AF_INET6 && a.len == sizeof a.u.in6));
    CHECK(net_addr_port(&a) == hp.port);
    net_addr_format(&a, text, sizeof text);
    CHECK(strlen(text) < sizeof text - 1);          /* not truncated */
    CHECK(net_addr_parse(text, &b, err, sizeof err) == 0);
    CHECK(a.len == b.len && memcmp(&a.u, &b.u, a.len) == 0);
    CHECK(net_addr_is_loopback(&a) == expect_loopback(&a));
}

static int bit(const uint8_t *addr, unsigned i)
{
    return (addr[i / 8] >> (7 - i % 8)) & 1;
}

static void flip(uint8_t *addr, unsigned i)
{
    addr[i / 8] ^= (uint8_t)(0x80u >> (i % 8));
}

static void fuzz_cidr(const char *s)
{
    struct cidr c, again;
    struct acl acl;
    char err[ERRLEN], ip[INET6_ADDRSTRLEN], text[80];
    uint8_t probe[16];
    int rc = cidr_parse(s, &c, err, sizeof err);
    unsigned max;

    check_err(rc, err);
    memset(&acl, 0, sizeof acl);
    CHECK(acl_add_client(&acl, 1, s, err, sizeof err) == rc);
    CHECK(acl.n == (rc == 0 ? 1u : 0u));
    acl_free(&acl);
    if (rc < 0)
        return;
    CHECK(c.family == 4 || c.family == 6);
    max = c.family == 4 ? 32 : 128;
    CHECK(c.prefix <= max);
    for (unsigned i = c.prefix; i < 128; i++)
        CHECK(bit(c.addr, i) == 0);
    CHECK(cidr_match(&c, c.family, c.addr) == 1);
    memcpy(probe, c.addr, 16);
    if (c.prefix < max) {
        flip(probe, max - 1);                       /* a host bit */
        CHECK(cidr_match(&c, c.family, probe) == 1);
        flip(probe, max - 1);
    }
    if (c.prefix > 0) {
        flip(probe, c.prefix - 1);                  /* a network bit */
        CHECK(cidr_match(&c, c.family, probe) == 0);
        flip(probe, c.prefix - 1);
    }
    if (c.family == 4) {
        uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff };

        memcpy(mapped + 12, c.addr, 4);
        CHECK(cidr_match(&c, 6, mapped) == 1);
    }
    CHECK(inet_ntop(c.family == 4 ? AF_INET : AF_INET6, c.addr, ip, sizeof ip) != NULL);
    snprintf(text, sizeof text, "%s/%u", ip, c.prefix);
    CHECK(cidr_parse(text, &again, err, sizeof err) == 0);
    CHECK(memcmp(&c, &again, sizeof c) == 0);
}

static void check_host_rule(const char *h)
{
    if (h[0] == '*' && h[1] == '.')
        h += 2;
    CHECK(*h != '\0');
    for (; *h; h++)
        CHECK((*h >= 'a' && *h <= 'z') || (*h >= '0' && *h <= '9') || *h == '-' ||
              *h == '.' || *h == '_');
}

/* The rule must decide the request it describes, on its port only. */
static void check_dest_rule(const struct acl *acl, int allow)
{
    const struct acl_rule *r = &acl->rules[0];
    uint16_t port = r->port ? r->port : 443;
    uint16_t other = (uint16_t)(r->port % 65535 + 1);
    int unmatched = allow ? 0 : 1;     /* allow list vs deny list default */

    CHECK(r->allow == allow);
    if (r->is_host) {
        const char *name = r->host[0] == '*' ? r->host + 2 : r->host;

        check_host_rule(r->host);
        CHECK(acl_check_dest(acl, name, 0, NULL, port) == allow);
        CHECK(acl_check_dest(acl, NULL, 0, NULL, port) == unmatched);
        if (r->port)
            CHECK(acl_check_dest(acl, name, 0, NULL, other) == unmatched);
    } else {
        CHECK(r->net.family == 4 || r->net.family == 6);
        CHECK(acl_check_dest(acl, NULL, r->net.family, r->net.addr, port) == allow);
        CHECK(acl_check_dest(acl, "x", 0, NULL, port) == unmatched);
        if (r->port)
            CHECK(acl_check_dest(acl, NULL, r->net.family, r->net.addr, other) == unmatched);
    }
}

static void fuzz_dest_rule(const char *s)
{
    for (int allow = 0; allow <= 1; allow++) {
        struct acl acl;
        char err[ERRLEN];
        int rc;

        memset(&acl, 0, sizeof acl);
        rc = acl_add_dest(&acl, allow, s, err, sizeof err);
        check_err(rc, err);
        CHECK(acl.n == (rc == 0 ? 1u : 0u));
        if (rc == 0)
            check_dest_rule(&acl, allow);
        acl_free(&acl);
    }
}

/* Reference: rule "*.sfx" matches sfx and names ending in ".sfx". */
static int ref_suffix(const char *host, const char *sfx)
{
    size_t hl = strlen(host), sl = strlen(sfx);

    if (hl == sl)
        return strcasecmp(host, sfx) == 0;
    return hl > sl && host[hl - sl - 1] == '.' && strcasecmp(host + hl - sl, sfx) == 0;
}

static void fuzz_host_match(const char *s)
{
    struct acl acl;
    char err[ERRLEN], host[4096];
    size_t n = strlen(s);

    /* One trailing dot names the same host ("a.b." is "a.b" to a resolver). */
    if (n >= sizeof host)
        return;
    memcpy(host, s, n + 1);
    if (n > 1 && host[n - 1] == '.')
        host[n - 1] = '\0';
    int denied = ref_suffix(host, "example.com") || strcasecmp(host, "exact.test") == 0;
    int denied_other_port = ref_suffix(host, "example.com");

    memset(&acl, 0, sizeof acl);
    CHECK(acl_add_dest(&acl, 0, "*.example.com", err, sizeof err) == 0);
    CHECK(acl_add_dest(&acl, 0, "exact.test:80", err, sizeof err) == 0);
    CHECK(acl_check_dest(&acl, s, 0, NULL, 80) == !denied);
    CHECK(acl_check_dest(&acl, s, 0, NULL, 81) == !denied_other_port);
    acl_free(&acl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = size < INPUT_MAX ? size : INPUT_MAX;
    char *s = malloc(n + 1);

    if (!s)
        return 0;
    memcpy(s, data, n);
    s[n] = '\0';
    /* Shrink the block to the string so ASan sees reads past its NUL. */
    char *exact = strdup(s);
    free(s);
    if (!exact)
        return 0;
    fuzz_host_port(exact);
    fuzz_net_addr(exact);
    fuzz_cidr(exact);
    fuzz_dest_rule(exact);
    fuzz_host_match(exact);
    free(exact);
    return 0;
}

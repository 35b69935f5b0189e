/* acl.h - ordered allow/deny rules, first match wins (pure: no sockets).
 *
 * Client rules are CIDRs. Destination rules (SOCKS, ss-server) are a CIDR or
 * a host name (exact, or "*.suffix" for subdomains), with an optional port.
 * Addresses are passed as raw bytes: family 4 or 6, 4 or 16 bytes.
 */
#ifndef FERRY_ACL_H
#define FERRY_ACL_H

#include <stddef.h>
#include <stdint.h>

struct cidr {
    uint8_t family;          /* 4 or 6 */
    uint8_t prefix;          /* 0..32 or 0..128 */
    uint8_t addr[16];        /* masked */
};

struct acl_rule {
    uint8_t allow;           /* 1 allow, 0 deny */
    uint8_t is_host;         /* host name rule instead of CIDR */
    uint16_t port;           /* 0 = any port */
    struct cidr net;
    char host[256];          /* lowercase; "*.x" matches x and its subdomains */
};

struct acl {
    struct acl_rule *rules;
    size_t n;
    uint8_t explicit_allow;  /* an allow rule exists: unmatched means deny */
};

int cidr_parse(const char *s, struct cidr *out, char *err, size_t errlen);
int cidr_match(const struct cidr *c, int family, const uint8_t *addr);

/* Appends a rule: client rules take only "CIDR" (or a bare IP); destination
 * rules take "CIDR|HOST[:PORT]" (IPv6 in brackets when a port follows:
 * "[2001:db8::]/32:443"). Returns 0 or -1 with err. */
int acl_add_client(struct acl *a, int allow, const char *spec, char *err, size_t errlen);
int acl_add_dest(struct acl *a, int allow, const char *spec, char *err, size_t errlen);
void acl_free(struct acl *a);
/* dst becomes an independent copy of src (its own rules array), so rules
 * can be appended to one without touching the other. 0, or -1 (out of
 * memory: dst is left empty). */
int acl_copy(struct acl *dst, const struct acl *src);

/* The destinations a listener reachable from the network denies unless the
 * operator allows them (SSRF defaults, docs/CONFIG.md): one table for every
 * mode whose destination the client chooses (SOCKS, ss-server). The host's
 * own interface addresses are added next to it at start-up by the config
 * code (this module knows no sockets). */
struct acl_default_deny {
    const char *cidr;
    uint8_t private_net;     /* the operator's own networks: only with_private */
};
/* Terminated by a NULL cidr. */
extern const struct acl_default_deny acl_default_denies[];
/* Appends the table as deny rules; the private_net ones only if with_private
 * (ss-server: an exit to the internet; a SOCKS proxy is often the way into
 * those networks). Returns 0 or -1 with err. */
int acl_add_default_denies(struct acl *a, int with_private, char *err, size_t errlen);

/* Verdict for a client address: 1 allowed, 0 denied. With no rules: allowed.
 * With rules and no match: denied if any allow rule exists (an allow list),
 * else allowed. */
int acl_check_addr(const struct acl *a, int family, const uint8_t *addr);
/* Destination verdict: host may be NULL (IP literal request); addr may be
 * NULL (before resolution: only host rules can match). */
int acl_check_dest(const struct acl *a, const char *host, int family, const uint8_t *addr,
                   uint16_t port);

/* Verdict on a name before it is resolved, so that a denied name is never
 * sent to a resolver: walks the rules in order like acl_check_dest() and
 * stops at the first address rule that could match (same port or any),
 * since only the resolved address can tell whether it does. */
enum acl_verdict { ACL_DENY = 0, ACL_ALLOW = 1, ACL_UNDECIDED = 2 };
enum acl_verdict acl_check_dest_name(const struct acl *a, const char *host, uint16_t port);

#endif

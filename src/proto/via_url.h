/* via_url.h - a parent proxy named by a URL (--via), sans-I/O.
 *
 *   socks5://[USER[:PASS]@]HOST:PORT     (socks5h:// is the same: names are
 *                                         always passed on unresolved)
 *   socks4a://[USERID@]HOST:PORT
 *   http://[USER[:PASS]@]HOST:PORT       HTTP CONNECT
 *   ss://METHOD:PASSWORD@HOST:PORT       Shadowsocks AEAD (also SIP002's
 *                                         ss://BASE64URL(METHOD:PASSWORD)@...)
 *
 * HOST is a name, an IPv4 literal or a bracketed IPv6 literal; the user
 * part may be percent-encoded (%40 for '@', %3A for ':'). The text is split
 * at the last '@', so a password may hold a raw '@' too. Error messages
 * never quote the URL: it may hold a password.
 */
#ifndef FERRY_PROTO_VIA_URL_H
#define FERRY_PROTO_VIA_URL_H

#include <stddef.h>
#include <stdint.h>

enum via_proto { VIA_SOCKS5 = 1, VIA_SOCKS4A, VIA_HTTP, VIA_SS };

/* Parents in one chain at most. */
#define VIA_MAX_HOPS 8

struct via_hop {
    uint8_t proto;            /* enum via_proto */
    uint8_t has_user;         /* user (and for socks5/http a password) given */
    uint16_t port;
    char host[256];           /* IPv6 without brackets */
    char user[256];           /* socks4a: the USERID */
    char pass[256];           /* secret: never logged; ss: wiped once the key is made */
    char method[32];          /* ss: the AEAD method as written */
    uint8_t key[32];          /* ss: the master key (filled by config, not here) */
};

/* spec -> *out (zeroed first). 0, or -1 with a one-line reason in err that
 * does not repeat the password. */
int via_url_parse(const char *spec, struct via_hop *out, char *err, size_t errlen);

/* "scheme://host:port" ("[v6]:port"): what logs and start-up lines show. */
void via_url_format(const struct via_hop *h, char *out, size_t outlen);
const char *via_proto_name(uint8_t proto);

/* Where the secret of a --via value lies, valid or not, so the command
 * line can be blanked in place: 1 with [*off, *off + *n), else 0 (no
 * password). The password of socks5/http, everything between "ss://" and
 * the last '@' for ss. */
int via_url_secret(const char *spec, size_t *off, size_t *n);

#endif /* FERRY_PROTO_VIA_URL_H */

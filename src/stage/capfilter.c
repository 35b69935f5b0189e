/* capfilter.c - see capfilter.h. */
#include "stage/capfilter.h"

#include <stdio.h>
#include <string.h>

/* "N" or "N-M", 1..65535, N <= M. */
static int parse_ports(const char *s, uint16_t *lo, uint16_t *hi)
{
    unsigned long v[2] = { 0, 0 };
    int k = 0, digits = 0;
    for (; *s; s++) {
        if (*s == '-' && k == 0 && digits) {
            k = 1;
            digits = 0;
        } else if (*s >= '0' && *s <= '9' && digits < 5) {
            v[k] = v[k] * 10 + (unsigned long)(*s - '0');
            digits++;
        } else {
            return -1;
        }
    }
    if (!digits) return -1;
    if (k == 0) v[1] = v[0];
    if (v[0] < 1 || v[1] > 65535 || v[0] > v[1]) return -1;
    *lo = (uint16_t)v[0];
    *hi = (uint16_t)v[1];
    return 0;
}

static int add_term(struct capfilter *f, const char *term, char *err, size_t errlen)
{
    if (strncmp(term, "client=", 7) == 0) {
        if (f->nnets == CAPFILTER_MAX) goto too_many;
        char why[160];
        if (cidr_parse(term + 7, &f->nets[f->nnets], why, sizeof(why)) < 0) {
            snprintf(err, errlen, "'%.80s': expected client=CIDR (e.g. client=10.0.0.0/8)", term);
            return -1;
        }
        f->nnets++;
        return 0;
    }
    if (strncmp(term, "port=", 5) == 0) {
        if (f->nports == CAPFILTER_MAX) goto too_many;
        if (parse_ports(term + 5, &f->ports[f->nports].lo, &f->ports[f->nports].hi) < 0) {
            snprintf(err, errlen, "'%.80s': expected port=N or port=N-M (1-65535)", term);
            return -1;
        }
        f->nports++;
        return 0;
    }
    snprintf(err, errlen, "'%.80s': expected client=CIDR or port=N[-M]", term);
    return -1;
too_many:
    snprintf(err, errlen, "'%.80s': too many terms of this kind (max %d)", term, CAPFILTER_MAX);
    return -1;
}

int capfilter_parse(struct capfilter *f, const char *spec, char *err, size_t errlen)
{
    struct capfilter next = *f;
    char term[128];
    const char *p = spec;
    for (;;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof(term)) {
            snprintf(err, errlen, "'%.80s': %s", spec, n ? "term too long" : "empty term");
            return -1;
        }
        memcpy(term, p, n);
        term[n] = '\0';
        if (add_term(&next, term, err, errlen) < 0) return -1;
        if (!p[n]) break;
        p += n + 1;
    }
    *f = next;
    return 0;
}

int capfilter_client_ok(const struct capfilter *f, int family, const uint8_t *addr)
{
    if (!f->nnets) return 1;
    for (unsigned i = 0; i < f->nnets; i++)
        if (cidr_match(&f->nets[i], family, addr)) return 1;
    return 0;
}

int capfilter_port_ok(const struct capfilter *f, uint16_t port)
{
    if (!f->nports) return 1;
    for (unsigned i = 0; i < f->nports; i++)
        if (port >= f->ports[i].lo && port <= f->ports[i].hi) return 1;
    return 0;
}

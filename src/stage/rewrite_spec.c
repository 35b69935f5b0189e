/* rewrite_spec.c - the rewrite rule spec parser and rule sets. See rewrite.h.
 *
 * The spec is read left to right, one field at a time, rather than split at
 * colons first: `hex:` fields carry a colon of their own, and a text field
 * may hold an escaped one.
 */
#include "stage/rewrite.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rw_parse {
    const char *spec;
    const char *p;              /* next byte to read */
    char *err;
    size_t errlen;
};

static int fail_at(struct rw_parse *ps, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* "column N: ..." with N the 1-based byte offset of `at` in the spec. */
static int fail_at(struct rw_parse *ps, const char *at, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(ps->err, ps->errlen, "column %zu: ", (size_t)(at - ps->spec) + 1);
    if (n >= 0 && (size_t)n < ps->errlen) {
        va_start(ap, fmt);
        vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A byte for an error message: itself if printable, else \xHH. */
static const char *byte_text(char c, char buf[8])
{
    if (c > 0x20 && c < 0x7f) snprintf(buf, 8, "%c", c);
    else snprintf(buf, 8, "\\x%02x", (unsigned)(uint8_t)c);
    return buf;
}

static int parse_dir(struct rw_parse *ps, uint8_t *dirs)
{
    size_t n = strcspn(ps->p, ":");
    if (n == 8 && strncmp(ps->p, "upstream", n) == 0) *dirs = REWRITE_UPSTREAM;
    else if (n == 10 && strncmp(ps->p, "downstream", n) == 0) *dirs = REWRITE_DOWNSTREAM;
    else if (n == 4 && strncmp(ps->p, "both", n) == 0) *dirs = REWRITE_UPSTREAM | REWRITE_DOWNSTREAM;
    else return fail_at(ps, ps->p, "expected upstream, downstream or both, then ':' (DIR:MATCH:REPLACEMENT[:max=N])");
    if (ps->p[n] != ':') return fail_at(ps, ps->p + n, "expected ':' and the match after the direction");
    ps->p += n + 1;
    return 0;
}

/* `hex:` then pairs of hex digits, up to ':' or the end. */
static int parse_hex(struct rw_parse *ps, uint8_t *out, size_t *len, const char *what)
{
    const char *s = ps->p;
    size_t n = 0;
    for (; *s && *s != ':'; s += 2) {
        int hi = hex_value(s[0]), lo = hex_value(s[1]);
        char b[8];
        if (hi < 0) return fail_at(ps, s, "%s: '%s' is not a hex digit", what, byte_text(s[0], b));
        if (!s[1] || s[1] == ':') return fail_at(ps, s, "%s: odd number of hex digits", what);
        if (lo < 0) return fail_at(ps, s + 1, "%s: '%s' is not a hex digit", what, byte_text(s[1], b));
        if (n == REWRITE_MAX_LEN) return fail_at(ps, s, "%s: longer than %d bytes", what, REWRITE_MAX_LEN);
        out[n++] = (uint8_t)(hi << 4 | lo);
    }
    ps->p = s;
    *len = n;
    return 0;
}

/* One escape after a backslash at s; *adv gets its length. -1 if bad. */
static int escape_byte(struct rw_parse *ps, const char *s, size_t *adv, const char *what)
{
    static const char from[] = "nrt0\\:", to[] = "\n\r\t\0\\:";
    const char *k = s[1] ? strchr(from, s[1]) : NULL;
    *adv = 2;
    if (k) return (uint8_t)to[k - from];
    if (s[1] == 'x') {
        int hi = s[2] ? hex_value(s[2]) : -1, lo = hi < 0 || !s[3] ? -1 : hex_value(s[3]);
        if (lo < 0) return fail_at(ps, s, "%s: \\x needs two hex digits", what);
        *adv = 4;
        return hi << 4 | lo;
    }
    if (!s[1]) return fail_at(ps, s, "%s: a lone '\\' at the end (write \\\\ for a backslash)", what);
    char b[8];
    return fail_at(ps, s, "%s: unknown escape '\\%s' (use \\n \\r \\t \\0 \\\\ \\: or \\xHH)", what,
                   byte_text(s[1], b));
}

/* Text with escapes, up to an unescaped ':' or the end. */
static int parse_text(struct rw_parse *ps, uint8_t *out, size_t *len, const char *what)
{
    const char *s = ps->p;
    size_t n = 0, adv = 1;
    for (; *s && *s != ':'; s += adv) {
        int b = (uint8_t)*s;
        adv = 1;
        if (*s == '\\' && (b = escape_byte(ps, s, &adv, what)) < 0) return -1;
        if (n == REWRITE_MAX_LEN) return fail_at(ps, s, "%s: longer than %d bytes", what, REWRITE_MAX_LEN);
        out[n++] = (uint8_t)b;
    }
    ps->p = s;
    *len = n;
    return 0;
}

static int parse_field(struct rw_parse *ps, uint8_t *out, size_t *len, const char *what)
{
    if (strncmp(ps->p, "hex:", 4) != 0) return parse_text(ps, out, len, what);
    ps->p += 4;
    return parse_hex(ps, out, len, what);
}

/* The optional last field: max=N, N from 1 to 2^32-1. */
static int parse_max(struct rw_parse *ps, uint32_t *max)
{
    const char *s = ps->p, *d = s + 4;
    unsigned long long v = 0;
    if (strncmp(s, "max=", 4) != 0) return fail_at(ps, s, "expected max=N after the replacement (write \\: for a ':' in it)");
    for (; *d >= '0' && *d <= '9' && v <= UINT32_MAX; d++) v = v * 10 + (unsigned)(*d - '0');
    if (d == s + 4 || *d || v == 0 || v > UINT32_MAX)
        return fail_at(ps, s + 4, "max: expected a number from 1 to %lu", (unsigned long)UINT32_MAX);
    *max = (uint32_t)v;
    return 0;
}

int rewrite_parse(const char *spec, struct rewrite_rule *out, char *err, size_t errlen)
{
    struct rw_parse ps = { spec, spec, err, errlen };
    memset(out, 0, sizeof(*out));
    if (parse_dir(&ps, &out->dirs) < 0) return -1;
    const char *match_at = ps.p;
    if (parse_field(&ps, out->match, &out->match_len, "match") < 0) return -1;
    if (!out->match_len) return fail_at(&ps, match_at, "the match is empty");
    if (*ps.p != ':') return fail_at(&ps, ps.p, "expected ':' and the replacement after the match (it may be empty)");
    ps.p++;
    if (parse_field(&ps, out->repl, &out->repl_len, "replacement") < 0) return -1;
    if (*ps.p != ':') return 0;
    ps.p++;
    return parse_max(&ps, &out->max);
}

int rewrite_set_add(struct rewrite_set *set, const struct rewrite_rule *r, char *err, size_t errlen)
{
    if (set->n == REWRITE_MAX_RULES) {
        snprintf(err, errlen, "too many rewrite rules (max %d)", REWRITE_MAX_RULES);
        return -1;
    }
    struct rewrite_rule *n = realloc(set->rules, (set->n + 1) * sizeof(*n));
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    set->rules = n;
    set->rules[set->n++] = *r;
    return 0;
}

void rewrite_set_free(struct rewrite_set *set)
{
    free(set->rules);
    set->rules = NULL;
    set->n = 0;
}

size_t rewrite_set_count(const struct rewrite_set *set, int upstream)
{
    uint8_t bit = upstream ? REWRITE_UPSTREAM : REWRITE_DOWNSTREAM;
    size_t n = 0;
    for (size_t i = 0; i < set->n; i++) n += (set->rules[i].dirs & bit) != 0;
    return n;
}

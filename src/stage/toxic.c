/* toxic.c - toxic specs, their attributes and parsers; toxic sets and the
 * listener slot. See toxic.h. The per-session engine is toxq.c. */
#include "stage/toxic.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[TOXIC_NTYPES] = {
    [TOXIC_LATENCY] = "latency",       [TOXIC_BANDWIDTH] = "bandwidth",
    [TOXIC_SLOW_CLOSE] = "slow_close", [TOXIC_TIMEOUT] = "timeout",
    [TOXIC_RESET_PEER] = "reset_peer", [TOXIC_SLICER] = "slicer",
    [TOXIC_LIMIT_DATA] = "limit_data", [TOXIC_BITFLIP] = "bitflip",
    [TOXIC_LUA] = "lua",
};

/* One attribute: its JSON name, the types that have it, where it lives.
 * Integers are bounded so that sums of times cannot overflow. */
struct attr_def {
    const char *key;
    size_t off;
    unsigned types;              /* 1 << toxic_type */
    int is_prob;                 /* a double in 0..1, else a whole number */
};

#define T(x) (1u << (x))
#define A(f) offsetof(struct toxic_spec, f)
static const struct attr_def attrs[] = {
    { "latency", A(latency), T(TOXIC_LATENCY), 0 },
    { "jitter", A(jitter), T(TOXIC_LATENCY), 0 },
    { "rate", A(rate), T(TOXIC_BANDWIDTH), 0 },
    { "delay", A(delay), T(TOXIC_SLOW_CLOSE) | T(TOXIC_SLICER), 0 },
    { "timeout", A(timeout), T(TOXIC_TIMEOUT) | T(TOXIC_RESET_PEER), 0 },
    { "average_size", A(average_size), T(TOXIC_SLICER), 0 },
    { "size_variation", A(size_variation), T(TOXIC_SLICER), 0 },
    { "bytes", A(bytes), T(TOXIC_LIMIT_DATA), 0 },
    { "probability", A(probability), T(TOXIC_BITFLIP), 1 },
    { "every", A(every), T(TOXIC_BITFLIP), 0 },
};
#define NATTRS (sizeof(attrs) / sizeof(attrs[0]))

/* A day in ms (or us for the slicer delay); a TB of data: beyond any test,
 * small enough that time arithmetic in microseconds stays in 64 bits. */
#define ATTR_MAX 1e12

const char *toxic_type_name(enum toxic_type t)
{
    return (unsigned)t < TOXIC_NTYPES ? type_names[t] : "?";
}

int toxic_type_from_name(const char *name)
{
    for (int i = 0; i < TOXIC_NTYPES; i++)
        if (strcmp(type_names[i], name) == 0) return i;
    return -1;
}

const char *toxic_stream_name(uint8_t streams)
{
    if (streams == (TOXIC_UPSTREAM | TOXIC_DOWNSTREAM)) return "both";
    return streams == TOXIC_UPSTREAM ? "upstream" : "downstream";
}

int toxic_stream_from_name(const char *name, uint8_t *streams)
{
    if (strcmp(name, "upstream") == 0) *streams = TOXIC_UPSTREAM;
    else if (strcmp(name, "downstream") == 0) *streams = TOXIC_DOWNSTREAM;
    else if (strcmp(name, "both") == 0) *streams = TOXIC_UPSTREAM | TOXIC_DOWNSTREAM;
    else return -1;
    return 0;
}

void toxic_spec_default_name(struct toxic_spec *t)
{
    snprintf(t->name, sizeof(t->name), "%s_%s", toxic_type_name(t->type), toxic_stream_name(t->streams));
}

void toxic_spec_init(struct toxic_spec *t, enum toxic_type type)
{
    memset(t, 0, sizeof(*t));
    t->type = type;
    t->streams = TOXIC_DOWNSTREAM;
    t->toxicity = 1.0;
    toxic_spec_default_name(t);
}

static const struct attr_def *attr_find(const struct toxic_spec *t, const char *key)
{
    for (size_t i = 0; i < NATTRS; i++)
        if ((attrs[i].types & T(t->type)) && strcmp(attrs[i].key, key) == 0) return &attrs[i];
    return NULL;
}

int toxic_attr_set(struct toxic_spec *t, const char *key, double value, char *err, size_t errlen)
{
    const struct attr_def *a = attr_find(t, key);
    if (!a) {
        snprintf(err, errlen, "%s has no attribute '%.40s'", toxic_type_name(t->type), key);
        return -1;
    }
    if (a->is_prob) {
        if (!(value >= 0 && value <= 1)) {
            snprintf(err, errlen, "%s: expected a probability from 0 to 1", key);
            return -1;
        }
        t->probability = value;      /* the only probability attribute */
        return 0;
    }
    if (!(value >= 0 && value <= ATTR_MAX) || value != (double)(uint64_t)value) {
        snprintf(err, errlen, "%s: expected a whole number from 0 to %.0f", key, ATTR_MAX);
        return -1;
    }
    *(uint64_t *)((char *)t + a->off) = (uint64_t)value;
    return 0;
}

int toxic_attr_set_text(struct toxic_spec *t, const char *key, const char *value, char *err, size_t errlen)
{
    if (t->type != TOXIC_LUA || strcmp(key, "file") != 0) {
        snprintf(err, errlen, "%s has no attribute '%.40s'", toxic_type_name(t->type), key);
        return -1;
    }
    if (!value[0] || strlen(value) >= sizeof(t->file)) {
        snprintf(err, errlen, "file: 1 to %zu characters", sizeof(t->file) - 1);
        return -1;
    }
    snprintf(t->file, sizeof(t->file), "%s", value);
    return 0;
}

void toxic_attr_each(const struct toxic_spec *t, void (*fn)(void *arg, const char *key, double value), void *arg)
{
    for (size_t i = 0; i < NATTRS; i++) {
        const struct attr_def *a = &attrs[i];
        if (!(a->types & T(t->type))) continue;
        fn(arg, a->key, a->is_prob ? t->probability : (double)*(const uint64_t *)((const char *)t + a->off));
    }
}

int toxic_spec_check(const struct toxic_spec *t, char *err, size_t errlen)
{
    if ((unsigned)t->type >= TOXIC_NTYPES) {
        snprintf(err, errlen, "unknown toxic type");
        return -1;
    }
    if (!t->name[0]) {
        snprintf(err, errlen, "a toxic needs a name");
        return -1;
    }
    if (!(t->toxicity >= 0 && t->toxicity <= 1)) {
        snprintf(err, errlen, "toxicity: expected a probability from 0 to 1");
        return -1;
    }
    if (!t->streams || (t->streams & ~(TOXIC_UPSTREAM | TOXIC_DOWNSTREAM))) {
        snprintf(err, errlen, "stream: expected upstream, downstream or both");
        return -1;
    }
    if (t->type == TOXIC_SLICER && (t->average_size == 0 || t->size_variation >= t->average_size)) {
        snprintf(err, errlen, "slicer: needs average_size >= 1 and size_variation < average_size");
        return -1;
    }
    if (t->type == TOXIC_LUA && !t->file[0]) {
        snprintf(err, errlen, "lua: needs file=SCRIPT.lua");
        return -1;
    }
    return 0;
}

/* Parses a whole value: digits with an optional fraction, nothing else. */
static int parse_number(const char *s, double *v)
{
    char *end;
    if (!((s[0] >= '0' && s[0] <= '9') || s[0] == '.')) return -1;
    errno = 0;
    *v = strtod(s, &end);
    return errno || *end || end == s ? -1 : 0;
}

/* "-5" is a number, only one no attribute takes: say that, with the range,
 * rather than "not a number". */
static int refuse_negative(const struct toxic_spec *t, const char *key, const char *val, char *err,
                           size_t errlen)
{
    const struct attr_def *a = attr_find(t, key);
    if (!a && strcmp(key, "toxicity") != 0) {
        snprintf(err, errlen, "%s has no attribute '%.40s'", toxic_type_name(t->type), key);
        return -1;
    }
    if (!a || a->is_prob)
        snprintf(err, errlen, "%.40s: '%.40s' must not be negative (a probability from 0 to 1)", key, val);
    else
        snprintf(err, errlen, "%.40s: '%.40s' must not be negative (a whole number from 0 to %.0f)", key, val,
                 ATTR_MAX);
    return -1;
}

int toxic_spec_parse(const char *text, struct toxic_spec *t, char *err, size_t errlen)
{
    char type[32], buf[512];
    size_t tn = strcspn(text, ":");
    if (tn == 0 || tn >= sizeof(type)) {
        snprintf(err, errlen, "expected TYPE[:key=value,...]");
        return -1;
    }
    memcpy(type, text, tn);
    type[tn] = '\0';
    int ty = toxic_type_from_name(type);
    if (ty < 0) {
        snprintf(err, errlen, "unknown toxic '%s' (latency, bandwidth, slow_close, timeout, reset_peer, "
                 "slicer, limit_data, bitflip)", type);
        return -1;
    }
    toxic_spec_init(t, (enum toxic_type)ty);
    int named = 0;
    if (text[tn] == ':') {
        if (strlen(text + tn + 1) >= sizeof(buf)) {
            snprintf(err, errlen, "toxic parameters too long");
            return -1;
        }
        memcpy(buf, text + tn + 1, strlen(text + tn + 1) + 1);   /* length checked above */
        for (char *save = NULL, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(kv, '=');
            double v;
            if (!eq || eq == kv) {
                snprintf(err, errlen, "'%.40s': expected key=value", kv);
                return -1;
            }
            *eq = '\0';
            const char *val = eq + 1;
            if (strcmp(kv, "name") == 0) {
                if (!*val || strlen(val) >= sizeof(t->name)) {
                    snprintf(err, errlen, "name: 1 to %zu characters", sizeof(t->name) - 1);
                    return -1;
                }
                snprintf(t->name, sizeof(t->name), "%s", val);
                named = 1;
            } else if (strcmp(kv, "file") == 0) {
                if (toxic_attr_set_text(t, kv, val, err, errlen) < 0) return -1;
            } else if (strcmp(kv, "stream") == 0) {
                if (toxic_stream_from_name(val, &t->streams) < 0) {
                    snprintf(err, errlen, "stream: expected upstream, downstream or both");
                    return -1;
                }
            } else if (val[0] == '-' && parse_number(val + 1, &v) == 0) {
                return refuse_negative(t, kv, val, err, errlen);
            } else if (parse_number(val, &v) < 0) {
                snprintf(err, errlen, "%.40s: '%.40s' is not a number", kv, val);
                return -1;
            } else if (strcmp(kv, "toxicity") == 0) {
                if (!(v >= 0 && v <= 1)) {
                    snprintf(err, errlen, "toxicity: expected a probability from 0 to 1");
                    return -1;
                }
                t->toxicity = v;
            } else if (toxic_attr_set(t, kv, v, err, errlen) < 0) {
                return -1;
            }
        }
    } else if (text[tn] != '\0') {
        snprintf(err, errlen, "expected TYPE[:key=value,...]");
        return -1;
    }
    if (!named) toxic_spec_default_name(t);
    return toxic_spec_check(t, err, errlen);
}

/* ---- sets ---- */

struct toxic_set *toxic_set_new(const struct toxic_spec *specs, size_t n)
{
    struct toxic_set *s = malloc(sizeof(*s) + n * sizeof(s->t[0]));
    if (!s) return NULL;
    s->refs = 1;
    s->n = n;
    if (n) memcpy(s->t, specs, n * sizeof(s->t[0]));
    return s;
}

struct toxic_set *toxic_set_ref(struct toxic_set *s)
{
    if (s) __atomic_fetch_add(&s->refs, 1, __ATOMIC_RELAXED);
    return s;
}

void toxic_set_unref(struct toxic_set *s)
{
    if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) free(s);
}

int toxic_find(const struct toxic_spec *specs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(specs[i].name, name) == 0) return (int)i;
    return -1;
}

int toxic_set_find(const struct toxic_set *s, const char *name)
{
    return s ? toxic_find(s->t, s->n, name) : -1;
}

/* ---- the listener slot ---- */

void toxic_slot_init(struct toxic_slot *s)
{
    pthread_mutex_init(&s->lock, NULL);
    s->cur = NULL;
    s->gen = 0;
}

void toxic_slot_destroy(struct toxic_slot *s)
{
    toxic_set_unref(s->cur);
    s->cur = NULL;
    pthread_mutex_destroy(&s->lock);
}

void toxic_slot_publish(struct toxic_slot *s, struct toxic_set *set)
{
    if (set && set->n == 0) {
        toxic_set_unref(set);   /* "no toxics" is NULL: sessions skip the engine */
        set = NULL;
    }
    pthread_mutex_lock(&s->lock);
    struct toxic_set *old = s->cur;
    s->cur = set;
    __atomic_add_fetch(&s->gen, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&s->lock);
    toxic_set_unref(old);
}

struct toxic_set *toxic_slot_acquire(struct toxic_slot *s, unsigned *gen)
{
    pthread_mutex_lock(&s->lock);
    struct toxic_set *set = toxic_set_ref(s->cur);
    *gen = s->gen;
    pthread_mutex_unlock(&s->lock);
    return set;
}

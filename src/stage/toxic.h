/* toxic.h - fault injection with toxiproxy's toxics (same names, parameters
 * and meaning), plus bitflip.
 *
 * Three layers:
 *  - toxic_spec: one configured toxic (type, name, stream, toxicity,
 *    attributes). Parsed from the CLI (`--toxic 'latency:latency=100'`),
 *    the config file, or the HTTP API's JSON (attribute by attribute).
 *  - toxic_set: the immutable, reference-counted list of a listener's
 *    toxics. The API publishes a new set; sessions pick it up.
 *  - toxq: what one direction of one session does with its toxics. Sans-I/O:
 *    bytes go in with the time they arrived, come out as pieces when due,
 *    and it reports actions (close, reset) and the next time it needs a
 *    wakeup. The pipe moves bytes; toxq only decides what and when.
 *
 * Times are microseconds on the monotonic clock.
 */
#ifndef FERRY_TOXIC_H
#define FERRY_TOXIC_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

enum toxic_type {
    TOXIC_LATENCY,      /* latency ms, jitter ms: each chunk delayed latency +- jitter */
    TOXIC_BANDWIDTH,    /* rate KB/s (1 KB = 1000 bytes, as toxiproxy) */
    TOXIC_SLOW_CLOSE,   /* delay ms: EOF forwarded this much later */
    TOXIC_TIMEOUT,      /* timeout ms: data dropped; close after timeout (0 = never) */
    TOXIC_RESET_PEER,   /* timeout ms: after the first data, wait, then RST both sides */
    TOXIC_SLICER,       /* average_size, size_variation bytes; delay us between slices */
    TOXIC_LIMIT_DATA,   /* bytes: close once this many have passed */
    TOXIC_BITFLIP,      /* probability per byte, or every Nth byte: flip one bit */
    TOXIC_LUA,          /* file: a Lua filter script (docs/FILTERS.md) on the stream */
    TOXIC_NTYPES
};

/* Which direction(s): toxiproxy's "upstream" is client -> server. */
enum { TOXIC_UPSTREAM = 1, TOXIC_DOWNSTREAM = 2 };

struct toxic_spec {
    char name[64];              /* unique within a listener; default TYPE_STREAM */
    enum toxic_type type;
    uint8_t streams;            /* TOXIC_UPSTREAM | TOXIC_DOWNSTREAM bits */
    double toxicity;            /* 0..1: chance the toxic applies to a session */
    /* Attributes (only those of the type matter; toxic_attr_* know which). */
    uint64_t latency, jitter;   /* ms */
    uint64_t rate;              /* KB/s, 0 = unlimited */
    uint64_t delay;             /* slow_close: ms; slicer: us */
    uint64_t timeout;           /* ms */
    uint64_t average_size, size_variation;
    uint64_t bytes;
    double probability;         /* bitflip, per byte */
    uint64_t every;             /* bitflip: every Nth byte (0 = use probability) */
    char file[256];             /* lua: the script */
};

const char *toxic_type_name(enum toxic_type t);
/* -1 if unknown. */
int toxic_type_from_name(const char *name);
/* "upstream", "downstream" or "both". */
const char *toxic_stream_name(uint8_t streams);
int toxic_stream_from_name(const char *name, uint8_t *streams);

/* A spec of `type` with toxiproxy's defaults: toxicity 1, stream
 * downstream, name TYPE_downstream, attributes 0 (bitflip: every 0,
 * probability 0). */
void toxic_spec_init(struct toxic_spec *t, enum toxic_type type);
/* Names the spec TYPE_STREAM (latency_downstream, bitflip_both...). */
void toxic_spec_default_name(struct toxic_spec *t);

/* Attributes by their toxiproxy JSON names, for the API and the parsers.
 * toxic_attr_set: 0, or -1 with a reason in err (unknown attribute for the
 * type, value out of range). Integer attributes reject fractions. */
int toxic_attr_set(struct toxic_spec *t, const char *key, double value, char *err, size_t errlen);
/* The text attribute (lua's `file`): 0, or -1 with a reason. */
int toxic_attr_set_text(struct toxic_spec *t, const char *key, const char *value, char *err, size_t errlen);
/* Calls fn for each numeric attribute of the spec's type, in toxiproxy's order. */
void toxic_attr_each(const struct toxic_spec *t,
                     void (*fn)(void *arg, const char *key, double value), void *arg);
/* Checks cross-attribute rules (slicer: size_variation < average_size...).
 * 0, or -1 with a reason. */
int toxic_spec_check(const struct toxic_spec *t, char *err, size_t errlen);

/* CLI / config form: TYPE[:key=value[,key=value]...] where keys are the
 * attributes plus name=, stream=upstream|downstream|both, toxicity=0..1.
 * Example: latency:latency=100,jitter=10,stream=downstream */
int toxic_spec_parse(const char *text, struct toxic_spec *t, char *err, size_t errlen);

/* ---- toxic sets: a listener's current toxics ---- */

struct toxic_set {
    unsigned refs;              /* atomic */
    size_t n;
    struct toxic_spec t[];
};

/* Toxics per listener or API proxy, at most (a config error past it). */
#define TOXIC_MAX 64

/* NULL when out of memory. n may be 0. refs starts at 1 (the caller's). */
struct toxic_set *toxic_set_new(const struct toxic_spec *specs, size_t n);
struct toxic_set *toxic_set_ref(struct toxic_set *s);
void toxic_set_unref(struct toxic_set *s);
/* Index of the toxic called name among n specs, or -1. */
int toxic_find(const struct toxic_spec *specs, size_t n, const char *name);
/* The same in a set (NULL: none). */
int toxic_set_find(const struct toxic_set *s, const char *name);

/* The listener-wide slot sessions read their set from. The API thread
 * publishes; workers acquire at session start and when told the set
 * changed (the generation then differs from what the session saw). */
struct toxic_slot {
    pthread_mutex_t lock;
    struct toxic_set *cur;      /* NULL = no toxics */
    unsigned gen;               /* atomic: bumped on every publish */
};

void toxic_slot_init(struct toxic_slot *s);
void toxic_slot_destroy(struct toxic_slot *s);
/* Takes ownership of `set` (may be NULL or empty: no toxics). */
void toxic_slot_publish(struct toxic_slot *s, struct toxic_set *set);
/* A reference to the current set (NULL if none), and its generation. */
struct toxic_set *toxic_slot_acquire(struct toxic_slot *s, unsigned *gen);

#endif

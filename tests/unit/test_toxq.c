/* test_toxq.c - unit tests for the toxics: spec parsing (stage/toxic.c)
 * and the per-direction toxic queue (stage/toxq.c).
 *
 * toxq is sans-I/O: bytes go in with a time, pieces come out with a due
 * time, so every test steps an explicit clock in microseconds; no sleeps.
 * A piece's due time is read through toxq_next_wakeup() (the head's due
 * time when nothing else is armed), then checked with toxq_peek() just
 * before and at that time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage/toxic.h"
#include "stage/toxq.h"

#define MS 1000ull
#define S 1000000ull

/* ---- helpers ---- */

static struct toxic_spec spec(const char *text)
{
    struct toxic_spec t;
    char err[256] = "";
    int rc = toxic_spec_parse(text, &t, err, sizeof err);
    if (rc != 0) fail_msg("toxic_spec_parse(%s): %s", text, err);
    return t;
}

/* Configures q with the toxics given as --toxic texts (NULL-terminated),
 * for `stream`, at `now`. */
static void setup_q(struct toxq *q, uint8_t stream, uint64_t now, const char *first, ...)
{
    struct toxic_spec specs[16];
    size_t n = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *t = first; t; t = va_arg(ap, const char *)) specs[n++] = spec(t);
    va_end(ap);
    struct toxic_set *set = toxic_set_new(specs, n);
    assert_non_null(set);
    assert_int_equal(toxq_configure(q, set, stream, now), 0);
    toxic_set_unref(set);
}

#define CONFIGURE(q, now, ...) setup_q((q), TOXIC_DOWNSTREAM, (now), __VA_ARGS__, (const char *)NULL)

static struct toxq *newq(uint64_t seed)
{
    struct toxq *q = malloc(sizeof(*q));
    assert_non_null(q);
    toxq_init(q, seed);
    return q;
}

static void freeq(struct toxq *q)
{
    toxq_free(q);
    free(q);
}

/* One piece taken out of the queue. */
struct piece {
    uint64_t due;
    size_t len;
    uint8_t data[1 << 16];
};

/* Takes the head piece: checks that it is not out 1 us before its due
 * time and is at it. 0 when the queue is empty. */
static int take(struct toxq *q, struct piece *p)
{
    if (toxq_empty(q)) return 0;
    p->due = toxq_next_wakeup(q);
    size_t len = 0;
    if (p->due > 0) assert_null(toxq_peek(q, p->due - 1, &len));
    const uint8_t *d = toxq_peek(q, p->due, &len);
    assert_non_null(d);
    assert_true(len <= sizeof(p->data));
    memcpy(p->data, d, len);
    p->len = len;
    toxq_consume(q, len);
    return 1;
}

static uint8_t buf_in[1 << 20], buf_out[1 << 20];

/* Drains everything (whatever the time); returns the byte count. */
static size_t drain_all(struct toxq *q, uint8_t *out)
{
    size_t n = 0, len;
    const uint8_t *d;
    while ((d = toxq_peek(q, UINT64_MAX, &len))) {
        if (out) memcpy(out + n, d, len);
        n += len;
        toxq_consume(q, len);
    }
    return n;
}

static size_t popcount_xor(const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t bits = 0;
    for (size_t i = 0; i < n; i++) bits += (size_t)__builtin_popcount((unsigned)(a[i] ^ b[i]));
    return bits;
}

static void fill_pattern(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 7 + 3);
}

/* ===================================================================
 * specs: toxic_spec_parse, toxic_attr_set
 * =================================================================== */

static void test_spec_parse_good(void **state)
{
    (void)state;
    struct toxic_spec t = spec("latency:latency=100,jitter=10,stream=downstream");
    assert_int_equal(t.type, TOXIC_LATENCY);
    assert_int_equal(t.latency, 100);
    assert_int_equal(t.jitter, 10);
    assert_int_equal(t.streams, TOXIC_DOWNSTREAM);
    assert_true(t.toxicity == 1.0);
    assert_string_equal(t.name, "latency_downstream");

    t = spec("bitflip");
    assert_int_equal(t.type, TOXIC_BITFLIP);
    assert_int_equal(t.every, 0);
    assert_true(t.probability == 0);
    assert_int_equal(t.streams, TOXIC_DOWNSTREAM);
    assert_string_equal(t.name, "bitflip_downstream");

    t = spec("bandwidth:rate=50,stream=upstream");
    assert_int_equal(t.rate, 50);
    assert_int_equal(t.streams, TOXIC_UPSTREAM);
    assert_string_equal(t.name, "bandwidth_upstream");

    /* The default name follows the stream even when stream= comes last. */
    t = spec("slow_close:delay=5,stream=both");
    assert_int_equal(t.streams, TOXIC_UPSTREAM | TOXIC_DOWNSTREAM);
    assert_string_equal(t.name, "slow_close_both");
    assert_int_equal(t.delay, 5);

    t = spec("timeout:timeout=0,name=hang,toxicity=0.25");
    assert_string_equal(t.name, "hang");
    assert_true(t.toxicity == 0.25);
    assert_int_equal(t.timeout, 0);

    t = spec("reset_peer:timeout=200");
    assert_int_equal(t.type, TOXIC_RESET_PEER);
    assert_int_equal(t.timeout, 200);

    t = spec("slicer:average_size=100,size_variation=99,delay=10");
    assert_int_equal(t.average_size, 100);
    assert_int_equal(t.size_variation, 99);
    assert_int_equal(t.delay, 10);

    t = spec("limit_data:bytes=1000000000000");     /* the bound itself */
    assert_int_equal(t.bytes, 1000000000000ull);

    t = spec("bitflip:probability=1,every=3,toxicity=0");
    assert_true(t.probability == 1.0);
    assert_int_equal(t.every, 3);
    assert_true(t.toxicity == 0.0);

    t = spec("latency:latency=1e3");                /* strtod forms are numbers */
    assert_int_equal(t.latency, 1000);
}

static void test_spec_parse_bad(void **state)
{
    (void)state;
    static const struct {
        const char *text, *why;
    } bad[] = {
        { "", "expected TYPE" },
        { ":latency=1", "expected TYPE" },
        { "nope", "unknown toxic 'nope'" },
        { "latencyy:latency=1", "unknown toxic" },
        { "latency;latency=1", "unknown toxic" },
        { "averyveryveryverylongtoxictypenamethatgoeson", "expected TYPE" },
        { "latency:latency", "expected key=value" },
        { "latency:=5", "expected key=value" },
        { "latency:latency=-1", "latency: '-1' must not be negative (a whole number from 0 to 1000000000000)" },
        { "latency:jitter=-0.5", "must not be negative" },
        { "bitflip:probability=-1", "probability: '-1' must not be negative (a probability from 0 to 1)" },
        { "latency:rate=-1", "latency has no attribute 'rate'" },
        { "latency:latency=--1", "not a number" },
        { "latency:latency=abc", "not a number" },
        { "latency:latency=5x", "not a number" },
        { "latency:latency= 5", "not a number" },
        { "latency:latency=", "not a number" },
        { "latency:latency=1.5", "whole number" },
        { "latency:latency=1e13", "whole number" },
        { "latency:rate=5", "latency has no attribute 'rate'" },
        { "bandwidth:latency=5", "bandwidth has no attribute 'latency'" },
        { "latency:stream=sideways", "stream:" },
        { "latency:stream=", "stream:" },
        { "latency:toxicity=1.5", "toxicity" },
        { "latency:toxicity=-0", "toxicity: '-0' must not be negative (a probability from 0 to 1)" },
        { "bitflip:probability=2", "probability" },
        { "bitflip:every=0.5", "whole number" },
        { "slicer", "slicer: needs average_size" },
        { "slicer:average_size=0", "slicer: needs average_size" },
        { "slicer:average_size=10,size_variation=10", "size_variation < average_size" },
        { "latency:name=", "name:" },
        { "latency:name=0123456789012345678901234567890123456789012345678901234567890123", "name:" },
        { "latency:latency=1;jitter=2", "not a number" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct toxic_spec t;
        char err[256] = "";
        if (toxic_spec_parse(bad[i].text, &t, err, sizeof err) != -1)
            fail_msg("'%s' was accepted", bad[i].text);
        if (!strstr(err, bad[i].why)) fail_msg("'%s': error '%s' lacks '%s'", bad[i].text, err, bad[i].why);
        assert_null(strchr(err, '\n'));
    }
    /* A 511-character parameter list fits; 512 does not. */
    char text[700] = "latency:";
    size_t n = strlen(text);
    while (n < 8 + 511) text[n++] = ',';
    text[n] = '\0';
    struct toxic_spec t;
    char err[256];
    assert_int_equal(toxic_spec_parse(text, &t, err, sizeof err), 0);
    strcat(text, ",");
    assert_int_equal(toxic_spec_parse(text, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "too long"));
}

static void test_attr_set_bounds(void **state)
{
    (void)state;
    struct toxic_spec t;
    char err[256];
    toxic_spec_init(&t, TOXIC_BITFLIP);
    assert_int_equal(toxic_attr_set(&t, "probability", 0, err, sizeof err), 0);
    assert_int_equal(toxic_attr_set(&t, "probability", 1, err, sizeof err), 0);
    assert_true(t.probability == 1.0);
    assert_int_equal(toxic_attr_set(&t, "probability", -0.001, err, sizeof err), -1);
    assert_int_equal(toxic_attr_set(&t, "probability", 1.001, err, sizeof err), -1);
    assert_int_equal(toxic_attr_set(&t, "probability", NAN, err, sizeof err), -1);
    assert_true(t.probability == 1.0);                  /* a refused value changes nothing */
    assert_int_equal(toxic_attr_set(&t, "every", 7, err, sizeof err), 0);
    assert_int_equal(t.every, 7);
    assert_int_equal(toxic_attr_set(&t, "latency", 7, err, sizeof err), -1);
    assert_non_null(strstr(err, "bitflip has no attribute 'latency'"));

    toxic_spec_init(&t, TOXIC_LATENCY);
    assert_int_equal(toxic_attr_set(&t, "latency", 0, err, sizeof err), 0);
    assert_int_equal(toxic_attr_set(&t, "latency", 1e12, err, sizeof err), 0);
    assert_int_equal(t.latency, 1000000000000ull);
    assert_int_equal(toxic_attr_set(&t, "latency", 1e12 + 1, err, sizeof err), -1);
    assert_int_equal(toxic_attr_set(&t, "latency", -1, err, sizeof err), -1);
    assert_int_equal(toxic_attr_set(&t, "latency", 0.5, err, sizeof err), -1);
    assert_int_equal(toxic_attr_set(&t, "latency", INFINITY, err, sizeof err), -1);
    assert_int_equal(toxic_attr_set(&t, "latency", NAN, err, sizeof err), -1);
    assert_int_equal(t.latency, 1000000000000ull);
    /* toxicity, name and stream are not attributes */
    assert_int_equal(toxic_attr_set(&t, "toxicity", 1, err, sizeof err), -1);
    assert_int_equal(toxic_attr_set(&t, "delay", 1, err, sizeof err), -1);

    /* "delay" belongs to slow_close and slicer; "timeout" to timeout and reset_peer */
    toxic_spec_init(&t, TOXIC_SLICER);
    assert_int_equal(toxic_attr_set(&t, "delay", 3, err, sizeof err), 0);
    toxic_spec_init(&t, TOXIC_RESET_PEER);
    assert_int_equal(toxic_attr_set(&t, "timeout", 3, err, sizeof err), 0);
}

static void collect_attr(void *arg, const char *key, double value)
{
    char *out = arg;
    char one[64];
    snprintf(one, sizeof one, "%s=%g;", key, value);
    strcat(out, one);
}

static void test_spec_defaults_and_names(void **state)
{
    (void)state;
    static const char *const expect[TOXIC_NTYPES] = {
        "latency_downstream", "bandwidth_downstream", "slow_close_downstream", "timeout_downstream",
        "reset_peer_downstream", "slicer_downstream", "limit_data_downstream", "bitflip_downstream",
        "lua_downstream",
    };
    for (int ty = 0; ty < TOXIC_NTYPES; ty++) {
        struct toxic_spec t;
        toxic_spec_init(&t, (enum toxic_type)ty);
        assert_string_equal(t.name, expect[ty]);
        assert_int_equal(toxic_type_from_name(toxic_type_name((enum toxic_type)ty)), ty);
        assert_int_equal(t.streams, TOXIC_DOWNSTREAM);
        assert_true(t.toxicity == 1.0);
    }
    assert_int_equal(toxic_type_from_name("LATENCY"), -1);
    uint8_t st;
    assert_int_equal(toxic_stream_from_name("both", &st), 0);
    assert_string_equal(toxic_stream_name(st), "both");
    assert_int_equal(toxic_stream_from_name("Upstream", &st), -1);

    /* lua: a text attribute, required, and no numeric ones. */
    struct toxic_spec lt = spec("lua:file=/etc/ferry/x.lua,stream=upstream");
    assert_string_equal(lt.file, "/etc/ferry/x.lua");
    assert_int_equal(lt.streams, TOXIC_UPSTREAM);
    char err[200];
    assert_int_equal(toxic_spec_parse("lua", &lt, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "file="));
    assert_int_equal(toxic_spec_parse("lua:latency=1", &lt, err, sizeof(err)), -1);
    assert_int_equal(toxic_spec_parse("latency:file=x.lua", &lt, err, sizeof(err)), -1);

    char out[256] = "";
    struct toxic_spec t = spec("latency:latency=100,jitter=10");
    toxic_attr_each(&t, collect_attr, out);
    assert_string_equal(out, "latency=100;jitter=10;");
    out[0] = '\0';
    t = spec("bitflip:probability=0.5");
    toxic_attr_each(&t, collect_attr, out);
    assert_string_equal(out, "probability=0.5;every=0;");
}

static void test_set_and_slot(void **state)
{
    (void)state;
    struct toxic_spec specs[2] = { spec("latency:latency=1"), spec("bitflip:every=2,name=flip") };
    struct toxic_set *s = toxic_set_new(specs, 2);
    assert_int_equal(toxic_set_find(s, "flip"), 1);
    assert_int_equal(toxic_set_find(s, "latency_downstream"), 0);
    assert_int_equal(toxic_set_find(s, "nope"), -1);
    assert_int_equal(toxic_set_find(NULL, "flip"), -1);

    struct toxic_slot slot;
    unsigned gen, gen2;
    toxic_slot_init(&slot);
    assert_null(toxic_slot_acquire(&slot, &gen));
    toxic_slot_publish(&slot, toxic_set_ref(s));
    struct toxic_set *got = toxic_slot_acquire(&slot, &gen2);
    assert_ptr_equal(got, s);
    assert_int_not_equal(gen, gen2);
    assert_int_equal(slot.gen, gen2);
    toxic_set_unref(got);
    /* An empty set is published as "no toxics". */
    toxic_slot_publish(&slot, toxic_set_new(NULL, 0));
    assert_null(toxic_slot_acquire(&slot, &gen));
    assert_int_not_equal(gen, gen2);
    toxic_slot_destroy(&slot);
    toxic_set_unref(s);      /* the last reference: ASan reports a leak or a double free */
}

/* ===================================================================
 * toxq
 * =================================================================== */

static void test_no_toxics_passes_through(void **state)
{
    (void)state;
    struct toxq *q = newq(1);
    assert_int_equal(toxq_configure(q, NULL, TOXIC_DOWNSTREAM, 0), 0);
    assert_int_equal(toxq_room(q), TOXQ_MAX_BYTES);
    assert_int_equal(toxq_next_wakeup(q), UINT64_MAX);
    assert_int_equal(toxq_push(q, (const uint8_t *)"hello", 5, 7 * MS), 0);
    struct piece *p = malloc(sizeof(*p));
    assert_true(take(q, p));
    assert_int_equal(p->due, 7 * MS);
    assert_memory_equal(p->data, "hello", 5);
    assert_true(toxq_empty(q));
    toxq_push_eof(q, 8 * MS);
    assert_true(toxq_eof_due(q, 8 * MS));
    assert_int_equal(toxq_action(q, UINT64_MAX), TOXQ_NONE);
    free(p);
    freeq(q);
}

static void test_latency_due_times(void **state)
{
    (void)state;
    struct toxq *q = newq(1);
    struct piece *p = malloc(sizeof(*p));
    CONFIGURE(q, 0, "latency:latency=100");
    assert_int_equal(toxq_push(q, (const uint8_t *)"a", 1, 1 * MS), 0);
    assert_int_equal(toxq_push(q, (const uint8_t *)"bb", 2, 10 * MS), 0);
    /* Each chunk is delayed from its own arrival: 101 ms and 110 ms, not
     * 101 and 201 (throughput is not serialized behind the latency). */
    assert_true(take(q, p));
    assert_int_equal(p->due, 101 * MS);
    assert_int_equal(p->len, 1);
    assert_true(take(q, p));
    assert_int_equal(p->due, 110 * MS);
    assert_int_equal(p->len, 2);
    assert_false(take(q, p));
    /* Upstream toxics do not touch the downstream queue and vice versa. */
    struct toxq *u = newq(1);
    setup_q(u, TOXIC_UPSTREAM, 0, "latency:latency=100", NULL);
    assert_int_equal(u->nruns, 0);
    setup_q(u, TOXIC_UPSTREAM, 0, "latency:latency=100,stream=both", NULL);
    assert_int_equal(u->nruns, 1);
    assert_int_equal(toxq_push(u, (const uint8_t *)"a", 1, 0), 0);
    assert_int_equal(toxq_next_wakeup(u), 100 * MS);
    freeq(u);
    free(p);
    freeq(q);
}

static void test_latency_jitter(void **state)
{
    (void)state;
    struct toxq *q = newq(42);
    struct piece *p = malloc(sizeof(*p));
    CONFIGURE(q, 0, "latency:latency=100,jitter=10");
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < 2000; i++) {
        uint64_t at = (uint64_t)i * S;          /* far apart: no ordering clamp */
        assert_int_equal(toxq_push(q, (const uint8_t *)"x", 1, at), 0);
        assert_true(take(q, p));
        uint64_t d = p->due - at;
        assert_in_range(d, 90 * MS, 110 * MS);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo < 92 * MS && hi > 108 * MS);     /* both sides of the range are used */
    freeq(q);

    /* Jitter above latency: the delay clamps at 0, never negative. */
    q = newq(43);
    CONFIGURE(q, 0, "latency:latency=10,jitter=50");
    int zero = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t at = (uint64_t)(i + 1) * S;
        assert_int_equal(toxq_push(q, (const uint8_t *)"x", 1, at), 0);
        assert_true(take(q, p));
        assert_true(p->due >= at);
        assert_true(p->due - at <= 60 * MS);
        zero += p->due == at;
    }
    assert_in_range(zero, 300, 500);                /* 40% of the range is <= 0 */

    /* Chunks close together never overtake each other. */
    toxq_free(q);
    toxq_init(q, 44);
    CONFIGURE(q, 0, "latency:latency=100,jitter=50");
    for (int i = 0; i < 500; i++) assert_int_equal(toxq_push(q, (const uint8_t *)&i, 1, (uint64_t)i * 100), 0);
    uint64_t prev = 0;
    for (int i = 0; i < 500; i++) {
        assert_true(take(q, p));
        assert_int_equal(p->data[0], (uint8_t)i);
        assert_true(p->due >= prev);
        prev = p->due;
    }
    free(p);
    freeq(q);
}

static void test_bandwidth_pacing(void **state)
{
    (void)state;
    struct toxq *q = newq(1);
    struct piece *p = malloc(sizeof(*p));
    /* 10 KB/s = 10 bytes per ms: 1000-byte portions, one per 100 ms. */
    CONFIGURE(q, 0, "bandwidth:rate=10");
    fill_pattern(buf_in, 5000);
    assert_int_equal(toxq_push(q, buf_in, 5000, 0), 0);
    for (int i = 0; i < 5; i++) {
        assert_true(take(q, p));
        assert_int_equal(p->len, 1000);
        assert_int_equal(p->due, (uint64_t)(i + 1) * 100 * MS);
        assert_memory_equal(p->data, buf_in + i * 1000, 1000);
    }
    assert_false(take(q, p));
    /* Arriving while the link is busy: queued behind it (500 bytes = 50 ms). */
    assert_int_equal(toxq_push(q, buf_in, 5000, 0), 0);
    assert_int_equal(toxq_push(q, buf_in, 500, 50 * MS), 0);
    for (int i = 0; i < 5; i++) assert_true(take(q, p));
    assert_true(take(q, p));
    assert_int_equal(p->len, 500);
    assert_int_equal(p->due, 1050 * MS);
    /* After an idle spell the pacing starts from the arrival. */
    assert_int_equal(toxq_push(q, buf_in, 100, 5 * S), 0);
    assert_true(take(q, p));
    assert_int_equal(p->due, 5 * S + 10 * MS);
    /* Total time for N bytes is N / rate whatever the chunking. */
    toxq_free(q);
    toxq_init(q, 1);
    CONFIGURE(q, 0, "bandwidth:rate=100");
    for (int i = 0; i < 1000; i++) assert_int_equal(toxq_push(q, buf_in, 137, 0), 0);
    uint64_t last = 0;
    size_t total = 0;
    while (take(q, p)) {
        last = p->due;
        total += p->len;
    }
    assert_int_equal(total, 137000);
    assert_int_equal(last, 1370 * MS);              /* 137000 bytes at 100 bytes/ms */
    /* rate=0: unlimited */
    toxq_free(q);
    toxq_init(q, 1);
    CONFIGURE(q, 0, "bandwidth:rate=0");
    assert_int_equal(toxq_push(q, buf_in, 5000, 3), 0);
    assert_true(take(q, p));
    assert_int_equal(p->len, 5000);
    assert_int_equal(p->due, 3);
    free(p);
    freeq(q);
}

static void test_slicer_sizes_and_delays(void **state)
{
    (void)state;
    struct toxq *q = newq(7);
    struct piece *p = malloc(sizeof(*p));
    /* No variation, a power-of-two multiple: exact halves, 1 ms apart. */
    CONFIGURE(q, 0, "slicer:average_size=100,size_variation=0,delay=1000");
    fill_pattern(buf_in, 800);
    assert_int_equal(toxq_push(q, buf_in, 800, 5 * MS), 0);
    for (int i = 0; i < 8; i++) {
        assert_true(take(q, p));
        assert_int_equal(p->len, 100);
        assert_int_equal(p->due, 5 * MS + (uint64_t)i * MS);
        assert_memory_equal(p->data, buf_in + i * 100, 100);
    }
    assert_false(take(q, p));
    /* The next chunk waits for the last slice's delay. */
    assert_int_equal(toxq_push(q, buf_in, 50, 6 * MS), 0);
    assert_true(take(q, p));
    assert_int_equal(p->due, 13 * MS);
    freeq(q);

    /* With variation: every piece in 1..average+variation (toxiproxy's
     * halving can make pieces below average-variation), all bytes in order. */
    q = newq(8);
    CONFIGURE(q, 0, "slicer:average_size=100,size_variation=20,delay=0");
    size_t room = toxq_room(q);
    assert_int_equal(room, 6400);                   /* a push becomes at most ~64 slices */
    fill_pattern(buf_in, 6400);
    size_t got = 0, n = 0, in_band = 0;
    for (int k = 0; k < 20; k++) {
        assert_int_equal(toxq_push(q, buf_in, 6400 - (size_t)k * 97, 0), 0);
        while (take(q, p)) {
            assert_in_range(p->len, 1, 120);
            assert_memory_equal(p->data, buf_in + got, p->len);
            got += p->len;
            n++;
            in_band += p->len >= 50;
        }
        assert_int_equal(got, 6400 - (size_t)k * 97);
        got = 0;
    }
    assert_true(in_band * 10 >= n * 9);             /* almost all are within a halving of the average */
    free(p);
    freeq(q);
}

static void test_bitflip_every(void **state)
{
    (void)state;
    struct toxq *q = newq(3);
    CONFIGURE(q, 0, "bitflip:every=100");
    fill_pattern(buf_in, 100000);
    assert_int_equal(toxq_push(q, buf_in, 100000, 0), 0);
    assert_int_equal(drain_all(q, buf_out), 100000);
    assert_int_equal(popcount_xor(buf_in, buf_out, 100000), 1000);
    for (size_t i = 0; i < 100000; i++)
        assert_int_equal(buf_in[i] != buf_out[i], i % 100 == 99);   /* the 100th, 200th, ... byte */
    /* The count runs across pushes: 150 + 50 bytes flip bytes 100 and 200. */
    toxq_free(q);
    toxq_init(q, 3);
    CONFIGURE(q, 0, "bitflip:every=100");
    assert_int_equal(toxq_push(q, buf_in, 150, 0), 0);
    assert_int_equal(toxq_push(q, buf_in + 150, 50, 0), 0);
    assert_int_equal(drain_all(q, buf_out), 200);
    assert_int_equal(popcount_xor(buf_in, buf_out, 200), 2);
    assert_true(buf_in[99] != buf_out[99] && buf_in[199] != buf_out[199]);
    /* every=1: every byte, one bit each */
    toxq_free(q);
    toxq_init(q, 3);
    CONFIGURE(q, 0, "bitflip:every=1");
    assert_int_equal(toxq_push(q, buf_in, 4096, 0), 0);
    assert_int_equal(drain_all(q, buf_out), 4096);
    for (size_t i = 0; i < 4096; i++) assert_int_equal(__builtin_popcount(buf_in[i] ^ buf_out[i]), 1);
    /* The caller's buffer is never modified. */
    uint8_t copy[64];
    memcpy(copy, buf_in, 64);
    assert_int_equal(toxq_push(q, buf_in, 64, 0), 0);
    assert_memory_equal(copy, buf_in, 64);
    freeq(q);
}

static void test_bitflip_probability(void **state)
{
    (void)state;
    struct toxq *q = newq(5);
    CONFIGURE(q, 0, "bitflip:probability=0.01");
    memset(buf_in, 0, 200000);
    assert_int_equal(toxq_push(q, buf_in, 200000, 0), 0);
    assert_int_equal(drain_all(q, buf_out), 200000);
    size_t bits = popcount_xor(buf_in, buf_out, 200000);
    assert_in_range(bits, 1700, 2300);              /* expected 2000, sd ~45 */
    /* probability 0 (and every 0): bytes unchanged */
    toxq_free(q);
    toxq_init(q, 5);
    CONFIGURE(q, 0, "bitflip");
    fill_pattern(buf_in, 100000);
    assert_int_equal(toxq_push(q, buf_in, 100000, 0), 0);
    assert_int_equal(drain_all(q, buf_out), 100000);
    assert_memory_equal(buf_in, buf_out, 100000);
    /* probability 1: every byte */
    toxq_free(q);
    toxq_init(q, 5);
    CONFIGURE(q, 0, "bitflip:probability=1");
    assert_int_equal(toxq_push(q, buf_in, 1000, 0), 0);
    assert_int_equal(drain_all(q, buf_out), 1000);
    assert_int_equal(popcount_xor(buf_in, buf_out, 1000), 1000);
    freeq(q);
}

static void test_limit_data(void **state)
{
    (void)state;
    struct toxq *q = newq(1);
    CONFIGURE(q, 0, "limit_data:bytes=1000");
    fill_pattern(buf_in, 2000);
    assert_int_equal(toxq_push(q, buf_in, 600, 0), 0);
    assert_int_equal(toxq_action(q, 0), TOXQ_NONE);
    assert_int_equal(toxq_push(q, buf_in + 600, 600, 0), 0);
    /* Cut, but the 1000 bytes must reach the sink before the close. */
    assert_int_equal(toxq_action(q, UINT64_MAX), TOXQ_NONE);
    assert_int_equal(drain_all(q, buf_out), 1000);
    assert_memory_equal(buf_out, buf_in, 1000);
    assert_int_equal(toxq_action(q, 0), TOXQ_CLOSE);
    /* Anything later is dropped, and the action stays. */
    assert_int_equal(toxq_push(q, buf_in, 10, 1), 0);
    assert_true(toxq_empty(q));
    assert_int_equal(toxq_action(q, 1), TOXQ_CLOSE);
    freeq(q);

    /* Exactly at the limit in one push: cut at once. */
    q = newq(1);
    CONFIGURE(q, 0, "limit_data:bytes=1000");
    assert_int_equal(toxq_push(q, buf_in, 1000, 0), 0);
    assert_int_equal(drain_all(q, NULL), 1000);
    assert_int_equal(toxq_action(q, 0), TOXQ_CLOSE);
    freeq(q);

    /* Behind a latency: the close waits for the delayed bytes. */
    q = newq(1);
    CONFIGURE(q, 0, "latency:latency=100", "limit_data:bytes=10");
    assert_int_equal(toxq_push(q, buf_in, 50, 0), 0);
    assert_int_equal(toxq_action(q, 50 * MS), TOXQ_NONE);
    assert_int_equal(toxq_next_wakeup(q), 100 * MS);
    size_t len;
    assert_null(toxq_peek(q, 99 * MS, &len));
    assert_non_null(toxq_peek(q, 100 * MS, &len));
    assert_int_equal(len, 10);
    toxq_consume(q, 4);                             /* a partial write */
    assert_int_equal(toxq_action(q, 100 * MS), TOXQ_NONE);
    toxq_consume(q, 6);
    assert_int_equal(toxq_action(q, 100 * MS), TOXQ_CLOSE);
    freeq(q);
}

static void test_timeout(void **state)
{
    (void)state;
    struct toxq *q = newq(1);
    CONFIGURE(q, 1 * MS, "timeout:timeout=500");
    assert_int_equal(toxq_next_wakeup(q), 501 * MS);
    assert_int_equal(toxq_push(q, (const uint8_t *)"data", 4, 2 * MS), 0);
    assert_true(toxq_empty(q));                     /* dropped */
    assert_int_equal(toxq_action(q, 501 * MS - 1), TOXQ_NONE);
    assert_int_equal(toxq_action(q, 501 * MS), TOXQ_CLOSE);
    freeq(q);

    /* timeout=0: data dropped, never closes. */
    q = newq(1);
    CONFIGURE(q, 0, "timeout:timeout=0");
    assert_int_equal(toxq_push(q, (const uint8_t *)"data", 4, 2 * MS), 0);
    assert_true(toxq_empty(q));
    assert_int_equal(toxq_next_wakeup(q), UINT64_MAX);
    assert_int_equal(toxq_action(q, UINT64_MAX - 1), TOXQ_NONE);
    /* The EOF still passes (toxiproxy's timeout closes when its input does). */
    toxq_push_eof(q, 3 * MS);
    assert_true(toxq_eof_due(q, 3 * MS));
    freeq(q);
}

static void test_reset_peer(void **state)
{
    (void)state;
    struct toxq *q = newq(1);
    CONFIGURE(q, 0, "reset_peer:timeout=200");
    assert_int_equal(toxq_next_wakeup(q), UINT64_MAX);      /* not armed before data */
    assert_int_equal(toxq_action(q, 10 * S), TOXQ_NONE);
    assert_int_equal(toxq_push(q, (const uint8_t *)"hi", 2, 50 * MS), 0);
    assert_true(toxq_empty(q));                             /* not forwarded */
    assert_int_equal(toxq_next_wakeup(q), 250 * MS);
    assert_int_equal(toxq_action(q, 250 * MS - 1), TOXQ_NONE);
    assert_int_equal(toxq_action(q, 250 * MS), TOXQ_RESET);
    /* More data does not push the deadline back. */
    assert_int_equal(toxq_push(q, (const uint8_t *)"hi", 2, 100 * MS), 0);
    assert_int_equal(toxq_next_wakeup(q), 250 * MS);
    freeq(q);

    /* timeout=0: reset as soon as data comes; a reset wins over a close. */
    q = newq(1);
    CONFIGURE(q, 0, "reset_peer:timeout=0", "timeout:timeout=1");
    assert_int_equal(toxq_push(q, (const uint8_t *)"hi", 2, 5 * MS), 0);
    assert_int_equal(toxq_action(q, 5 * MS), TOXQ_RESET);
    freeq(q);

    /* The same at time 0: still armed, due 1 µs later (an action time of
     * 0 stands for "not armed"). */
    q = newq(1);
    CONFIGURE(q, 0, "reset_peer:timeout=0");
    assert_int_equal(toxq_push(q, (const uint8_t *)"hi", 2, 0), 0);
    assert_int_equal(toxq_action(q, 1), TOXQ_RESET);
    freeq(q);

    /* Behind a latency, the countdown starts when the data would leave. */
    q = newq(1);
    CONFIGURE(q, 0, "latency:latency=100", "reset_peer:timeout=50");
    assert_int_equal(toxq_push(q, (const uint8_t *)"hi", 2, 0), 0);
    assert_int_equal(toxq_next_wakeup(q), 150 * MS);
    freeq(q);
}

static void test_slow_close(void **state)
{
    (void)state;
    struct toxq *q = newq(1);
    CONFIGURE(q, 0, "slow_close:delay=300");
    assert_int_equal(toxq_push(q, (const uint8_t *)"x", 1, 0), 0);
    toxq_push_eof(q, 10 * MS);
    /* Not while a piece waits, not before the delay. */
    assert_false(toxq_eof_due(q, 10 * S));
    assert_int_equal(drain_all(q, NULL), 1);
    assert_int_equal(toxq_next_wakeup(q), 310 * MS);
    assert_false(toxq_eof_due(q, 310 * MS - 1));
    assert_true(toxq_eof_due(q, 310 * MS));
    /* A second EOF changes nothing. */
    toxq_push_eof(q, 20 * MS);
    assert_false(toxq_eof_due(q, 310 * MS - 1));
    assert_int_equal(toxq_action(q, UINT64_MAX), TOXQ_NONE);
    freeq(q);

    /* Counted from the last data's leaving (latency), not the EOF's arrival. */
    q = newq(1);
    CONFIGURE(q, 0, "latency:latency=100", "slow_close:delay=300");
    assert_int_equal(toxq_push(q, (const uint8_t *)"x", 1, 0), 0);
    toxq_push_eof(q, 0);
    assert_int_equal(drain_all(q, NULL), 1);
    assert_false(toxq_eof_due(q, 400 * MS - 1));
    assert_true(toxq_eof_due(q, 400 * MS));
    freeq(q);
}

static void test_toxicity(void **state)
{
    (void)state;
    struct piece *p = malloc(sizeof(*p));
    /* toxicity 0: never applies, whatever the seed. */
    for (uint64_t seed = 1; seed <= 500; seed++) {
        struct toxq *q = newq(seed);
        CONFIGURE(q, 0, "latency:latency=100,toxicity=0", "bitflip:every=1,toxicity=0",
                  "timeout:timeout=1,toxicity=0");
        fill_pattern(buf_in, 64);
        assert_int_equal(toxq_push(q, buf_in, 64, 5), 0);
        assert_true(take(q, p));
        assert_int_equal(p->due, 5);
        assert_memory_equal(p->data, buf_in, 64);
        assert_int_equal(toxq_action(q, UINT64_MAX), TOXQ_NONE);
        freeq(q);
    }
    /* toxicity 0.3: about 30% of sessions. */
    int hit = 0;
    for (uint64_t seed = 1; seed <= 2000; seed++) {
        struct toxq *q = newq(seed * 0x9E3779B97F4A7C15ULL);
        CONFIGURE(q, 0, "latency:latency=100,toxicity=0.3");
        assert_int_equal(toxq_push(q, buf_in, 1, 0), 0);
        hit += toxq_next_wakeup(q) == 100 * MS;
        freeq(q);
    }
    assert_in_range(hit, 500, 700);
    free(p);
}

static void test_configure_keeps_state_and_flushes(void **state)
{
    (void)state;
    struct toxq *q = newq(1);
    struct piece *p = malloc(sizeof(*p));
    fill_pattern(buf_in, 4096);

    /* Same name and type: the count goes on (600 + 400 = 1000). */
    CONFIGURE(q, 0, "limit_data:bytes=1000");
    assert_int_equal(toxq_push(q, buf_in, 600, 0), 0);
    CONFIGURE(q, 1, "limit_data:bytes=1000", "latency:latency=0");
    assert_int_equal(toxq_push(q, buf_in, 600, 2), 0);
    assert_int_equal(drain_all(q, NULL), 1000);
    assert_int_equal(toxq_action(q, 2), TOXQ_CLOSE);
    freeq(q);

    /* A different name is a new toxic: its count starts over. */
    q = newq(1);
    CONFIGURE(q, 0, "limit_data:bytes=1000");
    assert_int_equal(toxq_push(q, buf_in, 600, 0), 0);
    CONFIGURE(q, 1, "limit_data:bytes=1000,name=other");
    assert_int_equal(toxq_push(q, buf_in, 600, 2), 0);
    assert_int_equal(drain_all(q, NULL), 1200);
    assert_int_equal(toxq_action(q, 2), TOXQ_NONE);
    freeq(q);

    /* Queued pieces are due at once after a reconfigure, in order. */
    q = newq(1);
    CONFIGURE(q, 0, "latency:latency=1000");
    assert_int_equal(toxq_push(q, buf_in, 10, 0), 0);
    assert_int_equal(toxq_push(q, buf_in + 10, 10, 5 * MS), 0);
    CONFIGURE(q, 10 * MS, "latency:latency=1000");
    assert_true(take(q, p));
    assert_int_equal(p->due, 10 * MS);
    assert_memory_equal(p->data, buf_in, 10);
    assert_true(take(q, p));
    assert_int_equal(p->due, 10 * MS);
    assert_memory_equal(p->data, buf_in + 10, 10);
    freeq(q);

    /* A changed timeout counts from when the toxic began; 0 disarms it. */
    q = newq(1);
    CONFIGURE(q, 0, "timeout:timeout=500");
    CONFIGURE(q, 100 * MS, "timeout:timeout=1000");
    assert_int_equal(toxq_next_wakeup(q), 1000 * MS);
    CONFIGURE(q, 200 * MS, "timeout:timeout=0");
    assert_int_equal(toxq_next_wakeup(q), UINT64_MAX);
    /* Removing every toxic: pass-through. */
    assert_int_equal(toxq_configure(q, NULL, TOXIC_DOWNSTREAM, 300 * MS), 0);
    assert_int_equal(toxq_push(q, buf_in, 10, 300 * MS), 0);
    assert_true(take(q, p));
    assert_int_equal(p->due, 300 * MS);
    free(p);
    freeq(q);
}

static void test_configure_lowered_latency_applies_to_new_data(void **state)
{
    (void)state;
    struct toxq *q = newq(1);
    struct piece *p = malloc(sizeof(*p));
    /* A latency lowered from 3 s to 0 (same toxic, API update): data that
     * arrives afterwards is not held to the old setting's schedule. */
    CONFIGURE(q, 0, "latency:latency=3000");
    assert_int_equal(toxq_push(q, buf_in, 10, 0), 0);
    CONFIGURE(q, 10 * MS, "latency:latency=0");
    assert_true(take(q, p));
    assert_int_equal(p->due, 10 * MS);
    assert_int_equal(toxq_push(q, buf_in, 10, 20 * MS), 0);
    assert_true(take(q, p));
    assert_int_equal(p->due, 20 * MS);
    freeq(q);

    /* The same for a bandwidth raised from 1 KB/s to unlimited. */
    q = newq(1);
    CONFIGURE(q, 0, "bandwidth:rate=1");
    assert_int_equal(toxq_push(q, buf_in, 4096, 0), 0);     /* ~4 s of sending */
    CONFIGURE(q, 10 * MS, "bandwidth:rate=1000000");
    assert_int_equal(drain_all(q, NULL), 4096);
    assert_int_equal(toxq_push(q, buf_in, 1000, 20 * MS), 0);
    assert_true(take(q, p));
    assert_int_equal(p->due, 20 * MS + 1);          /* 1000 bytes at 1 GB/s */
    free(p);
    freeq(q);
}

static void test_room_is_bounded(void **state)
{
    (void)state;
    struct toxq *q = newq(1);
    CONFIGURE(q, 0, "latency:latency=3000");
    memset(buf_in, 'z', 16384);
    size_t pushed = 0;
    while (toxq_has_room(q)) {
        size_t room = toxq_room(q);
        size_t n = room < 16384 ? room : 16384;
        assert_int_equal(toxq_push(q, buf_in, n, 0), 0);
        pushed += n;
        assert_true(pushed <= TOXQ_MAX_BYTES);
    }
    assert_int_equal(pushed, TOXQ_MAX_BYTES);
    assert_int_equal(toxq_room(q), 0);
    /* Nothing is due yet; taking one piece makes room again. */
    size_t len;
    assert_null(toxq_peek(q, 3 * S - 1, &len));
    assert_non_null(toxq_peek(q, 3 * S, &len));
    toxq_consume(q, len);
    assert_int_equal(toxq_room(q), len);
    freeq(q);

    /* Pieces are bounded too: 4096 one-byte pushes fill it. */
    q = newq(1);
    CONFIGURE(q, 0, "latency:latency=3000");
    for (unsigned i = 0; i < TOXQ_MAX_PIECES; i++) {
        assert_true(toxq_has_room(q));
        assert_int_equal(toxq_push(q, buf_in, 1, i), 0);
    }
    assert_false(toxq_has_room(q));
    assert_int_equal(toxq_room(q), 0);
    freeq(q);
}

static void test_chain_order(void **state)
{
    (void)state;
    /* limit_data then timeout: limit_data counts what arrives, timeout then
     * drops it: nothing passes, yet the limit is reached and closes. */
    struct toxq *q = newq(1);
    CONFIGURE(q, 0, "limit_data:bytes=10", "timeout:timeout=0");
    assert_int_equal(toxq_push(q, buf_in, 20, 0), 0);
    assert_true(toxq_empty(q));
    assert_int_equal(toxq_action(q, 0), TOXQ_CLOSE);
    freeq(q);
    /* timeout then limit_data: limit_data never sees a byte. */
    q = newq(1);
    CONFIGURE(q, 0, "timeout:timeout=0", "limit_data:bytes=10");
    assert_int_equal(toxq_push(q, buf_in, 20, 0), 0);
    assert_true(toxq_empty(q));
    assert_int_equal(toxq_action(q, UINT64_MAX), TOXQ_NONE);
    freeq(q);

    /* limit_data then bitflip(every=1): exactly 100 bytes, each with one bit
     * flipped. bitflip then limit_data: the same 100 bytes come out. */
    fill_pattern(buf_in, 1000);
    q = newq(9);
    CONFIGURE(q, 0, "limit_data:bytes=100", "bitflip:every=3");
    assert_int_equal(toxq_push(q, buf_in, 1000, 0), 0);
    assert_int_equal(drain_all(q, buf_out), 100);
    assert_int_equal(popcount_xor(buf_in, buf_out, 100), 33);
    assert_int_equal(q->runs[1].count, 100);        /* bitflip saw only what limit_data let through */
    freeq(q);
    q = newq(9);
    CONFIGURE(q, 0, "bitflip:every=3", "limit_data:bytes=100");
    assert_int_equal(toxq_push(q, buf_in, 1000, 0), 0);
    assert_int_equal(drain_all(q, buf_out), 100);
    assert_int_equal(popcount_xor(buf_in, buf_out, 100), 33);
    assert_int_equal(q->runs[0].count, 1000);       /* bitflip saw all of it */
    freeq(q);

    /* slicer then latency: slices keep their spacing, shifted by the latency. */
    struct piece *p = malloc(sizeof(*p));
    q = newq(1);
    CONFIGURE(q, 0, "slicer:average_size=10,delay=2000", "latency:latency=100");
    assert_int_equal(toxq_push(q, buf_in, 40, 0), 0);
    for (int i = 0; i < 4; i++) {
        assert_true(take(q, p));
        assert_int_equal(p->len, 10);
        assert_int_equal(p->due, 100 * MS + (uint64_t)i * 2 * MS);
    }
    free(p);
    freeq(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_parse_good),
        cmocka_unit_test(test_spec_parse_bad),
        cmocka_unit_test(test_attr_set_bounds),
        cmocka_unit_test(test_spec_defaults_and_names),
        cmocka_unit_test(test_set_and_slot),
        cmocka_unit_test(test_no_toxics_passes_through),
        cmocka_unit_test(test_latency_due_times),
        cmocka_unit_test(test_latency_jitter),
        cmocka_unit_test(test_bandwidth_pacing),
        cmocka_unit_test(test_slicer_sizes_and_delays),
        cmocka_unit_test(test_bitflip_every),
        cmocka_unit_test(test_bitflip_probability),
        cmocka_unit_test(test_limit_data),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_reset_peer),
        cmocka_unit_test(test_slow_close),
        cmocka_unit_test(test_toxicity),
        cmocka_unit_test(test_configure_keeps_state_and_flushes),
        cmocka_unit_test(test_configure_lowered_latency_applies_to_new_data),
        cmocka_unit_test(test_room_is_bounded),
        cmocka_unit_test(test_chain_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* fuzz_timewin.c - libFuzzer target for the time-of-day window parser,
 * timewin_parse, and the functions that use its result.
 *
 * The input (cut at 1024 bytes) is made a NUL-terminated string in an
 * exactly-sized heap block, as the CLI or config would pass it. Invariants
 * checked (abort() on violation):
 *   - timewin_parse returns 0 or -1, and the same with a tiny err buffer;
 *     on -1 err is a non-empty, printable one-line string that fits;
 *   - on 0: 1..TIMEWIN_MAX windows, one per comma-separated part of the
 *     input; every start < 1440, end <= 1440, start != end, start != 1440;
 *   - timewin_format fits TIMEWIN_STRLEN, reports the length it wrote, and
 *     parses back to identical windows;
 *   - timewin_allows agrees, for every minute of the day, with a reference
 *     written differently (offset from the start, modulo a day), and is 0
 *     for minutes out of range.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/limits.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define INPUT_MAX 1024
#define ERRLEN 128
#define DAY 1440u

static void check_err(const char *err)
{
    size_t n = strnlen(err, ERRLEN);

    CHECK(n > 0 && n < ERRLEN);
    for (size_t i = 0; i < n; i++)
        CHECK(err[i] >= 0x20 && err[i] < 0x7f);
}

/* Minute m is in [start, end) walking forward from start around the clock. */
static int ref_allows(const struct timewin *w, unsigned m)
{
    for (unsigned i = 0; i < w->n; i++) {
        unsigned s = w->w[i].start, e = w->w[i].end;
        unsigned len = e > s ? e - s : e + DAY - s;

        if ((m + DAY - s) % DAY < len)
            return 1;
    }
    return 0;
}

static unsigned count_parts(const char *s)
{
    unsigned n = 1;

    for (; *s; s++)
        n += *s == ',';
    return n;
}

static void check_parsed(const char *s, const struct timewin *w)
{
    char text[TIMEWIN_STRLEN], err[ERRLEN];
    struct timewin again;
    int len;

    CHECK(w->n >= 1 && w->n <= TIMEWIN_MAX);
    CHECK(w->n == count_parts(s));
    for (unsigned i = 0; i < w->n; i++) {
        CHECK(w->w[i].start < DAY && w->w[i].end <= DAY);
        CHECK(w->w[i].start != w->w[i].end);
    }
    len = timewin_format(w, text, sizeof text);
    CHECK(len > 0 && (size_t)len < sizeof text && strlen(text) == (size_t)len);
    CHECK(timewin_parse(text, &again, err, sizeof err) == 0);
    CHECK(memcmp(&again, w, sizeof again) == 0);
    for (unsigned m = 0; m < DAY; m++)
        CHECK(timewin_allows(w, m) == ref_allows(w, m));
    CHECK(timewin_allows(w, DAY) == 0);
    CHECK(timewin_allows(w, ~0u) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = size < INPUT_MAX ? size : INPUT_MAX;
    char *s = malloc(n + 1), err[ERRLEN], tiny[4];
    struct timewin w, w2;
    int rc;

    if (!s)
        return 0;
    memcpy(s, data, n);
    s[n] = '\0';
    /* Shrink the block to the string so ASan sees reads past its NUL. */
    char *exact = strdup(s);
    free(s);
    if (!exact)
        return 0;
    err[0] = '\0';
    rc = timewin_parse(exact, &w, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    CHECK(timewin_parse(exact, &w2, tiny, sizeof tiny) == rc);
    if (rc < 0)
        check_err(err);
    else
        check_parsed(exact, &w);
    free(exact);
    return 0;
}

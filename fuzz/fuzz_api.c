/* fuzz_api.c - libFuzzer target for the HTTP API: raw bytes through the
 * request parser (api/http.c) and every complete request through the router
 * (api/router.c) against the in-memory backend, as a keep-alive connection
 * would: requests one after another until an error or the end.
 *
 * Invariants (abort() on violation): the parser never takes more than it is
 * given, DONE carries a method and a URL, ERROR an HTTP status; every routed
 * response has a status in 200..599, a body unless 204, and the body is
 * valid JSON.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "api/router.h"
#include "../tests/unit/api_fake.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fake f;
    struct api_backend b;
    struct api_req r;
    const char *p = (const char *)data;
    size_t left = size;
    fake_init(&f, &b);
    api_req_init(&r);
    for (int n = 0; n < 64; n++) {
        size_t used;
        enum api_req_state st = api_req_feed(&r, p, left, &used);
        CHECK(used <= left);
        p += used;
        left -= used;
        if (st == API_REQ_MORE) {
            CHECK(left == 0);
            break;
        }
        if (st == API_REQ_ERROR) {
            CHECK(r.error_status >= 400 && r.error_status < 600);
            break;
        }
        CHECK(r.method[0] && r.url);
        (void)api_req_refusal(&r, NULL);    /* the Host parser sees what the fuzzer sends */
        struct api_response out;
        api_route(&b, r.method, r.url, r.body, r.body_len, &out);
        CHECK(out.status >= 200 && out.status < 600);
        CHECK(out.status == 204 ? out.body == NULL : out.body != NULL);
        if (out.body) {
            json_t *j = json_loads(out.body, 0, NULL);
            CHECK(j);
            json_decref(j);
        }
        api_response_free(&out);
        api_req_reset(&r);
    }
    api_req_free(&r);
    fake_free(&f);
    return 0;
}

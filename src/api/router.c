/* router.c - see router.h. Paths, shapes, status codes and error texts
 * follow toxiproxy's api.go, so its clients work unchanged. */
#include "api/router.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage/lua_filter.h"

const char *api_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return status >= 500 ? "Internal Server Error" : "Error";
    }
}

void api_response_free(struct api_response *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

/* Takes the reference to j. */
static void reply_json(struct api_response *out, int status, json_t *j)
{
    out->status = status;
    out->content_type = NULL;
    out->body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    out->len = out->body ? strlen(out->body) : 0;
    json_decref(j);
    if (j && !out->body) out->status = 500;
}

void api_error(struct api_response *out, int status, const char *msg)
{
    reply_json(out, status, json_pack("{s:s, s:i}", "error", msg, "status", status));
}

/* "bad request body: <why>", toxiproxy's wording. */
static void bad_body(struct api_response *out, const char *why)
{
    char m[300];
    snprintf(m, sizeof(m), "bad request body: %s", why);
    api_error(out, 400, m);
}

/* ---- JSON shapes ---- */

static void attr_to_json(void *arg, const char *key, double v)
{
    json_t *attrs = arg;
    json_object_set_new(attrs, key, v == floor(v) && fabs(v) < 9e15 ? json_integer((json_int_t)v) : json_real(v));
}

static json_t *toxic_json(const struct toxic_spec *t)
{
    json_t *attrs = json_object();
    toxic_attr_each(t, attr_to_json, attrs);
    if (t->type == TOXIC_LUA) json_object_set_new(attrs, "file", json_string(t->file));
    return json_pack("{s:s, s:s, s:s, s:f, s:o}", "name", t->name, "type", toxic_type_name(t->type),
                     "stream", toxic_stream_name(t->streams), "toxicity", t->toxicity, "attributes", attrs);
}

/* The current set (a reference), NULL if none. */
static struct toxic_set *slot_get(struct toxic_slot *slot)
{
    unsigned gen;
    return toxic_slot_acquire(slot, &gen);
}

static json_t *toxics_json(struct toxic_slot *slot)
{
    json_t *a = json_array();
    struct toxic_set *s = slot ? slot_get(slot) : NULL;
    for (size_t i = 0; s && i < s->n; i++) json_array_append_new(a, toxic_json(&s->t[i]));
    toxic_set_unref(s);
    return a;
}

static json_t *proxy_json(const struct api_proxy *p)
{
    return json_pack("{s:s, s:s, s:s, s:b, s:o}", "name", p->name, "listen", p->listen, "upstream",
                     p->upstream, "enabled", p->enabled, "toxics", toxics_json(p->toxics));
}

static json_t *proxy_json_at(const struct api_backend *b, size_t i)
{
    struct api_proxy p;
    memset(&p, 0, sizeof(p));
    return b->get(b->ctx, i, &p) == 0 ? proxy_json(&p) : json_null();
}

/* Parses body as a JSON value of the wanted type, or replies 400. */
static json_t *parse_body(const char *body, size_t len, json_type want_type, struct api_response *out)
{
    json_error_t e;
    json_t *j = json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES, &e);
    if (!j) {
        bad_body(out, len ? e.text : "EOF");
        return NULL;
    }
    if (json_typeof(j) != want_type) {
        bad_body(out, want_type == JSON_ARRAY ? "expected a JSON array" : "expected a JSON object");
        json_decref(j);
        return NULL;
    }
    return j;
}

/* A string member or NULL; 400 if present with another type. */
static int get_string(json_t *o, const char *key, const char **val, struct api_response *out)
{
    json_t *v = json_object_get(o, key);
    *val = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) {
        char m[100];
        snprintf(m, sizeof(m), "%s: expected a string", key);
        bad_body(out, m);
        return -1;
    }
    *val = json_string_value(v);
    return 0;
}

/* ---- proxies ---- */

static int proxy_req_from_json(json_t *o, struct api_proxy_req *r, struct api_response *out)
{
    json_t *en = json_object_get(o, "enabled");
    r->enabled = -1;
    if (get_string(o, "name", &r->name, out) < 0 || get_string(o, "listen", &r->listen, out) < 0 ||
        get_string(o, "upstream", &r->upstream, out) < 0)
        return -1;
    if (en && !json_is_null(en)) {
        if (!json_is_boolean(en)) {
            bad_body(out, "enabled: expected true or false");
            return -1;
        }
        r->enabled = json_is_true(en);
    }
    return 0;
}

/* Creates or (populate) updates one proxy from its JSON; 0 or -1 with out set. */
static int create_one(const struct api_backend *b, json_t *o, int may_update, long *idx,
                      struct api_response *out)
{
    struct api_proxy_req r;
    char err[300] = "";
    if (proxy_req_from_json(o, &r, out) < 0) return -1;
    if (!r.name || !r.name[0]) {
        api_error(out, 400, "missing required field: name");
        return -1;
    }
    long i = b->find(b->ctx, r.name);
    if (i >= 0 && may_update) {
        int st = b->update(b->ctx, (size_t)i, &r, err, sizeof(err));
        if (st) api_error(out, st, err);
        *idx = i;
        return st ? -1 : 0;
    }
    if (!r.upstream || !r.upstream[0]) {
        api_error(out, 400, "missing required field: upstream");
        return -1;
    }
    if (i >= 0) {
        api_error(out, 409, "proxy already exists");
        return -1;
    }
    int st = b->create(b->ctx, &r, err, sizeof(err));
    if (st) {
        api_error(out, st, err);
        return -1;
    }
    *idx = b->find(b->ctx, r.name);
    return 0;
}

static void proxies_index(const struct api_backend *b, struct api_response *out)
{
    json_t *all = json_object();
    size_t n = b->count(b->ctx);
    for (size_t i = 0; i < n; i++) {
        struct api_proxy p;
        memset(&p, 0, sizeof(p));
        if (b->get(b->ctx, i, &p) == 0) json_object_set_new(all, p.name, proxy_json(&p));
    }
    reply_json(out, 200, all);
}

static void proxy_create(const struct api_backend *b, const char *body, size_t len, struct api_response *out)
{
    long i;
    json_t *o = parse_body(body, len, JSON_OBJECT, out);
    if (!o) return;
    if (create_one(b, o, 0, &i, out) == 0) reply_json(out, 201, proxy_json_at(b, (size_t)i));
    json_decref(o);
}

/* An array of proxies: each is created, or updated if it exists. On the
 * first error, the reply is that error plus the proxies done so far. */
static void populate(const struct api_backend *b, const char *body, size_t len, struct api_response *out)
{
    json_t *a = parse_body(body, len, JSON_ARRAY, out), *v;
    size_t k;
    if (!a) return;
    json_t *done = json_array();
    struct api_response err = { 0 };
    json_array_foreach(a, k, v) {
        long i;
        if (!json_is_object(v)) {
            bad_body(&err, "expected an array of objects");
            break;
        }
        if (create_one(b, v, 1, &i, &err) < 0) break;
        json_array_append_new(done, proxy_json_at(b, (size_t)i));
    }
    json_decref(a);
    if (!err.status) {
        reply_json(out, 201, json_pack("{s:o}", "proxies", done));
        return;
    }
    /* toxiproxy's shape: the error's fields next to "proxies". */
    json_t *e = err.body ? json_loads(err.body, 0, NULL) : NULL;
    if (!e) e = json_object();
    json_object_set_new(e, "proxies", done);
    reply_json(out, err.status, e);
    api_response_free(&err);
}

static void proxy_update(const struct api_backend *b, size_t i, const char *body, size_t len,
                         struct api_response *out)
{
    struct api_proxy_req r;
    char err[300] = "";
    json_t *o = parse_body(body, len, JSON_OBJECT, out);
    if (!o) return;
    if (proxy_req_from_json(o, &r, out) == 0) {
        r.name = NULL;          /* a proxy is renamed by nobody */
        int st = b->update(b->ctx, i, &r, err, sizeof(err));
        if (st) api_error(out, st, err);
        else reply_json(out, 200, proxy_json_at(b, i));
    }
    json_decref(o);
}

/* ---- toxics ---- */

/* The proxy's current toxics, copied (n of them) into specs[TOXIC_MAX]. */
static size_t current_toxics(struct toxic_slot *slot, struct toxic_spec *specs)
{
    struct toxic_set *s = slot_get(slot);
    size_t n = s ? s->n : 0;
    if (n > TOXIC_MAX) n = TOXIC_MAX;
    if (n) memcpy(specs, s->t, n * sizeof(*specs));
    toxic_set_unref(s);
    return n;
}

static int publish(const struct api_backend *b, size_t i, struct toxic_slot *slot,
                   const struct toxic_spec *specs, size_t n, struct api_response *out)
{
    struct toxic_set *s = toxic_set_new(specs, n);
    if (!s) {
        api_error(out, 500, "out of memory");
        return -1;
    }
    toxic_slot_publish(slot, s);
    b->toxics_changed(b->ctx, i);
    return 0;
}

/* Applies toxicity, stream and attributes from o to t; 0 or -1 (400 set). */
static int toxic_apply_json(struct toxic_spec *t, json_t *o, struct api_response *out)
{
    char err[200];
    const char *stream;
    json_t *tox = json_object_get(o, "toxicity"), *attrs = json_object_get(o, "attributes"), *v;
    const char *key;
    if (get_string(o, "stream", &stream, out) < 0) return -1;
    if (stream && toxic_stream_from_name(stream, &t->streams) < 0) {
        api_error(out, 400, "stream was invalid, can be either upstream or downstream");
        return -1;
    }
    if (tox && !json_is_null(tox)) {
        if (!json_is_number(tox) || json_number_value(tox) < 0 || json_number_value(tox) > 1) {
            bad_body(out, "toxicity: expected a number from 0 to 1");
            return -1;
        }
        t->toxicity = json_number_value(tox);
    }
    if (attrs && !json_is_null(attrs)) {
        if (!json_is_object(attrs)) {
            bad_body(out, "attributes: expected an object");
            return -1;
        }
        json_object_foreach(attrs, key, v) {
            if (json_is_string(v)) {
                if (toxic_attr_set_text(t, key, json_string_value(v), err, sizeof(err)) < 0) {
                    bad_body(out, err);
                    return -1;
                }
                continue;
            }
            if (!json_is_number(v)) {
                snprintf(err, sizeof(err), "%.60s: expected a number", key);
                bad_body(out, err);
                return -1;
            }
            if (toxic_attr_set(t, key, json_number_value(v), err, sizeof(err)) < 0) {
                bad_body(out, err);
                return -1;
            }
        }
    }
    if (toxic_spec_check(t, err, sizeof(err)) < 0) {
        bad_body(out, err);
        return -1;
    }
    /* A lua toxic's script is loaded here, on the API thread: a syntax
     * error is the caller's 400, never a worker's surprise. */
    if (t->type == TOXIC_LUA && lua_filter_check(t->file, err, sizeof(err)) < 0) {
        bad_body(out, err);
        return -1;
    }
    return 0;
}

static void toxic_create(const struct api_backend *b, size_t i, struct toxic_slot *slot, const char *body,
                         size_t len, struct api_response *out)
{
    struct toxic_spec specs[TOXIC_MAX], t;
    const char *type, *name, *stream;
    json_t *o = parse_body(body, len, JSON_OBJECT, out);
    if (!o) return;
    if (get_string(o, "type", &type, out) < 0 || get_string(o, "name", &name, out) < 0 ||
        get_string(o, "stream", &stream, out) < 0)
        goto done;
    uint8_t streams = TOXIC_DOWNSTREAM;
    if (stream && toxic_stream_from_name(stream, &streams) < 0) {
        api_error(out, 400, "stream was invalid, can be either upstream or downstream");
        goto done;
    }
    int ty = type ? toxic_type_from_name(type) : -1;
    if (ty < 0) {
        api_error(out, 400, "invalid toxic type");
        goto done;
    }
    toxic_spec_init(&t, (enum toxic_type)ty);
    t.streams = streams;
    if (name && name[0]) {
        if (strlen(name) >= sizeof(t.name)) {
            bad_body(out, "name: too long");
            goto done;
        }
        snprintf(t.name, sizeof(t.name), "%s", name);
    } else {
        toxic_spec_default_name(&t);
    }
    size_t n = current_toxics(slot, specs);
    if (toxic_find(specs, n, t.name) >= 0) {
        api_error(out, 409, "toxic already exists");
        goto done;
    }
    if (n == TOXIC_MAX) {
        bad_body(out, "too many toxics on this proxy");
        goto done;
    }
    if (toxic_apply_json(&t, o, out) < 0) goto done;
    specs[n++] = t;
    if (publish(b, i, slot, specs, n, out) == 0) reply_json(out, 200, toxic_json(&t));
done:
    json_decref(o);
}

static void toxic_update(const struct api_backend *b, size_t i, struct toxic_slot *slot, size_t k,
                         struct toxic_spec *specs, size_t n, const char *body, size_t len,
                         struct api_response *out)
{
    json_t *o = parse_body(body, len, JSON_OBJECT, out);
    if (!o) return;
    struct toxic_spec t = specs[k];
    if (toxic_apply_json(&t, o, out) == 0) {
        specs[k] = t;
        if (publish(b, i, slot, specs, n, out) == 0) reply_json(out, 200, toxic_json(&t));
    }
    json_decref(o);
}

static void toxic_route(const struct api_backend *b, size_t i, struct toxic_slot *slot, const char *method,
                        const char *tname, const char *body, size_t len, struct api_response *out)
{
    struct toxic_spec specs[TOXIC_MAX];
    size_t n = current_toxics(slot, specs);
    int found = toxic_find(specs, n, tname);
    if (found < 0) {
        api_error(out, 404, "toxic not found");
        return;
    }
    size_t k = (size_t)found;
    if (strcmp(method, "GET") == 0) {
        reply_json(out, 200, toxic_json(&specs[k]));
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0) {
        toxic_update(b, i, slot, k, specs, n, body, len, out);
    } else if (strcmp(method, "DELETE") == 0) {
        memmove(&specs[k], &specs[k + 1], (n - k - 1) * sizeof(*specs));
        if (publish(b, i, slot, specs, n - 1, out) == 0) reply_json(out, 204, NULL);
    } else {
        api_error(out, 405, "method not allowed");
    }
}

/* ---- reset, version ---- */

static void reset(const struct api_backend *b, struct api_response *out)
{
    size_t n = b->count(b->ctx);
    char err[300];
    for (size_t i = 0; i < n; i++) {
        struct api_proxy p;
        memset(&p, 0, sizeof(p));
        if (b->get(b->ctx, i, &p) < 0) continue;
        if (!p.enabled) {
            struct api_proxy_req r = { .enabled = 1 };
            int st = b->update(b->ctx, i, &r, err, sizeof(err));
            if (st) {
                api_error(out, st, err);
                return;
            }
        }
        struct toxic_set *s = p.toxics ? slot_get(p.toxics) : NULL;
        int had = s && s->n;
        toxic_set_unref(s);
        if (had && publish(b, i, p.toxics, NULL, 0, out) < 0) return;
    }
    reply_json(out, 204, NULL);
}

/* ---- dispatch ---- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Splits "/a/b/c?q" into at most 4 percent-decoded segments. Returns the
 * count, or -1 (too many, too long, NUL). */
static int split_path(const char *url, char seg[4][256])
{
    int n = 0;
    size_t len = 0;
    if (*url != '/') return -1;
    for (const char *p = url + 1;; p++) {
        if (*p == '\0' || *p == '?' || *p == '/') {
            if (n == 4) return -1;
            seg[n][len] = '\0';
            if (len || *p == '/') n++;
            len = 0;
            if (*p != '/') break;
            continue;
        }
        int c = (unsigned char)*p;
        if (c == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
            c = hexval(p[1]) * 16 + hexval(p[2]);
            p += 2;
        }
        if (c == 0 || len + 1 >= 256 || n == 4) return -1;
        seg[n][len++] = (char)c;
    }
    return n;
}

static int is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

void api_route(const struct api_backend *b, const char *method, const char *url,
               const char *body, size_t bodylen, struct api_response *out)
{
    char seg[4][256];
    int n = split_path(url, seg);
    int get = is(method, "GET"), post = is(method, "POST"), del = is(method, "DELETE");
    int upd = post || is(method, "PATCH");
    memset(out, 0, sizeof(*out));
    if (n == 1 && is(seg[0], "version") && get) {
        reply_json(out, 200, json_pack("{s:s}", "version", b->version ? b->version : "unknown"));
    } else if (n == 1 && is(seg[0], "reset") && post) {
        reset(b, out);
    } else if (n == 1 && is(seg[0], "populate") && post) {
        populate(b, body, bodylen, out);
    } else if (n == 1 && is(seg[0], "proxies") && (get || post)) {
        if (get) proxies_index(b, out);
        else proxy_create(b, body, bodylen, out);
    } else if (n >= 2 && n <= 4 && is(seg[0], "proxies") && (n == 2 || is(seg[2], "toxics"))) {
        long i = b->find(b->ctx, seg[1]);
        struct api_proxy p;
        memset(&p, 0, sizeof(p));
        if (i < 0 || b->get(b->ctx, (size_t)i, &p) < 0) {
            api_error(out, 404, "proxy not found");
        } else if (n == 2 && get) {
            reply_json(out, 200, proxy_json(&p));
        } else if (n == 2 && upd) {
            proxy_update(b, (size_t)i, body, bodylen, out);
        } else if (n == 2 && del) {
            char err[300] = "";
            int st = b->remove(b->ctx, (size_t)i, err, sizeof(err));
            if (st) api_error(out, st, err);
            else reply_json(out, 204, NULL);
        } else if (n == 3 && get) {
            reply_json(out, 200, toxics_json(p.toxics));
        } else if (n == 3 && post) {
            toxic_create(b, (size_t)i, p.toxics, body, bodylen, out);
        } else if (n == 4) {
            toxic_route(b, (size_t)i, p.toxics, method, seg[3], body, bodylen, out);
        } else {
            api_error(out, 405, "method not allowed");
        }
    } else {
        api_error(out, 404, "not found");
    }
}

/* api_fake.h - an in-memory api_backend for the router's unit tests and
 * fuzz target: proxies are entries in an array, each with a real toxic
 * slot; "create" fails with 500 for listen "127.0.0.1:1" (address in use). */
#ifndef FERRY_API_FAKE_H
#define FERRY_API_FAKE_H

#include <stdio.h>
#include <string.h>

#include "api/router.h"

#define FAKE_MAX 8

struct fake {
    struct api_proxy p[FAKE_MAX];
    struct toxic_slot slots[FAKE_MAX];
    size_t n;
    unsigned changed;          /* toxics_changed calls */
};

static size_t fake_count(void *ctx) { return ((struct fake *)ctx)->n; }

static int fake_get(void *ctx, size_t i, struct api_proxy *out)
{
    struct fake *f = ctx;
    if (i >= f->n) return -1;
    *out = f->p[i];
    return 0;
}

static long fake_find(void *ctx, const char *name)
{
    struct fake *f = ctx;
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->p[i].name, name) == 0) return (long)i;
    return -1;
}

static void fake_set(struct api_proxy *p, const struct api_proxy_req *r)
{
    if (r->listen) snprintf(p->listen, sizeof(p->listen), "%s", r->listen);
    if (r->upstream) snprintf(p->upstream, sizeof(p->upstream), "%s", r->upstream);
    if (r->enabled >= 0) p->enabled = r->enabled;
}

static int fake_create(void *ctx, const struct api_proxy_req *r, char *err, size_t errlen)
{
    struct fake *f = ctx;
    if (r->listen && strcmp(r->listen, "127.0.0.1:1") == 0) {
        snprintf(err, errlen, "cannot listen on 127.0.0.1:1: Address already in use");
        return 500;
    }
    if (f->n == FAKE_MAX || strlen(r->name) >= sizeof(f->p[0].name)) {
        snprintf(err, errlen, "full");
        return 400;
    }
    struct api_proxy *p = &f->p[f->n];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", r->name);
    p->enabled = 1;
    fake_set(p, r);
    toxic_slot_init(&f->slots[f->n]);
    p->toxics = &f->slots[f->n];
    f->n++;
    return 0;
}

static int fake_update(void *ctx, size_t i, const struct api_proxy_req *r, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    fake_set(&((struct fake *)ctx)->p[i], r);
    return 0;
}

static int fake_remove(void *ctx, size_t i, char *err, size_t errlen)
{
    struct fake *f = ctx;
    (void)err;
    (void)errlen;
    toxic_slot_destroy(&f->slots[i]);
    for (size_t k = i; k + 1 < f->n; k++) {
        f->p[k] = f->p[k + 1];
        f->slots[k] = f->slots[k + 1];   /* moved, then re-pointed below */
    }
    f->n--;
    for (size_t k = 0; k < f->n; k++) f->p[k].toxics = &f->slots[k];
    return 0;
}

static void fake_changed(void *ctx, size_t i)
{
    (void)i;
    ((struct fake *)ctx)->changed++;
}

static void fake_init(struct fake *f, struct api_backend *b)
{
    memset(f, 0, sizeof(*f));
    memset(b, 0, sizeof(*b));
    b->ctx = f;
    b->version = "test";
    b->count = fake_count;
    b->get = fake_get;
    b->find = fake_find;
    b->create = fake_create;
    b->update = fake_update;
    b->remove = fake_remove;
    b->toxics_changed = fake_changed;
}

static void fake_free(struct fake *f)
{
    for (size_t i = 0; i < f->n; i++) toxic_slot_destroy(&f->slots[i]);
    f->n = 0;
}

#endif

/* control.h - the API's backend: proxies are ferry's listeners.
 *
 * Every configured listener is a proxy named by its listener name; POST
 * /proxies adds relay listeners at run time. Changes reach the workers
 * through server/runtime.c. Used from one thread only (the API's).
 */
#ifndef FERRY_API_CONTROL_H
#define FERRY_API_CONTROL_H

#include "api/router.h"
#include "server/runtime.h"

struct api_ctl;

/* NULL when out of memory. ws[0..n) must be created (not necessarily
 * running yet). */
struct api_ctl *api_ctl_new(struct server_worker *ws, unsigned n, const struct ferry_cfg *cfg);
/* The router's view of it. */
void api_ctl_backend(struct api_ctl *c, struct api_backend *b);
/* After the workers are freed: configs and shared state it made. */
void api_ctl_free(struct api_ctl *c);

#endif

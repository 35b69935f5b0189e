/* yaml_groups.h - upstream groups in a config file: `upstreams:` and a
 * relay listener's `upstream:` (yaml_groups.c).
 */
#ifndef FERRY_CFG_YAML_GROUPS_H
#define FERRY_CFG_YAML_GROUPS_H

#include "config/yaml_node.h"

/* The keys of a group, of one server in it, and of its health check. */
extern const struct yk_def yk_group_keys[], yk_server_keys[], yk_health_keys[];
extern const char *const yk_balance_names[];

void yc_load_groups(struct yc *c, const yaml_node_t *map);
/* `upstream:` of a relay listener: a group name, or servers inline. */
void yc_listener_upstream(struct yc *c, struct listener_cfg *l, const yaml_node_t *lmap,
                          const yaml_node_t *v);
void yc_warn_unused_groups(struct yc *c);

#endif

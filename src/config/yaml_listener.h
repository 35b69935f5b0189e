/* yaml_listener.h - `listeners:` in a config file (yaml_listener.c). */
#ifndef FERRY_CFG_YAML_LISTENER_H
#define FERRY_CFG_YAML_LISTENER_H

#include "config/yaml_node.h"

void yc_load_listeners(struct yc *c, const yaml_node_t *seq);

#endif

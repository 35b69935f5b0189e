/* toxq_stage.h - a direction's toxic queue as a stage (stage.h).
 *
 * Input goes into the queue as far as it has room (a full queue leaves the
 * rest: backpressure); one due piece comes out per call, so the slicer's
 * pieces leave in separate writes; the input's end passes once the queue
 * is empty and slow_close has waited. The queue's actions come back as
 * STAGE_CLOSE (timeout; limit_data once drained) and STAGE_RESET
 * (reset_peer).
 */
#ifndef FERRY_TOXQ_STAGE_H
#define FERRY_TOXQ_STAGE_H

#include "stage/stage.h"
#include "stage/toxq.h"

extern const struct stage_ops toxq_stage_ops;

/* A new, empty queue (toxq_init) for toxq_stage_ops; NULL when out of memory. */
struct toxq *toxq_stage_new(uint64_t seed);

#endif

/* hexlog.h - where --hexdump goes: stderr or --hexdump-file, written by
 * its own thread through a spool (spool.h), so a slow disk or terminal
 * never blocks a worker: the worker copies the raw bytes, the writer
 * thread formats them (hexdump.h) and writes. Shared by every listener
 * naming the same destination.
 */
#ifndef FERRY_HEXLOG_H
#define FERRY_HEXLOG_H

#include <stddef.h>
#include <stdint.h>

struct hexlog;

/* path NULL or "": stderr; else the file, appended to (privfile.h: not
 * through a symlink, mode 0600). NULL with a one-line reason naming the
 * file. */
struct hexlog *hexlog_open(const char *path, char *err, size_t errlen);
/* One chunk of a direction; *offset is the direction's byte count so far
 * and is advanced by n. Long chunks are cut into several dumps. */
void hexlog_put(struct hexlog *h, int64_t ts_us, uint64_t sess_id, int up, uint64_t *offset, const void *p,
                size_t n);
/* Writes what is queued, closes the file, logs drops, frees. */
void hexlog_close(struct hexlog *h);

#endif

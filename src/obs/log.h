/* log.h - leveled logging to stderr or a file, whole lines per write().
 *
 * Lines are formatted into a stack buffer and written whole, so lines from
 * different worker threads never interleave. A worker thread batches its
 * info and debug lines (one per session) and writes them once per loop
 * iteration, before it sleeps (log_flush): one write() per batch instead
 * of one per connection. Errors and warnings flush the batch and go out at
 * once. Callers check log_enabled() before formatting anything costly
 * (STYLE habit 8).
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_QUIET = 0, LOG_ERROR = 1, LOG_WARN = 2, LOG_INFO = 3, LOG_DEBUG = 4 };

extern int log_level_current;

static inline int log_enabled(int level) { return level <= log_level_current; }

/* "quiet", "error", "warn", "info", "debug" -> level, or -1. */
int log_level_parse(const char *name);
void log_set_level(int level);
/* Line format: LOG_TEXT ("TIME LEVEL key=value ... text") or LOG_JSON (one
 * JSON object per line: time, level, each leading key=value as a field,
 * numbers as numbers, and the rest of the line as msg). */
enum { LOG_TEXT, LOG_JSON };
int log_format_parse(const char *name);
void log_set_format(int format);
/* Which session lines to write (--log-sessions): LOG_SESS_START when a
 * session starts relaying, LOG_SESS_END when it ends (the default). */
enum { LOG_SESS_START = 1, LOG_SESS_END = 2 };
/* "start", "end", "start,end" (either order); -1 if anything else. */
int log_sessions_parse(const char *list);
void log_set_sessions(int mask);
int log_sessions(void);

/* Copies src for a log field: bytes outside printable ASCII, spaces and '='
 * become '?', so a client-supplied name cannot forge fields or lines. */
void log_sanitize(char *dst, size_t dstlen, const char *src);

/* Timestamped line: "<ISO-8601 UTC> <level> <message>\n". */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(int level, const char *fmt, va_list ap);

/* Per-thread batching: log_batch_begin() on a thread that calls
 * log_flush() regularly (a worker, before its loop sleeps); log_batch_end()
 * flushes and stops batching. Without begin, every line is written at once.
 * Returns 0, or -1 if no batch buffer could be had (lines then go out at
 * once). */
int log_batch_begin(void);
void log_flush(void);
void log_batch_end(void);

/* --log-file. log_file_open() sends every line to path from then on
 * (appended; created 0640; an existing file keeps its mode; a symbolic
 * link is refused). Call it while the process has one thread. 0, or -1
 * with a one-line reason naming the path (lines still go to stderr).
 *
 * log_file_reopen() opens path anew (a name rotated away, as logrotate
 * does) and puts it in place of the open file for every thread at once,
 * without a lock on the writers' side: each write goes whole to the old or
 * the new file. Safe while workers log. 0, or -1 with a reason, and lines
 * keep going to the old file.
 *
 * log_file_close(): lines go to stderr again; when no other thread logs. */
int log_file_open(const char *path, char *err, size_t errlen);
int log_file_reopen(const char *path, char *err, size_t errlen);
void log_file_close(void);

/* Operator-facing line without timestamp: "ferry: <message>\n" (startup, fatal config errors). */
void log_plain(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The writer thread: from log_writer_start() until log_writer_stop(),
 * lines are queued (in order, in at most 512 KiB) and written by a thread
 * of their own, so that a log that cannot keep up never blocks a worker:
 * what does not fit is dropped, counted, and said once the writer catches
 * up. Stop writes what is queued, then lines are written directly again. */
int log_writer_start(void);
void log_writer_stop(void);
/* Lines dropped since start (all threads). */
uint64_t log_dropped_lines(void);

#define log_error(...) do { if (log_enabled(LOG_ERROR)) log_msg(LOG_ERROR, __VA_ARGS__); } while (0)
#define log_warn(...)  do { if (log_enabled(LOG_WARN))  log_msg(LOG_WARN,  __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_enabled(LOG_INFO))  log_msg(LOG_INFO,  __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif

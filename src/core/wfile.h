/* wfile.h - opening a file ferry writes to (log, capture, hexdump) without
 * following a symbolic link.
 *
 * ferry usually opens these as root before dropping privileges: a link
 * planted at the path would make root truncate or append to the file it
 * points at. So the last path component is never followed (O_NOFOLLOW),
 * and the error says plainly when a link was the reason.
 */
#ifndef FERRY_WFILE_H
#define FERRY_WFILE_H

#include <stddef.h>
#include <sys/types.h>

/* open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | flags, mode).
 * what names the option in the error ("--log-file"). Returns the fd, or -1
 * with a one-line reason naming the path. */
int wfile_open(const char *what, const char *path, int flags, mode_t mode, char *err, size_t errlen);

#endif

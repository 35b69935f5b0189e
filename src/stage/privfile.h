/* privfile.h - opening the files capture and hexdump write to.
 *
 * They hold every relayed byte in clear, and ferry usually opens them as
 * root before dropping privileges: a symbolic link planted at the path
 * would make root truncate or append to the file it points at, and a
 * world-readable mode would hand the plaintext to every local user. So
 * the last path component is never followed (core/wfile.h) and the file
 * is 0600.
 */
#ifndef FERRY_PRIVFILE_H
#define FERRY_PRIVFILE_H

#include <stddef.h>

/* Opens path for writing, created 0600, truncated (append 0) or appended
 * to (append 1); a regular file that already exists is made 0600 too.
 * what names the option in the error ("--capture"). Returns the fd
 * (close-on-exec), or -1 with a one-line reason naming the path. */
int privfile_open(const char *what, const char *path, int append, char *err, size_t errlen);

#endif

/* wfile.c - see wfile.h. */
#include "core/wfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int wfile_open(const char *what, const char *path, int flags, mode_t mode, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | flags, mode);
    if (fd >= 0) return fd;
    /* O_NOFOLLOW fails with ELOOP on a symlink, but ELOOP also means a loop
     * in the directories above: lstat tells which one to report. */
    int e = errno;
    struct stat st;
    if (e == ELOOP && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
        snprintf(err, errlen, "%s '%.200s': is a symbolic link; refusing to follow it", what, path);
    else
        snprintf(err, errlen, "%s '%.200s': %s", what, path, strerror(e));
    return -1;
}

/* privfile.c - see privfile.h. */
#include "stage/privfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* O_NOFOLLOW fails with ELOOP on a symlink, but ELOOP also means a loop
 * in the directories above: lstat tells which one to report. */
static void open_error(const char *what, const char *path, int e, char *err, size_t errlen)
{
    struct stat st;
    if (e == ELOOP && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
        snprintf(err, errlen, "%s '%.200s': is a symbolic link; refusing to follow it", what, path);
    else
        snprintf(err, errlen, "%s '%.200s': %s", what, path, strerror(e));
}

int privfile_open(const char *what, const char *path, int append, char *err, size_t errlen)
{
    int flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);
    int fd = open(path, flags, 0600);
    if (fd < 0) {
        open_error(what, path, errno, err, errlen);
        return -1;
    }
    /* The mode given to open applies only to a new file; one left by an
     * earlier run (or another tool) may be readable by all. Devices and
     * pipes (/dev/null, a FIFO) are not ours to change. */
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) != 0600 && fchmod(fd, 0600) < 0) {
        snprintf(err, errlen, "%s '%.200s': chmod 0600: %s", what, path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* privfile.c - see privfile.h. */
#include "stage/privfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/wfile.h"

int privfile_open(const char *what, const char *path, int append, char *err, size_t errlen)
{
    int fd = wfile_open(what, path, append ? O_APPEND : O_TRUNC, 0600, err, errlen);
    if (fd < 0) return -1;
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

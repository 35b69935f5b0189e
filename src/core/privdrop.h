/* privdrop.h - give up root once the listening sockets are bound.
 *
 * --run-as USER, --run-as-group GROUP, --chroot DIR (global options). main()
 * calls privdrop_prepare() before anything is bound, so a bad name costs
 * nothing, and privdrop_apply() after workers_create() (sockets bound, files
 * read) and before workers_start() (still one thread). See docs/RELIABILITY.md
 * "Privilege drop" for what a chroot takes away (name lookups).
 */
#ifndef FERRY_PRIVDROP_H
#define FERRY_PRIVDROP_H

#include <stddef.h>
#include <sys/types.h>

#include "config/config.h"

struct privdrop {
    int active;                 /* --run-as given */
    uid_t uid;
    gid_t gid;                  /* --run-as-group, else the user's primary group */
    const char *chroot_dir;     /* NULL: no chroot (points into the config) */
};

/* Resolves the names (before any chroot: /etc/passwd is outside it) and
 * checks the request. 0 (p->active = 0 when nothing was asked), or -1 with a
 * one-line reason naming the flag: unknown user or group, a root target,
 * not started as root, --run-as-group or --chroot without --run-as. */
int privdrop_prepare(const struct ferry_cfg *cfg, struct privdrop *p, char *err, size_t errlen);

/* The name by which path (an existing file) can be opened again once
 * privdrop_apply() has run: path itself without --chroot; with it, the
 * part under the chroot directory, both resolved by realpath() first (so
 * symbolic links in the directories and ".." count): --chroot /srv/ferry
 * turns /srv/ferry/log/ferry.log into /log/ferry.log. Call before
 * privdrop_apply(). 0, or -1 with a one-line reason when path lies outside
 * the chroot (no name inside reaches it) or cannot be resolved. */
int privdrop_path_after(const struct privdrop *p, const char *path, char *out, size_t outlen, char *err,
                        size_t errlen);

/* chroot + chdir("/"), setgroups(1, gid), setgid, setuid, then checks that
 * root cannot be regained. The process must still be single-threaded.
 * 0, or -1 with a reason (the caller must then exit). */
int privdrop_apply(const struct privdrop *p, char *err, size_t errlen);

#endif

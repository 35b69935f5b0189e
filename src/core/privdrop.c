/* privdrop.c - give up root once the listening sockets are bound. See privdrop.h. */
#include "core/privdrop.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "obs/log.h"

/* c-ares reads /etc/resolv.conf and /etc/hosts when a worker first resolves,
 * i.e. inside the chroot: say so when that will not work. */
static void warn_chroot_dns(const struct ferry_cfg *cfg)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/etc/resolv.conf", cfg->chroot_dir);
    if (access(path, R_OK) == 0) return;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (!cfg->listeners[i].dns_servers[0]) {
            log_plain("warning: --chroot: no %s: name lookups will ask 127.0.0.1; give --dns-server "
                      "or copy /etc/resolv.conf and /etc/hosts there", path);
            return;
        }
    }
}

/* getpwnam/getgrnam: NULL with errno 0, ENOENT, ESRCH, EBADF or EPERM all
 * mean "not found" (getpwnam(3)); anything else is a lookup failure. */
static const char *lookup_error(const char *not_found)
{
    return errno == 0 || errno == ENOENT || errno == ESRCH || errno == EBADF || errno == EPERM
               ? not_found : strerror(errno);
}

int privdrop_prepare(const struct ferry_cfg *cfg, struct privdrop *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    if (!cfg->run_as[0]) return 0;   /* cfg_global_finish refused --chroot, --run-as-group alone */
    if (geteuid() != 0) {
        snprintf(err, errlen, "--run-as: ferry must be started as root to switch users");
        return -1;
    }
    errno = 0;
    const struct passwd *pw = getpwnam(cfg->run_as);
    if (!pw) {
        snprintf(err, errlen, "--run-as '%.64s': %s", cfg->run_as, lookup_error("no such user"));
        return -1;
    }
    if (pw->pw_uid == 0) {
        snprintf(err, errlen, "--run-as '%.64s': that is root; name an unprivileged user", cfg->run_as);
        return -1;
    }
    p->uid = pw->pw_uid;
    p->gid = pw->pw_gid;
    if (cfg->run_as_group[0]) {
        errno = 0;
        const struct group *gr = getgrnam(cfg->run_as_group);
        if (!gr) {
            snprintf(err, errlen, "--run-as-group '%.64s': %s", cfg->run_as_group, lookup_error("no such group"));
            return -1;
        }
        p->gid = gr->gr_gid;
    }
    if (p->gid == 0) {
        snprintf(err, errlen, "--run-as%s: group 0 (root); name an unprivileged group with --run-as-group",
                 cfg->run_as_group[0] ? "-group" : "");
        return -1;
    }
    if (cfg->chroot_dir[0]) {
        if (access(cfg->chroot_dir, X_OK) < 0) {
            snprintf(err, errlen, "--chroot '%.200s': %s", cfg->chroot_dir, strerror(errno));
            return -1;
        }
        p->chroot_dir = cfg->chroot_dir;
        warn_chroot_dns(cfg);
    }
    p->active = 1;
    return 0;
}

int privdrop_path_after(const struct privdrop *p, const char *path, char *out, size_t outlen, char *err,
                        size_t errlen)
{
    char root[PATH_MAX], real[PATH_MAX];
    if (!p->chroot_dir) {
        snprintf(out, outlen, "%s", path);
        return 0;
    }
    if (!realpath(p->chroot_dir, root) || !realpath(path, real)) {
        snprintf(err, errlen, "'%.200s': %s", path, strerror(errno));
        return -1;
    }
    size_t n = strcmp(root, "/") == 0 ? 0 : strlen(root);
    if (strncmp(real, root, n) != 0 || real[n] != '/' || strlen(real + n) >= outlen) {
        snprintf(err, errlen, "'%.200s' is outside --chroot '%.200s'", path, p->chroot_dir);
        return -1;
    }
    snprintf(out, outlen, "%s", real + n);
    return 0;
}

int privdrop_apply(const struct privdrop *p, char *err, size_t errlen)
{
    if (!p->active) return 0;
    tzset();   /* --allow-hours uses local time: load the zone while /etc is reachable */
    if (p->chroot_dir && (chroot(p->chroot_dir) < 0 || chdir("/") < 0)) {
        snprintf(err, errlen, "--chroot '%.200s': %s", p->chroot_dir, strerror(errno));
        return -1;
    }
    /* Groups first: once the uid is gone, so is the right to change them. */
    if (setgroups(1, &p->gid) < 0 || setgid(p->gid) < 0 || setuid(p->uid) < 0) {
        snprintf(err, errlen, "--run-as: cannot switch to uid %u gid %u: %s",
                 (unsigned)p->uid, (unsigned)p->gid, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 || getuid() != p->uid || geteuid() != p->uid ||
        getgid() != p->gid || getegid() != p->gid) {
        snprintf(err, errlen, "--run-as: root could be regained after the switch; refusing to run");
        return -1;
    }
    /* The kernel already made us non-dumpable (credentials changed); keep it
     * so: memory holds Shadowsocks keys and SOCKS passwords, and a dumpable
     * process could be ptraced by anything else running as the same user. */
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    return 0;
}

/* main.c - parse the command line, start the workers, wait for a signal. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/control.h"
#include "api/server.h"
#include "config/check.h"
#include "config/cli.h"
#include "config/describe.h"
#include "server/admit.h"
#include "server/reload.h"
#include "core/notify.h"
#include "core/privdrop.h"
#include "server/worker.h"
#include "crypto/replay.h"
#include "net/sock.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "obs/syslog.h"
#include "stage/tap.h"

static unsigned thread_count(const struct ferry_cfg *cfg)
{
    if (cfg->threads) return cfg->threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

static void announce(const struct ferry_cfg *cfg, unsigned threads)
{
    char line[2048];
    if (!log_enabled(LOG_ERROR)) return;   /* --log-level quiet means quiet */
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        cfg_describe_listener(&cfg->listeners[i], threads, line, sizeof(line));
        log_plain("%s", line);
    }
}

static void format_ms(char *out, size_t outlen, unsigned ms)
{
    if (ms % 1000 == 0) snprintf(out, outlen, "%us", ms / 1000);
    else snprintf(out, outlen, "%ums", ms);
}

/* READY=1 for a service manager (core/notify.h); STATUS= names the
 * listeners running (after a reload, the new set). */
static void notify_ready(struct reload *rl, const struct ferry_cfg *cfg, unsigned threads)
{
    char msg[1024], a[NET_ADDR_STRLEN];
    const struct listener_cfg *lcs[64];
    size_t n = cfg->nlisteners;
    if (rl) n = reload_listeners(rl, lcs, 64);
    else for (size_t i = 0; i < n && i < 64; i++) lcs[i] = &cfg->listeners[i];
    size_t used = (size_t)snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%u thread%s, listening:", threads,
                                   threads == 1 ? "" : "s");
    for (size_t i = 0; i < n && i < 64; i++)
        for (size_t j = 0; j < lcs[i]->nlisten && used < sizeof(msg); j++)
            used += (size_t)snprintf(msg + used, sizeof(msg) - used, " %s=%s", lcs[i]->name,
                                     net_addr_format(&lcs[i]->listen[j], a, sizeof(a)));
    notify_send(msg);
}

/* RELOADING=1 with the time systemd's Type=notify-reload checks it against. */
static void notify_reloading(void)
{
    char msg[128];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000u);
    notify_send(msg);
}

/* STOPPING=1 for a service manager, with the line the log got. */
static void notify_stopping(const char *status)
{
    char msg[320];
    snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=%s", status);
    notify_send(msg);
}

/* What the signals did, for the last line. */
struct shutdown {
    int signals;
    unsigned at_drain;       /* sessions open when the drain began */
    uint64_t drain_start_ms;
};

/* ss-server listeners share one salt filter across workers: a replayed
 * stream may arrive on any thread. About 7.6 MiB each for a million salts. */
static int create_replay_filters(struct ferry_cfg *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct listener_cfg *l = &cfg->listeners[i];
        if (l->mode == MODE_SS_SERVER && !(l->replay = replay_new(1000000, 1e-6, err, errlen)))
            return -1;
    }
    return 0;
}

/* The signals the main thread takes (blocked in every thread, waited for
 * here). Each catchable one whose default would kill ferry has an action,
 * so none ends it silently: logrotate's postrotate and `systemctl reload`
 * send SIGHUP, tools send SIGUSR1/2 by habit. */
static void ferry_sigset(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGQUIT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGUSR2);
}

/* --log-file as main sees it: the name given, and the name that opens it
 * again after the privilege drop ("" when none does: outside the chroot). */
struct logfile {
    const char *path;           /* NULL: lines go to stderr */
    char reopen[PATH_MAX];
    char why[600];              /* why reopen is "" */
};

/* Opens --log-file before anything else is logged, so that warnings land
 * there too. 0, or -1 with the reason on stderr. */
static int open_log_file(const struct ferry_cfg *cfg, struct logfile *lf)
{
    char err[512];
    lf->path = NULL;
    lf->reopen[0] = lf->why[0] = '\0';
    if (!cfg->log_file[0]) return 0;
    if (log_file_open(cfg->log_file, err, sizeof(err)) < 0) {
        log_plain("%s", err);
        return -1;
    }
    lf->path = cfg->log_file;
    return 0;
}

/* The name SIGUSR1 will open: the same, or the one inside --chroot. A file
 * outside the chroot cannot be reopened: said once now, and at SIGUSR1. */
static void log_file_name_after_drop(const struct privdrop *pd, struct logfile *lf)
{
    char err[512];
    if (!lf->path) return;
    if (privdrop_path_after(pd, lf->path, lf->reopen, sizeof(lf->reopen), err, sizeof(err)) == 0) return;
    snprintf(lf->why, sizeof(lf->why), "cannot reopen it: %s (rotate it with copytruncate)", err);
    log_plain("warning: --log-file: %s", lf->why);
}

/* --syslog: opened (a name looked up, the socket connected) right after
 * --log-file, before anything is bound, so that the start is in syslog
 * too. A daemon not listening yet is a warning: lines go there once it
 * does. 0, or -1 with a reason. */
static int open_syslog(const struct ferry_cfg *cfg, char *err, size_t errlen)
{
    struct syslog_target t;
    if (!cfg->syslog_target[0]) return 0;
    int r = syslog_target_parse(cfg->syslog_target, &t, err, errlen);
    if (r == 0) r = syslog_open(&t, cfg->syslog_facility, cfg->syslog_tag, err, errlen);
    if (r > 0) log_plain("warning: %s", err);
    return r < 0 ? -1 : 0;
}

/* The path a unix socket is reconnected by once --chroot applies (a
 * daemon's restart makes a new socket): the one inside, if any. */
static void syslog_path_after_drop(const struct ferry_cfg *cfg, const struct privdrop *pd)
{
    struct syslog_target t;
    char err[512], path[PATH_MAX];
    if (!syslog_active() || !pd->chroot_dir || syslog_target_parse(cfg->syslog_target, &t, err, sizeof(err)) < 0 ||
        t.kind != SYSLOG_UNIX)
        return;
    if (privdrop_path_after(pd, t.path, path, sizeof(path), err, sizeof(err)) == 0) {
        syslog_set_reconnect_path(path);
        return;
    }
    syslog_set_reconnect_path("");
    log_plain("warning: --syslog: %s: lines stop at the syslog daemon's first restart (give it a socket inside "
              "the chroot, as for HAProxy)", err);
}

/* A failed start, once the log may be a file: the reason goes there and,
 * so that whoever started ferry sees it, to stderr too. */
static void start_failed(const struct logfile *lf, const char *err)
{
    log_plain("%s", err);
    if (lf->path) fprintf(stderr, "ferry: %s\n", err);
}

/* SIGUSR1 with --log-file: logrotate renamed the file (postrotate kill
 * -USR1); open the name again. On failure the lines keep going to the old
 * file, and one line says so there. */
static void reopen_log_file(const struct logfile *lf)
{
    char err[700];
    if (lf->reopen[0] && log_file_reopen(lf->reopen, err, sizeof(err)) == 0) {
        if (log_enabled(LOG_ERROR)) log_plain("%s: reopened %s", strsignal(SIGUSR1), lf->path);
        return;
    }
    if (!lf->reopen[0]) snprintf(err, sizeof(err), "%s", lf->why);
    if (log_enabled(LOG_ERROR)) log_plain("%s: %s; still writing to the old file", strsignal(SIGUSR1), err);
}

/* SIGUSR1 with --syslog: a new socket, connected to the daemon now (one
 * restarted, a socket made again at the same path). */
static void reconnect_syslog(void)
{
    char err[512];
    int r = syslog_reconnect(err, sizeof(err));
    if (!log_enabled(LOG_ERROR)) return;
    if (r == 0) log_plain("%s: reconnected to syslog %s", strsignal(SIGUSR1), syslog_target_text());
    else log_plain("%s: %s", strsignal(SIGUSR1), err);
}

/* SIGUSR2, SIGUSR1 without --log-file or --syslog, and SIGHUP while
 * stopping: nothing to do, and nothing in flight is touched. Logged, so an
 * operator sees nothing happened. */
static void log_ignored_signal(int sig)
{
    if (!log_enabled(LOG_ERROR)) return;
    if (sig == SIGHUP)
        log_plain("%s: ignored: ferry is stopping, it does not reload now", strsignal(sig));
    else if (sig == SIGUSR1)
        log_plain("%s: ignored: logs go to stderr (no --log-file, no --syslog), there is no log file to reopen",
                  strsignal(sig));
    else
        log_plain("%s: ignored", strsignal(sig));
}

/* SIGHUP: the service manager hears RELOADING=1, then READY=1 whether the
 * reload was applied or refused (the old configuration serves on). */
static void reload(struct reload *rl, const struct ferry_cfg *cfg, unsigned n)
{
    notify_reloading();
    reload_run(rl, strsignal(SIGHUP));
    notify_ready(rl, cfg, n);
}

/* First SIGTERM/SIGINT drains; a second one, or SIGQUIT, stops at once;
 * SIGUSR1 reopens --log-file and reconnects --syslog; SIGHUP reloads
 * (server/reload.h). */
static void wait_for_signals(const struct ferry_cfg *cfg, const struct logfile *lf, struct server_worker *ws, unsigned n,
                             struct reload *rl, struct shutdown *sd)
{
    sigset_t set;
    char deadline[32];
    ferry_sigset(&set);
    format_ms(deadline, sizeof(deadline), cfg->drain_timeout_ms);
    struct timespec tick = { 0, 100 * 1000 * 1000 };
    while (workers_running() > 0) {
        int sig = sigtimedwait(&set, NULL, &tick);
        reload_reap(rl);
        if (sig < 0) continue;
        if (sig == SIGUSR1 && (lf->path || syslog_active())) {
            if (lf->path) reopen_log_file(lf);
            if (syslog_active()) reconnect_syslog();
            continue;
        }
        if (sig == SIGHUP && !sd->signals) {
            reload(rl, cfg, n);
            continue;
        }
        if (sig == SIGHUP || sig == SIGUSR1 || sig == SIGUSR2) {
            log_ignored_signal(sig);
            continue;
        }
        unsigned open = admit_sessions_open();
        if (++sd->signals == 1) {
            sd->at_drain = open;
            sd->drain_start_ms = clock_now_ms();
        }
        int now = sd->signals > 1 || sig == SIGQUIT;
        char status[256];
        if (now) snprintf(status, sizeof(status), "%s: stopping now, closing %u session%s", strsignal(sig), open,
                          open == 1 ? "" : "s");
        else snprintf(status, sizeof(status), "%s: draining %u session%s, up to %s", strsignal(sig), open,
                      open == 1 ? "" : "s", deadline);
        if (log_enabled(LOG_ERROR)) log_plain("%s", status);
        workers_request_stop(ws, n, now ? 2 : 1);
        notify_stopping(status);
    }
}

/* The last line: how the drain went. Workers have stopped (their counts
 * are final). */
static void announce_stop(const struct shutdown *sd, const struct server_worker *ws, unsigned n)
{
    unsigned closed = 0;
    if (!log_enabled(LOG_ERROR)) return;
    for (unsigned i = 0; i < n; i++) closed += ws[i].drain_closed;
    if (!sd->signals) {
        log_plain("stopped: %u session%s closed", closed, closed == 1 ? "" : "s");
        return;
    }
    unsigned finished = sd->at_drain > closed ? sd->at_drain - closed : 0;
    log_plain("stopped after a %.1fs drain: %u session%s finished, %u closed by the drain",
              (double)(clock_now_ms() - sd->drain_start_ms) / 1000.0, finished, finished == 1 ? "" : "s", closed);
}

/* api_fd, metrics_fd: the API's and --metrics' listening sockets (-1:
 * none), bound before root was dropped. Both are served by one thread. */
static struct api_server *start_api(struct ferry_cfg *cfg, int api_fd, int metrics_fd, struct server_worker *ws,
                                    unsigned n, struct api_ctl **ctl, struct api_backend *b)
{
    char err[512], a[NET_ADDR_STRLEN];
    if (api_fd < 0 && metrics_fd < 0) return NULL;
    if (api_fd >= 0 && !(*ctl = api_ctl_new(ws, n, cfg))) {
        log_plain("api: out of memory");
        close(api_fd);
        if (metrics_fd >= 0) close(metrics_fd);
        return NULL;
    }
    if (api_fd >= 0) api_ctl_backend(*ctl, b);
    struct api_server *s = api_server_start(api_fd, api_fd >= 0 ? b : NULL, metrics_fd, err, sizeof(err));
    if (!s) {
        log_plain("%s", err);
        return NULL;
    }
    if (api_fd >= 0 && log_enabled(LOG_ERROR))
        log_plain("api listening on %s", net_addr_format(&cfg->api_addr, a, sizeof(a)));
    if (metrics_fd >= 0 && log_enabled(LOG_ERROR))
        log_plain("metrics at http://%s/metrics", net_addr_format(&cfg->metrics_addr, a, sizeof(a)));
    return s;
}

/* argc, argv: the command line as given (a copy: the parse blanks
 * secrets), which a reload parses again. */
static int run(struct ferry_cfg *cfg, int argc, char **argv)
{
    char err[512];
    sigset_t set;
    struct privdrop pd;
    struct logfile lf;
    unsigned n = thread_count(cfg);

    if (open_log_file(cfg, &lf) < 0) return 1;
    if (open_syslog(cfg, err, sizeof(err)) < 0) {
        start_failed(&lf, err);
        return 1;
    }
    if (privdrop_prepare(cfg, &pd, err, sizeof(err)) < 0) {
        start_failed(&lf, err);
        return 2;
    }
    log_file_name_after_drop(&pd, &lf);
    syslog_path_after_drop(cfg, &pd);

    signal(SIGPIPE, SIG_IGN);
    ferry_sigset(&set);
    /* Blocked before threads exist, so only the main thread receives them. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sock_raise_nofile();
    if (create_replay_filters(cfg, err, sizeof(err)) < 0) {
        start_failed(&lf, err);
        return 1;
    }

    if (tap_global_start(cfg, err, sizeof(err)) < 0) {
        start_failed(&lf, err);
        return 1;
    }
    /* Counted whenever they can be read: --metrics or the API's /metrics. */
    metrics_set_users(cfg->metrics_users);
    if ((cfg->has_metrics || cfg->has_api) && metrics_init(n) < 0) {
        start_failed(&lf, "metrics: out of memory");
        return 1;
    }
    struct server_worker *ws = workers_create(cfg, n, err, sizeof(err));
    if (!ws) {
        start_failed(&lf, err);
        tap_global_stop(cfg);
        return 1;
    }
    /* Before the drop: it reads the --filter scripts as the workers did. */
    struct reload *rl = reload_new(cfg, argc, argv, ws, n);
    if (!rl) log_plain("warning: out of memory: SIGHUP will not reload");
    int api_fd = -1;
    if (cfg->has_api && (api_fd = api_server_listen(&cfg->api_addr, err, sizeof(err))) < 0) {
        start_failed(&lf, err);
        return 1;
    }
    int metrics_fd = -1;
    if (cfg->has_metrics && (metrics_fd = api_server_listen(&cfg->metrics_addr, err, sizeof(err))) < 0) {
        start_failed(&lf, err);
        return 1;
    }
    /* Before --chroot hides the service manager's socket. */
    if (notify_open() < 0)
        log_plain("warning: NOTIFY_SOCKET: %s: the service manager will not hear that ferry is ready", strerror(errno));
    /* Sockets are bound and files read; no thread runs yet. */
    if (privdrop_apply(&pd, err, sizeof(err)) < 0) {
        start_failed(&lf, err);
        return 1;
    }
    /* Written before the writer thread starts, so that these lines are in
     * the log when ferry starts to accept (a test or a script watching the
     * log sees them at once) and even if a thread cannot start. */
    announce(cfg, n);
    /* From here a log that cannot keep up drops lines, never stalls a worker. */
    if (log_writer_start() < 0) log_plain("warning: no log writer thread (%s): a slow log may stall workers",
                                          strerror(errno));
    if (workers_start(ws, n) < 0) {
        snprintf(err, sizeof(err), "cannot start worker threads: %s", strerror(errno));
        start_failed(&lf, err);
        return 1;
    }
    struct api_ctl *ctl = NULL;
    struct api_backend backend;
    struct api_server *api = start_api(cfg, api_fd, metrics_fd, ws, n, &ctl, &backend);
    int code = 0;
    if ((cfg->has_api || cfg->has_metrics) && !api) {
        workers_request_stop(ws, n, 2);
        code = 1;
    } else {
        notify_ready(rl, cfg, n);
    }
    struct shutdown sd = { 0, 0, 0 };
    wait_for_signals(cfg, &lf, ws, n, rl, &sd);
    api_server_stop(api);           /* before the workers go: it posts commands to them */
    for (unsigned i = 0; i < n; i++) code |= ws[i].exit_code;
    announce_stop(&sd, ws, n);
    workers_join_and_free(ws, n);
    log_writer_stop();              /* writes what is queued; from here lines go out directly */
    reload_free(rl);                /* after: the workers used its configs */
    api_ctl_free(ctl);              /* after: workers read the configs it made until freed */
    tap_global_stop(cfg);   /* after the workers: no session writes any more */
    metrics_shutdown();     /* after the workers and the API: nothing counts or reads */
    notify_close();
    return code;
}

static void args_free(int argc, char **args)
{
    for (int i = 0; args && i < argc; i++) {
        if (args[i]) explicit_bzero(args[i], strlen(args[i]));   /* passwords */
        free(args[i]);
    }
    free(args);
}

/* argv as given, for a reload to parse again: cli_parse() blanks secrets
 * in argv (ps shows it). NULL when out of memory. */
static char **args_dup(int argc, char **argv)
{
    char **c = calloc((size_t)argc + 1, sizeof(*c));
    for (int i = 0; c && i < argc; i++) {
        if (!(c[i] = strdup(argv[i]))) {
            args_free(argc, c);
            return NULL;
        }
    }
    return c;
}

/* args: argv as given (args_dup), for run(). */
static int start(int argc, char **argv, char **args)
{
    struct ferry_cfg cfg;
    enum cli_action action;
    int mode;
    char err[512];

    memset(&cfg, 0, sizeof(cfg));
    if (cli_parse(argc, argv, &cfg, &action, &mode, err, sizeof(err)) < 0) {
        log_plain("%s", err);
        cfg_free(&cfg);
        return 2;
    }
    if (action == CLI_HELP) {
        cli_usage(stdout, mode);
        cfg_free(&cfg);
        return 0;
    }
    if (action == CLI_VERSION) {
        printf("ferry %s\n", FERRY_VERSION);
        cfg_free(&cfg);
        return 0;
    }
    if (action == CLI_DUMP_OPTIONS) {
        cfg_dump_options(stdout);
        cfg_free(&cfg);
        return 0;
    }
    if (cfg.config_path) {
        int done = cfg_file_main(&cfg, action == CLI_CHECK);
        if (done >= 0) {
            cfg_free(&cfg);
            return done;
        }
    }
    log_set_level(cfg.log_level);
    log_set_format(cfg.log_format);
    log_set_sessions(cfg.log_sessions);
    int code = run(&cfg, argc, args);
    log_file_close();
    syslog_close();         /* after: the writer sent what was queued */
    cfg_free(&cfg);
    return code;
}

int main(int argc, char **argv)
{
    char **args = args_dup(argc, argv);
    if (!args) {
        log_plain("out of memory");
        return 1;
    }
    int code = start(argc, argv, args);
    args_free(argc, args);
    return code;
}

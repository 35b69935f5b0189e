/* diag.h - where the config loaders' diagnostics go.
 *
 * Loading does not stop at the first problem: every error and warning is
 * reported as one line "FILE:LINE:COL: message" (warnings say "warning: "
 * after the position), sorted by position, through a cfg_diag sink.
 */
#ifndef FERRY_CFG_DIAG_H
#define FERRY_CFG_DIAG_H

/* Where diagnostics go. emit() receives one complete line without a newline;
 * it may be NULL (count only). The loader adds to the counters. */
struct cfg_diag {
    void (*emit)(void *arg, int is_error, const char *line);
    void *arg;
    unsigned errors, warnings;
};

#endif

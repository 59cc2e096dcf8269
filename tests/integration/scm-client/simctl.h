/*
 * simctl.h - start a private scm-sim process for a test or benchmark and
 * drive its admin API (/__sim/). Reads SCM_SIM (binary) and SCM_SIM_SEED
 * (seed file) from the environment.
 */
#ifndef SIMCTL_H
#define SIMCTL_H

#include <sys/types.h>

typedef struct simproc {
    pid_t pid;
    int port;
    char base[128];   /* http://127.0.0.1:PORT/api */
    char root[128];   /* http://127.0.0.1:PORT */
    char dir[256];    /* private temp dir (port file, log) */
} simproc;

/* Start scm-sim with extra arguments (NULL-terminated list, may be NULL);
 * waits up to 15 s for its port file. Returns 0 or -1 (message on stderr). */
int sim_start(simproc *s, const char *const *extra);
/* SIGTERM, wait up to 5 s, then SIGKILL; removes the temp dir. */
void sim_stop(simproc *s);
/* One admin call: method + path under the root (e.g. "/__sim/faults"),
 * optional JSON body. *out (nullable) receives the body (caller frees).
 * Returns the HTTP status, or -1 on transport failure. */
long sim_admin(const simproc *s, const char *method, const char *path, const char *json,
               char **out);

#endif

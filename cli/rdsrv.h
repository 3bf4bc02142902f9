/* rdsrv's modes, shared between its files. */
#ifndef RDQ_CLI_RDSRV_H
#define RDQ_CLI_RDSRV_H

/* rdsrv -announce T -kind K [-desc TEXT] [-broker PATH] -- CMD ARGS: a foreign server (one that
 * rdsrv starts but does not serve through) made discoverable for as long as CMD runs. */
struct rdsrv_announce_opts {
    const char *transport; /* where CMD listens, as a server-side transport string */
    const char *kind;      /* process, kd or debugger */
    const char *desc;
    const char *broker;
    char **cmd; /* NULL-terminated */
};

/* Starts CMD, keeps it registered while it runs, passes on signals; returns CMD's exit status
 * (128+N when signal N ended it), 127 when it cannot be run, 2 for bad usage. */
int rdsrv_announce(const struct rdsrv_announce_opts *o);

/* Runs argv[0] (found on PATH) in a child, `prepare` run in the child first (NULL: nothing),
 * SIGPIPE back to its default there. 0 and the pid, or the errno of the failed exec (the child
 * reaped). */
#include <sys/types.h>
int rdsrv_spawn(char **argv, void (*prepare)(void *arg), void *arg, pid_t *out);

#endif

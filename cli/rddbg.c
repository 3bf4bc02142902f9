/* rddbg: a console debugger (gdb, lldb, any line-based program) made a debugging server, its one
 * session shared by the local console and every client (rdq -remote). */
#include "session.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERVERS_MAX 16

struct opts {
    const char *servers[SERVERS_MAX];
    int nservers;
    struct rds_hub_opts hub;
    char control_pw[RDT_PASSWORD_MAX + 1];
    char **debugger;
};

static void usage(FILE *f)
{
    fprintf(f,
            "rddbg: a debugging server of rdq (as cdb -server of Microsoft's Debugging Tools for "
            "Windows)\n"
            "Usage: rddbg -server TRANSPORT [-server TRANSPORT ...] [-noio]\n"
            "             [-control-password PW] [-desc TEXT] [-broker PATH] -- DEBUGGER ARGS\n"
            "  -server T      where clients join, e.g. tcp:port=5005 or npipe:pipe=dbg%%d\n"
            "  -noio          no local console: stdin is not read, the session is not shown\n"
            "  -control-password PW\n"
            "                 only clients that prove PW (letters and digits, at most 12) type\n"
            "                 into the session; the others join as observers\n"
            "  -desc TEXT     a description for the broker's listing\n"
            "  -broker PATH   the broker's socket (default $RDQ_BROKER_SOCK, else %s)\n"
            "  -?, --help     this help\n"
            "Typed by anyone: .server T, .servers, .endsrv N, .clients (rddbg's own).\n"
            "Clients join with: rdq -remote <client string printed at start>\n",
            RDB_DEFAULT_SOCK);
}

static int take_password(struct opts *o, char *pw)
{
    if (strlen(pw) > RDT_PASSWORD_MAX) {
        fprintf(stderr, "rddbg: a control password is at most %d letters and digits\n",
                RDT_PASSWORD_MAX);
        return -1;
    }
    snprintf(o->control_pw, sizeof(o->control_pw), "%s", pw);
    explicit_bzero(pw, strlen(pw)); /* out of the process's command line */
    o->hub.control_password = o->control_pw;
    return 0;
}

static int option(struct opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    bool valued = strcmp(a, "-server") == 0 || strcmp(a, "-desc") == 0 ||
                  strcmp(a, "-broker") == 0 || strcmp(a, "-control-password") == 0;
    if (valued && *i + 1 >= argc) {
        fprintf(stderr, "rddbg: %s needs a value: try rddbg -?\n", a);
        return -1;
    }
    if (strcmp(a, "-server") == 0) {
        if (o->nservers == SERVERS_MAX) {
            fprintf(stderr, "rddbg: at most %d -server options\n", SERVERS_MAX);
            return -1;
        }
        o->servers[o->nservers++] = argv[++*i];
    } else if (strcmp(a, "-desc") == 0) {
        o->hub.desc = argv[++*i];
    } else if (strcmp(a, "-broker") == 0) {
        o->hub.broker = argv[++*i];
    } else if (strcmp(a, "-control-password") == 0) {
        return take_password(o, argv[++*i]);
    } else if (strcmp(a, "-noio") == 0) {
        o->hub.noio = true;
    } else {
        fprintf(stderr, "rddbg: unknown option \"%s\": try rddbg -?\n", a);
        return -1;
    }
    return 0;
}

static int parse_args(struct opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-?") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strcmp(a, "--") == 0) {
            o->debugger = argv + i + 1;
            break;
        }
        if (a[0] != '-') {
            o->debugger = argv + i; /* the debugger's command line, without -- */
            break;
        }
        if (option(o, argc, argv, &i))
            return -1;
    }
    if (!o->nservers) {
        fprintf(stderr, "rddbg: -server TRANSPORT is required, e.g. rddbg -server tcp:port=5005 "
                        "-- gdb ./app\n");
        return -1;
    }
    if (!o->debugger || !o->debugger[0]) {
        fprintf(stderr, "rddbg: no debugger to run: give its command line after --, e.g. "
                        "rddbg -server tcp:port=5005 -- gdb ./app\n");
        return -1;
    }
    return 0;
}

static int open_servers(struct rds_hub *h, const struct opts *o)
{
    char err[RDT_ERR_MAX], shown[RDT_ECHO_LEN];
    for (int i = 0; i < o->nservers; i++) {
        int rc = rds_hub_listen(h, o->servers[i], err, sizeof(err));
        if (rc < 0) {
            fprintf(stderr, "rddbg: -server %s: %s\n", rdt_echo(o->servers[i], shown), err);
            return rc == -EINVAL ? 2 : 1;
        }
    }
    return 0;
}

static int run(struct event_base *base, struct opts *o)
{
    char err[RDT_ERR_MAX];
    struct rds_hub *h = NULL;
    int rc = rds_hub_new(&h, base, &o->hub, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "rddbg: %s\n", err);
        return 2;
    }
    rc = open_servers(h, o);
    if (!rc && rds_hub_start(h, o->debugger, err, sizeof(err))) {
        fprintf(stderr, "rddbg: %s\n", err);
        rc = 1;
    }
    if (!rc) {
        rds_hub_banner(h);
        rc = rds_hub_run(h);
    }
    rds_hub_free(h);
    return rc;
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    int rc = parse_args(&o, argc, argv);
    if (rc) {
        if (rc > 0)
            usage(stdout);
        explicit_bzero(o.control_pw, sizeof(o.control_pw));
        return rc > 0 ? 0 : 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    rc = run(base, &o);
    explicit_bzero(o.control_pw, sizeof(o.control_pw));
    event_base_free(base);
    return rc;
}

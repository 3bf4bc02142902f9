/* rdsrv -announce: starts a foreign server (a plain gdbserver, lldb-server, qemu -gdb), keeps it
 * registered with the local broker while it runs, passes signals on, and exits as it exits. */
#include "rdsrv.h"

#include "broker.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

/* What rdsrv passes on to CMD; SIGCHLD says CMD ended. */
static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

struct announcer {
    struct event_base *base;
    struct rdb_announce *a;
    pid_t pid;
    const char *name; /* CMD's name, for messages */
    int status;       /* rdsrv's exit status once CMD ended */
};

static void note(const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "rdsrv: %s\n", msg);
}

static int check_transport(const char *t, struct rdt_tstring *ts)
{
    char err[RDT_ERR_MAX], shown[RDT_ECHO_LEN];
    const char *why = err;
    if (rdt_string_foreign(t))
        why = "leave Foreign out: the string names where the command listens, and rdsrv lists "
              "every command it announces as Foreign";
    else if (rdt_parse(t, RDT_SERVER, ts, err, sizeof(err)) != 0)
        why = err;
    else if (ts->clicon[0])
        why = "clicon makes no sense here: rdsrv does not connect anywhere for the command, "
              "which listens where it listens; leave clicon out";
    else if (ts->password[0] || ts->password_ask)
        why = "rdsrv cannot check a password for a server it does not serve (clients reach the "
              "command directly); leave the password out";
    else
        return 0;
    fprintf(stderr, "rdsrv: -announce %s: %s\n", rdt_echo(t, shown), why);
    explicit_bzero(ts->password, sizeof(ts->password));
    return -1;
}

static int check_opts(const struct rdsrv_announce_opts *o, enum rdb_kind *kind)
{
    if (!o->kind) {
        fprintf(stderr, "rdsrv: -announce needs -kind process, kd or debugger (how the server "
                        "is listed)\n");
        return -1;
    }
    if (rdb_kind_parse(o->kind, kind) != 0) {
        fprintf(stderr,
                "rdsrv: -kind \"%s\" is not a kind: process (Remote Process Server), kd (Remote "
                "Kernel Debugger Server) or debugger (Debugger Server)\n",
                o->kind);
        return -1;
    }
    if (!o->cmd || !o->cmd[0]) {
        fprintf(stderr, "rdsrv: -announce needs the command to start after --, e.g. rdsrv "
                        "-announce tcp:port=2345 -kind process -- gdbserver :2345 ./app\n");
        return -1;
    }
    return 0;
}

struct prepare {
    pid_t parent;
    const sigset_t *mask;
};

static void prepare_cmd(void *arg)
{
    const struct prepare *p = arg;
    /* a command that rdsrv no longer lists (rdsrv was killed) is ended too */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != p->parent)
        _exit(127);
    sigprocmask(SIG_SETMASK, p->mask, NULL);
}

/* Starts CMD with the signal mask rdsrv had; 127 and why when it cannot be run. */
static int start_cmd(char **argv, const sigset_t *mask, pid_t *out)
{
    struct prepare p = {.parent = getpid(), .mask = mask};
    int e = rdsrv_spawn(argv, prepare_cmd, &p, out);
    if (e) {
        fprintf(stderr, "rdsrv: cannot run %s: %s\n", argv[0], strerror(e));
        return 127;
    }
    return 0;
}

static void ended(struct announcer *an, int st)
{
    rdb_announce_free(an->a); /* withdrawn now, before anything else */
    an->a = NULL;
    if (WIFSIGNALED(st)) {
        an->status = 128 + WTERMSIG(st);
        fprintf(stderr, "rdsrv: %s (pid %d) was ended by signal %d; withdrawn\n", an->name,
                (int)an->pid, WTERMSIG(st));
    } else {
        an->status = WEXITSTATUS(st);
        fprintf(stderr, "rdsrv: %s (pid %d) exited with status %d; withdrawn\n", an->name,
                (int)an->pid, an->status);
    }
    event_base_loopexit(an->base, NULL);
}

/* A signal the terminal sent to its foreground group reached CMD as well as rdsrv. */
static bool cmd_had_it(const struct announcer *an, const struct signalfd_siginfo *si)
{
    return si->ssi_code == SI_KERNEL && getpgid(an->pid) == getpgrp();
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct announcer *an = arg;
    struct signalfd_siginfo si;
    while (an->a && read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        int st;
        if (si.ssi_signo != SIGCHLD && !cmd_had_it(an, &si))
            kill(an->pid, (int)si.ssi_signo);
        if (waitpid(an->pid, &st, WNOHANG) == an->pid)
            ended(an, st);
    }
}

/* Registers CMD's endpoint, as a foreign server, and tells where it is listed: CMD speaks its own
 * protocol, so its string carries Foreign and clients reach it without rdq's session layer. */
static int announce(struct announcer *an, const struct rdsrv_announce_opts *o,
                    const struct rdt_tstring *ts, enum rdb_kind kind)
{
    struct rdb_entry e = {.kind = kind, .hidden = ts->hidden, .foreign = true};
    struct rdt_tstring listed = *ts;
    listed.foreign = true;
    if (rdt_format(&listed, RDT_FORM_ADVERT, NULL, 0, e.advert, sizeof(e.advert)) < 0) {
        fprintf(stderr, "rdsrv: -announce: the advertised string does not fit\n");
        return -1;
    }
    snprintf(e.desc, sizeof(e.desc), "%s", o->desc ? o->desc : an->name);
    if (rdb_announce_open(&an->a, an->base, o->broker, &e, note, NULL) != 0) {
        fprintf(stderr, "rdsrv: -announce: out of memory\n");
        return -1;
    }
    printf("Server announced: %s - %s%s (%s, pid %d)\n", rdb_kind_title(kind), e.advert,
           e.hidden ? ", hidden: never listed" : "", an->name, (int)an->pid);
    fflush(stdout);
    return 0;
}

/* Blocks the signals rdsrv handles and reads them from a signalfd; `old` gets the mask before. */
static int signals_open(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
        sigaddset(&set, forwarded[i]);
    if (sigprocmask(SIG_BLOCK, &set, old) < 0)
        return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

/* Runs the loop until CMD ends; SIGTERM, then SIGKILL to CMD when rdsrv cannot go on. */
static int serve(struct announcer *an, const struct rdsrv_announce_opts *o,
                 const struct rdt_tstring *ts, enum rdb_kind kind, int sfd)
{
    struct event *ev = event_new(an->base, sfd, EV_READ | EV_PERSIST, on_signal, an);
    if (!ev || event_add(ev, NULL) != 0 || announce(an, o, ts, kind) != 0) {
        kill(an->pid, SIGTERM);
        waitpid(an->pid, NULL, 0);
        an->status = 1;
    } else {
        on_signal(sfd, EV_READ, an); /* CMD may have ended already */
        if (an->a)
            event_base_dispatch(an->base);
    }
    if (ev)
        event_free(ev);
    rdb_announce_free(an->a);
    return an->status;
}

int rdsrv_announce(const struct rdsrv_announce_opts *o)
{
    struct rdt_tstring ts;
    enum rdb_kind kind;
    if (check_transport(o->transport, &ts) || check_opts(o, &kind))
        return 2;
    char name[64];
    snprintf(name, sizeof(name), "%s", o->cmd[0]);
    struct announcer an = {.name = basename(name)};
    sigset_t old;
    int sfd = signals_open(&old);
    an.base = sfd >= 0 ? event_base_new() : NULL;
    int rc = an.base ? start_cmd(o->cmd, &old, &an.pid) : 1;
    if (!an.base)
        fprintf(stderr, "rdsrv: cannot set up its event loop: %s\n", strerror(errno));
    if (rc == 0)
        rc = serve(&an, o, &ts, kind, sfd);
    if (an.base)
        event_base_free(an.base);
    if (sfd >= 0)
        close(sfd);
    return rc;
}

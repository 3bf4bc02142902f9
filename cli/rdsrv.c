/* rdsrv: the process server. Each authenticated client gets its own debug stub speaking on
 * stdio (default gdbserver --once --multi -); the server registers itself with the local broker. */
#include "rdsrv.h"

#include "broker.h"
#include "session.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/queue.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_STUB "gdbserver --once --multi -"

struct opts {
    const char *transport;
    const char *stub;
    const char *desc;
    const char *broker;
    char **app; /* -c / -cs: the command line to start */
    bool suspended;
    struct rdsrv_announce_opts an; /* -announce T -kind K -- CMD */
};

static void usage(FILE *f)
{
    fprintf(
        f,
        "rdsrv: the process server of rdq (as dbgsrv of Microsoft's Debugging Tools for Windows)\n"
        "Usage: rdsrv -t TRANSPORT [-stub CMD] [-desc TEXT] [-broker PATH]\n"
        "             [-x | -pc ...] [-c[s] AppCmdLine]\n"
        "       rdsrv -announce TRANSPORT -kind process|kd|debugger [-desc TEXT]\n"
        "             [-broker PATH] -- CMD [ARGS...]\n"
        "  -t TRANSPORT   where to serve, e.g. tcp:port=51:60,password=Pw or npipe:pipe=dbg%%d\n"
        "  -stub CMD      the debug stub each client gets, speaking on its stdin and stdout\n"
        "                 (default: %s)\n"
        "  -desc TEXT     a description for the broker's listing\n"
        "  -broker PATH   the broker's socket (default $RDQ_BROKER_SOCK, else %s)\n"
        "  -c AppCmdLine  start AppCmdLine (not debugged) and print its process id, for a\n"
        "                 smart client to attach to; everything after -c is the command line\n"
        "  -cs AppCmdLine the same, started stopped at its first instruction\n"
        "  -x, -pc        ignore the rest of the command line (-pc must have something after)\n"
        "  -announce TRANSPORT\n"
        "                 start CMD, a server of its own (gdbserver :2345 ./app, lldb-server,\n"
        "                 qemu -gdb tcp::1234), and list it as TRANSPORT (where CMD listens, e.g.\n"
        "                 tcp:port=2345; rdsrv binds nothing) while it runs; signals to rdsrv go\n"
        "                 to CMD, and rdsrv exits with CMD's status (128+N for signal N, 127\n"
        "                 when CMD cannot be run). hidden: never listed; no clicon, no password\n"
        "  -kind KIND     with -announce: process (Remote Process Server), kd (Remote Kernel\n"
        "                 Debugger Server) or debugger (Debugger Server)\n"
        "  -?, --help     this help\n"
        "Clients connect with: rdq -premote <client string printed at start>\n"
        "(an announced server: directly, e.g. gdb's target remote HOST:2345)\n",
        DEFAULT_STUB, RDB_DEFAULT_SOCK);
}

/* -t serves through rdsrv; -announce only lists a server of its own: one or the other. */
static int check_mode(struct opts *o)
{
    if (o->an.transport && (o->transport || o->app || o->stub)) {
        fprintf(stderr, "rdsrv: -announce lists a command that serves by itself: -t, -stub and "
                        "-c do not go with it\n");
        return -1;
    }
    if (!o->an.transport && (o->an.kind || o->an.cmd)) {
        fprintf(stderr, "rdsrv: %s goes with -announce: try rdsrv -?\n",
                o->an.kind ? "-kind" : "--");
        return -1;
    }
    if (!o->transport && !o->an.transport) {
        fprintf(stderr, "rdsrv: -t TRANSPORT is required, e.g. rdsrv -t tcp:port=5005\n");
        return -1;
    }
    o->an.desc = o->desc;
    o->an.broker = o->broker;
    return 0;
}

static int parse_args(struct opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **val = strcmp(a, "-t") == 0          ? &o->transport
                           : strcmp(a, "-stub") == 0     ? &o->stub
                           : strcmp(a, "-desc") == 0     ? &o->desc
                           : strcmp(a, "-broker") == 0   ? &o->broker
                           : strcmp(a, "-announce") == 0 ? &o->an.transport
                           : strcmp(a, "-kind") == 0     ? &o->an.kind
                                                         : NULL;
        if (val) {
            if (++i >= argc) {
                fprintf(stderr, "rdsrv: %s needs a value: try rdsrv -?\n", a);
                return -1;
            }
            *val = argv[i];
        } else if (strcmp(a, "-?") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            return 1;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "-cs") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "rdsrv: %s needs a command line to start\n", a);
                return -1;
            }
            o->suspended = a[2] == 's';
            o->app = argv + i + 1;
            break;
        } else if (strcmp(a, "--") == 0) {
            o->an.cmd = argv + i + 1;
            break;
        } else if (strcmp(a, "-x") == 0) {
            break;
        } else if (strcmp(a, "-pc") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "rdsrv: -pc ignores the rest of the command line, and there is "
                                "none: remove it or use -x\n");
                return -1;
            }
            break;
        } else if (strcmp(a, "-sifeo") == 0) {
            fprintf(stderr, "rdsrv: -sifeo has no meaning on Linux (it sets Image File Execution "
                            "Options on Windows): leave it out\n");
            return -1;
        } else {
            fprintf(stderr, "rdsrv: unknown option \"%s\": try rdsrv -?\n", a);
            return -1;
        }
    }
    return check_mode(o);
}

int rdsrv_spawn(char **argv, void (*prepare)(void *arg), void *arg, pid_t *out)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return errno;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        signal(SIGPIPE, SIG_DFL); /* rdsrv ignores it; the program must not */
        if (prepare)
            prepare(arg);
        execvp(argv[0], argv);
        int e = errno;
        if (write(fds[1], &e, sizeof(e)) < 0)
            _exit(127);
        _exit(127);
    }
    int e = errno;
    close(fds[1]);
    ssize_t n = pid > 0 ? read(fds[0], &e, sizeof(e)) : -1;
    close(fds[0]);
    if (pid < 0 || n > 0) {
        if (pid > 0)
            waitpid(pid, NULL, 0);
        return e ? e : EIO;
    }
    *out = pid;
    return 0;
}

static void traced(void *arg)
{
    if (*(bool *)arg)
        ptrace(PTRACE_TRACEME, 0, NULL, NULL);
}

/* Starts the -c command line; with -cs it stops at the first instruction of the new image. */
static pid_t start_app(char **argv, bool suspended)
{
    pid_t pid = -1;
    int e = rdsrv_spawn(argv, traced, &suspended, &pid);
    if (e) {
        fprintf(stderr, "rdsrv: cannot start %s: %s\n", argv[0], strerror(e));
        return -1;
    }
    int st;
    if (suspended && waitpid(pid, &st, 0) == pid && WIFSTOPPED(st))
        ptrace(PTRACE_DETACH, pid, NULL, (void *)(long)SIGSTOP); /* stopped, and untraced */
    return pid;
}

#define STUB_GRACE_MS 2000  /* after its client leaves, a stub has this long to end */
#define IDLE_GRACES 5       /* a client that takes nothing for this many graces is let go */
#define CLIENTS_MAX 64      /* clients (each with its stub) at once ... */
#define PEER_CLIENTS_MAX 16 /* ... and of one peer (an address) */

struct client;

struct server {
    struct opts *o;
    struct event_base *base;
    unsigned clients;
    LIST_HEAD(, client) list;
    struct rdt_peers peers;
};

/* A client and its stub, spliced together. */
struct client {
    struct server *s;
    struct rdt_server *srv;
    struct rdt_splice *sp;
    struct event *timer;
    pid_t pid; /* the stub's process group; 0 once it exited */
    unsigned n;
    bool gone; /* the splice is over */
    bool term_sent;
    unsigned idle; /* grace periods in which the client took nothing of what waits for it */
    uint64_t sent; /* the stub's output the client had when the grace began */
    char peer[64];
    LIST_ENTRY(client) link;
};

static void note(const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "rdsrv: %s\n", msg);
}

static void client_free(struct client *c)
{
    if (c->pid > 0)
        kill(-c->pid, SIGKILL);
    LIST_REMOVE(c, link);
    rdt_peers_give(&c->s->peers, c->peer);
    rdt_splice_free(c->sp);
    event_free(c->timer);
    free(c);
}

/* Whether the client still takes the stub's output: bytes it took since the last look, or bytes
 * that wait for it, though not for ever: one that takes nothing for IDLE_GRACES is let go. */
static bool still_reading(struct client *c)
{
    if (!c->sp || c->gone)
        return false;
    if (rdt_splice_sent(c->sp) != c->sent) {
        c->idle = 0;
        return true;
    }
    if (!rdt_splice_holding(c->sp))
        return false;
    if (++c->idle < IDLE_GRACES)
        return true;
    fprintf(stderr, "rdsrv: client %u took nothing of its stub's output for %d s; let go\n", c->n,
            IDLE_GRACES * STUB_GRACE_MS / 1000);
    return false;
}

/* A stub that outlives its client is ended (SIGTERM, then SIGKILL); a client that outlives its
 * stub is let go once it has all that the stub wrote. */
static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct client *c = arg;
    struct timeval tv = {.tv_sec = STUB_GRACE_MS / 1000, .tv_usec = STUB_GRACE_MS % 1000 * 1000};
    if (!c->term_sent && still_reading(c)) {
        /* the client ended its input but still reads the stub's answer as it comes, or the
         * answer waits for a slow line: not a client that left. A stub that has ended may have
         * left the end of its answer in its pipe and in the splice: that goes out first */
        c->sent = rdt_splice_sent(c->sp);
        evtimer_add(c->timer, &tv);
        return;
    }
    if (c->pid <= 0) {
        client_free(c);
        return;
    }
    fprintf(stderr, "rdsrv: client %u left; ending its stub\n", c->n);
    kill(-c->pid, c->term_sent ? SIGKILL : SIGTERM);
    c->term_sent = true;
    evtimer_add(c->timer, &tv);
}

static void arm_grace(struct client *c)
{
    struct timeval tv = {.tv_sec = STUB_GRACE_MS / 1000, .tv_usec = STUB_GRACE_MS % 1000 * 1000};
    c->sent = c->sp ? rdt_splice_sent(c->sp) : 0;
    if (!evtimer_pending(c->timer, NULL))
        evtimer_add(c->timer, &tv);
}

static void on_splice(struct rdt_splice *sp, enum rdt_splice_event ev, void *arg)
{
    (void)sp;
    struct client *c = arg;
    if (ev == RDT_SPLICE_PEER_GONE) {
        arm_grace(c); /* the stub saw the end of its input: it should end by itself */
        return;
    }
    c->gone = true;
    struct rdt_server *srv = c->srv;
    if (c->pid == 0)
        client_free(c);
    else
        arm_grace(c);
    rdt_server_redial(srv); /* clicon: ready for the next client */
}

/* Starts the stub in a process group of its own, its stdin and stdout on pipes. */
static pid_t spawn_stub(const char *cmd, int *wfd, int *rfd)
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(out, O_CLOEXEC) < 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL); /* rdsrv ignores it; the stub must not */
        dup2(in[0], 0);
        dup2(out[1], 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        return -1;
    }
    setpgid(pid, pid);
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    *wfd = in[1];
    *rfd = out[0];
    return pid;
}

static void on_client(struct rdt_server *srv, struct rdt_conn *conn, const char *peer,
                      const char *err, void *arg)
{
    struct server *s = arg;
    if (!conn) {
        fprintf(stderr, "rdsrv: %s\n", err);
        return;
    }
    char why[160], reply[200];
    if (rdt_peers_take(&s->peers, peer, rdt_server_caps_peers(srv), why, sizeof(why))) {
        fprintf(stderr, "rdsrv: client from %s turned away: %s\n", peer, why);
        rdt_conn_close_with(conn, reply, rds_gdb_refusal(reply, sizeof(reply), why));
        rdt_server_redial(srv);
        return;
    }
    struct client *c = calloc(1, sizeof(*c));
    int wfd = -1, rfd = -1;
    pid_t pid = c ? spawn_stub(s->o->stub, &wfd, &rfd) : -1;
    if (pid < 0) {
        fprintf(stderr, "rdsrv: client from %s: cannot start the stub: %s\n", peer,
                strerror(errno));
        rdt_peers_give(&s->peers, peer);
        free(c);
        rdt_conn_free(conn);
        rdt_server_redial(srv);
        return;
    }
    *c = (struct client){.s = s, .srv = srv, .pid = pid, .n = ++s->clients};
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->timer = evtimer_new(s->base, grace_cb, c);
    rdt_splice_open(&c->sp, s->base, conn, wfd, rfd, on_splice, c);
    LIST_INSERT_HEAD(&s->list, c, link);
    fprintf(stderr, "rdsrv: client %u from %s: stub pid %d\n", c->n, peer, (int)pid);
}

static void reap(struct server *s)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        struct client *c;
        LIST_FOREACH(c, &s->list, link)
        {
            if (c->pid != pid)
                continue;
            c->pid = 0;
            if (c->gone)
                client_free(c);
            else
                arm_grace(c); /* its client has a moment to read the last bytes */
            break;
        }
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct server *s = arg;
    if (sig == SIGCHLD)
        reap(s);
    else
        event_base_loopexit(s->base, NULL);
}

static void print_client_strings(const struct rdb_server *rs)
{
    char host[256] = "localhost", cs[RDT_STRING_MAX + 300];
    gethostname(host, sizeof(host));
    printf("Server started.  Client can connect with any of these command lines\n");
    if (rdt_server_client_string(rs->srv, host, cs, sizeof(cs)) >= 0)
        printf("0: rdq -premote %s\n", cs);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    int rc = parse_args(&o, argc, argv);
    if (rc) {
        if (rc > 0)
            usage(stdout);
        return rc > 0 ? 0 : 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (o.an.transport)
        return rdsrv_announce(&o.an);
    if (!o.stub)
        o.stub = DEFAULT_STUB;
    struct event_base *base = event_base_new();
    struct server s = {.o = &o, .base = base};
    rdt_peers_init(&s.peers, CLIENTS_MAX, PEER_CLIENTS_MAX);
    struct rdb_server *rs = NULL;
    char err[RDT_ERR_MAX], desc[RDB_DESC_MAX + 1];
    snprintf(desc, sizeof(desc), "%s", o.desc ? o.desc : "rdsrv");
    rc = rdb_server_open(&rs, base, o.transport, RDB_PROCESS, desc, o.broker, on_client, note, &s,
                         err, sizeof(err));
    if (rc) {
        char shown[RDT_ECHO_LEN];
        fprintf(stderr, "rdsrv: -t %s: %s\n", rdt_echo(o.transport, shown), err);
        event_base_free(base);
        return rc == -EINVAL ? 2 : 1;
    }
    print_client_strings(rs);
    if (o.app) {
        pid_t pid = start_app(o.app, o.suspended);
        if (pid < 0) {
            rdb_server_free(rs);
            event_base_free(base);
            return 1;
        }
        printf("Process started: pid %d%s\n", (int)pid, o.suspended ? " (stopped)" : "");
        fflush(stdout);
    }
    struct event *sigs[] = {evsignal_new(base, SIGINT, on_signal, &s),
                            evsignal_new(base, SIGTERM, on_signal, &s),
                            evsignal_new(base, SIGCHLD, on_signal, &s)};
    for (int i = 0; i < 3; i++)
        event_add(sigs[i], NULL);
    event_base_dispatch(base);
    for (int i = 0; i < 3; i++)
        event_free(sigs[i]);
    while (!LIST_EMPTY(&s.list))
        client_free(LIST_FIRST(&s.list));
    rdt_peers_free(&s.peers);
    rdb_server_free(rs);
    event_base_free(base);
    return 0;
}

/* The debugger of a shared session on a pseudo-terminal of its own: started in a session of its
 * own with the slave as its controlling terminal, its output read and fanned out as it comes,
 * the participants' lines queued to its input, an interrupt delivered as the terminal would. */
#include "hub_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define PTY_CHUNK 16384
#define PTY_READS 8 /* chunks read per wake-up, so that clients get their turn */

/* Keeps the last RDS_REPLAY_MAX bytes of output for those who join later. */
static void ring_add(struct rds_hub *h, const uint8_t *p, size_t n)
{
    if (n >= RDS_REPLAY_MAX) {
        p += n - RDS_REPLAY_MAX;
        n = RDS_REPLAY_MAX;
    }
    for (size_t i = 0; i < n; i++) {
        h->ring[h->ring_head] = p[i];
        h->ring_head = (h->ring_head + 1) % RDS_REPLAY_MAX;
    }
    h->ring_len = h->ring_len + n > RDS_REPLAY_MAX ? RDS_REPLAY_MAX : h->ring_len + n;
}

static void output(struct rds_hub *h, const uint8_t *p, size_t n)
{
    ring_add(h, p, n);
    hub_console_write(h, p, n);
    hub_fanout(h, RDS_OUTPUT, p, n);
}

/* Reads what the debugger wrote: 0 when all is read, 1 when more may wait, -EIO once every
 * holder of the slave has closed it. */
static int pty_read(struct rds_hub *h, int chunks)
{
    uint8_t buf[PTY_CHUNK];
    for (int i = 0; i < chunks; i++) {
        ssize_t n = read(h->master, buf, sizeof(buf));
        if (n > 0) {
            output(h, buf, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        return -EIO; /* 0 or EIO: the slave's last holder is gone */
    }
    return 1;
}

static void on_pty_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rds_hub *h = arg;
    if (pty_read(h, PTY_READS) < 0)
        event_del(h->pty_rev); /* the end comes with the debugger's exit status */
}

static void on_pty_write(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct rds_hub *h = arg;
    int rc = evbuffer_write(h->pty_in, fd);
    if ((rc < 0 && errno != EAGAIN && errno != EINTR) || evbuffer_get_length(h->pty_in) == 0)
        event_del(h->pty_wev);
}

/* What the debugger wrote before it ended (bounded: a program it left behind may go on). */
void hub_pty_drain(struct rds_hub *h)
{
    if (h->master >= 0)
        pty_read(h, 2 * RDS_REPLAY_MAX / PTY_CHUNK);
}

int hub_pty_send(struct rds_hub *h, const char *line)
{
    if (h->master < 0)
        return -EPIPE;
    if (evbuffer_get_length(h->pty_in) > HUB_INPUT_MAX)
        return -ENOBUFS;
    evbuffer_add(h->pty_in, line, strlen(line));
    evbuffer_add(h->pty_in, "\n", 1);
    event_add(h->pty_wev, NULL);
    return 0;
}

/* As a terminal does on Ctrl-C: the VINTR character through the line discipline, which signals
 * the terminal's foreground process group (the debugged program while it runs, else the
 * debugger); without ISIG, SIGINT to that group directly. */
void hub_pty_interrupt(struct rds_hub *h)
{
    if (h->master < 0)
        return;
    struct termios t;
    if (tcgetattr(h->master, &t) == 0 && (t.c_lflag & ISIG) && t.c_cc[VINTR] != _POSIX_VDISABLE) {
        if (write(h->master, &t.c_cc[VINTR], 1) == 1)
            return;
    }
    pid_t pg = tcgetpgrp(h->master);
    kill(pg > 0 ? -pg : -h->pid, SIGINT);
}

/* The window of the local terminal, else a wide one (no pager stopping at 24 lines). */
static void window_size(const struct rds_hub *h, struct winsize *ws)
{
    *ws = (struct winsize){.ws_row = 50, .ws_col = 200};
    struct winsize local;
    int fd = h->tty ? 0 : h->tty_out; /* the console's terminal, typed into or only shown on */
    if (fd >= 0 && ioctl(fd, TIOCGWINSZ, &local) == 0 && local.ws_row && local.ws_col)
        *ws = local;
}

void hub_pty_resize(struct rds_hub *h)
{
    struct winsize ws;
    window_size(h, &ws);
    if ((h->tty || h->tty_out >= 0) && h->master >= 0)
        ioctl(h->master, TIOCSWINSZ, &ws); /* the kernel tells the debugger (SIGWINCH) */
}

/* In the child: the debugger, or the reason it could not start through `efd`. */
static void exec_debugger(char *const argv[], int efd, bool tty)
{
    signal(SIGPIPE, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    if (!tty)
        setenv("TERM", "dumb", 1);
    execvp(argv[0], argv);
    int e = errno;
    if (write(efd, &e, sizeof(e)) < 0)
        _exit(127);
    _exit(127);
}

static void describe(struct rds_hub *h, char *const argv[])
{
    size_t off = 0;
    h->debugger[0] = '\0';
    for (int i = 0; argv[i] && off < sizeof(h->debugger) - 1; i++)
        off += (size_t)snprintf(h->debugger + off, sizeof(h->debugger) - off, "%s%s", i ? " " : "",
                                argv[i]);
}

/* Waits for the child's exec: 0, or the errno that stopped it. */
static int exec_result(pid_t pid, int efd)
{
    int e = 0;
    ssize_t n;
    do
        n = read(efd, &e, sizeof(e));
    while (n < 0 && errno == EINTR);
    close(efd);
    if (n == sizeof(e)) {
        waitpid(pid, NULL, 0);
        return e ? e : ENOEXEC;
    }
    return 0;
}

int hub_pty_start(struct rds_hub *h, char *const argv[], char *err, size_t errlen)
{
    int efd[2];
    if (!argv[0]) {
        snprintf(err, errlen, "no debugger to run: give its command line after --");
        return -EINVAL;
    }
    if (pipe2(efd, O_CLOEXEC) < 0)
        return -errno;
    struct winsize ws;
    window_size(h, &ws);
    int master = -1;
    pid_t pid = forkpty(&master, NULL, NULL, &ws);
    if (pid == 0) {
        close(efd[0]);
        exec_debugger(argv, efd[1], h->tty);
    }
    close(efd[1]);
    int e = pid < 0 ? errno : exec_result(pid, efd[0]);
    if (pid < 0)
        close(efd[0]);
    if (e) {
        if (master >= 0)
            close(master);
        snprintf(err, errlen, "cannot start %s: %s", argv[0], strerror(e));
        return -e;
    }
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    fcntl(master, F_SETFD, FD_CLOEXEC);
    h->pid = pid;
    h->master = master;
    describe(h, argv);
    h->pty_in = evbuffer_new();
    h->pty_rev = event_new(h->base, master, EV_READ | EV_PERSIST, on_pty_read, h);
    h->pty_wev = event_new(h->base, master, EV_WRITE | EV_PERSIST, on_pty_write, h);
    event_add(h->pty_rev, NULL);
    return 0;
}

void hub_pty_close(struct rds_hub *h)
{
    if (h->pty_rev)
        event_free(h->pty_rev);
    if (h->pty_wev)
        event_free(h->pty_wev);
    h->pty_rev = h->pty_wev = NULL;
    if (h->pty_in)
        evbuffer_free(h->pty_in);
    h->pty_in = NULL;
    if (h->master >= 0)
        close(h->master);
    h->master = -1;
}

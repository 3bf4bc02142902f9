/* A stand-in for a kernel with kgdboc, for test_kdsrv. On the tty TTY it writes console lines
 * every 100 ms (some with a '$' in them, and a shell prompt) until it reads the break-in
 * sequence SEQ. Then KGDB has the line: gdbserver debugs PROGRAM over a pipe (gdbserver -
 * PROGRAM), the stand-in passes the protocol between it and the tty, and goes on writing console
 * lines when gdbserver is quiet, between its packets, and after it ended. A 0x03 from the line
 * is dropped, as a running kernel's console takes it for a keystroke; SEQ again is the kernel
 * entering the debugger (sysrq-g): gdbserver gets gdb's interrupt.
 * Usage: test_kgdboc TTY SEQ PROGRAM */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put(int fd, const void *p, size_t n)
{
    for (const char *c = p; n;) {
        ssize_t w = write(fd, c, n);
        if (w < 0)
            _exit(1);
        c += w, n -= (size_t)w;
    }
}

/* The console before the debugger: lines and a prompt, each with something a packet starts
 * with. */
static void console_line(int fd, unsigned n)
{
    if (n % 3 == 0)
        dprintf(fd, "[%6u.000000] console line %u (+-) of the kernel\r\n", n, n);
    else if (n % 3 == 1)
        dprintf(fd, "[%6u.000000] console line %u costs $5, #1 of them\r\n", n, n);
    else
        dprintf(fd, "root@target:~$ ");
}

/* Matches SEQ a byte at a time; the bytes of a partial match are held, and given back
 * (through `out`) when the match fails. */
struct seq {
    const char *s;
    size_t len, got;
};

static bool seq_byte(struct seq *q, char c, int out)
{
    if (c == q->s[q->got]) {
        if (++q->got < q->len)
            return false;
        q->got = 0;
        return true;
    }
    if (q->got && out >= 0)
        put(out, q->s, q->got);
    q->got = 0;
    if (c == q->s[0]) {
        q->got = 1;
    } else if (out >= 0) {
        put(out, &c, 1);
    }
    return false;
}

static pid_t start_stub(const char *program, int *to, int *from)
{
    int in[2], out[2];
    if (pipe(in) || pipe(out))
        _exit(1);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* the stub goes with the stand-in */
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execlp("gdbserver", "gdbserver", "-", program, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    *to = in[1];
    *from = out[0];
    return pid;
}

/* The protocol between the line and gdbserver, console lines in the quiet. */
static int relay(int fd, struct seq *q, const char *program)
{
    int to, from;
    pid_t stub = start_stub(program, &to, &from);
    int64_t quiet_since = now_ms();
    unsigned n = 0;
    int in_packet = 0; /* 1: in gdbserver's packet; 2, 3: in its checksum */
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = from, .events = POLLIN}};
        poll(p, 2, 50);
        char buf[4096];
        if (p[0].revents & (POLLIN | POLLHUP)) {
            ssize_t r = read(fd, buf, sizeof(buf));
            if (r <= 0)
                break;
            for (ssize_t i = 0; i < r; i++)
                if (buf[i] != 0x03 && seq_byte(q, buf[i], to))
                    put(to, "\003", 1); /* sysrq-g: the kernel stops */
        }
        if (p[1].revents & (POLLIN | POLLHUP)) {
            ssize_t r = read(from, buf, sizeof(buf));
            if (r <= 0) { /* the debugger left: the kernel runs on, its console too */
                close(from);
                from = p[1].fd = -1;
                in_packet = 0;
                continue;
            }
            put(fd, buf, (size_t)r);
            for (ssize_t i = 0; i < r; i++) {
                if (buf[i] == '$')
                    in_packet = 1;
                else if (in_packet == 1 && buf[i] == '#')
                    in_packet = 2;
                else if (in_packet >= 2)
                    in_packet = in_packet == 2 ? 3 : 0;
            }
            quiet_since = now_ms();
        }
        if (!in_packet && now_ms() - quiet_since >= 150) {
            dprintf(fd, "[%6u.500000] console line %u of the running kernel, costs $7\r\n", n, n);
            n++;
            quiet_since = now_ms();
        }
    }
    close(to);
    kill(stub, SIGKILL);
    waitpid(stub, NULL, 0);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    int fd = open(argv[1], O_RDWR | O_NOCTTY);
    struct termios t;
    if (fd < 0 || tcgetattr(fd, &t) < 0)
        return 1;
    cfmakeraw(&t);
    tcsetattr(fd, TCSANOW, &t);
    struct seq q = {.s = argv[2], .len = strlen(argv[2])};
    for (unsigned n = 0;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) == 0) {
            console_line(fd, n++);
            continue;
        }
        char c;
        if (read(fd, &c, 1) != 1)
            return 1;
        if (seq_byte(&q, c, -1))
            break;
    }
    dprintf(fd, "\r\nKGDB: entering the debugger\r\n");
    return relay(fd, &q, argv[3]);
}

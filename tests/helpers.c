#include "helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void on_client(struct rdt_server *srv, struct rdt_conn *conn, const char *peer,
                      const char *err, void *arg)
{
    struct test_server *t = arg;
    pthread_mutex_lock(&t->lock);
    snprintf(t->last_peer, sizeof(t->last_peer), "%s", peer);
    if (conn) {
        t->ready++;
    } else {
        t->errors++;
        snprintf(t->last_error, sizeof(t->last_error), "%s", err);
        t->last_penalty_ms = rdt_server_penalty_ms(srv, peer);
    }
    pthread_mutex_unlock(&t->lock);
    if (conn) {
        rdt_conn_write_all(conn, "welcome\n", 8, 2000);
        rdt_conn_free(conn);
        rdt_server_redial(srv);
    }
}

static void stop_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct test_server *t = arg;
    if (t->stop)
        event_base_loopbreak(t->base);
}

static void *loop_main(void *arg)
{
    struct test_server *t = arg;
    struct event *tick = event_new(t->base, -1, EV_PERSIST, stop_check, t);
    struct timeval tv = {0, 10000};
    event_add(tick, &tv);
    event_base_dispatch(t->base);
    event_free(tick);
    return NULL;
}

int test_server_start(struct test_server *t, const char *tstring, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    struct rdt_tstring ts;
    int rc = rdt_parse(tstring, RDT_SERVER, &ts, err, errlen);
    if (rc)
        return rc;
    t->base = event_base_new();
    rc = rdt_server_open(&t->srv, t->base, &ts, on_client, t, err, errlen);
    if (rc) {
        event_base_free(t->base);
        t->base = NULL;
        return rc;
    }
    rdt_server_advert(t->srv, t->advert, sizeof(t->advert));
    t->bound = *rdt_server_bound(t->srv);
    pthread_create(&t->thread, NULL, loop_main, t);
    return 0;
}

void test_server_stop(struct test_server *t)
{
    if (!t->base)
        return;
    t->stop = 1;
    pthread_join(t->thread, NULL);
    rdt_server_free(t->srv);
    event_base_free(t->base);
    t->base = NULL;
}

bool test_server_wait(struct test_server *t, const int *counter, int want, int ms)
{
    for (int waited = 0;; waited += 5) {
        pthread_mutex_lock(&t->lock);
        int v = *counter;
        pthread_mutex_unlock(&t->lock);
        if (v >= want)
            return true;
        if (waited >= ms)
            return false;
        usleep(5000);
    }
}

static bool port_free(unsigned port, int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return family == AF_INET6; /* no IPv6 here: nothing to collide with */
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port)};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    int rc = family == AF_INET6 ? bind(fd, (struct sockaddr *)&a6, sizeof(a6))
                                : bind(fd, (struct sockaddr *)&a4, sizeof(a4));
    close(fd);
    return rc == 0;
}

/* Ranges this process handed out already: they may not be bound yet. */
#define GIVEN_MAX 64
static unsigned given[GIVEN_MAX][2], ngiven;

static bool handed_out(unsigned port)
{
    for (unsigned i = 0; i < ngiven; i++)
        if (port >= given[i][0] && port <= given[i][1])
            return true;
    return false;
}

/* Claims `port` for this process against every other test process: a lock on a file of its
 * own, held (the descriptor left open) until the process ends. */
static bool claim(unsigned port)
{
    char path[64];
    mkdir("/tmp/rdq-test-ports", 01777);
    snprintf(path, sizeof(path), "/tmp/rdq-test-ports/%u", port);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return true; /* no lock to be had: the bind checks decide */
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        return true;
    close(fd);
    return false;
}

static bool claim_all(unsigned base, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!claim(base + i))
            return false; /* the ones claimed stay claimed: a few ports unused */
    return true;
}

unsigned test_free_ports(unsigned n)
{
    static bool seeded;
    if (!seeded) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        srand((unsigned)getpid() * 7919u ^ (unsigned)ts.tv_nsec);
        seeded = true;
    }
    /* below the ephemeral range: a client's socket of another test never holds such a port */
    unsigned lo = 10000, eph = 32768;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f && fscanf(f, "%u", &eph) != 1)
        eph = 32768;
    if (f)
        fclose(f);
    if (eph < lo + 2000 + n)
        lo = 1024;
    for (int tries = 0; tries < 1000; tries++) {
        unsigned base = lo + (unsigned)rand() % (eph - lo - n), i;
        for (i = 0; i < n && !handed_out(base + i) && port_free(base + i, AF_INET) &&
                    port_free(base + i, AF_INET6);
             i++)
            ;
        if (i == n && !claim_all(base, n))
            continue;
        if (i == n && ngiven < GIVEN_MAX) {
            given[ngiven][0] = base;
            given[ngiven++][1] = base + n - 1;
        }
        if (i == n)
            return base;
    }
    return 0;
}

/* A listener on `port` of `a4`: bound past connections of the port's last user that linger in
 * TIME_WAIT (as a server binds it), so that a free port is always taken. */
static int listen_on(struct sockaddr_in *a4, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)a4, sizeof(*a4)) < 0 || listen(fd, backlog) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int test_take_port(unsigned port)
{
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port)};
    return listen_on(&a4, 1);
}

int test_unanswered_port(unsigned port, int fill[2])
{
    struct sockaddr_in a4 = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int lfd = listen_on(&a4, 0);
    if (lfd < 0)
        return -1;
    /* a backlog of 0 holds one connection: the second one's SYN is dropped and stays unanswered
     * too, so that no later connect completes */
    for (int i = 0; i < 2; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fill[i] >= 0)
            connect(fill[i], (struct sockaddr *)&a4, sizeof(a4));
    }
    struct pollfd p = {.fd = fill[0], .events = POLLOUT};
    poll(&p, 1, 2000); /* the first is in the backlog */
    return lfd;
}

bool test_wait_file(const char *path, const char *needle, int ms, char *buf, size_t len)
{
    for (int waited = 0;; waited += 20) {
        FILE *f = fopen(path, "re");
        size_t n = f ? fread(buf, 1, len - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = '\0';
        if (memmem(buf, n, needle, strlen(needle))) /* the file may hold NUL bytes */
            return true;
        if (waited >= ms)
            return false;
        usleep(20000);
    }
}

void test_private_pipe_dir(void)
{
    char tmpl[] = "/tmp/rdq-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    if (d)
        setenv("RDQ_PIPE_DIR", d, 1);
}

int test_connect(struct rdt_conn **out, const char *tstring, const char *password, char *err,
                 size_t errlen)
{
    struct rdt_tstring ts;
    *out = NULL;
    int rc = rdt_parse(tstring, RDT_CLIENT, &ts, err, errlen);
    return rc ? rc : rdt_dial(out, &ts, password, 5000, err, errlen);
}

ssize_t test_read_until(struct rdt_conn *c, const char *needle, char *buf, size_t len, int ms)
{
    size_t n = 0, got = 0;
    int rc = 0;
    buf[0] = '\0';
    while (got + 1 < len && !(needle && memmem(buf, got, needle, strlen(needle))) &&
           (rc = rdt_conn_read_wait(c, buf + got, len - 1 - got, &n, ms)) == 0 && n > 0) {
        got += n;
        buf[got] = '\0';
    }
    return rc ? rc : (ssize_t)got;
}

int test_dial(const char *tstring, const char *password, char *greet, size_t len, char *err,
              size_t errlen)
{
    struct rdt_conn *c;
    int rc = test_connect(&c, tstring, password, err, errlen);
    if (rc)
        return rc;
    ssize_t got = test_read_until(c, NULL, greet, len, 5000);
    rc = got < 0 ? (int)got : 0;
    if (rc)
        snprintf(err, errlen, "%s", rdt_conn_error(c));
    rdt_conn_free(c);
    return rc;
}

/* ---- The recording relay ---- */

static void record(struct test_relay *r, const unsigned char *p, size_t n)
{
    size_t room = sizeof(r->buf) - r->len;
    if (n > room)
        n = room;
    memcpy(r->buf + r->len, p, n);
    r->len += n;
}

static void *relay_main(void *arg)
{
    struct test_relay *r = arg;
    int a = accept(r->lfd, NULL, NULL);
    int b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(r->to_port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (a < 0 || b < 0 || connect(b, (struct sockaddr *)&to, sizeof(to)) < 0)
        goto done;
    struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
    unsigned char buf[4096];
    /* an end that one side sends is passed on (half-close); done when both have ended */
    while ((p[0].fd >= 0 || p[1].fd >= 0) && poll(p, 2, 5000) > 0) {
        int from = (p[0].revents & (POLLIN | POLLHUP | POLLERR)) ? 0 : 1;
        ssize_t n = read(p[from].fd, buf, sizeof(buf));
        if (n < 0)
            break;
        if (n == 0) {
            shutdown(from ? a : b, SHUT_WR);
            p[from].fd = -1;
            continue;
        }
        record(r, buf, (size_t)n);
        if (write(from ? a : b, buf, (size_t)n) != n)
            break;
    }
done:
    if (a >= 0)
        close(a);
    if (b >= 0)
        close(b);
    return NULL;
}

int test_relay_start(struct test_relay *r, unsigned to_port)
{
    memset(r, 0, sizeof(*r));
    r->to_port = to_port;
    r->port = test_free_ports(1);
    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(r->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (r->lfd < 0 || bind(r->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(r->lfd, 1) < 0)
        return -errno;
    return pthread_create(&r->thread, NULL, relay_main, r) == 0 ? 0 : -EAGAIN;
}

void test_relay_join(struct test_relay *r)
{
    pthread_join(r->thread, NULL);
    close(r->lfd);
}

/* ---- Running the programs ---- */

int test_run(const char *cmdline, char *out, size_t len, bool merge)
{
    const char *bin = getenv("RDQ_BIN_DIR");
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "PATH='%s':\"$PATH\"; export PATH; ( %s ) </dev/null %s",
             bin ? bin : ".", cmdline, merge ? "2>&1" : "2>/dev/null");
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    size_t got = fread(out, 1, len - 1, f);
    out[got] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int test_run_err(const char *cmdline, char *out, size_t len, char *err, size_t errlen)
{
    char path[] = "/tmp/rdq-test-err-XXXXXX", cmd[8192];
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    snprintf(cmd, sizeof(cmd), "%s 2>%s", cmdline, path);
    int rc = test_run(cmd, out, len, false);
    ssize_t n = read(fd, err, errlen - 1);
    err[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return rc;
}

pid_t test_dnsmasq(const char *const records[])
{
    static const char *const base[] = {
        "dnsmasq",           "-k",          "--conf-file=/dev/null",
        "--no-resolv",       "--no-hosts",  "--listen-address=127.0.0.1",
        "--bind-interfaces", "--user=root", "--pid-file="};
    const char *argv[64];
    char port_arg[32], servers[64];
    unsigned port = test_free_ports(1);
    size_t n = 0;
    for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
        argv[n++] = base[i];
    snprintf(port_arg, sizeof(port_arg), "--port=%u", port);
    argv[n++] = port_arg;
    for (size_t i = 0; records[i] && n < 63; i++)
        argv[n++] = records[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execvp("dnsmasq", (char **)argv);
        _exit(127);
    }
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", port);
    setenv("RDQ_DNS_SERVERS", servers, 1);
    return pid;
}

bool test_tmux_shows(const char *sock, bool history, const char *needle, int ms, char *screen,
                     size_t len)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "tmux -L %s capture-pane -p %s-t t", sock,
             history ? "-S -200 " : "");
    for (int waited = 0; waited <= ms; waited += 50) {
        test_run(cmd, screen, len, true);
        if (strstr(screen, needle))
            return true;
        usleep(50000);
    }
    return false;
}

/* ---- Real programs ---- */

/* Every process a test spawned and did not stop yet: stopped at cleanup even when the test
 * failed half-way. */
#define SPAWNED_MAX 64
static pid_t spawned[SPAWNED_MAX];

static void forget(pid_t pid)
{
    for (int i = 0; i < SPAWNED_MAX; i++)
        if (spawned[i] == pid)
            spawned[i] = 0;
}

void test_stop_all(void)
{
    for (int i = 0; i < SPAWNED_MAX; i++)
        if (spawned[i] > 0)
            test_stop(spawned[i], SIGKILL);
}

pid_t test_spawn(const char *const argv[], const char *log, uid_t uid)
{
    const char *bin = getenv("RDQ_BIN_DIR");
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", bin ? bin : ".", argv[0]);
    pid_t pid = fork();
    for (int i = 0; pid > 0 && i < SPAWNED_MAX; i++)
        if (spawned[i] == 0) {
            spawned[i] = pid;
            break;
        }
    if (pid != 0)
        return pid;
    int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
        _exit(126);
    if (uid != 0 && (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0))
        _exit(126);
    execv(path, (char *const *)argv);
    execvp(argv[0], (char *const *)argv); /* not a program of the build: one on PATH */
    _exit(127);
}

void test_stop(pid_t pid, int sig)
{
    if (pid <= 0)
        return;
    kill(pid, sig);
    waitpid(pid, NULL, 0);
    forget(pid);
}

int test_two_brokers(struct test_broker b[2], unsigned srv[2], char *out, size_t len)
{
    static const char *const forms[] = {"tcp:port=%u", "tcp:port=%u,password=abc"};
    char t[64], log[160], args[64];
    for (int i = 0; i < 2; i++) {
        memset(&b[i], 0, sizeof(b[i]));
        if (test_broker_start(&b[i]) != 0)
            return snprintf(out, len, "broker %d did not start", i + 1), -1;
        srv[i] = test_free_ports(1);
        snprintf(t, sizeof(t), forms[i], srv[i]);
        snprintf(log, sizeof(log), "%s/servers.log", b[i].dir);
        const char *argv[] = {"rdsrv", "-t", t, "-stub", "cat", "-broker", b[i].sock, NULL};
        if (test_spawn(argv, log, 0) <= 0)
            return snprintf(out, len, "rdsrv did not start"), -1;
    }
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof(args), "127.0.0.1 -port %u", b[i].port);
        if (!test_wait_rows(args, 1, 5000, out, len))
            return -1;
    }
    return 0;
}

bool test_wait_listening(unsigned port, int ms)
{
    char cmd[96], out[256];
    snprintf(cmd, sizeof(cmd), "ss -Htln 'sport = :%u' | grep -q .", port);
    for (int waited = 0;; waited += 20) {
        if (test_run(cmd, out, sizeof(out), true) == 0)
            return true;
        if (waited >= ms)
            return false;
        usleep(20000);
    }
}

int test_wait_exit(pid_t pid, int ms)
{
    for (int waited = 0; waited <= ms; waited += 10) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            forget(pid);
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        usleep(10000);
    }
    return -1;
}

static bool broker_answers(const char *sock)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

int test_broker_start(struct test_broker *b)
{
    if (!b->dir[0]) {
        snprintf(b->dir, sizeof(b->dir), "/tmp/rdq-test-XXXXXX");
        if (!mkdtemp(b->dir))
            return -errno;
        chmod(b->dir, 0755); /* unprivileged servers reach the socket too */
        snprintf(b->sock, sizeof(b->sock), "%s/broker.sock", b->dir);
        snprintf(b->log, sizeof(b->log), "%s/broker.log", b->dir);
        b->port = test_free_ports(1);
    }
    char pipes[96], port[16], listen[64];
    snprintf(pipes, sizeof(pipes), "%s/pipe", b->dir);
    snprintf(port, sizeof(port), "%u", b->port);
    snprintf(listen, sizeof(listen), "tcp:port=%u", b->port);
    setenv("RDQ_BROKER_SOCK", b->sock, 1);
    setenv("RDQ_PIPE_DIR", pipes, 1);
    /* a test's brokers publish on its own bus (tests/avahi_harness.c), never on the machine's */
    setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/rdq-test-bus", 0);
    setenv("RDQ_BROKER_PORT", port, 1);
    const char *argv[18] = {"rdbroker", "-socket", b->sock, "-listen", listen};
    for (int i = 0; i < 12 && b->extra[i]; i++)
        argv[5 + i] = b->extra[i];
    b->pid = test_spawn(argv, b->log, 0);
    for (int i = 0; i < 500; i++) {
        if (broker_answers(b->sock))
            return 0;
        if (waitpid(b->pid, NULL, WNOHANG) == b->pid)
            break;
        usleep(10000);
    }
    return -ETIMEDOUT;
}

void test_broker_stop(struct test_broker *b, int sig)
{
    test_stop(b->pid, sig);
    b->pid = 0;
}

void test_broker_cleanup(struct test_broker *b)
{
    test_broker_stop(b, SIGTERM);
    test_stop_all();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->dir);
    if (b->dir[0] && system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", b->dir);
}

bool test_logs_clean(const struct test_broker *b, char *out, size_t len)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "cat %s/*.log 2>/dev/null | grep -E -A20 'Sanitizer|runtime error:'",
             b->dir);
    return test_run(cmd, out, len, true) != 0; /* grep finds nothing: exit 1 */
}

int test_qr(const char *args, char *out, size_t len)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "rdq -QR %s", args);
    return test_run(cmd, out, len, true);
}

int test_count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

bool test_wait_rows(const char *args, int rows, int ms, char *out, size_t len)
{
    for (int waited = 0;; waited += 20) {
        if (test_qr(args, out, len) == 0 && test_count(out, "\n") == rows + 1)
            return true;
        if (waited >= ms)
            return false;
        usleep(20000);
    }
}

int test_connect_port(unsigned port)
{
    return test_connect_port_from(port, NULL);
}

int test_connect_port_from(unsigned port, const char *from)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct sockaddr_in src = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (from && inet_pton(AF_INET, from, &src.sin_addr) != 1)
        errno = EINVAL;
    else if (fd >= 0 && (!from || bind(fd, (struct sockaddr *)&src, sizeof(src)) == 0) &&
             connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return fd;
    int rc = -errno;
    if (fd >= 0)
        close(fd);
    return rc;
}

bool test_v6_net(const char *net, bool add)
{
    char cmd[160], out[512];
    snprintf(cmd, sizeof(cmd), "ip -6 route %s local %s dev lo", add ? "replace" : "del", net);
    return geteuid() == 0 && test_run(cmd, out, sizeof(out), true) == 0;
}

int test_connect_from6(const char *from, const char *to, unsigned port, char *err, size_t errlen)
{
    struct sockaddr_in6 src = {.sin6_family = AF_INET6}, dst = {.sin6_family = AF_INET6};
    dst.sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, from, &src.sin6_addr) != 1 ||
        inet_pton(AF_INET6, to, &dst.sin6_addr) != 1)
        return snprintf(err, errlen, "not IPv6 addresses: %s, %s", from, to), -EINVAL;
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1, rc = 0;
    if (fd < 0 || setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
        rc = -errno;
    else if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)
        rc = -errno;
    else if (poll(&(struct pollfd){.fd = fd, .events = POLLOUT}, 1, 5000) != 1)
        rc = -ETIMEDOUT; /* connected at once, or within 5 s */
    else {
        socklen_t sl = sizeof(rc);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &rc, &sl);
        rc = -rc;
    }
    if (rc == 0)
        return fd;
    snprintf(err, errlen, "from %s to [%s]:%u: %s", from, to, port, strerror(-rc));
    if (fd >= 0)
        close(fd);
    return rc;
}

int test_session_from(struct rdt_conn **out, const char *from, const char *to, unsigned port,
                      const char *password, char *err, size_t errlen)
{
    *out = NULL;
    int fd = test_connect_from6(from, to, port, err, errlen);
    if (fd < 0)
        return fd;
    struct rdt_conn *c = rdt_sock_conn(&rdt_tcp_ops, fd);
    if (!c)
        close(fd);
    c = c ? rdt_auth_conn(c, RDT_ROLE_CLIENT, password, RDT_PROTOCOL_VERSION) : NULL;
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = rdt_conn_open_wait(c, 5000);
    if (rc) {
        snprintf(err, errlen, "%s", rdt_conn_error(c));
        rdt_conn_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

bool test_fd_read_until(int fd, const char *want, int ms, char *buf, size_t len)
{
    size_t got = 0;
    buf[0] = '\0';
    for (int waited = 0; waited <= ms && !(want && strstr(buf, want)); waited += 50) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) != 1)
            continue;
        ssize_t n = recv(fd, buf + got, len - 1 - got, 0);
        if (n <= 0)
            return !want;
        got += (size_t)n;
        buf[got] = '\0';
    }
    return want && strstr(buf, want);
}

int test_fds_echoed(const int *fd, int n, const char *line, int ms)
{
    char buf[256];
    int echoed = 0;
    for (int i = 0; i < n; i++)
        send(fd[i], line, strlen(line), MSG_NOSIGNAL); /* a socket closed already takes none */
    for (int i = 0; i < n; i++) {
        echoed += test_fd_read_until(fd[i], line, ms, buf, sizeof(buf));
        close(fd[i]);
    }
    return echoed;
}

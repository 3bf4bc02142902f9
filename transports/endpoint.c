/* Endpoints: binding a server's port or pipe, and dialing a server (or, for clicon, waiting for
 * the server to dial in). */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- Pipes ---- */

int rdt_pipe_dir(char *buf, size_t len)
{
    const char *env = getenv("RDQ_PIPE_DIR");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;
    if (env && env[0])
        n = snprintf(buf, len, "%s", env);
    else if (geteuid() == 0)
        n = snprintf(buf, len, "/run/rdq/pipe");
    else if (xdg && xdg[0])
        n = snprintf(buf, len, "%s/rdq/pipe", xdg);
    else
        n = snprintf(buf, len, "/tmp/rdq-%u/pipe", (unsigned)geteuid());
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int rdt_pipe_path(const char *pipe, char *buf, size_t len, char *err, size_t errlen)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    size_t max = len < sizeof(dir) ? len : sizeof(dir);
    int rc = pipe[0] == '/' ? 0 : rdt_pipe_dir(dir, sizeof(dir));
    int n = rc               ? -1
            : pipe[0] == '/' ? snprintf(buf, max, "%s", pipe)
                             : snprintf(buf, max, "%s/%s", dir, pipe);
    if (n < 0 || (size_t)n >= max)
        return rdt_errf(-ENAMETOOLONG, err, errlen,
                        "pipe %s: the socket path is too long (set RDQ_PIPE_DIR to a shorter "
                        "directory)",
                        pipe);
    return 0;
}

/* The directory that holds a pipe's socket, and every one above it, must be safe: owned by this
 * user or root and writable by nobody else, but for root's sticky directories (such as /tmp)
 * above it, where nobody can move another's entries. Else another user could put a socket of
 * theirs where clients look for this server's, or take the server's socket away. */
static int pipe_dir_safe(const char *socket_path, char *err, size_t errlen)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(dir, sizeof(dir), "%s", socket_path);
    for (bool holder = true;; holder = false) {
        char *slash = strrchr(dir, '/');
        if (!slash)
            return 0; /* a relative path: checked as far as it goes */
        slash[slash == dir] = '\0';
        struct stat st;
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
            return rdt_errf(-ENOTDIR, err, errlen, "pipe directory %s: %s", dir,
                            errno ? strerror(errno) : "not a directory");
        if (st.st_uid != geteuid() && st.st_uid != 0)
            return rdt_errf(-EPERM, err, errlen,
                            "pipe directory %s belongs to uid %u: not safe for pipes of uid %u "
                            "(set RDQ_PIPE_DIR to a directory of yours)",
                            dir, (unsigned)st.st_uid, (unsigned)geteuid());
        bool shared = !holder && st.st_uid == 0 && (st.st_mode & S_ISVTX);
        if ((st.st_mode & 0022) && !shared)
            return rdt_errf(-EPERM, err, errlen,
                            "pipe directory %s may be written by other users: not safe for pipes "
                            "(chmod go-w it, or set RDQ_PIPE_DIR)",
                            dir);
        if (strcmp(dir, "/") == 0)
            return 0;
    }
}

/* Creates the pipe directory and its parents (0755 for root's shared one, 0700 otherwise), and
 * checks that it is safe. */
int rdt_pipe_dir_make(const char *path, char *err, size_t errlen)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(dir, sizeof(dir), "%s", path);
    mode_t mode = geteuid() == 0 ? 0755 : 0700;
    for (char *p = dir + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        if (mkdir(dir, mode) < 0 && errno != EEXIST)
            return rdt_errf(-errno, err, errlen, "cannot create %s: %s", dir, strerror(errno));
        *p = '/';
    }
    return pipe_dir_safe(path, err, errlen);
}

static void unix_addr(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", path);
}

/* 0 when a live server answers on `path`, -ECONNREFUSED when the socket is stale. */
static int unix_probe(const char *path)
{
    struct sockaddr_un sa;
    unix_addr(path, &sa);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static int bind_pipe(const struct rdt_tstring *ts, struct rdt_bound *b, char *err, size_t errlen)
{
    int rc = rdt_pipe_expand(ts->pipe, getpid(), gettid(), b->name, sizeof(b->name));
    if (rc < 0)
        return rdt_errf(rc, err, errlen, "pipe %s: the expanded name is too long", ts->pipe);
    if ((rc = rdt_pipe_path(b->name, b->path, sizeof(b->path), err, errlen)) ||
        (rc = rdt_pipe_dir_make(b->path, err, errlen)))
        return rc;
    struct stat st;
    if (lstat(b->path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return rdt_errf(-EEXIST, err, errlen, "pipe %s: %s exists and is not a socket", b->name,
                            b->path);
        if (unix_probe(b->path) != -ECONNREFUSED)
            return rdt_errf(-EADDRINUSE, err, errlen,
                            "pipe %s is in use by a running server: choose another name", b->name);
        unlink(b->path); /* the socket of a server that died */
    }
    struct sockaddr_un sa;
    unix_addr(b->path, &sa);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* the socket is made 0666 before it listens, so that nobody connects before (any local
     * user who may enter the directory may connect; a password or the broker's credentials
     * check decide the rest). The directory is the caller's alone: the path cannot change. */
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(b->path, 0666) < 0 ||
        listen(fd, SOMAXCONN) < 0) {
        rc = -errno;
        if (fd >= 0)
            close(fd);
        b->path[0] = '\0';
        return rdt_errf(rc, err, errlen, "pipe %s: %s", b->name, strerror(-rc));
    }
    b->fd = fd;
    return 0;
}

/* ---- TCP ---- */

/* A listening socket on `port`: IPv6 and IPv4 both unless `ipv6` says IPv6 only. */
static int listen_port(uint16_t port, bool ipv6)
{
    int one = 1, v6only = ipv6 ? 1 : 0;
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    bool v6 = fd >= 0;
    if (!v6 && (ipv6 || (fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0))
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port)};
    int rc = 0;
    if (v6)
        rc = setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    if (rc == 0)
        rc = v6 ? bind(fd, (struct sockaddr *)&a6, sizeof(a6))
                : bind(fd, (struct sockaddr *)&a4, sizeof(a4));
    if (rc == 0)
        rc = listen(fd, SOMAXCONN);
    if (rc < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

static uint16_t local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int rdt_tcp_listen(uint16_t lo, uint16_t hi, bool ipv6, uint16_t *bound, char *err, size_t errlen)
{
    for (unsigned p = lo; p <= hi; p++) {
        int fd = listen_port((uint16_t)p, ipv6);
        if (fd >= 0) {
            *bound = local_port(fd);
            return fd;
        }
        if (fd != -EADDRINUSE)
            return rdt_errf(fd, err, errlen, "port %u%s: %s", p, ipv6 ? " (IPv6)" : "",
                            strerror(-fd));
    }
    if (lo == hi)
        return rdt_errf(-EADDRINUSE, err, errlen,
                        "port %u is in use: choose another port or "
                        "a range such as %u:%u",
                        lo, lo, lo + 9 > 65535 ? 65535 : lo + 9);
    return rdt_errf(-EADDRINUSE, err, errlen, "port: every port of %u:%u is in use", lo, hi);
}

void rdt_peer_addr(int fd, char *buf, size_t len)
{
    snprintf(buf, len, "unknown");
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN];
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), NULL, 0, NI_NUMERICHOST) == 0)
        snprintf(buf, len, "%s", strncmp(host, "::ffff:", 7) == 0 ? host + 7 : host);
}

bool rdt_peer_net(const char *peer, char *net, size_t len)
{
    struct in6_addr a;
    if (!strchr(peer, ':') || inet_pton(AF_INET6, peer, &a) != 1 || IN6_IS_ADDR_LOOPBACK(&a) ||
        IN6_IS_ADDR_LINKLOCAL(&a) || IN6_IS_ADDR_UNSPECIFIED(&a) || IN6_IS_ADDR_V4MAPPED(&a))
        return false;
    memset(a.s6_addr + 8, 0, 8);
    char text[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &a, text, sizeof(text));
    snprintf(net, len, "%s/64", text);
    return true;
}

int rdt_bind(const struct rdt_tstring *ts, struct rdt_bound *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    if (ts->proto == RDT_COM) /* a line's owner holds it: rdt_server_open serves through it */
        return rdt_errf(-EINVAL, err, errlen, "com: a serial line is not bound, it is served");
    if (ts->proto == RDT_NPIPE || ts->proto == RDT_SPIPE)
        return bind_pipe(ts, out, err, errlen);
    int fd = rdt_tcp_listen(ts->port_lo, ts->port_hi, ts->ipv6, &out->port, err, errlen);
    if (fd < 0)
        return fd;
    out->fd = fd;
    return 0;
}

void rdt_unbind(struct rdt_bound *b)
{
    if (b->fd >= 0)
        close(b->fd);
    if (b->path[0])
        unlink(b->path);
    b->fd = -1;
    b->path[0] = '\0';
}

/* ---- Dialing ---- */

bool rdt_host_is_local(const char *host)
{
    char me[RDT_HOST_MAX + 1] = "";
    gethostname(me, sizeof(me));
    size_t short_len = strcspn(me, ".");
    return strcmp(host, ".") == 0 || strcmp(host, "localhost") == 0 ||
           strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "[::1]") == 0 || strcmp(host, me) == 0 ||
           (strlen(host) == short_len && strncmp(host, me, short_len) == 0);
}

/* Connects to a local pipe without blocking: a server whose backlog is full (EAGAIN) is tried
 * again until the deadline. */
int rdt_pipe_connect(const struct rdt_tstring *ts, int64_t deadline, struct rdt_conn **out,
                     char *err, size_t errlen)
{
    if (!rdt_host_is_local(ts->server))
        return rdt_errf(-EHOSTUNREACH, err, errlen,
                        "npipe: %s is not this host: a pipe on another host is reached through "
                        "that host's broker",
                        ts->server);
    char path[108];
    int rc = rdt_pipe_path(ts->pipe, path, sizeof(path), err, errlen);
    if (rc || (rc = pipe_dir_safe(path, err, errlen)))
        return rc;
    struct sockaddr_un sa;
    unix_addr(path, &sa);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    while (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        if (rc == -EAGAIN && rdt_now_ms() < deadline) {
            poll(NULL, 0, 10);
            continue;
        }
        close(fd);
        if (rc == -EAGAIN)
            return rdt_errf(-EBUSY, err, errlen,
                            "npipe: pipe %s: the server is busy (it accepts no connection)",
                            ts->pipe);
        return rdt_errf(rc, err, errlen, "npipe: no server on pipe %s (%s)", ts->pipe,
                        rc == -ENOENT || rc == -ECONNREFUSED ? "no such pipe" : strerror(-rc));
    }
    if (fd < 0)
        return rdt_errf(-errno, err, errlen, "npipe: socket: %s", strerror(errno));
    *out = rdt_sock_conn(&rdt_unix_ops, fd);
    return *out ? 0 : -ENOMEM;
}

/* True when the accepted peer's address is one of `addrs`. */
static bool peer_is(int fd, const struct rdt_addrs *addrs)
{
    char peer[INET6_ADDRSTRLEN + 8];
    rdt_peer_addr(fd, peer, sizeof(peer));
    for (int i = 0; i < addrs->n; i++) {
        const char *w = addrs->addr[i];
        if (strcmp(peer, strncmp(w, "::ffff:", 7) == 0 ? w + 7 : w) == 0)
            return true;
    }
    return false;
}

/* ---- clicon on the client: a layer whose opening takes the server's connection ---- */

struct await {
    int lfd;
    struct rdt_addrs addrs; /* the server host's: only it may connect */
    char err[RDT_ERR_MAX];
};

static int await_open(struct rdt_conn *c)
{
    struct await *w = c->ctx;
    for (int tries = 0; tries < 16; tries++) { /* strangers get 16 a turn, no more */
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        if (fd < 0)
            return errno == EAGAIN ? -EAGAIN
                                   : rdt_errf(-errno, w->err, sizeof(w->err), "tcp: accept: %s",
                                              strerror(errno));
        if (!peer_is(fd, &w->addrs)) {
            close(fd); /* only the named server may connect */
            continue;
        }
        if (!(c->next = rdt_sock_conn(&rdt_tcp_ops, fd))) {
            close(fd);
            return rdt_errf(-ENOMEM, w->err, sizeof(w->err), "out of memory");
        }
        c->fd = fd;
        close(w->lfd);
        w->lfd = -1;
        return 0;
    }
    return -EAGAIN; /* the others on the loop's next turn */
}

static void await_close(struct rdt_conn *c)
{
    struct await *w = c->ctx;
    if (w->lfd >= 0)
        close(w->lfd);
    free(w);
}

static int await_read(struct rdt_conn *c, void *buf, size_t len, size_t *nread)
{
    *nread = 0;
    return c->next ? rdt_conn_read(c->next, buf, len, nread) : -ENOTCONN;
}

static int await_write(struct rdt_conn *c, const void *buf, size_t len, size_t *nwritten)
{
    *nwritten = 0;
    return c->next ? rdt_conn_write(c->next, buf, len, nwritten) : -ENOTCONN;
}

static short await_events(struct rdt_conn *c)
{
    return c->next ? rdt_conn_events(c->next) : POLLIN;
}

static const char *await_last_error(struct rdt_conn *c)
{
    struct await *w = c->ctx;
    return w->err[0] || !c->next ? w->err : rdt_conn_error(c->next);
}

static const struct rdt_ops await_ops = {
    .name = "clicon",
    .open = await_open,
    .close = await_close,
    .read = await_read,
    .write = await_write,
    .events = await_events,
    .last_error = await_last_error,
};

int rdt_clicon_listen(const struct rdt_tstring *ts, const struct rdt_addrs *addrs,
                      struct rdt_conn **out, uint16_t *port, char *err, size_t errlen)
{
    *out = NULL;
    struct await *w = calloc(1, sizeof(*w));
    if (!w)
        return rdt_errf(-ENOMEM, err, errlen, "out of memory");
    *w = (struct await){.addrs = *addrs};
    w->lfd = rdt_tcp_listen(ts->port_lo, ts->port_hi, ts->ipv6, port, err, errlen);
    struct rdt_conn *c = w->lfd < 0 ? NULL : rdt_conn_push(&await_ops, w, NULL);
    if (!c) {
        int rc = w->lfd < 0 ? w->lfd : rdt_errf(-ENOMEM, err, errlen, "out of memory");
        if (w->lfd >= 0)
            close(w->lfd);
        free(w);
        return rc;
    }
    c->fd = w->lfd; /* what the opening waits on */
    *out = c;
    return 0;
}

/* The peer of a client string, for messages: HOST:PORT, or the pipe. */
static const char *peer_what(const struct rdt_tstring *ts, char *buf, size_t len)
{
    if (ts->proto == RDT_NPIPE || ts->proto == RDT_SPIPE)
        snprintf(buf, len, "the server of pipe %s", ts->pipe);
    else if (ts->proto == RDT_COM)
        snprintf(buf, len, "the server of channel %d of %s", ts->channel, ts->com_device);
    else
        snprintf(buf, len, "%s:%u", ts->clicon[0] ? ts->clicon : ts->server, ts->port_lo);
    return buf;
}

void rdt_dial_timeout_text(const struct rdt_tstring *ts, int timeout_ms, char *err, size_t errlen)
{
    char what[RDT_HOST_MAX + RDT_PIPE_MAX + 32];
    snprintf(err, errlen,
             "%s: %s accepted the connection but did not complete the handshake within %d ms%s",
             rdt_proto_name(ts->proto), peer_what(ts, what, sizeof(what)), timeout_ms,
             ts->proto == RDT_TCP || ts->proto == RDT_NPIPE
                 ? " (an ssl or spipe server waits so for a TLS client)"
                 : "");
}

static int dial(struct rdt_conn **out, const struct rdt_tstring *ts, const char *password,
                enum rdt_role role, int timeout_ms, char *err, size_t errlen)
{
    *out = NULL;
    if (ts->proto != RDT_NPIPE && ts->proto != RDT_SPIPE)
        return rdt_dial_wait(out, ts, password, role, timeout_ms, err, errlen);
    int64_t deadline = rdt_now_ms() + timeout_ms;
    struct rdt_conn *c = NULL;
    int rc = rdt_pipe_connect(ts, deadline, &c, err, errlen);
    if (rc || (rc = rdt_tls_wrap(&c, ts, err, errlen)))
        return rc;
    c = rdt_client_session(c, ts, role, password);
    if (!c)
        return rdt_errf(-ENOMEM, err, errlen, "out of memory");
    int64_t left = deadline - rdt_now_ms();
    rc = rdt_conn_open_wait(c, left > 0 ? (int)left : 0);
    if (rc == -ETIMEDOUT) /* connected: the peer took the connection, then went quiet */
        rdt_dial_timeout_text(ts, timeout_ms, err, errlen);
    else if (rc)
        rdt_errf(rc, err, errlen, "%s", rdt_conn_error(c));
    if (rc) {
        rdt_conn_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int rdt_dial(struct rdt_conn **out, const struct rdt_tstring *ts, const char *password,
             int timeout_ms, char *err, size_t errlen)
{
    return dial(out, ts, password, RDT_ROLE_CLIENT, timeout_ms, err, errlen);
}

int rdt_dial_requester(struct rdt_conn **out, const struct rdt_tstring *ts, int timeout_ms,
                       char *err, size_t errlen)
{
    return dial(out, ts, NULL, RDT_ROLE_REQUESTER, timeout_ms, err, errlen);
}

int rdt_dial_start(struct rdt_conn **out, const struct rdt_tstring *ts, enum rdt_role role,
                   char *err, size_t errlen)
{
    *out = NULL;
    struct rdt_conn *c = NULL;
    if (ts->proto != RDT_NPIPE)
        return rdt_errf(-EPROTONOSUPPORT, err, errlen, "%s: only pipes are dialed without waiting",
                        rdt_proto_name(ts->proto));
    int rc = rdt_pipe_connect(ts, rdt_now_ms(), &c, err, errlen);
    if (rc)
        return rc;
    *out = rdt_client_session(c, ts, role, NULL);
    return *out ? 0 : rdt_errf(-ENOMEM, err, errlen, "out of memory");
}

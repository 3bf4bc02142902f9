/* rdq -premote T -forward [ADDR:]PORT: a local port for debuggers that take only host:port, each
 * accepted connection relayed to the server through a connection of its own to T (TLS and the
 * password stay on this side), all on one loop: every dial (tcp, ssl, clicon, com, and pipes,
 * this host's or another's through its broker) goes on while the other connections are served.
 * With clicon, each connection listens for the server on a port of the range of its own. */
#include "session.h"

#include "discover.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

struct fwd;

/* One accepted connection: dialing T, then spliced to it. */
struct fwd_conn {
    struct fwd *f;
    unsigned n;
    int fd; /* the accepted socket, until the splice takes it */
    char peer[80];
    char host[64]; /* its address, for the caps */
    struct rdt_dialer *dialer;
    struct rdd_relay *relay; /* a pipe of another host's dial */
    struct event *watch;     /* while dialing: the peer's end */
    struct rdt_splice *sp;
    LIST_ENTRY(fwd_conn) link;
};

struct fwd {
    struct event_base *base;
    struct rdt_resolver *res;
    struct rdt_tstring ts;
    char pw[64]; /* asked once for Password=* */
    char shown[RDT_STRING_MAX + RDT_HOST_MAX + 16];
    const struct rds_forward_opts *o;
    unsigned count;
    struct rdt_peers peers; /* the connections by peer, for the caps */
    bool per_peer;          /* capped per peer too: not on a loopback listener */
    int lfd;
    LIST_HEAD(, fwd_conn) conns;
};

/* A socket address as ADDR:PORT, or [ADDR]:PORT for IPv6. */
static void addr_text(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
    char host[64] = "?", port[16] = "?";
    getnameinfo(sa, len, host, sizeof(host), port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(buf, size, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

/* Whether only this host reaches an address: 127.0.0.0/8, ::1, and 127/8 as IPv6 maps it. */
static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24 == 127;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return sa->sa_family == AF_INET6 &&
           (IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127));
}

/* [ADDR:]PORT, ADDR a name or an address ([V6] in brackets); 127.0.0.1 when there is none. */
static int listen_addr(const char *spec, struct addrinfo **out)
{
    char host[RDT_HOST_MAX + 1] = "127.0.0.1";
    const char *port = spec, *colon = strrchr(spec, ':');
    if (colon) {
        const char *h = spec;
        size_t n = (size_t)(colon - spec);
        if (spec[0] == '[' && n >= 2 && spec[n - 1] == ']')
            h++, n -= 2;
        else if (memchr(spec, ':', n))
            return -1; /* an IPv6 address without brackets */
        if (n == 0 || n >= sizeof(host))
            return -1;
        memcpy(host, h, n);
        host[n] = '\0';
        port = colon + 1;
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (!*port || *end || p < 0 || p > 65535)
        return -1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    return getaddrinfo(host, port, &hints, out) == 0 ? 0 : -1;
}

static int open_listener(struct fwd *f, char *where, size_t len)
{
    struct addrinfo *ai = NULL;
    if (listen_addr(f->o->listen, &ai) != 0) {
        fprintf(stderr,
                "rdq: -forward wants [ADDR:]PORT (PORT from 0, a free one, to 65535; an IPv6 "
                "address in brackets, [::1]:PORT), not \"%s\"\n",
                f->o->listen);
        return 2;
    }
    int one = 1, fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_storage sa;
    socklen_t salen = sizeof(sa);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &salen) < 0) {
        fprintf(stderr, "rdq: -forward %s: cannot listen: %s\n", f->o->listen, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return 1;
    }
    freeaddrinfo(ai);
    addr_text((struct sockaddr *)&sa, salen, where, len);
    f->per_peer = !is_loopback((struct sockaddr *)&sa);
    f->lfd = fd;
    return 0;
}

static void conn_free(struct fwd_conn *c)
{
    LIST_REMOVE(c, link);
    rdt_peers_give(&c->f->peers, c->host);
    rdt_dialer_free(c->dialer);
    rdd_relay_free(c->relay);
    if (c->watch)
        event_free(c->watch);
    rdt_splice_free(c->sp);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

static void on_splice(struct rdt_splice *sp, enum rdt_splice_event ev, void *arg)
{
    (void)sp;
    struct fwd_conn *c = arg;
    if (ev != RDT_SPLICE_DONE)
        return;
    fprintf(stderr, "rdq: forward: connection %u from %s ended\n", c->n, c->peer);
    conn_free(c);
}

/* The server answered: the accepted socket is both ends of the splice (a dup for the second,
 * since the splice closes its writing end when the server's side ends). */
static void joined(struct fwd_conn *c, struct rdt_conn *conn)
{
    int rfd = dup(c->fd);
    if (rfd < 0 || rdt_splice_open(&c->sp, c->f->base, conn, c->fd, rfd, on_splice, c) != 0) {
        fprintf(stderr, "rdq: forward: connection %u from %s: %s\n", c->n, c->peer,
                strerror(rfd < 0 ? errno : ENOMEM));
        if (rfd >= 0)
            close(rfd);
        rdt_conn_free(conn);
        conn_free(c);
        return;
    }
    c->fd = -1; /* the splice's now */
    fprintf(stderr, "rdq: forward: connection %u from %s: through to the server\n", c->n, c->peer);
}

static void on_dialed(struct rdt_conn *conn, int rc, const char *err, void *arg)
{
    struct fwd_conn *c = arg;
    c->dialer = NULL;
    c->relay = NULL;
    if (c->watch)
        event_free(c->watch);
    c->watch = NULL;
    if (!conn) {
        fprintf(stderr, "rdq: forward: connection %u from %s: %s; closed it\n", c->n, c->peer,
                err && *err ? err : strerror(-rc));
        conn_free(c);
        return;
    }
    joined(c, conn);
}

/* The peer ended its side before the server answered: with nothing sent, it has gone, and its
 * dial stops. */
static void on_peer(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct fwd_conn *c = arg;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n > 0) { /* it sent what the server is to read, then ended: the dial goes on for it */
        event_free(c->watch);
        c->watch = NULL;
        return;
    }
    fprintf(stderr, "rdq: forward: connection %u from %s: gone before the server answered\n", c->n,
            c->peer);
    conn_free(c);
}

/* Dials T for one connection, on the loop: a pipe of another host through its broker, anything
 * else through the transport layer. */
static void dial(struct fwd_conn *c)
{
    struct fwd *f = c->f;
    const char *pw = f->pw[0] ? f->pw : NULL;
    char err[RDT_ERR_MAX] = "";
    bool pipe = f->ts.proto == RDT_NPIPE || f->ts.proto == RDT_SPIPE;
    bool relay = pipe && !rdt_host_is_local(f->ts.server);
    int rc;
    if (relay) {
        rc = rdd_relay_dial_async(&c->relay, f->base, f->res, &f->ts, pw, 0, f->o->timeout_ms,
                                  on_dialed, c, err, sizeof(err));
    } else {
        rc = rdt_dial_async(&c->dialer, f->base, f->res, &f->ts, pw, RDT_ROLE_CLIENT,
                            f->o->timeout_ms, 0, on_dialed, c, err, sizeof(err));
    }
    c->watch = rc == 0 ? event_new(f->base, c->fd, EV_CLOSED | EV_PERSIST, on_peer, c) : NULL;
    if (c->watch)
        event_add(c->watch, NULL);
    if (rc)
        on_dialed(NULL, rc, err, c);
}

static void take(struct fwd *f, int fd, const struct sockaddr *sa, socklen_t len)
{
    char peer[80], host[64] = "?", why[160];
    addr_text(sa, len, peer, sizeof(peer));
    getnameinfo(sa, len, host, sizeof(host), NULL, 0, NI_NUMERICHOST);
    const char *busy = rdt_peers_take(&f->peers, host, f->per_peer, why, sizeof(why));
    struct fwd_conn *c = busy ? NULL : calloc(1, sizeof(*c));
    if (!c) {
        fprintf(stderr, "rdq: forward: a connection from %s refused: %s\n", peer,
                busy ? busy : "out of memory");
        if (!busy)
            rdt_peers_give(&f->peers, host);
        close(fd);
        return;
    }
    *c = (struct fwd_conn){.f = f, .n = ++f->count, .fd = fd};
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    snprintf(c->host, sizeof(c->host), "%s", host);
    LIST_INSERT_HEAD(&f->conns, c, link);
    dial(c);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    for (int i = 0; i < 16; i++) { /* a few at a time, so that the others get their turn */
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        int fd = accept4(lfd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                fprintf(stderr, "rdq: forward: accept: %s\n", strerror(errno));
            return;
        }
        take(arg, fd, (struct sockaddr *)&sa, len);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

/* Parses T once, and asks for the password of Password=* once. */
static int prepare(struct fwd *f, const char *t)
{
    char err[RDT_ERR_MAX];
    if (rdt_parse(t, RDT_CLIENT, &f->ts, err, sizeof(err)) != 0) {
        fprintf(stderr, "rdq: %s\n", err);
        return 2;
    }
    if (f->ts.password_ask && rds_ask_secret("Password", f->pw, sizeof(f->pw)) != 0) {
        fprintf(stderr, "rdq: Password=*: no terminal to ask the password on; give "
                        "password=... in the string\n");
        return 2;
    }
    rdt_format(&f->ts, RDT_FORM_CANON, NULL, 0, f->shown, sizeof(f->shown));
    return 0;
}

static void run(struct fwd *f)
{
    struct event *lev = event_new(f->base, f->lfd, EV_READ | EV_PERSIST, on_accept, f);
    struct event *sigs[] = {evsignal_new(f->base, SIGINT, on_signal, f->base),
                            evsignal_new(f->base, SIGTERM, on_signal, f->base)};
    if (lev && sigs[0] && sigs[1] && event_add(lev, NULL) == 0 && event_add(sigs[0], NULL) == 0 &&
        event_add(sigs[1], NULL) == 0)
        event_base_dispatch(f->base);
    else
        fprintf(stderr, "rdq: forward: cannot set up the event loop\n");
    for (int i = 0; i < 2; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (lev)
        event_free(lev);
    while (!LIST_EMPTY(&f->conns))
        conn_free(LIST_FIRST(&f->conns));
}

int rds_forward(const char *t, const struct rds_forward_opts *o)
{
    struct fwd f = {.o = o, .lfd = -1};
    rdt_peers_init(&f.peers, o->max_conns, RDS_FORWARD_PEER_MAX);
    char where[96], err[RDT_ERR_MAX];
    LIST_INIT(&f.conns);
    int rc = prepare(&f, t);
    if (rc == 0)
        rc = open_listener(&f, where, sizeof(where));
    f.base = rc == 0 ? event_base_new() : NULL;
    if (rc == 0 && (!f.base || rdt_resolver_new(&f.res, f.base, err, sizeof(err)) != 0)) {
        fprintf(stderr, "rdq: forward: cannot set up the event loop\n");
        rc = 1;
    }
    if (rc == 0) {
        fprintf(stderr, "rdq: forwarding %s to %s\n", where, f.shown);
        run(&f);
    }
    rdt_resolver_free(f.res);
    if (f.base)
        event_base_free(f.base);
    if (f.lfd >= 0)
        close(f.lfd);
    rdt_peers_free(&f.peers);
    explicit_bzero(f.pw, sizeof(f.pw));
    explicit_bzero(f.ts.password, sizeof(f.ts.password));
    return rc;
}

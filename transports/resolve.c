/* Names with c-ares on the caller's libevent loop: c-ares says which sockets it wants watched
 * (its socket-state callback), the loop hands their events back, and one timer follows
 * ares_timeout(). Every look-up of the toolkit goes through here: addresses for dialing, and
 * the PTR, SRV and TXT records of DNS-SD. */
#include "internal.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#define WATCH_MAX 64 /* c-ares opens a socket or two per name server */
#define INFLIGHT_MAX                                                                               \
    64                     /* queries on the wire at once: more wait their turn (a burst of        \
                              thousands would overflow the one socket's receive buffer) */
#define NAME_MAX_TEXT 1024 /* a name in presentation form, escapes and all */

struct watch {
    ares_socket_t fd;
    struct event *ev;
};

struct rdt_lookup {
    struct rdt_resolver *r;
    LIST_ENTRY(rdt_lookup) link;
    TAILQ_ENTRY(rdt_lookup) qlink; /* while queued */
    bool queued;
    bool cancelled;
    bool in_ares;      /* c-ares holds it: freed when c-ares calls back */
    bool starting;     /* inside the call that hands it to c-ares: an answer waits */
    struct event *now; /* passes an answer on from the loop */
    int rc;
    char err[RDT_ERR_MAX];
    unsigned char *abuf;
    int alen;
    rdt_addrs_cb acb;
    rdt_query_cb qcb;
    void *arg;
    bool ipv6;
    int type;
    struct rdt_addrs addrs;
    char name[NAME_MAX_TEXT];
};

struct rdt_resolver {
    struct event_base *base;
    ares_channel ch;
    struct watch watches[WATCH_MAX];
    struct event *timer;
    LIST_HEAD(, rdt_lookup) lookups;
    TAILQ_HEAD(, rdt_lookup) queue;
    int inflight;
    bool closing;
};

static void rearm(struct rdt_resolver *r)
{
    struct timeval tv, *t = ares_timeout(r->ch, NULL, &tv);
    if (t)
        evtimer_add(r->timer, t);
    else
        evtimer_del(r->timer);
}

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    struct rdt_resolver *r = arg;
    ares_process_fd(r->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    rearm(r);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rdt_resolver *r = arg;
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm(r);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct rdt_resolver *r = data;
    struct watch *w = NULL, *free_slot = NULL;
    for (int i = 0; i < WATCH_MAX; i++) {
        if (r->watches[i].ev && r->watches[i].fd == fd)
            w = &r->watches[i];
        else if (!r->watches[i].ev && !free_slot)
            free_slot = &r->watches[i];
    }
    if (w) {
        event_free(w->ev);
        w->ev = NULL;
    }
    if (!readable && !writable)
        return;
    w = w ? w : free_slot;
    if (!w)
        return; /* more sockets than name servers times two: c-ares times the query out */
    short what = EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
    w->fd = fd;
    w->ev = event_new(r->base, fd, what, io_cb, r);
    if (w->ev)
        event_add(w->ev, NULL);
}

/* With $RDQ_DNS_SERVERS, only those servers are asked: no /etc/hosts, no search list. */
int rdt_resolver_new(struct rdt_resolver **out, struct event_base *base, char *err, size_t errlen)
{
    return rdt_resolver_new_within(out, base, 0, err, errlen);
}

int rdt_resolver_new_within(struct rdt_resolver **out, struct event_base *base, int within_ms,
                            char *err, size_t errlen)
{
    *out = NULL;
    static bool inited;
    if (!inited && ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS)
        inited = true;
    struct rdt_resolver *r = calloc(1, sizeof(*r));
    if (!r)
        return rdt_errf(-ENOMEM, err, errlen, "out of memory");
    r->base = base;
    LIST_INIT(&r->lookups);
    TAILQ_INIT(&r->queue);
    const char *servers = getenv("RDQ_DNS_SERVERS");
    bool only = servers && servers[0];
    struct ares_options o = {.sock_state_cb = sock_state_cb,
                             .sock_state_cb_data = r,
                             .timeout = within_ms > 0 ? within_ms / 4 : 1000,
                             .tries = within_ms > 0 ? 2 : 3, /* the second waits twice as long */
                             .socket_receive_buffer_size = 1 << 20,
                             .lookups = (char *)"b",
                             .ndomains = 0};
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_RCVBUF |
               (only ? ARES_OPT_LOOKUPS | ARES_OPT_DOMAINS : 0);
    int rc = ares_init_options(&r->ch, &o, mask);
    if (rc == ARES_SUCCESS && only)
        rc = ares_set_servers_ports_csv(r->ch, servers);
    if (rc == ARES_SUCCESS && !(r->timer = evtimer_new(base, timer_cb, r)))
        rc = ARES_ENOMEM;
    if (rc != ARES_SUCCESS) {
        rdt_errf(-EIO, err, errlen, "cannot start the resolver%s: %s",
                 only ? " for $RDQ_DNS_SERVERS" : "", ares_strerror(rc));
        rdt_resolver_free(r);
        return -EIO;
    }
    *out = r;
    return 0;
}

static void lookup_free(struct rdt_lookup *l)
{
    LIST_REMOVE(l, link);
    if (l->queued)
        TAILQ_REMOVE(&l->r->queue, l, qlink);
    if (l->now)
        event_free(l->now);
    free(l->abuf);
    free(l);
}

void rdt_resolver_free(struct rdt_resolver *r)
{
    if (!r)
        return;
    struct rdt_lookup *l, *next;
    r->closing = true; /* nothing queued starts while c-ares calls back */
    LIST_FOREACH(l, &r->lookups, link)
    l->cancelled = true;
    if (r->ch)
        ares_destroy(r->ch); /* calls back every query (freeing it) and closes its sockets */
    for (l = LIST_FIRST(&r->lookups); l; l = next) {
        next = LIST_NEXT(l, link);
        lookup_free(l);
    }
    for (int i = 0; i < WATCH_MAX; i++)
        if (r->watches[i].ev)
            event_free(r->watches[i].ev);
    if (r->timer)
        event_free(r->timer);
    free(r);
}

void rdt_lookup_cancel(struct rdt_lookup *l)
{
    if (!l)
        return;
    if (l->in_ares)
        l->cancelled = true; /* c-ares calls back later; nothing is passed on */
    else
        lookup_free(l);
}

static int status_rc(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return 0;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_ENONAME:
        return -ENOENT;
    case ARES_ETIMEOUT:
    case ARES_ECONNREFUSED:
    case ARES_ESERVFAIL:
        return -ETIMEDOUT;
    case ARES_ENOMEM:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

static void fail_text(const struct rdt_lookup *l, int status, char *err, size_t len)
{
    if (status_rc(status) == -ETIMEDOUT)
        snprintf(err, len, "%s: no answer from the name servers in time (%s)", l->name,
                 ares_strerror(status));
    else
        snprintf(err, len, "%s: name not found (%s)", l->name, ares_strerror(status));
}

static void now_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rdt_lookup *l = arg;
    const char *err = l->rc ? l->err : NULL;
    if (l->acb)
        l->acb(l->rc, &l->addrs, err, l->arg);
    else
        l->qcb(l->rc, l->abuf, l->alen, err, l->arg);
    lookup_free(l);
}

/* Passes the answer on from the loop: a callback never runs inside the call that asked. */
static void deliver_later(struct rdt_lookup *l)
{
    struct timeval zero = {0, 0};
    evtimer_add(l->now, &zero);
}

static void launch(struct rdt_lookup *l);

/* Starts queued look-ups while there is room on the wire. */
static void pump(struct rdt_resolver *r)
{
    while (!r->closing && r->inflight < INFLIGHT_MAX && !TAILQ_EMPTY(&r->queue))
        launch(TAILQ_FIRST(&r->queue));
}

/* c-ares is done with a look-up: true when its answer is to be passed on. */
static bool lookup_take(struct rdt_lookup *l)
{
    struct rdt_resolver *r = l->r;
    l->in_ares = false;
    r->inflight--;
    bool live = !l->cancelled;
    if (!live)
        lookup_free(l);
    pump(r);
    return live;
}

static void addr_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct rdt_lookup *l = arg;
    struct rdt_addrs *a = &l->addrs;
    for (struct ares_addrinfo_node *n = res ? res->nodes : NULL; n && a->n < RDT_ADDRS_MAX;
         n = n->ai_next) {
        const void *p = n->ai_family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)n->ai_addr)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)n->ai_addr)->sin_addr;
        if (inet_ntop(n->ai_family, p, a->addr[a->n], sizeof(a->addr[0])))
            a->n++;
    }
    if (res)
        ares_freeaddrinfo(res);
    if (!lookup_take(l))
        return;
    l->rc = a->n ? 0 : status ? status_rc(status) : -ENOENT;
    if (l->rc)
        fail_text(l, status ? status : ARES_ENODATA, l->err, sizeof(l->err));
    if (l->starting) {
        deliver_later(l);
        return;
    }
    l->acb(l->rc, a, l->rc ? l->err : NULL, l->arg);
    lookup_free(l);
}

static void query_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct rdt_lookup *l = arg;
    if (!lookup_take(l))
        return;
    l->rc = status_rc(status);
    if (status != ARES_SUCCESS)
        fail_text(l, status, l->err, sizeof(l->err));
    if (l->starting) {
        if (l->rc == 0 && alen > 0 && (l->abuf = malloc((size_t)alen)))
            memcpy(l->abuf, abuf, (size_t)alen), l->alen = alen;
        else if (l->rc == 0)
            l->rc = -ENOMEM;
        deliver_later(l);
        return;
    }
    l->qcb(l->rc, abuf, l->rc ? 0 : alen, l->rc ? l->err : NULL, l->arg);
    lookup_free(l);
}

/* Hands a queued look-up to c-ares. c-ares may answer at once (from /etc/hosts, or a bad
 * name): that answer waits for the loop. */
static void launch(struct rdt_lookup *l)
{
    struct rdt_resolver *r = l->r;
    TAILQ_REMOVE(&r->queue, l, qlink);
    l->queued = false;
    l->in_ares = l->starting = true;
    r->inflight++;
    if (l->acb) {
        struct ares_addrinfo_hints hints = {.ai_family = l->ipv6 ? AF_INET6 : AF_UNSPEC,
                                            .ai_socktype = SOCK_STREAM};
        ares_getaddrinfo(r->ch, l->name, NULL, &hints, addr_cb, l);
    } else {
        ares_query(r->ch, l->name, 1 /* C_IN */, l->type, query_cb, l);
    }
    l->starting = false;
    rearm(r);
}

/* Answers that need no name server: address literals and the localhost names (RFC 6761). */
/* An IPv6 literal with a zone (fe80::1%eth0), which inet_pton does not take. */
static bool scoped_ipv6(const char *name)
{
    struct addrinfo hints = {.ai_family = AF_INET6, .ai_flags = AI_NUMERICHOST}, *ai = NULL;
    if (!strchr(name, '%') || getaddrinfo(name, NULL, &hints, &ai) != 0)
        return false;
    freeaddrinfo(ai);
    return true;
}

static bool answer_itself(struct rdt_lookup *l)
{
    struct in6_addr a;
    struct rdt_addrs *out = &l->addrs;
    size_t n = strlen(l->name);
    bool v4 = inet_pton(AF_INET, l->name, &a) == 1,
         v6 = inet_pton(AF_INET6, l->name, &a) == 1 || scoped_ipv6(l->name);
    if (v4 && l->ipv6) {
        l->rc = -EINVAL;
        snprintf(l->err, sizeof(l->err), "%s is an IPv4 address, and ipversion=6 wants IPv6",
                 l->name);
        return true;
    }
    if (v4 || v6) {
        snprintf(out->addr[out->n++], sizeof(out->addr[0]), "%s", l->name);
    } else if (strcasecmp(l->name, "localhost") == 0 || strcasecmp(l->name, "localhost.") == 0 ||
               (n > 10 && strcasecmp(l->name + n - 10, ".localhost") == 0)) {
        if (!l->ipv6)
            snprintf(out->addr[out->n++], sizeof(out->addr[0]), "127.0.0.1");
        snprintf(out->addr[out->n++], sizeof(out->addr[0]), "::1");
    }
    return out->n > 0;
}

/* A look-up of `name`: answered from the loop when it needs no name server or cannot be
 * asked (a name too long), else queued for c-ares. */
static struct rdt_lookup *lookup_new(struct rdt_resolver *r, const char *name, bool addrs,
                                     void *arg)
{
    struct rdt_lookup *l = calloc(1, sizeof(*l));
    if (!l || !(l->now = evtimer_new(r->base, now_cb, l))) {
        free(l);
        return NULL;
    }
    l->r = r;
    l->arg = arg;
    LIST_INSERT_HEAD(&r->lookups, l, link);
    size_t n = strlen(name);
    bool bracketed = n >= 2 && name[0] == '[' && name[n - 1] == ']';
    if (n >= sizeof(l->name) || (n > RDT_HOST_MAX && addrs)) {
        snprintf(l->name, sizeof(l->name), "%.60s...", name);
        l->rc = -EINVAL;
        snprintf(l->err, sizeof(l->err), "%s: a name of more than %d characters", l->name,
                 addrs ? RDT_HOST_MAX : (int)sizeof(l->name) - 1);
        deliver_later(l);
        return l;
    }
    snprintf(l->name, sizeof(l->name), "%.*s", (int)(bracketed ? n - 2 : n),
             bracketed ? name + 1 : name);
    return l;
}

static struct rdt_lookup *enqueue(struct rdt_lookup *l)
{
    struct rdt_resolver *r = l->r;
    if (evtimer_pending(l->now, NULL))
        return l; /* already answered */
    TAILQ_INSERT_TAIL(&r->queue, l, qlink);
    l->queued = true;
    pump(r);
    return l;
}

struct rdt_lookup *rdt_lookup_addrs(struct rdt_resolver *r, const char *host, bool ipv6,
                                    rdt_addrs_cb cb, void *arg)
{
    struct rdt_lookup *l = lookup_new(r, host, true, arg);
    if (!l)
        return NULL;
    l->acb = cb;
    l->ipv6 = ipv6;
    if (!evtimer_pending(l->now, NULL) && answer_itself(l)) {
        deliver_later(l);
        return l;
    }
    return enqueue(l);
}

struct rdt_lookup *rdt_lookup_query(struct rdt_resolver *r, const char *name, int type,
                                    rdt_query_cb cb, void *arg)
{
    struct rdt_lookup *l = lookup_new(r, name, false, arg);
    if (!l)
        return NULL;
    l->qcb = cb;
    l->type = type;
    return enqueue(l);
}

/* ---- The same, waiting: for callers without a loop of their own ---- */

struct sync_wait {
    struct event_base *base;
    bool done;
    int rc;
    struct rdt_addrs *out;
    char *err;
    size_t errlen;
};

static void sync_cb(int rc, const struct rdt_addrs *a, const char *err, void *arg)
{
    struct sync_wait *w = arg;
    w->done = true;
    w->rc = rc;
    *w->out = *a;
    if (err)
        snprintf(w->err, w->errlen, "%s", err);
    event_base_loopbreak(w->base);
}

int rdt_resolve_addrs(const char *host, bool ipv6, int timeout_ms, struct rdt_addrs *out, char *err,
                      size_t errlen)
{
    memset(out, 0, sizeof(*out));
    struct sync_wait w = {.base = event_base_new(), .out = out, .err = err, .errlen = errlen};
    struct rdt_resolver *r = NULL;
    if (!w.base)
        return rdt_errf(-ENOMEM, err, errlen, "cannot create an event loop");
    int rc = rdt_resolver_new(&r, w.base, err, errlen);
    struct rdt_lookup *l = rc ? NULL : rdt_lookup_addrs(r, host, ipv6, sync_cb, &w);
    if (!rc && !l)
        rc = rdt_errf(-ENOMEM, err, errlen, "out of memory");
    if (l) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        event_base_loopexit(w.base, &tv);
        event_base_dispatch(w.base);
        if (!w.done) {
            rdt_lookup_cancel(l);
            rc = rdt_errf(-ETIMEDOUT, err, errlen,
                          "%s: no answer from the name servers within %d ms", host, timeout_ms);
        } else {
            rc = w.rc;
        }
    }
    rdt_resolver_free(r);
    event_base_free(w.base);
    return rc ? rc : out->n;
}

/* Host names to addresses with c-ares, driven by libevent: c-ares tells which sockets it wants
 * watched (its socket-state callback) and the loop hands their events back. */
#include "discover.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WATCH_MAX 16

struct watch {
    ares_socket_t fd;
    struct event *ev;
};

struct lookup {
    struct event_base *base;
    ares_channel ch;
    struct watch watches[WATCH_MAX];
    struct event *tick;
    bool done;
    int status;
    char (*addrs)[64];
    int max, count;
};

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lookup *l = arg;
    ares_process_fd(l->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct lookup *l = data;
    struct watch *w = NULL, *free_slot = NULL;
    for (int i = 0; i < WATCH_MAX; i++) {
        if (l->watches[i].ev && l->watches[i].fd == fd)
            w = &l->watches[i];
        else if (!l->watches[i].ev && !free_slot)
            free_slot = &l->watches[i];
    }
    if (w) {
        event_free(w->ev);
        w->ev = NULL;
    }
    if (!readable && !writable)
        return;
    w = w ? w : free_slot;
    if (!w)
        return; /* more sockets than a lookup of one name ever opens */
    short what = EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
    w->fd = fd;
    w->ev = event_new(l->base, fd, what, io_cb, l);
    event_add(w->ev, NULL);
}

/* c-ares's own timeouts: let it retry and give up on its schedule. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lookup *l = arg;
    ares_process_fd(l->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    struct timeval tv = {0, 50000};
    evtimer_add(l->tick, &tv);
}

static void addr_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct lookup *l = arg;
    l->done = true;
    l->status = status;
    for (struct ares_addrinfo_node *n = res ? res->nodes : NULL; n && l->count < l->max;
         n = n->ai_next) {
        const void *a = n->ai_family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)n->ai_addr)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)n->ai_addr)->sin_addr;
        if (inet_ntop(n->ai_family, a, l->addrs[l->count], 64))
            l->count++;
    }
    if (res)
        ares_freeaddrinfo(res);
    event_base_loopbreak(l->base);
}

void rdd_host_clean(const char *typed, char *out, size_t len)
{
    while (*typed == '\\')
        typed++;
    size_t n = strlen(typed);
    if (n >= 2 && typed[0] == '[' && typed[n - 1] == ']')
        snprintf(out, len, "%.*s", (int)(n - 2), typed + 1);
    else
        snprintf(out, len, "%s", typed);
}

/* With $RDQ_DNS_SERVERS, only those servers are asked: no /etc/hosts, no search list. */
static int channel_open(struct lookup *l, int timeout_ms, char *err, size_t errlen)
{
    const char *servers = getenv("RDQ_DNS_SERVERS");
    bool only = servers && servers[0];
    struct ares_options o = {.sock_state_cb = sock_state_cb,
                             .sock_state_cb_data = l,
                             .timeout = timeout_ms < 1000 ? timeout_ms : 1000,
                             .tries = 2,
                             .lookups = (char *)"b",
                             .ndomains = 0};
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
               (only ? ARES_OPT_LOOKUPS | ARES_OPT_DOMAINS : 0);
    int rc = ares_init_options(&l->ch, &o, mask);
    if (rc == ARES_SUCCESS && only)
        rc = ares_set_servers_ports_csv(l->ch, servers);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "cannot start the resolver: %s", ares_strerror(rc));
        return -RDD_FAILED;
    }
    return 0;
}

static void lookup_close(struct lookup *l)
{
    if (l->ch)
        ares_destroy(l->ch); /* closes its sockets through sock_state_cb */
    for (int i = 0; i < WATCH_MAX; i++)
        if (l->watches[i].ev)
            event_free(l->watches[i].ev);
    if (l->tick)
        event_free(l->tick);
    event_base_free(l->base);
}

int rdd_resolve(const char *host, int timeout_ms, char addrs[][64], int max, char *err,
                size_t errlen)
{
    char name[RDT_HOST_MAX + 1];
    rdd_host_clean(host, name, sizeof(name));
    /* an address literal is its own answer: c-ares 1.18 would still ask the name servers */
    struct in6_addr a;
    if (max > 0 && (inet_pton(AF_INET, name, &a) == 1 || inet_pton(AF_INET6, name, &a) == 1)) {
        snprintf(addrs[0], 64, "%s", name);
        return 1;
    }
    static bool inited;
    if (!inited && ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS)
        inited = true;
    struct lookup l = {.addrs = addrs, .max = max, .base = event_base_new()};
    if (!l.base)
        return -RDD_FAILED;
    int rc = channel_open(&l, timeout_ms, err, errlen);
    if (rc) {
        lookup_close(&l);
        return rc;
    }
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    l.tick = evtimer_new(l.base, tick_cb, &l);
    tick_cb(-1, 0, &l);
    ares_getaddrinfo(l.ch, name, NULL, &hints, addr_cb, &l);
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    if (!l.done) {
        event_base_loopexit(l.base, &tv);
        event_base_dispatch(l.base);
    }
    if (!l.done)
        ares_cancel(l.ch);
    lookup_close(&l);
    if (l.count > 0)
        return l.count;
    if (!l.done || l.status == ARES_ETIMEOUT || l.status == ARES_ECANCELLED ||
        l.status == ARES_ECONNREFUSED) {
        snprintf(err, errlen, "%s: no answer from the name servers in time", name);
        return -RDD_UNREACHABLE;
    }
    snprintf(err, errlen, "%s: name not found (%s)", name, ares_strerror(l.status));
    return l.status == ARES_ENOTFOUND || l.status == ARES_ENODATA ? -RDD_NOT_FOUND : -RDD_FAILED;
}

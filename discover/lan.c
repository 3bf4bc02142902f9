/* Brokers on the LAN: RDB_SERVICE browsed and resolved with avahi-client, on the caller's
 * loop. The caller's callbacks run from an event of our own, never from inside avahi's, so
 * that it may free the browse from them. */
#include "discover.h"

#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-common/address.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/strlst.h>
#include <errno.h>
#include <event2/event.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

/* A service resolved for one address family: IPv4 first, IPv6 for a host without it. */
struct resolving {
    struct rdd_lan *l;
    AvahiServiceResolver *r;
    AvahiProtocol aproto;
    char name[64];
    LIST_ENTRY(resolving) link;
};

/* A broker found, for the caller on the next turn. */
struct found {
    struct rdd_lan_broker b;
    TAILQ_ENTRY(found) link;
};

/* A broker already told, by instance name, and whether over IPv4. */
struct told {
    char instance[64];
    bool ipv4;
    LIST_ENTRY(told) link;
};

struct rdd_lan {
    struct rdb_avahi_poll *poll;
    AvahiClient *client;
    AvahiServiceBrowser *browser;
    void (*found)(const struct rdd_lan_broker *b, void *arg);
    void (*done)(const char *error, void *arg);
    void *arg;
    struct event *deliver;
    LIST_HEAD(, resolving) resolving;
    TAILQ_HEAD(, found) queue;
    LIST_HEAD(, told) told;
    bool all_for_now;
    bool done_due, done_said;
    char error[128];
    bool delivering; /* in the caller's callbacks ... */
    bool freeing;    /* ... which freed it: freed when they return */
};

static void later(struct rdd_lan *l)
{
    event_active(l->deliver, EV_TIMEOUT, 0);
}

static void fail(struct rdd_lan *l, const char *fmt, const char *why)
{
    if (!l->error[0])
        snprintf(l->error, sizeof(l->error), fmt, why);
    l->done_due = true;
    later(l);
}

static void check_done(struct rdd_lan *l)
{
    if (l->all_for_now && LIST_EMPTY(&l->resolving)) {
        l->done_due = true;
        later(l);
    }
}

/* ---- Results ---- */

/* The value of TXT key `key` ("v", "host") into buf: false when it is not there or not
 * printable. */
static bool txt_get(AvahiStringList *txt, const char *key, char *buf, size_t len)
{
    AvahiStringList *item = avahi_string_list_find(txt, key);
    char *k = NULL, *v = NULL;
    if (!item || avahi_string_list_get_pair(item, &k, &v, NULL) != 0)
        return false;
    bool ok = v && rdb_printable(v);
    if (ok)
        snprintf(buf, len, "%s", v);
    avahi_free(k);
    avahi_free(v);
    return ok;
}

/* Whether this result is news: a broker not told yet, or an IPv4 address for one told with
 * IPv6 only. */
static bool news(struct rdd_lan *l, const char *instance, bool ipv4)
{
    struct told *t;
    LIST_FOREACH(t, &l->told, link)
    if (strcmp(t->instance, instance) == 0) {
        bool better = ipv4 && !t->ipv4;
        t->ipv4 |= ipv4;
        return better;
    }
    if (!(t = calloc(1, sizeof(*t))))
        return false;
    snprintf(t->instance, sizeof(t->instance), "%s", instance);
    t->ipv4 = ipv4;
    LIST_INSERT_HEAD(&l->told, t, link);
    return true;
}

/* The address as it can be dialed: a link-local IPv6 address with its interface
 * (fe80::1%eth0), which avahi_address_snprint leaves out. */
static void address_text(char *buf, size_t len, const AvahiAddress *a, AvahiIfIndex iface)
{
    avahi_address_snprint(buf, len, a);
    const uint8_t *b = a->data.ipv6.address;
    char name[IF_NAMESIZE];
    if (a->proto == AVAHI_PROTO_INET6 && b[0] == 0xfe && (b[1] & 0xc0) == 0x80 && iface > 0 &&
        if_indextoname((unsigned)iface, name)) {
        size_t n = strlen(buf);
        snprintf(buf + n, len - n, "%%%s", name);
    }
}

/* Stops resolving `name` for IPv6: it has an IPv4 address. */
static void drop_ipv6(struct rdd_lan *l, const char *name)
{
    struct resolving *res, *next;
    for (res = LIST_FIRST(&l->resolving); res; res = next) {
        next = LIST_NEXT(res, link);
        if (res->aproto == AVAHI_PROTO_INET6 && strcmp(res->name, name) == 0) {
            LIST_REMOVE(res, link);
            avahi_service_resolver_free(res->r);
            free(res);
        }
    }
}

static void on_resolved(struct rdd_lan *l, AvahiIfIndex iface, const char *name, const char *host,
                        const AvahiAddress *a, uint16_t port, AvahiStringList *txt)
{
    bool ipv4 = a->proto == AVAHI_PROTO_INET;
    if (!news(l, name, ipv4))
        return;
    struct found *f = calloc(1, sizeof(*f));
    if (!f)
        return;
    struct rdd_lan_broker *b = &f->b;
    snprintf(b->instance, sizeof(b->instance), "%s", name);
    if (!txt_get(txt, "host", b->host, sizeof(b->host)))
        snprintf(b->host, sizeof(b->host), "%s", host);
    address_text(b->addr, sizeof(b->addr), a, iface);
    b->port = port;
    char v[16];
    b->version = txt_get(txt, "v", v, sizeof(v)) ? atoi(v) : 0;
    TAILQ_INSERT_TAIL(&l->queue, f, link);
    later(l);
}

static void resolve_cb(AvahiServiceResolver *r, AvahiIfIndex iface, AvahiProtocol proto,
                       AvahiResolverEvent event, const char *name, const char *type,
                       const char *domain, const char *host, const AvahiAddress *a, uint16_t port,
                       AvahiStringList *txt, AvahiLookupResultFlags flags, void *arg)
{
    (void)proto, (void)type, (void)domain, (void)flags;
    struct resolving *res = arg;
    struct rdd_lan *l = res->l;
    LIST_REMOVE(res, link);
    free(res);
    avahi_service_resolver_free(r); /* safe from its callback */
    if (event == AVAHI_RESOLVER_FOUND && a) {
        on_resolved(l, iface, name, host, a, port, txt);
        if (a->proto == AVAHI_PROTO_INET)
            drop_ipv6(l, name);
    }
    check_done(l);
}

static void resolve(struct rdd_lan *l, AvahiIfIndex iface, AvahiProtocol proto, const char *name,
                    const char *type, const char *domain, AvahiProtocol aproto)
{
    struct resolving *res = calloc(1, sizeof(*res));
    if (!res)
        return;
    res->l = l;
    res->aproto = aproto;
    snprintf(res->name, sizeof(res->name), "%s", name);
    res->r = avahi_service_resolver_new(l->client, iface, proto, name, type, domain, aproto, 0,
                                        resolve_cb, res);
    if (!res->r) {
        free(res);
        return;
    }
    LIST_INSERT_HEAD(&l->resolving, res, link);
}

/* An IPv4 address is the one more likely to be reachable as it is; IPv6 is asked for at the
 * same time, for a host that has no IPv4 address (avahi's resolver waits 5 s for one). */
static void browse_new(struct rdd_lan *l, AvahiIfIndex iface, AvahiProtocol proto, const char *name,
                       const char *type, const char *domain)
{
    resolve(l, iface, proto, name, type, domain, AVAHI_PROTO_INET);
    resolve(l, iface, proto, name, type, domain, AVAHI_PROTO_INET6);
}

static void browse_cb(AvahiServiceBrowser *sb, AvahiIfIndex iface, AvahiProtocol proto,
                      AvahiBrowserEvent event, const char *name, const char *type,
                      const char *domain, AvahiLookupResultFlags flags, void *arg)
{
    (void)sb, (void)flags;
    struct rdd_lan *l = arg;
    switch (event) {
    case AVAHI_BROWSER_NEW:
        browse_new(l, iface, proto, name, type, domain);
        break;
    case AVAHI_BROWSER_ALL_FOR_NOW:
        l->all_for_now = true;
        check_done(l);
        break;
    case AVAHI_BROWSER_FAILURE:
        fail(l, "browsing the LAN: %s", avahi_strerror(avahi_client_errno(l->client)));
        break;
    default: /* REMOVE, CACHE_EXHAUSTED */
        break;
    }
}

static void client_cb(AvahiClient *c, AvahiClientState state, void *arg)
{
    struct rdd_lan *l = arg;
    l->client = c; /* first called inside avahi_client_new */
    if (state == AVAHI_CLIENT_FAILURE)
        fail(l, "no avahi-daemon (%s): brokers on the LAN are not browsed",
             avahi_strerror(avahi_client_errno(c)));
}

/* ---- Delivery ---- */

static void lan_destroy(struct rdd_lan *l);

/* Tells the caller what came, then that it is done, from this event only; the caller may free
 * l from either callback. */
static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct rdd_lan *l = arg;
    struct found *f;
    l->delivering = true;
    while (!l->freeing && (f = TAILQ_FIRST(&l->queue))) {
        TAILQ_REMOVE(&l->queue, f, link);
        if (l->found)
            l->found(&f->b, l->arg);
        free(f);
    }
    if (!l->freeing && l->done_due && !l->done_said) {
        l->done_said = true;
        if (l->done)
            l->done(l->error[0] ? l->error : NULL, l->arg);
    }
    l->delivering = false;
    if (l->freeing)
        lan_destroy(l);
}

/* ---- Life cycle ---- */

int rdd_lan_open(struct rdd_lan **out, struct event_base *base,
                 void (*found)(const struct rdd_lan_broker *b, void *arg),
                 void (*done)(const char *error, void *arg), void *arg)
{
    *out = NULL;
    struct rdd_lan *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    *l = (struct rdd_lan){.found = found, .done = done, .arg = arg};
    LIST_INIT(&l->resolving);
    TAILQ_INIT(&l->queue);
    LIST_INIT(&l->told);
    l->poll = rdb_avahi_poll_new(base);
    l->deliver = event_new(base, -1, 0, deliver_cb, l);
    if (!l->poll || !l->deliver) {
        rdd_lan_free(l);
        return -ENOMEM;
    }
    int err = 0;
    l->client = avahi_client_new(rdb_avahi_poll_api(l->poll), 0, client_cb, l, &err);
    if (!l->client)
        fail(l, "no avahi-daemon (%s): brokers on the LAN are not browsed", avahi_strerror(err));
    else if (!(l->browser =
                   avahi_service_browser_new(l->client, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC,
                                             RDB_SERVICE, NULL, 0, browse_cb, l)))
        fail(l, "browsing the LAN: %s", avahi_strerror(avahi_client_errno(l->client)));
    *out = l;
    return 0;
}

void rdd_lan_free(struct rdd_lan *l)
{
    if (l && l->delivering)
        l->freeing = true; /* from a callback: when it returns */
    else if (l)
        lan_destroy(l);
}

static void lan_destroy(struct rdd_lan *l)
{
    while (!LIST_EMPTY(&l->resolving)) {
        struct resolving *res = LIST_FIRST(&l->resolving);
        LIST_REMOVE(res, link);
        avahi_service_resolver_free(res->r);
        free(res);
    }
    if (l->browser)
        avahi_service_browser_free(l->browser);
    if (l->client)
        avahi_client_free(l->client);
    rdb_avahi_poll_free(l->poll);
    for (struct found *f; (f = TAILQ_FIRST(&l->queue));) {
        TAILQ_REMOVE(&l->queue, f, link);
        free(f);
    }
    for (struct told *t; (t = LIST_FIRST(&l->told));) {
        LIST_REMOVE(t, link);
        free(t);
    }
    if (l->deliver)
        event_free(l->deliver);
    free(l);
}

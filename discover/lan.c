/* Brokers on the LAN: RDB_SERVICE browsed and resolved with avahi-client, on the caller's
 * loop. The caller's callbacks run from an event of our own, never from inside avahi's, so
 * that it may free the browse from them. */
#include "discover.h"

#include "avahiload.h"

#include <errno.h>
#include <event2/event.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

/* A service (name, type, domain) that the browser reported, on however many interfaces and
 * protocols: resolved once, for an IPv4 and (for a host without one) an IPv6 address at the
 * same time. */
struct svcname;

struct slot {
    struct svcname *n;
    AvahiServiceResolver *r; /* NULL: ended */
};

struct svcname {
    struct rdd_lan *l;
    char name[AVAHI_LABEL_MAX], type[AVAHI_DOMAIN_NAME_MAX], domain[AVAHI_DOMAIN_NAME_MAX];
    int seen;          /* NEW events not removed since */
    struct slot ip[2]; /* [0] IPv4, [1] IPv6 */
    bool told, ipv4;   /* reported, with an IPv4 address */
    char why[96];      /* why a resolver failed */
    LIST_ENTRY(svcname) link;
};

/* A broker found, or one that could not be resolved (why), for the caller on the next turn. */
struct found {
    struct rdd_lan_broker b;
    bool failed;
    char why[96];
    TAILQ_ENTRY(found) link;
};

struct rdd_lan {
    struct rdb_avahi_poll *poll;
    AvahiClient *client;
    AvahiServiceBrowser *browser;
    void (*found)(const struct rdd_lan_broker *b, void *arg);
    void (*failed)(const char *instance, const char *why, void *arg);
    void (*done)(const char *error, void *arg);
    void *arg;
    struct event *deliver;
    LIST_HEAD(, svcname) names;
    int resolving; /* resolvers running */
    TAILQ_HEAD(, found) queue;
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
    if (l->all_for_now && l->resolving == 0) {
        l->done_due = true;
        later(l);
    }
}

/* ---- Results ---- */

/* The value of TXT key `key` ("v", "host") into buf: false when it is not there or not
 * printable. */
static bool txt_get(AvahiStringList *txt, const char *key, char *buf, size_t len)
{
    AvahiStringList *item = AV(avahi_string_list_find)(txt, key);
    char *k = NULL, *v = NULL;
    if (!item || AV(avahi_string_list_get_pair)(item, &k, &v, NULL) != 0)
        return false;
    bool ok = v && rdb_printable(v);
    if (ok)
        snprintf(buf, len, "%s", v);
    AV(avahi_free)(k);
    AV(avahi_free)(v);
    return ok;
}

/* The address as it can be dialed: a link-local IPv6 address with its interface
 * (fe80::1%eth0), which avahi_address_snprint leaves out. */
static void address_text(char *buf, size_t len, const AvahiAddress *a, AvahiIfIndex iface)
{
    AV(avahi_address_snprint)(buf, len, a);
    const uint8_t *b = a->data.ipv6.address;
    char name[IF_NAMESIZE];
    if (a->proto == AVAHI_PROTO_INET6 && b[0] == 0xfe && (b[1] & 0xc0) == 0x80 && iface > 0 &&
        if_indextoname((unsigned)iface, name)) {
        size_t n = strlen(buf);
        snprintf(buf + n, len - n, "%%%s", name);
    }
}

static struct found *queued(struct rdd_lan *l, const char *instance)
{
    struct found *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    snprintf(f->b.instance, sizeof(f->b.instance), "%s", instance);
    TAILQ_INSERT_TAIL(&l->queue, f, link);
    later(l);
    return f;
}

/* Tells a broker not told yet, or an IPv4 address for one told with IPv6 only. */
static void on_resolved(struct svcname *n, AvahiIfIndex iface, const char *host,
                        const AvahiAddress *a, uint16_t port, AvahiStringList *txt)
{
    bool ipv4 = a->proto == AVAHI_PROTO_INET;
    if (n->told && (n->ipv4 || !ipv4))
        return;
    n->told = true;
    n->ipv4 |= ipv4;
    struct found *f = queued(n->l, n->name);
    if (!f)
        return;
    struct rdd_lan_broker *b = &f->b;
    if (!txt_get(txt, "host", b->host, sizeof(b->host)))
        snprintf(b->host, sizeof(b->host), "%s", host);
    address_text(b->addr, sizeof(b->addr), a, iface);
    b->port = port;
    char v[16];
    b->version = txt_get(txt, "v", v, sizeof(v)) ? atoi(v) : 0;
}

static void slot_stop(struct slot *s)
{
    if (!s->r)
        return;
    AV(avahi_service_resolver_free)(s->r);
    s->r = NULL;
    s->n->l->resolving--;
}

/* Every resolver of n ended: a name that none resolved is told as a failure. */
static void name_check(struct svcname *n)
{
    if (n->ip[0].r || n->ip[1].r || n->told)
        return;
    n->told = true; /* said once */
    struct found *f = queued(n->l, n->name);
    if (f) {
        f->failed = true;
        snprintf(f->why, sizeof(f->why), "%s", n->why[0] ? n->why : "no address");
    }
}

static void resolve_cb(AvahiServiceResolver *r, AvahiIfIndex iface, AvahiProtocol proto,
                       AvahiResolverEvent event, const char *name, const char *type,
                       const char *domain, const char *host, const AvahiAddress *a, uint16_t port,
                       AvahiStringList *txt, AvahiLookupResultFlags flags, void *arg)
{
    (void)r, (void)proto, (void)name, (void)type, (void)domain, (void)flags;
    struct slot *s = arg;
    struct svcname *n = s->n;
    struct rdd_lan *l = n->l;
    if (event == AVAHI_RESOLVER_FOUND && a) {
        on_resolved(n, iface, host, a, port, txt);
        if (a->proto == AVAHI_PROTO_INET)
            slot_stop(&n->ip[1]); /* no IPv6 address wanted now */
    } else {
        snprintf(n->why, sizeof(n->why), "%s",
                 AV(avahi_strerror)(AV(avahi_client_errno)(l->client)));
    }
    slot_stop(s); /* safe from its callback */
    name_check(n);
    check_done(l);
}

static void slot_start(struct svcname *n, struct slot *s, AvahiIfIndex iface, AvahiProtocol proto,
                       AvahiProtocol aproto)
{
    struct rdd_lan *l = n->l;
    s->n = n;
    s->r = AV(avahi_service_resolver_new)(l->client, iface, proto, n->name, n->type, n->domain,
                                          aproto, 0, resolve_cb, s);
    if (s->r)
        l->resolving++;
    else
        snprintf(n->why, sizeof(n->why), "%s",
                 AV(avahi_strerror)(AV(avahi_client_errno)(l->client)));
}

static struct svcname *name_find(struct rdd_lan *l, const char *name, const char *type,
                                 const char *domain)
{
    struct svcname *n;
    LIST_FOREACH(n, &l->names, link)
    if (strcmp(n->name, name) == 0 && strcmp(n->type, type) == 0 &&
        AV(avahi_domain_equal)(n->domain, domain))
        return n;
    return NULL;
}

static void name_free(struct svcname *n)
{
    slot_stop(&n->ip[0]);
    slot_stop(&n->ip[1]);
    LIST_REMOVE(n, link);
    free(n);
}

static void browse_new(struct rdd_lan *l, AvahiIfIndex iface, AvahiProtocol proto, const char *name,
                       const char *type, const char *domain)
{
    struct svcname *n = name_find(l, name, type, domain);
    if (n) {
        n->seen++; /* on another interface or protocol: resolving or resolved already */
        return;
    }
    if (!(n = calloc(1, sizeof(*n))))
        return;
    n->l = l;
    n->seen = 1;
    snprintf(n->name, sizeof(n->name), "%s", name);
    snprintf(n->type, sizeof(n->type), "%s", type);
    snprintf(n->domain, sizeof(n->domain), "%s", domain);
    LIST_INSERT_HEAD(&l->names, n, link);
    slot_start(n, &n->ip[0], iface, proto, AVAHI_PROTO_INET);
    slot_start(n, &n->ip[1], iface, proto, AVAHI_PROTO_INET6);
    name_check(n);
}

/* Gone from every interface and protocol: forgotten, so that it is resolved again if it
 * comes back. */
static void browse_remove(struct rdd_lan *l, const char *name, const char *type, const char *domain)
{
    struct svcname *n = name_find(l, name, type, domain);
    if (n && --n->seen <= 0) {
        name_free(n);
        check_done(l);
    }
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
    case AVAHI_BROWSER_REMOVE:
        browse_remove(l, name, type, domain);
        break;
    case AVAHI_BROWSER_ALL_FOR_NOW:
        l->all_for_now = true;
        check_done(l);
        break;
    case AVAHI_BROWSER_FAILURE:
        fail(l, "browsing the LAN: %s", AV(avahi_strerror)(AV(avahi_client_errno)(l->client)));
        break;
    default: /* CACHE_EXHAUSTED */
        break;
    }
}

static void client_cb(AvahiClient *c, AvahiClientState state, void *arg)
{
    struct rdd_lan *l = arg;
    l->client = c; /* first called inside avahi_client_new */
    if (state == AVAHI_CLIENT_FAILURE)
        fail(l, "no avahi-daemon (%s): brokers on the LAN are not browsed",
             AV(avahi_strerror)(AV(avahi_client_errno)(c)));
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
        if (f->failed && l->failed)
            l->failed(f->b.instance, f->why, l->arg);
        else if (!f->failed && l->found)
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
                 void (*failed)(const char *instance, const char *why, void *arg),
                 void (*done)(const char *error, void *arg), void *arg)
{
    *out = NULL;
    struct rdd_lan *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    *l = (struct rdd_lan){.found = found, .failed = failed, .done = done, .arg = arg};
    LIST_INIT(&l->names);
    TAILQ_INIT(&l->queue);
    char why[320];
    if (rdd_avahi_load(why, sizeof(why)) != 0) {
        free(l);
        return -ENOSYS; /* no library: the caller says the LAN is not browsed */
    }
    l->poll = rdb_avahi_poll_new(base);
    l->deliver = event_new(base, -1, 0, deliver_cb, l);
    if (!l->poll || !l->deliver) {
        rdd_lan_free(l);
        return -ENOMEM;
    }
    int err = 0;
    l->client = AV(avahi_client_new)(rdb_avahi_poll_api(l->poll), 0, client_cb, l, &err);
    if (!l->client)
        fail(l, "no avahi-daemon (%s): brokers on the LAN are not browsed",
             AV(avahi_strerror)(err));
    else if (!(l->browser =
                   AV(avahi_service_browser_new)(l->client, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC,
                                                 RDB_SERVICE, NULL, 0, browse_cb, l)))
        fail(l, "browsing the LAN: %s", AV(avahi_strerror)(AV(avahi_client_errno)(l->client)));
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
    while (!LIST_EMPTY(&l->names))
        name_free(LIST_FIRST(&l->names));
    if (l->browser)
        AV(avahi_service_browser_free)(l->browser);
    if (l->client)
        AV(avahi_client_free)(l->client);
    rdb_avahi_poll_free(l->poll);
    for (struct found *f; (f = TAILQ_FIRST(&l->queue));) {
        TAILQ_REMOVE(&l->queue, f, link);
        free(f);
    }
    if (l->deliver)
        event_free(l->deliver);
    free(l);
}

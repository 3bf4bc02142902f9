/* An AvahiPoll on a libevent loop: avahi-client's watches and timeouts as libevent events, so
 * that DNS-SD runs on the same loop as everything else (see avahi-common/watch.h). */
#include "broker.h"

#include <avahi-common/watch.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <sys/time.h>

struct AvahiWatch {
    struct rdb_avahi_poll *p;
    struct event ev;
    AvahiWatchEvent revents; /* what the current callback was called for */
    AvahiWatchCallback cb;
    void *arg;
    LIST_ENTRY(AvahiWatch) link;
};

struct AvahiTimeout {
    struct rdb_avahi_poll *p;
    struct event ev;
    AvahiTimeoutCallback cb;
    void *arg;
    LIST_ENTRY(AvahiTimeout) link;
};

struct rdb_avahi_poll {
    AvahiPoll api; /* api.userdata points back here */
    struct event_base *base;
    AvahiWatch *in_cb; /* the watch whose callback runs now */
    LIST_HEAD(, AvahiWatch) watches;
    LIST_HEAD(, AvahiTimeout) timeouts;
};

/* ---- Watches ---- */

static short to_libevent(AvahiWatchEvent e)
{
    /* errors and hang-ups are reported by the kernel with either, as poll(2) does */
    return (short)((e & AVAHI_WATCH_IN ? EV_READ : 0) | (e & AVAHI_WATCH_OUT ? EV_WRITE : 0));
}

static AvahiWatchEvent to_avahi(short what)
{
    return (AvahiWatchEvent)((what & EV_READ ? AVAHI_WATCH_IN : 0) |
                             (what & EV_WRITE ? AVAHI_WATCH_OUT : 0));
}

static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
    AvahiWatch *w = arg;
    struct rdb_avahi_poll *p = w->p;
    w->revents = to_avahi(what);
    p->in_cb = w;
    w->cb(w, fd, w->revents, w->arg);
    p->in_cb = NULL; /* w may be gone now: never touched again */
}

static void watch_update(AvahiWatch *w, AvahiWatchEvent events)
{
    short what = to_libevent(events);
    event_del(&w->ev);
    event_assign(&w->ev, w->p->base, event_get_fd(&w->ev), what | EV_PERSIST, watch_cb, w);
    if (what)
        event_add(&w->ev, NULL);
}

static AvahiWatch *watch_new(const AvahiPoll *api, int fd, AvahiWatchEvent events,
                             AvahiWatchCallback cb, void *arg)
{
    struct rdb_avahi_poll *p = api->userdata;
    AvahiWatch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    *w = (AvahiWatch){.p = p, .cb = cb, .arg = arg};
    event_assign(&w->ev, p->base, fd, 0, watch_cb, w);
    LIST_INSERT_HEAD(&p->watches, w, link);
    watch_update(w, events);
    return w;
}

static AvahiWatchEvent watch_get_events(AvahiWatch *w)
{
    return w->p->in_cb == w ? w->revents : 0;
}

static void watch_free(AvahiWatch *w)
{
    if (w->p->in_cb == w)
        w->p->in_cb = NULL;
    event_del(&w->ev);
    LIST_REMOVE(w, link);
    free(w);
}

/* ---- Timeouts ---- */

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    AvahiTimeout *t = arg;
    t->cb(t, t->arg); /* t may be gone now */
}

/* An absolute time (NULL: disabled), as avahi gives it, armed relative to now; a time already
 * past fires at once. */
static void timeout_update(AvahiTimeout *t, const struct timeval *tv)
{
    event_del(&t->ev);
    if (!tv)
        return;
    struct timeval now, rel = {0, 0};
    gettimeofday(&now, NULL);
    if (timercmp(tv, &now, >))
        timersub(tv, &now, &rel);
    event_add(&t->ev, &rel);
}

static AvahiTimeout *timeout_new(const AvahiPoll *api, const struct timeval *tv,
                                 AvahiTimeoutCallback cb, void *arg)
{
    struct rdb_avahi_poll *p = api->userdata;
    AvahiTimeout *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    *t = (AvahiTimeout){.p = p, .cb = cb, .arg = arg};
    event_assign(&t->ev, p->base, -1, 0, timeout_cb, t);
    LIST_INSERT_HEAD(&p->timeouts, t, link);
    timeout_update(t, tv);
    return t;
}

static void timeout_free(AvahiTimeout *t)
{
    event_del(&t->ev);
    LIST_REMOVE(t, link);
    free(t);
}

/* ---- The poll ---- */

struct rdb_avahi_poll *rdb_avahi_poll_new(struct event_base *base)
{
    struct rdb_avahi_poll *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->base = base;
    LIST_INIT(&p->watches);
    LIST_INIT(&p->timeouts);
    p->api = (AvahiPoll){.userdata = p,
                         .watch_new = watch_new,
                         .watch_update = watch_update,
                         .watch_get_events = watch_get_events,
                         .watch_free = watch_free,
                         .timeout_new = timeout_new,
                         .timeout_update = timeout_update,
                         .timeout_free = timeout_free};
    return p;
}

const AvahiPoll *rdb_avahi_poll_api(struct rdb_avahi_poll *p)
{
    return &p->api;
}

void rdb_avahi_poll_free(struct rdb_avahi_poll *p)
{
    if (!p)
        return;
    while (!LIST_EMPTY(&p->watches))
        watch_free(LIST_FIRST(&p->watches));
    while (!LIST_EMPTY(&p->timeouts))
        timeout_free(LIST_FIRST(&p->timeouts));
    free(p);
}

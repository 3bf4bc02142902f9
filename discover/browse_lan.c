/* The LAN as a source of the browse: brokers that avahi-daemon finds as DNS-SD services. */
#include "browse_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An IPv6 answer waits for an IPv4 one of the same instance until the browser has all for
 * now: an IPv4 address is the one more likely to be reachable as it is. */
#define WAITING_MAX 32

struct lan_glue {
    struct rdd_lan *lan;
    bool open; /* counted in b->sources_open */
    struct rdd_lan_broker waiting[WAITING_MAX];
    int nwaiting;
};

static void lan_add(struct rdd_browse *b, const struct rdd_lan_broker *lb)
{
    char fail[RDT_ERR_MAX] = "";
    if (lb->version && lb->version != RDB_VERSION)
        snprintf(fail, sizeof(fail),
                 "%s: the broker speaks version %d of the protocol, this rdq version %d", lb->host,
                 lb->version, RDB_VERSION);
    rdd_browse_add(b, lb->host, lb->addr, lb->port, RDD_SRC_LAN, fail[0] ? fail : NULL);
}

static void lan_close(struct rdd_browse *b)
{
    struct lan_glue *g = b->lan_glue;
    if (!g || !g->open)
        return;
    for (int i = 0; i < g->nwaiting; i++)
        lan_add(b, &g->waiting[i]);
    g->nwaiting = 0;
    g->open = false;
    b->sources_open--;
    rdd_browse_check_done(b);
}

static void found_cb(const struct rdd_lan_broker *lb, void *arg)
{
    struct rdd_browse *b = arg;
    struct lan_glue *g = b->lan_glue;
    if (b->finished)
        return;
    bool v6 = strchr(lb->addr, ':') != NULL;
    for (int i = 0; i < g->nwaiting; i++)
        if (strcmp(g->waiting[i].instance, lb->instance) == 0) {
            if (v6)
                return;
            g->waiting[i] = g->waiting[--g->nwaiting]; /* the IPv4 answer came */
            break;
        }
    if (v6 && g->open && g->nwaiting < WAITING_MAX)
        g->waiting[g->nwaiting++] = *lb;
    else
        lan_add(b, lb);
}

static void failed_cb(const char *instance, const char *why, void *arg)
{
    struct rdd_browse *b = arg;
    char msg[RDT_ERR_MAX];
    if (b->finished || !b->lan_glue->open)
        return;
    snprintf(msg, sizeof(msg), "broker %s could not be resolved (%s)", instance, why);
    rdd_browse_source_failed(b, "the LAN", msg);
}

static void done_cb(const char *error, void *arg)
{
    struct rdd_browse *b = arg;
    if (error)
        rdd_browse_source_failed(b, "the LAN", error);
    lan_close(b);
}

void rdd_browse_lan_start(struct rdd_browse *b)
{
    struct lan_glue *g = calloc(1, sizeof(*g));
    if (!g) {
        rdd_browse_source_failed(b, "the LAN", "out of memory");
        return;
    }
    b->lan_glue = g;
    g->open = true;
    b->sources_open++;
    int rc = rdd_lan_open(&g->lan, b->base, found_cb, failed_cb, done_cb, b);
    if (rc) {
        rdd_browse_source_failed(b, "the LAN",
                                 rc == -ENOSYS ? "not browsed: libavahi-client (libavahi-client3) "
                                                 "cannot be loaded"
                                               : "cannot browse (out of memory)");
        lan_close(b);
    }
}

/* The deadline: what the LAN gave so far is all. */
void rdd_browse_lan_expire(struct rdd_browse *b)
{
    lan_close(b);
}

void rdd_browse_lan_stop(struct rdd_browse *b)
{
    struct lan_glue *g = b->lan_glue;
    if (!g)
        return;
    rdd_lan_free(g->lan);
    free(g);
    b->lan_glue = NULL;
}

/* Live clients counted by peer, for a server's caps: one in all and one per peer, so that no
 * one host or user can take every place; and one per IPv6 /64, so that a host that holds a
 * whole /64 cannot take them all with an address for each few. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rdt_peer_count {
    char peer[64]; /* a peer, or a network ("2001:db8::/64") */
    unsigned n;
};

void rdt_peers_init(struct rdt_peers *p, unsigned max_total, unsigned max_peer)
{
    *p = (struct rdt_peers){.max_total = max_total, .max_peer = max_peer};
}

void rdt_peers_free(struct rdt_peers *p)
{
    free(p->v);
    p->v = NULL;
    p->n = p->cap = 0;
}

/* A network's places: half of all, and never fewer than one peer's. */
static unsigned max_net(const struct rdt_peers *p)
{
    return p->max_total / 2 > p->max_peer ? p->max_total / 2 : p->max_peer;
}

static struct rdt_peer_count *find(const struct rdt_peers *p, const char *key)
{
    for (size_t i = 0; i < p->n; i++)
        if (strncmp(p->v[i].peer, key, sizeof(p->v[i].peer) - 1) == 0)
            return &p->v[i];
    return NULL;
}

static unsigned count(const struct rdt_peers *p, const char *key)
{
    const struct rdt_peer_count *c = find(p, key);
    return c ? c->n : 0;
}

/* One place more for `key`; false when out of memory. */
static bool add(struct rdt_peers *p, const char *key)
{
    struct rdt_peer_count *c = find(p, key);
    if (!c) {
        if (p->n == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 16;
            struct rdt_peer_count *v = realloc(p->v, cap * sizeof(*v));
            if (!v)
                return false;
            p->v = v;
            p->cap = cap;
        }
        c = &p->v[p->n++];
        *c = (struct rdt_peer_count){0};
        snprintf(c->peer, sizeof(c->peer), "%s", key);
    }
    c->n++;
    return true;
}

static void drop(struct rdt_peers *p, const char *key)
{
    struct rdt_peer_count *c = find(p, key);
    if (c && c->n && --c->n == 0)
        *c = p->v[--p->n]; /* the last takes its place */
}

const char *rdt_peers_take(struct rdt_peers *p, const char *peer, bool per_peer, char *why,
                           size_t len)
{
    if (p->total >= p->max_total) {
        snprintf(why, len, "busy: %u clients at once, the most this server takes", p->total);
        return why;
    }
    bool user = strncmp(peer, "uid ", 4) == 0;
    unsigned n = count(p, peer);
    if (per_peer && n >= p->max_peer) {
        snprintf(why, len, "busy: %u clients from %s%s, the most one %s may have", n,
                 user ? "" : "your address ", peer, user ? "user" : "host");
        return why;
    }
    char net[64];
    bool grouped = rdt_peer_net(peer, net, sizeof(net)); /* counted always, capped per_peer */
    unsigned in_net = grouped ? count(p, net) : 0;
    if (per_peer && grouped && in_net >= max_net(p)) {
        snprintf(why, len, "busy: %u clients from your network %s, the most one network may have",
                 in_net, net);
        return why;
    }
    if (!add(p, peer) || (grouped && !add(p, net))) {
        if (count(p, peer) > n)
            drop(p, peer);
        snprintf(why, len, "out of memory");
        return why;
    }
    p->total++;
    return NULL;
}

void rdt_peers_give(struct rdt_peers *p, const char *peer)
{
    if (!count(p, peer))
        return;
    char net[64];
    p->total--;
    drop(p, peer);
    if (rdt_peer_net(peer, net, sizeof(net)))
        drop(p, net);
}

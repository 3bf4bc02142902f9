/* Live clients counted by peer, for a server's caps: one in all and one per peer, so that no
 * one host or user can take every place. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rdt_peer_count {
    char peer[64];
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

static struct rdt_peer_count *find(const struct rdt_peers *p, const char *peer)
{
    for (size_t i = 0; i < p->n; i++)
        if (strncmp(p->v[i].peer, peer, sizeof(p->v[i].peer) - 1) == 0)
            return &p->v[i];
    return NULL;
}

const char *rdt_peers_take(struct rdt_peers *p, const char *peer, bool per_peer, char *why,
                           size_t len)
{
    if (p->total >= p->max_total) {
        snprintf(why, len, "busy: %u clients at once, the most this server takes", p->total);
        return why;
    }
    struct rdt_peer_count *c = find(p, peer);
    if (c && per_peer && c->n >= p->max_peer) {
        snprintf(why, len, "busy: %u clients from %s%s, the most one %s may have", c->n,
                 strncmp(peer, "uid ", 4) == 0 ? "" : "your address ", peer,
                 strncmp(peer, "uid ", 4) == 0 ? "user" : "host");
        return why;
    }
    if (!c) {
        if (p->n == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 16;
            struct rdt_peer_count *v = realloc(p->v, cap * sizeof(*v));
            if (!v) {
                snprintf(why, len, "out of memory");
                return why;
            }
            p->v = v;
            p->cap = cap;
        }
        c = &p->v[p->n++];
        *c = (struct rdt_peer_count){0};
        snprintf(c->peer, sizeof(c->peer), "%s", peer);
    }
    c->n++;
    p->total++;
    return NULL;
}

void rdt_peers_give(struct rdt_peers *p, const char *peer)
{
    struct rdt_peer_count *c = find(p, peer);
    if (!c || !c->n)
        return;
    p->total--;
    if (--c->n == 0)
        *c = p->v[--p->n]; /* the last takes its place */
}

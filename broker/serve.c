/* A discoverable server endpoint in one call: bind, serve, and stay registered. */
#include "broker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rdb_server_open(struct rdb_server **out, struct event_base *base, const char *tstring,
                    enum rdb_kind kind, const char *desc, const char *sock_path, rdt_server_cb cb,
                    void (*note)(const char *msg, void *arg), void *arg, char *err, size_t errlen)
{
    *out = NULL;
    struct rdb_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    struct rdb_entry e = {.kind = kind};
    int rc = rdt_parse(tstring, RDT_SERVER, &s->ts, err, errlen);
    if (rc == 0)
        rc = rdt_server_open(&s->srv, base, &s->ts, cb, arg, err, errlen);
    if (rc == 0) {
        rdt_server_advert(s->srv, e.advert, sizeof(e.advert));
        e.hidden = s->ts.hidden;
        e.clicon = s->ts.clicon[0] != '\0';
        snprintf(e.desc, sizeof(e.desc), "%s", desc ? desc : "");
        rc = rdb_announce_open(&s->announce, base, sock_path, &e, note, arg);
    }
    if (rc) {
        rdb_server_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void rdb_server_free(struct rdb_server *s)
{
    if (!s)
        return;
    rdb_announce_free(s->announce);
    rdt_server_free(s->srv);
    explicit_bzero(s->ts.password, sizeof(s->ts.password));
    free(s);
}

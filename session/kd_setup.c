/* rdkdsrv's life: its links checked, its servers opened and registered as Remote Kernel
 * Debugger Servers, the loop run, everything freed. */
#include "kd_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int rds_kd_new(struct rds_kd **out, struct event_base *base, const struct rds_kd_opts *o, char *err,
               size_t errlen)
{
    *out = NULL;
    struct rds_kd *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    k->base = base;
    k->o = *o;
    LIST_INIT(&k->links);
    LIST_INIT(&k->clients);
    rdt_peers_init(&k->peers, KD_CLIENTS_MAX, KD_PEER_CLIENTS_MAX);
    struct rdt_tstring ts;
    int rc = 0;
    if (o->link)
        rc = kd_link_parse(o->link, &k->def_ts, k->def, sizeof(k->def), err, errlen);
    for (size_t i = 0; rc == 0 && i < o->nallow && i < RDS_KD_ALLOW_MAX; i++)
        rc = kd_link_parse(o->allow[i], &ts, k->allow[i], sizeof(k->allow[i]), err, errlen);
    if (rc) {
        free(k);
        return rc;
    }
    *out = k;
    return 0;
}

static void on_conn(struct rdt_server *srv, struct rdt_conn *conn, const char *peer,
                    const char *err, void *arg)
{
    (void)srv;
    struct kd_server *s = arg;
    struct rds_kd *k = s->k;
    char why[160], line[200];
    if (!conn) {
        fprintf(stderr, "rdkdsrv: %s\n", err);
        return;
    }
    if (!rdt_peers_take(&k->peers, peer, rdt_server_caps_peers(srv), why, sizeof(why))) {
        kd_client_new(k, srv, conn, peer, s->console);
        return;
    }
    int n = snprintf(line, sizeof(line), "ERR %s\n", why);
    rdt_conn_close_with(conn, line, (size_t)n);
    rdt_server_redial(srv);
    k->turned_away++;
    int64_t now = rdt_now_ms();
    if (now - k->turned_away_at >= 1000) { /* a flood is reported, not logged line by line */
        fprintf(stderr, "rdkdsrv: a client from %s turned away (%u since the last report): %s\n",
                peer, k->turned_away, why);
        k->turned_away = 0;
        k->turned_away_at = now;
    }
}

static void note(const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "rdkdsrv: %s\n", msg);
}

/* The console link: the default serial line, opened now and kept. */
static int open_console(struct rds_kd *k, char *err, size_t errlen)
{
    if (k->console)
        return 0;
    if (!k->def[0] || k->def_ts.proto != RDT_COM) {
        snprintf(err, errlen,
                 "-console needs a serial -link (com:port=DEV,baud=N) whose "
                 "console to show");
        return -EINVAL;
    }
    int rc = kd_link_open(&k->console, k, &k->def_ts, k->def, err, errlen);
    if (rc)
        return rc;
    k->console->kept = true;
    LIST_INSERT_HEAD(&k->links, k->console, entry);
    kd_link_rearm(k->console);
    return 0;
}

int rds_kd_listen(struct rds_kd *k, const char *tstring, bool console, char *err, size_t errlen)
{
    if (k->nservers >= KD_SERVERS_MAX) {
        snprintf(err, errlen, "at most %d servers", KD_SERVERS_MAX);
        return -ENOSPC;
    }
    int rc = console ? open_console(k, err, errlen) : 0;
    if (rc)
        return rc;
    char desc[RDB_DESC_MAX + 1];
    if (console)
        snprintf(desc, sizeof(desc), "console of %s", k->def);
    else
        snprintf(desc, sizeof(desc), "%s", k->o.desc ? k->o.desc : k->def[0] ? k->def : "rdkdsrv");
    struct kd_server *s = &k->servers[k->nservers];
    *s = (struct kd_server){.k = k, .console = console};
    rc = rdb_server_open(&s->rs, k->base, tstring, RDB_KD, desc, k->o.broker, on_conn, note, s, err,
                         errlen);
    if (rc == 0)
        k->nservers++;
    return rc;
}

void rds_kd_banner(struct rds_kd *k)
{
    char host[256] = "localhost", cs[RDT_STRING_MAX + 300];
    gethostname(host, sizeof(host));
    printf("Server started.  Client can connect with any of these command lines\n");
    for (int i = 0, n = 0; i < k->nservers; i++) {
        if (rdt_server_client_string(k->servers[i].rs->srv, host, cs, sizeof(cs)) < 0)
            continue;
        if (k->servers[i].console)
            printf("console of %s: rdq -premote %s\n", k->def, cs);
        else
            printf("%d: rdq -premote %s%s\n", n++, cs, k->def[0] ? "" : " -k LINK");
    }
    if (k->def[0])
        printf("Link: %s\n", k->def);
    fflush(stdout);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

int rds_kd_run(struct rds_kd *k)
{
    struct event *sigs[] = {evsignal_new(k->base, SIGINT, on_signal, k->base),
                            evsignal_new(k->base, SIGTERM, on_signal, k->base)};
    for (int i = 0; i < 2; i++)
        event_add(sigs[i], NULL);
    event_base_dispatch(k->base);
    for (int i = 0; i < 2; i++)
        event_free(sigs[i]);
    return 0;
}

void rds_kd_free(struct rds_kd *k)
{
    if (!k)
        return;
    k->ending = true;
    while (!LIST_EMPTY(&k->clients))
        kd_client_free(LIST_FIRST(&k->clients));
    while (!LIST_EMPTY(&k->links)) {
        struct kd_link *l = LIST_FIRST(&k->links);
        LIST_REMOVE(l, entry);
        kd_link_close(l);
    }
    for (int i = 0; i < k->nservers; i++)
        rdb_server_free(k->servers[i].rs);
    rdt_resolver_free(k->res);
    rdt_peers_free(&k->peers);
    free(k);
}

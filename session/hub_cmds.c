/* rddbg's own commands, typed by any participant and never passed to the debugger: .server T,
 * .servers, .endsrv N, .clients; and the servers they manage, each registered with the broker
 * as a Debugger Server for as long as it is open. */
#include "hub_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_note(const char *msg, void *arg)
{
    struct hub_server *s = arg;
    fprintf(stderr, "rddbg: server %d: %s\n", s->n, msg);
}

static void on_client(struct rdt_server *srv, struct rdt_conn *conn, const char *peer,
                      const char *err, void *arg)
{
    (void)srv;
    struct hub_server *s = arg;
    if (!conn) {
        fprintf(stderr, "rddbg: server %d: %s\n", s->n, err);
        return;
    }
    hub_client_new(s, conn, peer);
}

int hub_server_open(struct rds_hub *h, const char *tstring, char *err, size_t errlen)
{
    if (h->nservers >= HUB_SERVERS_MAX) {
        snprintf(err, errlen, "at most %d servers over a session's life", HUB_SERVERS_MAX);
        return -ENOSPC;
    }
    struct hub_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    *s = (struct hub_server){.h = h, .n = h->nservers};
    int rc = rdb_server_open(&s->rs, h->base, tstring, RDB_DEBUGGER, h->o.desc, h->o.broker,
                             on_client, on_note, s, err, errlen);
    if (rc) {
        free(s);
        return rc;
    }
    s->clicon = s->rs->ts.clicon[0] != '\0';
    rdt_server_advert(s->rs->srv, s->advert, sizeof(s->advert));
    h->servers[h->nservers++] = s;
    return s->n;
}

static void server_end(struct hub_server *s)
{
    rdb_server_free(s->rs);
    s->rs = NULL;
}

void hub_servers_close(struct rds_hub *h)
{
    for (int i = 0; i < h->nservers; i++)
        if (h->servers[i]->rs)
            server_end(h->servers[i]);
}

/* The banner of servers first to last, to one participant (the console: NULL). */
static void hub_started(struct rds_hub *h, struct hub_client *to, int first, int last)
{
    hub_notice(h, to, "Server started.  Client can connect with any of these command lines");
    for (int i = first; i <= last; i++) {
        char cs[RDT_STRING_MAX + 300];
        struct hub_server *s = h->servers[i];
        if (s->rs && rdt_server_client_string(s->rs->srv, h->host, cs, sizeof(cs)) >= 0)
            hub_notice(h, to, "%d) rdq -remote %s", i, cs);
    }
}

void rds_hub_banner(struct rds_hub *h)
{
    printf("Server started.  Client can connect with any of these command lines\n");
    for (int i = 0; i < h->nservers; i++) {
        char cs[RDT_STRING_MAX + 300];
        struct hub_server *s = h->servers[i];
        if (s->rs && rdt_server_client_string(s->rs->srv, h->host, cs, sizeof(cs)) >= 0)
            printf("%d) rdq -remote %s\n", i, cs);
    }
    fflush(stdout);
}

/* ---- The commands ---- */

/* Who typed a command, for everyone's notice: user@host, the console's as rddbg's. */
static const char *who_of(const struct rds_hub *h, const struct hub_client *c)
{
    static char who[300];
    snprintf(who, sizeof(who), "%s@%s", c ? c->user : h->user, c ? c->host : h->host);
    return who;
}

static void cmd_server(struct rds_hub *h, struct hub_client *from, const char *arg)
{
    char err[RDT_ERR_MAX], shown[RDT_ECHO_LEN];
    if (!*arg) {
        hub_notice(h, from, "usage: .server TRANSPORT (e.g. .server tcp:port=5005)");
        return;
    }
    int n = hub_server_open(h, arg, err, sizeof(err));
    if (n < 0) {
        hub_notice(h, from, ".server %s: %s", rdt_echo(arg, shown), err);
        return;
    }
    hub_started(h, from, n, n);
    hub_notice_all(h, "%s opened server %d: %s", who_of(h, from), n, h->servers[n]->advert);
}

static void cmd_servers(struct rds_hub *h, struct hub_client *from)
{
    if (!h->nservers)
        hub_notice(h, from, "no servers");
    for (int i = 0; i < h->nservers; i++) {
        const struct hub_server *s = h->servers[i];
        if (s->rs)
            hub_notice(h, from, "%d - %s - %s", i, rdb_kind_title(RDB_DEBUGGER), s->advert);
        else
            hub_notice(h, from, "%d - <Disabled>", i);
    }
}

static void cmd_endsrv(struct rds_hub *h, struct hub_client *from, const char *arg)
{
    char *end;
    long n = strtol(arg, &end, 10);
    if (!*arg || *arg < '0' || *arg > '9' || *end || n >= h->nservers) {
        hub_notice(h, from, ".endsrv needs the number of a server: see .servers");
        return;
    }
    struct hub_server *s = h->servers[n];
    if (!s->rs) {
        hub_notice(h, from, "server %ld is already disabled", n);
        return;
    }
    server_end(s);
    hub_notice(h, from,
               "server %ld disabled: it takes no more connections (clients joined "
               "through it stay)",
               n);
    hub_notice_all(h, "%s disabled server %ld", who_of(h, from), n);
}

static void client_row(struct rds_hub *h, struct hub_client *from, const struct hub_client *c)
{
    char when[16];
    struct tm tm;
    localtime_r(&c->last, &tm);
    strftime(when, sizeof(when), "%H:%M:%S", &tm);
    hub_notice(h, from, "%s\\%s, last active %s, server %d (%s) from %s%s", c->host, c->user, when,
               c->via->n, c->via->advert, c->peer, c->observe ? " (observer)" : "");
}

static void cmd_clients(struct rds_hub *h, struct hub_client *from)
{
    unsigned n = 0;
    const struct hub_client *c;
    TAILQ_FOREACH(c, &h->clients, link)
    {
        if (c->state == HUB_JOINED && !c->dead) {
            client_row(h, from, c);
            n++;
        }
    }
    if (!n)
        hub_notice(h, from, "no clients");
}

/* The command word of a line: its length when it is one of rddbg's, else 0. */
static size_t command_word(const char *line, const char **arg)
{
    static const char *const words[] = {".servers", ".server", ".endsrv", ".clients"};
    const char *p = line + strspn(line, " \t");
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t n = strlen(words[i]);
        if (strncmp(p, words[i], n) == 0 && (p[n] == '\0' || p[n] == ' ' || p[n] == '\t')) {
            *arg = p + n + strspn(p + n, " \t");
            return n;
        }
    }
    return 0;
}

bool hub_is_command(const char *line)
{
    const char *arg;
    return command_word(line, &arg) > 0;
}

void hub_command(struct rds_hub *h, struct hub_client *from, const char *line)
{
    const char *arg = NULL;
    char word[16] = "", a[RDS_LINE_MAX + 1];
    size_t n = command_word(line, &arg);
    snprintf(word, sizeof(word), "%.*s", (int)n, line + strspn(line, " \t"));
    snprintf(a, sizeof(a), "%s", arg ? arg : "");
    a[strcspn(a, " \t")] = '\0'; /* one argument; what follows it is left out */
    bool changes = strcmp(word, ".server") == 0 || strcmp(word, ".endsrv") == 0;
    if (changes && from && from->observe) { /* watching changes nothing */
        hub_notice(h, from, "you joined as an observer: %s is refused", word);
        return;
    }
    if (strcmp(word, ".server") == 0)
        cmd_server(h, from, a);
    else if (strcmp(word, ".servers") == 0)
        cmd_servers(h, from);
    else if (strcmp(word, ".endsrv") == 0)
        cmd_endsrv(h, from, a);
    else
        cmd_clients(h, from);
}

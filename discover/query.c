/* Asking a host's broker for its servers. */
#include "browse_int.h"

#include <event2/event.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

uint16_t rdd_broker_port(uint16_t port)
{
    const char *env = getenv("RDQ_BROKER_PORT");
    long p = env ? strtol(env, NULL, 10) : 0;
    if (port)
        return port;
    return p > 0 && p < 65536 ? (uint16_t)p : RDB_DEFAULT_PORT;
}

/* Whether s is printable and fits in `room` bytes: what a row may print to a terminal. */
static bool fits_printable(const char *s, size_t room)
{
    return strlen(s) < room && rdb_printable(s);
}

int rdd_take_rows(struct rdd_result *out, json_t *body)
{
    json_t *rows = json_object_get(body, "rows"), *row;
    size_t i;
    if (!json_is_array(rows))
        return -EPROTO;
    json_int_t omitted = json_integer_value(json_object_get(body, "omitted"));
    out->omitted = omitted > 0 ? (size_t)omitted : 0;
    out->rows = calloc(json_array_size(rows) + 1, sizeof(*out->rows));
    if (!out->rows)
        return -ENOMEM;
    json_array_foreach(rows, i, row)
    {
        const char *kind = NULL, *advert = NULL, *desc = "";
        struct rdd_row *r = &out->rows[out->nrows];
        if (json_unpack(row, "{s:s, s:s, s?s}", "kind", &kind, "advert", &advert, "desc", &desc) !=
                0 ||
            rdb_kind_parse(kind, &r->kind) != 0 || !fits_printable(advert, sizeof(r->advert)) ||
            !fits_printable(desc, sizeof(r->desc))) {
            out->omitted++; /* a kind this client does not know, or not a row to print */
            continue;
        }
        snprintf(r->advert, sizeof(r->advert), "%s", advert);
        snprintf(r->desc, sizeof(r->desc), "%s", desc);
        out->nrows++;
    }
    return 0;
}

static void one_done(void *arg)
{
    (void)arg;
}

void rdd_query(const char *host, uint16_t port, enum rdb_filter filter, int timeout_ms,
               struct rdd_result *out)
{
    rdd_query_via(host, port, NULL, filter, timeout_ms, out);
}

/* One host through the browse engine, on a loop of its own. */
void rdd_query_via(const char *host, uint16_t port, const struct rdt_tstring *via,
                   enum rdb_filter filter, int timeout_ms, struct rdd_result *out)
{
    memset(out, 0, sizeof(*out));
    const char *hosts[] = {host};
    struct rdd_browse_config cfg = {.filter = filter,
                                    .timeout_ms = timeout_ms,
                                    .port = port,
                                    .hosts = hosts,
                                    .nhosts = 1,
                                    .via = via};
    struct rdd_browse_ops ops = {.done = one_done};
    struct event_base *base = event_base_new();
    struct rdd_browse *b = NULL;
    out->status = RDD_FAILED;
    if (!base || rdd_browse_open(&b, base, &cfg, &ops, NULL, out->err, sizeof(out->err)) != 0) {
        if (!base)
            snprintf(out->err, sizeof(out->err), "cannot create an event loop");
        if (base)
            event_base_free(base);
        return;
    }
    while (!rdd_browse_finished(b) && event_base_loop(base, EVLOOP_ONCE) >= 0)
        ;
    struct job *j = TAILQ_FIRST(&b->jobs);
    if (j && j->h.done) {
        *out = j->h.res;
        j->h.res.rows = NULL; /* taken */
        j->h.res.nrows = 0;
    }
    rdd_browse_free(b);
    event_base_free(base);
}

void rdd_result_free(struct rdd_result *r)
{
    free(r->rows);
    r->rows = NULL;
    r->nrows = 0;
}

int rdd_client_string(const struct rdd_row *row, const char *host, char *buf, size_t len)
{
    char name[RDT_HOST_MAX + 1];
    rdd_host_clean(host, name, sizeof(name));
    if (strchr(name, ':'))
        return snprintf(buf, len, "%s,Server=[%s]", row->advert, name) < (int)len ? 0 : -ENOSPC;
    return snprintf(buf, len, "%s,Server=%s", row->advert, name) < (int)len ? 0 : -ENOSPC;
}

json_t *rdd_row_json(const struct rdd_row *row, const char *host)
{
    char cs[RDT_STRING_MAX + RDT_HOST_MAX + 16];
    if (rdd_client_string(row, host, cs, sizeof(cs)) != 0)
        return NULL;
    return json_pack("{s:s, s:s, s:s, s:s, s:b, s:s}", "kind", rdb_kind_name(row->kind), "type",
                     rdb_kind_title(row->kind), "advert", row->advert, "client", cs, "foreign",
                     rdt_string_foreign(row->advert), "desc", row->desc);
}

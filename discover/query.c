/* Asking a host's broker for its servers. */
#include "discover.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static enum rdd_status status_of(int rc, const char *why)
{
    switch (rc) {
    case -ECONNREFUSED:
    case -ENOENT:
        return RDD_NO_BROKER;
    case -ENXIO: /* no such host name */
        return RDD_NOT_FOUND;
    case -EHOSTUNREACH:
    case -ENETUNREACH:
    case -EHOSTDOWN:
        return RDD_UNREACHABLE;
    case -EBUSY: /* a local broker that accepts no connection */
        return RDD_TIMEOUT;
    case -ETIMEDOUT:
        return strstr(why, "handshake") ? RDD_TIMEOUT : RDD_UNREACHABLE;
    case -EPROTO:
        return strstr(why, "same version") ? RDD_VERSION : RDD_FAILED;
    default:
        return RDD_FAILED;
    }
}

static bool is_local(const char *host)
{
    return strcmp(host, ".") == 0 || strcmp(host, "localhost") == 0;
}

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

static int take_rows(struct rdd_result *out, json_t *body)
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

/* The query itself, on a connection that passed the session layer. */
static void ask(struct rdt_conn *c, enum rdb_filter filter, int timeout_ms, struct rdd_result *out)
{
    json_t *q = json_pack("{s:s}", "filter", rdb_filter_name(filter)), *body = NULL;
    struct rdb_reader rd;
    enum rdb_type type;
    rdb_reader_init(&rd);
    int rc = rdb_send(c, RDB_QUERY, q, timeout_ms);
    json_decref(q);
    char why[RDT_ERR_MAX] = "the broker closed the connection";
    if (rc == 0)
        rc = rdb_recv(c, &rd, &type, &body, timeout_ms, why, sizeof(why));
    if (rc == 0 && type == RDB_ERROR) {
        const char *msg = "no reason given";
        json_unpack(body, "{s:s}", "message", &msg);
        snprintf(why, sizeof(why), "the broker refused the query: %s", msg);
        rc = -EPROTO;
    } else if (rc == 0 && (type != RDB_LIST || take_rows(out, body) != 0)) {
        snprintf(why, sizeof(why), "the broker's answer is not a list of servers");
        rc = -EPROTO;
    }
    json_decref(body);
    rdb_reader_free(&rd);
    if (rc) {
        out->status = rc == -ETIMEDOUT ? RDD_TIMEOUT : RDD_FAILED;
        snprintf(out->err, sizeof(out->err), "%s", why);
    }
}

static int dial_local(struct rdt_conn **c, int timeout_ms, char *err, size_t errlen)
{
    struct rdt_tstring ts = {.proto = RDT_NPIPE, .side = RDT_CLIENT};
    snprintf(ts.pipe, sizeof(ts.pipe), "%s", rdb_sock_path());
    snprintf(ts.server, sizeof(ts.server), "localhost");
    return rdt_dial_requester(c, &ts, timeout_ms, err, errlen);
}

/* Dials the broker at `addr`: over `via` (its server= replaced) when given, else plain tcp. */
static int dial_addr(struct rdt_conn **c, const char *addr, uint16_t port,
                     const struct rdt_tstring *via, int timeout_ms, char *err, size_t errlen)
{
    struct rdt_tstring ts = {
        .proto = RDT_TCP, .side = RDT_CLIENT, .port_lo = port, .port_hi = port};
    if (via)
        ts = *via;
    snprintf(ts.server, sizeof(ts.server), "%s", addr);
    int rc = rdt_dial_requester(c, &ts, timeout_ms, err, errlen);
    explicit_bzero(ts.password, sizeof(ts.password));
    return rc;
}

void rdd_query(const char *host, uint16_t port, enum rdb_filter filter, int timeout_ms,
               struct rdd_result *out)
{
    rdd_query_via(host, port, NULL, filter, timeout_ms, out);
}

void rdd_query_via(const char *host, uint16_t port, const struct rdt_tstring *via,
                   enum rdb_filter filter, int timeout_ms, struct rdd_result *out)
{
    memset(out, 0, sizeof(*out));
    char name[RDT_HOST_MAX + 1], addrs[RDD_ADDR_MAX][64], why[RDT_ERR_MAX];
    struct stat st;
    struct rdt_conn *c = NULL;
    int rc;
    rdd_host_clean(host, name, sizeof(name));
    port = rdd_broker_port(port);
    bool via_pipe = via && (via->proto == RDT_NPIPE || via->proto == RDT_SPIPE);
    if (via_pipe) {
        snprintf(out->addr, sizeof(out->addr), "%.63s", via->pipe);
        rc = rdt_dial_requester(&c, via, timeout_ms, why, sizeof(why));
    } else if (!via && is_local(name) && stat(rdb_sock_path(), &st) == 0) {
        snprintf(out->addr, sizeof(out->addr), "%s", rdb_sock_path());
        rc = dial_local(&c, timeout_ms, why, sizeof(why));
    } else {
        int n = rdd_resolve(name, timeout_ms, addrs, RDD_ADDR_MAX, why, sizeof(why));
        if (n < 0) {
            out->status = (enum rdd_status) - n;
            snprintf(out->err, sizeof(out->err), "%s", why);
            return;
        }
        rc = -EHOSTUNREACH;
        for (int i = 0; i < n && rc && rc != -EPROTO; i++) {
            snprintf(out->addr, sizeof(out->addr), "%s", addrs[i]);
            rc = dial_addr(&c, addrs[i], port, via, timeout_ms, why, sizeof(why));
        }
    }
    if (rc) {
        out->status = status_of(rc, why);
        if (out->status == RDD_NO_BROKER)
            snprintf(out->err, sizeof(out->err), "%s: no broker listening (%s)", name, why);
        else
            snprintf(out->err, sizeof(out->err), "%s: %s", name, why);
        return;
    }
    ask(c, filter, timeout_ms, out);
    if (out->status == RDD_OK)
        rdt_conn_discard(c); /* the whole answer is in: nothing is left to deliver */
    else
        rdt_conn_free(c);
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

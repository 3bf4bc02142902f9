/* Reaching a pipe on another host through that host's broker (rdbroker -relay). */
#include "discover.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Asks the broker at `addr` to join this connection to its pipe `name`. */
static int ask_relay(struct rdt_conn *c, const char *name, int timeout_ms, char *err, size_t errlen)
{
    json_t *q = json_pack("{s:s}", "pipe", name), *body = NULL;
    struct rdb_reader rd;
    enum rdb_type type;
    rdb_reader_init(&rd);
    int rc = rdb_send(c, RDB_RELAY, q, timeout_ms);
    json_decref(q);
    if (rc == 0)
        rc = rdb_recv_exact(c, &rd, &type, &body, timeout_ms, err, errlen);
    if (rc == 0 && type != RDB_RELAYED) {
        const char *msg = "unexpected answer";
        json_unpack(body, "{s:s}", "message", &msg);
        snprintf(err, errlen, "%s", msg);
        rc = -EPROTO;
    }
    if (rc == 0 && rd.len) {
        snprintf(err, errlen, "relay: the broker sent more than it should");
        rc = -EPROTO;
    }
    json_decref(body);
    rdb_reader_free(&rd);
    return rc;
}

int rdd_relay_dial(struct rdt_conn **out, const struct rdt_tstring *ts, const char *password,
                   uint16_t port, int timeout_ms, char *err, size_t errlen)
{
    *out = NULL;
    char addrs[RDD_ADDR_MAX][64], why[RDT_ERR_MAX];
    int n = rdd_resolve(ts->server, timeout_ms, addrs, RDD_ADDR_MAX, why, sizeof(why));
    if (n < 0) {
        snprintf(err, errlen, "%s", why);
        return -EHOSTUNREACH;
    }
    struct rdt_tstring broker = {.proto = RDT_TCP, .side = RDT_CLIENT};
    broker.port_lo = broker.port_hi = rdd_broker_port(port);
    struct rdt_conn *c = NULL;
    int rc = -EHOSTUNREACH;
    for (int i = 0; i < n && rc; i++) {
        snprintf(broker.server, sizeof(broker.server), "%s", addrs[i]);
        rc = rdt_dial_requester(&c, &broker, timeout_ms, why, sizeof(why));
    }
    if (rc == 0)
        rc = ask_relay(c, ts->pipe, timeout_ms, why, sizeof(why));
    if (rc == 0) {
        /* the pipe's server speaks next: its own session layer (inside TLS for spipe), over the
         * relay, or, Foreign, its own protocol */
        rc = rdt_tls_wrap(&c, ts, why, sizeof(why));
        if (rc == 0)
            c = rdt_client_session(c, ts, RDT_ROLE_CLIENT, password);
        if (rc == 0 && !c)
            rc = -ENOMEM, snprintf(why, sizeof(why), "out of memory");
        if (rc == 0 && (rc = rdt_conn_open_wait(c, timeout_ms)))
            snprintf(why, sizeof(why), "%s", rdt_conn_error(c));
    }
    if (rc) {
        snprintf(err, errlen, "npipe: pipe %s on %s: %s", ts->pipe, ts->server, why);
        rdt_conn_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

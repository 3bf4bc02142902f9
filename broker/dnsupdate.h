/* The broker's records in the site's DNS, kept by TSIG-signed dynamic updates (RFC 2136): private
 * to broker/, used by broker.c. */
#ifndef RDQ_BROKER_DNSUPDATE_H
#define RDQ_BROKER_DNSUPDATE_H

#include "broker.h"

struct rdb_dnsup;

/* Reads the key, resolves the server and starts publishing the records of `b` (rdb_broker_service)
 * on `base`: the first update is sent now, its outcome logged through cfg->log. */
int rdb_dnsup_open(struct rdb_dnsup **out, struct event_base *base, const struct rdb_config *cfg,
                   const struct rdb_broker *b, char *err, size_t errlen);
/* Removes the records, waiting up to timeout_ms on a loop of its own; no refresh after it. */
int rdb_dnsup_withdraw(struct rdb_dnsup *u, int timeout_ms);
void rdb_dnsup_free(struct rdb_dnsup *u);

#endif

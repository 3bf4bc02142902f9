/* Private to broker/: the broker's DNS-SD publishing on the LAN through avahi-daemon. */
#ifndef RDQ_BROKER_DNSSD_H
#define RDQ_BROKER_DNSSD_H

#include "broker.h"

struct rdb_dnssd;

/* Publishes broker b (rdb_broker_service) as RDB_SERVICE, and with cfg->publish_servers every
 * listed record as RDB_SERVER_SERVICE, for as long as it lives; waits for avahi-daemon when it
 * is not running, and publishes again whenever it (re)starts. The publishing runs in a process
 * forked on base's first turn (dnssd_int.h): the loop never waits for the daemon. Messages,
 * the process's too, go to cfg->log. */
int rdb_dnssd_open(struct rdb_dnssd **out, struct rdb_broker *b, struct event_base *base,
                   const struct rdb_config *cfg);
void rdb_dnssd_free(struct rdb_dnssd *d);
/* The listed records changed: published servers follow, on the loop's next turn. */
void rdb_dnssd_changed(struct rdb_dnssd *d);

/* From broker.c: calls fn for each record that a remote query with filter all lists, in the
 * order of registration (ids increase). */
void rdb_broker_each_listed(const struct rdb_broker *b,
                            void (*fn)(unsigned id, const struct rdb_entry *e, void *arg),
                            void *arg);

#endif

/* Private to dnssd.c and dnssd_avahi.c: the broker and its publishing process. The process is
 * forked by the broker and runs avahi-client on a loop of its own, so that a daemon that does not
 * answer (avahi-client waits up to 25 s for each call) never holds up the broker's loop.
 *
 * Messages on their socketpair: a header of RDB_DNSSD_HDR bytes (the length of the body, 4 bytes
 * in host order, then the type) and the body. */
#ifndef RDQ_BROKER_DNSSD_INT_H
#define RDQ_BROKER_DNSSD_INT_H

#include "broker.h"

#include <stdbool.h>

#define RDB_DNSSD_HDR 5
/* broker to process: the whole set of servers to publish, each as its id (4 bytes, host order),
 * kind (1), advert's length (2, host order) and advert (without a NUL); sent again whole when it
 * changes */
#define RDB_DNSSD_STATE 'S'
/* process to broker: a message for the broker's log, as its priority (1) and text */
#define RDB_DNSSD_LOG 'L'
#define RDB_DNSSD_LOG_MAX 1024 /* the longest text of a log message */
#define RDB_DNSSD_ENTRY_HDR 7

/* The process's life, on the socket fd: publishes `self` (NULL: the broker is not published) and,
 * with publish_servers, the servers of the last state read, until fd ends; never returns. */
_Noreturn void rdb_dnssd_child(int fd, const struct rdb_service_info *self, bool publish_servers);

#endif

/* Private to discover/: avahi-client, loaded the first time the LAN is browsed. avahi-client
 * brings libdbus and, through it, libsystemd and half a dozen more: rdq -QR HOST, which never
 * browses the LAN, does not pay for loading them. Every avahi function discover/ calls is in
 * the list below and is called through AV(name); its pointer has the header's own type. */
#ifndef RDQ_DISCOVER_AVAHILOAD_H
#define RDQ_DISCOVER_AVAHILOAD_H

#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-common/address.h>
#include <avahi-common/domain.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/strlst.h>
#include <stddef.h>

#define RDD_AVAHI_FUNCS(X)                                                                         \
    X(avahi_address_snprint)                                                                       \
    X(avahi_client_errno)                                                                          \
    X(avahi_client_free)                                                                           \
    X(avahi_client_new)                                                                            \
    X(avahi_domain_equal)                                                                          \
    X(avahi_free)                                                                                  \
    X(avahi_service_browser_free)                                                                  \
    X(avahi_service_browser_new)                                                                   \
    X(avahi_service_resolver_free)                                                                 \
    X(avahi_service_resolver_new)                                                                  \
    X(avahi_strerror)                                                                              \
    X(avahi_string_list_find)                                                                      \
    X(avahi_string_list_get_pair)

struct rdd_avahi {
#define RDD_AVAHI_PTR(name) __typeof__(&name) name;
    RDD_AVAHI_FUNCS(RDD_AVAHI_PTR)
#undef RDD_AVAHI_PTR
};

extern struct rdd_avahi rdd_avahi;
#define AV(name) (rdd_avahi.name)

/* Loads libavahi-client (once): 0, or -1 with why in err. */
int rdd_avahi_load(char *err, size_t errlen);

#endif

/* Private to broker/: ldns, loaded the first time -dns-update needs it. rdbroker does not link
 * libldns: ldns pulls libssl and libcrypto in, and a broker that never updates a DNS zone never
 * loads any of them. Every function of ldns that broker/ calls is in the list below and is called
 * through LDNS(name); its pointer has the header's own type. The one data symbol read (a lookup
 * table) is reached through LDNS_DATA(name). Of ldns's macros only constants and LDNS_VERSION (the
 * headers' version) are used; what ldns allocates for the caller is freed with free(), as its
 * LDNS_FREE does. */
#ifndef RDQ_BROKER_LDNSLOAD_H
#define RDQ_BROKER_LDNSLOAD_H

#include <ldns/ldns.h>
#include <stddef.h>

#define RDB_LDNS_FUNCS(X)                                                                          \
    X(ldns_dname_new_frm_str)                                                                      \
    X(ldns_get_errorstr_by_id)                                                                     \
    X(ldns_lookup_by_id)                                                                           \
    X(ldns_pkt2wire)                                                                               \
    X(ldns_pkt_free)                                                                               \
    X(ldns_pkt_get_opcode)                                                                         \
    X(ldns_pkt_get_rcode)                                                                          \
    X(ldns_pkt_id)                                                                                 \
    X(ldns_pkt_qr)                                                                                 \
    X(ldns_pkt_query_new)                                                                          \
    X(ldns_pkt_set_random_id)                                                                      \
    X(ldns_pkt_set_rd)                                                                             \
    X(ldns_pkt_tc)                                                                                 \
    X(ldns_pkt_tsig)                                                                               \
    X(ldns_pkt_tsig_sign)                                                                          \
    X(ldns_pkt_tsig_verify)                                                                        \
    X(ldns_rdf2native_int16)                                                                       \
    X(ldns_rdf_clone)                                                                              \
    X(ldns_rdf_data)                                                                               \
    X(ldns_rdf_deep_free)                                                                          \
    X(ldns_rdf_size)                                                                               \
    X(ldns_rr_free)                                                                                \
    X(ldns_rr_list_deep_free)                                                                      \
    X(ldns_rr_list_new)                                                                            \
    X(ldns_rr_list_push_rr)                                                                        \
    X(ldns_rr_new)                                                                                 \
    X(ldns_rr_new_frm_str)                                                                         \
    X(ldns_rr_rd_count)                                                                            \
    X(ldns_rr_rdf)                                                                                 \
    X(ldns_rr_set_class)                                                                           \
    X(ldns_rr_set_owner)                                                                           \
    X(ldns_rr_set_ttl)                                                                             \
    X(ldns_rr_set_type)                                                                            \
    X(ldns_str2rdf_b64)                                                                            \
    X(ldns_update_pkt_new)                                                                         \
    X(ldns_wire2pkt)

#define RDB_LDNS_DATA(X) X(ldns_rcodes)

struct rdb_ldns {
#define RDB_LDNS_PTR(name) __typeof__(name) *name;
    RDB_LDNS_FUNCS(RDB_LDNS_PTR)
    RDB_LDNS_DATA(RDB_LDNS_PTR)
#undef RDB_LDNS_PTR
};

extern struct rdb_ldns rdb_ldns_syms;
#define LDNS(name) (rdb_ldns_syms.name)
#define LDNS_DATA(name) (*rdb_ldns_syms.name)

/* Loads libldns once: 0, or -ENOPKG with a message that names the library and why it cannot be
 * loaded. Safe to call from any thread, any number of times. */
int rdb_ldns_load(char *err, size_t errlen);

#endif

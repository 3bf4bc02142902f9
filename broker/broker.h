/* rdq broker: the per-host registry, its versioned wire protocol (shared with discover/ and every
 * server), and the call that makes a server endpoint discoverable. See docs/protocol.md. */
#ifndef RDQ_BROKER_H
#define RDQ_BROKER_H

#include "transport.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- The wire protocol ---------------------------------------------------------------------- */

#define RDB_VERSION 1
#define RDB_DEFAULT_PORT 7263
#define RDB_DEFAULT_SOCK "/run/rdq/broker.sock"
#define RDB_HDR_LEN 8
#define RDB_FRAME_MAX 65536 /* the largest body any message may have */
#define RDB_DESC_MAX 200
#define RDB_RECORDS_MAX 4096 /* records one broker keeps */
#define RDB_IDLE_MS 30000    /* the broker's default for rdb_config.idle_ms */

/* Message types. */
enum rdb_type {
    RDB_REGISTER = 1,   /* server to broker: a record (registration socket only) */
    RDB_REGISTERED = 2, /* broker to server: the record's id */
    RDB_QUERY = 3,      /* client to broker: a kind filter */
    RDB_LIST = 4,       /* broker to client: the rows */
    RDB_ERROR = 5,      /* either way: what was wrong; the connection then ends */
    RDB_UNREGISTER = 6, /* server to broker: drop a record of this connection */
    RDB_RELAY = 7,      /* client to broker: join this connection to a local pipe */
    RDB_RELAYED = 8,    /* broker to client: joined; what follows is the pipe's stream */
};

enum rdb_kind { RDB_DEBUGGER, RDB_PROCESS, RDB_KD, RDB_KIND_COUNT };

/* A query's filter, as the reference's browse dialogs: debugging servers to join a session, or
 * process and KD servers for a smart client, or all. */
enum rdb_filter { RDB_FILTER_ALL, RDB_FILTER_DEBUGGER, RDB_FILTER_REMOTE };

const char *rdb_kind_name(enum rdb_kind k);  /* "debugger", "process", "kd" */
const char *rdb_kind_title(enum rdb_kind k); /* "Debugger Server", "Remote Process Server", ... */
int rdb_kind_parse(const char *s, enum rdb_kind *out);
const char *rdb_filter_name(enum rdb_filter f); /* "all", "debugger", "remote" */
int rdb_filter_parse(const char *s, enum rdb_filter *out);
bool rdb_filter_match(enum rdb_filter f, enum rdb_kind k);

/* Encodes one frame (header and JSON body) into a new buffer of *len bytes; NULL on failure. */
uint8_t *rdb_frame_encode(enum rdb_type type, const json_t *body, size_t *len);

/* Reassembles frames from a byte stream. */
struct rdb_reader {
    uint8_t *buf;
    size_t len, cap;
};
void rdb_reader_init(struct rdb_reader *r);
void rdb_reader_free(struct rdb_reader *r);
int rdb_reader_feed(struct rdb_reader *r, const void *data, size_t len);
/* The bytes the frame at the start of the reader still lacks (its header's, then its body's);
 * 0 when it is complete, or its header is bad (rdb_reader_next then says why). */
size_t rdb_reader_missing(const struct rdb_reader *r);
/* 1 and a frame (caller frees *body with json_decref), 0 when more bytes are needed, or -EPROTO
 * with the reason in err (a bad frame: the connection must end). */
int rdb_reader_next(struct rdb_reader *r, enum rdb_type *type, json_t **body, char *err,
                    size_t errlen);

/* Sends a frame and reads the reply on a blocking-style connection (used by clients). */
int rdb_send(struct rdt_conn *c, enum rdb_type type, const json_t *body, int timeout_ms);
int rdb_recv(struct rdt_conn *c, struct rdb_reader *r, enum rdb_type *type, json_t **body,
             int timeout_ms, char *err, size_t errlen);
/* The same, never reading past the end of the frame: for a reply after which the stream
 * carries other bytes (RELAYED). */
int rdb_recv_exact(struct rdt_conn *c, struct rdb_reader *r, enum rdb_type *type, json_t **body,
                   int timeout_ms, char *err, size_t errlen);

/* Printable ASCII, all that records hold (and all that a listing may print to a terminal). */
static inline bool rdb_printable_char(char c)
{
    return (unsigned char)c >= 0x20 && (unsigned char)c < 0x7f;
}
bool rdb_printable(const char *s);

/* The broker's registration socket: $RDQ_BROKER_SOCK, else RDB_DEFAULT_SOCK. */
const char *rdb_sock_path(void);

/* ---- The broker --------------------------------------------------------------------------- */

struct event_base;
struct rdb_broker;

struct rdb_config {
    const char *sock_path; /* registration (and local query) socket */
    const char *listen[8]; /* query endpoints, transport strings */
    int nlisten;
    gid_t group; /* members of this group register discoverably (root always) */
    bool have_group;
    bool relay;  /* relay clients to local pipes for other hosts */
    int idle_ms; /* a connection without records that sends nothing, or one that does not read,
                    is closed after this long (0: RDB_IDLE_MS) */
    /* DNS-SD on the LAN: no_dnssd publishes nothing; publish_servers adds each listed record
     * as RDB_SERVER_SERVICE to the query endpoint's RDB_SERVICE */
    bool no_dnssd;
    bool publish_servers;
    void (*log)(int prio, const char *msg, void *arg);
    void *log_arg;
    /* The site's DNS (rdbroker -dns-update): the broker's DNS-SD records under _rdq._tcp.dns_zone,
     * kept there by dynamic updates signed with the TSIG key of dns_tsig (a BIND key file). */
    const char *dns_server; /* ADDR, ADDR:PORT, [V6]:PORT or a name (NULL: no updates) */
    const char *dns_zone;
    const char *dns_tsig;
    const char *dns_addrs[8]; /* the host's A/AAAA records (none: its own addresses) */
    int ndns_addrs;
    int dns_ttl; /* seconds, RDB_DNS_TTL_MIN to RDB_DNS_TTL_MAX (0: RDB_DNS_TTL) */
};

#define RDB_DNS_TTL 60
#define RDB_DNS_TTL_MIN 2
#define RDB_DNS_TTL_MAX 86400

/* printf to a log callback (nothing when it is NULL): one message a call. */
void rdb_logf(void (*log)(int prio, const char *msg, void *arg), void *arg, int prio,
              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

int rdb_broker_open(struct rdb_broker **out, struct event_base *base, const struct rdb_config *cfg,
                    char *err, size_t errlen);
void rdb_broker_free(struct rdb_broker *b);
/* The bound query endpoints, as advertised strings, for the startup message. */
int rdb_broker_endpoints(const struct rdb_broker *b, char *buf, size_t len);
unsigned rdb_broker_records(const struct rdb_broker *b);
/* Removes the broker's records from the site's DNS (when cfg.dns_server is set), waiting up to
 * timeout_ms for the server's answer; for a clean exit, before rdb_broker_free. */
int rdb_broker_withdraw(struct rdb_broker *b, int timeout_ms);

/* Checks the site DNS settings of `cfg` (zone, key file, server, addresses, TTL) as
 * rdb_broker_open will: 0, or -errno with what is wrong in err. */
int rdb_dns_check(const struct rdb_config *cfg, char *err, size_t errlen);

/* ---- How a broker is found: DNS-SD (RFC 6763), on the LAN and in the site's DNS ------------ */

#define RDB_SERVICE "_rdq._tcp"            /* brokers */
#define RDB_SERVER_SERVICE "_rdq-srv._tcp" /* servers, with rdbroker -publish-servers */
#define RDB_TXT_MAX 4

/* What a broker publishes of itself: the same on the LAN and in DNS. */
struct rdb_service_info {
    char instance[64];           /* the instance name: "rdq broker on HOST" */
    char host[RDT_HOST_MAX + 1]; /* this host's name, as gethostname() gives it */
    uint16_t port;               /* the first plain tcp query endpoint's port (0: none) */
    char txt[RDB_TXT_MAX][256];  /* "v=1", "host=HOST", "query=ADVERT ADVERT..." */
    int ntxt;
};

/* Fills `out` for the broker's bound query endpoints. -ENOENT when no plain tcp endpoint
 * (without a password) is there to publish. */
int rdb_broker_service(const struct rdb_broker *b, struct rdb_service_info *out);

/* An AvahiPoll (avahi-common/watch.h) on a libevent loop, for avahi-client: the broker's
 * publishing and discover/'s browsing run on the caller's loop through it. Free it after the
 * AvahiClients that use it. */
struct AvahiPoll;
struct rdb_avahi_poll;
struct rdb_avahi_poll *rdb_avahi_poll_new(struct event_base *base);
const struct AvahiPoll *rdb_avahi_poll_api(struct rdb_avahi_poll *p);
void rdb_avahi_poll_free(struct rdb_avahi_poll *p);

/* ---- Registering a server ------------------------------------------------------------------ */

struct rdb_announce;

/* What one server endpoint tells the broker. */
struct rdb_entry {
    enum rdb_kind kind;
    char advert[RDT_STRING_MAX];
    bool hidden;
    bool clicon;
    bool foreign; /* not an rdq server (rdsrv -announce): listed with the item Foreign */
    char desc[RDB_DESC_MAX + 1];
};

/* Keeps `e` registered with the local broker for as long as it lives: registers now if a broker
 * answers, and again whenever a broker appears or restarts (checked every 250 ms). `note` is
 * called with a message once when no broker answers (and once when it registers after that). */
int rdb_announce_open(struct rdb_announce **out, struct event_base *base, const char *sock_path,
                      const struct rdb_entry *e, void (*note)(const char *msg, void *arg),
                      void *arg);
void rdb_announce_free(struct rdb_announce *a);
bool rdb_announce_registered(const struct rdb_announce *a);

/* ---- One call: a discoverable server endpoint ----------------------------------------------- */

struct rdb_server {
    struct rdt_server *srv;
    struct rdb_announce *announce;
    struct rdt_tstring ts;
};

/* Parses `tstring` (server side), binds it, serves clients through `cb` and registers it with
 * the broker at `sock_path` (NULL: rdb_sock_path()) as `kind`. */
int rdb_server_open(struct rdb_server **out, struct event_base *base, const char *tstring,
                    enum rdb_kind kind, const char *desc, const char *sock_path, rdt_server_cb cb,
                    void (*note)(const char *msg, void *arg), void *arg, char *err, size_t errlen);
void rdb_server_free(struct rdb_server *s);

#endif

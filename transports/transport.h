/* rdq transports: transport strings and the connection layers that every server, the broker and
 * every client share. Nothing here prints or exits: functions return 0 or -errno and describe a
 * failure in a caller's buffer (or through rdt_conn_error()). */
#ifndef RDQ_TRANSPORT_H
#define RDQ_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* ---- Transport strings ------------------------------------------------------------------- */

#define RDT_STRING_MAX 1024 /* longest transport string accepted */
#define RDT_PIPE_MAX 80     /* longest pipe name, printf codes included */
#define RDT_HOST_MAX 255    /* longest server= / clicon= host */
#define RDT_COMPORT_MAX 128 /* longest com port= value */
#define RDT_CERT_MAX 200    /* longest certuser= / machuser= value */
#define RDT_PASSWORD_MAX 12 /* the reference's limit: letters and digits only */
#define RDT_ERR_MAX 512     /* size of an error buffer that always fits */

enum rdt_proto { RDT_NPIPE, RDT_TCP, RDT_COM, RDT_SPIPE, RDT_SSL };

/* Which end a string describes. RDT_EITHER is given to rdt_parse() to let the string decide; a
 * parsed string reports RDT_EITHER when it is valid as both (com, and clicon with one port). */
enum rdt_side { RDT_EITHER, RDT_SERVER, RDT_CLIENT };

struct rdt_tstring {
    enum rdt_proto proto;
    enum rdt_side side;
    char pipe[RDT_PIPE_MAX + 32];         /* npipe, spipe (room for expanded printf codes) */
    char server[RDT_HOST_MAX + 1];        /* client: the host to reach */
    char clicon[RDT_HOST_MAX + 1];        /* reverse connection: the client's host */
    uint16_t port_lo, port_hi;            /* tcp, ssl: a single port has port_lo == port_hi */
    char com_port[RDT_COMPORT_MAX + 1];   /* com: as written canonically (COM2 or a path) */
    char com_device[RDT_COMPORT_MAX + 1]; /* com: the device, /dev/ttyS1 for COM2 */
    uint32_t baud;
    int channel;        /* com: 0 to 254 */
    int tls_min;        /* ssl, spipe: 12 for TLS 1.2 and later, 13 for TLS 1.3 only */
    char proto_name[8]; /* ssl, spipe: the proto= value as written canonically */
    char cert[RDT_CERT_MAX + 1];
    bool machine_store; /* machuser= rather than certuser= */
    char password[RDT_PASSWORD_MAX + 1];
    bool password_ask; /* client: Password=* (ask the user) */
    bool hidden;
    bool icf_enable;
    bool ipv6;    /* ipversion=6 */
    bool foreign; /* client: Foreign, the server speaks its own protocol (no session layer) */
};

/* Parses and validates `s` as a transport string for `side` (RDT_EITHER: let the string decide).
 * On failure returns -EINVAL and writes a message naming the item and what would fit. */
int rdt_parse(const char *s, enum rdt_side side, struct rdt_tstring *out, char *err, size_t errlen);

/* Whether a transport string, in any form (a listing's advertised string too), has the item
 * Foreign: its server is not rdq's and speaks its own protocol from the first byte. */
bool rdt_string_foreign(const char *s);

/* Reads a listing's advertised string as a client dials it, its server at this host
 * (",Server=localhost" added; a com string, which names no server, as it is). */
int rdt_parse_advert(const char *advert, struct rdt_tstring *out, char *err, size_t errlen);

/* How rdt_format() writes a string. */
enum rdt_form {
    RDT_FORM_CANON,  /* every item, keys capitalised, Password=* */
    RDT_FORM_ADVERT, /* the listing form: no Server=/Clicon=, Hidden or IcfEnable; Password=* */
    RDT_FORM_CLIENT, /* the advertised form plus Server=host (or Clicon=host) */
};

/* Writes `ts` in the given form. For RDT_FORM_CLIENT, `host` is the server's host (NULL keeps the
 * string's own server= or clicon=). `bound_port` (0: none) is the port a server actually bound:
 * it is shown as Port=bound:hi. Returns the length, or -ENOSPC if `len` is too small. */
int rdt_format(const struct rdt_tstring *ts, enum rdt_form form, const char *host,
               uint16_t bound_port, char *buf, size_t len);

/* Expands the printf codes of a pipe name: the first becomes `pid`, a second `tid`. */
int rdt_pipe_expand(const char *name, pid_t pid, pid_t tid, char *buf, size_t len);

/* A transport string as a message may quote it: any password value as *, control characters as
 * ?, cut after 60 characters. Returns buf. */
#define RDT_ECHO_LEN 64
const char *rdt_echo(const char *s, char buf[RDT_ECHO_LEN]);

/* The names of a protocol and a side, for messages. */
const char *rdt_proto_name(enum rdt_proto p);
const char *rdt_side_name(enum rdt_side s);

/* ---- Connection layers --------------------------------------------------------------------- */

/* One layer of a connection. Layers stack through `next`: the top one is what callers hold.
 * Every op returns 0 or -errno; -EAGAIN means "not now, wait for rdt_conn_events()". */
struct rdt_conn;

struct rdt_ops {
    const char *name;
    int (*open)(struct rdt_conn *c); /* advances connect/handshake: 0 when ready */
    void (*close)(struct rdt_conn *c);
    int (*read)(struct rdt_conn *c, void *buf, size_t len, size_t *nread); /* 0 bytes: EOF */
    int (*write)(struct rdt_conn *c, const void *buf, size_t len, size_t *nwritten);
    short (*events)(struct rdt_conn *c); /* POLLIN/POLLOUT this layer waits for */
    const char *(*last_error)(struct rdt_conn *c);
    void (*shutdown)(struct rdt_conn *c); /* optional: say the end of the data (close_notify) */
    bool (*pending)(struct rdt_conn *c);  /* optional: bytes held that the descriptor's readiness
                                             will not announce (TLS records read ahead) */
};

struct rdt_conn {
    const struct rdt_ops *ops;
    struct rdt_conn *next;
    void *ctx;
    int fd; /* the bottom layer's descriptor, copied upward by rdt_conn_push() */
    bool ready;
};

static inline int rdt_conn_open_step(struct rdt_conn *c)
{
    int rc = c->ready ? 0 : c->ops->open(c);
    if (rc == 0)
        c->ready = true;
    return rc;
}

static inline int rdt_conn_read(struct rdt_conn *c, void *buf, size_t len, size_t *nread)
{
    return c->ops->read(c, buf, len, nread);
}

static inline int rdt_conn_write(struct rdt_conn *c, const void *buf, size_t len, size_t *nwritten)
{
    return c->ops->write(c, buf, len, nwritten);
}

static inline short rdt_conn_events(struct rdt_conn *c)
{
    return c->ops->events(c);
}

static inline const char *rdt_conn_error(struct rdt_conn *c)
{
    return c->ops->last_error(c);
}

/* Whether a read would give bytes now although the descriptor may not be readable: a caller
 * that waits for the descriptor between reads reads again first while this holds. */
static inline bool rdt_conn_pending(struct rdt_conn *c)
{
    for (; c; c = c->next)
        if (c->ops->pending && c->ops->pending(c))
            return true;
    return false;
}

static inline int rdt_conn_fd(const struct rdt_conn *c)
{
    return c->fd;
}

static inline const char *rdt_conn_name(const struct rdt_conn *c)
{
    return c->ops->name;
}

/* Ends the sending side: each layer says so its own way (TLS's close_notify), then the socket
 * (shutdown SHUT_WR); the peer reads the end, and what it sends can still be read. */
void rdt_conn_shutdown(struct rdt_conn *c);

/* Allocates a layer with its ops and private context, on top of `next` (may be NULL). */
struct rdt_conn *rdt_conn_push(const struct rdt_ops *ops, void *ctx, struct rdt_conn *next);

/* Closes and frees every layer of the stack. Accepts NULL. */
void rdt_conn_free(struct rdt_conn *c);
/* Frees a connection whose exchange is complete, every byte of the answer read: over tcp it ends
 * with a reset, which leaves no TIME_WAIT socket behind on either end (a client that asks many
 * times a second would otherwise fill its ports with them). */
void rdt_conn_discard(struct rdt_conn *c);

/* Sends `last` (one write, as far as the socket takes it at once), reads and drops what the peer
 * sent, and frees the stack: for a message the peer should read before the connection ends. */
void rdt_conn_close_with(struct rdt_conn *c, const void *last, size_t len);

/* Blocking helpers over the non-blocking ops, each bounded by `timeout_ms` (-1: none). */
int rdt_conn_open_wait(struct rdt_conn *c, int timeout_ms);
int rdt_conn_write_all(struct rdt_conn *c, const void *buf, size_t len, int timeout_ms);
int rdt_conn_read_wait(struct rdt_conn *c, void *buf, size_t len, size_t *nread, int timeout_ms);

/* Plain socket layers over a connected, non-blocking descriptor (which they then own). */
extern const struct rdt_ops rdt_tcp_ops;
extern const struct rdt_ops rdt_unix_ops;
struct rdt_conn *rdt_sock_conn(const struct rdt_ops *ops, int fd);
/* The credentials of a unix socket's peer, as it connected (read once, then kept). -ENOTSOCK
 * for a stack that is not on a unix socket; on failure *out holds uid and gid -1. */
struct ucred;
int rdt_conn_peer_cred(struct rdt_conn *c, struct ucred *out);

/* ---- TLS (ssl, spipe) ------------------------------------------------------------------------ */

/* For an ssl or spipe client string, stacks the TLS layer's client part on *c: it checks the
 * server's certificate against the string's certuser= / machuser= (a SHA-1 thumbprint pins it;
 * a name must be the certificate's and chain to the user's or machine's store or the system's
 * trust store). Other strings leave *c as it is. On failure *c is freed and NULL, and the
 * return is -errno with why in err. */
int rdt_tls_wrap(struct rdt_conn **c, const struct rdt_tstring *ts, char *err, size_t errlen);

/* ---- Serial lines (com) ---------------------------------------------------------------------- */

/* Calls `cb` for each serial port that libserialport finds: its name (/dev/ttyS0), its kind
 * (native, usb, bluetooth) and its description. Returns how many, or -errno with err set. */
typedef void (*rdt_serial_list_cb)(const char *name, const char *kind, const char *desc, void *arg);
int rdt_serial_list(rdt_serial_list_cb cb, void *arg, char *err, size_t errlen);

/* A serial line, open for this process alone, non-blocking, flushed: a real port through
 * libserialport (8N1 at `baud`, no flow control), a pseudo-terminal through termios. For the com
 * layer, and raw for a kernel debugging link (rdkdsrv). */
struct rdt_serial;
int rdt_serial_open(struct rdt_serial **out, const char *dev, uint32_t baud, char *err,
                    size_t errlen);
int rdt_serial_fd(const struct rdt_serial *s);
void rdt_serial_close(struct rdt_serial *s);

/* ---- The session layer: version check and password proof ---------------------------------- */

#define RDT_PROTOCOL_VERSION 1
#define RDT_ACCESS_DENIED "Error 0x80004005"

/* A requester is a client that writes a request as soon as the session layer is done (a broker
 * query, a registration): its hello is held back to go out with that request, in one write. A
 * plain client sends its hello at once, for servers that speak first after the handshake. */
enum rdt_role { RDT_ROLE_SERVER, RDT_ROLE_CLIENT, RDT_ROLE_REQUESTER };

/* Stacks the session layer on `next`. The server end speaks first and, when `password` is set,
 * wants proof of it; the client proves it by HMAC over both ends' nonces, never sending it.
 * `version` is normally RDT_PROTOCOL_VERSION (tests pass others). Takes `next` even on failure. */
struct rdt_conn *rdt_auth_conn(struct rdt_conn *next, enum rdt_role role, const char *password,
                               unsigned version);

/* Stacks what a client string's server speaks first: the session layer (as rdt_auth_conn, with
 * `password` or else the string's own), or nothing for a Foreign string, whose bytes are relayed
 * as they are. Takes `next` even on failure; NULL when out of memory. */
struct rdt_conn *rdt_client_session(struct rdt_conn *next, const struct rdt_tstring *ts,
                                    enum rdt_role role, const char *password);

/* Turns away a connection that has not started the session layer (the server end): the peer
 * is sent a busy frame instead of the server hello, and its client fails with -EBUSY and the
 * message `why` (such as "busy: too many connections from your address"). Takes `c`. */
void rdt_auth_turn_away(struct rdt_conn *c, const char *why);

/* A proof of `password` over `label` and a nonce, as the session layer makes them:
 * HMAC-SHA256(password, label | nonce), into out (32 bytes). For other in-band passwords (a
 * debugging server's control password). 0, or -errno with err set. */
int rdt_proof(const char *password, const char *label, const uint8_t *nonce, size_t nlen,
              uint8_t out[32], char *err, size_t errlen);
/* Compares two proofs in constant time. */
bool rdt_proof_equal(const uint8_t a[32], const uint8_t b[32]);

/* After a failed open: true when the failure was a refused password (for slowing the peer). */
bool rdt_auth_refused(struct rdt_conn *c);

/* ---- Names: c-ares on the event loop -------------------------------------------------------- */

struct event_base;
struct rdt_resolver;
struct rdt_lookup;

#define RDT_ADDRS_MAX 8
struct rdt_addrs {
    int n;
    char addr[RDT_ADDRS_MAX][64]; /* numeric, IPv4 or IPv6 */
};

/* A look-up's end: rc 0, -ENOENT (no such name, or no record of that type), -ETIMEDOUT (the
 * name servers did not answer), -ENOMEM or -EIO, with err naming the name and the reason.
 * Called from the loop, never inside the call that started the look-up. */
typedef void (*rdt_addrs_cb)(int rc, const struct rdt_addrs *a, const char *err, void *arg);
typedef void (*rdt_query_cb)(int rc, const unsigned char *abuf, int alen, const char *err,
                             void *arg);

/* A resolver on `base`. Name servers come from $RDQ_DNS_SERVERS (host:port,...) when set (then
 * neither /etc/hosts nor a search list is used), else from the system's configuration. */
int rdt_resolver_new(struct rdt_resolver **out, struct event_base *base, char *err, size_t errlen);
/* The same, for callers that wait at most `within_ms` for an answer: the name servers are given
 * up on within it too, so that a look-up cancelled at the caller's deadline soon holds no place
 * among those in flight. */
int rdt_resolver_new_within(struct rdt_resolver **out, struct event_base *base, int within_ms,
                            char *err, size_t errlen);
/* Frees the resolver; look-ups still going are cancelled without a call. Accepts NULL. */
void rdt_resolver_free(struct rdt_resolver *r);
/* The addresses of `host` (a name, an address literal, [v6]; `ipv6`: IPv6 ones only). Address
 * literals and the localhost names are answered without asking. NULL when out of memory. */
struct rdt_lookup *rdt_lookup_addrs(struct rdt_resolver *r, const char *host, bool ipv6,
                                    rdt_addrs_cb cb, void *arg);
/* A DNS query of class IN and `type` (ns_t_ptr, ns_t_srv, ns_t_txt...): the answer's wire form,
 * for c-ares's ares_parse_*_reply. */
struct rdt_lookup *rdt_lookup_query(struct rdt_resolver *r, const char *name, int type,
                                    rdt_query_cb cb, void *arg);
/* Stops a look-up: its callback is not called. */
void rdt_lookup_cancel(struct rdt_lookup *l);
/* A numeric address (as a look-up gives it) and a port as a socket address: 0 or -EINVAL. */
int rdt_sockaddr_of(const char *addr, uint16_t port, struct sockaddr_storage *sa, socklen_t *len);
/* The same as rdt_lookup_addrs, waiting up to `timeout_ms` on a loop of its own. Returns the
 * count, or -errno with err set. */
int rdt_resolve_addrs(const char *host, bool ipv6, int timeout_ms, struct rdt_addrs *out, char *err,
                      size_t errlen);

/* ---- Endpoints: pipes, ports and dialing ---------------------------------------------------- */

/* The directory of pipe sockets: $RDQ_PIPE_DIR, else /run/rdq/pipe for root, else
 * $XDG_RUNTIME_DIR/rdq/pipe, else /tmp/rdq-<uid>/pipe. */
int rdt_pipe_dir(char *buf, size_t len);
/* The socket path of a pipe. A name that is an absolute path (which transport strings never
 * hold: programs build such strings themselves, e.g. for the broker's socket) is used as is. */
int rdt_pipe_path(const char *pipe, char *buf, size_t len, char *err, size_t errlen);

/* A bound, listening endpoint for a server-side string (tcp: the first free port of the range;
 * npipe: the pipe's socket, taking over the socket file of a dead server). */
struct rdt_bound {
    int fd;
    uint16_t port;                /* tcp: the port bound */
    char path[108];               /* npipe: the socket's path */
    char name[RDT_PIPE_MAX + 32]; /* npipe: the pipe name after printf expansion */
};

int rdt_bind(const struct rdt_tstring *ts, struct rdt_bound *out, char *err, size_t errlen);
void rdt_unbind(struct rdt_bound *b);

/* Opens a client connection for a client-side string and completes the session layer, within
 * `timeout_ms`. `password` overrides the string's (for Password=*). A host name that does not
 * exist fails with -ENXIO; other failures to resolve with -EHOSTUNREACH. */
int rdt_dial(struct rdt_conn **out, const struct rdt_tstring *ts, const char *password,
             int timeout_ms, char *err, size_t errlen);
/* Milliseconds since an arbitrary start (CLOCK_MONOTONIC). */
int64_t rdt_now_ms(void);

/* Dialing on the caller's loop: names through `res`, then each address in turn, then the TLS
 * and session layers, all within `timeout_ms` (or by `deadline`, rdt_now_ms(), when that is not
 * 0 and comes sooner: messages still speak of timeout_ms, the time the user allowed). tcp and ssl
 * (clicon: listening until the server's host connects), com (through the line's owner), npipe
 * and spipe on this host. `cb` gets the ready connection (the caller owns it)
 * or NULL with rc and err; the dialer frees itself after `cb` returns. */
struct rdt_dialer;
typedef void (*rdt_dial_cb)(struct rdt_conn *conn, int rc, const char *err, void *arg);
int rdt_dial_async(struct rdt_dialer **out, struct event_base *base, struct rdt_resolver *res,
                   const struct rdt_tstring *ts, const char *password, enum rdt_role role,
                   int timeout_ms, int64_t deadline, rdt_dial_cb cb, void *arg, char *err,
                   size_t errlen);
/* Stops a dialer before its callback (which is then never called). Accepts NULL. */
void rdt_dialer_free(struct rdt_dialer *d);
/* The same from a stack the caller connected, `c` (taken, even on failure): the stack first
 * completes its own opening on the loop (its top layer may have an exchange of its own to make,
 * as a relay's request to a broker), then the TLS and session layers of `ts` go on top. `what`
 * names the peer in the message of a timeout before the stack is open ("the broker at H:P"). */
int rdt_dial_over(struct rdt_dialer **out, struct event_base *base, struct rdt_conn *c,
                  const char *what, const struct rdt_tstring *ts, const char *password,
                  enum rdt_role role, int timeout_ms, int64_t deadline, rdt_dial_cb cb, void *arg,
                  char *err, size_t errlen);

/* Runs one dial that ends through an rdt_dial_cb to its end, on a loop and a resolver of its
 * own, for callers that wait (rdt_dial over tcp and ssl, a pipe of another host): start()
 * begins it on `base` with `res`, to call `cb` with `cb_arg` (0, or -errno with err set, the
 * callback then never called); cancel() stops it if the loop fails before that. */
struct rdt_dial_run_ops {
    int (*start)(void *arg, struct event_base *base, struct rdt_resolver *res, rdt_dial_cb cb,
                 void *cb_arg, char *err, size_t errlen);
    void (*cancel)(void *arg);
};
int rdt_dial_run(struct rdt_conn **out, const struct rdt_dial_run_ops *ops, void *arg, char *err,
                 size_t errlen);

/* Starts dialing a local pipe (npipe only) without waiting for anything: the session layer is
 * left to the caller's event loop (rdt_conn_open_step, rdt_conn_events). */
int rdt_dial_start(struct rdt_conn **out, const struct rdt_tstring *ts, enum rdt_role role,
                   char *err, size_t errlen);
/* The same as a requester (RDT_ROLE_REQUESTER): the caller writes first. */
int rdt_dial_requester(struct rdt_conn **out, const struct rdt_tstring *ts, int timeout_ms,
                       char *err, size_t errlen);

/* True for a host name that means this host: ".", "localhost", loopback literals, the host name. */
bool rdt_host_is_local(const char *host);

/* ---- Servers on the event loop --------------------------------------------------------------- */

struct event_base;
struct rdt_server;

/* Called once per client that passed the session layer (conn set, err NULL), or when something
 * went wrong that the server's owner may want to log (conn NULL, err set; the server goes on). */
typedef void (*rdt_server_cb)(struct rdt_server *srv, struct rdt_conn *conn, const char *peer,
                              const char *err, void *arg);

/* Activates a server endpoint from a server-side string on `base`: binds (or, for clicon, dials
 * the client with back-off until it answers), runs the session layer for each client, and hands
 * ready connections to `cb`. */
int rdt_server_open(struct rdt_server **out, struct event_base *base, const struct rdt_tstring *ts,
                    rdt_server_cb cb, void *arg, char *err, size_t errlen);
void rdt_server_free(struct rdt_server *srv);

/* The advertised string (the listing form) and the client string for `host`. */
int rdt_server_advert(const struct rdt_server *srv, char *buf, size_t len);
int rdt_server_client_string(const struct rdt_server *srv, const char *host, char *buf, size_t len);
const struct rdt_bound *rdt_server_bound(const struct rdt_server *srv);

/* Handshakes in progress are capped per peer as well as in all: per address over tcp, and on a
 * pipe, once this is called, per local user (root's never counted). Pipes are not capped per
 * user unless asked: every client relayed by a broker has the broker's uid. */
void rdt_server_cap_users(struct rdt_server *srv);

/* Whether clients of this server are told apart by peer for caps (addresses; pipes' users only
 * where rdt_server_cap_users was called, as for handshakes). */
bool rdt_server_caps_peers(const struct rdt_server *srv);

/* Live clients counted by peer (the `peer` a server gives its callback), for a cap in all and
 * one per peer: no one host or user can take every place. */
struct rdt_peer_count;
struct rdt_peers {
    unsigned total, max_total, max_peer;
    struct rdt_peer_count *v;
    size_t n, cap;
};
void rdt_peers_init(struct rdt_peers *p, unsigned max_total, unsigned max_peer);
void rdt_peers_free(struct rdt_peers *p);
/* Takes a place for `peer` (capped per peer when `per_peer`): NULL, or why not, in `why`, for
 * the client (busy: ...). Each place taken is given back with rdt_peers_give. */
const char *rdt_peers_take(struct rdt_peers *p, const char *peer, bool per_peer, char *why,
                           size_t len);
void rdt_peers_give(struct rdt_peers *p, const char *peer);

/* A clicon server serves one client; after that client is gone, this dials again. */
void rdt_server_redial(struct rdt_server *srv);

/* Milliseconds a new attempt from `peer` is held back after refused passwords (0: none). */
unsigned rdt_server_penalty_ms(const struct rdt_server *srv, const char *peer);

/* ---- Splicing a connection to a local program ------------------------------------------------ */

struct rdt_splice;

enum rdt_splice_event {
    RDT_SPLICE_PEER_GONE, /* the connection's peer ended its side (the program's input ended) */
    RDT_SPLICE_DONE,      /* both sides ended, or an error: the owner frees the splice now */
};

/* Called for each event; the splice may be freed only on RDT_SPLICE_DONE. */
typedef void (*rdt_splice_cb)(struct rdt_splice *sp, enum rdt_splice_event ev, void *arg);

/* Copies what `conn` reads to `wfd` and what `rfd` reads to `conn`, on `base`: two distinct
 * non-blocking descriptors, e.g. the pipes of a program's stdin and stdout. The end of the
 * connection closes `wfd`; the end of `rfd` shuts the connection's sending side. Takes `conn`,
 * `wfd` and `rfd`. */
int rdt_splice_open(struct rdt_splice **out, struct event_base *base, struct rdt_conn *conn,
                    int wfd, int rfd, rdt_splice_cb cb, void *arg);
void rdt_splice_free(struct rdt_splice *sp);
/* Bytes from `rfd` that the connection has taken so far; whether some wait for it (in `rfd`,
 * in the splice, or in the socket for its peer to read). */
uint64_t rdt_splice_sent(const struct rdt_splice *sp);
bool rdt_splice_holding(const struct rdt_splice *sp);

#endif

/* Private to transports/: helpers shared by the layers and endpoints. */
#ifndef RDQ_TRANSPORTS_INTERNAL_H
#define RDQ_TRANSPORTS_INTERNAL_H

#include "transport.h"

#include <stdarg.h>
#include <sys/socket.h>

/* printf into an error buffer; always returns -EINVAL-style `rc` so callers can `return`. */
int rdt_errf(int rc, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The TLS layer's configuration: a server's context with its certificate, or a client's with
 * what it checks the server's certificate against. Counted references: each connection holds
 * one. Messages name the store, the certificate and what is wrong. */
struct rdt_tls;
int rdt_tls_server(struct rdt_tls **out, const struct rdt_tstring *ts, char *err, size_t errlen);
int rdt_tls_client(struct rdt_tls **out, const struct rdt_tstring *ts, char *err, size_t errlen);
void rdt_tls_unref(struct rdt_tls *cfg);
/* Stacks TLS on `next` (takes it, even on failure): the server part for a server's
 * configuration, else the client part. */
struct rdt_conn *rdt_tls_conn(struct rdt_conn *next, struct rdt_tls *cfg);

/* Creates the directory of a socket at `path` under the pipe directory, and its parents, and
 * checks that it is safe (see endpoint.c). */
int rdt_pipe_dir_make(const char *path, char *err, size_t errlen);

/* com: the line's owner process (comline.c), started by the first user of a line. A dialer gets
 * a socket that carries its connection on the channel, once the other end took it; a server gets
 * a control socket, on which rdt_com_accept() takes each client's socket (1), says the owner
 * ended (0), or that nothing is there (-EAGAIN). Errors: -ECONNREFUSED nobody serves the
 * channel, -EBUSY it is busy, -ETIMEDOUT no answer on the line. */
int rdt_com_serve(const struct rdt_tstring *ts, char *err, size_t errlen);
int rdt_com_accept(int ctl, int *fd);
/* A dialer reaches the owner (started if none runs: the fork does not wait for the line), sends
 * its request, and reads the answer on the loop, as the opening of a layer of its own, the TLS
 * and session layers then on top (rdt_dial_over): rdt_dial_async for com. */
int rdt_com_dial_async(struct rdt_dialer **out, struct event_base *base,
                       const struct rdt_tstring *ts, const char *password, enum rdt_role role,
                       int timeout_ms, int64_t deadline, rdt_dial_cb cb, void *arg, char *err,
                       size_t errlen);
int rdt_com_serve(const struct rdt_tstring *ts, char *err, size_t errlen);
int rdt_com_accept(int ctl, int *fd);

/* A socket layer whose non-blocking connect is still in progress. */
struct rdt_conn *rdt_sock_connecting(const struct rdt_ops *ops, int fd, const char *what);

/* A non-blocking socket connect towards `sa`: 0 (connected), -EINPROGRESS, or -errno. */
int rdt_sock_connect_start(const struct sockaddr *sa, socklen_t salen, int *fd_out);

/* Connects to a local pipe without blocking; a server whose backlog is full is tried again
 * until `deadline` (rdt_now_ms()), then -EBUSY. */
int rdt_pipe_connect(const struct rdt_tstring *ts, int64_t deadline, struct rdt_conn **out,
                     char *err, size_t errlen);

/* clicon on the client: a stack listening on the first free port of the range (*port), whose
 * opening takes the one connection that comes from `addrs` (the server's host). */
int rdt_clicon_listen(const struct rdt_tstring *ts, const struct rdt_addrs *addrs,
                      struct rdt_conn **out, uint16_t *port, char *err, size_t errlen);

/* dial.c: dialing tcp, ssl (clicon too) and com on a loop of its own, as rdt_dial does. */
int rdt_dial_wait(struct rdt_conn **out, const struct rdt_tstring *ts, const char *password,
                  enum rdt_role role, int timeout_ms, char *err, size_t errlen);
/* rdt_dial_over, the deadline `grace_ms` later than timeout_ms (messages still say timeout_ms):
 * for a peer that itself answers by timeout_ms, with why it could not. */
int rdt_dial_over_grace(struct rdt_dialer **out, struct event_base *base, struct rdt_conn *c,
                        const char *what, const struct rdt_tstring *ts, const char *password,
                        enum rdt_role role, int timeout_ms, int64_t deadline, int grace_ms,
                        rdt_dial_cb cb, void *arg, char *err, size_t errlen);
/* The message of a handshake that did not complete in time. */
void rdt_dial_timeout_text(const struct rdt_tstring *ts, int timeout_ms, char *err, size_t errlen);

/* Binds and listens on the first free port of lo..hi: returns the fd and sets *bound. */
int rdt_tcp_listen(uint16_t lo, uint16_t hi, bool ipv6, uint16_t *bound, char *err, size_t errlen);

/* The IP address of a tcp socket's peer as text ("unknown" when there is none). */
void rdt_peer_addr(int fd, char *buf, size_t len);
/* The network a peer's address stands for, when one host may hold many of its addresses: an
 * IPv6 address's /64 ("2001:db8:1:2::/64"; not loopback nor link-local), written to `net`.
 * False for every other peer (an IPv4 address, a user), which stands for itself alone. */
bool rdt_peer_net(const char *peer, char *net, size_t len);
/* The peer of an accepted connection as text: its IP address (tcp), or "uid N" (unix). */
void rdt_conn_peer_name(struct rdt_conn *c, char *buf, size_t len);

#endif

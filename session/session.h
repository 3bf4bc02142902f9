/* rdq session: shared debugging sessions, a console debugger that many people join (rddbg on the
 * server's side, rdq -remote on the client's), and what every interactive client shares (the
 * password prompt, the byte pump of rdq -premote). The frames are in docs/protocol.md. */
#ifndef RDQ_SESSION_H
#define RDQ_SESSION_H

#include "broker.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Frames between a debugging server and its clients (after the session layer) -------- */

#define RDS_VERSION 1
#define RDS_HDR_LEN 3      /* type, then the body's length (2 bytes, big-endian) */
#define RDS_BODY_MAX 65535 /* the largest body */
#define RDS_LINE_MAX 4096  /* the longest input line */
#define RDS_NONCE_LEN 32
#define RDS_PROOF_LEN 32
#define RDS_REPLAY_MAX 65536 /* recent output a new client is first shown */
#define RDS_PROOF_LABEL "rdq control"

enum rds_type {
    /* client to server */
    RDS_JOIN = 'J',      /* JSON {"v":1,"user":U,"host":H,"observe":bool}: the first frame */
    RDS_PROOF = 'P',     /* 32 bytes: HMAC-SHA256(control password, label | nonce) */
    RDS_LINE = 'L',      /* one input line, without its newline */
    RDS_INTERRUPT = 'I', /* Ctrl-C: interrupt the debugger (empty) */
    /* server to client */
    RDS_CHALLENGE = 'C', /* 32 bytes: the nonce a controlling client proves the password on */
    RDS_WELCOME = 'W',   /* JSON {"id":N,"role":"control"|"observe","debugger":S} */
    RDS_OUTPUT = 'O',    /* the debugger's output, as it came */
    RDS_NOTICE = 'N',    /* a line of rddbg's own: joins, leaves, who typed what, refusals */
    RDS_END = 'E',       /* why the session ends for this client; the connection then closes */
};

/* Writes a frame into `out` (room for RDS_HDR_LEN + len): returns its length, 0 when the body
 * is too long. */
size_t rds_frame(uint8_t *out, enum rds_type type, const void *body, size_t len);

/* gdb's remote protocol: an ack and a packet `$payload#cs` in `buf` (cut to fit); its length.
 * rds_gdb_refusal's payload is E.why, which gdb shows as "Remote failure reply: E.why", why
 * cleared of what the protocol would read as framing. */
size_t rds_gdb_refusal(char *buf, size_t len, const char *why);

/* Reassembles frames from a stream. */
struct rds_reader {
    uint8_t buf[RDS_HDR_LEN + RDS_BODY_MAX];
    size_t len;
    size_t taken; /* the frame handed out last, dropped at the next call */
};
void rds_reader_init(struct rds_reader *r);
/* Room for more bytes: where, and how many (0 when a whole frame waits to be taken). */
uint8_t *rds_reader_room(struct rds_reader *r, size_t *room);
void rds_reader_added(struct rds_reader *r, size_t n);
/* 1 and a frame (body valid until the next call), 0 when more bytes are needed, -EPROTO for a
 * type that is not one of enum rds_type (why in err). */
int rds_reader_next(struct rds_reader *r, enum rds_type *type, const uint8_t **body, size_t *len,
                    char *err, size_t errlen);

/* ---- Clients: what rdq -premote and rdq -remote share ------------------------------------ */

/* Asks for a secret on the terminal (/dev/tty, echo off): `prompt` then ": ". 0, or -1 when
 * there is no terminal or nothing was typed. */
int rds_ask_secret(const char *prompt, char *buf, size_t len);
/* Parses client string `t` and dials it (a pipe of another host through that host's broker),
 * asking for the password of a Password=* string. A Foreign string is refused with the reason
 * `no_foreign` when that is set (a use that needs an rdq server at the other end). 0, -EINVAL
 * for a bad string (err says why: a usage error), or another -errno. */
int rds_dial(struct rdt_conn **out, const char *t, const char *no_foreign, int timeout_ms,
             char *err, size_t errlen);
/* rdq -premote: stdin to the connection, the connection to stdout, until the server ends.
 * Returns the exit status. */
int rds_pump(struct rdt_conn *c);

/* rdq -premote T -forward [ADDR:]PORT: listens on ADDR:PORT (127.0.0.1 when ADDR is left out;
 * PORT 0 takes a free one) and relays each accepted connection, up to max_conns at once, to the
 * server through a new connection to client string `t`, dialed within timeout_ms. Password=* is
 * asked once, at start. Prints "rdq: forwarding ADDR:PORT to T" on stderr, and a line for each
 * connection (through, ended, or why it was closed); runs until SIGINT or SIGTERM. Returns the
 * exit status: 0 after a signal, 1 when it cannot listen, 2 for a bad string or ADDR:PORT. */
#define RDS_FORWARD_MAX 64      /* connections at once ... */
#define RDS_FORWARD_PEER_MAX 16 /* ... and of one peer, on a listener that is not loopback */
struct rds_forward_opts {
    const char *listen;
    int timeout_ms;
    unsigned max_conns;
};
int rds_forward(const char *t, const struct rds_forward_opts *o);

/* rdq -remote: joins a shared session on `c`. Lines of stdin go to the debugger (a terminal
 * edits them); Ctrl-C interrupts it; .detach or the end of input (Ctrl-D) leaves, a pipe's
 * after the session has been quiet for wait_ms. Returns the exit status. */
struct rds_remote_opts {
    bool observe;
    const char *control_password; /* NULL: none (a server that wants one makes this an observer) */
    int wait_ms;
    int timeout_ms; /* for the server's welcome */
};
int rds_remote(struct rdt_conn *c, const struct rds_remote_opts *o);

/* ---- rddbg: a console debugger that many share (session/hub*.c) -------------------------- */

struct event_base;
struct rds_hub;

struct rds_hub_opts {
    const char *broker;           /* the broker's socket (NULL: rdb_sock_path()) */
    const char *desc;             /* the description each server registers with */
    const char *control_password; /* NULL: every client that does not observe controls */
    bool noio;                    /* no local console: neither stdin read nor output shown */
};

/* A hub on `base` with no debugger yet: -EINVAL for a control password that breaks the
 * reference's rules (letters and digits, at most 12), with why in err. */
int rds_hub_new(struct rds_hub **out, struct event_base *base, const struct rds_hub_opts *o,
                char *err, size_t errlen);
/* Opens a server for `tstring` and registers it as a Debugger Server: its number, or -errno. */
int rds_hub_listen(struct rds_hub *h, const char *tstring, char *err, size_t errlen);
/* Starts the debugger (argv[0] found on PATH) on a pseudo-terminal of its own. */
int rds_hub_start(struct rds_hub *h, char *const argv[], char *err, size_t errlen);
/* Prints on stdout the client strings of every server opened so far. */
void rds_hub_banner(struct rds_hub *h);
/* Runs the session until the debugger ends (or rddbg is told to end): the exit status to give,
 * the debugger's own (128 + S when it was killed by signal S). */
int rds_hub_run(struct rds_hub *h);
/* Frees the hub; ends the debugger if it still runs. Accepts NULL. */
void rds_hub_free(struct rds_hub *h);

/* ---- rdkdsrv: a KD connection server (session/kd*.c) ------------------------------------ */

/* A client that names the link sends, before anything else, one request line:
 *   RDQK1 <link>\n           (the link: com:port=DEV,baud=N or tcp:server=HOST,port=N)
 * and the server answers with one line before any byte of the link flows:
 *   OK <canonical link>\n    or    ERR <why>\n (then the connection ends).
 * gdb never begins with 'R' ('+' or '$'), so the server tells the two kinds of client apart by
 * their first bytes; a client that sends no request gets the server's default link. */
#define RDS_KD_MAGIC "RDQK"
#define RDS_KD_REQUEST "RDQK1 "
#define RDS_KD_LINE_MAX (RDT_STRING_MAX + 64) /* the longest request or answer line */
#define RDS_KD_ALLOW_MAX 32
#define RDS_KD_BREAK_MAX 64

struct rds_kd;

struct rds_kd_opts {
    const char *broker;                  /* the broker's socket (NULL: rdb_sock_path()) */
    const char *desc;                    /* the description servers register with */
    const char *link;                    /* the default link (NULL: none) */
    const char *allow[RDS_KD_ALLOW_MAX]; /* more links clients may name */
    size_t nallow;
    bool allow_any;                  /* clients may name any link */
    bool serial_break;               /* the break-in begins with a serial BREAK */
    char break_in[RDS_KD_BREAK_MAX]; /* then these bytes (sysrq-g: "g") */
    size_t break_len;
};

/* A server on `base`: checks every link of `o` (-EINVAL with why in err). */
int rds_kd_new(struct rds_kd **out, struct event_base *base, const struct rds_kd_opts *o, char *err,
               size_t errlen);
/* Opens and registers a server for `tstring`: for gdb clients, or, with `console`, for watchers
 * of the default link's console text (which opens that link now, for good). 0 or -errno. */
int rds_kd_listen(struct rds_kd *k, const char *tstring, bool console, char *err, size_t errlen);
/* Prints on stdout the client strings of every server opened so far. */
void rds_kd_banner(struct rds_kd *k);
/* Serves until SIGINT or SIGTERM; the exit status. */
int rds_kd_run(struct rds_kd *k);
void rds_kd_free(struct rds_kd *k);

/* Checks a link as a server would (com:port=DEV,baud=N or tcp:server=HOST,port=N): 0, or
 * -EINVAL with why in err. */
int rds_kd_link_check(const char *link, char *err, size_t errlen);
/* rdq -premote -k LINK: asks the server on `c` for `link` and reads its answer. 0; -EINVAL for
 * a link that is not one (a usage error), else -errno; why in err. */
int rds_kd_request(struct rdt_conn *c, const char *link, int timeout_ms, char *err, size_t errlen);

#endif

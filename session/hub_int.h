/* The hub of rddbg, inside: the debugger on its pseudo-terminal, the local console, the servers
 * and their clients. Private to session/ (hub.c, hub_pty.c, hub_client.c, hub_cmds.c). */
#ifndef RDQ_HUB_INT_H
#define RDQ_HUB_INT_H

#include "session.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <termios.h>
#include <time.h>

#define HUB_CLIENTS_MAX 64       /* connections at once, joined or joining ... */
#define HUB_PEER_CLIENTS_MAX 16  /* ... and of one peer (an address) */
#define HUB_SERVERS_MAX 32       /* servers over a life, disabled ones included */
#define HUB_QUEUE_MAX (4u << 20) /* output a client may hold unread before it is dropped */
#define HUB_INPUT_MAX (1u << 20) /* input the debugger may hold unread before lines are refused */
#define HUB_JOIN_MS 10000        /* from the connection to the welcome */
#define HUB_FLUSH_MS 2000        /* at the end, for the last frames to go out */
#define HUB_NAME_MAX 64          /* a user or host name as a client gives it */
#define HUB_PEER_MAX 64

struct rds_hub;

/* One server, numbered for life; `rs` is NULL once it was ended (.endsrv). */
struct hub_server {
    struct rds_hub *h;
    struct rdb_server *rs;
    int n;
    bool clicon;
    char advert[RDT_STRING_MAX];
};

enum hub_state { HUB_JOINING, HUB_PROVING, HUB_JOINED, HUB_CLOSING };

struct hub_client {
    struct rds_hub *h;
    struct hub_server *via;
    struct rdt_conn *conn;
    struct event *rev, *wev, *timer;
    struct evbuffer *out;
    enum hub_state state;
    bool observe;
    bool dead; /* to be freed by the reaper */
    unsigned id;
    uint8_t nonce[RDS_NONCE_LEN];
    char user[HUB_NAME_MAX + 1], host[HUB_NAME_MAX + 1];
    char peer[HUB_PEER_MAX];
    char transport[16]; /* the connection's top layer */
    time_t last;        /* the last frame received */
    TAILQ_ENTRY(hub_client) link;
    struct rds_reader rd;
};
TAILQ_HEAD(hub_clients, hub_client);

/* Who typed a line: a client, or the local console (NULL). */
struct rds_hub {
    struct event_base *base;
    struct rds_hub_opts o;
    char control_pw[RDT_PASSWORD_MAX + 1];
    char broker[256];
    char desc[RDB_DESC_MAX + 1];
    char debugger[256]; /* the command line, for the welcome */
    char user[HUB_NAME_MAX + 1], host[256];
    /* the debugger */
    pid_t pid; /* 0 once reaped */
    int master;
    struct event *pty_rev, *pty_wev;
    struct evbuffer *pty_in;
    uint8_t ring[RDS_REPLAY_MAX];
    size_t ring_len, ring_head; /* bytes held, and where the next one goes */
    /* the local console */
    bool console;   /* reads stdin and shows the session on stdout */
    bool tty;       /* stdin is a terminal, set to lines while rddbg runs */
    bool tty_saved; /* `saved` holds its settings */
    bool in_polled; /* stdin can be polled (a terminal, a pipe, a socket) */
    struct termios saved;
    struct event *in_ev, *out_ev;
    int tty_out; /* the console's terminal opened anew, non-blocking (the shell's stays as it is) */
    struct evbuffer *in_buf, *cout;
    /* servers and clients */
    struct hub_server *servers[HUB_SERVERS_MAX];
    int nservers;
    struct hub_clients clients;
    unsigned nclients, next_id;
    struct rdt_peers peers; /* the clients by peer, for the caps */
    struct event *reap_ev, *kill_ev, *end_ev;
    struct event *sigs[5];
    /* the end */
    bool ending;
    int status; /* rddbg's exit status */
};

/* hub.c */
void hub_fanout(struct rds_hub *h, enum rds_type type, const void *body, size_t len);
void hub_notice_all(struct rds_hub *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A notice to one participant: a client, or the console (NULL). */
void hub_notice(struct rds_hub *h, struct hub_client *to, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void hub_console_write(struct rds_hub *h, const void *buf, size_t len);
/* A line typed by a participant (a client, or the console: NULL). */
void hub_line(struct rds_hub *h, struct hub_client *from, const char *line);
void hub_interrupt_from(struct rds_hub *h, struct hub_client *from);
unsigned hub_joined(const struct rds_hub *h);

/* hub_pty.c */
int hub_pty_start(struct rds_hub *h, char *const argv[], char *err, size_t errlen);
int hub_pty_send(struct rds_hub *h, const char *line); /* -ENOBUFS when the debugger lags */
void hub_pty_interrupt(struct rds_hub *h);
/* The local terminal's window changed: the debugger's follows (SIGWINCH). */
void hub_pty_resize(struct rds_hub *h);
void hub_pty_drain(struct rds_hub *h);
void hub_pty_close(struct rds_hub *h);

/* hub_client.c */
void hub_client_new(struct hub_server *via, struct rdt_conn *conn, const char *peer);
/* Queues a frame; a client holding too much is dropped. */
void hub_client_send(struct hub_client *c, enum rds_type type, const void *body, size_t len);
/* Ends a client: `why` (NULL: none) goes as its E frame, then the connection closes. */
void hub_client_end(struct hub_client *c, const char *why);
void hub_client_free(struct hub_client *c);
void hub_reap(struct rds_hub *h);

/* hub_cmds.c */
bool hub_is_command(const char *line);
void hub_command(struct rds_hub *h, struct hub_client *from, const char *line);
int hub_server_open(struct rds_hub *h, const char *tstring, char *err, size_t errlen);
void hub_servers_close(struct rds_hub *h);

#endif

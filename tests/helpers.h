/* Shared test harness: real servers on a libevent loop in a thread, free ports, a recording
 * relay, and running the programs. */
#ifndef RDQ_TEST_HELPERS_H
#define RDQ_TEST_HELPERS_H

#include "transport.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TS_MAX_EVENTS 32

struct test_server {
    struct rdt_server *srv;
    struct event_base *base;
    pthread_t thread;
    pthread_mutex_t lock;
    volatile int stop;
    int ready;  /* clients that passed the session layer */
    int errors; /* failures the server reported */
    char last_error[RDT_ERR_MAX + 64];
    char last_peer[64];
    unsigned last_penalty_ms; /* the peer's penalty right after its failure */
    char advert[RDT_STRING_MAX];
    struct rdt_bound bound;
};

/* Starts a server for `tstring` on its own loop thread; it greets each client with "welcome\n"
 * and closes. Returns 0, or -errno with the error in `err`. */
int test_server_start(struct test_server *t, const char *tstring, char *err, size_t errlen);
void test_server_stop(struct test_server *t);
/* Waits up to `ms` for `*counter` (read under the lock) to reach `want`. */
bool test_server_wait(struct test_server *t, const int *counter, int want, int ms);

/* A base port p where p..p+n-1 are free on both IPv4 and IPv6 wildcard addresses, below the
 * ephemeral range (where other tests' client sockets take theirs). */
unsigned test_free_ports(unsigned n);
/* Occupies `port` with a listening socket; returns the fd. */
int test_take_port(unsigned port);

/* A listener on 127.0.0.1:port whose backlog is full: a connect to it never completes (its SYN
 * goes unanswered). Returns the listener; `fill` gets the two connections that fill it. */
int test_unanswered_port(unsigned port, int fill[2]);

/* Polls the file at `path` (up to `ms`) until it contains `needle`; its text is in buf. */
bool test_wait_file(const char *path, const char *needle, int ms, char *buf, size_t len);

/* A private pipe directory for this test (sets RDQ_PIPE_DIR). */
void test_private_pipe_dir(void);

/* Parses a client string and dials it (the session layer too, within 5 s): 0 or -errno, with
 * why in `err`. */
struct rdt_conn;
int test_connect(struct rdt_conn **out, const char *tstring, const char *password, char *err,
                 size_t errlen);
/* Reads into `buf` until it holds `needle` (NULL: until the end) or a read waits `ms`: the
 * count of bytes (which may hold NULs), or -errno. */
ssize_t test_read_until(struct rdt_conn *c, const char *needle, char *buf, size_t len, int ms);
/* A plain socket to 127.0.0.1:port, connected: the fd, or -errno. */
int test_connect_port(unsigned port);
/* The same from the local address `from` (NULL: the system's choice), e.g. 127.0.0.2. */
int test_connect_port_from(unsigned port, const char *from);
/* Makes every address of the IPv6 network `net` ("2001:db8:7::/64") this machine's, on lo, as
 * one host that holds a whole /64 has (add false: takes it away again). Needs root. */
bool test_v6_net(const char *net, bool add);
/* A plain socket to [`to`]:`port` from the IPv6 address `from` (see test_session_from): the fd,
 * or -errno with why in err. */
int test_connect_from6(const char *from, const char *to, unsigned port, char *err, size_t errlen);
/* A session (the session layer done, with `password` or none) to [`to`]:`port` from the IPv6
 * address `from`, which need not be configured: one of a test_v6_net network. */
int test_session_from(struct rdt_conn **out, const char *from, const char *to, unsigned port,
                      const char *password, char *err, size_t errlen);
/* Reads from fd (up to `ms`) until the end or until buf holds `want` (NULL: the end); what came
 * is in buf. True when `want` came (NULL: when the end came). */
bool test_fd_read_until(int fd, const char *want, int ms, char *buf, size_t len);
/* Sends `line` on each of the `n` sockets, then reads each (up to `ms`) for it to come back, and
 * closes them: how many echoed it. */
int test_fds_echoed(const int *fd, int n, const char *line, int ms);
/* Parses a client string and dials it; reads the greeting into `greet`. */
int test_dial(const char *tstring, const char *password, char *greet, size_t len, char *err,
              size_t errlen);

/* A relay on 127.0.0.1:listen_port to 127.0.0.1:to_port that records every byte both ways. */
struct test_relay {
    pthread_t thread;
    int lfd;
    unsigned port, to_port;
    unsigned char buf[65536];
    size_t len;
};
int test_relay_start(struct test_relay *r, unsigned to_port);
void test_relay_join(struct test_relay *r);

/* Runs a program of the build (RDQ_BIN_DIR) with a shell command line; captures stdout and
 * stderr (merged when `merge`); returns the exit status. */
int test_run(const char *cmdline, char *out, size_t len, bool merge);
/* Polls the screen of tmux session "t" on socket `sock` (with `history`, its scrollback too)
 * until it shows `needle`, up to `ms`; the screen is left in `screen`. */
bool test_tmux_shows(const char *sock, bool history, const char *needle, int ms, char *screen,
                     size_t len);
/* dnsmasq on a free loopback port, answering only as `records` (its options, NULL-terminated)
 * say; exports RDQ_DNS_SERVERS for it. Returns the pid (stop it with test_stop). */
pid_t test_dnsmasq(const char *const records[]);
/* The same with stdout in out and stderr in err. */
int test_run_err(const char *cmdline, char *out, size_t len, char *err, size_t errlen);

#endif

/* ---- Real programs: a private broker and servers ---- */

/* A private broker: its own socket directory, pipe directory and query port (exported through
 * RDQ_BROKER_SOCK, RDQ_PIPE_DIR and RDQ_BROKER_PORT for the programs this test runs). */
struct test_broker {
    char dir[64];
    char sock[128];
    char log[128];
    unsigned port;
    pid_t pid;
    const char *extra[12]; /* more arguments for rdbroker, NULL-terminated */
};

/* Spawns a program of the build with argv (argv[0] is the program's name in RDQ_BIN_DIR, else
 * on PATH),
 * output appended to `log`; as `uid` when it is not 0. Returns the pid. */
pid_t test_spawn(const char *const argv[], const char *log, uid_t uid);
/* Sends `sig` and reaps. */
void test_stop(pid_t pid, int sig);
/* Two brokers (b[0], b[1]) with a process server each (stub cat), listed by the time it
 * returns: on tcp port srv[0], and on srv[1] with password=abc. 0, or -1 with why in out. */
int test_two_brokers(struct test_broker b[2], unsigned srv[2], char *out, size_t len);
/* Waits up to `ms` until something listens on tcp `port` (ss sees it). */
bool test_wait_listening(unsigned port, int ms);
/* Waits up to `ms` for `pid` (a child) to exit: its exit status (128+N for signal N), or -1. */
int test_wait_exit(pid_t pid, int ms);
/* Kills (SIGKILL) and reaps every spawned process not stopped yet; test_broker_cleanup does. */
void test_stop_all(void);

int test_broker_start(struct test_broker *b); /* makes the dir and port on first use */
void test_broker_stop(struct test_broker *b, int sig);
void test_broker_cleanup(struct test_broker *b);
/* True when no program of this broker's directory (broker.log, servers.log, ...) reported a
 * sanitizer error; else the report is in out. */
bool test_logs_clean(const struct test_broker *b, char *out, size_t len);
/* Runs `rdq -QR host ...` into out; returns the exit status. */
int test_qr(const char *args, char *out, size_t len);
/* Polls `rdq -QR args` until its output has `rows` lines after the header (up to ms). */
bool test_wait_rows(const char *args, int rows, int ms, char *out, size_t len);
/* Counts the lines of `s` that contain `needle`. */
int test_count(const char *s, const char *needle);

/* A private system bus and avahi-daemon for a test: the bus's socket in a directory of the
 * test's own, the daemon in a network namespace of its own (only lo, IPv4) with a private /run,
 * so that tests running side by side never see each other's services. Needs root. */
#ifndef RDQ_TEST_AVAHI_HARNESS_H
#define RDQ_TEST_AVAHI_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct test_avahi {
    char dir[64];   /* configs, the bus's socket */
    char addr[128]; /* the bus's address, exported as DBUS_SYSTEM_BUS_ADDRESS */
    char ns[48];    /* the network namespace */
    char host[48];  /* avahi-daemon's host name, unique per test */
    char extra[96]; /* more lines of avahi-daemon.conf's [server] section */
    pid_t dbus;
    pid_t daemon;
};

/* Whether this process can run the harness (root, ip netns); else why not. */
bool test_avahi_usable(char *why, size_t len);

/* A private bus (exported for the programs the test runs) and, when `daemon`, avahi-daemon on
 * it, running when this returns. 0, or -errno. */
int test_avahi_start(struct test_avahi *a, bool daemon);
/* Restarts avahi-daemon with `lines` added to its [server] section ("objects-per-client-max=4").
 * 0, or -errno. */
int test_avahi_daemon_config(struct test_avahi *a, const char *lines);
/* A second interface in the daemon's namespace (rdqd0, a bridge without ports, 10.213.0.1/24):
 * services are then seen on two interfaces. 0, or -EIO. */
int test_avahi_add_iface(struct test_avahi *a);
/* Points DBUS_SYSTEM_BUS_ADDRESS at a socket that does not exist: no bus at all. */
void test_avahi_no_bus(struct test_avahi *a);
int test_avahi_daemon_start(struct test_avahi *a); /* waits until it runs */
void test_avahi_daemon_stop(struct test_avahi *a);
/* Stops every process of the harness, deletes the namespace and the directory. */
void test_avahi_cleanup(struct test_avahi *a);

/* Runs argv (found on PATH) in the background as a child that dies with this process; output to
 * /dev/null. Returns the pid; test_avahi_kill stops and reaps it. */
pid_t test_avahi_spawn(const char *const argv[]);
void test_avahi_kill(pid_t pid);

#endif

/* The connection layers end to end over real loopback sockets: tcp ranges, clicon, IPv6, unix
 * pipes, the session layer's version check and password proof. */
#include "helpers.h"
#include "internal.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char err[RDT_ERR_MAX], greet[64];

static void start(struct test_server *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int dial(const char *password, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void start(struct test_server *t, const char *fmt, ...)
{
    char s[RDT_STRING_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, sizeof(s), fmt, ap);
    va_end(ap);
    int rc = test_server_start(t, s, err, sizeof(err));
    cr_assert_eq(rc, 0, "server %s: %s", s, err);
}

static int dial(const char *password, const char *fmt, ...)
{
    char s[RDT_STRING_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, sizeof(s), fmt, ap);
    va_end(ap);
    err[0] = greet[0] = '\0';
    return test_dial(s, password, greet, sizeof(greet), err, sizeof(err));
}

Test(tcp, single_port)
{
    struct test_server t;
    unsigned p = test_free_ports(1);
    start(&t, "tcp:port=%u", p);
    cr_assert_eq(t.bound.port, p);
    cr_assert_eq(dial(NULL, "tcp:server=127.0.0.1,port=%u", p), 0, "%s", err);
    cr_expect_str_eq(greet, "welcome\n");
    cr_expect(test_server_wait(&t, &t.ready, 1, 2000));
    test_server_stop(&t);
}

Test(tcp, range_skips_taken_ports)
{
    struct test_server t;
    unsigned p = test_free_ports(5);
    int a = test_take_port(p), b = test_take_port(p + 1);
    cr_assert(a >= 0 && b >= 0);
    char s[128], want[64];
    snprintf(s, sizeof(s), "tcp:port=%u:%u,password=abc", p, p + 4);
    cr_assert_eq(test_server_start(&t, s, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(t.bound.port, p + 2);
    snprintf(want, sizeof(want), "tcp:Port=%u:%u,Password=*", p + 2, p + 4);
    cr_expect_str_eq(t.advert, want);
    /* the listing's form is a client string as it is: Port=53:60 means port 53 */
    snprintf(s, sizeof(s), "%s,Server=localhost", want);
    cr_expect_eq(test_dial(s, "abc", greet, sizeof(greet), err, sizeof(err)), 0, "%s", err);
    cr_expect_str_eq(greet, "welcome\n");
    test_server_stop(&t);
    close(a);
    close(b);
}

Test(tcp, range_all_taken)
{
    struct test_server t;
    unsigned p = test_free_ports(2);
    int a = test_take_port(p), b = test_take_port(p + 1);
    cr_assert(a >= 0 && b >= 0, "ports %u and %u could not be taken", p, p + 1);
    char s[64], want[96];
    snprintf(s, sizeof(s), "tcp:port=%u:%u", p, p + 1);
    cr_assert_eq(test_server_start(&t, s, err, sizeof(err)), -EADDRINUSE);
    snprintf(want, sizeof(want), "port: every port of %u:%u is in use", p, p + 1);
    cr_expect_str_eq(err, want);
    snprintf(s, sizeof(s), "tcp:port=%u", p);
    cr_assert_eq(test_server_start(&t, s, err, sizeof(err)), -EADDRINUSE);
    cr_expect(strstr(err, "is in use") != NULL, "%s", err);
    close(a);
    close(b);
}

static bool have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

Test(tcp, ipv6_loopback)
{
    if (!have_ipv6_loopback())
        cr_skip_test("no IPv6 loopback on this machine");
    struct test_server t;
    unsigned p = test_free_ports(1);
    start(&t, "tcp:port=%u,ipversion=6", p);
    cr_expect_eq(dial(NULL, "tcp:server=::1,port=%u,ipversion=6", p), 0, "%s", err);
    cr_expect_str_eq(greet, "welcome\n");
    cr_expect_eq(dial(NULL, "tcp:server=[::1],port=%u", p), 0, "%s", err);
    /* an IPv6-only server is not reachable over IPv4 */
    cr_expect_neq(dial(NULL, "tcp:server=127.0.0.1,port=%u", p), 0);
    cr_expect_eq(dial(NULL, "tcp:server=127.0.0.1,port=%u,ipversion=6", p), -EHOSTUNREACH);
    test_server_stop(&t);
}

Test(tcp, connection_refused_is_named)
{
    unsigned p = test_free_ports(1);
    cr_expect_eq(dial(NULL, "tcp:server=127.0.0.1,port=%u", p), -ECONNREFUSED);
    cr_expect(strstr(err, "cannot connect to 127.0.0.1") && strstr(err, "refused"), "%s", err);
}

Test(clicon, server_retries_until_client_listens)
{
    struct test_server t;
    unsigned p = test_free_ports(1);
    start(&t, "tcp:port=%u,clicon=127.0.0.1", p); /* no client yet: it keeps trying */
    usleep(300 * 1000);
    cr_expect_eq(t.ready, 0);
    cr_expect_eq(dial(NULL, "tcp:clicon=127.0.0.1,port=%u", p), 0, "%s", err);
    cr_expect_str_eq(greet, "welcome\n");
    cr_expect(test_server_wait(&t, &t.ready, 1, 2000));
    /* after that client, it dials again for the next one */
    cr_expect_eq(dial(NULL, "tcp:clicon=127.0.0.1,port=%u", p), 0, "%s", err);
    cr_expect(test_server_wait(&t, &t.ready, 2, 2000));
    test_server_stop(&t);
}

Test(clicon, client_listens_on_a_range)
{
    struct test_server t;
    unsigned p = test_free_ports(4);
    int taken = test_take_port(p);
    start(&t, "tcp:port=%u,clicon=localhost,password=s3cret", p + 1);
    char s[64];
    snprintf(s, sizeof(s), "tcp:clicon=127.0.0.1,port=%u:%u,password=s3cret", p, p + 3);
    cr_expect_eq(test_dial(s, NULL, greet, sizeof(greet), err, sizeof(err)), 0, "%s", err);
    cr_expect_str_eq(greet, "welcome\n");
    test_server_stop(&t);
    close(taken);
}

Test(npipe, serve_and_connect, .init = test_private_pipe_dir)
{
    struct test_server t;
    start(&t, "npipe:pipe=rabbit");
    cr_expect_str_eq(t.bound.name, "rabbit");
    cr_expect(strstr(t.bound.path, "/rabbit") != NULL);
    cr_expect_str_eq(t.advert, "npipe:Pipe=rabbit");
    cr_expect_eq(dial(NULL, "npipe:server=localhost,pipe=rabbit"), 0, "%s", err);
    cr_expect_str_eq(greet, "welcome\n");
    cr_expect_eq(dial(NULL, "npipe:server=.,pipe=tiger"), -ENOENT);
    cr_expect(strstr(err, "no server on pipe tiger") != NULL, "%s", err);
    test_server_stop(&t);
    cr_expect(access(t.bound.path, F_OK) != 0, "the socket file is removed at the end");
}

Test(npipe, unsafe_pipe_directories_are_refused, .init = test_private_pipe_dir)
{
    char open_dir[160], under[200];
    snprintf(open_dir, sizeof(open_dir), "%s/open", getenv("RDQ_PIPE_DIR"));
    cr_assert_eq(mkdir(open_dir, 0700), 0);
    cr_assert_eq(chmod(open_dir, 0777), 0); /* anyone may write here, and it is not sticky */
    struct test_server t;
    /* the socket's own directory, and a directory above it */
    snprintf(under, sizeof(under), "%s/pipes", open_dir);
    const char *dirs[] = {open_dir, under};
    for (int i = 0; i < 2; i++) {
        setenv("RDQ_PIPE_DIR", dirs[i], 1);
        cr_expect_eq(test_server_start(&t, "npipe:pipe=dbg", err, sizeof(err)), -EPERM, "%s",
                     dirs[i]);
        char want[256];
        snprintf(want, sizeof(want), "pipe directory %s may be written by other users", open_dir);
        cr_expect(strstr(err, want), "%s", err);
        /* nor does a client go there */
        cr_expect_eq(dial(NULL, "npipe:server=localhost,pipe=dbg"), -EPERM, "%s", err);
    }
}

Test(npipe, in_use_by_a_live_server, .init = test_private_pipe_dir)
{
    struct test_server a, b;
    start(&a, "npipe:pipe=busy");
    cr_expect_eq(test_server_start(&b, "npipe:pipe=busy", err, sizeof(err)), -EADDRINUSE);
    cr_expect_str_eq(err, "pipe busy is in use by a running server: choose another name");
    test_server_stop(&a);
}

Test(npipe, stale_socket_is_taken_over, .init = test_private_pipe_dir)
{
    char path[108];
    cr_assert_eq(rdt_pipe_path("stale", path, sizeof(path), err, sizeof(err)), 0);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd); /* a server that died: its socket file stays behind */
    cr_assert_eq(access(path, F_OK), 0);
    struct test_server t;
    start(&t, "npipe:pipe=stale");
    cr_expect_eq(dial(NULL, "npipe:server=localhost,pipe=stale"), 0, "%s", err);
    test_server_stop(&t);
}

Test(npipe, printf_codes_become_pid_and_tid, .init = test_private_pipe_dir)
{
    struct test_server t;
    start(&t, "npipe:pipe=dbg%%d_%%x");
    char want[64];
    snprintf(want, sizeof(want), "dbg%d_%x", getpid(), gettid());
    cr_expect_str_eq(t.bound.name, want);
    char s[96];
    snprintf(s, sizeof(s), "npipe:Pipe=%s", want);
    cr_expect_str_eq(t.advert, s);
    snprintf(s, sizeof(s), "npipe:server=localhost,pipe=%s", want);
    cr_expect_eq(test_dial(s, NULL, greet, sizeof(greet), err, sizeof(err)), 0, "%s", err);
    test_server_stop(&t);
}

Test(npipe, remote_host_is_refused_with_reason, .init = test_private_pipe_dir)
{
    cr_expect_eq(dial(NULL, "npipe:server=otherbox,pipe=x"), -EHOSTUNREACH);
    cr_expect(strstr(err, "otherbox is not this host") != NULL, "%s", err);
}

Test(auth, right_password)
{
    struct test_server t;
    unsigned p = test_free_ports(1);
    start(&t, "tcp:port=%u,password=Tiger12", p);
    cr_expect_eq(dial(NULL, "tcp:server=127.0.0.1,port=%u,password=Tiger12", p), 0, "%s", err);
    cr_expect_str_eq(greet, "welcome\n");
    /* Password=* in a client string: the password comes from the caller */
    cr_expect_eq(dial("Tiger12", "tcp:server=127.0.0.1,port=%u,password=*", p), 0, "%s", err);
    cr_expect(test_server_wait(&t, &t.ready, 2, 2000));
    cr_expect_eq(t.errors, 0);
    test_server_stop(&t);
}

Test(auth, wrong_password_is_refused_and_slowed)
{
    struct test_server t;
    unsigned p = test_free_ports(1);
    start(&t, "tcp:port=%u,password=Tiger12", p);
    cr_expect_eq(dial(NULL, "tcp:server=127.0.0.1,port=%u,password=tiger12", p), -EACCES);
    cr_expect_str_eq(err, "Error 0x80004005: access denied: wrong password");
    cr_assert(test_server_wait(&t, &t.errors, 1, 2000));
    cr_expect(strstr(t.last_error, "Error 0x80004005: access denied: wrong password"), "%s",
              t.last_error);
    cr_expect_eq(t.last_penalty_ms, 250);
    cr_expect_eq(dial(NULL, "tcp:server=127.0.0.1,port=%u,password=Tiger1", p), -EACCES);
    cr_assert(test_server_wait(&t, &t.errors, 2, 2000));
    cr_expect_eq(t.last_penalty_ms, 500, "the hold-back doubles with each refusal");
    /* held back: the server's greeting does not come at once */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    cr_expect_eq(poll(&pf, 1, 100), 0, "a refused peer is answered only after its hold-back");
    /* and while that attempt waits, another from the same peer is turned away at once */
    int fd2 = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(fd2, (struct sockaddr *)&a, sizeof(a)), 0);
    struct pollfd pf2 = {.fd = fd2, .events = POLLIN};
    char byte;
    cr_expect_eq(poll(&pf2, 1, 300), 1, "a second attempt was not turned away");
    cr_expect_leq(read(fd2, &byte, 1), 0, "a second attempt was served");
    close(fd2);
    cr_expect_eq(poll(&pf, 1, 3000), 1, "and answered after it");
    close(fd);
    /* the right password still works, and clears the record */
    cr_expect_eq(dial(NULL, "tcp:server=127.0.0.1,port=%u,password=Tiger12", p), 0, "%s", err);
    test_server_stop(&t);
}

Test(auth, missing_password_is_refused)
{
    struct test_server t;
    unsigned p = test_free_ports(1);
    start(&t, "tcp:port=%u,password=Tiger12", p);
    cr_expect_eq(dial(NULL, "tcp:server=127.0.0.1,port=%u", p), -EACCES);
    cr_expect_str_eq(err, "Error 0x80004005: access denied: the server wants a password "
                          "(password=...)");
    cr_assert(test_server_wait(&t, &t.errors, 1, 2000));
    cr_expect(strstr(t.last_error, "Error 0x80004005: access denied: no password given"), "%s",
              t.last_error);
    test_server_stop(&t);
}

/* A tcp server with `items` after its port, reached with password Zebra42Lion through a relay
 * that records every byte of the session. */
static void dial_recorded(struct test_server *t, struct test_relay *r, const char *items)
{
    unsigned p = test_free_ports(1);
    start(t, "tcp:port=%u%s", p, items);
    cr_assert_eq(test_relay_start(r, p), 0);
    cr_expect_eq(dial(NULL, "tcp:server=127.0.0.1,port=%u,password=Zebra42Lion", r->port), 0, "%s",
                 err);
    cr_expect_str_eq(greet, "welcome\n");
    test_relay_join(r);
}

Test(auth, password_never_crosses_the_wire)
{
    struct test_server t;
    struct test_relay r;
    dial_recorded(&t, &r, ",password=Zebra42Lion");
    /* the relay saw the whole session: both hellos, the verdict and the greeting */
    cr_expect_geq(r.len, 40 + 72 + 41 + 8);
    cr_expect(memmem(r.buf, r.len, "welcome\n", 8) != NULL);
    cr_expect(memmem(r.buf, r.len, "RDQS", 4) != NULL);
    cr_expect_null(memmem(r.buf, r.len, "Zebra42Lion", 11), "the password crossed the wire");
    cr_expect_null(memmem(r.buf, r.len, "Zebra4", 6), "part of the password crossed the wire");
    test_server_stop(&t);
}

Test(auth, no_proof_goes_to_a_server_that_asks_for_none)
{
    struct test_server t;
    struct test_relay r;
    dial_recorded(&t, &r, "");
    /* the client hello went back without a proof: flags 0 and 32 zero bytes */
    const uint8_t *hello = memmem(r.buf, r.len, "RDQC", 4);
    cr_assert_not_null(hello, "no client hello");
    cr_assert_leq((size_t)(hello - r.buf) + 8 + 65, r.len);
    static const uint8_t zeros[32];
    cr_expect_eq(hello[8], 0, "the client hello says a proof follows");
    cr_expect_eq(memcmp(hello + 8 + 1 + 32, zeros, 32), 0, "a proof went to the server");
    test_server_stop(&t);
}

Test(version, mismatch_is_named_on_both_ends)
{
    struct test_server t;
    unsigned p = test_free_ports(1);
    start(&t, "tcp:port=%u", p);
    struct rdt_tstring ts;
    char s[64];
    snprintf(s, sizeof(s), "tcp:server=127.0.0.1,port=%u", p);
    cr_assert_eq(rdt_parse(s, RDT_CLIENT, &ts, err, sizeof(err)), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    struct rdt_conn *c = rdt_auth_conn(rdt_sock_conn(&rdt_tcp_ops, fd), RDT_ROLE_CLIENT, NULL,
                                       RDT_PROTOCOL_VERSION + 1);
    cr_expect_eq(rdt_conn_open_wait(c, 3000), -EPROTO);
    cr_expect_str_eq(rdt_conn_error(c), "The client is not using same version of remoting "
                                        "protocol as the server (client protocol 2, server "
                                        "protocol 1)");
    rdt_conn_free(c);
    cr_assert(test_server_wait(&t, &t.errors, 1, 2000));
    cr_expect(strstr(t.last_error, "The client is not using same version of remoting protocol "
                                   "as the server (client protocol 2, server protocol 1)"),
              "%s", t.last_error);
    test_server_stop(&t);
}

static int raw_exchange(unsigned port, const void *send_buf, size_t len)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        return -1;
    ssize_t w = write(fd, send_buf, len);
    char buf[256];
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    while (poll(&pf, 1, 3000) == 1 && read(fd, buf, sizeof(buf)) > 0)
        ;
    close(fd);
    return (int)w;
}

Test(frames, bad_frames_end_that_connection_only)
{
    struct test_server t;
    unsigned p = test_free_ports(1);
    start(&t, "tcp:port=%u", p);
    raw_exchange(p, "GET / HTTP/1.0\r\n\r\n", 18);
    cr_assert(test_server_wait(&t, &t.errors, 1, 2000));
    cr_expect(strstr(t.last_error, "does not speak the rdq protocol"), "%s", t.last_error);
    const unsigned char oversized[8] = {'R', 'D', 'Q', 'C', 0, 1, 0xff, 0xff};
    raw_exchange(p, oversized, sizeof(oversized));
    cr_assert(test_server_wait(&t, &t.errors, 2, 2000));
    cr_expect(strstr(t.last_error, "bad handshake frame"), "%s", t.last_error);
    raw_exchange(p, "RD", 2); /* cut short */
    cr_assert(test_server_wait(&t, &t.errors, 3, 2000));
    cr_expect(strstr(t.last_error, "closed the connection during the handshake"), "%s",
              t.last_error);
    /* and the server goes on serving */
    cr_expect_eq(dial(NULL, "tcp:server=127.0.0.1,port=%u", p), 0, "%s", err);
    cr_expect_str_eq(greet, "welcome\n");
    test_server_stop(&t);
}

Test(tcp, out_of_descriptors_pauses_and_recovers)
{
    struct test_server t;
    unsigned p = test_free_ports(1);
    start(&t, "tcp:port=%u", p);
    struct rlimit old, low;
    getrlimit(RLIMIT_NOFILE, &old);
    int probe = dup(0), fds[64], n = 0;
    close(probe);
    low = old;
    low.rlim_cur = (rlim_t)probe + 6; /* a few for clients, none left for the server */
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    while (n < 64) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            break;
        fds[n++] = fd;
        connect(fd, (struct sockaddr *)&a, sizeof(a));
    }
    cr_assert(test_server_wait(&t, &t.errors, 1, 3000));
    pthread_mutex_lock(&t.lock);
    cr_expect(strstr(t.last_error, "accept: Too many open files; pausing for 100 ms"), "%s",
              t.last_error);
    pthread_mutex_unlock(&t.lock);
    while (n > 0)
        close(fds[--n]);
    setrlimit(RLIMIT_NOFILE, &old);
    cr_expect_eq(dial(NULL, "tcp:server=127.0.0.1,port=%u", p), 0, "%s", err);
    cr_expect_str_eq(greet, "welcome\n");
    test_server_stop(&t);
}

/* ---- Peers counted together: an IPv6 /64, which one host may hold whole ---- */

Test(peers, an_ipv6_address_stands_for_its_64_and_no_other_peer_for_more_than_itself)
{
    char net[64] = "";
    cr_expect(rdt_peer_net("2001:db8:1:2:3:4:5:6", net, sizeof(net)));
    cr_expect_str_eq(net, "2001:db8:1:2::/64");
    const char *alone[] = {"::1",       "fe80::1",  "::",           "::ffff:192.0.2.1",
                           "192.0.2.1", "uid 1000", "fe80::1%eth0", "unknown"};
    for (size_t i = 0; i < sizeof(alone) / sizeof(alone[0]); i++)
        cr_expect_not(rdt_peer_net(alone[i], net, sizeof(net)), "%s", alone[i]);
}

Test(peers, a_64_takes_half_the_places_and_each_address_its_own_share)
{
    struct rdt_peers p;
    rdt_peers_init(&p, 8, 2);
    char why[160];
    const char *a[] = {"2001:db8::1", "2001:db8::2", "2001:db8::3"};
    cr_expect_null(rdt_peers_take(&p, a[0], true, why, sizeof(why)));
    cr_expect_null(rdt_peers_take(&p, a[0], true, why, sizeof(why)));
    cr_expect_str_eq(rdt_peers_take(&p, a[0], true, why, sizeof(why)),
                     "busy: 2 clients from your address 2001:db8::1, the most one host may have");
    cr_expect_null(rdt_peers_take(&p, a[1], true, why, sizeof(why)));
    cr_expect_null(rdt_peers_take(&p, a[1], true, why, sizeof(why)));
    cr_expect_str_eq(rdt_peers_take(&p, a[2], true, why, sizeof(why)),
                     "busy: 4 clients from your network 2001:db8::/64, the most one network may "
                     "have");
    cr_expect_null(rdt_peers_take(&p, "2001:db8:0:1::1", true, why, sizeof(why)), "%s", why);
    cr_expect_null(rdt_peers_take(&p, a[2], false, why, sizeof(why)), "not capped per peer");
    rdt_peers_give(&p, a[0]);
    rdt_peers_give(&p, a[2]);
    cr_expect_null(rdt_peers_take(&p, a[2], true, why, sizeof(why)), "%s", why);
    cr_expect_eq(p.total, 5);
    rdt_peers_free(&p);
}

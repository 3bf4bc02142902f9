/* rdq: the client program. Verbs live in a table; each parses its own arguments. */
#include "rdq.h"
#include "session.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct verb {
    const char *name;
    const char *args;
    const char *help;
    int (*run)(int argc, char **argv);
};

static int cmd_check(int argc, char **argv);
static int cmd_help(int argc, char **argv);
static int cmd_qr(int argc, char **argv);
static int cmd_premote(int argc, char **argv);
static int cmd_remote(int argc, char **argv);
static int cmd_ports(int argc, char **argv);

static const struct verb verbs[] = {
    {"-QR", "[\\\\]host [-json] [-kind all|debugger|remote] [-port N] [-via T] [-timeout MS]",
     "list the servers of a host, as its broker knows them; -via T reaches the broker's query\n"
     "      endpoint T, e.g. -via ssl:proto=tls1,certuser=THUMBPRINT,port=7264.\n"
     "      Without a host: every host found (as -browse finds them), grouped",
     cmd_qr},
    {"-browse",
     "[-list] [-json] [-exec CMD] [-kind all|debugger|remote] [-host H[:PORT]]...\n"
     "          [-domain D]... [-no-lan] [-no-config] [-port N] [-timeout MS]",
     "find brokers (on the LAN through DNS-SD, in the DNS-SD records of each -domain, and each\n"
     "      -host) and ask them all at once. In a terminal: a live list to pick a server from\n"
     "      (arrows, PgUp/PgDn, type to filter, Tab kind, Enter pick, Esc or q leave); the pick\n"
     "      is printed, or run with -exec CMD in place of {}. With -list (or not in a\n"
     "      terminal): one line per server, HOST<TAB>TYPE<TAB>CLIENT STRING (\\t, \\n and \\\\\n"
     "      escaped); hosts that failed go to stderr, and the exit status is 1 if any did.\n"
     "      Named hosts and domains also come from ~/.config/rdq/hosts and /etc/rdq/hosts\n"
     "      (HOST[:PORT] or \"domain D\" a line; $RDQ_HOSTS lists other files), unless\n"
     "      -no-config",
     rdq_browse},
    {"-remote", "TRANSPORT [-observe | -control-password PW|*] [-wait MS] [-timeout MS]",
     "join the shared session of a debugging server (rddbg): what the debugger prints comes\n"
     "      here, lines typed go to it (Ctrl-C interrupts it; Ctrl-D or .detach leaves); from a\n"
     "      pipe, rdq leaves once the session has been quiet for -wait MS (1000) after the\n"
     "      input ended. -observe joins to watch only; -control-password proves rddbg's\n"
     "      control password (* asks for it), without which such a server lets one only watch",
     cmd_remote},
    {"-premote", "TRANSPORT [-k LINK] [-forward [ADDR:]PORT] [-timeout MS]",
     "connect to a process server and join stdin and stdout to its debug stub, e.g.\n"
     "      gdb -ex 'target extended-remote | rdq -premote tcp:server=box17,port=5005'.\n"
     "      To a KD connection server (rdkdsrv): gdb -ex 'target remote | rdq -premote T'\n"
     "      for its default link, or -k LINK to name one (com:port=/dev/ttyS0,baud=115200,\n"
     "      tcp:server=vmhost,port=1234); a link the server does not allow is refused.\n"
     "      -forward listens on PORT (on 127.0.0.1, or ADDR: 0.0.0.0, [::1]; 0 picks a free\n"
     "      one) and relays each connection to the server through TRANSPORT (up to 64 at\n"
     "      once; TLS and the password stay here, Password=* is asked once), for debuggers\n"
     "      that take only host:port: gdb -ex 'target extended-remote localhost:PORT'.\n"
     "      It prints the address it listens on and runs until SIGINT or SIGTERM.\n"
     "      A Foreign string (a foreign server's row, listed by rdsrv -announce) is reached\n"
     "      without rdq's session layer: its bytes are relayed as they are",
     cmd_premote},
    {"-check", "[-server|-client] TRANSPORT",
     "print the canonical form of a transport string, or say what is wrong with it", cmd_check},
    {"-ports", "", "list the serial ports (for com:port=...), with their descriptions", cmd_ports},
    {"-?", "", "this help (also --help)", cmd_help},
};

static void usage(FILE *f)
{
    fprintf(f, "rdq finds, lists and reaches remote-debugging servers: the remote debugging of\n"
               "Microsoft's Debugging Tools for Windows (cdb -QR, dbgsrv, kdsrv), on Linux.\n"
               "Usage:\n");
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        fprintf(f, "  rdq %s %s\n      %s\n", verbs[i].name, verbs[i].args, verbs[i].help);
    fprintf(f,
            "\nTransport strings (see rdq(1)):\n"
            "  server: npipe:pipe=Name[,hidden][,password=Pw][,IcfEnable]\n"
            "          tcp:port=Socket[,hidden][,password=Pw][,ipversion=6][,IcfEnable]\n"
            "          tcp:port=Socket,clicon=Client[,password=Pw][,ipversion=6]\n"
            "          com:port=COMPort,baud=Baud,channel=Chan[,hidden][,password=Pw]\n"
            "          spipe:proto=tls1,{certuser=Cert|machuser=Cert},pipe=Name[,hidden]"
            "[,password=Pw]\n"
            "          ssl:proto=tls1,{certuser=Cert|machuser=Cert},port=Socket[,hidden]"
            "[,password=Pw]\n"
            "  client: the same with server=Host (or clicon=Host), e.g.\n"
            "          tcp:server=box17,port=5005[,password=Pw]\n"
            "\nEnvironment: RDQ_BROKER_SOCK (the local broker's socket), RDQ_BROKER_PORT\n"
            "(brokers' query port, default %d), RDQ_DNS_SERVERS (host:port,... for look-ups).\n"
            "\nExit status: 0 success, 1 failure, 2 bad usage or a bad transport string,\n"
            "3 host name not found, 4 host unreachable, 5 no broker listening,\n"
            "6 protocol version mismatch, 7 no answer in time.\n",
            RDB_DEFAULT_PORT);
}

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    usage(stdout);
    return EXIT_OK;
}

static void print_port(const char *name, const char *kind, const char *desc, void *arg)
{
    (void)arg;
    printf("%s\t%s\t%s\n", name, kind, desc);
}

static int cmd_ports(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "rdq: -ports takes no arguments\n");
        return EXIT_USAGE;
    }
    char err[RDT_ERR_MAX];
    int n = rdt_serial_list(print_port, NULL, err, sizeof(err));
    if (n < 0) {
        fprintf(stderr, "rdq: %s\n", err);
        return EXIT_FAIL;
    }
    if (n == 0)
        fprintf(stderr, "rdq: no serial ports found (a pseudo-terminal is given by its path, "
                        "com:port=/dev/pts/N)\n");
    return EXIT_OK;
}

static void print_listing(const struct rdt_tstring *ts)
{
    char buf[RDT_STRING_MAX + RDT_HOST_MAX + 16], host[RDT_HOST_MAX + 1] = "HOST";
    if (ts->hidden || ts->clicon[0]) {
        printf("listed as: (never listed: %s)\n", ts->hidden ? "hidden" : "clicon");
    } else if (rdt_format(ts, RDT_FORM_ADVERT, NULL, 0, buf, sizeof(buf)) >= 0) {
        printf("listed as: %s\n", buf);
    }
    gethostname(host, sizeof(host));
    struct rdt_tstring client = *ts;
    if (ts->clicon[0])
        snprintf(client.clicon, sizeof(client.clicon), "%s", host);
    if (rdt_format(&client, RDT_FORM_CLIENT, ts->clicon[0] ? NULL : host, 0, buf, sizeof(buf)) >= 0)
        printf("client string: %s\n", buf);
}

static int cmd_check(int argc, char **argv)
{
    enum rdt_side side = RDT_EITHER;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (strcmp(argv[i], "-server") == 0)
            side = RDT_SERVER;
        else if (strcmp(argv[i], "-client") == 0)
            side = RDT_CLIENT;
        else
            break;
    }
    if (argc - i != 1) {
        fprintf(stderr, "rdq: -check wants one transport string: rdq -check [-server|-client] "
                        "TRANSPORT\n");
        return EXIT_USAGE;
    }
    struct rdt_tstring ts;
    char err[RDT_ERR_MAX], canon[RDT_STRING_MAX + RDT_HOST_MAX + 16];
    if (rdt_parse(argv[i], side, &ts, err, sizeof(err)) < 0) {
        fprintf(stderr, "rdq: %s\n", err);
        return EXIT_USAGE;
    }
    if (rdt_format(&ts, RDT_FORM_CANON, NULL, 0, canon, sizeof(canon)) < 0) {
        fprintf(stderr, "rdq: the canonical form does not fit\n");
        return EXIT_FAIL;
    }
    printf("%s\nside: %s\n", canon, rdt_side_name(ts.side));
    if (ts.side != RDT_CLIENT)
        print_listing(&ts);
    return EXIT_OK;
}

/* ---- -QR ---- */

struct qr_opts {
    const char *host;
    bool json;
    enum rdb_filter filter;
    uint16_t port;
    int timeout_ms;
    bool have_via;
    struct rdt_tstring via;
};

int rdq_parse_number(const char *flag, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long n = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || *end || n < lo || n > hi) {
        fprintf(stderr, "rdq: %s wants a number from %ld to %ld\n", flag, lo, hi);
        return -1;
    }
    *out = n;
    return 0;
}

/* -via T: the broker's query endpoint as its -listen string gives it (tcp:port=N,
 * ssl:...,port=N, npipe:pipe=N, spipe:...), or as a client string; the host fills in server=. */
int rdq_via_parse(const char *v, struct rdt_tstring *ts)
{
    char err[RDT_ERR_MAX];
    if (!v) {
        fprintf(stderr, "rdq: -via needs a transport string, e.g. -via tcp:port=7263\n");
        return -1;
    }
    if (rdt_parse(v, RDT_EITHER, ts, err, sizeof(err)) != 0) {
        fprintf(stderr, "rdq: -via: %s\n", err);
        return -1;
    }
    if (ts->clicon[0] || ts->hidden || ts->proto == RDT_COM || ts->password_ask || ts->foreign) {
        fprintf(stderr, "rdq: -via: a broker's query endpoint is tcp, ssl, npipe or spipe, "
                        "never clicon, hidden or Foreign, with any password given\n");
        return -1;
    }
    ts->side = RDT_CLIENT;
    if (!ts->server[0])
        snprintf(ts->server, sizeof(ts->server), "localhost");
    return 0;
}

static int qr_args(struct qr_opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (strcmp(a, "-json") == 0) {
            o->json = true;
        } else if (strcmp(a, "-kind") == 0) {
            if (rdb_filter_parse(v, &o->filter) != 0) {
                fprintf(stderr, "rdq: -kind is all, debugger or remote (process and KD servers)\n");
                return -1;
            }
            i++;
        } else if (strcmp(a, "-via") == 0) {
            if (rdq_via_parse(v, &o->via))
                return -1;
            o->have_via = true;
            i++;
        } else if (strcmp(a, "-port") == 0 || strcmp(a, "-timeout") == 0) {
            bool port = a[1] == 'p';
            if (rdq_parse_number(a, v, 1, port ? 65535 : 600000, &n))
                return -1;
            if (port)
                o->port = (uint16_t)n;
            else
                o->timeout_ms = (int)n;
            i++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "rdq: -QR: unknown option \"%s\": try rdq -?\n", a);
            return -1;
        } else if (o->host) {
            fprintf(stderr, "rdq: -QR takes one host (\"%s\" and \"%s\")\n", o->host, a);
            return -1;
        } else {
            o->host = a;
        }
    }
    if (!o->host || !o->host[0] || strlen(o->host) > RDT_HOST_MAX) {
        fprintf(stderr, "rdq: -QR: \"%s\" is not a host name (at most %d characters)\n",
                o->host ? o->host : "", RDT_HOST_MAX);
        return -1;
    }
    return 0;
}

static void qr_print_json(const struct qr_opts *o, const struct rdd_result *r)
{
    json_t *rows = json_array();
    for (size_t i = 0; i < r->nrows; i++) {
        json_t *row = rdd_row_json(&r->rows[i], o->host);
        if (row)
            json_array_append_new(rows, row);
    }
    json_t *doc = json_pack("{s:s, s:s, s:o, s:I}", "host", o->host, "address", r->addr, "servers",
                            rows, "omitted", (json_int_t)r->omitted);
    json_dumpf(doc, stdout, JSON_INDENT(2));
    putchar('\n');
    json_decref(doc);
}

/* Whether -QR names a host: an argument that is neither an option nor an option's value. */
static bool qr_has_host(int argc, char **argv)
{
    static const char *const valued[] = {"-kind", "-port", "-via", "-timeout", "-host", "-domain"};
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] != '-' || !argv[i][1])
            return true;
        for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++)
            if (strcmp(argv[i], valued[k]) == 0)
                i++;
    }
    return false;
}

static int cmd_qr(int argc, char **argv)
{
    if (!qr_has_host(argc, argv))
        return rdq_qr_all(argc, argv);
    struct qr_opts o = {.timeout_ms = 5000};
    if (qr_args(&o, argc, argv))
        return EXIT_USAGE;
    struct rdd_result r;
    rdd_query_via(o.host, o.port, o.have_via ? &o.via : NULL, o.filter, o.timeout_ms, &r);
    explicit_bzero(o.via.password, sizeof(o.via.password));
    if (r.status != RDD_OK) {
        fprintf(stderr, "rdq: -QR %s: %s\n", o.host, r.err);
        return (int)r.status;
    }
    if (o.json) {
        qr_print_json(&o, &r);
    } else {
        printf("Servers on %s:\n", o.host);
        for (size_t i = 0; i < r.nrows; i++)
            printf("%s - %s\n", rdb_kind_title(r.rows[i].kind), r.rows[i].advert);
    }
    if (r.omitted)
        fprintf(stderr,
                "rdq: -QR %s: %zu more server%s not shown (past the broker's message limit, or "
                "not printable): -kind narrows the listing\n",
                o.host, r.omitted, r.omitted == 1 ? "" : "s");
    rdd_result_free(&r);
    return EXIT_OK;
}

/* ---- -premote ---- */

/* The options -premote and -remote share: the transport string and -timeout; `more` takes the
 * others (1: not one of them). */
static int client_args(int argc, char **argv, const char *verb, const char **t, long *timeout,
                       int (*more)(int argc, char **argv, int *i, void *arg), void *arg)
{
    for (int i = 1; i < argc; i++) {
        int rc = more ? more(argc, argv, &i, arg) : 1;
        if (rc < 0)
            return -1;
        if (rc == 0)
            continue;
        if (strcmp(argv[i], "-timeout") == 0) {
            if (rdq_parse_number("-timeout", i + 1 < argc ? argv[i + 1] : NULL, 1, 600000, timeout))
                return -1;
            i++;
        } else if (argv[i][0] == '-' && argv[i][1] && !*t) {
            fprintf(stderr, "rdq: %s: unknown option \"%s\": try rdq -?\n", verb, argv[i]);
            return -1;
        } else if (!*t) {
            *t = argv[i];
        } else {
            fprintf(stderr, "rdq: %s takes one transport string\n", verb);
            return -1;
        }
    }
    if (!*t) {
        fprintf(stderr,
                "rdq: %s needs a transport string, e.g. rdq %s tcp:server=box17,port=5005\n", verb,
                verb);
        return -1;
    }
    return 0;
}

/* Dials for -premote and -remote; a bad string is a usage error, as is a Foreign one where
 * `no_foreign` says why not. */
static int client_dial(struct rdt_conn **c, const char *t, const char *no_foreign, long timeout)
{
    char err[RDT_ERR_MAX];
    signal(SIGPIPE, SIG_IGN);
    int rc = rds_dial(c, t, no_foreign, (int)timeout, err, sizeof(err));
    if (rc)
        fprintf(stderr, "rdq: %s\n", err);
    return rc == 0 ? EXIT_OK : rc == -EINVAL ? EXIT_USAGE : EXIT_FAIL;
}

struct premote_args {
    const char *forward, *link;
};

/* -forward [ADDR:]PORT; -k LINK: the kernel debugging link a KD connection server relays to. */
static int premote_arg(int argc, char **argv, int *i, void *arg)
{
    struct premote_args *pa = arg;
    bool k = strcmp(argv[*i], "-k") == 0;
    if (!k && strcmp(argv[*i], "-forward") != 0)
        return 1;
    if (*i + 1 >= argc) {
        fprintf(stderr, k ? "rdq: -k needs a link, e.g. -k com:port=/dev/ttyS0,baud=115200 or "
                            "-k tcp:server=vmhost,port=1234\n"
                          : "rdq: -forward needs [ADDR:]PORT, e.g. -forward 2345 or -forward "
                            "0.0.0.0:2345\n");
        return -1;
    }
    *(k ? &pa->link : &pa->forward) = argv[++*i];
    return 0;
}

/* Asks a KD connection server for the link; its refusal is a failure, a bad link usage. */
static int kd_request(struct rdt_conn *c, const char *link, long timeout)
{
    char err[RDT_ERR_MAX];
    int rc = rds_kd_request(c, link, (int)timeout, err, sizeof(err));
    if (rc)
        fprintf(stderr, "rdq: %s\n", err);
    return rc == 0 ? EXIT_OK : rc == -EINVAL ? EXIT_USAGE : EXIT_FAIL;
}

static int cmd_premote(int argc, char **argv)
{
    long timeout = 10000;
    const char *t = NULL;
    struct premote_args pa = {0};
    struct rdt_conn *c = NULL;
    if (client_args(argc, argv, "-premote", &t, &timeout, premote_arg, &pa))
        return EXIT_USAGE;
    const char *link = pa.link;
    char err[RDT_ERR_MAX];
    if (link && pa.forward) {
        fprintf(stderr, "rdq: -premote: -k and -forward do not go together\n");
        return EXIT_USAGE;
    }
    if (pa.forward) {
        struct rds_forward_opts fo = {
            .listen = pa.forward, .timeout_ms = (int)timeout, .max_conns = RDS_FORWARD_MAX};
        signal(SIGPIPE, SIG_IGN);
        return rds_forward(t, &fo);
    }
    if (link && rds_kd_link_check(link, err, sizeof(err)) != 0) {
        fprintf(stderr, "rdq: %s\n", err);
        return EXIT_USAGE;
    }
    int rc = client_dial(&c, t,
                         link ? "-k names a link to rdq's KD connection server (rdkdsrv), and a "
                                "foreign server takes no such request: leave -k out"
                              : NULL,
                         timeout);
    if (rc == EXIT_OK && link)
        rc = kd_request(c, link, timeout);
    if (rc == EXIT_OK)
        rc = rds_pump(c);
    rdt_conn_free(c);
    return rc;
}

struct remote_args {
    struct rds_remote_opts o;
    char control[64];
};

static int remote_arg(int argc, char **argv, int *i, void *arg)
{
    struct remote_args *ra = arg;
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    long n;
    if (strcmp(a, "-observe") == 0) {
        ra->o.observe = true;
    } else if (strcmp(a, "-control-password") == 0) {
        if (!v) {
            fprintf(stderr, "rdq: -control-password needs the password, or * to be asked\n");
            return -1;
        }
        if (strcmp(v, "*") == 0 &&
            rds_ask_secret("Control password", ra->control, sizeof(ra->control)) != 0) {
            fprintf(stderr, "rdq: -control-password *: no terminal to ask it on\n");
            return -1;
        }
        if (strcmp(v, "*") != 0) {
            snprintf(ra->control, sizeof(ra->control), "%s", v);
            explicit_bzero(argv[*i + 1], strlen(v)); /* out of ps and /proc/PID/cmdline */
        }
        ra->o.control_password = ra->control;
        (*i)++;
    } else if (strcmp(a, "-wait") == 0) {
        if (rdq_parse_number("-wait", v, 0, 600000, &n))
            return -1;
        ra->o.wait_ms = (int)n;
        (*i)++;
    } else {
        return 1;
    }
    return 0;
}

static int cmd_remote(int argc, char **argv)
{
    long timeout = 10000;
    const char *t = NULL;
    struct rdt_conn *c = NULL;
    struct remote_args ra = {.o = {.wait_ms = 1000}};
    int rc =
        client_args(argc, argv, "-remote", &t, &timeout, remote_arg, &ra) ? EXIT_USAGE : EXIT_OK;
    if (rc == EXIT_OK && ra.o.observe && ra.o.control_password) {
        fprintf(stderr, "rdq: -remote: -observe and -control-password do not go together\n");
        rc = EXIT_USAGE;
    }
    if (rc == EXIT_OK)
        rc = client_dial(&c, t,
                         "-remote joins rdq's shared debugging sessions (rddbg); a foreign server "
                         "is reached with its own client, e.g. gdb -ex 'target remote | rdq "
                         "-premote T'",
                         timeout);
    ra.o.timeout_ms = (int)timeout;
    if (rc == EXIT_OK)
        rc = rds_remote(c, &ra.o);
    explicit_bzero(ra.control, sizeof(ra.control));
    rdt_conn_free(c);
    return rc;
}

/* Every broker asked at once holds a socket: the soft limit on files goes up to the hard one. */
static void more_files(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    more_files();
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return cmd_help(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcasecmp(argv[1], verbs[i].name) == 0)
            return verbs[i].run(argc - 1, argv + 1);
    fprintf(stderr, "rdq: unknown option \"%s\": try rdq -? for the list\n", argv[1]);
    return EXIT_USAGE;
}

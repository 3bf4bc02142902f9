/* rdkdsrv: the KD connection server of rdq (as kdsrv). Each smart client is relayed to a kernel
 * debugging link: a serial line to a KGDB target, or a gdbstub socket such as QEMU's. */
#include "session.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct opts {
    struct rds_kd_opts kd;
    const char *transport;
    const char *console;
};

static void usage(FILE *f)
{
    fprintf(
        f,
        "rdkdsrv: the KD connection server of rdq (as kdsrv of Microsoft's Debugging Tools for\n"
        "Windows), for Linux kernels: KGDB over a serial line, QEMU's gdbstub\n"
        "Usage: rdkdsrv -t TRANSPORT [-link LINK] [-allow LINK]... [-allow-any]\n"
        "               [-console TRANSPORT] [-break-in SEQ] [-desc TEXT] [-broker PATH]\n"
        "  -t TRANSPORT   where to serve gdb clients, e.g. tcp:port=51:60,password=Pw\n"
        "  -link LINK     the link of a client that names none:\n"
        "                 com:port=/dev/ttyS0,baud=115200 (a KGDB target's line, QEMU's -serial\n"
        "                 pty) or tcp:server=HOST,port=1234 (a gdbstub such as QEMU's -gdb)\n"
        "  -allow LINK    another link clients may name (rdq -premote T -k LINK)\n"
        "  -allow-any     clients may name any link (any device or host, opened by this server)\n"
        "  -console T     where console watchers read the -link serial line's console text\n"
        "                 (kgdboc: the kernel's console shares the line with KGDB)\n"
        "  -break-in SEQ  what stops a serial target, on attach and for gdb's Ctrl-C: a string\n"
        "                 with C escapes (\\x03, \\n, \\\\), \\B first for a serial BREAK; "
        "default\n"
        "                 \\Bg (a BREAK then g: KGDB's sysrq-g); \"\" sends nothing. A tcp link\n"
        "                 takes gdb's interrupt as it is\n"
        "  -desc TEXT     a description for the broker's listing\n"
        "  -broker PATH   the broker's socket (default $RDQ_BROKER_SOCK, else %s)\n"
        "  -?, --help     this help\n"
        "One client per link at a time. Clients connect with:\n"
        "  gdb -ex 'target remote | rdq -premote <client string> [-k LINK]'\n"
        "Console watchers with: rdq -premote <console client string>\n",
        RDB_DEFAULT_SOCK);
}

static int hex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* One escape after the backslash at s[0]: its byte in *b, the characters it took. */
static int unescape_one(const char *s, char *b)
{
    static const char from[] = "nrt0\\ab'\"e", to[] = "\n\r\t\0\\\a\b'\"\033";
    const char *f = s[1] ? strchr(from, s[1]) : NULL;
    if (f) {
        *b = to[f - from];
        return 2;
    }
    if (s[1] == 'x' && hex(s[2]) >= 0) {
        bool two = hex(s[3]) >= 0;
        *b = (char)(two ? hex(s[2]) * 16 + hex(s[3]) : hex(s[2]));
        return two ? 4 : 3;
    }
    return -1;
}

static int parse_break(struct rds_kd_opts *kd, const char *s)
{
    kd->serial_break = false;
    kd->break_len = 0;
    if (strncmp(s, "\\B", 2) == 0) {
        kd->serial_break = true; /* a serial BREAK first */
        s += 2;
    }
    while (*s) {
        if (kd->break_len >= RDS_KD_BREAK_MAX) {
            fprintf(stderr, "rdkdsrv: -break-in: at most %d bytes\n", RDS_KD_BREAK_MAX);
            return -1;
        }
        int n = *s == '\\' ? unescape_one(s, &kd->break_in[kd->break_len]) : 1;
        if (n < 0) {
            fprintf(stderr,
                    "rdkdsrv: -break-in: unknown escape \"\\%c\" (\\xHH, \\n, \\r, "
                    "\\t, \\0, \\\\ are known)\n",
                    s[1] ? s[1] : ' ');
            return -1;
        }
        if (*s != '\\')
            kd->break_in[kd->break_len] = *s;
        kd->break_len++;
        s += n;
    }
    return 0;
}

static int take_value(struct opts *o, const char *a, const char *v)
{
    if (strcmp(a, "-allow") == 0) {
        if (o->kd.nallow >= RDS_KD_ALLOW_MAX) {
            fprintf(stderr, "rdkdsrv: at most %d -allow links\n", RDS_KD_ALLOW_MAX);
            return -1;
        }
        o->kd.allow[o->kd.nallow++] = v;
        return 0;
    }
    if (strcmp(a, "-break-in") == 0)
        return parse_break(&o->kd, v);
    const char **val = strcmp(a, "-t") == 0         ? &o->transport
                       : strcmp(a, "-link") == 0    ? &o->kd.link
                       : strcmp(a, "-console") == 0 ? &o->console
                       : strcmp(a, "-desc") == 0    ? &o->kd.desc
                                                    : &o->kd.broker;
    *val = v;
    return 0;
}

static int parse_args(struct opts *o, int argc, char **argv)
{
    static const char *const valued[] = {"-t",    "-link",   "-allow",    "-console",
                                         "-desc", "-broker", "-break-in", NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = false;
        for (int j = 0; valued[j]; j++)
            has_value = has_value || strcmp(a, valued[j]) == 0;
        if (has_value && ++i >= argc) {
            fprintf(stderr, "rdkdsrv: %s needs a value: try rdkdsrv -?\n", a);
            return -1;
        } else if (has_value && take_value(o, a, argv[i])) {
            return -1;
        } else if (strcmp(a, "-allow-any") == 0) {
            o->kd.allow_any = true;
        } else if (strcmp(a, "-?") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            return 1;
        } else if (!has_value) {
            fprintf(stderr, "rdkdsrv: unknown option \"%s\": try rdkdsrv -?\n", a);
            return -1;
        }
    }
    if (!o->transport) {
        fprintf(stderr, "rdkdsrv: -t TRANSPORT is required, e.g. rdkdsrv -t tcp:port=5006 "
                        "-link com:port=/dev/ttyS0,baud=115200\n");
        return -1;
    }
    return 0;
}

static int listen_all(struct rds_kd *k, const struct opts *o)
{
    char err[RDT_ERR_MAX], shown[RDT_ECHO_LEN];
    const char *ts[2] = {o->transport, o->console};
    for (int i = 0; i < 2; i++) {
        int rc = ts[i] ? rds_kd_listen(k, ts[i], i == 1, err, sizeof(err)) : 0;
        if (rc) {
            fprintf(stderr, "rdkdsrv: %s %s: %s\n", i ? "-console" : "-t", rdt_echo(ts[i], shown),
                    err);
            return rc == -EINVAL ? 2 : 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = {.kd = {.serial_break = true, .break_in = "g", .break_len = 1}};
    int rc = parse_args(&o, argc, argv);
    if (rc) {
        if (rc > 0)
            usage(stdout);
        return rc > 0 ? 0 : 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    struct rds_kd *k = NULL;
    char err[RDT_ERR_MAX];
    if (rds_kd_new(&k, base, &o.kd, err, sizeof(err)) != 0) {
        fprintf(stderr, "rdkdsrv: %s\n", err);
        event_base_free(base);
        return 2;
    }
    rc = listen_all(k, &o);
    if (rc == 0) {
        rds_kd_banner(k);
        rc = rds_kd_run(k);
    }
    rds_kd_free(k);
    event_base_free(base);
    return rc;
}

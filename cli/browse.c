/* rdq -browse and rdq -QR without a host: every broker found (named hosts, DNS domains, the
 * LAN), asked at once, listed as it answered. */
#include "rdq.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LIST_MAX 64

struct browse_opts {
    enum rdb_filter filter;
    int timeout_ms;
    uint16_t port;
    bool json, list, no_lan, no_config;
    const char *hosts[LIST_MAX];
    int nhosts;
    const char *domains[LIST_MAX];
    int ndomains;
    struct rdt_tstring via;
    bool have_via;
    const char *exec;          /* -exec CMD: run with the pick in place of {} */
    char *owned[2 * LIST_MAX]; /* entries read from the hosts files */
    int nowned;
};

struct browse_run {
    json_t *failed; /* sources and hosts that failed, in the order seen */
};

/* ---- Where to look: flags and the hosts files ---- */

static int add_entry(const char **list, int *n, const char *v, const char *what)
{
    if (*n >= LIST_MAX) {
        fprintf(stderr, "rdq: at most %d %s\n", LIST_MAX, what);
        return -1;
    }
    list[(*n)++] = v;
    return 0;
}

/* One line of a hosts file: HOST[:PORT], or "domain D"; # starts a comment. */
static int hosts_line(struct browse_opts *o, char *line, const char *where)
{
    line[strcspn(line, "#\r\n")] = '\0';
    char *key = strtok(line, " \t"), *val = key ? strtok(NULL, " \t") : NULL;
    if (!key)
        return 0;
    bool domain = strcmp(key, "domain") == 0;
    if ((domain && !val) || (!domain && val) || (val && strtok(NULL, " \t"))) {
        fprintf(stderr, "rdq: %s: a line is HOST, HOST:PORT or \"domain DOMAIN\"\n", where);
        return -1;
    }
    char *copy = o->nowned < 2 * LIST_MAX ? strdup(domain ? val : key) : NULL;
    if (!copy) {
        fprintf(stderr, "rdq: %s: too many entries (at most %d)\n", where, LIST_MAX);
        return -1;
    }
    o->owned[o->nowned++] = copy;
    return domain ? add_entry(o->domains, &o->ndomains, copy, "domains")
                  : add_entry(o->hosts, &o->nhosts, copy, "hosts");
}

static int hosts_file(struct browse_opts *o, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0; /* a file that is not there says nothing */
    char line[1024], where[1100];
    int rc = 0;
    for (int n = 1; rc == 0 && fgets(line, sizeof(line), f); n++) {
        snprintf(where, sizeof(where), "%s:%d", path, n);
        rc = hosts_line(o, line, where);
    }
    fclose(f);
    return rc;
}

/* $RDQ_HOSTS (files, colon-separated), else the user's and the machine's hosts files. */
static int hosts_files(struct browse_opts *o)
{
    const char *env = getenv("RDQ_HOSTS"), *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    char path[1024];
    if (env) {
        char *copy = strdup(env), *save = NULL;
        int rc = copy ? 0 : -1;
        for (char *p = copy ? strtok_r(copy, ":", &save) : NULL; p && rc == 0;
             p = strtok_r(NULL, ":", &save))
            rc = hosts_file(o, p);
        free(copy);
        return rc;
    }
    if (xdg && xdg[0])
        snprintf(path, sizeof(path), "%s/rdq/hosts", xdg);
    else
        snprintf(path, sizeof(path), "%s/.config/rdq/hosts", home ? home : "");
    if ((xdg || home) && hosts_file(o, path) != 0)
        return -1;
    return hosts_file(o, "/etc/rdq/hosts");
}

static void opts_free(struct browse_opts *o)
{
    explicit_bzero(o->via.password, sizeof(o->via.password));
    for (int i = 0; i < o->nowned; i++)
        free(o->owned[i]);
}

/* The options -browse and -QR (without a host) share. 1: the argument is not one of them. */
static int browse_arg(struct browse_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    long n;
    if (strcmp(a, "-host") == 0 || strcmp(a, "-domain") == 0) {
        bool host = a[1] == 'h';
        if (!v || !v[0] || strlen(v) > RDT_HOST_MAX) {
            fprintf(stderr, "rdq: %s needs a %s\n", a,
                    host ? "host (HOST or HOST:PORT)" : "domain");
            return -1;
        }
        (*i)++;
        return host ? add_entry(o->hosts, &o->nhosts, v, "hosts")
                    : add_entry(o->domains, &o->ndomains, v, "domains");
    }
    if (strcmp(a, "-exec") == 0) {
        (*i)++;
        if (v && strstr(v, "{}")) {
            o->exec = v;
            return 0;
        }
        fprintf(stderr, "rdq: -exec needs a command with {} where the picked string goes, e.g. "
                        "-exec \"gdb -ex 'target extended-remote | rdq -premote {}'\"\n");
        return -1;
    }
    if (strcmp(a, "-via") == 0) {
        (*i)++;
        o->have_via = true;
        return rdq_via_parse(v, &o->via);
    }
    if (strcmp(a, "-kind") == 0) {
        (*i)++;
        if (rdb_filter_parse(v, &o->filter) == 0)
            return 0;
        fprintf(stderr, "rdq: -kind is all, debugger or remote (process and KD servers)\n");
        return -1;
    }
    if (strcmp(a, "-timeout") == 0 || strcmp(a, "-port") == 0) {
        bool port = a[1] == 'p';
        if (rdq_parse_number(a, v, port ? 1 : 10, port ? 65535 : 600000, &n))
            return -1;
        (*i)++;
        if (port)
            o->port = (uint16_t)n;
        else
            o->timeout_ms = (int)n;
        return 0;
    }
    bool *flag = strcmp(a, "-json") == 0        ? &o->json
                 : strcmp(a, "-list") == 0      ? &o->list
                 : strcmp(a, "-no-lan") == 0    ? &o->no_lan
                 : strcmp(a, "-no-config") == 0 ? &o->no_config
                                                : NULL;
    if (!flag)
        return 1;
    *flag = true;
    return 0;
}

/* ---- Printing ---- */

/* A field of a -list line: tab, newline and other control characters escaped, and \ itself,
 * so that no field can break a line or a column. */
static void put_field(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\')
            fputs("\\\\", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
}

static void print_list(const struct rdd_host *h)
{
    for (size_t i = 0; i < h->res.nrows; i++) {
        char cs[RDT_STRING_MAX + RDT_HOST_MAX + 16];
        if (rdd_client_string(&h->res.rows[i], h->server, cs, sizeof(cs)) != 0)
            continue;
        put_field(h->name);
        putchar('\t');
        put_field(rdb_kind_title(h->res.rows[i].kind));
        putchar('\t');
        put_field(cs);
        putchar('\n');
    }
}

static void print_grouped(const struct rdd_host *h, bool first)
{
    printf("%sServers on %s:\n", first ? "" : "\n", h->name);
    for (size_t i = 0; i < h->res.nrows; i++)
        printf("%s - %s\n", rdb_kind_title(h->res.rows[i].kind), h->res.rows[i].advert);
}

static const char *source_name(enum rdd_source s)
{
    return s == RDD_SRC_LAN ? "lan" : s == RDD_SRC_DNS ? "dns" : "host";
}

static json_t *host_json(const struct rdd_host *h)
{
    json_t *rows = json_array();
    for (size_t i = 0; i < h->res.nrows; i++) {
        json_t *row = rdd_row_json(&h->res.rows[i], h->server);
        if (row)
            json_array_append_new(rows, row);
    }
    return json_pack("{s:s, s:s, s:i, s:s, s:s, s:o}", "host", h->name, "server", h->server, "port",
                     h->port, "source", source_name(h->source), "address", h->res.addr, "servers",
                     rows);
}

/* ---- Running ---- */

static void on_source(const char *what, const char *err, void *arg)
{
    struct browse_run *run = arg;
    json_array_append_new(run->failed, json_pack("{s:s, s:s}", "what", what, "error", err));
}

static void on_done(void *arg)
{
    (void)arg;
}

/* Prints what every host answered; returns the exit status: 0 when every host answered. */
static int by_name(const void *a, const void *b)
{
    const struct rdd_host *x = *(const struct rdd_host *const *)a,
                          *y = *(const struct rdd_host *const *)b;
    int c = strcasecmp(x->name, y->name);
    return c ? c : (x->port > y->port) - (x->port < y->port);
}

/* The hosts by name (and port): the order they answered in says nothing. */
static const struct rdd_host **sorted_hosts(struct rdd_browse *b, size_t *n)
{
    *n = 0;
    for (const struct rdd_host *h = rdd_browse_next(b, NULL); h; h = rdd_browse_next(b, h))
        (*n)++;
    const struct rdd_host **v = calloc(*n + 1, sizeof(*v));
    size_t i = 0;
    for (const struct rdd_host *h = rdd_browse_next(b, NULL); v && h; h = rdd_browse_next(b, h))
        v[i++] = h;
    if (v)
        qsort(v, *n, sizeof(*v), by_name);
    return v;
}

static int report(const struct browse_opts *o, struct rdd_browse *b, struct browse_run *run,
                  bool grouped, const char *verb)
{
    json_t *hosts = json_array();
    int shown = 0, failed = 0;
    size_t n;
    const struct rdd_host **v = sorted_hosts(b, &n);
    for (size_t k = 0; v && k < n; k++) {
        const struct rdd_host *h = v[k];
        if (h->duplicate)
            continue;
        if (h->res.status != RDD_OK) {
            failed++;
            json_array_append_new(run->failed, json_pack("{s:s, s:s, s:b}", "what", h->name,
                                                         "error", h->res.err, "host", 1));
            continue;
        }
        if (o->json)
            json_array_append_new(hosts, host_json(h));
        else if (grouped)
            print_grouped(h, shown == 0);
        else
            print_list(h);
        shown++;
    }
    free(v);
    size_t i;
    json_t *f;
    if (o->json) {
        json_t *doc = json_pack("{s:o, s:O}", "hosts", hosts, "failed", run->failed);
        json_dumpf(doc, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(doc);
    } else {
        json_decref(hosts);
    }
    fflush(stdout);
    bool lan_only = true;
    json_array_foreach(run->failed, i, f)
    {
        const char *what = json_string_value(json_object_get(f, "what"));
        const char *why = json_string_value(json_object_get(f, "error"));
        if (json_is_true(json_object_get(f, "host"))) /* the reason names the host */
            fprintf(stderr, "rdq: %s: %s\n", verb, why);
        else
            fprintf(stderr, "rdq: %s: %s: %s\n", verb, what, why);
        if (strcmp(what, "the LAN") != 0)
            lan_only = false;
    }
    /* the LAN not being browsable is said, and fails nothing: it is tried by default */
    return failed || (json_array_size(run->failed) && !lan_only) ? EXIT_FAIL : EXIT_OK;
}

static struct rdd_browse_config config_of(const struct browse_opts *o)
{
    return (struct rdd_browse_config){.filter = o->filter,
                                      .timeout_ms = o->timeout_ms,
                                      .port = o->port,
                                      .hosts = o->hosts,
                                      .nhosts = o->nhosts,
                                      .domains = o->domains,
                                      .ndomains = o->ndomains,
                                      .lan = !o->no_lan,
                                      .via = o->have_via ? &o->via : NULL};
}

static int browse_run(struct browse_opts *o, bool grouped, const char *verb)
{
    if (!o->no_config && hosts_files(o) != 0)
        return EXIT_USAGE;
    struct browse_run run = {.failed = json_array()};
    struct rdd_browse_config cfg = config_of(o);
    struct rdd_browse_ops ops = {.source = on_source, .done = on_done};
    struct event_base *base = event_base_new();
    struct rdd_browse *b = NULL;
    char err[RDT_ERR_MAX];
    int rc = EXIT_FAIL;
    if (!base || rdd_browse_open(&b, base, &cfg, &ops, &run, err, sizeof(err)) != 0) {
        fprintf(stderr, "rdq: %s: %s\n", verb, base ? err : "cannot create an event loop");
    } else {
        while (!rdd_browse_finished(b) && event_base_loop(base, EVLOOP_ONCE) >= 0)
            ;
        rc = report(o, b, &run, grouped, verb);
    }
    rdd_browse_free(b);
    if (base)
        event_base_free(base);
    json_decref(run.failed);
    return rc;
}

/* CMD with the pick's variable in place of each {}: the shell that runs CMD, and any that CMD
 * starts in turn (gdb's, for target ... | CMD), reads the pick from the environment, always
 * quoted, so that no character of it (a row comes from another host's broker) is ever read as
 * shell syntax. Where {} stands decides the form: unquoted or in '...', "$RDQ_PICK"; in "...",
 * \"\$RDQ_PICK\" (which that shell turns into "$RDQ_PICK" for the next). */
static int exec_line(const char *cmd, char *out, size_t len)
{
    static const char *const forms[] = {"\"$RDQ_PICK\"", "\"$RDQ_PICK\"", "\\\"\\$RDQ_PICK\\\""};
    enum { BARE, SINGLE, DOUBLE } q = BARE;
    size_t n = 0;
    for (const char *p = cmd; *p; p++) {
        bool here = p[0] == '{' && p[1] == '}';
        const char *put = here ? forms[q] : NULL;
        size_t k = here ? strlen(put) : (q != SINGLE && p[0] == '\\' && p[1]) ? 2 : 1;
        if (n + k >= len)
            return -ENOSPC;
        memcpy(out + n, here ? put : p, k);
        n += k;
        p += here || k == 2 ? 1 : 0;
        if (!here && k == 1 && *p == '\'' && q != DOUBLE)
            q = q == SINGLE ? BARE : SINGLE;
        else if (!here && k == 1 && *p == '"' && q != SINGLE)
            q = q == DOUBLE ? BARE : DOUBLE;
    }
    out[n] = '\0';
    return 0;
}

/* The interactive list; then the pick printed, or run in -exec's command (its status passed
 * on: the shell becomes this process). */
static int pick(struct browse_opts *o)
{
    if (!o->no_config && hosts_files(o) != 0)
        return EXIT_USAGE;
    struct rdd_browse_config cfg = config_of(o);
    char picked[RDT_STRING_MAX + RDT_HOST_MAX + 16], line[8192];
    int rc = rdq_browse_tui(&cfg, picked, sizeof(picked));
    if (rc != 0)
        return rc;
    if (!o->exec) {
        printf("%s\n", picked);
        return EXIT_OK;
    }
    struct rdt_tstring ts;
    char why[RDT_ERR_MAX];
    if (rdt_parse(picked, RDT_CLIENT, &ts, why, sizeof(why)) != 0) {
        fprintf(stderr, "rdq: -exec: the picked row is not a client string (%s): not run\n", why);
        return EXIT_FAIL;
    }
    if (exec_line(o->exec, line, sizeof(line)) != 0 || setenv("RDQ_PICK", picked, 1) != 0) {
        fprintf(stderr, "rdq: -exec: the command is too long\n");
        return EXIT_USAGE;
    }
    fflush(stdout);
    execl("/bin/sh", "sh", "-c", line, (char *)NULL);
    fprintf(stderr, "rdq: -exec: /bin/sh: %s\n", strerror(errno));
    return 127;
}

int rdq_browse(int argc, char **argv)
{
    struct browse_opts o = {.timeout_ms = RDQ_BROWSE_TIMEOUT_MS};
    for (int i = 1; i < argc; i++) {
        int rc = browse_arg(&o, argc, argv, &i);
        if (rc > 0)
            fprintf(stderr, "rdq: -browse: unknown option \"%s\": try rdq -?\n", argv[i]);
        if (rc) {
            opts_free(&o);
            return EXIT_USAGE;
        }
    }
    if (!o.list && !o.json && isatty(0)) {
        int rc = pick(&o);
        opts_free(&o);
        return rc;
    }
    if (o.exec) {
        fprintf(stderr, "rdq: -browse -exec picks in a terminal: here standard input is not one "
                        "(-list prints every server found)\n");
        opts_free(&o);
        return EXIT_USAGE;
    }
    int rc = browse_run(&o, false, "-browse");
    opts_free(&o);
    return rc;
}

int rdq_qr_all(int argc, char **argv)
{
    struct browse_opts o = {.timeout_ms = RDQ_BROWSE_TIMEOUT_MS};
    for (int i = 1; i < argc; i++) {
        int rc = browse_arg(&o, argc, argv, &i);
        if (rc == 0 && o.list)
            rc = 1;
        if (rc > 0)
            fprintf(stderr, "rdq: -QR: unknown option \"%s\": try rdq -?\n", argv[i]);
        if (rc) {
            opts_free(&o);
            return EXIT_USAGE;
        }
    }
    int rc = browse_run(&o, true, "-QR");
    opts_free(&o);
    return rc;
}

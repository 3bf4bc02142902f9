/* libFuzzer target for transport strings: whatever parses must format in every form, and the
 * canonical and client forms must parse again and format the same. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *a, const char *b)
{
    fprintf(stderr, "fuzz_tstring: %s\n  \"%s\"\n  \"%s\"\n", what, a, b ? b : "");
    abort();
}

static void format_ok(const struct rdt_tstring *ts, enum rdt_form form, const char *host,
                      uint16_t bound, char *buf, size_t len)
{
    int n = rdt_format(ts, form, host, bound, buf, len);

    if (n < 0 || (size_t)n != strlen(buf) || (size_t)n > RDT_STRING_MAX)
        die("format failed", buf, host);
    if (rdt_format(ts, form, host, bound, buf, (size_t)n) != -ENOSPC)
        die("no -ENOSPC on a short buffer", buf, NULL);
    rdt_format(ts, form, host, bound, buf, len);
}

/* True when the pipe name holds a printf code (a client string may not). */
static bool has_codes(const char *pipe)
{
    for (; (pipe = strchr(pipe, '%')); pipe += 2)
        if (pipe[1] != '%')
            return true;
    return false;
}

/* Parses `s` as `side` and checks that it formats back to `s` in `form`. */
static void reparse(const char *s, enum rdt_side side, enum rdt_form form)
{
    char err[RDT_ERR_MAX], again[RDT_STRING_MAX + 1];
    struct rdt_tstring ts;

    if (rdt_parse(s, side, &ts, err, sizeof err) != 0)
        die("formatted string does not parse", s, err);
    format_ok(&ts, form, NULL, 0, again, sizeof again);
    if (strcmp(s, again) != 0)
        die("formatted string changes", s, again);
}

static void check_canon(const struct rdt_tstring *parsed)
{
    char buf[RDT_STRING_MAX + 1];
    struct rdt_tstring ts = *parsed;

    /* Password=* means "ask", which only a client may say: drop a server's password. */
    if (ts.password[0] && ts.side == RDT_SERVER)
        memset(ts.password, 0, sizeof ts.password);
    format_ok(&ts, RDT_FORM_CANON, NULL, 0, buf, sizeof buf);
    reparse(buf, ts.side, RDT_FORM_CANON);
    if (rdt_string_foreign(buf) != ts.foreign)
        die("Foreign is read otherwise than it was parsed", buf, NULL);
}

static void check_client(const struct rdt_tstring *ts)
{
    char buf[RDT_STRING_MAX + 1];
    uint16_t bound = ts->proto == RDT_TCP || ts->proto == RDT_SSL ? ts->port_hi : 0;

    format_ok(ts, RDT_FORM_ADVERT, NULL, bound, buf, sizeof buf);
    format_ok(ts, RDT_FORM_CLIENT, "\\\\fuzz-host", bound, buf, sizeof buf);
    if (!has_codes(ts->pipe))
        reparse(buf, RDT_CLIENT, RDT_FORM_CLIENT);
    format_ok(ts, RDT_FORM_CLIENT, NULL, 0, buf, sizeof buf);
    if (!has_codes(ts->pipe) && (ts->server[0] || ts->clicon[0]))
        reparse(buf, RDT_CLIENT, RDT_FORM_CLIENT);
}

static void check_pipe(const struct rdt_tstring *ts)
{
    char buf[RDT_PIPE_MAX + 32];
    int n = rdt_pipe_expand(ts->pipe, 2147483647, -1, buf, sizeof buf);

    if (n == -EINVAL || (n >= 0 && (size_t)n != strlen(buf)))
        die("pipe name does not expand", ts->pipe, buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum rdt_side sides[] = {RDT_EITHER, RDT_SERVER, RDT_CLIENT};
    char err[RDT_ERR_MAX];
    struct rdt_tstring ts;
    char *s;

    if (size > 4 * RDT_STRING_MAX)
        return 0;
    s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    (void)rdt_string_foreign(s); /* any input: it only reads items */
    for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
        if (rdt_parse(s, sides[i], &ts, err, sizeof err) != 0) {
            if (!err[0])
                die("failure without a message", s, NULL);
            continue;
        }
        check_canon(&ts);
        check_client(&ts);
        check_pipe(&ts);
    }
    free(s);
    return 0;
}

/* A small client of shared sessions for the tests of rddbg. */
#include "rds_client.h"

#include "session.h"
#include "transport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void keep(struct rdc *c, const char *tag, const uint8_t *body, size_t len)
{
    char head[8] = "";
    if (tag)
        snprintf(head, sizeof(head), "\n[%s] ", tag);
    size_t hl = strlen(head), room = RDC_TEXT_MAX - 1 - c->len;
    if (tag && hl + len + 1 > room && hl + len + 1 < RDC_TEXT_MAX)
        c->len = c->mark = 0; /* output filled the text: a notice or the end is kept anyway */
    room = RDC_TEXT_MAX - 1 - c->len;
    size_t n = hl + len + (tag ? 1 : 0) > room ? 0 : len;
    if (!n && len)
        return;
    memcpy(c->text + c->len, head, hl);
    memcpy(c->text + c->len + hl, body, n);
    c->len += hl + n;
    if (tag)
        c->text[c->len++] = '\n';
    c->text[c->len] = '\0';
}

static int send_frame(struct rdc *c, enum rds_type t, const void *body, size_t len)
{
    uint8_t f[RDS_HDR_LEN + RDS_BODY_MAX];
    size_t n = rds_frame(f, t, body, len);
    return n ? rdt_conn_write_all(c->conn, f, n, 2000) : -EMSGSIZE;
}

static void on_frame(struct rdc *c, enum rds_type t, const uint8_t *body, size_t len,
                     const char *pw)
{
    if (t == RDS_OUTPUT) {
        c->output += len;
        keep(c, NULL, body, len);
    } else if (t == RDS_NOTICE) {
        keep(c, "N", body, len);
    } else if (t == RDS_END) {
        keep(c, "E", body, len);
        snprintf(c->end, sizeof(c->end), "%.*s", (int)len, (const char *)body);
        c->ended = true;
    } else if (t == RDS_WELCOME) {
        snprintf(c->welcome, sizeof(c->welcome), "%.*s", (int)len, (const char *)body);
    } else if (t == RDS_CHALLENGE) {
        uint8_t proof[RDS_PROOF_LEN] = {0};
        char err[256];
        if (pw)
            rdt_proof(pw, RDS_PROOF_LABEL, body, len, proof, err, sizeof(err));
        send_frame(c, RDS_PROOF, proof, sizeof(proof));
    }
}

/* Reads once (up to ms): -1 when the connection is over. */
static int read_some(struct rdc *c, int ms, const char *pw)
{
    if (c->ended && !c->conn)
        return -1;
    size_t room = 0, n = 0;
    uint8_t *p = rds_reader_room(c->rd, &room);
    int rc = rdt_conn_read_wait(c->conn, p, room, &n, ms);
    if (rc == -ETIMEDOUT || rc == -EAGAIN)
        return 0;
    if (rc || n == 0) {
        c->ended = true;
        return -1;
    }
    rds_reader_added(c->rd, n);
    enum rds_type t;
    const uint8_t *body;
    size_t len;
    char err[256];
    while (rds_reader_next(c->rd, &t, &body, &len, err, sizeof(err)) == 1)
        on_frame(c, t, body, len, pw);
    return 0;
}

static int remaining(int64_t deadline)
{
    int64_t left = deadline - rdt_now_ms();
    return left > 0 ? (int)left : 0;
}

struct rdc *rdc_join(const char *cs, const char *user, bool observe, const char *control_pw,
                     char *err, size_t errlen)
{
    struct rdt_tstring ts;
    struct rdc *c = calloc(1, sizeof(*c));
    if (!c || !(c->rd = calloc(1, sizeof(*c->rd))) || rdt_parse(cs, RDT_CLIENT, &ts, err, errlen) ||
        rdt_dial(&c->conn, &ts, NULL, 5000, err, errlen)) {
        rdc_free(c);
        return NULL;
    }
    rds_reader_init(c->rd);
    char join[256];
    int n = snprintf(join, sizeof(join),
                     "{\"v\":1,\"user\":\"%s\",\"host\":\"testhost\",\"observe\":%s}", user,
                     observe ? "true" : "false");
    send_frame(c, RDS_JOIN, join, (size_t)n);
    int64_t deadline = rdt_now_ms() + 5000;
    while (!c->welcome[0] && !c->ended && remaining(deadline))
        read_some(c, remaining(deadline), control_pw);
    if (!c->welcome[0]) {
        snprintf(err, errlen, "no welcome: %s", c->ended ? c->end : "timed out");
        rdc_free(c);
        return NULL;
    }
    return c;
}

int rdc_line(struct rdc *c, const char *line)
{
    return send_frame(c, RDS_LINE, line, strlen(line));
}

int rdc_interrupt(struct rdc *c)
{
    return send_frame(c, RDS_INTERRUPT, NULL, 0);
}

bool rdc_wait(struct rdc *c, const char *needle, int ms)
{
    int64_t deadline = rdt_now_ms() + ms;
    for (;;) {
        char *hit = strstr(c->text + c->mark, needle);
        if (hit) {
            c->mark = (size_t)(hit - c->text) + strlen(needle);
            return true;
        }
        if (!remaining(deadline) || read_some(c, remaining(deadline), NULL) < 0)
            return strstr(c->text + c->mark, needle) != NULL;
    }
}

void rdc_drain(struct rdc *c, int ms)
{
    int64_t deadline = rdt_now_ms() + ms;
    while (remaining(deadline) && read_some(c, remaining(deadline), NULL) == 0)
        ;
}

bool rdc_wait_end(struct rdc *c, int ms)
{
    int64_t deadline = rdt_now_ms() + ms;
    while (remaining(deadline) && read_some(c, remaining(deadline), NULL) == 0)
        ;
    return c->ended;
}

void rdc_free(struct rdc *c)
{
    if (!c)
        return;
    rdt_conn_free(c->conn);
    free(c->rd);
    free(c);
}

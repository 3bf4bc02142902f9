/* A small client of shared sessions for the tests of rddbg: the real transport (rdt_dial), the
 * frames of session/proto.c, everything the server sends kept as text. */
#ifndef RDQ_TEST_RDS_CLIENT_H
#define RDQ_TEST_RDS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#define RDC_TEXT_MAX (1 << 20)

struct rdc {
    struct rdt_conn *conn;
    struct rds_reader *rd;
    char welcome[512]; /* the W frame's JSON */
    bool ended;        /* an E frame came, or the connection closed */
    char end[512];     /* the E frame's body */
    /* every O body as it came, every N as "\n[N] body\n", the E as "\n[E] body\n" */
    char text[RDC_TEXT_MAX];
    size_t len;
    size_t mark;   /* where rdc_wait looks from */
    size_t output; /* bytes of output that came, kept in text or not */
};

/* Dials the client string `cs`, joins as `user` (observing when asked), proves `control_pw`
 * when challenged (NULL: 32 zero bytes) and waits for the welcome. NULL on failure, with why. */
struct rdc *rdc_join(const char *cs, const char *user, bool observe, const char *control_pw,
                     char *err, size_t errlen);
int rdc_line(struct rdc *c, const char *line);
int rdc_interrupt(struct rdc *c);
/* Reads until the text after the mark holds `needle` (true) or `ms` pass; the mark then moves
 * past what matched. */
bool rdc_wait(struct rdc *c, const char *needle, int ms);
/* Reads what comes within `ms`. */
void rdc_drain(struct rdc *c, int ms);
/* Reads until the server ends the session or the connection closes (up to ms). */
bool rdc_wait_end(struct rdc *c, int ms);
void rdc_free(struct rdc *c);

#endif

/* rdq -premote -k LINK: the request a smart client sends a KD connection server before any of
 * gdb's bytes, and the server's one-line answer (docs/protocol.md, "KD link requests"). */
#include "kd_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Reads the answer line byte by byte, so that no byte of the link after it is taken. */
static int read_line(struct rdt_conn *c, char *line, size_t len, int timeout_ms, char *err,
                     size_t errlen)
{
    int64_t end = rdt_now_ms() + timeout_ms;
    for (size_t n = 0; n + 1 < len;) {
        size_t got = 0;
        int64_t left = end - rdt_now_ms();
        int rc = left > 0 ? rdt_conn_read_wait(c, line + n, 1, &got, (int)left) : -ETIMEDOUT;
        if (rc == 0 && got == 0)
            rc = -ECONNRESET;
        if (rc) {
            snprintf(err, errlen, "-k: the server %s",
                     rc == -ETIMEDOUT ? "did not answer the link request in time"
                                      : "ended without answering the link request (not a KD "
                                        "connection server?)");
            return rc;
        }
        if (line[n] == '\n') {
            line[n] = '\0';
            return 0;
        }
        n += got;
    }
    snprintf(err, errlen, "-k: the server's answer is too long (not a KD connection server?)");
    return -EPROTO;
}

int rds_kd_link_check(const char *link, char *err, size_t errlen)
{
    struct rdt_tstring ts;
    char canon[RDT_STRING_MAX], why[RDT_ERR_MAX];
    if (kd_link_parse(link, &ts, canon, sizeof(canon), why, sizeof(why)) == 0)
        return 0;
    snprintf(err, errlen, "-k: %s", why);
    return -EINVAL;
}

int rds_kd_request(struct rdt_conn *c, const char *link, int timeout_ms, char *err, size_t errlen)
{
    char req[RDS_KD_LINE_MAX + 2], line[RDS_KD_LINE_MAX + 2];
    if (strlen(link) > RDT_STRING_MAX || strpbrk(link, "\r\n")) {
        snprintf(err, errlen, "-k: not a link: one line of at most %d characters", RDT_STRING_MAX);
        return -EINVAL;
    }
    if (rds_kd_link_check(link, err, errlen) != 0)
        return -EINVAL;
    int n = snprintf(req, sizeof(req), "%s%s\n", RDS_KD_REQUEST, link);
    int rc = rdt_conn_write_all(c, req, (size_t)n, timeout_ms);
    if (rc) {
        snprintf(err, errlen, "-k: cannot send the link request: %s", strerror(-rc));
        return rc;
    }
    rc = read_line(c, line, sizeof(line), timeout_ms, err, errlen);
    if (rc)
        return rc;
    if (strncmp(line, "OK ", 3) == 0)
        return 0;
    snprintf(err, errlen, "-k %s: %s", link,
             strncmp(line, "ERR ", 4) == 0 ? line + 4 : "the server's answer is not OK or ERR");
    return strncmp(line, "ERR ", 4) == 0 && strstr(line, "busy: ") == line + 4 ? -EBUSY
                                                                               : -ECONNREFUSED;
}

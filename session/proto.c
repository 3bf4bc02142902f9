/* The frames of shared sessions: a type byte and a 2-byte length, then the body. */
#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static bool known(uint8_t t)
{
    return t && strchr("JPLICWONE", t) != NULL;
}

size_t rds_frame(uint8_t *out, enum rds_type type, const void *body, size_t len)
{
    if (len > RDS_BODY_MAX)
        return 0;
    out[0] = (uint8_t)type;
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)len;
    if (len)
        memcpy(out + RDS_HDR_LEN, body, len);
    return RDS_HDR_LEN + len;
}

void rds_reader_init(struct rds_reader *r)
{
    r->len = r->taken = 0;
}

/* Drops the frame handed out last. */
static void drop_taken(struct rds_reader *r)
{
    if (!r->taken)
        return;
    memmove(r->buf, r->buf + r->taken, r->len - r->taken);
    r->len -= r->taken;
    r->taken = 0;
}

uint8_t *rds_reader_room(struct rds_reader *r, size_t *room)
{
    drop_taken(r);
    *room = sizeof(r->buf) - r->len;
    return r->buf + r->len;
}

void rds_reader_added(struct rds_reader *r, size_t n)
{
    r->len += n;
}

int rds_reader_next(struct rds_reader *r, enum rds_type *type, const uint8_t **body, size_t *len,
                    char *err, size_t errlen)
{
    drop_taken(r);
    if (r->len < RDS_HDR_LEN)
        return 0;
    if (!known(r->buf[0])) {
        snprintf(err, errlen, "not a frame of a shared session (type 0x%02x)", r->buf[0]);
        return -EPROTO;
    }
    size_t n = (size_t)r->buf[1] << 8 | r->buf[2];
    if (r->len < RDS_HDR_LEN + n)
        return 0;
    *type = (enum rds_type)r->buf[0];
    *body = r->buf + RDS_HDR_LEN;
    *len = n;
    r->taken = RDS_HDR_LEN + n;
    return 1;
}

size_t rds_gdb_refusal(char *buf, size_t len, const char *why)
{
    char payload[512];
    unsigned sum = 0;
    if (len < 8)
        return 0;
    snprintf(payload, len - 6 < sizeof(payload) ? len - 6 : sizeof(payload), "E.%s", why);
    for (char *p = payload; *p; p++) {
        if (*p == '\n' || *p == '$' || *p == '#' || *p == '}' || *p == '*')
            *p = ' '; /* one line, and nothing the remote protocol would read as framing */
        sum += (unsigned char)*p;
    }
    return (size_t)snprintf(buf, len, "+$%s#%02x", payload, sum & 0xff);
}

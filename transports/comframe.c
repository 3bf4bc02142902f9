/* The frames of a serial line (see comframe.h): encoding, and a decoder that finds them again in
 * whatever the line delivers. */
#include "comframe.h"

#include <string.h>

uint8_t rdt_crc8(const uint8_t *p, size_t n)
{
    uint8_t crc = 0;
    while (n--) {
        crc ^= *p++;
        for (int i = 0; i < 8; i++)
            crc = (uint8_t)(crc & 0x80 ? (crc << 1) ^ 0x07 : crc << 1);
    }
    return crc;
}

uint16_t rdt_crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFF;
    while (n--) {
        crc ^= (uint16_t)(*p++ << 8);
        for (int i = 0; i < 8; i++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static bool type_valid(unsigned type)
{
    return type >= RDT_COM_DATA && type <= RDT_COM_TYPE_LAST;
}

size_t rdt_com_encode(const struct rdt_com_frame *f, uint8_t *out)
{
    if (f->channel >= RDT_COM_CHANNELS || !type_valid(f->type) || f->len > RDT_COM_PAYLOAD_MAX ||
        (f->len && !f->payload))
        return 0;
    out[0] = RDT_COM_FLAG;
    out[1] = f->channel;
    out[2] = f->type;
    put16(out + 3, f->seq);
    put16(out + 5, f->len);
    out[7] = rdt_crc8(out + 1, 6);
    if (f->len)
        memcpy(out + RDT_COM_HEADER, f->payload, f->len);
    put16(out + RDT_COM_HEADER + f->len, rdt_crc16(out + RDT_COM_HEADER, f->len));
    return RDT_COM_HEADER + f->len + RDT_COM_TRAILER;
}

void rdt_com_decoder_init(struct rdt_com_decoder *d)
{
    memset(d, 0, sizeof(*d));
}

/* Drops the first `n` bytes of the buffer. */
static void consume(struct rdt_com_decoder *d, size_t n)
{
    memmove(d->buf, d->buf + n, d->len - n);
    d->len -= n;
}

/* Takes what frames the buffer holds; leaves a frame's beginning for more bytes. */
static void scan(struct rdt_com_decoder *d, rdt_com_frame_cb cb, void *arg)
{
    for (;;) {
        uint8_t *flag = memchr(d->buf, RDT_COM_FLAG, d->len);
        size_t skip = flag ? (size_t)(flag - d->buf) : d->len;
        d->counts.skipped += skip;
        consume(d, skip);
        if (d->len < RDT_COM_HEADER)
            return;
        if (rdt_crc8(d->buf + 1, 6) != d->buf[7]) {
            d->counts.bad_header++;
            consume(d, 1); /* search again after this flag */
            continue;
        }
        size_t len = get16(d->buf + 5);
        if (len > RDT_COM_PAYLOAD_MAX || d->buf[1] >= RDT_COM_CHANNELS || !type_valid(d->buf[2])) {
            d->counts.bad_length++;
            consume(d, 1);
            continue;
        }
        size_t whole = RDT_COM_HEADER + len + RDT_COM_TRAILER;
        if (d->len < whole)
            return; /* fits in buf: whole <= RDT_COM_FRAME_MAX */
        if (rdt_crc16(d->buf + RDT_COM_HEADER, len) != get16(d->buf + RDT_COM_HEADER + len)) {
            d->counts.bad_payload++;
            consume(d, 1);
            continue;
        }
        struct rdt_com_frame f = {
            .channel = d->buf[1],
            .type = d->buf[2],
            .seq = get16(d->buf + 3),
            .len = (uint16_t)len,
            .payload = d->buf + RDT_COM_HEADER,
        };
        d->counts.frames++;
        cb(&f, arg);
        consume(d, whole);
    }
}

void rdt_com_decode(struct rdt_com_decoder *d, const uint8_t *p, size_t n, rdt_com_frame_cb cb,
                    void *arg)
{
    while (n) {
        size_t take = sizeof(d->buf) - d->len;
        if (take > n)
            take = n;
        memcpy(d->buf + d->len, p, take);
        d->len += take;
        p += take;
        n -= take;
        scan(d, cb, arg);
    }
}

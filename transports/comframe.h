/* Private to transports/: the frames that multiplex channels over one serial line (com).
 *
 * A frame is a flag, a header with its own CRC, a payload and the payload's CRC; nothing is
 * escaped, so the overhead is a fixed 10 bytes a frame whatever the data:
 *
 *   0xF9 | channel | type | seq (2) | length (2) | CRC-8 of channel..length | payload | CRC-16
 *
 * (integers big-endian; CRC-8 polynomial 0x07, CRC-16/CCITT-FALSE over the payload). The decoder
 * searches for a flag, trusts a length only after the header's CRC, bounds it by
 * RDT_COM_PAYLOAD_MAX, and after any bad frame searches again from the byte after that frame's
 * flag: bytes garbled, dropped or inserted on the line cost the frames they touch, never the
 * line. See docs/protocol.md. */
#ifndef RDQ_TRANSPORTS_COMFRAME_H
#define RDQ_TRANSPORTS_COMFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RDT_COM_FLAG 0xF9
#define RDT_COM_HEADER 8 /* flag, channel, type, seq, length, CRC-8 */
#define RDT_COM_TRAILER 2
#define RDT_COM_PAYLOAD_MAX 1024
#define RDT_COM_FRAME_MAX (RDT_COM_HEADER + RDT_COM_PAYLOAD_MAX + RDT_COM_TRAILER)
#define RDT_COM_CHANNELS 255 /* 0 to 254 */

enum rdt_com_type {
    RDT_COM_DATA = 1,    /* bytes of the channel's connection, in order of seq */
    RDT_COM_ACK = 2,     /* seq: the next DATA expected; payload: 4 bytes of window */
    RDT_COM_OPEN = 3,    /* a client asks for a connection on the channel */
    RDT_COM_OPENED = 4,  /* the server end took it */
    RDT_COM_REFUSED = 5, /* nobody serves the channel, or it is busy: the payload says why */
    RDT_COM_CLOSE = 6,   /* the sender's end of the connection (seq: after its last DATA) */
    RDT_COM_PING = 7,    /* are you there (the line owner at the other end)? */
    RDT_COM_PONG = 8,
};
#define RDT_COM_TYPE_LAST RDT_COM_PONG

struct rdt_com_frame {
    uint8_t channel;
    uint8_t type;
    uint16_t seq;
    uint16_t len;
    const uint8_t *payload; /* len bytes; valid during the decoder's callback only */
};

/* Writes `f` into `out` (room for RDT_COM_FRAME_MAX); returns its length, 0 if `f` is invalid
 * (a channel past 254, an unknown type, a payload past RDT_COM_PAYLOAD_MAX). */
size_t rdt_com_encode(const struct rdt_com_frame *f, uint8_t *out);

/* What the decoder has seen: frames that passed, and what it dropped. */
struct rdt_com_counts {
    uint64_t frames;      /* valid frames */
    uint64_t bad_header;  /* a flag whose header's CRC failed */
    uint64_t bad_length;  /* a header that passed, with a length or type out of bounds */
    uint64_t bad_payload; /* a frame whose payload's CRC failed */
    uint64_t skipped;     /* bytes outside any frame */
};

struct rdt_com_decoder {
    uint8_t buf[RDT_COM_FRAME_MAX];
    size_t len;
    struct rdt_com_counts counts;
};

typedef void (*rdt_com_frame_cb)(const struct rdt_com_frame *f, void *arg);

void rdt_com_decoder_init(struct rdt_com_decoder *d);
/* Feeds `n` bytes from the line; calls `cb` for each valid frame, in order. */
void rdt_com_decode(struct rdt_com_decoder *d, const uint8_t *p, size_t n, rdt_com_frame_cb cb,
                    void *arg);

uint8_t rdt_crc8(const uint8_t *p, size_t n);
uint16_t rdt_crc16(const uint8_t *p, size_t n);

#endif

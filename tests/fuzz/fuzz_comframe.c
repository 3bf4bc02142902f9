/* libFuzzer target for the serial line's frame decoder: any bytes, in any pieces. Nothing may
 * crash or read out of bounds; every frame delivered must be valid and encode back to the very
 * bytes it came from; the counts must add up. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct check {
    uint64_t frames;
};

static void check_frame(const struct rdt_com_frame *f, void *arg)
{
    struct check *c = arg;
    uint8_t again[RDT_COM_FRAME_MAX];
    size_t n = rdt_com_encode(f, again);
    /* the payload sits right after its header in the decoder's buffer */
    if (n == 0 || f->len > RDT_COM_PAYLOAD_MAX ||
        memcmp(again + RDT_COM_HEADER, f->payload, f->len) != 0 ||
        memcmp(again + RDT_COM_HEADER + f->len, f->payload + f->len, RDT_COM_TRAILER) != 0)
        abort();
    c->frames++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static struct rdt_com_decoder d;
    struct check c = {0};
    rdt_com_decoder_init(&d);
    /* the first byte sets the size of the pieces the line delivers */
    size_t piece = 1 + data[0] % 64;
    for (size_t off = 1; off < size; off += piece)
        rdt_com_decode(&d, data + off, off + piece < size ? piece : size - off, check_frame, &c);
    if (c.frames != d.counts.frames || d.len > sizeof(d.buf))
        abort();
    return 0;
}

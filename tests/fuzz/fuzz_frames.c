/* libFuzzer target for what peers send: the session layer's frames (as a server and as a client,
 * each with and without a password, read them) and the broker's frames. Anything may fail, nothing
 * may crash, hang or leak, and a frame that decodes must be a JSON object. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs one end's session layer against `data` as the other end's bytes. */
static void session(const uint8_t *data, size_t size, enum rdt_role role, const char *password)
{
    int sv[2];
    if (size > 65536 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
        return;
    if (size && write(sv[1], data, size) < 0) {
        close(sv[0]);
        close(sv[1]);
        return;
    }
    shutdown(sv[1], SHUT_WR);
    struct rdt_conn *c =
        rdt_auth_conn(rdt_sock_conn(&rdt_unix_ops, sv[0]), role, password, RDT_PROTOCOL_VERSION);
    int rc = -EAGAIN;
    for (int i = 0; c && i < 8 && rc == -EAGAIN; i++)
        rc = rdt_conn_open_step(c); /* every byte is there: more steps change nothing */
    if (c && rc == 0) {
        uint8_t rest[256];
        size_t n = 0;
        rdt_conn_read(c, rest, sizeof(rest), &n);
    }
    rdt_conn_free(c);
    close(sv[1]);
}

static void broker_frames(const uint8_t *data, size_t size)
{
    struct rdb_reader r;
    rdb_reader_init(&r);
    /* in two pieces, as a stream may bring it */
    size_t half = size / 2;
    for (int piece = 0; piece < 2; piece++) {
        if (rdb_reader_feed(&r, data + (piece ? half : 0), piece ? size - half : half) != 0)
            break;
        enum rdb_type type;
        json_t *body;
        char err[256];
        int rc;
        while ((rc = rdb_reader_next(&r, &type, &body, err, sizeof(err))) > 0) {
            if (!json_is_object(body))
                abort();
            json_decref(body);
        }
        if (rc < 0) {
            if (!err[0])
                abort(); /* a refusal always says why */
            break;
        }
    }
    rdb_reader_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    session(data, size, RDT_ROLE_SERVER, NULL);
    session(data, size, RDT_ROLE_SERVER, "Secret12");
    session(data, size, RDT_ROLE_CLIENT, NULL);
    session(data, size, RDT_ROLE_REQUESTER, "Secret12");
    broker_frames(data, size);
    return 0;
}

/* The session layer: both ends check the protocol version when they meet, and a server with a
 * password wants proof of it by challenge and response. The password never crosses the wire:
 * the client sends HMAC-SHA256(password, "rdq client" | server nonce | client nonce), the server
 * answers with HMAC-SHA256(password, "rdq server" | client nonce | server nonce), so each end
 * knows that the other holds the password. Frames are described in docs/protocol.md. */
#include "internal.h"

#include "ossl.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define NONCE_LEN 32
#define MAC_LEN 32
#define HDR_LEN 8
#define BODY_MAX 256

enum frame_type {
    FRAME_SERVER_HELLO = 'S',
    FRAME_CLIENT_HELLO = 'C',
    FRAME_VERDICT = 'V',
    FRAME_BUSY = 'B', /* in place of the server hello: turned away, the body says why */
};
enum verdict { VERDICT_OK = 0, VERDICT_DENIED = 1 };
enum state { ST_SEND_HELLO, ST_READ_HELLO, ST_SEND_VERDICT, ST_READ_VERDICT, ST_DONE, ST_FAILED };

#define FLAG_PASSWORD 0x01 /* server hello: a password is wanted; client hello: proof follows */

struct auth {
    enum rdt_role role;
    unsigned version;
    char password[RDT_PASSWORD_MAX + 1];
    enum state state;
    bool server_wants_password;
    bool refused;
    bool fail_after_send; /* the verdict refuses: fail once it is written */
    bool mac_failed;      /* HMAC gave no proof: the handshake fails */
    uint8_t nonce_s[NONCE_LEN], nonce_c[NONCE_LEN];
    uint8_t out[HDR_LEN + BODY_MAX];
    size_t out_len, out_off;
    uint8_t in[HDR_LEN + BODY_MAX];
    size_t in_len;
    char err[RDT_ERR_MAX];
};

static int auth_fail(struct auth *a, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int auth_fail(struct auth *a, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->err, sizeof(a->err), fmt, ap);
    va_end(ap);
    a->state = ST_FAILED;
    return rc;
}

/* Compares in constant time: how long it takes says nothing of where two proofs differ. */
static bool same_mac(const uint8_t *x, const uint8_t *y)
{
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < MAC_LEN; i++)
        diff |= x[i] ^ y[i];
    return diff == 0;
}

/* A proof; false (and the handshake fails) when HMAC gives none: a proof of zeros must never
 * be made, nor taken. */
static bool mac(struct auth *a, const char *label, const uint8_t *n1, const uint8_t *n2,
                uint8_t out[MAC_LEN])
{
    uint8_t msg[16 + 2 * NONCE_LEN];
    size_t l = strlen(label);
    memcpy(msg, label, l);
    memcpy(msg + l, n1, NONCE_LEN);
    memcpy(msg + l + NONCE_LEN, n2, NONCE_LEN);
    unsigned int md_len = 0;
    bool ok = rdt_ossl_load(false, NULL, 0) == 0 && /* auth_open checked it before any proof */
              OSSL(HMAC)(OSSL(EVP_sha256)(), a->password, (int)strlen(a->password), msg,
                         l + 2 * NONCE_LEN, out, &md_len) != NULL &&
              md_len == MAC_LEN;
    explicit_bzero(msg, sizeof(msg));
    if (!ok) {
        getrandom(out, MAC_LEN, 0); /* whatever goes out matches nothing */
        a->mac_failed = true;
    }
    return ok;
}

/* Writes a frame into `o` (room for HDR_LEN + BODY_MAX): returns its length. */
static size_t frame_make(uint8_t *o, enum frame_type type, unsigned version, const void *body,
                         size_t len)
{
    memcpy(o, "RDQ", 3);
    o[3] = (uint8_t)type;
    o[4] = (uint8_t)(version >> 8);
    o[5] = (uint8_t)version;
    o[6] = (uint8_t)(len >> 8);
    o[7] = (uint8_t)len;
    memcpy(o + HDR_LEN, body, len);
    return HDR_LEN + len;
}

static void put_frame(struct auth *a, enum frame_type type, const uint8_t *body, size_t len)
{
    a->out_len = frame_make(a->out, type, a->version, body, len);
    a->out_off = 0;
}

static void queue_server_hello(struct auth *a)
{
    uint8_t body[1 + NONCE_LEN];
    body[0] = a->password[0] ? FLAG_PASSWORD : 0;
    memcpy(body + 1, a->nonce_s, NONCE_LEN);
    put_frame(a, FRAME_SERVER_HELLO, body, sizeof(body));
}

static void queue_client_hello(struct auth *a)
{
    uint8_t body[1 + NONCE_LEN + MAC_LEN] = {0};
    memcpy(body + 1, a->nonce_c, NONCE_LEN);
    if (a->password[0] && a->server_wants_password) { /* no proof to a server that wants none */
        body[0] = FLAG_PASSWORD;
        mac(a, "rdq client", a->nonce_s, a->nonce_c, body + 1 + NONCE_LEN);
    }
    put_frame(a, FRAME_CLIENT_HELLO, body, sizeof(body));
}

static void queue_verdict(struct auth *a, enum verdict v)
{
    uint8_t body[1 + MAC_LEN] = {0};
    body[0] = (uint8_t)v;
    if (v == VERDICT_OK)
        mac(a, "rdq server", a->nonce_c, a->nonce_s, body + 1);
    put_frame(a, FRAME_VERDICT, body, sizeof(body));
}

/* Writes what is queued: 0 when all of it is out. */
static int flush_out(struct rdt_conn *c, struct auth *a)
{
    while (a->out_off < a->out_len) {
        size_t n = 0;
        int rc = rdt_conn_write(c->next, a->out + a->out_off, a->out_len - a->out_off, &n);
        if (rc == -EAGAIN)
            return rc;
        if (rc)
            return auth_fail(a, rc, "%s", rdt_conn_error(c->next));
        a->out_off += n;
    }
    return 0;
}

static unsigned frame_len(const struct auth *a)
{
    return HDR_LEN + ((unsigned)a->in[6] << 8 | a->in[7]);
}

static unsigned frame_version(const struct auth *a)
{
    return (unsigned)a->in[4] << 8 | a->in[5];
}

/* The client tells the server its version even when they differ, so that both ends can say so. */
static void send_version_only(struct rdt_conn *c, struct auth *a)
{
    uint8_t body[1 + NONCE_LEN + MAC_LEN] = {0};
    put_frame(a, FRAME_CLIENT_HELLO, body, sizeof(body));
    size_t n = 0;
    rdt_conn_write(c->next, a->out, a->out_len, &n);
}

static int version_mismatch(struct rdt_conn *c, struct auth *a)
{
    unsigned peer = frame_version(a);
    if (a->role != RDT_ROLE_SERVER)
        send_version_only(c, a);
    unsigned client = a->role != RDT_ROLE_SERVER ? a->version : peer;
    unsigned server = a->role == RDT_ROLE_SERVER ? a->version : peer;
    return auth_fail(a, -EPROTO,
                     "The client is not using same version of remoting protocol as the server "
                     "(client protocol %u, server protocol %u)",
                     client, server);
}

/* Checks a complete header: the magic, the version, the type and the length. */
static int check_header(struct rdt_conn *c, struct auth *a, enum frame_type want, size_t body_len)
{
    if (memcmp(a->in, "RDQ", 3) != 0)
        return auth_fail(a, -EPROTO, "the peer does not speak the rdq protocol (bad greeting)");
    if (frame_version(a) != a->version)
        return version_mismatch(c, a);
    if (a->in[3] != want || frame_len(a) != HDR_LEN + body_len)
        return auth_fail(a, -EPROTO, "bad handshake frame (type 0x%02x, %u bytes)", a->in[3],
                         frame_len(a));
    return 0;
}

/* A server that turned this client away, of any version: its frame says why. */
static bool is_busy(const struct auth *a)
{
    return a->role != RDT_ROLE_SERVER && memcmp(a->in, "RDQ", 3) == 0 && a->in[3] == FRAME_BUSY &&
           frame_len(a) <= sizeof(a->in);
}

static int busy_fail(struct auth *a)
{
    char why[BODY_MAX + 1];
    size_t n = frame_len(a) - HDR_LEN;
    for (size_t i = 0; i < n; i++) /* the peer's text, shown only as printable ASCII */
        why[i] = a->in[HDR_LEN + i] >= 0x20 && a->in[HDR_LEN + i] < 0x7f ? (char)a->in[HDR_LEN + i]
                                                                         : '?';
    why[n] = '\0';
    return auth_fail(a, -EBUSY, "%s", n ? why : "busy");
}

/* Reads exactly one frame of `want` (of a known size), never past its end: what follows belongs
 * to the caller. A peer whose header differs is answered and failed before its body counts. */
static int read_frame(struct rdt_conn *c, struct auth *a, enum frame_type want, size_t body_len)
{
    size_t need = HDR_LEN + body_len;
    while (a->in_len < need) {
        size_t n = 0, had = a->in_len;
        int rc = rdt_conn_read(c->next, a->in + a->in_len, need - a->in_len, &n);
        if (rc == -EAGAIN)
            return rc;
        if (rc)
            return auth_fail(a, rc, "%s", rdt_conn_error(c->next));
        if (n == 0)
            return auth_fail(a, -ECONNRESET, "the peer closed the connection during the handshake");
        a->in_len += n;
        if (had >= HDR_LEN || a->in_len < HDR_LEN)
            continue;
        if (is_busy(a))
            need = frame_len(a);
        else if ((rc = check_header(c, a, want, body_len)))
            return rc;
    }
    return is_busy(a) ? busy_fail(a) : 0;
}

static int server_check_hello(struct auth *a)
{
    const uint8_t *body = a->in + HDR_LEN;
    memcpy(a->nonce_c, body + 1, NONCE_LEN);
    if (!a->password[0])
        return 0;
    uint8_t want[MAC_LEN];
    bool ok = mac(a, "rdq client", a->nonce_s, a->nonce_c, want) && (body[0] & FLAG_PASSWORD) &&
              same_mac(want, body + 1 + NONCE_LEN);
    explicit_bzero(want, sizeof(want));
    if (ok) {
        queue_verdict(a, VERDICT_OK);
        return 0;
    }
    a->refused = true;
    a->fail_after_send = true;
    queue_verdict(a, VERDICT_DENIED);
    snprintf(a->err, sizeof(a->err), "%s: access denied: %s", RDT_ACCESS_DENIED,
             body[0] & FLAG_PASSWORD ? "wrong password" : "no password given");
    return 0;
}

static int client_check_verdict(struct auth *a)
{
    const uint8_t *body = a->in + HDR_LEN;
    if (body[0] != VERDICT_OK) {
        a->refused = true;
        return auth_fail(a, -EACCES, "%s: access denied: %s", RDT_ACCESS_DENIED,
                         a->password[0] ? "wrong password"
                                        : "the server wants a password (password=...)");
    }
    uint8_t want[MAC_LEN];
    bool ok = mac(a, "rdq server", a->nonce_c, a->nonce_s, want) && same_mac(want, body + 1);
    explicit_bzero(want, sizeof(want));
    if (!ok)
        return auth_fail(a, -EACCES, "the server could not prove that it knows the password");
    return 0;
}

static int server_step(struct rdt_conn *c, struct auth *a)
{
    int rc;
    switch (a->state) {
    case ST_SEND_HELLO:
        if ((rc = flush_out(c, a)))
            return rc;
        a->state = ST_READ_HELLO;
        return -EAGAIN; /* the client cannot have answered a hello it has not had */
    case ST_READ_HELLO:
        if ((rc = read_frame(c, a, FRAME_CLIENT_HELLO, 1 + NONCE_LEN + MAC_LEN)))
            return rc;
        server_check_hello(a);
        a->state = a->password[0] ? ST_SEND_VERDICT : ST_DONE;
        if (a->state == ST_DONE)
            return 0;
        /* fall through */
    case ST_SEND_VERDICT:
        if ((rc = flush_out(c, a)))
            return rc;
        if (a->fail_after_send) {
            a->state = ST_FAILED; /* a->err already says why */
            return -EACCES;
        }
        a->state = ST_DONE;
        return 0;
    default:
        return a->state == ST_DONE ? 0 : -EPROTO;
    }
}

static int client_step(struct rdt_conn *c, struct auth *a)
{
    int rc;
    switch (a->state) {
    case ST_READ_HELLO:
        if ((rc = read_frame(c, a, FRAME_SERVER_HELLO, 1 + NONCE_LEN)))
            return rc;
        a->server_wants_password = a->in[HDR_LEN] & FLAG_PASSWORD;
        memcpy(a->nonce_s, a->in + HDR_LEN + 1, NONCE_LEN);
        a->in_len = 0;
        queue_client_hello(a);
        if (a->role == RDT_ROLE_REQUESTER && !a->server_wants_password) {
            a->state = ST_DONE; /* the hello goes with the first write */
            return 0;
        }
        a->state = ST_SEND_HELLO;
        /* fall through */
    case ST_SEND_HELLO:
        if ((rc = flush_out(c, a)))
            return rc;
        a->state = a->server_wants_password ? ST_READ_VERDICT : ST_DONE;
        if (a->state == ST_DONE)
            return 0;
        /* fall through */
    case ST_READ_VERDICT:
        if ((rc = read_frame(c, a, FRAME_VERDICT, 1 + MAC_LEN)))
            return rc;
        if ((rc = client_check_verdict(a)))
            return rc;
        a->state = ST_DONE;
        return 0;
    default:
        return a->state == ST_DONE ? 0 : -EPROTO;
    }
}

static int auth_open(struct rdt_conn *c)
{
    struct auth *a = c->ctx;
    int rc = rdt_conn_open_step(c->next);
    if (rc == -EAGAIN)
        return rc;
    if (rc)
        return auth_fail(a, rc, "%s", rdt_conn_error(c->next));
    if (a->state == ST_FAILED)
        return -EPROTO;
    /* libcrypto is loaded the first time a password needs it: a program that only talks to
     * servers without passwords (rdq -QR, most of the time) never pays for loading it */
    char why[RDT_ERR_MAX - 32];
    if (a->password[0] && (rc = rdt_ossl_load(false, why, sizeof(why))))
        return auth_fail(a, rc, "a password needs HMAC: %s", why);
    rc = a->role == RDT_ROLE_SERVER ? server_step(c, a) : client_step(c, a);
    if (a->mac_failed && rc != -EAGAIN)
        return auth_fail(a, -EPROTO,
                         "HMAC-SHA256 failed: the password can be neither proved "
                         "nor checked");
    return rc;
}

static void auth_close(struct rdt_conn *c)
{
    struct auth *a = c->ctx;
    explicit_bzero(a, sizeof(*a));
    free(a);
}

#define RIDE_MAX 4096 /* of a requester's first write, what rides with its hello */

static bool hello_held(const struct auth *a)
{
    return a->state == ST_DONE && a->out_off < a->out_len;
}

static int auth_read(struct rdt_conn *c, void *buf, size_t len, size_t *nread)
{
    struct auth *a = c->ctx;
    *nread = 0;
    int rc = hello_held(a) ? flush_out(c, a) : 0; /* a requester that reads before writing */
    return rc ? rc : rdt_conn_read(c->next, buf, len, nread);
}

/* A requester's held hello goes out in one write with the start of its request. */
static int write_with_hello(struct rdt_conn *c, struct auth *a, const void *buf, size_t len,
                            size_t *nwritten)
{
    uint8_t joined[HDR_LEN + BODY_MAX + RIDE_MAX];
    size_t held = a->out_len - a->out_off, ride = len < RIDE_MAX ? len : RIDE_MAX, n = 0;
    memcpy(joined, a->out + a->out_off, held);
    memcpy(joined + held, buf, ride);
    int rc = rdt_conn_write(c->next, joined, held + ride, &n);
    if (rc)
        return rc == -EAGAIN ? rc : auth_fail(a, rc, "%s", rdt_conn_error(c->next));
    a->out_off += n < held ? n : held;
    *nwritten = n > held ? n - held : 0;
    return n > held ? 0 : -EAGAIN;
}

static int auth_write(struct rdt_conn *c, const void *buf, size_t len, size_t *nwritten)
{
    struct auth *a = c->ctx;
    *nwritten = 0;
    if (hello_held(a))
        return write_with_hello(c, a, buf, len, nwritten);
    return rdt_conn_write(c->next, buf, len, nwritten);
}

static short auth_events(struct rdt_conn *c)
{
    struct auth *a = c->ctx;
    if (!c->next->ready)
        return rdt_conn_events(c->next);
    if (a->state == ST_SEND_HELLO || a->state == ST_SEND_VERDICT || hello_held(a))
        return POLLOUT;
    return a->state == ST_DONE ? rdt_conn_events(c->next) : POLLIN;
}

static const char *auth_last_error(struct rdt_conn *c)
{
    struct auth *a = c->ctx;
    return a->err[0] ? a->err : rdt_conn_error(c->next);
}

static const struct rdt_ops auth_ops = {
    .name = "auth",
    .open = auth_open,
    .close = auth_close,
    .read = auth_read,
    .write = auth_write,
    .events = auth_events,
    .last_error = auth_last_error,
};

struct rdt_conn *rdt_auth_conn(struct rdt_conn *next, enum rdt_role role, const char *password,
                               unsigned version)
{
    struct auth *a = calloc(1, sizeof(*a));
    struct rdt_conn *c = a ? rdt_conn_push(&auth_ops, a, next) : NULL;
    if (!c) {
        free(a);
        rdt_conn_free(next);
        return NULL;
    }
    a->role = role;
    a->version = version;
    snprintf(a->password, sizeof(a->password), "%s", password ? password : "");
    /* the kernel's generator: fresh nonces without OpenSSL's generator's start-up */
    uint8_t *nonce = role == RDT_ROLE_SERVER ? a->nonce_s : a->nonce_c;
    if (getrandom(nonce, NONCE_LEN, 0) != NONCE_LEN) {
        rdt_conn_free(c);
        return NULL;
    }
    if (role == RDT_ROLE_SERVER) {
        queue_server_hello(a);
        a->state = ST_SEND_HELLO;
    } else {
        a->state = ST_READ_HELLO;
    }
    return c;
}

struct rdt_conn *rdt_client_session(struct rdt_conn *next, const struct rdt_tstring *ts,
                                    enum rdt_role role, const char *password)
{
    if (ts->foreign)
        return next;
    return rdt_auth_conn(next, role, password && password[0] ? password : ts->password,
                         RDT_PROTOCOL_VERSION);
}

void rdt_auth_turn_away(struct rdt_conn *c, const char *why)
{
    uint8_t frame[HDR_LEN + BODY_MAX];
    size_t len = strnlen(why, BODY_MAX);
    rdt_conn_close_with(c, frame, frame_make(frame, FRAME_BUSY, RDT_PROTOCOL_VERSION, why, len));
}

bool rdt_auth_refused(struct rdt_conn *c)
{
    for (; c; c = c->next)
        if (c->ops == &auth_ops)
            return ((struct auth *)c->ctx)->refused;
    return false;
}

int rdt_proof(const char *password, const char *label, const uint8_t *nonce, size_t nlen,
              uint8_t out[32], char *err, size_t errlen)
{
    uint8_t msg[64 + 256];
    size_t l = strlen(label);
    char why[RDT_ERR_MAX - 32];
    if (l > 64 || nlen > 256)
        return rdt_errf(-EINVAL, err, errlen, "a proof of at most 256 bytes");
    if (rdt_ossl_load(false, why, sizeof(why)) != 0)
        return rdt_errf(-ENOSYS, err, errlen, "a password needs HMAC: %s", why);
    memcpy(msg, label, l);
    memcpy(msg + l, nonce, nlen);
    unsigned int md_len = 0;
    bool ok = OSSL(HMAC)(OSSL(EVP_sha256)(), password, (int)strlen(password), msg, l + nlen, out,
                         &md_len) != NULL &&
              md_len == MAC_LEN;
    explicit_bzero(msg, sizeof(msg));
    if (!ok) {
        getrandom(out, MAC_LEN, 0);
        return rdt_errf(-EPROTO, err, errlen, "HMAC-SHA256 failed");
    }
    return 0;
}

bool rdt_proof_equal(const uint8_t a[32], const uint8_t b[32])
{
    return same_mac(a, b);
}

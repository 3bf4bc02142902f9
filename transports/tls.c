/* The TLS layer: OpenSSL over whatever layer is below it (tcp for ssl, a unix socket for spipe,
 * a broker's relay), through a BIO that reads and writes that layer. The server plays TLS's
 * server part whichever end dialed (clicon); the client checks the server's certificate against
 * what its string names before the session layer says a word. */
#include "certs.h"
#include "internal.h"
#include "ossl.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rdt_tls {
    SSL_CTX *ctx;
    bool server;
    unsigned refs;
    /* a client: the server's certificate is pinned by thumbprint, or named and trusted */
    bool pinned;
    uint8_t thumb[RDT_THUMB_LEN];
    char name[RDT_CERT_MAX + 1];
    X509_STORE *trust;
};

struct tls {
    struct rdt_tls *cfg;
    SSL *ssl;
    short want;    /* what the last call that could not go on waits for */
    int lower_rc;  /* the layer below's error, kept by the BIO */
    bool eof;      /* the layer below ended (EOF) */
    bool shut;     /* close_notify sent */
    bool verified; /* a client: the server's certificate is what was asked for */
    bool more;     /* the last read gave bytes, and OpenSSL holds more of the peer's */
    char err[RDT_ERR_MAX];
};

static int tls_fail(struct tls *t, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int tls_fail(struct tls *t, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err, sizeof(t->err), fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- The BIO over the layer below ---- */

static BIO_METHOD *bio_method;

/* Each record goes to the layer below as OpenSSL makes it. Gathering a write's records into one
 * system call would be faster, but would leave bytes in this layer after a write that said they
 * were taken, and every writer (splice, rdq's pump, the broker, rdt_conn_write_all) would then
 * have to flush the layer before it waits or closes. */
static int bio_write(BIO *b, const char *buf, size_t len, size_t *written)
{
    struct rdt_conn *c = OSSL(BIO_get_data)(b);
    struct tls *t = c->ctx;
    OSSL(BIO_clear_flags)(b, BIO_FLAGS_RWS | BIO_FLAGS_SHOULD_RETRY);
    int rc = rdt_conn_write(c->next, buf, len, written);
    if (rc == -EAGAIN)
        OSSL(BIO_set_flags)(b, BIO_FLAGS_WRITE | BIO_FLAGS_SHOULD_RETRY);
    else if (rc)
        t->lower_rc = rc;
    return rc == 0;
}

static int bio_read(BIO *b, char *buf, size_t len, size_t *nread)
{
    struct rdt_conn *c = OSSL(BIO_get_data)(b);
    struct tls *t = c->ctx;
    OSSL(BIO_clear_flags)(b, BIO_FLAGS_RWS | BIO_FLAGS_SHOULD_RETRY);
    int rc = rdt_conn_read(c->next, buf, len, nread);
    if (rc == -EAGAIN)
        OSSL(BIO_set_flags)(b, BIO_FLAGS_READ | BIO_FLAGS_SHOULD_RETRY);
    else if (rc)
        t->lower_rc = rc;
    else if (*nread == 0)
        t->eof = true;
    return rc == 0 && *nread > 0;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct rdt_conn *c = OSSL(BIO_get_data)(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return c && ((struct tls *)c->ctx)->eof;
    default:
        return 0;
    }
}

static void bio_method_make(void)
{
    int type = OSSL(BIO_get_new_index)();
    BIO_METHOD *m = type > 0 ? OSSL(BIO_meth_new)(type | BIO_TYPE_SOURCE_SINK, "rdq layer") : NULL;
    if (m && OSSL(BIO_meth_set_write_ex)(m, bio_write) == 1 &&
        OSSL(BIO_meth_set_read_ex)(m, bio_read) == 1 && OSSL(BIO_meth_set_ctrl)(m, bio_ctrl) == 1)
        bio_method = m;
}

/* ---- Calls into OpenSSL ---- */

/* Turns the result `r` of an SSL call into 0, -EAGAIN (with what to wait for) or an error. */
static int ssl_result(struct rdt_conn *c, int r, const char *doing)
{
    struct tls *t = c->ctx;
    char why[256];
    switch (OSSL(SSL_get_error)(t->ssl, r)) {
    case SSL_ERROR_NONE:
        return 0;
    case SSL_ERROR_WANT_READ:
        t->want = POLLIN;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        t->want = POLLOUT;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return -ENODATA; /* the peer's close_notify: the end of its data */
    case SSL_ERROR_SYSCALL:
        if (t->lower_rc)
            return tls_fail(t, t->lower_rc, "%s", rdt_conn_error(c->next));
        if (OSSL(ERR_peek_error)() == 0)
            return tls_fail(t, -ECONNRESET, "tls: the peer closed the connection %s", doing);
        /* fall through */
    default:
        rdt_ossl_error(why, sizeof(why));
        if (strstr(why, "wrong version number") || strstr(why, "packet length too long") ||
            strstr(why, "http request"))
            return tls_fail(t, -EPROTO, "tls: %s: the peer does not speak TLS (%s)", doing,
                            t->cfg->server ? "a plain tcp or npipe client?"
                                           : "a plain tcp or npipe server?");
        return tls_fail(t, -EPROTO, "tls: %s: %s", doing, why);
    }
}

/* The client's check of the server's certificate, right after the handshake. */
static int verify_server(struct rdt_conn *c)
{
    struct tls *t = c->ctx;
    struct rdt_tls *cfg = t->cfg;
    X509 *x = OSSL(SSL_get1_peer_certificate)(t->ssl);
    if (!x)
        return tls_fail(t, -EACCES, "tls: the server sent no certificate");
    uint8_t thumb[RDT_THUMB_LEN];
    char hex[RDT_THUMB_HEX], why[200] = "";
    rdt_cert_thumb(x, thumb, hex);
    if (cfg->pinned) {
        if (memcmp(thumb, cfg->thumb, sizeof(thumb)) != 0)
            snprintf(why, sizeof(why), "is not the pinned one");
    } else if (!rdt_cert_has_name(x, cfg->name)) {
        snprintf(why, sizeof(why), "does not carry the name \"%s\"", cfg->name);
    } else {
        X509_STORE_CTX *vc = OSSL(X509_STORE_CTX_new)();
        int ok = vc &&
                 OSSL(X509_STORE_CTX_init)(vc, cfg->trust, x,
                                           OSSL(SSL_get_peer_cert_chain)(t->ssl)) == 1 &&
                 OSSL(X509_STORE_CTX_set_purpose)(vc, X509_PURPOSE_SSL_SERVER) == 1 &&
                 OSSL(X509_verify_cert)(vc) == 1;
        if (!ok)
            snprintf(why, sizeof(why),
                     "does not chain to a certificate of your stores or the system's (%s)",
                     vc ? OSSL(X509_verify_cert_error_string)(OSSL(X509_STORE_CTX_get_error)(vc))
                        : "out of memory");
        if (vc)
            OSSL(X509_STORE_CTX_free)(vc);
        OSSL(ERR_clear_error)();
    }
    OSSL(X509_free)(x);
    if (why[0])
        return tls_fail(t, -EACCES,
                        "tls: refused the server's certificate (SHA-1 thumbprint %s): it %s", hex,
                        why);
    t->verified = true;
    return 0;
}

/* ---- The layer ---- */

static int tls_open(struct rdt_conn *c)
{
    struct tls *t = c->ctx;
    int rc = rdt_conn_open_step(c->next);
    if (rc == -EAGAIN)
        return rc;
    if (rc)
        return tls_fail(t, rc, "%s", rdt_conn_error(c->next));
    OSSL(ERR_clear_error)();
    rc = ssl_result(c, OSSL(SSL_do_handshake)(t->ssl), "during the handshake");
    if (rc == -ENODATA)
        rc = tls_fail(t, -ECONNRESET, "tls: the peer ended the connection during the handshake");
    if (rc == 0 && !t->cfg->server)
        rc = verify_server(c);
    if (rc == 0)
        t->want = POLLIN;
    return rc;
}

static void tls_close(struct rdt_conn *c)
{
    struct tls *t = c->ctx;
    if (t->ssl)
        OSSL(SSL_free)(t->ssl); /* frees the BIO too */
    rdt_tls_unref(t->cfg);
    free(t);
}

/* One SSL_read: 0 with bytes, 0 with none at the end, -EAGAIN, or an error. */
static int read_once(struct rdt_conn *c, char *buf, size_t len, size_t *nread)
{
    struct tls *t = c->ctx;
    *nread = 0;
    OSSL(ERR_clear_error)();
    int rc = ssl_result(c, OSSL(SSL_read_ex)(t->ssl, buf, len, nread), "while reading");
    if (rc == 0)
        t->want = POLLIN;
    if (rc == -ENODATA || (rc == -ECONNRESET && t->eof && !t->lower_rc))
        return 0; /* the end, with or without close_notify, as on a plain connection */
    return rc;
}

/* A record holds at most 16 KiB: the records OpenSSL has read ahead fill the caller's buffer
 * in one call, so that the caller makes one write of them, not one a record. Whatever stops
 * the filling (no more held, the end, an error) comes at the next call. */
static int tls_read(struct rdt_conn *c, void *buf, size_t len, size_t *nread)
{
    struct tls *t = c->ctx;
    int rc = read_once(c, buf, len, nread);
    while (rc == 0 && *nread > 0 && *nread < len && OSSL(SSL_has_pending)(t->ssl) == 1) {
        size_t n = 0;
        if (read_once(c, (char *)buf + *nread, len - *nread, &n) != 0 || n == 0)
            break;
        *nread += n;
    }
    t->more = rc == 0 && *nread > 0 && OSSL(SSL_has_pending)(t->ssl) == 1;
    return rc;
}

static int tls_write(struct rdt_conn *c, const void *buf, size_t len, size_t *nwritten)
{
    struct tls *t = c->ctx;
    *nwritten = 0;
    OSSL(ERR_clear_error)();
    int rc = ssl_result(c, OSSL(SSL_write_ex)(t->ssl, buf, len, nwritten), "while writing");
    if (rc == 0)
        t->want = POLLIN;
    return rc == -ENODATA ? tls_fail(t, -EPIPE, "tls: the peer has ended the connection") : rc;
}

/* In the handshake, what it waits for; after it, the peer's bytes always, and what a blocked
 * call waits for besides (a write that waits must not stop the reading). */
static short tls_events(struct rdt_conn *c)
{
    struct tls *t = c->ctx;
    if (!c->next->ready)
        return rdt_conn_events(c->next);
    if (!c->ready)
        return t->want ? t->want : POLLIN;
    return (short)(POLLIN | t->want);
}

static const char *tls_last_error(struct rdt_conn *c)
{
    struct tls *t = c->ctx;
    return t->err[0] ? t->err : rdt_conn_error(c->next);
}

static void tls_shutdown(struct rdt_conn *c)
{
    struct tls *t = c->ctx;
    if (t->shut || !c->ready)
        return;
    t->shut = true;
    OSSL(ERR_clear_error)();
    OSSL(SSL_shutdown)(t->ssl); /* close_notify, best effort: the socket's end follows */
    OSSL(ERR_clear_error)();
}

/* After a read that gave bytes, OpenSSL may hold more records read ahead; after one that
 * waits, what it holds is an incomplete record, which the descriptor's readiness completes. */
static bool tls_pending(struct rdt_conn *c)
{
    struct tls *t = c->ctx;
    return t->more;
}

static const struct rdt_ops tls_ops = {
    .name = "tls",
    .open = tls_open,
    .close = tls_close,
    .read = tls_read,
    .write = tls_write,
    .events = tls_events,
    .last_error = tls_last_error,
    .shutdown = tls_shutdown,
    .pending = tls_pending,
};

/* ---- Configurations ---- */

static int cfg_new(struct rdt_tls **out, const struct rdt_tstring *ts, bool server, char *err,
                   size_t errlen)
{
    *out = NULL;
    int rc = rdt_ossl_load(true, err, errlen);
    if (rc)
        return rc;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, bio_method_make);
    struct rdt_tls *cfg = calloc(1, sizeof(*cfg));
    if (!cfg || !bio_method) {
        free(cfg);
        return rdt_errf(-ENOMEM, err, errlen, "tls: out of memory");
    }
    cfg->refs = 1;
    cfg->server = server;
    cfg->ctx = OSSL(SSL_CTX_new)(server ? OSSL(TLS_server_method)() : OSSL(TLS_client_method)());
    if (!cfg->ctx) {
        free(cfg);
        return rdt_errf(-ENOMEM, err, errlen, "tls: cannot make a context");
    }
    long min = ts->tls_min >= 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    OSSL(SSL_CTX_ctrl)(cfg->ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, min, NULL);
    OSSL(SSL_CTX_ctrl)
    (cfg->ctx, SSL_CTRL_MODE, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER,
     NULL);
    /* no resumption (every client is new), no renegotiation; an end without close_notify is an
     * end, as on a plain connection (the debug protocols check their own packets) */
    uint64_t options = SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                       SSL_OP_CIPHER_SERVER_PREFERENCE;
    OSSL(SSL_CTX_set_options)(cfg->ctx, options);
    OSSL(SSL_CTX_set_num_tickets)(cfg->ctx, 0);
    /* AES-128-GCM first (the fastest where the CPU has AES instructions), the server's order */
    OSSL(SSL_CTX_set_ciphersuites)
    (cfg->ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
               "TLS_CHACHA20_POLY1305_SHA256");
    /* records are read several at a time (one system call for up to 64 KiB, not two a record);
     * what is read ahead is announced by the pending op */
    OSSL(SSL_CTX_ctrl)(cfg->ctx, SSL_CTRL_SET_READ_AHEAD, 1, NULL);
    OSSL(SSL_CTX_set_default_read_buffer_len)(cfg->ctx, 64 * 1024);
    *out = cfg;
    return 0;
}

int rdt_tls_server(struct rdt_tls **out, const struct rdt_tstring *ts, char *err, size_t errlen)
{
    struct rdt_tls *cfg = NULL;
    int rc = cfg_new(&cfg, ts, true, err, errlen);
    if (rc)
        return rc;
    struct rdt_cert cert;
    char why[RDT_ERR_MAX - 16];
    rc = rdt_cert_find(ts, &cert, why, sizeof(why));
    if (rc == 0 && (OSSL(SSL_CTX_use_certificate_chain_file)(cfg->ctx, cert.path) != 1 ||
                    OSSL(SSL_CTX_use_PrivateKey)(cfg->ctx, cert.key) != 1 ||
                    OSSL(SSL_CTX_check_private_key)(cfg->ctx) != 1)) {
        char ossl[200];
        snprintf(why, sizeof(why), "certificate \"%s\" (%s): %s", ts->cert, cert.path,
                 rdt_ossl_error(ossl, sizeof(ossl)));
        rc = -EKEYREJECTED;
    }
    rdt_cert_free(&cert);
    if (rc) {
        rdt_tls_unref(cfg);
        return rdt_errf(rc, err, errlen, "%s: %s", rdt_proto_name(ts->proto), why);
    }
    *out = cfg;
    return 0;
}

int rdt_tls_client(struct rdt_tls **out, const struct rdt_tstring *ts, char *err, size_t errlen)
{
    struct rdt_tls *cfg = NULL;
    int rc = cfg_new(&cfg, ts, false, err, errlen);
    if (rc)
        return rc;
    cfg->pinned = rdt_cert_thumb_parse(ts->cert, cfg->thumb);
    snprintf(cfg->name, sizeof(cfg->name), "%s", ts->cert);
    /* a pinned thumbprint needs no trust store: the system's costs tens of milliseconds */
    if (!cfg->pinned && !(cfg->trust = rdt_cert_trust())) {
        rdt_tls_unref(cfg);
        return rdt_errf(-ENOMEM, err, errlen, "tls: out of memory");
    }
    *out = cfg;
    return 0;
}

void rdt_tls_unref(struct rdt_tls *cfg)
{
    if (!cfg || --cfg->refs > 0)
        return;
    if (cfg->trust)
        OSSL(X509_STORE_free)(cfg->trust);
    OSSL(SSL_CTX_free)(cfg->ctx);
    free(cfg);
}

int rdt_tls_wrap(struct rdt_conn **c, const struct rdt_tstring *ts, char *err, size_t errlen)
{
    if (ts->proto != RDT_SSL && ts->proto != RDT_SPIPE)
        return 0;
    struct rdt_tls *cfg = NULL;
    int rc = rdt_tls_client(&cfg, ts, err, errlen);
    if (rc) {
        rdt_conn_free(*c);
        *c = NULL;
        return rc;
    }
    *c = rdt_tls_conn(*c, cfg);
    rdt_tls_unref(cfg);
    return *c ? 0 : rdt_errf(-ENOMEM, err, errlen, "tls: out of memory");
}

struct rdt_conn *rdt_tls_conn(struct rdt_conn *next, struct rdt_tls *cfg)
{
    struct tls *t = next ? calloc(1, sizeof(*t)) : NULL;
    struct rdt_conn *c = t ? rdt_conn_push(&tls_ops, t, next) : NULL;
    if (!c) {
        free(t);
        rdt_conn_free(next);
        return NULL;
    }
    t->cfg = cfg;
    cfg->refs++;
    t->ssl = OSSL(SSL_new)(cfg->ctx);
    BIO *b = t->ssl ? OSSL(BIO_new)(bio_method) : NULL;
    if (!b) {
        rdt_conn_free(c);
        return NULL;
    }
    OSSL(BIO_set_data)(b, c);
    OSSL(BIO_set_init)(b, 1);
    OSSL(SSL_set_bio)(t->ssl, b, b);
    if (cfg->server)
        OSSL(SSL_set_accept_state)(t->ssl);
    else
        OSSL(SSL_set_connect_state)(t->ssl);
    return c;
}

/* Private to transports/: certificate stores (see certs.c). */
#ifndef RDQ_TRANSPORTS_CERTS_H
#define RDQ_TRANSPORTS_CERTS_H

#include "ossl.h"
#include "transport.h"

#include <stdbool.h>
#include <stdint.h>

#define RDT_THUMB_LEN 20                      /* SHA-1 */
#define RDT_THUMB_HEX (2 * RDT_THUMB_LEN + 1) /* as lower-case hex, with its NUL */

/* The user store ($RDQ_USER_CERTS, else $XDG_CONFIG_HOME/rdq/certs, else ~/.config/rdq/certs)
 * or the machine store ($RDQ_MACHINE_CERTS, else /etc/rdq/certs). */
int rdt_certs_dir(bool machine, char *buf, size_t len);

/* A SHA-1 thumbprint in hex, in any case, with or without spaces or colons. */
bool rdt_cert_thumb_parse(const char *s, uint8_t out[RDT_THUMB_LEN]);
/* The SHA-1 thumbprint of `x`, raw and as hex. */
void rdt_cert_thumb(X509 *x, uint8_t out[RDT_THUMB_LEN], char hex[RDT_THUMB_HEX]);
/* Whether `x` carries `name` as its subject CN or a DNS subjectAltName. */
bool rdt_cert_has_name(X509 *x, const char *name);

/* A server's certificate and key, as found in its store. */
struct rdt_cert {
    X509 *x;
    EVP_PKEY *key;
    char path[512];     /* the PEM file: the certificate, then its chain */
    char key_path[512]; /* where the key was read */
};

/* Finds the certificate that ts->cert names in the store that ts names (certuser= or machuser=),
 * with its key, fit to serve: exactly one match, valid now, for server authentication, its key
 * readable and matching. The message names the store, the certificate and what is wrong. */
int rdt_cert_find(const struct rdt_tstring *ts, struct rdt_cert *out, char *err, size_t errlen);
void rdt_cert_free(struct rdt_cert *c);

/* What a client trusts when it names a server's certificate by name: every certificate of the
 * user and the machine store, and the system's trust store. */
X509_STORE *rdt_cert_trust(void);

#endif

/* Private to broker/: a TSIG key from a BIND key file, as tsig-keygen writes it
 * (key "NAME" { algorithm ALG; secret "BASE64"; };), checked to be one ldns signs with. */
#ifndef RDQ_BROKER_TSIGKEY_H
#define RDQ_BROKER_TSIGKEY_H

#include <stddef.h>

#define RDB_TSIG_FUDGE 300 /* seconds of clock difference a signature allows (RFC 8945) */

struct rdb_tsigkey {
    char name[256];    /* "NAME." */
    char shown[256];   /* "NAME", for messages */
    char alg[32];      /* as the file says: "hmac-sha256" */
    char wire_alg[32]; /* as TSIG names it: "hmac-sha256." */
    char secret[512];  /* base64 */
    unsigned mode;     /* the file's permission bits */
};

/* Reads and checks the key file at `path` (ldns loaded already): 0, or -errno with a message
 * naming the file ("-tsig PATH: ...") in err. */
int rdb_tsigkey_load(struct rdb_tsigkey *k, const char *path, char *err, size_t errlen);

#endif

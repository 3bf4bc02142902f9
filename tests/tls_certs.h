/* Throwaway certificates for the TLS tests, made with libcrypto (the tests link it; the
 * programs never do): a CA, and server certificates fit and unfit to serve. */
#ifndef RDQ_TEST_TLS_CERTS_H
#define RDQ_TEST_TLS_CERTS_H

#include <stdbool.h>

/* The stores, made under a new directory (tc_dir): user store tc_user, machine store tc_mach,
 * an empty one tc_empty, exported as RDQ_USER_CERTS and RDQ_MACHINE_CERTS.
 *
 * user store:   srv.pem + srv.key      CN rdq-srv, DNS localhost, serverAuth, signed by the CA
 *               onefile.pem            CN rdq-onefile, its key in the same file
 *               noauth.pem + .key      CN rdq-noauth, extendedKeyUsage clientAuth only
 *               expired.pem + .key     CN rdq-expired, valid until yesterday
 *               future.pem + .key      CN rdq-future, valid from tomorrow
 *               dup-a.pem, dup-b.pem   both CN rdq-dup, with keys
 *               nokey.pem              CN rdq-nokey, no key anywhere
 *               badkey.pem + .key      CN rdq-badkey, the key of another certificate
 *               locked.pem + .key      CN rdq-locked, the key readable by root only (0600)
 * machine store: ca.pem (the CA), mach.pem + mach.key (CN rdq-mach, no extendedKeyUsage)
 * a store of its own (tc_other): other.pem + .key, CN rdq-srv too, signed by no known CA
 * another (tc_nul): nul.pem + .key, CN "rdq-srv" then a NUL and more, signed by the CA */
extern char tc_dir[64], tc_user[96], tc_mach[96], tc_empty[96], tc_other[96], tc_nul[96];
extern char tc_srv_thumb[41]; /* srv.pem's SHA-1 thumbprint, lower-case hex */
extern char tc_mach_thumb[41];
extern char tc_nul_thumb[41]; /* tc_nul/nul.pem: CN "rdq-srv\0.attacker.example", by the CA */

/* Makes everything above; false (with a message on stderr) if it could not. */
bool tc_make(void);
/* Removes tc_dir. */
void tc_remove(void);

#endif

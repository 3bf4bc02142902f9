/* OpenSSL on first use: one table of symbols, filled by dlopen/dlsym from the libraries whose
 * major version the headers name. See ossl.h. */
#include "ossl.h"

#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <openssl/opensslv.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#ifndef OPENSSL_VERSION_MAJOR
#error "OpenSSL 3 or later is needed (its headers name the libraries' major version)"
#endif
#define STR_(x) #x
#define STR(x) STR_(x)
#define LIBCRYPTO "libcrypto.so." STR(OPENSSL_VERSION_MAJOR)
#define LIBSSL "libssl.so." STR(OPENSSL_VERSION_MAJOR)

/* Packagers read this note to learn which libraries the programs load at run time. */
__attribute__((used, section(".note.dlopen"), aligned(4))) static const struct {
    unsigned namesz, descsz, type;
    char name[4];
    char desc[sizeof("[{\"soname\":[\"" LIBSSL "\",\"" LIBCRYPTO
                     "\"],\"priority\":\"suggested\"}]")];
} dlopen_note = {4, sizeof(dlopen_note.desc), 0x407c0c0a, "FDO",
                 "[{\"soname\":[\"" LIBSSL "\",\"" LIBCRYPTO "\"],\"priority\":\"suggested\"}]"};

struct rdt_ossl rdt_ossl_syms;

struct lib {
    const char *soname;
    pthread_once_t once;
    int rc;
    char err[256];
};

static struct lib crypto_lib = {LIBCRYPTO, PTHREAD_ONCE_INIT, 0, ""};
static struct lib ssl_lib = {LIBSSL, PTHREAD_ONCE_INIT, 0, ""};

/* Opens `l` and looks up each name of a list; the first one missing fails the library. */
static void *lib_open(struct lib *l)
{
    void *h = dlopen(l->soname, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h) {
        const char *e = dlerror();
        snprintf(l->err, sizeof(l->err), "%s", e ? e : "not found");
        l->rc = -ENOPKG;
    }
    return h;
}

#define RDT_OSSL_SYM(name)                                                                         \
    if (!l->rc && !(rdt_ossl_syms.name = (__typeof__(name) *)dlsym(h, #name))) {                   \
        snprintf(l->err, sizeof(l->err), "%s has no %s", l->soname, #name);                        \
        l->rc = -ENOPKG;                                                                           \
    }

static void crypto_load(void)
{
    struct lib *l = &crypto_lib;
    void *h = lib_open(l);
    if (h) {
        RDT_OSSL_CRYPTO(RDT_OSSL_SYM)
    }
}

static void ssl_load(void)
{
    struct lib *l = &ssl_lib;
    void *h = lib_open(l);
    if (h) {
        RDT_OSSL_SSL(RDT_OSSL_SYM)
    }
}

int rdt_ossl_load(bool ssl, char *err, size_t errlen)
{
    pthread_once(&crypto_lib.once, crypto_load);
    struct lib *l = &crypto_lib;
    if (!l->rc && ssl) {
        pthread_once(&ssl_lib.once, ssl_load);
        l = &ssl_lib;
    }
    if (l->rc)
        return rdt_errf(l->rc, err, errlen, "OpenSSL's %s cannot be loaded: %s", l->soname, l->err);
    return 0;
}

const char *rdt_ossl_error(char *buf, size_t len)
{
    unsigned long e = OSSL(ERR_get_error)();
    const char *reason = e ? OSSL(ERR_reason_error_string)(e) : "no error";
    if (reason)
        snprintf(buf, len, "%s", reason);
    else
        OSSL(ERR_error_string_n)(e, buf, len);
    OSSL(ERR_clear_error)();
    return buf;
}

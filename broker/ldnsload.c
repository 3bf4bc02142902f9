/* ldns on first use: one table of symbols, filled by dlopen/dlsym. See ldnsload.h. */
#include "ldnsload.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#define LIBLDNS "libldns.so.3"

/* Packagers read this note to learn which libraries the programs load at run time. */
__attribute__((used, section(".note.dlopen"), aligned(4))) static const struct {
    unsigned namesz, descsz, type;
    char name[4];
    char desc[sizeof("[{\"feature\":\"dns-update\",\"soname\":[\"" LIBLDNS
                     "\"],\"priority\":\"suggested\"}]")];
} dlopen_note = {4, sizeof(dlopen_note.desc), 0x407c0c0a, "FDO",
                 "[{\"feature\":\"dns-update\",\"soname\":[\"" LIBLDNS
                 "\"],\"priority\":\"suggested\"}]"};

struct rdb_ldns rdb_ldns_syms;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_rc;
static char load_err[256];

#define RDB_LDNS_SYM(name)                                                                         \
    if (!load_rc && !(rdb_ldns_syms.name = (__typeof__(name) *)dlsym(h, #name))) {                 \
        snprintf(load_err, sizeof(load_err), "%s has no %s", LIBLDNS, #name);                      \
        load_rc = -ENOPKG;                                                                         \
    }

static void load(void)
{
    void *h = dlopen(LIBLDNS, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h) {
        const char *e = dlerror();
        snprintf(load_err, sizeof(load_err), "%s", e ? e : LIBLDNS ": not found");
        load_rc = -ENOPKG;
        return;
    }
    RDB_LDNS_FUNCS(RDB_LDNS_SYM)
    RDB_LDNS_DATA(RDB_LDNS_SYM)
}

int rdb_ldns_load(char *err, size_t errlen)
{
    pthread_once(&once, load);
    if (load_rc)
        snprintf(err, errlen, "-dns-update needs libldns (libldns3): %s", load_err);
    return load_rc;
}

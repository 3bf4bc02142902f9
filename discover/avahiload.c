/* avahi-client on first use: see avahiload.h. */
#include "avahiload.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>

/* The library, for tools that read a program's dlopen notes (systemd's ELF package notes). */
__attribute__((used, section(".note.dlopen"), aligned(4))) static const struct {
    unsigned namesz, descsz, type;
    char name[4];
    char desc[112];
} dlopen_note = {4, 112, 0x407c0c0a, "FDO",
                 "[{\"feature\":\"lan\",\"description\":\"DNS-SD on the LAN\","
                 "\"priority\":\"recommended\",\"soname\":[\"libavahi-client.so.3\"]}]"};

struct rdd_avahi rdd_avahi;

int rdd_avahi_load(char *err, size_t errlen)
{
    static int state; /* 0 not yet, 1 loaded, -1 failed */
    static char why[256];
    if (state == 0) {
        void *h = dlopen("libavahi-client.so.3", RTLD_NOW | RTLD_LOCAL);
        bool ok = h != NULL;
        if (!h)
            snprintf(why, sizeof(why), "%s", dlerror());
#define RDD_AVAHI_SYM(name)                                                                        \
    if (ok && !(rdd_avahi.name = (__typeof__(&name))dlsym(h, #name))) {                            \
        snprintf(why, sizeof(why), "libavahi-client.so.3 has no %s", #name);                       \
        ok = false;                                                                                \
    }
        RDD_AVAHI_FUNCS(RDD_AVAHI_SYM)
#undef RDD_AVAHI_SYM
        state = ok ? 1 : -1;
    }
    if (state < 0)
        snprintf(err, errlen, "browsing the LAN needs libavahi-client (libavahi-client3): %s", why);
    return state > 0 ? 0 : -1;
}

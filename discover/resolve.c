/* Host names to addresses, for callers that wait: c-ares through the transports' resolver. */
#include "discover.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void rdd_host_clean(const char *typed, char *out, size_t len)
{
    while (*typed == '\\')
        typed++;
    size_t n = strlen(typed);
    if (n >= 2 && typed[0] == '[' && typed[n - 1] == ']')
        snprintf(out, len, "%.*s", (int)(n - 2), typed + 1);
    else
        snprintf(out, len, "%s", typed);
}

enum rdd_status rdd_status_of_lookup(int rc)
{
    return rc == -ENOENT ? RDD_NOT_FOUND : rc == -ETIMEDOUT ? RDD_UNREACHABLE : RDD_FAILED;
}

int rdd_resolve(const char *host, int timeout_ms, char addrs[][64], int max, char *err,
                size_t errlen)
{
    char name[RDT_HOST_MAX + 1];
    struct rdt_addrs a;
    rdd_host_clean(host, name, sizeof(name));
    int n = rdt_resolve_addrs(name, false, timeout_ms, &a, err, errlen);
    if (n < 0)
        return -(int)rdd_status_of_lookup(n);
    for (int i = 0; i < n && i < max; i++)
        snprintf(addrs[i], 64, "%s", a.addr[i]);
    return n < max ? n : max;
}

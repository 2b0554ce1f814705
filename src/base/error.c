/* natkit: error strings and version. */
#include <stdarg.h>
#include <stdio.h>

#include "errctx.h"
#include "natkit/common.h"
#include "natkit/stun.h"

const char *nk_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case NK_ERR_INVAL: return "invalid argument";
    case NK_ERR_NOMEM: return "out of memory";
    case NK_ERR_NOBUFS: return "buffer too small";
    case NK_ERR_TRUNCATED: return "message truncated";
    case NK_ERR_MALFORMED: return "malformed message";
    case NK_ERR_NOT_STUN: return "not a STUN message";
    case NK_ERR_INTEGRITY: return "message integrity check failed";
    case NK_ERR_FINGERPRINT: return "fingerprint mismatch";
    case NK_ERR_NOT_FOUND: return "not found";
    case NK_ERR_TIMEOUT: return "timed out";
    case NK_ERR_AGAIN: return "nothing available now";
    case NK_ERR_UNKNOWN_ATTR: return "unknown comprehension-required attribute";
    case NK_ERR_SYSTEM: return "system call failed";
    case NK_ERR_STATE: return "not valid in the current state";
    case NK_ERR_UNSUPPORTED: return "not supported";
    case NK_ERR_LIMIT: return "limit reached";
    case NK_ERR_ADDRESS: return "bad address";
    case NK_ERR_CLOSED: return "closed";
    case NK_ERR_AUTH: return "authentication failed";
    case NK_ERR_DENIED: return "refused by policy";
    }
    if (NK_ERR_IS_STUN(err)) {
        const char *r = nk_stun_reason(NK_ERR_STUN_CODE(err));
        return r[0] != '\0' ? r : "STUN error response";
    }
    return "unknown error";
}

/* One per thread: what the last failed open/start of this thread was doing. */
static _Thread_local struct {
    int sys_errno;
    char what[160];
} errctx;

void nk__errctx_set(int sys_errno, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errctx.what, sizeof(errctx.what), fmt, ap);
    va_end(ap);
    errctx.sys_errno = sys_errno;
}

void nk__errctx_clear(void)
{
    errctx.what[0] = '\0';
    errctx.sys_errno = 0;
}

const char *nk_error_context(int *sys_errno)
{
    if (sys_errno != NULL)
        *sys_errno = errctx.sys_errno;
    return errctx.what;
}

const char *nk_version(void)
{
    return NK_VERSION_STRING;
}

/* natkit io: the TLS servers' certificate and key files (tls_files.h). */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "errctx.h"
#include "natkit/common.h"
#include "tls_files.h"

static int readable(const char *what, const char *file)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        nk__errctx_set(e, "read %s %s", what, file);
        errno = e;
        return NK_ERR_SYSTEM;
    }
    close(fd);
    return 0;
}

int nk__tls_files_check(const char *cert_file, const char *key_file)
{
    int rc = readable("certificate", cert_file);
    return rc != 0 ? rc : readable("key", key_file);
}

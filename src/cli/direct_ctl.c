/* natkit CLI, `accept` / `dial`: the control stream's framing (see direct_ctl.h). */
#include <string.h>

#include "direct_ctl.h"
#include "natkit/common.h"

int ctl_frame_put(uint8_t *buf, size_t cap, const uint8_t *msg, size_t n)
{
    if (n == 0 || n > CTL_MAX || msg == NULL)
        return NK_ERR_INVAL;
    if (cap < n + 2)
        return NK_ERR_NOBUFS;
    buf[0] = (uint8_t)(n >> 8);
    buf[1] = (uint8_t)n;
    memcpy(buf + 2, msg, n);
    return (int)(n + 2);
}

int ctl_frame_next(const uint8_t *p, size_t n, const uint8_t **msg, size_t *len)
{
    if (n < 2)
        return 0;
    size_t l = (size_t)p[0] << 8 | p[1];
    if (l == 0 || l > CTL_MAX)
        return NK_ERR_MALFORMED;
    if (n < l + 2)
        return 0;
    *msg = p + 2;
    *len = l;
    return (int)(l + 2);
}

/* natkit internal: the one random fallback (random.h). */
#include <sodium.h>

#include "random.h"

void nk__random(nk_random_fn fn, void *ctx, void *buf, size_t len)
{
    if (fn != NULL)
        fn(ctx, buf, len);
    else
        randombytes_buf(buf, len);
}

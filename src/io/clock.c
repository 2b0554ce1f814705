/* natkit: nk_now_ms (natkit/clock.h), the drivers' monotonic clock for callers. */
#include "clock.h"
#include "natkit/clock.h"

int64_t nk_now_ms(void)
{
    return nk__now_ms();
}

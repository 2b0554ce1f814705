/* Must not compile: a protocol core that reads the clock or opens a socket by
 * itself, even through the system's own headers (src/base/sansio.h poisons the calls). */
#include <time.h>

int nk__probe_clock(void);
int nk__probe_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int)ts.tv_sec;
}

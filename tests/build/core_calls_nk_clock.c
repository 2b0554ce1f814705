/* Must not compile: a protocol core that uses natkit's own public clock or UDP helpers
 * (natkit/clock.h and natkit/udp.h are on every include path, but src/base/sansio.h
 * poisons nk_now_ms and nk_udp_*). */
#include "natkit/clock.h"

int nk__probe_nk_clock(void);
int nk__probe_nk_clock(void) { return (int)nk_now_ms(); }

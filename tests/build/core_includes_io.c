/* Must not compile: a protocol core that includes a driver header (tests/CMakeLists.txt,
 * test build/core_includes_io). Its include path has no src/io/. */
#include "clock.h"

int nk__probe_now(void);
int nk__probe_now(void) { return (int)nk__now_ms(); }

/* Fuzz target: the accept/dial HELLO/REPLY decoder; what decodes must encode back the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "direct_hello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hello_msg h, back;
    uint8_t buf[128];
    if (hello_decode(&h, data, size) != 0)
        return 0;
    if (!hello_is(data, size)) /* whatever decodes is told apart from QUIC */
        abort();
    int n = hello_encode(&h, buf, sizeof(buf));
    if (n <= 0 || hello_decode(&back, buf, (size_t)n) != 0 || back.reply != h.reply ||
        memcmp(back.nonce, h.nonce, 8) != 0 || !nk_addr_equal(&back.addr, &h.addr))
        abort();
    return 0;
}

/*
 * Fuzz target: the TCP upgrade's control messages. The input is a sequence of
 * (length byte, message) given to an acceptor (with an announcement out) when
 * the length byte's top bit is set, else to a dialer (length: the low 7 bits),
 * with their answers polled in between.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "natkit/tcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void drain(nk_upgrade *u, int64_t now)
{
    uint8_t buf[NK_UPGRADE_MAX_MESSAGE];
    nk_upgrade_event ev;
    for (int i = 0; i < 32 && nk_upgrade_poll_message(u, now, buf, sizeof(buf)) > 0; i++)
        ;
    while (nk_upgrade_poll_event(u, &ev) == 0)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nk_upgrade_config ca = {.acceptor = 1}, cd = {0};
    nk_upgrade *acc = NULL, *dia = NULL;
    if (nk_upgrade_new(&acc, &ca) != 0 || nk_upgrade_new(&dia, &cd) != 0)
        goto Exit;
    nk_addr a = {.family = NK_AF_INET, .port = 4000, .ip = {192, 0, 2, 1}};
    nk_upgrade_announce(acc, 0, &a);
    int64_t now = 0;
    size_t off = 0;
    while (off < size) {
        nk_upgrade *to = (data[off] & 0x80) ? acc : dia;
        size_t n = data[off++] & 0x7f;
        if (n > size - off)
            n = size - off;
        nk_upgrade_handle_message(to, now, data + off, n);
        off += n;
        now += 100;
        drain(acc, now);
        drain(dia, now);
        nk_upgrade_report(dia, now, -1);
    }
Exit:
    nk_upgrade_free(acc);
    nk_upgrade_free(dia);
    return 0;
}

/* natkit: host-name resolution for nk_addr (a blocking getaddrinfo(): I/O, so
 * it lives with the drivers, not in base/). */
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>

#include "natkit/addr.h"
#include "addr_text.h"

int nk_addr_resolve(nk_addr *out, const char *text, uint16_t default_port)
{
    char host[256];
    const char *port = NULL;
    uint16_t p = default_port;

    if (nk_addr_parse(out, text) == 0)
        return 0;
    if (nk__addr_split_host_port(text, host, sizeof(host), &port) == 0) {
        if (nk__addr_parse_port(port, &p) != 0)
            return NK_ERR_ADDRESS;
    } else {
        if (strlen(text) >= sizeof(host) || default_port == 0)
            return NK_ERR_ADDRESS;
        strcpy(host, text);
    }
    if (nk_addr_parse_ip(out, host) == 0) {
        out->port = p;
        return 0;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
        return NK_ERR_ADDRESS;
    int rc = nk_addr_from_sockaddr(out, res->ai_addr);
    freeaddrinfo(res);
    if (rc == 0)
        out->port = p;
    return rc;
}

int nk_addr_resolve_families(nk_addr out[2], const char *text, uint16_t default_port)
{
    nk_addr first;
    int rc = nk_addr_resolve(&first, text, default_port);
    if (rc != 0)
        return rc;
    out[0] = first;
    char host[256];
    const char *port = NULL;
    if (nk_addr_parse(&first, text) == 0 || nk_addr_parse_ip(&first, text) == 0)
        return 1; /* a numeric address: its own family only */
    if (nk__addr_split_host_port(text, host, sizeof(host), &port) != 0) {
        if (strlen(text) >= sizeof(host))
            return 1;
        strcpy(host, text);
    }
    if (nk_addr_parse_ip(&first, host) == 0)
        return 1;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = out[0].family == NK_AF_INET ? AF_INET6 : AF_INET; /* the other family */
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
        return 1;
    int n = 1;
    if (nk_addr_from_sockaddr(&out[1], res->ai_addr) == 0) {
        out[1].port = out[0].port;
        n = 2;
    }
    freeaddrinfo(res);
    return n;
}

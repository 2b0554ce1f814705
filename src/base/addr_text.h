/* natkit internal: the text forms of addresses, shared by base/addr.c (parsing)
 * and io/resolve.c (host names). */
#ifndef NK__ADDR_TEXT_H
#define NK__ADDR_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* A decimal port 0..65535 with nothing after it: 0, else -1. */
int nk__addr_parse_port(const char *s, uint16_t *port);
/* Splits "host:port" / "[v6]:port" into host (copied into host[cap]) and the
 * port's text; a bare IPv6 address needs brackets. 0, else -1. */
int nk__addr_split_host_port(const char *text, char *host, size_t cap, const char **port);

#endif

/* natkit internal: the key file parser, exposed for its fuzz target. */
#ifndef NK__IDENTITY_INTERNAL_H
#define NK__IDENTITY_INTERNAL_H

#include <stddef.h>

#include "natkit/identity.h"

/* Parses the exact text of a key file (docs/internals/identity.md): 0 or NK_ERR_MALFORMED. */
int nk__identity_parse_key_file(nk_identity *out, const char *text, size_t len);

#endif

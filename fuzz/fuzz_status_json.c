/* Fuzz target: the JSON reader of `natkit status` (src/cli/json.c), which parses what a control
 * socket answers. Whatever the bytes, it must not crash or read out of bounds; a document it
 * accepts is walked whole (every node's getters), and a valid one is found inside garbage
 * only when it is all there is. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t walk(const json_node *n, int depth)
{
    size_t count = 1;
    if (depth > JSON_MAX_DEPTH + 1)
        abort(); /* the reader promised to refuse deeper nesting */
    const char *t = json_text(n);
    if (t != NULL)
        count += strlen(t) > 0;
    (void)json_num(n, 0);
    (void)json_get(n, "peer");
    for (const json_node *e = json_first(n); e != NULL; e = json_next(e))
        count += walk(e, depth + 1);
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_doc *d = json_parse((const char *)data, size);
    if (d != NULL) {
        if (json_root(d) == NULL)
            abort();
        (void)walk(json_root(d), 0);
    }
    json_free(d);
    return 0;
}

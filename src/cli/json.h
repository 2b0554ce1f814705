/*
 * natkit CLI: a small JSON reader for `natkit status` (the answers of control sockets).
 * RFC 8259 values into a tree of nodes; bounded: input up to JSON_MAX_INPUT bytes, nesting
 * up to JSON_MAX_DEPTH. Anything malformed fails as a whole (fuzz/fuzz_status_json.c).
 */
#ifndef CLI_JSON_H
#define CLI_JSON_H

#include <stddef.h>

#define JSON_MAX_INPUT (16u * 1024 * 1024)
#define JSON_MAX_DEPTH 32

typedef enum json_type { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_node json_node;
typedef struct json_doc json_doc;

/* NULL when text is not one JSON value (whitespace around it allowed) or out of memory. */
json_doc *json_parse(const char *text, size_t len);
void json_free(json_doc *d);
const json_node *json_root(const json_doc *d);

json_type json_type_of(const json_node *n);   /* (NULL: JSON_NULL) */
/* An object's member (first of that name), else NULL (n not an object, or no such key). */
const json_node *json_get(const json_node *n, const char *key);
/* An array's (or object's) first element and the one after e (NULL at the end). */
const json_node *json_first(const json_node *n);
const json_node *json_next(const json_node *e);
/* A string's decoded text, or a number's text as written; NULL for other types. */
const char *json_text(const json_node *n);
/* A number's value; def when n is not a number. */
double json_num(const json_node *n, double def);

#endif

/* natkit CLI: a small JSON reader (json.h). Recursive descent through a cursor; one exit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

struct json_node {
    json_type type;
    const char *text;   /* STRING: decoded; NUMBER: as written (both NUL-terminated, in the arena) */
    const char *key;    /* a member of an object: its name */
    json_node *child;   /* ARRAY/OBJECT: first element */
    json_node *next;    /* the next element of the parent */
};

struct json_doc {
    json_node *root;
    char *arena;        /* decoded strings: never longer than the input */
    size_t arena_len;
    json_node **blocks; /* nodes, allocated in blocks */
    size_t nblocks, used_in_last;
};

#define BLOCK 256

typedef struct parser {
    const char *p, *end;
    json_doc *d;
    int depth;
} parser;

static json_node *new_node(json_doc *d, json_type t)
{
    if (d->nblocks == 0 || d->used_in_last == BLOCK) {
        json_node **b = realloc(d->blocks, (d->nblocks + 1) * sizeof(*b));
        if (b == NULL)
            return NULL;
        d->blocks = b;
        if ((b[d->nblocks] = calloc(BLOCK, sizeof(json_node))) == NULL)
            return NULL;
        d->nblocks++;
        d->used_in_last = 0;
    }
    json_node *n = &d->blocks[d->nblocks - 1][d->used_in_last++];
    n->type = t;
    return n;
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xc0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xe0 | cp >> 12);
        *o++ = (char)(0x80 | (cp >> 6 & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xf0 | cp >> 18);
        *o++ = (char)(0x80 | (cp >> 12 & 0x3f));
        *o++ = (char)(0x80 | (cp >> 6 & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    }
    return o;
}

/* A string at ps->p (the opening quote): its decoded text in the arena, else NULL. A decoded
 * string plus its NUL never needs more room than its quoted form took in the input. */
static const char *parse_string(parser *ps)
{
    const char *p = ps->p + 1;
    char *start = ps->d->arena + ps->d->arena_len, *o = start;
    while (p < ps->end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20)
            return NULL;
        if (c != '\\') {
            *o++ = (char)c;
            p++;
            continue;
        }
        if (++p >= ps->end)
            return NULL;
        switch (*p++) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (ps->end - p < 4 || hex4(p, &cp) != 0)
                return NULL;
            p += 4;
            if (cp >= 0xd800 && cp < 0xdc00) { /* a surrogate pair: \uD8xx\uDCxx */
                if (ps->end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) != 0 || lo < 0xdc00 ||
                    lo > 0xdfff)
                    return NULL;
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                return NULL;
            }
            if (cp == 0)
                return NULL; /* would cut the text */
            o = put_utf8(o, cp);
            break;
        }
        default: return NULL;
        }
    }
    if (p >= ps->end)
        return NULL;
    *o++ = '\0';
    ps->d->arena_len += (size_t)(o - start);
    ps->p = p + 1;
    return start;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static const char *parse_number(parser *ps)
{
    const char *p = ps->p, *s = p;
    if (p < ps->end && *p == '-')
        p++;
    if (p >= ps->end || !is_digit(*p))
        return NULL;
    if (*p == '0')
        p++;
    else
        while (p < ps->end && is_digit(*p))
            p++;
    if (p < ps->end && *p == '.') {
        if (++p >= ps->end || !is_digit(*p))
            return NULL;
        while (p < ps->end && is_digit(*p))
            p++;
    }
    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < ps->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= ps->end || !is_digit(*p))
            return NULL;
        while (p < ps->end && is_digit(*p))
            p++;
    }
    size_t n = (size_t)(p - s);
    char *o = ps->d->arena + ps->d->arena_len;
    memcpy(o, s, n);
    o[n] = '\0';
    ps->d->arena_len += n + 1;
    ps->p = p;
    return o;
}

static json_node *parse_value(parser *ps);

static json_node *parse_container(parser *ps, int object)
{
    json_node *n = new_node(ps->d, object ? JSON_OBJECT : JSON_ARRAY), *last = NULL;
    if (n == NULL || ++ps->depth > JSON_MAX_DEPTH)
        return NULL;
    char close = object ? '}' : ']';
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return n;
    }
    for (;;) {
        const char *key = NULL;
        skip_ws(ps);
        if (object) {
            if (ps->p >= ps->end || *ps->p != '"' || (key = parse_string(ps)) == NULL)
                return NULL;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':')
                return NULL;
            ps->p++;
        }
        json_node *e = parse_value(ps);
        if (e == NULL)
            return NULL;
        e->key = key;
        if (last == NULL)
            n->child = e;
        else
            last->next = e;
        last = e;
        skip_ws(ps);
        if (ps->p >= ps->end)
            return NULL;
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p != close)
            return NULL;
        ps->p++;
        ps->depth--;
        return n;
    }
}

static json_node *literal(parser *ps, const char *word, json_type t)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return NULL;
    ps->p += n;
    return new_node(ps->d, t);
}

static json_node *parse_value(parser *ps)
{
    skip_ws(ps);
    if (ps->p >= ps->end)
        return NULL;
    json_node *n;
    switch (*ps->p) {
    case '{': return parse_container(ps, 1);
    case '[': return parse_container(ps, 0);
    case '"': {
        const char *s = parse_string(ps);
        if (s == NULL || (n = new_node(ps->d, JSON_STRING)) == NULL)
            return NULL;
        n->text = s;
        return n;
    }
    case 't': return literal(ps, "true", JSON_TRUE);
    case 'f': return literal(ps, "false", JSON_FALSE);
    case 'n': return literal(ps, "null", JSON_NULL);
    default: {
        const char *s = parse_number(ps);
        if (s == NULL || (n = new_node(ps->d, JSON_NUMBER)) == NULL)
            return NULL;
        n->text = s;
        return n;
    }
    }
}

json_doc *json_parse(const char *text, size_t len)
{
    if (text == NULL || len > JSON_MAX_INPUT)
        return NULL;
    json_doc *d = calloc(1, sizeof(*d));
    /* strings shrink or keep their length (quotes make room for the NUL); a number's NUL takes
     * the place of the byte after it (or, at the end of the input, one more): at most len + 1
     * in all; twice that, to keep a margin */
    if (d == NULL || (d->arena = malloc(2 * len + 2)) == NULL) {
        json_free(d);
        return NULL;
    }
    parser ps = {.p = text, .end = text + len, .d = d, .depth = 0};
    d->root = parse_value(&ps);
    skip_ws(&ps);
    if (d->root == NULL || ps.p != ps.end) {
        json_free(d);
        return NULL;
    }
    return d;
}

void json_free(json_doc *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->nblocks; i++)
        free(d->blocks[i]);
    free(d->blocks);
    free(d->arena);
    free(d);
}

const json_node *json_root(const json_doc *d)
{
    return d != NULL ? d->root : NULL;
}

json_type json_type_of(const json_node *n)
{
    return n != NULL ? n->type : JSON_NULL;
}

const json_node *json_get(const json_node *n, const char *key)
{
    if (n == NULL || n->type != JSON_OBJECT)
        return NULL;
    for (const json_node *e = n->child; e != NULL; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

const json_node *json_first(const json_node *n)
{
    return n != NULL && (n->type == JSON_ARRAY || n->type == JSON_OBJECT) ? n->child : NULL;
}

const json_node *json_next(const json_node *e)
{
    return e != NULL ? e->next : NULL;
}

const char *json_text(const json_node *n)
{
    return n != NULL && (n->type == JSON_STRING || n->type == JSON_NUMBER) ? n->text : NULL;
}

double json_num(const json_node *n, double def)
{
    return n != NULL && n->type == JSON_NUMBER ? strtod(n->text, NULL) : def;
}

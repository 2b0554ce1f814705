/* natkit: the calling thread's error context (nk_error_context in natkit/common.h). */
#ifndef NK_BASE_ERRCTX_H
#define NK_BASE_ERRCTX_H

/* Records what failed ("bind 127.0.0.1:40999") and the errno that says why (0: none). */
void nk__errctx_set(int sys_errno, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Forgets it: a call that documents nk_error_context clears it first. */
void nk__errctx_clear(void);

#endif

/* natkit io: the TLS servers' certificate and key files. */
#ifndef NK_IO_TLS_FILES_H
#define NK_IO_TLS_FILES_H

/* 0 when both files can be opened for reading; else NK_ERR_SYSTEM with errno and the error
 * context ("read certificate FILE") set, so the message names the file and the reason. */
int nk__tls_files_check(const char *cert_file, const char *key_file);

#endif

/* natkit CLI: the hub's control socket for `natkit status` (hub_status.c). */
#ifndef CLI_HUB_STATUS_H
#define CLI_HUB_STATUS_H

#include <signal.h>
#include <stddef.h>

#include "control.h"
#include "natkit/hub_service.h"

/* Opens it (path NULL: the runtime directory's). NULL when it could not (said on stderr);
 * *fatal then says whether to stop (a --control PATH was given). */
ctl_server *hub_ctl_open(nk_hub_service *svc, const char *path, int *fatal);
/* Serves it until one of the (blocked) signals in stop arrives; returns that signal. */
int hub_ctl_wait(ctl_server *ctl, const sigset_t *stop);
/* Every counter as "name=value name=value ..." (the line the hub logs when it stops; the
 * status answer's "stats" comes from the same table). Cut short to fit cap. */
void hub_stats_line(char *buf, size_t cap, const nk_hub_stats_t *st);

#endif

/* natkit: everything public, in one include. */
#ifndef NATKIT_H
#define NATKIT_H

#include "natkit/common.h"
#include "natkit/addr.h"
#include "natkit/stun.h"
#include "natkit/stun_client.h"
#include "natkit/nat_probe.h"
#include "natkit/stun_server.h"
#include "natkit/turn.h"
#include "natkit/turn_client.h"
#include "natkit/turn_server.h"
#include "natkit/identity.h"
#include "natkit/agent.h"
#include "natkit/session.h"
#include "natkit/quic.h"

#endif

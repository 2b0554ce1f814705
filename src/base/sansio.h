/*
 * natkit internal: force-included (-include) in every protocol core's compile
 * (the CMake function nk_module). A core never reads a clock, sleeps,
 * polls or touches a socket; it is handed the time and the bytes. Two fences
 * keep that rule by the compiler, not by comment:
 *   - the cores' include path has no src/io/, so the drivers' "clock.h" is
 *     not found;
 *   - the calls below are poisoned: a core that names one does not compile,
 *     whichever header declared it. That includes natkit's own public clock
 *     and socket helpers (natkit/clock.h, natkit/udp.h), so a core cannot
 *     even include those headers.
 * The system headers that declare them are included first, so that a core may
 * still include them for their types (struct timespec, socklen_t) and so that
 * their declarations are not themselves rejected.
 */
#ifndef NK__SANSIO_H
#define NK__SANSIO_H

#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <netdb.h>

#pragma GCC poison clock_gettime gettimeofday time clock_nanosleep nanosleep sleep usleep
#pragma GCC poison socket socketpair accept4 sendto sendmsg sendmmsg recvfrom recvmsg recvmmsg
#pragma GCC poison poll ppoll select pselect epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait
#pragma GCC poison getaddrinfo gethostbyname
#pragma GCC poison nk_now_ms nk_udp_open nk_udp_local nk_udp_send nk_udp_recv

#endif

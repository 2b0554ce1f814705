/* natkit: standard reason phrases for STUN (RFC 8489) and TURN (RFC 8656) error codes. */
#include "natkit/stun.h"

const char *nk_stun_reason(int code)
{
    switch (code) {
    case 300: return "Try Alternate";
    case 400: return "Bad Request";
    case 401: return "Unauthenticated";
    case 403: return "Forbidden";
    case 405: return "Mobility Forbidden";
    case 420: return "Unknown Attribute";
    case 437: return "Allocation Mismatch";
    case 438: return "Stale Nonce";
    case 440: return "Address Family not Supported";
    case 441: return "Wrong Credentials";
    case 442: return "Unsupported Transport Protocol";
    case 443: return "Peer Address Family Mismatch";
    case 446: return "Connection Already Exists";
    case 447: return "Connection Timeout or Failure";
    case 486: return "Allocation Quota Reached";
    case 487: return "Role Conflict";
    case 500: return "Server Error";
    case 508: return "Insufficient Capacity";
    }
    return "";
}

/*
 * stun_probe: a tiny, independent STUN client for the stun-server
 * integration test (built by the test script with plain cc; it does not use
 * libnatkit, so the server is checked against a second implementation).
 *
 *   stun_probe [--tcp] [--change FLAGS] [--bind IP:PORT] [--fingerprint]
 *              [--junk] [--timeout-ms N] SERVER_IP PORT
 *
 * Sends one Binding request (IPv4) and prints one line:
 *   local=IP:PORT from=IP:PORT class=success|error code=N mapped=IP:PORT
 *   origin=IP:PORT other=IP:PORT len=N
 * (from: where the answer really came from). --junk sends 64 non-STUN bytes
 * and then a valid request, so the answer proves the server survived.
 * Exit 0 answered, 1 no answer in time, 2 usage or system error.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int parse_ipport(const char *s, struct sockaddr_in *sa)
{
    char ip[64];
    const char *c = strrchr(s, ':');
    if (c == NULL || (size_t)(c - s) >= sizeof(ip))
        return -1;
    memcpy(ip, s, (size_t)(c - s));
    ip[c - s] = '\0';
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)atoi(c + 1));
    return inet_pton(AF_INET, ip, &sa->sin_addr) == 1 ? 0 : -1;
}

static const char *fmt(const struct sockaddr_in *sa, char *buf, size_t cap)
{
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
    snprintf(buf, cap, "%s:%u", ip, ntohs(sa->sin_port));
    return buf;
}

static uint32_t crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return c ^ 0xffffffffu;
}

static size_t build_request(uint8_t *q, int change, int fingerprint)
{
    static const uint8_t hdr[20] = {0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 't', 'i', 'd', '-',
                                    'p', 'r', 'o', 'b', 'e', '-', '0', '1'};
    size_t n = 20;
    memcpy(q, hdr, 20);
    if (change >= 0) {
        const uint8_t cr[8] = {0, 3, 0, 4, 0, 0, 0, (uint8_t)change};
        memcpy(q + n, cr, 8);
        n += 8;
    }
    if (fingerprint) {
        q[3] = (uint8_t)(n - 20 + 8);
        uint32_t c = crc32(q, n) ^ 0x5354554eu;
        const uint8_t fp[8] = {0x80, 0x28, 0, 4, (uint8_t)(c >> 24), (uint8_t)(c >> 16), (uint8_t)(c >> 8), (uint8_t)c};
        memcpy(q + n, fp, 8);
        n += 8;
    }
    q[3] = (uint8_t)(n - 20);
    return n;
}

/* Address attribute value (family 1 only) into sa; xor with the cookie if asked. */
static void read_addr(const uint8_t *v, int x, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    uint16_t port = (uint16_t)(v[2] << 8 | v[3]);
    uint8_t ip[4] = {v[4], v[5], v[6], v[7]};
    if (x) {
        static const uint8_t cookie[4] = {0x21, 0x12, 0xa4, 0x42};
        port ^= 0x2112;
        for (int i = 0; i < 4; i++)
            ip[i] ^= cookie[i];
    }
    sa->sin_port = htons(port);
    memcpy(&sa->sin_addr, ip, 4);
}

static void print_response(const uint8_t *r, size_t n, const struct sockaddr_in *local,
                           const struct sockaddr_in *from)
{
    char a[64], b[64];
    struct sockaddr_in mapped = {0}, origin = {0}, other = {0};
    int code = 0;
    size_t off = 20;
    while (off + 4 <= n) {
        uint16_t t = (uint16_t)(r[off] << 8 | r[off + 1]), l = (uint16_t)(r[off + 2] << 8 | r[off + 3]);
        const uint8_t *v = r + off + 4;
        if (off + 4 + l > n)
            break;
        if (t == 0x0020 && l == 8)
            read_addr(v, 1, &mapped);
        else if (t == 0x802b && l == 8)
            read_addr(v, 0, &origin);
        else if (t == 0x802c && l == 8)
            read_addr(v, 0, &other);
        else if (t == 0x0009 && l >= 4)
            code = v[2] * 100 + v[3];
        off += 4 + (size_t)((l + 3) & ~3);
    }
    int ok = n >= 20 && memcmp(r + 8, "tid-probe-01", 12) == 0;
    printf("local=%s from=%s class=%s code=%d", fmt(local, a, sizeof(a)), fmt(from, b, sizeof(b)),
           !ok ? "bad-tid" : r[0] == 1 && r[1] == 1 ? "success" : r[0] == 1 && r[1] == 0x11 ? "error" : "other",
           code);
    printf(" mapped=%s", fmt(&mapped, a, sizeof(a)));
    printf(" origin=%s", fmt(&origin, a, sizeof(a)));
    printf(" other=%s len=%zu\n", fmt(&other, a, sizeof(a)), n);
}

int main(int argc, char **argv)
{
    int tcp = 0, change = -1, fingerprint = 0, junk = 0, timeout_ms = 2000, i;
    struct sockaddr_in bind_sa = {.sin_family = AF_INET}, server, local, from;
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--tcp") == 0)
            tcp = 1;
        else if (strcmp(argv[i], "--fingerprint") == 0)
            fingerprint = 1;
        else if (strcmp(argv[i], "--junk") == 0)
            junk = 1;
        else if (strcmp(argv[i], "--change") == 0 && i + 1 < argc)
            change = atoi(argv[++i]);
        else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc)
            timeout_ms = atoi(argv[++i]);
        else if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc && parse_ipport(argv[i + 1], &bind_sa) == 0)
            i++;
        else
            return fprintf(stderr, "stun_probe: bad option %s\n", argv[i]), 2;
    }
    if (argc - i != 2)
        return fprintf(stderr, "stun_probe: want SERVER_IP PORT\n"), 2;
    char sp[80];
    snprintf(sp, sizeof(sp), "%s:%s", argv[i], argv[i + 1]);
    if (parse_ipport(sp, &server) != 0)
        return fprintf(stderr, "stun_probe: bad server %s\n", sp), 2;

    int fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&bind_sa, sizeof(bind_sa)) != 0)
        return perror("stun_probe: socket/bind"), 2;
    if (tcp && connect(fd, (struct sockaddr *)&server, sizeof(server)) != 0)
        return perror("stun_probe: connect"), 1;
    socklen_t sl = sizeof(local);
    getsockname(fd, (struct sockaddr *)&local, &sl);

    uint8_t q[64], r[2048];
    if (junk) {
        uint8_t j[64];
        for (size_t k = 0; k < sizeof(j); k++)
            j[k] = (uint8_t)(0xc0 | k);
        if (tcp) {
            /* Over TCP junk ends the connection: the caller checks that separately. */
            if (send(fd, j, sizeof(j), 0) < 0)
                return perror("stun_probe: send"), 2;
            struct pollfd p = {fd, POLLIN, 0};
            int closed = poll(&p, 1, timeout_ms) == 1 && recv(fd, r, sizeof(r), 0) == 0;
            printf("junk: connection %s\n", closed ? "closed" : "open");
            return closed ? 0 : 1;
        }
        /* Not STUN; too short; a header whose length overruns the datagram. */
        static const uint8_t bad[24] = {0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0x24, 0, 4};
        sendto(fd, j, sizeof(j), 0, (struct sockaddr *)&server, sizeof(server));
        sendto(fd, j, 3, 0, (struct sockaddr *)&server, sizeof(server));
        sendto(fd, bad, sizeof(bad), 0, (struct sockaddr *)&server, sizeof(server));
    }
    size_t n = build_request(q, change, fingerprint);
    if (sendto(fd, q, n, 0, tcp ? NULL : (struct sockaddr *)&server, tcp ? 0 : sizeof(server)) != (ssize_t)n)
        return perror("stun_probe: send"), 2;
    size_t got = 0;
    from = server;
    while (got < 20 || got < 20 + (size_t)(r[2] << 8 | r[3])) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) != 1)
            return printf("timeout\n"), 1;
        socklen_t fl = sizeof(from);
        ssize_t k = recvfrom(fd, r + got, sizeof(r) - got, 0, tcp ? NULL : (struct sockaddr *)&from, tcp ? NULL : &fl);
        if (k <= 0)
            return printf("closed\n"), 1;
        got += (size_t)k;
        if (!tcp)
            break;
    }
    print_response(r, got, &local, &from);
    close(fd);
    return 0;
}

/* getaddrinfo(NAME) with AF_UNSPEC, as curl and most clients call it: one line per address, or the error.
   Built at test time with musl-gcc and with gcc (glibc) by tests/upstream/test_musl.py. Exit 0 on success,
   2 when getaddrinfo fails. */
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

int main(int argc, char **argv) {
    struct addrinfo hints, *res, *ai;
    char buf[INET6_ADDRSTRLEN];
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: %s NAME\n", argv[0]);
        return 64;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(argv[1], NULL, &hints, &res);
    if (rc != 0) {
        printf("error %d %s\n", rc, gai_strerror(rc));
        return 2;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        const void *addr = ai->ai_family == AF_INET
            ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
            : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        printf("%s\n", inet_ntop(ai->ai_family, addr, buf, sizeof buf));
    }
    freeaddrinfo(res);
    return 0;
}

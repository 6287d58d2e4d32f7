/* A TCP client that uses no libc at all (raw syscalls, static, like a Go
 * binary): connects to 198.51.100.10:8080, sends argv[1] and a newline, and
 * prints the reply. Proves that steering happens in the kernel, not in a
 * library. x86_64 only. */
typedef unsigned long u64;

static long sys3(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

struct sockaddr_in { unsigned short family, port; unsigned int addr; char zero[8]; };

__attribute__((noreturn)) void start_c(long *sp) {
    char **argv = (char **)(sp + 1);
    const char *token = sp[0] > 1 ? argv[1] : "-";
    volatile long len = 0; /* volatile: keeps gcc from calling strlen */
    while (token[len]) len++;
    long fd = sys3(41, 2, 1, 0);                 /* socket(AF_INET, SOCK_STREAM) */
    struct sockaddr_in sa = {2, 0x901f, 0x0a6433c6, {0}}; /* :8080, 198.51.100.10 */
    long rc = fd < 0 ? fd : sys3(42, fd, (long)&sa, sizeof sa); /* connect */
    if (rc == 0) {
        sys3(1, fd, (long)token, len);
        sys3(1, fd, (long)"\n", 1);
        char buf[256];
        long n;
        while ((n = sys3(0, fd, (long)buf, sizeof buf)) > 0) sys3(1, 1, (long)buf, n);
    }
    sys3(60, rc == 0 ? 0 : 1, 0, 0);             /* exit */
    for (;;) {}
}

__asm__(".global _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call start_c\n");

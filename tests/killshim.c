/* LD_PRELOAD fault injector for the kill tests: counts the process's rename(2) family calls
 * made through libc (Python, GDAL, Rust and ctypes callers alike, from any thread) and sends
 * itself SIGKILL just before the N-th one when GEOMM_KILL_AT_RENAME=N. With
 * GEOMM_RENAME_LOG=FILE every call is appended to FILE as "N<TAB>source<TAB>target".
 * (strace's inject needs ptrace stops at every syscall here: 3-4x slower runs.) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_long calls;

static void hit(const char *src, const char *dst) {
    long n = atomic_fetch_add(&calls, 1) + 1;
    const char *log = getenv("GEOMM_RENAME_LOG");
    if (log && *log) {
        char line[8192];
        int len = snprintf(line, sizeof line, "%ld\t%s\t%s\n", n, src ? src : "",
                           dst ? dst : "");
        int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
        if (fd >= 0) {
            if (len > 0) {
                ssize_t w = write(fd, line, (size_t)(len < (int)sizeof line ? len
                                                     : (int)sizeof line - 1));
                (void)w;
            }
            close(fd);
        }
    }
    const char *at = getenv("GEOMM_KILL_AT_RENAME");
    if (at && atol(at) == n) raise(SIGKILL);
}

int rename(const char *a, const char *b) {
    static int (*real)(const char *, const char *);
    if (!real) real = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    hit(a, b);
    return real(a, b);
}

int renameat(int fa, const char *a, int fb, const char *b) {
    static int (*real)(int, const char *, int, const char *);
    if (!real) real = (int (*)(int, const char *, int, const char *))dlsym(RTLD_NEXT, "renameat");
    hit(a, b);
    return real(fa, a, fb, b);
}

int renameat2(int fa, const char *a, int fb, const char *b, unsigned int flags) {
    static int (*real)(int, const char *, int, const char *, unsigned int);
    if (!real)
        real = (int (*)(int, const char *, int, const char *, unsigned int))dlsym(
            RTLD_NEXT, "renameat2");
    hit(a, b);
    return real(fa, a, fb, b, flags);
}

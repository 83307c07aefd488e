/* An LD_PRELOAD shim that records, after every successful fsync/fdatasync, the synced file's
 * path and size to the file named by $SYNCSPY_LOG. Tests use the log to simulate a power
 * loss: cut each file back to what was last synced, then check what survives. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void note(int fd) {
    const char *log = getenv("SYNCSPY_LOG");
    if (!log) return;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return;
    path[n] = 0;
    struct stat st;
    if (fstat(fd, &st) != 0) return;
    char line[4200];
    int len = snprintf(line, sizeof line, "%lld %s\n", (long long)st.st_size, path);
    int out = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (out < 0) return;
    if (write(out, line, (size_t)len) < 0) { /* nothing to do */ }
    close(out);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int r = real(fd);
    if (r == 0) note(fd);
    return r;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int r = real(fd);
    if (r == 0) note(fd);
    return r;
}

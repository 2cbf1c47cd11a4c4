/* The test harness itself (tests/support/harness.c): what it spawns --
 * redis-servers, processors, replays -- dies with the test process that
 * spawned it, even when that process ends without its .fini or atexit
 * (a crash, or Criterion killing it at its timeout). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/harness.h"

/* Running: exists and is not a zombie (init may take its time to reap). */
static int alive(pid_t pid) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *st = strrchr(buf, ')'); /* "pid (comm) S ..." */
    return st && st[1] == ' ' && st[2] != 'Z' && st[2] != 'X';
}

/* A middle process spawns `sleep 300` and then dies of SIGKILL (no atexit,
 * no .fini); the sleep, reparented, must be gone within seconds. */
Test(harness, spawned_children_die_with_the_test_process) {
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t mid = fork();
    cr_assert_geq(mid, 0);
    if (mid == 0) {
        close(p[0]);
        char *argv[] = {"sleep", "300", NULL};
        pid_t child = sp_t_spawn(argv, NULL);
        if (write(p[1], &child, sizeof child) != (ssize_t)sizeof child) _exit(1);
        pause(); /* until killed */
        _exit(0);
    }
    close(p[1]);
    pid_t child = 0;
    cr_assert_eq(read(p[0], &child, sizeof child), (ssize_t)sizeof child);
    close(p[0]);
    cr_assert_gt(child, 0);
    sp_t_sleep_ms(100);
    cr_assert(alive(child), "the spawned sleep did not start");
    kill(mid, SIGKILL);
    waitpid(mid, NULL, 0);
    int gone = 0;
    for (int i = 0; i < 250 && !gone; i++) { /* reaped by init once it dies */
        gone = !alive(child);
        if (!gone) sp_t_sleep_ms(20);
    }
    if (!gone) kill(child, SIGKILL);
    cr_assert(gone, "pid %d outlived the process that spawned it", (int)child);
}

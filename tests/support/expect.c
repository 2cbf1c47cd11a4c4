/* Assertions about the processes a test starts, for every test binary. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/support/expect.h"
#include "tests/support/harness.h"

void sp_t_expect_exit(pid_t pid, int timeout_ms, const char *dir, const char *name, int want,
                      const char *what) {
    int st = sp_t_wait(pid, timeout_ms);
    if (st == want) return;
    char log[300];
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    char *tail = sp_t_tail_lines(log, 30);
    cr_log_error("%s.log (last lines):\n%s", name, tail);
    free(tail);
    cr_assert_fail("%s (exit status %d, want %d; logs in %s)", what, st, want, dir);
}

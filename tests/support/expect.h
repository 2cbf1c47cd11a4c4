#ifndef SP_TEST_EXPECT_H
#define SP_TEST_EXPECT_H

#include <sys/types.h>

/* Waits for the process started with its output in <dir>/<name>.log; when
 * it did not exit with `want` (an exit status, or 128 + a signal), the
 * log's last lines go into the test's output -- a sanitizer report or the
 * error that stopped it is there, not in the status -- and the test fails
 * with `what`. */
void sp_t_expect_exit(pid_t pid, int timeout_ms, const char *dir, const char *name, int want,
                      const char *what);

#endif

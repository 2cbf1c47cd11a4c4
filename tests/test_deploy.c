/* deploy/ cannot run here (no container engine, no Kubernetes), so `make
 * deploy-check` (deploy/check.py) lints it and cross-checks it: referenced
 * files exist, selectors match, every SHOPSTREAM_* variable is a real config
 * key. This test keeps that true on every `make test`. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/harness.h"

Test(deploy, files_pass_deploy_check) {
    char *argv[] = {"/usr/bin/python3", "deploy/check.py", NULL};
    int st;
    char *out = sp_t_capture(argv, &st);
    cr_assert_not_null(out);
    cr_assert_eq(st, 0, "deploy/check.py found problems:\n%s", out);
    cr_assert(strstr(out, "deploy-check: 0 problems"), "%s", out);
    free(out);
}

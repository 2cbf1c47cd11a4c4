/* state/resp.c writes commands in Redis's wire format by hand instead of
 * through hiredis's redisFormatCommandArgv; the bytes must be the same, for
 * any arguments: empty, binary (NUL, CR, LF), and lengths across every
 * change in the number of digits. */
#include <criterion/criterion.h>
#include <hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "state/resp.h"

/* Compares sp_resp_write with hiredis for one command. */
static void same_as_hiredis(int argc, const char **argv, const size_t *lens) {
    char *want = NULL;
    int wn = redisFormatCommandArgv(&want, argc, argv, lens);
    cr_assert_gt(wn, 0);
    size_t n = sp_resp_size(argc, lens);
    cr_assert_eq(n, (size_t)wn, "size %zu, hiredis %d", n, wn);
    char *got = malloc(n + 1);
    got[n] = 0x5a; /* nothing written past the size */
    char *end = sp_resp_write(got, argc, argv, lens);
    cr_assert_eq(end, got + n);
    cr_assert_eq(got[n], 0x5a);
    cr_assert(!memcmp(got, want, n), "argc %d: bytes differ from hiredis", argc);
    free(got);
    redisFreeCommand(want);
}

Test(resp, boundary_lengths_match_hiredis) {
    static char big[100001];
    memset(big, 'x', sizeof big);
    const size_t sizes[] = {0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 9999, 10000, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const char *argv[] = {"SET", "k", big};
        size_t lens[] = {3, 1, sizes[i]};
        same_as_hiredis(3, argv, lens);
    }
}

Test(resp, argument_counts_across_digit_changes_match_hiredis) {
    const char *argv[120];
    size_t lens[120];
    for (int i = 0; i < 120; i++) argv[i] = "ab", lens[i] = 2;
    for (int argc = 1; argc <= 120; argc++) same_as_hiredis(argc, argv, lens);
}

Test(resp, random_binary_arguments_match_hiredis) {
    srand(7);
    char data[64][300];
    const char *argv[64];
    size_t lens[64];
    for (int round = 0; round < 2000; round++) {
        int argc = 1 + rand() % 64;
        for (int i = 0; i < argc; i++) {
            lens[i] = (size_t)(rand() % 300);
            for (size_t j = 0; j < lens[i]; j++) data[i][j] = (char)(rand() % 256);
            argv[i] = data[i];
        }
        same_as_hiredis(argc, argv, lens);
    }
}

Test(resp, append_without_lengths_measures_each_argument) {
    redisContext *c = redisConnectUnix("/nonexistent/shopstream-resp-test");
    cr_assert_not_null(c); /* a context whose connect failed still has an output buffer */
    c->err = 0;
    const char *argv[] = {"HSET", "{p1}:u:x", "view", "12"};
    cr_assert_eq(sp_resp_append(c, 4, argv, NULL), REDIS_OK);
    const char want[] = "*4\r\n$4\r\nHSET\r\n$8\r\n{p1}:u:x\r\n$4\r\nview\r\n$2\r\n12\r\n";
    cr_assert_eq(strlen(c->obuf), sizeof want - 1);
    cr_assert_str_eq(c->obuf, want);
    redisFree(c);
}

/* Past the stack buffers: more than 16 arguments without lengths, and a
 * command longer than 1 KiB, both through sp_resp_append. */
Test(resp, append_of_long_commands_matches_hiredis) {
    redisContext *c = redisConnectUnix("/nonexistent/shopstream-resp-test");
    cr_assert_not_null(c);
    c->err = 0;
    static char big[5000];
    memset(big, 'y', sizeof big - 1);
    const char *argv[40];
    for (int i = 0; i < 40; i++) argv[i] = i == 39 ? big : "field";
    cr_assert_eq(sp_resp_append(c, 40, argv, NULL), REDIS_OK);
    char *want = NULL;
    int wn = redisFormatCommandArgv(&want, 40, argv, NULL);
    cr_assert_eq(sdslen(c->obuf), (size_t)wn);
    cr_assert(!memcmp(c->obuf, want, (size_t)wn));
    redisFreeCommand(want);
    redisFree(c);
}

/* A whole pipeline in one block (sp_resp_append_all): the output buffer
 * must hold exactly the commands hiredis would have queued one by one, in
 * order -- with and without lengths, more than 16 arguments, binary data,
 * a pipeline of over 16 KiB, and a second pipeline appended after bytes
 * already queued (written after them, not over them). */
Test(resp, a_pipeline_in_one_block_matches_hiredis_command_by_command) {
    redisContext *c = redisConnectUnix("/nonexistent/shopstream-resp-test");
    cr_assert_not_null(c);
    c->err = 0;
    enum { N = 300 };
    static char data[N][20][40], big[9000];
    memset(big, 'z', sizeof big - 1);
    const char *argvs_[N][20];
    size_t lens_[N][20];
    const char *const *argvs[N];
    const size_t *lens[N];
    int argcs[N];
    srand(11);
    for (int i = 0; i < N; i++) {
        argcs[i] = 1 + i % 20;
        for (int j = 0; j < argcs[i]; j++) {
            int bin = i % 3 == 0; /* every third command binary, with lengths */
            size_t len = (size_t)(rand() % 40);
            for (size_t k = 0; k < len; k++)
                data[i][j][k] = bin ? (char)(rand() % 256) : (char)('a' + rand() % 26);
            data[i][j][bin ? len : (len ? len - 1 : 0)] = 0;
            argvs_[i][j] = i == 200 && j == 0 ? big : data[i][j];
            lens_[i][j] = bin ? len : strlen(argvs_[i][j]);
        }
        argvs[i] = argvs_[i];
        lens[i] = i % 3 == 0 ? lens_[i] : (i % 3 == 1 ? NULL : lens_[i]);
    }
    sds want = sdsempty(); /* every round's commands, one by one, through hiredis */
    for (int round = 0; round < 2; round++) {
        size_t n = round ? 7 : N;
        sp_resp_append_all(c, n, argcs, argvs, lens);
        for (size_t i = 0; i < n; i++) {
            char *one = NULL;
            int wn = redisFormatCommandArgv(&one, argcs[i], (const char **)argvs[i], lens[i]);
            cr_assert_gt(wn, 0);
            want = sdscatlen(want, one, (size_t)wn);
            redisFreeCommand(one);
        }
        cr_assert_eq(sdslen(c->obuf), sdslen(want), "round %d: %zu bytes, hiredis %zu", round,
                     sdslen(c->obuf), sdslen(want));
        cr_assert(!memcmp(c->obuf, want, sdslen(want)), "round %d: bytes differ", round);
    }
    sp_resp_append_all(c, 0, argcs, argvs, lens);
    cr_assert_eq(sdslen(c->obuf), sdslen(want));
    sdsfree(want);
    redisFree(c);
}

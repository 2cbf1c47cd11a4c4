/* state/blob: fixed-size structs as hash field text (PackBits + base64). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "models/fraud.h"
#include "state/blob.h"
#include "stream/error.h"

static void roundtrip(const void *in, size_t n) {
    char *s = malloc(sp_blob_encoded_max(n));
    size_t len = sp_blob_encode(in, n, s);
    cr_assert_eq(strlen(s), len);
    cr_assert_lt(len, sp_blob_encoded_max(n));
    cr_assert_eq(strncmp(s, "b1:", 3), 0);
    void *out = malloc(n ? n : 1);
    cr_assert_eq(sp_blob_decode(s, out, n), SP_OK, "%zu bytes", n);
    cr_assert_eq(memcmp(in, out, n), 0, "%zu bytes differ after a round trip", n);
    free(out);
    free(s);
}

Test(blob, round_trips_runs_literals_and_every_boundary) {
    unsigned char buf[1000];
    size_t sizes[] = {0, 1, 2, 3, 127, 128, 129, 130, 255, 256, 257, 999, 1000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        memset(buf, 0, sizeof buf);
        roundtrip(buf, sizes[k]); /* one long run */
        for (size_t i = 0; i < sizes[k]; i++) buf[i] = (unsigned char)(i * 7 + 3);
        roundtrip(buf, sizes[k]); /* all literals */
        for (size_t i = 0; i < sizes[k]; i++) buf[i] = (unsigned char)((i / 3) % 2 ? 0xaa : i);
        roundtrip(buf, sizes[k]); /* mixed, runs of exactly 3 */
    }
}

Test(blob, a_fresh_user_state_is_small) {
    struct sp_fraud_user u;
    sp_fraud_user_init(&u);
    char *s = malloc(sp_blob_encoded_max(sizeof u));
    size_t len = sp_blob_encode(&u, sizeof u, s);
    cr_assert_lt(len, sizeof u / 3, "%zu chars for %zu bytes", len, sizeof u);
    free(s);
    roundtrip(&u, sizeof u);
}

Test(blob, refuses_a_blob_of_another_size_or_garbage) {
    int a[4] = {1, 2, 3, 4};
    long b[4];
    char s[64];
    sp_blob_encode(a, sizeof a, s);
    cr_assert_eq(sp_blob_decode(s, b, sizeof a + 1), SP_ERR_BADINPUT);
    cr_assert_eq(sp_blob_decode(s, b, sizeof a - 1), SP_ERR_BADINPUT);
    cr_assert_eq(sp_blob_decode("b1:!!!!", b, 4), SP_ERR_BADINPUT);
    cr_assert_eq(sp_blob_decode("x", b, 4), SP_ERR_BADINPUT);
    cr_assert_eq(sp_blob_decode(NULL, b, 4), SP_ERR_BADINPUT);
}

/* Redis commands formatted by hand. See state/resp.h. */
#include <stdlib.h>
#include <string.h>

#include "state/resp.h"
#include "stream/error.h"

/* Decimal digits of n. */
static size_t ndigits(size_t n) {
    size_t d = 1;
    while (n >= 10) n /= 10, d++;
    return d;
}

/* "<c><n>\r\n" at out; returns its end. */
static char *put_header(char *out, char c, size_t n) {
    size_t d = ndigits(n);
    *out = c;
    for (char *p = out + d; p > out; n /= 10) *p-- = (char)('0' + n % 10);
    out[d + 1] = '\r';
    out[d + 2] = '\n';
    return out + d + 3;
}

size_t sp_resp_size(int argc, const size_t *lens) {
    size_t n = 3 + ndigits((size_t)argc);
    for (int i = 0; i < argc; i++) n += 5 + ndigits(lens[i]) + lens[i];
    return n;
}

char *sp_resp_write(char *out, int argc, const char *const *argv, const size_t *lens) {
    out = put_header(out, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        out = put_header(out, '$', lens[i]);
        memcpy(out, argv[i], lens[i]);
        out += lens[i];
        out[0] = '\r';
        out[1] = '\n';
        out += 2;
    }
    return out;
}

int sp_resp_append(redisContext *c, int argc, const char *const *argv, const size_t *lens) {
    size_t small[16], *own = NULL;
    const size_t *l = lens;
    if (!l) {
        size_t *w = argc <= 16 ? small : (own = sp_xmalloc((size_t)argc * sizeof *own));
        for (int i = 0; i < argc; i++) w[i] = strlen(argv[i]);
        l = w;
    }
    char stack[1024], *buf = stack;
    size_t n = sp_resp_size(argc, l);
    if (n > sizeof stack) buf = sp_xmalloc(n);
    sp_resp_write(buf, argc, argv, l);
    int rc = redisAppendFormattedCommand(c, buf, n);
    if (buf != stack) free(buf);
    free(own);
    return rc;
}

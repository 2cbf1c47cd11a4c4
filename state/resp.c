/* Redis commands formatted by hand. See state/resp.h. */
#include <stdlib.h>
#include <string.h>

#include "state/resp.h"
#include "stream/error.h"

/* Decimal digits of n. */
static size_t ndigits(size_t n) {
    if (n < 10) return 1;
    if (n < 100) return 2;
    size_t d = 3;
    for (n /= 1000; n; n /= 10) d++;
    return d;
}

/* "<c><n>\r\n" at out; returns its end. Most arguments are shorter than a
 * hundred bytes: their one or two digits are written directly. */
static char *put_header(char *out, char c, size_t n) {
    *out++ = c;
    if (n < 10) {
        *out++ = (char)('0' + n);
    } else if (n < 100) {
        out[0] = (char)('0' + n / 10);
        out[1] = (char)('0' + n % 10);
        out += 2;
    } else {
        out += sp_i64toa((int64_t)n, out); /* its NUL is overwritten below */
    }
    out[0] = '\r';
    out[1] = '\n';
    return out + 2;
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

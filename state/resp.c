/* Redis commands formatted by hand. See state/resp.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sds.h>

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

/* The lengths of argv's arguments: lens itself, or their strlen in small
 * (16 entries) or, for more, in *own (the caller frees it). */
static const size_t *arg_lens(int argc, const char *const *argv, const size_t *lens,
                              size_t *small, size_t **own) {
    *own = NULL;
    if (lens) return lens;
    size_t *w = argc <= 16 ? small : (*own = sp_xmalloc((size_t)argc * sizeof **own));
    for (int i = 0; i < argc; i++) w[i] = strlen(argv[i]);
    return w;
}

int sp_resp_append(redisContext *c, int argc, const char *const *argv, const size_t *lens) {
    size_t small[16], *own;
    const size_t *l = arg_lens(argc, argv, lens, small, &own);
    char stack[1024], *buf = stack;
    size_t n = sp_resp_size(argc, l);
    if (n > sizeof stack) buf = sp_xmalloc(n);
    sp_resp_write(buf, argc, argv, l);
    int rc = redisAppendFormattedCommand(c, buf, n);
    if (buf != stack) free(buf);
    free(own);
    return rc;
}

/* Writes straight into hiredis's output buffer (an sds string: a public
 * field and hiredis's installed sds.h), sized once for the whole pipeline:
 * no copy of a scratch buffer and no growth a command at a time. */
void sp_resp_append_all(redisContext *c, size_t n, const int *argcs,
                        const char *const *const *argvs, const size_t *const *lens) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t small[16], *own;
        total += sp_resp_size(argcs[i], arg_lens(argcs[i], argvs[i], lens ? lens[i] : NULL,
                                                 small, &own));
        free(own);
    }
    if (!total) return;
    sds o = sdsMakeRoomFor(c->obuf, total);
    if (!o) { /* as sp_xmalloc: a pipeline half queued is no state to go on from */
        fprintf(stderr, "shopstream: out of memory queuing %zu bytes for redis\n", total);
        abort();
    }
    c->obuf = o;
    char *at = o + sdslen(o);
    for (size_t i = 0; i < n; i++) {
        size_t small[16], *own;
        const size_t *l = arg_lens(argcs[i], argvs[i], lens ? lens[i] : NULL, small, &own);
        at = sp_resp_write(at, argcs[i], argvs[i], l);
        free(own);
    }
    /* sdsIncrLen takes an int: a pipeline over 2 GiB goes up in steps */
    for (size_t left = total; left;) {
        int step = left > (size_t)1 << 30 ? 1 << 30 : (int)left;
        sdsIncrLen(o, step);
        left -= (size_t)step;
    }
}

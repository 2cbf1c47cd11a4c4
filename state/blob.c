/* Struct bytes <-> "b1:" base64(PackBits(bytes)). See state/blob.h. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "state/blob.h"
#include "stream/error.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* PackBits worst case: one header byte per 128 literals. */
static size_t packed_max(size_t n) { return n + n / 128 + 2; }

size_t sp_blob_encoded_max(size_t n) { return 3 + 4 * ((packed_max(n) + 2) / 3) + 1; }

/* PackBits (Apple, TIFF): header h < 128 is h+1 literal bytes; h > 128 is
 * the next byte repeated 257-h times (2..128 runs). Runs of 3 or more are
 * worth a repeat header. */
static size_t pack(const uint8_t *in, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        size_t run = 1;
        while (i + run < n && run < 128 && in[i + run] == in[i]) run++;
        if (run >= 3) {
            out[o++] = (uint8_t)(257 - run);
            out[o++] = in[i];
            i += run;
            continue;
        }
        size_t start = i, lit = 0;
        while (i < n && lit < 128) {
            if (i + 2 < n && in[i] == in[i + 1] && in[i] == in[i + 2]) break;
            i++, lit++;
        }
        out[o++] = (uint8_t)(lit - 1);
        memcpy(out + o, in + start, lit);
        o += lit;
    }
    return o;
}

size_t sp_blob_encode(const void *bytes, size_t n, char *out) {
    uint8_t stackbuf[4096];
    size_t pm = packed_max(n);
    uint8_t *p = pm <= sizeof stackbuf ? stackbuf : sp_xmalloc(pm);
    size_t m = pack(bytes, n, p);
    size_t o = 0;
    memcpy(out, "b1:", 3);
    o = 3;
    for (size_t i = 0; i < m; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < m) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < m) v |= p[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < m ? b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < m ? b64[v & 63] : '=';
    }
    out[o] = '\0';
    if (p != stackbuf) free(p);
    return o;
}

static int b64val(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int sp_blob_decode(const char *s, void *out, size_t n) {
    if (!s || strncmp(s, "b1:", 3)) return SP_ERR_BADINPUT;
    s += 3;
    size_t len = strlen(s);
    if (len % 4) return SP_ERR_BADINPUT;
    uint8_t *dst = out;
    size_t o = 0;
    /* Unpack as the base64 decodes: a header, then its payload. */
    int state = 0; /* 0: expect header; 1: literals left; 2: repeat byte next */
    size_t left = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) v[k] = s[i + k] == '=' ? 0 : b64val(s[i + k]);
        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0) return SP_ERR_BADINPUT;
        uint8_t b[3] = {(uint8_t)(v[0] << 2 | v[1] >> 4), (uint8_t)(v[1] << 4 | v[2] >> 2),
                        (uint8_t)(v[2] << 6 | v[3])};
        int nb = s[i + 2] == '=' ? 1 : s[i + 3] == '=' ? 2 : 3;
        for (int k = 0; k < nb; k++) {
            uint8_t c = b[k];
            if (state == 0) {
                if (c < 128) {
                    state = 1;
                    left = (size_t)c + 1;
                } else if (c > 128) {
                    state = 2;
                    left = 257 - (size_t)c;
                }
            } else if (state == 1) {
                if (o >= n) return SP_ERR_BADINPUT;
                dst[o++] = c;
                if (--left == 0) state = 0;
            } else {
                if (o + left > n) return SP_ERR_BADINPUT;
                memset(dst + o, c, left);
                o += left;
                state = 0;
            }
        }
    }
    return state == 0 && o == n ? SP_OK : SP_ERR_BADINPUT;
}

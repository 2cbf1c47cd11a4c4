/* Decode + validate throughput of generated records, per wire format: the
 * per-message cost the processor pays before any operator runs. Built and
 * run by bench/events.sh; not part of `make test`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stream/error.h"
#include "stream/event.h"
#include "stream/gen.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
    for (int f = 0; f < 2; f++) {
        sp_gen_conf conf;
        sp_gen_conf_init(&conf);
        conf.events = n;
        conf.format = f ? SP_GEN_PROTO : SP_GEN_JSONL;
        char err[256];
        sp_gen *g = sp_gen_new(&conf, err, sizeof err);
        uint8_t **data = malloc(n * sizeof *data);
        size_t *len = malloc(n * sizeof *len), bytes = 0;
        sp_gen_record rec;
        double t0 = now_s();
        for (size_t i = 0; sp_gen_next(g, &rec); i++) {
            data[i] = malloc(rec.len);
            memcpy(data[i], rec.data, rec.len);
            len[i] = rec.len;
            bytes += rec.len;
        }
        double tgen = now_s() - t0;
        size_t ok = 0;
        t0 = now_s();
        for (size_t i = 0; i < n; i++) {
            sp_event *ev;
            if (sp_event_decode(data[i], len[i], NULL, &ev, err, sizeof err) == SP_OK) {
                ok += sp_event_validate(ev, err, sizeof err) == SP_OK;
                sp_event_free(ev);
            }
        }
        double t = now_s() - t0;
        printf("%-5s records=%zu bytes=%zu valid=%zu gen=%.0f rec/s decode+validate=%.0f rec/s "
               "(%.1f MB/s, %.2f us/rec)\n",
               f ? "proto" : "jsonl", n, bytes, ok, n / tgen, n / t, bytes / t / 1e6, t / n * 1e6);
        for (size_t i = 0; i < n; i++) free(data[i]);
        free(data);
        free(len);
        sp_gen_destroy(g);
    }
    return 0;
}

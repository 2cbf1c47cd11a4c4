/* `make fuzz`: a mutation fuzzer for the event codec, run under ASan+UBSan.
 *
 * Seeds are generator records in both wire formats; each round takes one,
 * damages it (bit flips, byte changes, insertions, deletions, truncation,
 * splices of two records) and runs it through decode, validate and, when it
 * is accepted, a JSON round trip: JSON out, decode again, validate again --
 * which must also succeed, since the processor and kcat users rely on the two
 * renderings being one. Every input is also decoded as protobuf by both the
 * batch path's decoder (stream/event_pb.c) and protobuf-c's unpack, which
 * must agree (tests/support/pb_diff.c), and so must the batch path's
 * decode-and-validate (sp_event_read_arena) and sp_event_validate. A crash, a sanitizer report, a broken
 * round trip or a disagreement stops the run with the input saved to
 * fuzz-crash.bin.
 *
 *   fuzz_decode [SECONDS] [SEED]       (default 60 s, seed from the clock)
 *
 * This is a plain random mutator, not coverage-guided; libFuzzer needs
 * clang, which the project does not install. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stream/arena.h"
#include "stream/error.h"
#include "stream/event.h"
#include "stream/gen.h"
#include "tests/support/pb_diff.h"

static uint64_t rng;

static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void save(const uint8_t *p, size_t n) {
    FILE *f = fopen("fuzz-crash.bin", "wb");
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 60;
    rng = argc > 2 ? strtoull(argv[2], NULL, 10) : (uint64_t)time(NULL);
    if (!rng) rng = 88172645463325252ULL;
    printf("fuzz_decode: %d s, seed %llu\n", seconds, (unsigned long long)rng);

    enum { NSEED = 4000 };
    uint8_t *seed[NSEED];
    size_t seedlen[NSEED], nseed = 0;
    for (int f = 0; f < 2; f++) {
        sp_gen_conf conf;
        sp_gen_conf_init(&conf);
        conf.events = NSEED / 2;
        conf.seed = rng;
        conf.format = f ? SP_GEN_PROTO : SP_GEN_JSONL;
        char err[256];
        sp_gen *g = sp_gen_new(&conf, err, sizeof err);
        sp_gen_record rec;
        while (sp_gen_next(g, &rec) && nseed < NSEED) {
            seed[nseed] = malloc(rec.len);
            memcpy(seed[nseed], rec.data, rec.len);
            seedlen[nseed++] = rec.len;
        }
        sp_gen_destroy(g);
    }

    uint8_t buf[SP_EVENT_MAX_BYTES + 64];
    unsigned long long runs = 0, accepted = 0;
    time_t end = time(NULL) + seconds;
    char err[256], why[640];
    sp_arena *arena = sp_arena_new(0);
    while (time(NULL) < end) {
        for (int k = 0; k < 1000; k++, runs++) {
            size_t s = next() % nseed, n = seedlen[s];
            memcpy(buf, seed[s], n);
            int muts = 1 + (int)(next() % 4);
            for (int m = 0; m < muts; m++) {
                size_t at = n ? next() % n : 0;
                switch (next() % 6) {
                case 0: if (n) buf[at] ^= (uint8_t)(1u << (next() % 8)); break;
                case 1: if (n) buf[at] = (uint8_t)next(); break;
                case 2: if (n < sizeof buf - 1) { memmove(buf + at + 1, buf + at, n - at); buf[at] = (uint8_t)next(); n++; } break;
                case 3: if (n) { memmove(buf + at, buf + at + 1, n - at - 1); n--; } break;
                case 4: n = at; break;
                case 5: {
                    size_t o = next() % nseed, take = seedlen[o] - next() % (seedlen[o] + 1);
                    if (at + take < sizeof buf) { memcpy(buf + at, seed[o] + (seedlen[o] - take), take); n = at + take; }
                    break;
                }
                }
            }
            if (pb_diff_decode(arena, buf, n, NULL, why, sizeof why)) {
                fprintf(stderr, "fuzz_decode: the arena decoder disagrees with protobuf-c: %s\n",
                        why);
                save(buf, n);
                return 1;
            }
            if (pb_diff_validate(arena, buf, n, why, sizeof why)) {
                fprintf(stderr, "fuzz_decode: the batch path's validation disagrees: %s\n", why);
                save(buf, n);
                return 1;
            }
            sp_event *ev = NULL;
            const char *ct = (next() & 3) == 0 ? "application/json" : NULL;
            if (sp_event_decode(buf, n, ct, &ev, err, sizeof err) != SP_OK) continue;
            if (sp_event_validate(ev, err, sizeof err) == SP_OK) {
                accepted++;
                char *json = sp_event_to_json(ev);
                sp_event *back = NULL;
                if (sp_event_decode(json, strlen(json), "application/json", &back, err, sizeof err) != SP_OK ||
                    sp_event_validate(back, err, sizeof err) != SP_OK) {
                    fprintf(stderr, "fuzz_decode: accepted input does not survive its JSON round trip: %s\n%s\n",
                            err, json);
                    save(buf, n);
                    return 1;
                }
                sp_event_free(back);
                free(json);
            }
            sp_event_free(ev);
        }
    }
    printf("fuzz_decode: %llu inputs, %llu accepted, no crash\n", runs, accepted);
    for (size_t i = 0; i < nseed; i++) free(seed[i]);
    sp_arena_destroy(arena);
    return 0;
}

/* `shopstream score-series`: the KPI anomaly detector over one series read
 * as timestamp,value CSV, strictly streaming: each row is scored, written and
 * flushed before the next row is read. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/anomaly.h"
#include "stream/cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: shopstream score-series [--data FILE] [--season N] [--alpha A]\n"
               "  Reads timestamp,value rows (a header line is passed through with a third\n"
               "  column name) and writes timestamp,value,anomaly_score for every row.\n"
               "  --season N  seasonal-naive forecast with period N rows (default 0: EWMA)\n"
               "  --alpha A   EWMA weight of the newest point (default 0.1)\n");
}

int sp_cmd_score_series(int argc, char **argv) {
    static const struct option longopts[] = {{"data", required_argument, NULL, 'd'},
                                             {"season", required_argument, NULL, 's'},
                                             {"alpha", required_argument, NULL, 'a'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *data = NULL;
    long season = 0;
    double alpha = 0.1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:s:a:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 's': season = strtol(optarg, NULL, 10); break;
        case 'a': alpha = strtod(optarg, NULL); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    struct sp_kpi_detector *det = malloc(sizeof *det);
    if (optind != argc || season < 0 || !det ||
        sp_kpi_init(det, (uint32_t)season, alpha) != 0) {
        fprintf(stderr, "score-series: bad options (season 0..%d, alpha in (0,1])\n",
                SP_KPI_MAX_SEASON);
        free(det);
        usage(stderr);
        return 2;
    }
    FILE *f = data ? fopen(data, "r") : stdin;
    if (!f) {
        perror(data);
        free(det);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long row = 0;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        row++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        char *comma = strchr(line, ',');
        char *end = NULL;
        double v = comma ? strtod(comma + 1, &end) : 0;
        if (!comma || end == comma + 1 || *end) {
            if (row == 1) {
                printf("%s,anomaly_score\n", line);
                fflush(stdout);
                continue;
            }
            fprintf(stderr, "score-series: line %ld: expected timestamp,value\n", row);
            rc = 1;
            break;
        }
        double score = sp_kpi_score(det, v, NULL);
        sp_kpi_update(det, v);
        printf("%s,%.6f\n", line, score);
        fflush(stdout);
    }
    free(line);
    free(det);
    if (f != stdin) fclose(f);
    return rc;
}

/* The hand-written limit for "snapshot extract -> spool": libpq single-row mode over one SELECT, each row
 * framed as length-prefixed text fields, zstd level 1 in 8 MiB blocks to a file, fsync at the end.
 * usage: pg_extract_zstd CONNINFO "SELECT ..." OUTFILE   (prints rows on stdout) */
#include <libpq-fe.h>
#include <zstd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK (8u << 20)

static unsigned char *raw, *packed;
static size_t used, packed_cap;
static FILE *out;

static void flush_block(void) {
    if (used == 0) return;
    size_t n = ZSTD_compress(packed, packed_cap, raw, used, 1);
    if (ZSTD_isError(n)) { fprintf(stderr, "zstd: %s\n", ZSTD_getErrorName(n)); exit(1); }
    uint32_t len = (uint32_t)n;
    fwrite(&len, 4, 1, out);
    fwrite(packed, 1, n, out);
    used = 0;
}

static void put(const void *p, size_t n) {
    if (used + n > BLOCK) flush_block();
    memcpy(raw + used, p, n);
    used += n;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s CONNINFO SQL OUTFILE\n", argv[0]); return 2; }
    PGconn *conn = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK) { fprintf(stderr, "%s", PQerrorMessage(conn)); return 3; }
    out = fopen(argv[3], "wb");
    if (!out) { perror("fopen"); return 1; }
    raw = malloc(BLOCK);
    packed_cap = ZSTD_compressBound(BLOCK);
    packed = malloc(packed_cap);
    if (!PQsendQuery(conn, argv[2]) || !PQsetSingleRowMode(conn)) { fprintf(stderr, "%s", PQerrorMessage(conn)); return 1; }
    long rows = 0;
    PGresult *r;
    while ((r = PQgetResult(conn)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE) {
            int nf = PQnfields(r);
            for (int f = 0; f < nf; f++) {
                int32_t len = PQgetisnull(r, 0, f) ? -1 : PQgetlength(r, 0, f);
                put(&len, 4);
                if (len > 0) put(PQgetvalue(r, 0, f), (size_t)len);
            }
            rows++;
        } else if (st != PGRES_TUPLES_OK) {
            fprintf(stderr, "%s", PQresultErrorMessage(r));
            return 1;
        }
        PQclear(r);
    }
    flush_block();
    fflush(out);
    fsync(fileno(out));
    fclose(out);
    PQfinish(conn);
    printf("%ld\n", rows);
    return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Corpus replay driver: runs LLVMFuzzerTestOneInput over every file in the
 * directories (or files) given, so each fuzz target's corpus is a
 * regression test in the normal (and sanitizer) test run.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path, unsigned *n) {
        struct stat st;
        uint8_t *buf;
        FILE *f = fopen(path, "rbe");

        if (!f || fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
                fprintf(stderr, "cannot read %s\n", path);
                if (f)
                        fclose(f);
                return -1;
        }
        buf = malloc((size_t) st.st_size + 1);
        if (!buf || fread(buf, 1, (size_t) st.st_size, f) != (size_t) st.st_size) {
                fprintf(stderr, "cannot read %s\n", path);
                free(buf);
                fclose(f);
                return -1;
        }
        fclose(f);
        /* Exact-size copy so ASan sees reads one past the input. */
        uint8_t *exact = malloc((size_t) st.st_size ? (size_t) st.st_size : 1);
        if (!exact) {
                free(buf);
                return -1;
        }
        memcpy(exact, buf, (size_t) st.st_size);
        free(buf);
        (void) LLVMFuzzerTestOneInput(exact, (size_t) st.st_size);
        free(exact);
        (*n)++;
        return 0;
}

int main(int argc, char **argv) {
        unsigned n = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "cannot stat %s\n", argv[i]);
                        return EXIT_FAILURE;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (run_file(argv[i], &n) < 0)
                                return EXIT_FAILURE;
                        continue;
                }
                DIR *d = opendir(argv[i]);
                struct dirent *de;
                if (!d)
                        return EXIT_FAILURE;
                while ((de = readdir(d))) {
                        char path[4096];
                        if (de->d_name[0] == '.')
                                continue;
                        if (snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name) >= (int) sizeof path)
                                continue;
                        if (run_file(path, &n) < 0) {
                                closedir(d);
                                return EXIT_FAILURE;
                        }
                }
                closedir(d);
        }
        if (n == 0) {
                fprintf(stderr, "no corpus inputs found\n");
                return EXIT_FAILURE;
        }
        printf("replayed %u inputs\n", n);
        return EXIT_SUCCESS;
}

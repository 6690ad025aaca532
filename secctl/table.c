/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Aligned human tables: a header line (unless --no-legend), then one line
 * per row; columns are separated by two spaces, the last column is not
 * padded, and empty cells print as "-". Control characters in cells (they
 * come from secd, ultimately from other administrators) print as '?'.
 */
#include "secctl.h"

struct CtlTable {
        size_t n_columns;
        char **headers;  /* n_columns */
        char **cells;    /* n_rows * n_columns */
        size_t n_rows;
        size_t allocated_rows;
};

size_t ctl_utf8_width(const char *s) {
        size_t w = 0;

        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if ((*p & 0xc0) != 0x80)
                        w++;
        return w;
}

/* Copy with C0 controls and DEL replaced; "" and NULL become "-". */
static char *cell_dup(const char *s) {
        char *d;

        if (isempty(s))
                return strdup("-");
        d = strdup(s);
        if (!d)
                return NULL;
        for (char *p = d; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = '?';
        return d;
}

int ctl_table_new(size_t n_columns, const char *const *headers, CtlTable **ret) {
        _cleanup_(ctl_table_freep) CtlTable *t = NULL;

        if (n_columns == 0)
                return -EINVAL;
        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->n_columns = n_columns;
        t->headers = calloc(n_columns, sizeof(char *));
        if (!t->headers)
                return -ENOMEM;
        for (size_t i = 0; i < n_columns; i++) {
                t->headers[i] = cell_dup(headers[i]);
                if (!t->headers[i])
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(t);
        return 0;
}

CtlTable *ctl_table_free(CtlTable *t) {
        if (!t)
                return NULL;
        if (t->headers)
                for (size_t i = 0; i < t->n_columns; i++)
                        free(t->headers[i]);
        free(t->headers);
        for (size_t i = 0; i < t->n_rows * t->n_columns; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
        return NULL;
}

int ctl_table_add_row(CtlTable *t, const char *const *cells) {
        size_t base;

        if (t->n_rows == t->allocated_rows) {
                size_t n = MAX(t->allocated_rows * 2, (size_t) 16), bytes;
                char **c;

                if (!size_mul_ok(n, t->n_columns, &bytes) || !size_mul_ok(bytes, sizeof(char *), &bytes))
                        return -ENOMEM;
                c = realloc(t->cells, bytes);
                if (!c)
                        return -ENOMEM;
                t->cells = c;
                t->allocated_rows = n;
        }

        base = t->n_rows * t->n_columns;
        for (size_t i = 0; i < t->n_columns; i++) {
                t->cells[base + i] = cell_dup(cells[i]);
                if (!t->cells[base + i]) {
                        while (i > 0)
                                free(t->cells[base + --i]);
                        return -ENOMEM;
                }
        }
        t->n_rows++;
        return 0;
}

size_t ctl_table_rows(const CtlTable *t) {
        return t->n_rows;
}

static void print_line(FILE *f, char *const *cells, const size_t *widths, size_t n) {
        for (size_t i = 0; i < n; i++) {
                fputs(cells[i], f);
                if (i + 1 < n)
                        for (size_t w = ctl_utf8_width(cells[i]); w < widths[i] + 2; w++)
                                fputc(' ', f);
        }
        fputc('\n', f);
}

int ctl_table_print(const CtlTable *t, FILE *f, bool legend) {
        _cleanup_free_ size_t *widths = NULL;

        widths = calloc(t->n_columns, sizeof *widths);
        if (!widths)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_columns; i++) {
                if (legend)
                        widths[i] = ctl_utf8_width(t->headers[i]);
                for (size_t r = 0; r < t->n_rows; r++)
                        widths[i] = MAX(widths[i], ctl_utf8_width(t->cells[r * t->n_columns + i]));
        }

        if (legend)
                print_line(f, t->headers, widths, t->n_columns);
        for (size_t r = 0; r < t->n_rows; r++)
                print_line(f, t->cells + r * t->n_columns, widths, t->n_columns);
        return 0;
}

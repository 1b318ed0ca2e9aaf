/* sources.c — csv/tsv tables, webdataset tars, IDX files and image folders read as a stream
 * of (image, caption) items for flip-prep (see sources.h for the formats).
 * Tar and IDX files are read through zlib's gz* functions, which read plain
 * files as they are and gzip'ed ones decompressed. */
#include "sources.h"

#include "brace.h"
#include "common.h"
#include "rng.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>

#define SOURCE_RNG_TEMPLATE 100u           /* Philox domain of the idx template draw */
#define TAR_MAX_IMAGE_BYTES ((size_t)256 << 20)
#define TAR_MAX_TEXT_BYTES ((size_t)16 << 20)
#define TAR_MAX_NAME_BYTES 65536
#define IDX_MAX_SIDE 4096
#define FOLDER_MAX_DEPTH 64

static void set_err(char *err, size_t err_bytes, const char *fmt, ...) FLIP_PRINTF(3, 4);
static void set_err(char *err, size_t err_bytes, const char *fmt, ...) {
    if (!err || err_bytes == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_bytes, fmt, ap);
    va_end(ap);
}

static char *str_dup(const char *s, size_t n) {
    char *d = flip_malloc(n + 1, "string");
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

const char *skip_reason_name(SkipReason r) {
    switch (r) {
    case SKIP_NONE: return "none";
    case SKIP_UNREADABLE: return "unreadable image";
    case SKIP_CORRUPT: return "corrupt image";
    case SKIP_EMPTY_CAPTION: return "empty caption";
    case SKIP_BAD_UTF8: return "non-UTF-8 caption";
    case SKIP_MISSING: return "missing file";
    default: return "unknown";
    }
}

int source_kind_parse(const char *name, SourceKind *kind) {
    static const char *names[] = {"csv", "tsv", "tar", "idx", "folder"};
    for (int i = 0; i < 5; i++) {
        if (strcmp(name, names[i]) == 0) {
            *kind = (SourceKind)i;
            return 0;
        }
    }
    return -1;
}

const char *source_kind_name(SourceKind kind) {
    switch (kind) {
    case SOURCE_CSV: return "csv";
    case SOURCE_TSV: return "tsv";
    case SOURCE_TAR: return "tar";
    case SOURCE_IDX: return "idx";
    case SOURCE_FOLDER: return "folder";
    }
    return "?";
}

int source_utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        int len;
        unsigned cp;
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
        else return 0;
        if (i + (size_t)len > n) return 0;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += (size_t)len;
    }
    return 1;
}

int source_text_nonblank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i]) && s[i] != 0) return 1;
    return 0;
}

uint8_t *source_read_file(const char *path, size_t *n_bytes, int *errno_out) {
    *n_bytes = 0;
    *errno_out = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        *errno_out = errno;
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        *errno_out = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        fclose(f);
        return NULL;
    }
    size_t cap = st.st_size > 0 ? (size_t)st.st_size : 4096, n = 0;
    uint8_t *buf = flip_malloc(cap + 1, "input file");
    for (;;) {
        if (n == cap) { /* file grew, or size unknown */
            uint8_t *bigger = flip_malloc(cap * 2 + 1, "input file");
            memcpy(bigger, buf, n);
            flip_free(buf);
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        *errno_out = EIO;
        flip_free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    *n_bytes = n;
    return buf;
}

/* ---- the Source ---------------------------------------------------------- */

typedef struct { /* one csv/tsv record */
    char *buf;
    size_t len, cap;
    size_t *offs; /* (n) field starts in buf */
    int n, cap_f;
} Record;

typedef struct { /* the webdataset sample being assembled */
    int active;
    char key[1024];
    uint8_t *image;
    size_t image_bytes;
    int has_image;
    char image_member[1024];
    char *caption;
    size_t caption_bytes;
    int has_caption;
    size_t bytes_in;
    SkipReason skip;
    char reason[256];
} TarSample;

struct Source {
    SourceKind kind;
    int captions_only;
    BraceList files;
    int file_i;      /* index of the open file in files (-1: none yet) */
    long next_index; /* index of the next item */
    char err_ctx[64];
    /* csv / tsv */
    FILE *fp;
    char *dir;       /* folder of the open table ("" = cwd) */
    long line;       /* current line (1-based) */
    int header_checked, path_col, cap_col;
    Record rec;
    /* tar */
    gzFile gz;
    uint64_t tar_pos;
    int pend_valid;  /* a member header is read, its data not consumed */
    char *pend_name;
    uint64_t pend_size;
    int pend_type;
    char *long_name; /* GNU ././@LongLink or pax path for the next member */
    TarSample acc;
    char corrupt_msg[512]; /* a corrupt tar to report as the next item */
    /* idx */
    gzFile idx_img, idx_lab;
    long idx_n;
    int idx_rows, idx_cols, idx_ch;
    char *labels_path;
    uint64_t template_seed;
    char **classes;
    int n_classes;
    char **templates;
    int n_templates;
    /* folder: image paths in reading order */
    char **images;
    long n_images, cap_images;
    /* progress */
    uint64_t *file_bytes; /* (files.n) sizes on disk */
    double total_bytes;
};

double source_fraction(const Source *s) {
    if (s->kind == SOURCE_IDX) return s->idx_n ? (double)s->next_index / (double)s->idx_n : 1.0;
    if (s->kind == SOURCE_FOLDER) return s->n_images ? (double)s->next_index / (double)s->n_images : 1.0;
    if (s->total_bytes <= 0) return 0.0;
    double done = 0;
    for (int i = 0; i < s->file_i && (size_t)i < s->files.n; i++) done += (double)s->file_bytes[i];
    if (s->fp) done += (double)ftell(s->fp);
    else if (s->gz) done += (double)gzoffset(s->gz);
    else if (s->file_i >= 0) done += (double)s->file_bytes[s->file_i];
    double f = done / s->total_bytes;
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

int source_n_files(const Source *s) { return (int)s->files.n; }
long source_n_items(const Source *s) { return s->kind == SOURCE_FOLDER ? s->n_images : -1; }
const char *source_file(const Source *s, int i) { return i >= 0 && (size_t)i < s->files.n ? s->files.items[i] : NULL; }
int source_n_classes(const Source *s) { return s->n_classes; }
const char *source_class_name(const Source *s, int i) {
    return i >= 0 && i < s->n_classes ? s->classes[i] : NULL;
}

/* Reads non-comment lines of a small text file: trims trailing whitespace;
 * comment lines start with '#' (allow_comments). Empty lines are dropped
 * at the end; elsewhere they are an error when !allow_blank. */
static char **read_lines(const char *path, int allow_comments, int *n_out, const char *what,
                         char *err, size_t err_bytes) {
    size_t n_bytes;
    int e;
    char *text = (char *)source_read_file(path, &n_bytes, &e);
    if (!text) {
        set_err(err, err_bytes, "%s: cannot read %s file (%s); check the path", path, what, strerror(e));
        return NULL;
    }
    if (!source_utf8_valid(text, n_bytes)) {
        set_err(err, err_bytes, "%s: %s file is not valid UTF-8", path, what);
        flip_free(text);
        return NULL;
    }
    int cap = 16, n = 0, pending_blank = 0, lineno = 0;
    char **lines = flip_malloc(sizeof(char *) * (size_t)cap, "lines");
    char *p = text;
    if ((unsigned char)p[0] == 0xef && (unsigned char)p[1] == 0xbb && (unsigned char)p[2] == 0xbf) p += 3;
    while (*p) {
        char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        lineno++;
        while (len > 0 && isspace((unsigned char)p[len - 1])) len--;
        size_t start = 0;
        while (start < len && isspace((unsigned char)p[start])) start++;
        if (len == start) {
            pending_blank = lineno;
        } else if (!(allow_comments && p[start] == '#')) {
            if (pending_blank && !allow_comments) {
                set_err(err, err_bytes, "%s:%d: empty %s line (one per line, no blank lines: a blank line would shift the ids)",
                        path, pending_blank, what);
                for (int i = 0; i < n; i++) flip_free(lines[i]);
                flip_free(lines);
                flip_free(text);
                return NULL;
            }
            if (n == cap) {
                char **bigger = flip_malloc(sizeof(char *) * (size_t)cap * 2, "lines");
                memcpy(bigger, lines, sizeof(char *) * (size_t)n);
                flip_free(lines);
                lines = bigger;
                cap *= 2;
            }
            lines[n++] = str_dup(p + start, len - start);
            pending_blank = 0;
        }
        if (!eol) break;
        p = eol + 1;
    }
    flip_free(text);
    if (n == 0) {
        set_err(err, err_bytes, "%s: no %s lines in the file", path, what);
        flip_free(lines);
        return NULL;
    }
    *n_out = n;
    return lines;
}

static void free_lines(char **lines, int n) {
    for (int i = 0; i < n; i++) flip_free(lines[i]);
    flip_free(lines);
}

static int gz_read_exact(gzFile gz, void *buf, size_t n) {
    uint8_t *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(gz, p, chunk);
        if (got <= 0) return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int idx_open(Source *s, const SourceConfig *cfg, char *err, size_t err_bytes) {
    if (s->files.n != 1) {
        set_err(err, err_bytes, "--source idx takes exactly one --input (the images file), got %zu", s->files.n);
        return -1;
    }
    if (!cfg->labels_path || !cfg->classes_path) {
        set_err(err, err_bytes, "--source idx needs --labels FILE and --classes FILE");
        return -1;
    }
    const char *ipath = s->files.items[0];
    s->idx_img = gzopen(ipath, "rb");
    if (!s->idx_img) {
        set_err(err, err_bytes, "%s: cannot open IDX images file (%s); check --input", ipath, strerror(errno));
        return -1;
    }
    gzbuffer(s->idx_img, 1 << 18);
    uint8_t hdr[20];
    if (gz_read_exact(s->idx_img, hdr, 4) != 0 || hdr[0] != 0 || hdr[1] != 0) {
        set_err(err, err_bytes, "%s: not an IDX file (bad magic); expected e.g. train-images-idx3-ubyte(.gz)", ipath);
        return -1;
    }
    int ndims = hdr[3];
    if (hdr[2] != 0x08 || (ndims != 3 && ndims != 4)) {
        set_err(err, err_bytes, "%s: IDX images must be unsigned bytes (type 0x08) with 3 or 4 dims, got type 0x%02x with %d dims",
                ipath, hdr[2], ndims);
        return -1;
    }
    if (gz_read_exact(s->idx_img, hdr + 4, (size_t)ndims * 4) != 0) {
        set_err(err, err_bytes, "%s: IDX header truncated", ipath);
        return -1;
    }
    uint32_t n = be32(hdr + 4), rows = be32(hdr + 8), cols = be32(hdr + 12);
    uint32_t ch = ndims == 4 ? be32(hdr + 16) : 1;
    if (n == 0 || n > (1u << 31) - 1 || rows < 1 || rows > IDX_MAX_SIDE || cols < 1 || cols > IDX_MAX_SIDE ||
        (ch != 1 && ch != 3)) {
        set_err(err, err_bytes, "%s: IDX dims (%u, %u, %u, %u) out of range (n >= 1, sides 1..%d, channels 1 or 3)",
                ipath, n, rows, cols, ch, IDX_MAX_SIDE);
        return -1;
    }
    s->idx_n = n;
    s->idx_rows = (int)rows;
    s->idx_cols = (int)cols;
    s->idx_ch = (int)ch;

    s->labels_path = str_dup(cfg->labels_path, strlen(cfg->labels_path));
    s->idx_lab = gzopen(cfg->labels_path, "rb");
    if (!s->idx_lab) {
        set_err(err, err_bytes, "%s: cannot open IDX labels file (%s); check --labels", cfg->labels_path, strerror(errno));
        return -1;
    }
    if (gz_read_exact(s->idx_lab, hdr, 8) != 0 || hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 || hdr[3] != 1) {
        set_err(err, err_bytes, "%s: not an IDX label file (expected magic 00 00 08 01, e.g. train-labels-idx1-ubyte(.gz))",
                cfg->labels_path);
        return -1;
    }
    if (be32(hdr + 4) != n) {
        set_err(err, err_bytes, "%s: %u labels but %s holds %u images; pass the matching labels file",
                cfg->labels_path, be32(hdr + 4), ipath, n);
        return -1;
    }
    s->classes = read_lines(cfg->classes_path, 0, &s->n_classes, "class name", err, err_bytes);
    if (!s->classes) return -1;
    if (cfg->templates_path) {
        s->templates = read_lines(cfg->templates_path, 1, &s->n_templates, "caption template", err, err_bytes);
        if (!s->templates) return -1;
        for (int i = 0; i < s->n_templates; i++) {
            if (!strstr(s->templates[i], "{}")) {
                set_err(err, err_bytes, "%s: template %d (\"%s\") has no {} for the class name",
                        cfg->templates_path, i + 1, s->templates[i]);
                return -1;
            }
        }
    } else {
        s->templates = flip_malloc(sizeof(char *), "templates");
        s->templates[0] = str_dup("a photo of a {}.", 16);
        s->n_templates = 1;
    }
    s->template_seed = cfg->template_seed;
    return 0;
}

/* caption = template with every "{}" replaced by name (owned) */
static char *fill_template(const char *tmpl, const char *name, size_t *n_out) {
    size_t tl = strlen(tmpl), nl = strlen(name), n = 0;
    for (const char *p = tmpl; (p = strstr(p, "{}")); p += 2) n++;
    size_t len = tl - 2 * n + n * nl;
    char *out = flip_malloc(len + 1, "caption"), *o = out;
    for (const char *p = tmpl; *p;) {
        if (p[0] == '{' && p[1] == '}') {
            memcpy(o, name, nl);
            o += nl;
            p += 2;
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    *n_out = len;
    return out;
}

static int idx_next(Source *s, SourceItem *item, char *err, size_t err_bytes) {
    long i = s->next_index;
    if (i >= s->idx_n) return 0;
    const char *ipath = s->files.items[0];
    size_t n_px = (size_t)s->idx_rows * (size_t)s->idx_cols * (size_t)s->idx_ch;
    if (s->captions_only) {
        if (gzseek(s->idx_img, (z_off_t)n_px, SEEK_CUR) < 0) {
            set_err(err, err_bytes, "%s: truncated at sample %ld (the header says %ld samples)", ipath, i, s->idx_n);
            return -1;
        }
    } else {
        item->data = flip_malloc(n_px, "idx image");
        if (gz_read_exact(s->idx_img, item->data, n_px) != 0) {
            set_err(err, err_bytes, "%s: truncated at sample %ld (the header says %ld samples)", ipath, i, s->idx_n);
            return -1;
        }
        item->n_bytes = n_px;
        item->raw_w = s->idx_cols;
        item->raw_h = s->idx_rows;
        item->raw_c = s->idx_ch;
    }
    uint8_t lab;
    if (gz_read_exact(s->idx_lab, &lab, 1) != 0) {
        set_err(err, err_bytes, "%s: truncated at label %ld (the header says %ld labels)", s->labels_path, i, s->idx_n);
        return -1;
    }
    if (lab >= s->n_classes) {
        set_err(err, err_bytes, "%s: label %d of sample %ld is outside the %d classes of --classes", s->labels_path,
                lab, i, s->n_classes);
        return -1;
    }
    Rng r;
    rng_init(&r, s->template_seed, SOURCE_RNG_TEMPLATE, (uint64_t)i, 0);
    int k = (int)rng_below(&r, (uint32_t)s->n_templates);
    item->caption = fill_template(s->templates[k], s->classes[lab], &item->caption_bytes);
    item->label = lab;
    item->bytes_in = n_px + 1;
    snprintf(item->name, sizeof item->name, "%s#%ld", ipath, i);
    return 1;
}

/* ---- csv / tsv ----------------------------------------------------------- */

static void rec_putc(Record *r, char c) {
    if (r->len + 1 >= r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 1024;
        char *b = flip_malloc(cap, "csv record");
        if (r->len) memcpy(b, r->buf, r->len);
        flip_free(r->buf);
        r->buf = b;
        r->cap = cap;
    }
    r->buf[r->len++] = c;
}

static void rec_end_field(Record *r) {
    rec_putc(r, 0);
    if (r->n == r->cap_f) {
        int cap = r->cap_f ? r->cap_f * 2 : 8;
        size_t *o = flip_malloc(sizeof(size_t) * (size_t)cap, "csv fields");
        if (r->n) memcpy(o, r->offs, sizeof(size_t) * (size_t)r->n);
        flip_free(r->offs);
        r->offs = o;
        r->cap_f = cap;
    }
    r->offs[r->n++] = 0; /* placeholder, fixed below */
}

/* Reads one record. 1 ok, 0 end of file, -1 unterminated quote (err). */
static int csv_read_record(Source *s, long *first_line, char *err, size_t err_bytes) {
    Record *r = &s->rec;
    FILE *f = s->fp;
    int sep = s->kind == SOURCE_TSV ? '\t' : ',', quoting = s->kind == SOURCE_CSV;
    r->len = 0;
    r->n = 0;
    size_t field_start = 0;
    int c = getc_unlocked(f);
    if (c == EOF) return 0;
    s->line++;
    *first_line = s->line;
    int in_quotes = 0, quoted = 0;
    for (;;) {
        if (in_quotes) {
            if (c == EOF) {
                set_err(err, err_bytes, "%s:%ld: unterminated quoted field (a \" without its closing \"); fix the CSV quoting",
                        s->files.items[s->file_i], *first_line);
                return -1;
            }
            if (c == '"') {
                int d = getc_unlocked(f);
                if (d == '"') {
                    rec_putc(r, '"');
                } else {
                    in_quotes = 0;
                    c = d;
                    continue;
                }
            } else {
                if (c == '\n') s->line++;
                rec_putc(r, (char)c);
            }
        } else if (c == EOF || c == '\n' || c == '\r') {
            if (c == '\r') {
                int d = getc_unlocked(f);
                if (d != '\n' && d != EOF) ungetc(d, f);
            }
            rec_end_field(r);
            r->offs[r->n - 1] = field_start;
            return 1;
        } else if (c == sep) {
            rec_end_field(r);
            r->offs[r->n - 1] = field_start;
            field_start = r->len;
            quoted = 0;
        } else if (c == '"' && quoting && r->len == field_start && !quoted) {
            in_quotes = 1;
            quoted = 1;
        } else {
            rec_putc(r, (char)c);
        }
        c = getc_unlocked(f);
    }
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

static int name_in(const char *name, const char *const *list) {
    for (int i = 0; list[i]; i++)
        if (strcasecmp(name, list[i]) == 0) return i;
    return -1;
}

static int has_image_ext(const char *p) {
    const char *dot = strrchr(p, '.');
    return dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 || strcasecmp(dot, ".png") == 0);
}

static int csv_open_file(Source *s, char *err, size_t err_bytes) {
    const char *path = s->files.items[s->file_i];
    s->fp = fopen(path, "rb");
    if (!s->fp) {
        set_err(err, err_bytes, "%s: cannot open the %s table (%s); check --input", path, source_kind_name(s->kind),
                strerror(errno));
        return -1;
    }
    setvbuf(s->fp, NULL, _IOFBF, 1 << 18);
    int b0 = getc_unlocked(s->fp), b1 = getc_unlocked(s->fp), b2 = getc_unlocked(s->fp);
    if (!(b0 == 0xef && b1 == 0xbb && b2 == 0xbf)) rewind(s->fp); /* no BOM */
    flip_free(s->dir);
    const char *slash = strrchr(path, '/');
    s->dir = slash ? str_dup(path, (size_t)(slash - path + 1)) : str_dup("", 0);
    s->line = 0;
    s->header_checked = 0;
    s->path_col = 0;
    s->cap_col = 1;
    return 0;
}

static int csv_next(Source *s, SourceItem *item, char *err, size_t err_bytes) {
    static const char *const path_names[] = {"filepath", "image_path", "image", "path", "file", "filename", "img",
                                             "image_file", "jpg", NULL};
    static const char *const cap_names[] = {"caption", "text", "title", "captions", "description", "txt", NULL};
    for (;;) {
        if (!s->fp) {
            if ((size_t)(s->file_i + 1) >= s->files.n) return 0;
            s->file_i++;
            if (csv_open_file(s, err, err_bytes) != 0) return -1;
        }
        long line;
        int r = csv_read_record(s, &line, err, err_bytes);
        if (r < 0) return -1;
        if (r == 0) {
            fclose(s->fp);
            s->fp = NULL;
            continue;
        }
        Record *rec = &s->rec;
        if (rec->n == 1 && !source_text_nonblank(rec->buf, strlen(rec->buf))) continue; /* blank line */
        const char *table = s->files.items[s->file_i];
        if (!s->header_checked) {
            s->header_checked = 1;
            int pc = -1, cc = -1;
            for (int i = 0; i < rec->n; i++) {
                char *f = trim(rec->buf + rec->offs[i]);
                int a = name_in(f, path_names), b = name_in(f, cap_names);
                if (a >= 0 && (pc < 0 || a < name_in(trim(rec->buf + rec->offs[pc]), path_names))) pc = i;
                if (b >= 0 && (cc < 0 || b < name_in(trim(rec->buf + rec->offs[cc]), cap_names))) cc = i;
            }
            if (pc >= 0 || cc >= 0) {
                if (pc < 0 || cc < 0) {
                    set_err(err, err_bytes, "%s:%ld: the header names %s column but no %s column (use e.g. 'filepath' and 'caption')",
                            table, line, pc >= 0 ? "an image" : "a caption", pc >= 0 ? "caption" : "image");
                    return -1;
                }
                s->path_col = pc;
                s->cap_col = cc;
                continue;
            }
            /* no header: the path is the column with an image extension */
            if (rec->n >= 2 && !has_image_ext(trim(rec->buf + rec->offs[0])) &&
                has_image_ext(trim(rec->buf + rec->offs[1]))) {
                s->path_col = 1;
                s->cap_col = 0;
            }
        }
        item->index = s->next_index;
        item->label = -1;
        const char *path = rec->n > s->path_col ? trim(rec->buf + rec->offs[s->path_col]) : "";
        snprintf(item->name, sizeof item->name, "%s:%ld (%.300s)", table, line, path);
        if (rec->n > s->cap_col) {
            char *cap = trim(rec->buf + rec->offs[s->cap_col]);
            item->caption_bytes = strlen(cap);
            item->caption = str_dup(cap, item->caption_bytes);
            item->bytes_in = item->caption_bytes;
        }
        if (!*path) {
            item->skip = SKIP_MISSING;
            snprintf(item->reason, sizeof item->reason, "no image path in column %d", s->path_col + 1);
        } else if (strstr(path, "://")) {
            item->skip = SKIP_MISSING;
            snprintf(item->reason, sizeof item->reason, "image is a URL; download it first (e.g. img2dataset) and use --source tar");
        } else if (path[0] == '/') {
            item->path = str_dup(path, strlen(path));
        } else {
            size_t dl = strlen(s->dir), pl = strlen(path);
            item->path = flip_malloc(dl + pl + 1, "image path");
            memcpy(item->path, s->dir, dl);
            memcpy(item->path + dl, path, pl + 1);
        }
        return 1;
    }
}

/* ---- tar ----------------------------------------------------------------- */

/* Parses a numeric tar field: octal (NUL/space terminated) or GNU base-256. */
static int tar_number(const uint8_t *f, int n, uint64_t *v) {
    uint64_t x = 0;
    if (f[0] & 0x80) {
        if (f[0] != 0x80) return -1; /* negative or absurd */
        for (int i = 1; i < n; i++) {
            if (x >> 55) return -1;
            x = (x << 8) | f[i];
        }
        *v = x;
        return 0;
    }
    int i = 0;
    while (i < n && f[i] == ' ') i++;
    int digits = 0;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
        if (x >> 60) return -1;
        x = (x << 3) | (uint64_t)(f[i] - '0');
    }
    for (; i < n; i++)
        if (f[i] != 0 && f[i] != ' ') return -1;
    *v = x;
    return 0;
}

static int tar_skip(Source *s, uint64_t n) {
    while (n > 0) {
        uint8_t buf[65536];
        size_t chunk = n > sizeof buf ? sizeof buf : (size_t)n;
        if (gz_read_exact(s->gz, buf, chunk) != 0) return -1;
        n -= chunk;
        s->tar_pos += chunk;
    }
    return 0;
}

static uint64_t tar_pad(uint64_t size) { return (512 - size % 512) % 512; }

/* Reads a member's data (+ padding) into a new buffer; -1 if the tar ends early. */
static int tar_read_data(Source *s, uint64_t size, uint8_t **out) {
    uint8_t *buf = flip_malloc((size_t)size + 1, "tar member");
    if (gz_read_exact(s->gz, buf, (size_t)size) != 0) {
        flip_free(buf);
        return -1;
    }
    buf[size] = 0;
    s->tar_pos += size;
    if (tar_skip(s, tar_pad(size)) != 0) {
        flip_free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

/* Reads the next member header into pend_*. 1 ok, 0 end of archive, -1
 * corrupt (corrupt_msg set). Long-name and pax records are consumed here. */
static int tar_read_header(Source *s) {
    const char *tar = s->files.items[s->file_i];
    for (;;) {
        uint8_t h[512];
        int got = gzread(s->gz, h, 512);
        if (got == 0) return 0; /* EOF without the two zero blocks: tolerated */
        if (got != 512) {
            snprintf(s->corrupt_msg, sizeof s->corrupt_msg, "%s: truncated tar header at byte %llu", tar,
                     (unsigned long long)s->tar_pos);
            return -1;
        }
        uint64_t at = s->tar_pos;
        s->tar_pos += 512;
        int zero = 1;
        for (int i = 0; i < 512; i++)
            if (h[i]) { zero = 0; break; }
        if (zero) return 0;
        uint64_t stored, size;
        unsigned sum_u = 0;
        int sum_s = 0;
        for (int i = 0; i < 512; i++) {
            uint8_t b = (i >= 148 && i < 156) ? ' ' : h[i];
            sum_u += b;
            sum_s += (signed char)b;
        }
        if (tar_number(h + 148, 8, &stored) != 0 || (stored != sum_u && (int64_t)stored != sum_s)) {
            snprintf(s->corrupt_msg, sizeof s->corrupt_msg,
                     "%s: bad tar header checksum at byte %llu (not a tar file, or corrupt)", tar, (unsigned long long)at);
            return -1;
        }
        if (tar_number(h + 124, 12, &size) != 0 || size > ((uint64_t)1 << 40)) {
            snprintf(s->corrupt_msg, sizeof s->corrupt_msg, "%s: bad member size at byte %llu", tar, (unsigned long long)at);
            return -1;
        }
        int type = h[156];
        if (type == 'L' || type == 'x') {
            if (size > TAR_MAX_NAME_BYTES) {
                snprintf(s->corrupt_msg, sizeof s->corrupt_msg, "%s: %s record of %llu bytes at byte %llu is too long", tar,
                         type == 'L' ? "long-name" : "pax", (unsigned long long)size, (unsigned long long)at);
                return -1;
            }
            uint8_t *data;
            if (tar_read_data(s, size, &data) != 0) {
                snprintf(s->corrupt_msg, sizeof s->corrupt_msg, "%s: truncated at byte %llu", tar, (unsigned long long)s->tar_pos);
                return -1;
            }
            if (type == 'L') {
                flip_free(s->long_name);
                s->long_name = str_dup((char *)data, strnlen((char *)data, (size_t)size));
            } else { /* pax records "len key=value\n" */
                size_t p = 0;
                while (p < size) {
                    char *end;
                    unsigned long len = strtoul((char *)data + p, &end, 10);
                    if (len == 0 || p + len > size || *end != ' ') break;
                    const char *kv = end + 1;
                    size_t kv_len = (size_t)((char *)data + p + len - kv);
                    if (kv_len > 5 && strncmp(kv, "path=", 5) == 0) {
                        flip_free(s->long_name);
                        s->long_name = str_dup(kv + 5, kv_len - 5 - (kv[kv_len - 1] == '\n'));
                    }
                    p += len;
                }
            }
            flip_free(data);
            continue;
        }
        flip_free(s->pend_name);
        if (s->long_name) {
            s->pend_name = s->long_name;
            s->long_name = NULL;
        } else {
            char name[256 + 2];
            size_t nl = strnlen((char *)h, 100);
            size_t pl = memcmp(h + 257, "ustar", 5) == 0 ? strnlen((char *)h + 345, 155) : 0;
            size_t o = 0;
            if (pl) {
                memcpy(name, h + 345, pl);
                name[pl] = '/';
                o = pl + 1;
            }
            memcpy(name + o, h, nl);
            name[o + nl] = 0;
            s->pend_name = str_dup(name, o + nl);
        }
        s->pend_size = size;
        s->pend_type = type;
        return 1;
    }
}

static void tar_sample_reset(TarSample *a) {
    flip_free(a->image);
    flip_free(a->caption);
    memset(a, 0, sizeof *a);
}

/* Moves the assembled sample into item. */
static void tar_emit(Source *s, SourceItem *item) {
    TarSample *a = &s->acc;
    item->index = s->next_index;
    item->label = -1;
    snprintf(item->name, sizeof item->name, "%s:%.400s", s->files.items[s->file_i], a->key);
    item->data = a->image;
    item->n_bytes = a->image_bytes;
    item->caption = a->caption;
    item->caption_bytes = a->caption_bytes;
    item->bytes_in = a->bytes_in;
    a->image = NULL;
    a->caption = NULL;
    if (a->skip != SKIP_NONE) {
        item->skip = a->skip;
        snprintf(item->reason, sizeof item->reason, "%.255s", a->reason);
    } else if (!a->has_image) {
        item->skip = SKIP_MISSING;
        snprintf(item->reason, sizeof item->reason, "sample has no .jpg/.jpeg/.png member");
    } else if (!a->has_caption) {
        item->skip = SKIP_MISSING;
        snprintf(item->reason, sizeof item->reason, "sample has no .txt caption member");
    }
    tar_sample_reset(a);
}

static void tar_close_file(Source *s) {
    if (s->gz) gzclose(s->gz);
    s->gz = NULL;
    s->pend_valid = 0;
    flip_free(s->long_name);
    s->long_name = NULL;
}

static int tar_next(Source *s, SourceItem *item, char *err, size_t err_bytes) {
    static const char *const image_exts[] = {"jpg", "jpeg", "png", "webp", "gif", "bmp", NULL};
    for (;;) {
        if (s->corrupt_msg[0]) { /* a corrupt tar becomes one counted item */
            item->index = s->next_index;
            item->label = -1;
            snprintf(item->name, sizeof item->name, "%s", s->files.items[s->file_i]);
            item->skip = SKIP_UNREADABLE;
            snprintf(item->reason, sizeof item->reason, "%.255s", s->corrupt_msg);
            s->corrupt_msg[0] = 0;
            return 1;
        }
        if (!s->gz) {
            if ((size_t)(s->file_i + 1) >= s->files.n) return 0;
            s->file_i++;
            const char *tar = s->files.items[s->file_i];
            s->gz = gzopen(tar, "rb");
            if (!s->gz) {
                set_err(err, err_bytes, "%s: cannot open tar shard (%s); check --input", tar, strerror(errno));
                return -1;
            }
            gzbuffer(s->gz, 1 << 18);
            s->tar_pos = 0;
            s->pend_valid = 0;
        }
        if (!s->pend_valid) {
            int r = tar_read_header(s);
            if (r <= 0) {
                tar_close_file(s);
                if (s->acc.active) {
                    tar_emit(s, item);
                    return 1;
                }
                continue; /* end of this tar, or a corrupt one reported at the loop top */
            }
            s->pend_valid = 1;
        }
        int regular = s->pend_type == '0' || s->pend_type == 0 || s->pend_type == '7';
        if (!regular) { /* directory, link, device, pax global: data skipped */
            if (tar_skip(s, s->pend_size + tar_pad(s->pend_size)) != 0) {
                snprintf(s->corrupt_msg, sizeof s->corrupt_msg, "%s: truncated inside member '%.300s'",
                         s->files.items[s->file_i], s->pend_name);
                tar_close_file(s);
                if (s->acc.active) { tar_emit(s, item); return 1; }
                continue;
            }
            s->pend_valid = 0;
            continue;
        }
        /* key = path up to the first '.' of the base name; ext = the rest */
        const char *name = s->pend_name;
        const char *base = strrchr(name, '/');
        base = base ? base + 1 : name;
        const char *dot = strchr(base, '.');
        size_t key_len = dot ? (size_t)(dot - name) : strlen(name);
        const char *ext = dot ? dot + 1 : "";
        if (key_len >= sizeof s->acc.key) key_len = sizeof s->acc.key - 1;
        if (s->acc.active && (strlen(s->acc.key) != key_len || strncmp(s->acc.key, name, key_len) != 0)) {
            tar_emit(s, item); /* the pending member starts the next sample */
            return 1;
        }
        TarSample *a = &s->acc;
        if (!a->active) {
            a->active = 1;
            memcpy(a->key, name, key_len);
            a->key[key_len] = 0;
        }
        uint64_t size = s->pend_size;
        int is_image = name_in(ext, image_exts) >= 0, is_text = strcasecmp(ext, "txt") == 0;
        int want = (is_image && !a->has_image && !s->captions_only) || (is_text && !a->has_caption);
        int too_big = (is_image && size > TAR_MAX_IMAGE_BYTES) || (is_text && size > TAR_MAX_TEXT_BYTES);
        s->pend_valid = 0;
        if (!want || too_big) {
            if (too_big && a->skip == SKIP_NONE) {
                a->skip = is_image ? SKIP_CORRUPT : SKIP_UNREADABLE;
                snprintf(a->reason, sizeof a->reason, "member '%.200s' is %llu bytes (over the %zu MiB limit)", name,
                         (unsigned long long)size, (is_image ? TAR_MAX_IMAGE_BYTES : TAR_MAX_TEXT_BYTES) >> 20);
            }
            if (is_image) a->has_image = 1;
            if (tar_skip(s, size + tar_pad(size)) != 0) {
                if (is_image || is_text) goto truncated;
                /* an ignored member (json, ...) is cut: the sample stands, the
                 * cut tar is reported as the next item */
                snprintf(s->corrupt_msg, sizeof s->corrupt_msg, "%s: truncated inside member '%.300s' (the tar ends early)",
                         s->files.items[s->file_i], name);
                tar_close_file(s);
                tar_emit(s, item);
                return 1;
            }
            a->bytes_in += size;
            continue;
        }
        uint8_t *data;
        if (tar_read_data(s, size, &data) != 0) goto truncated;
        a->bytes_in += size;
        if (is_image) {
            a->image = data;
            a->image_bytes = (size_t)size;
            a->has_image = 1;
            snprintf(a->image_member, sizeof a->image_member, "%s", name);
        } else {
            a->caption = (char *)data;
            a->caption_bytes = (size_t)size;
            a->has_caption = 1;
        }
        continue;
    truncated:
        a->skip = SKIP_UNREADABLE;
        snprintf(a->reason, sizeof a->reason, "member '%.200s' is truncated (the tar ends early)", name);
        tar_close_file(s);
        tar_emit(s, item);
        return 1;
    }
}

/* ---- image folders ------------------------------------------------------- */

static int cmp_path(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void folder_add(Source *s, const char *path) {
    if (s->n_images == s->cap_images) {
        long cap = s->cap_images ? s->cap_images * 2 : 256;
        char **bigger = flip_malloc(sizeof(char *) * (size_t)cap, "folder image list");
        if (s->n_images) memcpy(bigger, s->images, sizeof(char *) * (size_t)s->n_images);
        flip_free(s->images);
        s->images = bigger;
        s->cap_images = cap;
    }
    s->images[s->n_images++] = str_dup(path, strlen(path));
}

/* Appends the images under dir (recursively, unsorted). -1 + err when a
 * folder cannot be listed or nests deeper than FOLDER_MAX_DEPTH. */
static int folder_scan(Source *s, const char *dir, int depth, char *err, size_t err_bytes) {
    if (depth > FOLDER_MAX_DEPTH) {
        set_err(err, err_bytes, "%s: folders nest deeper than %d levels; check --input", dir, FOLDER_MAX_DEPTH);
        return -1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        set_err(err, err_bytes, "%s: cannot list the folder (%s); check --input and permissions", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    size_t dl = strlen(dir);
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; /* ., .., hidden files and folders */
        size_t nl = strlen(e->d_name);
        char *path = flip_malloc(dl + nl + 2, "folder path");
        memcpy(path, dir, dl);
        size_t o = dl;
        if (o == 0 || path[o - 1] != '/') path[o++] = '/';
        memcpy(path + o, e->d_name, nl + 1);
        struct stat st;
        if (lstat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                rc = folder_scan(s, path, depth + 1, err, err_bytes);
            } else if (has_image_ext(e->d_name)) {
                struct stat target;
                /* a symlink counts when it points at a file (never a folder) */
                if (S_ISREG(st.st_mode) || (S_ISLNK(st.st_mode) && stat(path, &target) == 0 && !S_ISDIR(target.st_mode)))
                    folder_add(s, path);
            }
        }
        flip_free(path);
    }
    closedir(d);
    return rc;
}

static int folder_open(Source *s, char *err, size_t err_bytes) {
    for (size_t i = 0; i < s->files.n; i++) {
        const char *dir = s->files.items[i];
        struct stat st;
        int found = stat(dir, &st) == 0;
        if (!found || !S_ISDIR(st.st_mode)) {
            set_err(err, err_bytes, "%s: %s (input %zu of %zu); --source folder takes image folders as --input", dir,
                    !found && errno == ENOENT ? "no such folder" : "not a folder", i + 1, s->files.n);
            return -1;
        }
        long first = s->n_images;
        if (folder_scan(s, dir, 0, err, err_bytes) != 0) return -1;
        if (s->n_images == first) {
            set_err(err, err_bytes, "%s: no .jpg/.jpeg/.png images in the folder or below it; check --input", dir);
            return -1;
        }
        qsort(s->images + first, (size_t)(s->n_images - first), sizeof(char *), cmp_path);
    }
    return 0;
}

/* x.jpg -> x.txt (the caption beside the image) */
static char *caption_path(const char *image) {
    const char *base = strrchr(image, '/');
    base = base ? base + 1 : image;
    const char *dot = strrchr(base, '.');
    size_t stem = dot && dot > base ? (size_t)(dot - image) : strlen(image);
    char *p = flip_malloc(stem + 5, "caption path");
    memcpy(p, image, stem);
    memcpy(p + stem, ".txt", 5);
    return p;
}

static int folder_next(Source *s, SourceItem *item) {
    long i = s->next_index;
    if (i >= s->n_images) return 0;
    const char *img = s->images[i];
    item->label = -1;
    snprintf(item->name, sizeof item->name, "%.500s", img);
    item->path = str_dup(img, strlen(img));
    char *txt = caption_path(img);
    struct stat st;
    if (stat(txt, &st) != 0) {
        item->skip = errno == ENOENT ? SKIP_MISSING : SKIP_UNREADABLE;
        snprintf(item->reason, sizeof item->reason, "no caption file %.200s beside the image (%s)", txt, strerror(errno));
    } else if (!S_ISREG(st.st_mode) || (size_t)st.st_size > TAR_MAX_TEXT_BYTES) {
        item->skip = SKIP_UNREADABLE;
        snprintf(item->reason, sizeof item->reason, "caption file %.200s is %s", txt,
                 S_ISREG(st.st_mode) ? "over the 16 MiB limit" : "not a regular file");
    } else {
        size_t n;
        int e;
        char *text = (char *)source_read_file(txt, &n, &e);
        if (!text) {
            item->skip = e == ENOENT ? SKIP_MISSING : SKIP_UNREADABLE;
            snprintf(item->reason, sizeof item->reason, "caption file %.200s: %s", txt, strerror(e));
        } else {
            size_t a = 0, b = n;
            while (a < b && isspace((unsigned char)text[a])) a++;
            while (b > a && isspace((unsigned char)text[b - 1])) b--;
            item->caption = str_dup(text + a, b - a);
            item->caption_bytes = b - a;
            item->bytes_in = n;
            flip_free(text);
        }
    }
    flip_free(txt);
    return 1;
}

/* ---- the public functions ------------------------------------------------ */

Source *source_open(const SourceConfig *cfg, char *err, size_t err_bytes) {
    if (cfg->n_inputs <= 0) {
        set_err(err, err_bytes, "no --input given");
        return NULL;
    }
    Source *s = flip_calloc(1, sizeof(Source), "source");
    s->kind = cfg->kind;
    s->captions_only = cfg->captions_only;
    s->file_i = -1;
    for (int i = 0; i < cfg->n_inputs; i++) brace_expand(&s->files, cfg->inputs[i]);
    if (cfg->kind == SOURCE_IDX) {
        if (idx_open(s, cfg, err, err_bytes) != 0) {
            source_close(s);
            return NULL;
        }
        s->file_i = 0;
    } else if (cfg->kind == SOURCE_FOLDER) {
        if (folder_open(s, err, err_bytes) != 0) {
            source_close(s);
            return NULL;
        }
    } else {
        for (size_t i = 0; i < s->files.n; i++) {
            struct stat st;
            if (stat(s->files.items[i], &st) != 0 || !S_ISREG(st.st_mode)) {
                set_err(err, err_bytes, "%s: %s (input %zu of %zu); check --input", s->files.items[i],
                        errno == ENOENT ? "no such file" : "not a readable file", i + 1, s->files.n);
                source_close(s);
                return NULL;
            }
        }
    }
    s->file_bytes = flip_calloc(s->files.n ? s->files.n : 1, sizeof(uint64_t), "input sizes");
    for (size_t i = 0; i < s->files.n; i++) {
        struct stat st;
        if (stat(s->files.items[i], &st) == 0) s->file_bytes[i] = (uint64_t)st.st_size;
        s->total_bytes += (double)s->file_bytes[i];
    }
    return s;
}

int source_next(Source *s, SourceItem *item, char *err, size_t err_bytes) {
    memset(item, 0, sizeof *item);
    item->index = s->next_index;
    item->label = -1;
    int r;
    switch (s->kind) {
    case SOURCE_CSV:
    case SOURCE_TSV: r = csv_next(s, item, err, err_bytes); break;
    case SOURCE_TAR: r = tar_next(s, item, err, err_bytes); break;
    case SOURCE_IDX: r = idx_next(s, item, err, err_bytes); break;
    case SOURCE_FOLDER: r = folder_next(s, item); break;
    default: r = -1; set_err(err, err_bytes, "unknown source kind %d", (int)s->kind);
    }
    if (r != 1) {
        source_item_free(item);
        return r;
    }
    item->index = s->next_index++;
    if (item->skip == SKIP_NONE) {
        if (!item->caption || !source_text_nonblank(item->caption, item->caption_bytes)) {
            item->skip = SKIP_EMPTY_CAPTION;
            snprintf(item->reason, sizeof item->reason, "caption is %s", item->caption ? "empty" : "missing");
        } else if (!source_utf8_valid(item->caption, item->caption_bytes)) {
            item->skip = SKIP_BAD_UTF8;
            snprintf(item->reason, sizeof item->reason, "caption is not valid UTF-8");
        }
    }
    return 1;
}

void source_item_free(SourceItem *item) {
    flip_free(item->path);
    flip_free(item->data);
    flip_free(item->caption);
    item->path = NULL;
    item->data = NULL;
    item->caption = NULL;
}

void source_close(Source *s) {
    if (!s) return;
    if (s->fp) fclose(s->fp);
    if (s->gz) gzclose(s->gz);
    if (s->idx_img) gzclose(s->idx_img);
    if (s->idx_lab) gzclose(s->idx_lab);
    flip_free(s->dir);
    flip_free(s->rec.buf);
    flip_free(s->rec.offs);
    flip_free(s->pend_name);
    flip_free(s->long_name);
    tar_sample_reset(&s->acc);
    flip_free(s->labels_path);
    if (s->classes) free_lines(s->classes, s->n_classes);
    if (s->templates) free_lines(s->templates, s->n_templates);
    for (long i = 0; i < s->n_images; i++) flip_free(s->images[i]);
    flip_free(s->images);
    brace_list_free(&s->files);
    flip_free(s->file_bytes);
    flip_free(s);
}

/* sources.h — the raw inputs of flip-prep, read sequentially as items.
 *
 * Kinds:
 *   csv / tsv  a table of (image path, caption). CSV follows RFC 4180 (quoted
 *              fields, "" escapes, newlines inside quotes, CRLF); TSV splits
 *              on tabs with no quoting. A UTF-8 BOM is ignored. The first row
 *              is a header when one of its fields names a column (image,
 *              image_path, filepath, path, file, filename, img / caption,
 *              text, title, captions, description): then the columns are
 *              picked by name. Without a header the path is the first of
 *              columns 0 and 1 whose value ends in .jpg/.jpeg/.png (default
 *              0) and the caption is the other one. Relative image paths are
 *              relative to the table's folder. Blank lines are ignored.
 *   tar        webdataset shards as img2dataset writes them: consecutive
 *              members sharing a key (path up to the first '.' of the base
 *              name) form a sample: key.jpg / key.jpeg / key.png (image) +
 *              key.txt (caption); other members (json, ...) are ignored.
 *              ustar, GNU (././@LongLink names) and pax (path=) headers;
 *              directories, links and pax globals skipped. gzip'ed tars are
 *              read transparently (zlib). A corrupt header or a truncated
 *              member ends that tar with one counted skip and a warning.
 *   idx        IDX image + label files (LeCun's MNIST format, big-endian
 *              header; gzip'ed or not): images uint8 (n, rows, cols) or
 *              (n, rows, cols, 1|3), labels uint8 (n). The caption of sample
 *              i is template[k] with every "{}" replaced by the class name of
 *              its label, k = a Philox draw keyed by (template_seed, i):
 *              deterministic and independent of the reading order.
 *   folder     image folders: every x.jpg / x.jpeg / x.png (any case) found
 *              recursively, with its caption in the text file x.txt beside
 *              it (leading/trailing whitespace trimmed). Each input folder's
 *              images come in byte-wise sorted path order (independent of the
 *              file system's listing order), so the shards are deterministic.
 *              Names starting with '.' are ignored; symlinks to files are
 *              followed, symlinks to folders are not (no cycles). An image
 *              without its x.txt is an item skipped as "missing file"; a
 *              folder without any image is a fatal error.
 * Inputs are brace-expanded (brace.h); several inputs are read in order.
 *
 * Items come out in input order, numbered from 0 (item->index); problems
 * that belong to one item (missing caption member, bad caption) are reported
 * in the item (skip reason + message) so the caller counts them; problems that
 * make the whole run meaningless (no such table, bad IDX header, label
 * outside the classes) are fatal: source_next returns -1 with one line in err.
 *
 * Ownership: source_open returns a Source released by source_close;
 * source_next fills a caller SourceItem whose buffers it owns until the next
 * source_item_free (call it once per filled item). */
#ifndef FLIP_SOURCES_H
#define FLIP_SOURCES_H

#include <stddef.h>
#include <stdint.h>

typedef enum { SOURCE_CSV = 0, SOURCE_TSV, SOURCE_TAR, SOURCE_IDX, SOURCE_FOLDER } SourceKind;

/* Why an item is skipped (the summary's categories). */
typedef enum {
    SKIP_NONE = 0,
    SKIP_UNREADABLE,    /* image exists but cannot be read (I/O error, a directory, truncated tar member) */
    SKIP_CORRUPT,       /* not a decodable JPEG/PNG, or too large */
    SKIP_EMPTY_CAPTION, /* caption missing or only whitespace */
    SKIP_BAD_UTF8,      /* caption is not valid UTF-8 */
    SKIP_MISSING,       /* image file (or tar member) does not exist */
    SKIP_N_REASONS
} SkipReason;

const char *skip_reason_name(SkipReason r); /* "unreadable image", ... */

typedef struct {
    SourceKind kind;
    const char *const *inputs; /* (n_inputs) paths, brace patterns allowed */
    int n_inputs;
    /* idx only */
    const char *labels_path;    /* required */
    const char *classes_path;   /* required: one class name per line */
    const char *templates_path; /* NULL: the single template "a photo of a {}." */
    uint64_t template_seed;
    /* 1: do not read image data (tar members skipped, idx pixels not copied):
     * a fast pass over the captions for vocabulary learning */
    int captions_only;
} SourceConfig;

typedef struct {
    long index;          /* 0, 1, 2, ... in input order */
    char name[512];      /* for warnings: "table.csv:12 (img/a.jpg)", "a.tar:000123", "file.idx#5" */
    char *path;          /* csv/tsv/folder: the image file to read (owned), else NULL */
    uint8_t *data;       /* tar: image member bytes; idx: raw pixels (owned) */
    size_t n_bytes;
    int raw_w, raw_h, raw_c; /* idx: data holds raw (raw_h, raw_w, raw_c) pixels; 0 otherwise */
    char *caption;       /* UTF-8, NUL-terminated (owned); NULL if missing */
    size_t caption_bytes;
    int32_t label;       /* idx: class label; -1 otherwise */
    SkipReason skip;     /* SKIP_NONE, or a problem found while reading */
    char reason[256];    /* one line when skip != SKIP_NONE */
    size_t bytes_in;     /* bytes of the input this item consumed (image + caption) */
} SourceItem;

typedef struct Source Source;

/* NULL + one-line err on a bad configuration (no inputs, missing idx files,
 * unreadable classes/templates, a template without "{}"). */
Source *source_open(const SourceConfig *cfg, char *err, size_t err_bytes);
/* 1: an item was filled; 0: end of input; -1: fatal error (err). */
int source_next(Source *s, SourceItem *item, char *err, size_t err_bytes);
void source_item_free(SourceItem *item);
void source_close(Source *s);
/* Fraction of the input consumed so far, in [0, 1] (by bytes for csv/tsv/tar,
 * by samples for idx and folder): for progress lines and ETAs. Same thread as source_next. */
double source_fraction(const Source *s);
/* folder: number of images found (items to come in total); -1 for other kinds. */
long source_n_items(const Source *s);
/* Number of expanded input files (folders for --source folder) and their
 * names (valid until source_close). */
int source_n_files(const Source *s);
const char *source_file(const Source *s, int i);
/* idx: number of classes and class name i (NULL otherwise). */
int source_n_classes(const Source *s);
const char *source_class_name(const Source *s, int i);

/* Helpers shared with flip-prep and the tests. */
int source_kind_parse(const char *name, SourceKind *kind); /* 0 ok, -1 unknown */
const char *source_kind_name(SourceKind kind);
/* 1 if s[0..n) is valid UTF-8 (no overlongs, surrogates or > U+10FFFF) */
int source_utf8_valid(const char *s, size_t n);
/* 1 if s[0..n) has a non-whitespace byte */
int source_text_nonblank(const char *s, size_t n);
/* Reads a whole file (n_bytes + 1 allocated, NUL-terminated). Returns NULL and
 * sets *errno_out (ENOENT for a missing file) on failure. */
uint8_t *source_read_file(const char *path, size_t *n_bytes, int *errno_out);

#endif

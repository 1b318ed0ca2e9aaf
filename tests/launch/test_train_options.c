/* test_train_options.c — flip-train / flip-eval flag parsing (launch/options.c):
 * defaults, --flag VALUE and --flag=VALUE, --config FILE with flags taking
 * precedence wherever --config appears, the resolved config text re-read by
 * --config gives the same options (doubles round-trip exactly), and every
 * kind of bad input returns -1 with one line naming the flag or file:line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "options.h"
#include "testlib.h"

static int parse(Options *o, OptProg prog, char *err, size_t eb, int argc, const char **argv) {
    options_defaults(o);
    err[0] = '\0';
    return options_parse(o, prog, argc, (char **)argv, err, eb);
}

#define ARGV(...) ((const char *[]){"flip-train", __VA_ARGS__})
#define NARGS(...) ((int)(sizeof((const char *[]){"flip-train", __VA_ARGS__}) / sizeof(const char *)))
#define PARSE(o, prog, err, ...) parse(o, prog, err, sizeof err, NARGS(__VA_ARGS__), ARGV(__VA_ARGS__))

static void expect_error(const char *want, int argc, const char **argv) {
    Options o;
    char err[2048];
    int rc = parse(&o, OPT_PROG_TRAIN, err, sizeof err, argc, argv);
    TEST_CHECK(rc == -1 && strstr(err, want) != NULL && strchr(err, '\n') == NULL,
               "error for '%s ...': rc %d, '%s' contains '%s'", argv[argc - 2], rc, err, want);
}
#define EXPECT_ERROR(want, ...) expect_error(want, NARGS(__VA_ARGS__), ARGV(__VA_ARGS__))

int main(void) {
    Options o;
    char err[2048];
    int rc = PARSE(&o, OPT_PROG_TRAIN, err, "--train-data", "d", "--batch-size", "8", "--epochs", "2",
                   "--lr=3e-4", "--seed", "18446744073709551615", "--mask-ratio", "0.75");
    TEST_CHECK(rc == 0 && o.batch_size == 8 && o.epochs == 2 && o.lr == 3e-4 && o.mask_ratio == 0.75 &&
               o.seed == UINT64_MAX && strcmp(o.train_data, "d") == 0 && o.beta2 == 0.95 && o.eps == 1e-6,
               "flags and --flag=value parsed, defaults kept (rc %d: %s)", rc, err);

    /* config file; flags override it whether given before or after --config */
    char cfg[] = "/tmp/flip_test_options_XXXXXX";
    int fd = mkstemp(cfg);
    FLIP_CHECK(fd >= 0, "mkstemp");
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# a comment\ntrain_data = shards/{000..009}.h5\n\n--lr = 1e-3   # trailing comment\n"
               "batch-size = 16\nepochs = 3\nwarmup = 7\n");
    fclose(f);
    rc = PARSE(&o, OPT_PROG_TRAIN, err, "--lr", "2e-3", "--config", cfg, "--warmup", "9", "--width", "64",
               "--text-heads", "2", "--patch-size", "8");
    TEST_CHECK(rc == 0 && o.width == 64 && o.text_heads == 2 && o.patch_size == 8 && o.depth == 0,
               "model size flags parsed, unset ones stay 0 (the preset's) (rc %d: %s)", rc, err);
    TEST_CHECK(rc == 0 && o.lr == 2e-3 && o.warmup == 9 && o.batch_size == 16 && o.epochs == 3 &&
                   strcmp(o.train_data, "shards/{000..009}.h5") == 0,
               "--config read; flags before and after it override (rc %d: %s)", rc, err);

    /* the resolved text is a config file that gives back the same options */
    char text[16384], text2[16384];
    options_format(&o, OPT_PROG_TRAIN, text, sizeof text);
    f = fopen(cfg, "w");
    fputs(text, f);
    fclose(f);
    Options o2;
    rc = PARSE(&o2, OPT_PROG_TRAIN, err, "--config", cfg);
    options_format(&o2, OPT_PROG_TRAIN, text2, sizeof text2);
    TEST_CHECK(rc == 0 && strcmp(text, text2) == 0 && memcmp(&o, &o2, sizeof o) == 0 && strstr(text, "\nwidth = 64\n") &&
                   strstr(text, "\npatch-size = 8\n"),
               "options_format -> --config round trip is exact (size flags included)");

    f = fopen(cfg, "w");
    fprintf(f, "lr = 1e-3\nbatch-size = 8\nepochs\n");
    fclose(f);
    char where[256];
    snprintf(where, sizeof where, "%s:3: expected 'key = value'", cfg);
    EXPECT_ERROR(where, "--train-data", "d", "--config", cfg);
    f = fopen(cfg, "w");
    fprintf(f, "checkpoint = x.h5\n");
    fclose(f);
    snprintf(where, sizeof where, "%s:1: unknown key 'checkpoint'", cfg); /* an eval-only key */
    EXPECT_ERROR(where, "--train-data", "d", "--config", cfg);
    unlink(cfg);
    EXPECT_ERROR("--config /nonexistent/x.cfg: cannot open", "--config", "/nonexistent/x.cfg");

    EXPECT_ERROR("--lr: expected a number, got '1e-3x'", "--train-data", "d", "--batch-size", "8", "--epochs", "1", "--lr", "1e-3x");
    EXPECT_ERROR("--lr: expected a number, got 'nan'", "--train-data", "d", "--batch-size", "8", "--epochs", "1", "--lr", "nan");
    EXPECT_ERROR("--batch-size: expected an integer, got '8.5'", "--train-data", "d", "--batch-size", "8.5");
    EXPECT_ERROR("--batch-size: -4 is out of range", "--train-data", "d", "--batch-size", "-4");
    EXPECT_ERROR("--mask-ratio: 1 is out of range [0, 0.99]", "--train-data", "d", "--mask-ratio", "1");
    EXPECT_ERROR("--seed: expected a non-negative integer, got '-1'", "--train-data", "d", "--seed", "-1");
    EXPECT_ERROR("--log-every: 0 is out of range", "--train-data", "d", "--log-every", "0");
    EXPECT_ERROR("--heads: -2 is out of range [0, 16384]", "--train-data", "d", "--heads", "-2");
    EXPECT_ERROR("--save-keep: 0 is out of range", "--train-data", "d", "--save-keep", "0");
    EXPECT_ERROR("--name: empty value", "--train-data", "d", "--name", "");
    EXPECT_ERROR("--epochs: missing value", "--train-data", "d", "--epochs");
    EXPECT_ERROR("--checkpoint: unknown flag", "--train-data", "d", "--checkpoint", "x.h5");
    EXPECT_ERROR("unexpected argument 'extra'", "--train-data", "d", "extra", "x");
    EXPECT_ERROR("--train-data: required", "--batch-size", "8", "--epochs", "1");
    EXPECT_ERROR("--epochs and --train-samples: give only one", "--train-data", "d", "--batch-size", "8", "--epochs",
                 "1", "--train-samples", "100");
    EXPECT_ERROR("--precision: unknown 'fp16'", "--train-data", "d", "--batch-size", "8", "--epochs", "1",
                 "--precision", "fp16");
    EXPECT_ERROR("--lr-scheduler const-cooldown: needs --cooldown-steps", "--train-data", "d", "--batch-size", "8",
                 "--epochs", "1", "--lr-scheduler", "const-cooldown");
    EXPECT_ERROR("--min-lr: 0.1 is above --lr", "--train-data", "d", "--batch-size", "8", "--epochs", "1", "--min-lr", "0.1");
    EXPECT_ERROR("--channels: 2 is not 1 or 3", "--train-data", "d", "--batch-size", "8", "--epochs", "1", "--channels", "2");

    rc = PARSE(&o, OPT_PROG_TRAIN, err, "--train-data", "d", "--help");
    TEST_CHECK(rc == 1, "--help returns 1 (rc %d)", rc);
    /* the help text (stdout captured) says plainly that a --max-minutes run is
     * not rank-count invariant, and lists the model size flags */
    {
        FILE *tf = tmpfile();
        FLIP_CHECK(tf != NULL, "tmpfile");
        fflush(stdout);
        int saved = dup(1);
        FLIP_CHECK(saved >= 0 && dup2(fileno(tf), 1) >= 0, "dup2");
        options_help(OPT_PROG_TRAIN, "flip-train");
        fflush(stdout);
        FLIP_CHECK(dup2(saved, 1) >= 0, "dup2 back");
        close(saved);
        static char help[65536];
        rewind(tf);
        size_t n = fread(help, 1, sizeof help - 1, tf);
        help[n] = '\0';
        fclose(tf);
        const char *mm = strstr(help, "--max-minutes");
        const char *eol = mm ? strchr(mm, '\n') : NULL;
        int plain = mm && eol && strstr(mm, "NOT reproducible") && strstr(mm, "rank counts") &&
                    strstr(mm, "NOT reproducible") < eol && strstr(mm, "rank counts") < eol;
        TEST_CHECK(plain, "--help: --max-minutes says its run length differs across rank counts");
        int sizes = 1;
        const char *flags[] = {"--width", "--depth", "--heads", "--text-width", "--text-depth", "--text-heads",
                               "--embed-dim", "--patch-size"};
        for (int i = 0; i < 8; i++) sizes &= strstr(help, flags[i]) != NULL;
        TEST_CHECK(sizes, "--help lists the model size flags");
    }
    rc = PARSE(&o, OPT_PROG_EVAL, err, "--checkpoint", "c.h5", "--val-data", "v", "--threads", "2");
    TEST_CHECK(rc == 0 && strcmp(o.checkpoint, "c.h5") == 0 && o.threads == 2, "flip-eval flags (rc %d: %s)", rc, err);
    rc = PARSE(&o, OPT_PROG_EVAL, err, "--checkpoint", "c.h5", "--val-data", "v", "--lr", "1");
    TEST_CHECK(rc == -1 && strstr(err, "--lr: unknown flag"), "flip-eval rejects training flags: %s", err);
    rc = PARSE(&o, OPT_PROG_EVAL, err, "--val-data", "v");
    TEST_CHECK(rc == -1 && strstr(err, "--checkpoint: required"), "flip-eval needs --checkpoint: %s", err);
    return test_finish();
}

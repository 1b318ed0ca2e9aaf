/* prog_mkimage.c — writes a test image for tests/launch/test_prep.sh (no binary
 * fixtures are committed).
 *   launch_prog_mkimage OUT.png|OUT.jpg W H R G B
 * A solid (R, G, B) image; .jpg is written at quality 100 with 4:4:4 sampling,
 * so it decodes to within a few levels of the colour. */
#include "dataset/imgwrite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s OUT.png|OUT.jpg W H R G B\n", argv[0]);
        return 2;
    }
    int w = atoi(argv[2]), h = atoi(argv[3]);
    int rgb[3] = {atoi(argv[4]), atoi(argv[5]), atoi(argv[6])};
    if (w <= 0 || h <= 0 || w > 4096 || h > 4096) {
        fprintf(stderr, "%s: bad size %s x %s\n", argv[0], argv[2], argv[3]);
        return 2;
    }
    uint8_t *px = malloc((size_t)w * h * 3);
    if (!px) return 2;
    for (size_t i = 0; i < (size_t)w * h; i++)
        for (int c = 0; c < 3; c++) px[3 * i + c] = (uint8_t)rgb[c];
    const char *dot = strrchr(argv[1], '.');
    MemBuf b;
    if (dot && strcmp(dot, ".png") == 0) b = imgw_png(px, w, h, PNG_COLOR_TYPE_RGB, 8, NULL, 0, 0);
    else b = imgw_jpeg(px, w, h, 3, JCS_RGB, 100);
    int rc = imgw_save(argv[1], &b);
    free(b.data);
    free(px);
    if (rc != 0) fprintf(stderr, "%s: cannot write %s\n", argv[0], argv[1]);
    return rc ? 1 : 0;
}

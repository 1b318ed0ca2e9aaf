/* main_flip_prep.c — the flip-prep executable (logic in launch/prep.c). */
#include "prep.h"

int main(int argc, char **argv) { return prep_main(argc, argv); }

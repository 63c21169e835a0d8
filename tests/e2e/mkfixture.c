/* mkfixture.c - writes small test images for the end-to-end tests:
 *   mkfixture PATH.tif W H [SEED]   an 8-bit grey TIFF with a lattice-like pattern
 * (PNG/JPEG variants are covered by the io unit tests). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <tiffio.h>

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: mkfixture PATH.tif W H [SEED]\n");
    return 2;
  }
  int w = atoi(argv[2]), h = atoi(argv[3]), seed = argc > 4 ? atoi(argv[4]) : 0;
  TIFF *t = TIFFOpen(argv[1], "w");
  if (!t) return 1;
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1);
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, h);
  uint8_t *row = malloc((size_t)w);
  for (int y = 0; y < h; y++) {
    for (int x = 0; x < w; x++)
      row[x] = (uint8_t)(100 + 60 * cos(0.7 * x + seed) * cos(0.7 * y) + (seed * 7 + x * y) % 13);
    TIFFWriteScanline(t, row, (uint32_t)y, 0);
  }
  free(row);
  TIFFClose(t);
  return 0;
}

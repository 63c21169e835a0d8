/* fft.c - a small radix-2 complex FFT (1-D and 2-D) and the DFT of a real image at one
 * continuous frequency: all the Fourier analysis the lattice model needs (no FFTW in the
 * required stack). */
#include <math.h>
#include <string.h>

#include "stemdefect/lattice.h"

int sd_fft_next_pow2(int n) {
  int p = 1;
  while (p < n)
    p <<= 1;
  return p;
}

sd_status sd_fft_1d(double *data, int n, int inverse) {
  if (n < 1 || (n & (n - 1)))
    return SD_ERROR(SD_ERR_ARG, "FFT length %d is not a power of two", n);
  /* bit reversal */
  for (int i = 1, j = 0; i < n; i++) {
    int bit = n >> 1;
    for (; j & bit; bit >>= 1)
      j ^= bit;
    j ^= bit;
    if (i < j) {
      double tr = data[2 * i], ti = data[2 * i + 1];
      data[2 * i] = data[2 * j];
      data[2 * i + 1] = data[2 * j + 1];
      data[2 * j] = tr;
      data[2 * j + 1] = ti;
    }
  }
  const double sign = inverse ? 1.0 : -1.0;
  for (int len = 2; len <= n; len <<= 1) {
    double ang = sign * 2.0 * M_PI / len;
    double wr = cos(ang), wi = sin(ang);
    for (int i = 0; i < n; i += len) {
      double cr = 1.0, ci = 0.0;
      for (int k = 0; k < len / 2; k++) {
        double *a = data + 2 * (i + k), *b = data + 2 * (i + k + len / 2);
        double br = b[0] * cr - b[1] * ci, bi = b[0] * ci + b[1] * cr;
        b[0] = a[0] - br;
        b[1] = a[1] - bi;
        a[0] += br;
        a[1] += bi;
        double ncr = cr * wr - ci * wi;
        ci = cr * wi + ci * wr;
        cr = ncr;
      }
    }
  }
  if (inverse)
    for (int i = 0; i < 2 * n; i++)
      data[i] /= n;
  return SD_OK;
}

sd_status sd_fft_2d(double *data, int ny, int nx, int inverse, double *scratch) {
  for (int y = 0; y < ny; y++)
    SD_CHECK(sd_fft_1d(data + (size_t)2 * y * nx, nx, inverse));
  for (int x = 0; x < nx; x++) {
    for (int y = 0; y < ny; y++) {
      scratch[2 * y] = data[((size_t)y * nx + x) * 2];
      scratch[2 * y + 1] = data[((size_t)y * nx + x) * 2 + 1];
    }
    SD_CHECK(sd_fft_1d(scratch, ny, inverse));
    for (int y = 0; y < ny; y++) {
      data[((size_t)y * nx + x) * 2] = scratch[2 * y];
      data[((size_t)y * nx + x) * 2 + 1] = scratch[2 * y + 1];
    }
  }
  return SD_OK;
}

void sd_dft_at(const float *img, int h, int w, double fx, double fy, double *tw, double *re,
               double *im) {
  for (int x = 0; x < w; x++) {
    double a = -2.0 * M_PI * fx * x;
    tw[2 * x] = cos(a);
    tw[2 * x + 1] = sin(a);
  }
  double sr = 0, si = 0;
  for (int y = 0; y < h; y++) {
    const float *row = img + (size_t)y * w;
    double rr = 0, ri = 0;
    for (int x = 0; x < w; x++) {
      rr += row[x] * tw[2 * x];
      ri += row[x] * tw[2 * x + 1];
    }
    double a = -2.0 * M_PI * fy * y, c = cos(a), s = sin(a);
    sr += rr * c - ri * s;
    si += rr * s + ri * c;
  }
  *re = sr;
  *im = si;
}

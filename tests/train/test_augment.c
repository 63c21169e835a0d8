/* test_augment.c - the 8 dihedral transforms form the symmetry group of the square, shifts
 * reflect at the borders, masks follow images, metrics against hand-computed values. */
#include <string.h>

#include "app/classify_common.h"
#include "sd_test.h"
#include "stemdefect/augment.h"

int main(void) {
  enum { S = 5 };
  float img[S * S], out[S * S], back[S * S], tmp[S * S];
  for (int i = 0; i < S * S; i++) img[i] = (float)i;
  /* 8 distinct images */
  float all[8][S * S];
  for (int t = 0; t < 8; t++) sd_dihedral(img, all[t], S, t);
  int distinct = 1;
  for (int a = 0; a < 8; a++)
    for (int b = a + 1; b < 8; b++) distinct &= memcmp(all[a], all[b], sizeof all[a]) != 0;
  SD_EXPECT(distinct);
  /* rotation by 90 degrees: four times is the identity; mirror twice is the identity */
  memcpy(out, img, sizeof img);
  for (int k = 0; k < 4; k++) {
    sd_dihedral(out, tmp, S, 1);
    memcpy(out, tmp, sizeof tmp);
  }
  SD_EXPECT(memcmp(out, img, sizeof img) == 0);
  sd_dihedral(img, tmp, S, 4);
  sd_dihedral(tmp, back, S, 4);
  SD_EXPECT(memcmp(back, img, sizeof img) == 0);
  /* a rotation moves the corner (0,0) to another corner, the centre stays */
  SD_EXPECT(all[1][(S / 2) * S + S / 2] == img[(S / 2) * S + S / 2]);
  float c = all[1][0];
  SD_EXPECT(c == img[S - 1] || c == img[(S - 1) * S] || c == img[S * S - 1]);
  /* every transform is a permutation */
  for (int t = 0; t < 8; t++) {
    int seen[S * S] = {0};
    for (int i = 0; i < S * S; i++) seen[(int)all[t][i]]++;
    int perm = 1;
    for (int i = 0; i < S * S; i++) perm &= seen[i] == 1;
    SD_EXPECT(perm);
  }
  /* shift with reflection */
  sd_shift_reflect(img, out, S, S, 0, 1);
  SD_EXPECT(out[1] == img[0] && out[0] == img[1]);
  sd_shift_reflect(img, out, S, S, 2, 0);
  SD_EXPECT(out[2 * S] == img[0] && out[0] == img[2 * S]);
  /* a mask follows the image through a full augmentation */
  sd_augment_params p = {1, 2, 0, 0, 0};
  uint8_t mask[S * S], ms[S * S];
  for (int i = 0; i < S * S; i++) mask[i] = (uint8_t)i;
  sd_rng r;
  for (int trial = 0; trial < 20; trial++) {
    float im[S * S], sc[S * S];
    memcpy(im, img, sizeof img);
    uint8_t mk[S * S];
    memcpy(mk, mask, sizeof mask);
    sd_rng_init(&r, 9, (uint64_t)trial, SD_RNG_STREAM_AUGMENT);
    sd_augment_apply(&p, &r, im, S, sc, mk, ms);
    int same = 1;
    for (int i = 0; i < S * S; i++) same &= (int)im[i] == mk[i];
    SD_EXPECT(same);
  }
  /* metrics: 2 classes, hand-computed */
  int32_t truth[6] = {0, 0, 0, 1, 1, 1}, pred[6] = {0, 0, 1, 1, 1, 0};
  sd_classify_metrics m;
  sd_classify_metrics_compute(truth, pred, 6, 2, &m);
  SD_EXPECT_NEAR(m.accuracy, 4.0 / 6.0, 1e-12);
  SD_EXPECT_NEAR(m.precision[0], 2.0 / 3.0, 1e-12);
  SD_EXPECT_NEAR(m.recall[1], 2.0 / 3.0, 1e-12);
  SD_EXPECT_NEAR(m.macro_f1, 2.0 / 3.0, 1e-12);
  SD_EXPECT(m.confusion[0][1] == 1 && m.confusion[1][0] == 1 && m.support[1] == 3);
  return sd_test_finish("test_augment");
}

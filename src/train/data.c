/* data.c - loading the images of one split part onto the ranks (training shards or an even
 * split), with per-image normalisation. */
#include <stdlib.h>
#include <string.h>

#include "stemdefect/image.h"
#include "stemdefect/par.h"
#include "stemdefect/profile.h"
#include "stemdefect/train.h"

void sd_train_data_free(sd_train_data *d) {
  if (!d) return;
  free(d->images);
  free(d->labels);
  free(d->masks);
  free(d->index);
  free(d->shard_id);
  free(d->shard_first);
  free(d->shard_count);
  memset(d, 0, sizeof *d);
}

/* Reads stack images [lo, hi) (collectively; some ranks may read nothing) and keeps those
 * listed in want[0..nwant) (sorted stack indices within [lo, hi)) at dst offset. */
static sd_status read_range(MPI_Comm comm, sd_stack *s, int64_t lo, int64_t hi, const int64_t *want,
                            int64_t nwant, sd_train_data *d, int64_t dst, int with_masks,
                            int normalize) {
  const sd_stack_info *in = sd_stack_get_info(s);
  size_t npx = (size_t)in->height * in->width;
  int64_t count = hi - lo;
  float *img = sd_malloc((size_t)(count > 0 ? count : 1) * npx, sizeof *img, "image range");
  int32_t *lab = sd_malloc((size_t)(count > 0 ? count : 1), sizeof *lab, "label range");
  uint8_t *msk = with_masks ? sd_malloc((size_t)(count > 0 ? count : 1) * npx, 1, "mask range") : NULL;
  sd_status st = (img && lab && (!with_masks || msk)) ? SD_OK : SD_ERR_NOMEM;
  st = sd_par_agree(comm, st);
  if (st == SD_OK) {
    double t = sd_profile_phase_begin();
    st = sd_stack_read(s, lo, count, img, lab, msk);
    sd_profile_phase_end(SD_PHASE_IO, t);
    sd_profile_add_bytes(SD_PHASE_IO, count * (int64_t)npx * 4);
  }
  float *scratch = NULL;
  if (st == SD_OK && normalize && nwant > 0) {
    scratch = sd_malloc(npx, sizeof *scratch, "scratch");
    if (!scratch) st = SD_ERR_NOMEM;
  }
  for (int64_t k = 0; st == SD_OK && k < nwant; k++) {
    int64_t i = want[k] - lo;
    memcpy(d->images + (size_t)(dst + k) * npx, img + (size_t)i * npx, npx * sizeof *img);
    if (normalize) st = sd_normalize_robust(d->images + (size_t)(dst + k) * npx, npx, scratch);
    d->labels[dst + k] = lab[i];
    d->index[dst + k] = want[k];
    if (with_masks) memcpy(d->masks + (size_t)(dst + k) * npx, msk + (size_t)i * npx, npx);
  }
  free(scratch);
  free(img);
  free(lab);
  free(msk);
  return st;
}

sd_status sd_train_data_load(MPI_Comm comm, sd_stack *stack, const int8_t *part, int8_t which,
                             int shards, int normalize_robust, int with_masks,
                             sd_train_data *out) {
  memset(out, 0, sizeof *out);
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  const sd_stack_info *in = sd_stack_get_info(stack);
  out->h = in->height;
  out->w = in->width;
  out->channels = 1;
  if (with_masks && !in->has_masks)
    return SD_ERROR(SD_ERR_ARG, "the stack has no /masks to train on");
  /* the sorted global list of this part */
  int64_t np = 0;
  for (int64_t i = 0; i < in->n; i++) np += part[i] == which;
  out->n_global = np;
  int64_t *list = sd_malloc((size_t)(np > 0 ? np : 1), sizeof *list, "part list");
  if (!list) return SD_ERR_NOMEM;
  for (int64_t i = 0, k = 0; i < in->n; i++)
    if (part[i] == which) list[k++] = i;

  /* which slices of list this rank holds: one per local shard (or one even block) */
  int S = shards > 0 ? shards : size;
  if (shards > 0 && S < size) {
    free(list);
    return SD_ERROR(SD_ERR_ARG, "%d data shards cannot be spread over %d ranks (need >= ranks)", S, size);
  }
  int nloc = 0;
  for (int s = 0; s < S; s++) nloc += (s % size) == rank;
  if (shards == 0) nloc = 1; /* shard s == rank */
  out->num_shards = S;
  out->num_local = nloc;
  out->shard_id = sd_calloc((size_t)nloc + 1, sizeof *out->shard_id, "shards");
  out->shard_first = sd_calloc((size_t)nloc + 1, sizeof *out->shard_first, "shards");
  out->shard_count = sd_calloc((size_t)nloc + 1, sizeof *out->shard_count, "shards");
  sd_status st = (out->shard_id && out->shard_first && out->shard_count) ? SD_OK : SD_ERR_NOMEM;
  int64_t total = 0, min_shard = np;
  for (int s = 0, j = 0; s < S; s++) {
    int64_t f, c;
    sd_shard_range(np, s, S, &f, &c);
    if (c < min_shard) min_shard = c;
    int mine = shards > 0 ? (s % size) == rank : s == rank;
    if (mine && st == SD_OK) {
      out->shard_id[j] = s;
      out->shard_first[j] = total;
      out->shard_count[j] = c;
      total += c;
      j++;
    }
  }
  out->min_shard = min_shard;
  out->n = total;
  size_t npx = (size_t)out->h * out->w;
  if (st == SD_OK) {
    out->images = sd_malloc((size_t)(total > 0 ? total : 1) * npx, sizeof *out->images, "training images");
    out->labels = sd_malloc((size_t)(total > 0 ? total : 1), sizeof *out->labels, "training labels");
    out->index = sd_malloc((size_t)(total > 0 ? total : 1), sizeof *out->index, "training indices");
    out->masks = with_masks ? sd_malloc((size_t)(total > 0 ? total : 1) * npx, 1, "training masks") : NULL;
    if (!out->images || !out->labels || !out->index || (with_masks && !out->masks)) st = SD_ERR_NOMEM;
  }
  st = sd_par_agree(comm, st);
  /* every rank makes the same number of collective reads: one per local shard slot */
  int64_t rounds = nloc;
  if (st == SD_OK) st = sd_par_allreduce_max_i64(comm, &rounds, 1);
  for (int64_t r = 0; st == SD_OK && r < rounds; r++) {
    int64_t lo = 0, hi = 0, nwant = 0, dst = 0;
    const int64_t *want = NULL;
    if (r < nloc && out->shard_count[r] > 0) {
      int64_t f, c;
      sd_shard_range(np, out->shard_id[r], S, &f, &c);
      want = list + f;
      nwant = c;
      lo = want[0];
      hi = want[c - 1] + 1;
      dst = out->shard_first[r];
    }
    st = read_range(comm, stack, lo, hi, want, nwant, out, dst, with_masks, normalize_robust);
    st = sd_par_agree(comm, st);
  }
  free(list);
  if (st != SD_OK) sd_train_data_free(out);
  return st;
}

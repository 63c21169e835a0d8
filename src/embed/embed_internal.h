/* embed_internal.h - helpers shared by the files of the embed module (not public). */
#ifndef STEMDEFECT_EMBED_INTERNAL_H
#define STEMDEFECT_EMBED_INTERNAL_H

#include <stdint.h>

/* Exponent e such that n terms each rounded from |x| <= bound times 2^e sum below 2^61. */
int sd_tsne_fixed_exponent(double bound, int64_t n);
/* The rank owning global row j under sd_shard_range(n, ., size). */
int sd_tsne_owner(int64_t n, int size, int64_t j);

#endif

/* tsne_tree.c - the Barnes-Hut quadtree of t-SNE.
 *
 * Built every iteration over all points (each rank builds the same tree from the same
 * gathered embedding): points get 64-bit Morton codes of their position in the square
 * bounding box (32 bits per axis), are radix-sorted by (code, index), and the tree is laid
 * out in depth-first order from the sorted ranges. Each node knows its centre of mass, its
 * squared side, its point count, its first sorted position and the index of the node after
 * its subtree, so the force traversal is a loop without a stack: accept a cell (jump past
 * its subtree) or descend (go to the next node). Points whose codes coincide (closer than
 * 2^-32 of the box) share one leaf and interact one by one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/tsne.h"

typedef struct tnode {
  double cx, cy; /* centre of mass */
  double w2;     /* squared side of the cell */
  int32_t count; /* points below */
  int32_t next;  /* index of the node after this subtree */
  int32_t lo;    /* first sorted position of its points */
  int32_t leaf;
} tnode;

struct sd_tsne_tree {
  int64_t cap, n;
  int64_t node_cap, nnodes;
  tnode *nodes;
  uint64_t *code, *code2; /* [cap] sorted codes and radix scratch */
  int32_t *order, *order2; /* [cap] sorted position -> point */
  int32_t *pos;            /* [cap] point -> sorted position */
  double *ys;              /* [cap, 2] positions in sorted order */
  double root_w;
};

void sd_tsne_tree_destroy(sd_tsne_tree **t) {
  if (!t || !*t) return;
  sd_tsne_tree *x = *t;
  free(x->nodes);
  free(x->code);
  free(x->code2);
  free(x->order);
  free(x->order2);
  free(x->pos);
  free(x->ys);
  free(x);
  *t = NULL;
}

static sd_status tree_reserve(sd_tsne_tree *t, int64_t cap) {
  if (cap <= t->cap) return SD_OK;
  if (cap > INT32_MAX / 4) return SD_ERROR(SD_ERR_ARG, "t-SNE tree: %lld points is too many", (long long)cap);
  void *p;
#define GROW(field, n)                                                                             \
  p = sd_realloc(t->field, (size_t)(n), sizeof *t->field, "t-SNE tree");                         \
  if (!p) return SD_ERR_NOMEM;                                                                     \
  t->field = p;
  GROW(code, cap)
  GROW(code2, cap)
  GROW(order, cap)
  GROW(order2, cap)
  GROW(pos, cap)
  GROW(ys, 2 * cap)
#undef GROW
  t->cap = cap;
  return SD_OK;
}

sd_status sd_tsne_tree_create(int64_t capacity, sd_tsne_tree **out) {
  *out = NULL;
  sd_tsne_tree *t = sd_calloc(1, sizeof *t, "t-SNE tree");
  if (!t) return SD_ERR_NOMEM;
  sd_status st = tree_reserve(t, capacity > 1 ? capacity : 1);
  if (st == SD_OK) {
    t->node_cap = 2 * t->cap + 16;
    t->nodes = sd_malloc((size_t)t->node_cap, sizeof *t->nodes, "t-SNE tree nodes");
    if (!t->nodes) st = SD_ERR_NOMEM;
  }
  if (st != SD_OK) {
    sd_tsne_tree_destroy(&t);
    return st;
  }
  *out = t;
  return SD_OK;
}

/* spreads the 32 bits of v to the even bits of the result */
static inline uint64_t spread_bits(uint64_t v) {
  v &= 0xffffffffULL;
  v = (v | (v << 16)) & 0x0000ffff0000ffffULL;
  v = (v | (v << 8)) & 0x00ff00ff00ff00ffULL;
  v = (v | (v << 4)) & 0x0f0f0f0f0f0f0f0fULL;
  v = (v | (v << 2)) & 0x3333333333333333ULL;
  v = (v | (v << 1)) & 0x5555555555555555ULL;
  return v;
}

/* stable LSD radix sort of (code, order) by code, 8 passes of 8 bits */
static void radix_sort(sd_tsne_tree *t, int64_t n) {
  uint64_t *a = t->code, *b = t->code2;
  int32_t *oa = t->order, *ob = t->order2;
  for (int pass = 0; pass < 8; pass++) {
    int shift = pass * 8;
    int64_t hist[256] = {0};
    for (int64_t i = 0; i < n; i++) hist[(a[i] >> shift) & 255]++;
    if (hist[(a[0] >> shift) & 255] == n) continue; /* all equal in this digit */
    int64_t off = 0;
    for (int d = 0; d < 256; d++) {
      int64_t c = hist[d];
      hist[d] = off;
      off += c;
    }
    for (int64_t i = 0; i < n; i++) {
      int64_t p = hist[(a[i] >> shift) & 255]++;
      b[p] = a[i];
      ob[p] = oa[i];
    }
    uint64_t *tc = a;
    a = b;
    b = tc;
    int32_t *to = oa;
    oa = ob;
    ob = to;
  }
  if (a != t->code) {
    memcpy(t->code, a, (size_t)n * sizeof *a);
    memcpy(t->order, oa, (size_t)n * sizeof *oa);
  }
}

/* first position in [lo, hi) whose quadrant digit at level is >= q (codes sorted) */
static int64_t lower_quadrant(const uint64_t *code, int64_t lo, int64_t hi, int shift, uint64_t q) {
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (((code[mid] >> shift) & 3) < q) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* Emits the subtree of sorted range [lo, hi) at level in depth-first order; returns its
 * node index, or -1 when the node array cannot grow (SD_ERR_NOMEM raised). */
static int32_t build_node(sd_tsne_tree *t, int64_t lo, int64_t hi, int level, double w) {
  if (t->nnodes == t->node_cap) {
    int64_t want = 2 * t->node_cap + 64;
    void *p = sd_realloc(t->nodes, (size_t)want, sizeof *t->nodes, "t-SNE tree nodes");
    if (!p || want > INT32_MAX) return -1;
    t->nodes = p;
    t->node_cap = want;
  }
  int32_t id = (int32_t)t->nnodes++;
  tnode *nd = &t->nodes[id];
  nd->w2 = w * w;
  nd->count = (int32_t)(hi - lo);
  nd->lo = (int32_t)lo;
  if (hi - lo == 1 || level >= 32 || t->code[lo] == t->code[hi - 1]) {
    double sx = 0, sy = 0;
    for (int64_t s = lo; s < hi; s++) {
      sx += t->ys[2 * s];
      sy += t->ys[2 * s + 1];
    }
    nd->cx = sx / (double)(hi - lo);
    nd->cy = sy / (double)(hi - lo);
    nd->leaf = 1;
    nd->next = (int32_t)t->nnodes;
    return id;
  }
  nd->leaf = 0;
  int shift = 62 - 2 * level;
  int64_t b[5];
  b[0] = lo;
  b[4] = hi;
  for (uint64_t q = 1; q < 4; q++) b[q] = lower_quadrant(t->code, b[q - 1], hi, shift, q);
  double sx = 0, sy = 0;
  for (int q = 0; q < 4; q++) {
    if (b[q + 1] <= b[q]) continue;
    int32_t c = build_node(t, b[q], b[q + 1], level + 1, 0.5 * w);
    if (c < 0) return -1;
    const tnode *cn = &t->nodes[c];
    sx += cn->cx * (double)cn->count;
    sy += cn->cy * (double)cn->count;
  }
  nd = &t->nodes[id]; /* the array may have moved while the children were built */
  nd->cx = sx / (double)(hi - lo);
  nd->cy = sy / (double)(hi - lo);
  nd->next = (int32_t)t->nnodes;
  return id;
}

sd_status sd_tsne_tree_build(sd_tsne_tree *t, int64_t n, const double *y) {
  SD_CHECK(tree_reserve(t, n));
  if (t->node_cap < 2 * n + 16 || !t->nodes) {
    /* n leaves and < n branching nodes, plus chains of one-child nodes (grown on demand) */
    int64_t want = 3 * n + 64;
    void *p = sd_realloc(t->nodes, (size_t)want, sizeof *t->nodes, "t-SNE tree nodes");
    if (!p) return SD_ERR_NOMEM;
    t->nodes = p;
    t->node_cap = want;
  }
  t->n = n;
  t->nnodes = 0;
  if (n == 0) return SD_OK;
  double xmin = y[0], xmax = y[0], ymin = y[1], ymax = y[1];
  for (int64_t i = 1; i < n; i++) {
    double a = y[2 * i], b = y[2 * i + 1];
    if (a < xmin) xmin = a;
    if (a > xmax) xmax = a;
    if (b < ymin) ymin = b;
    if (b > ymax) ymax = b;
  }
  if (!isfinite(xmin) || !isfinite(xmax) || !isfinite(ymin) || !isfinite(ymax))
    return SD_ERROR(SD_ERR_INTERNAL, "t-SNE: the embedding holds non-finite values (diverged; try "
                                     "a smaller learning rate)");
  double w = xmax - xmin > ymax - ymin ? xmax - xmin : ymax - ymin;
  if (!(w > 0)) w = 1.0;
  w *= 1.0 + 1e-9;
  double scale = 4294967296.0 / w;
  for (int64_t i = 0; i < n; i++) {
    double fx = floor((y[2 * i] - xmin) * scale), fy = floor((y[2 * i + 1] - ymin) * scale);
    uint64_t qx = fx >= 4294967295.0 ? 4294967295ULL : (fx <= 0 ? 0 : (uint64_t)fx);
    uint64_t qy = fy >= 4294967295.0 ? 4294967295ULL : (fy <= 0 ? 0 : (uint64_t)fy);
    t->code[i] = (spread_bits(qx) << 1) | spread_bits(qy);
    t->order[i] = (int32_t)i;
  }
  radix_sort(t, n);
  for (int64_t s = 0; s < n; s++) {
    int32_t i = t->order[s];
    t->pos[i] = (int32_t)s;
    t->ys[2 * s] = y[2 * i];
    t->ys[2 * s + 1] = y[2 * i + 1];
  }
  t->root_w = w;
  if (build_node(t, 0, n, 0, w) < 0) return SD_ERR_NOMEM;
  return SD_OK;
}

void sd_tsne_tree_repulsion(const sd_tsne_tree *t, int64_t first, int64_t count, double theta,
                            double *neg, double *z) {
  const double theta2 = theta * theta;
  const tnode *nodes = t->nodes;
  const int32_t nnodes = (int32_t)t->nnodes;
  const double *ys = t->ys;
  for (int64_t q = 0; q < count; q++) {
    int64_t i = first + q;
    int32_t pi = t->pos[i];
    double xi = ys[2 * pi], yi = ys[2 * pi + 1];
    double fx = 0, fy = 0, zs = 0;
    int32_t nd = 0;
    while (nd < nnodes) {
      const tnode *c = &nodes[nd];
      if (c->leaf) {
        if (c->count == 1) {
          if (c->lo != pi) {
            double dx = xi - c->cx, dy = yi - c->cy;
            double w = 1.0 / (1.0 + dx * dx + dy * dy);
            zs += w;
            w *= w;
            fx += w * dx;
            fy += w * dy;
          }
        } else {
          for (int32_t s = c->lo; s < c->lo + c->count; s++) {
            if (s == pi) continue;
            double dx = xi - ys[2 * s], dy = yi - ys[2 * s + 1];
            double w = 1.0 / (1.0 + dx * dx + dy * dy);
            zs += w;
            w *= w;
            fx += w * dx;
            fy += w * dy;
          }
        }
        nd = c->next;
        continue;
      }
      double dx = xi - c->cx, dy = yi - c->cy;
      double d2 = dx * dx + dy * dy;
      if (c->w2 < theta2 * d2 && (uint32_t)(pi - c->lo) >= (uint32_t)c->count) {
        double w = 1.0 / (1.0 + d2);
        double cw = (double)c->count * w;
        zs += cw;
        cw *= w;
        fx += cw * dx;
        fy += cw * dy;
        nd = c->next;
      } else {
        nd++;
      }
    }
    neg[2 * q] = fx;
    neg[2 * q + 1] = fy;
    z[q] = zs;
  }
}

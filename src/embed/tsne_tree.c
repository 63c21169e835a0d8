/* tsne_tree.c - the Barnes-Hut quadtree of t-SNE.
 *
 * Built every iteration over all points (each rank builds the same tree from the same
 * gathered embedding): points get 64-bit Morton codes of their position in the square
 * bounding box (32 bits per axis), are sorted by (code, index) (an insertion sort from the
 * previous build's order, or a radix sort), and the tree is laid out in depth-first order in
 * one pass over the sorted codes (build_stack; the recursive build_node is the reference it
 * is tested against). Each node knows its centre of mass, its
 * squared side, its point count, its first sorted position and the index of the node after
 * its subtree, so the force traversal is a loop without a stack: accept a cell (jump past
 * its subtree) or descend (go to the next node). Points whose codes coincide (closer than
 * 2^-32 of the box) share one leaf and interact one by one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stemdefect/log.h"
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
  uint64_t *code, *code2;  /* [cap] sorted codes and radix scratch */
  int32_t *order, *order2; /* [cap] sorted position -> point */
  int32_t *pos;            /* [cap] point -> sorted position */
  double *ys;              /* [cap, 2] positions in sorted order */
  double root_w;
  int64_t sorted_n; /* n of the last build: order holds its sorted permutation (0: none) */
  int sort_skip, sort_backoff; /* builds to sort by radix directly, after a failed attempt */
  int64_t sorts_insertion, sorts_radix; /* how the builds sorted (statistics) */
  double t_sort, t_nodes, t_groups;     /* seconds in the parts of the builds */
  /* groups: maximal subtrees of <= SD_TSNE_GROUP points; forces are computed per group
   * from one interaction list built against the group's bounding box */
  int64_t ngroups, group_cap;
  int32_t *group;   /* [ngroups] node index */
  double *gbox;     /* [ngroups, 4] xmin, xmax, ymin, ymax of the group's points */
  int64_t list_cap; /* interaction list (scratch of sd_tsne_tree_repulsion) */
  double *lx, *ly, *lc;
};

#define SD_TSNE_GROUP 32

void sd_tsne_tree_destroy(sd_tsne_tree **t) {
  if (!t || !*t)
    return;
  sd_tsne_tree *x = *t;
  free(x->nodes);
  free(x->code);
  free(x->code2);
  free(x->order);
  free(x->order2);
  free(x->pos);
  free(x->ys);
  free(x->group);
  free(x->gbox);
  free(x->lx);
  free(x->ly);
  free(x->lc);
  free(x);
  *t = NULL;
}

static sd_status tree_reserve(sd_tsne_tree *t, int64_t cap) {
  if (cap <= t->cap)
    return SD_OK;
  if (cap > INT32_MAX / 4)
    return SD_ERROR(SD_ERR_ARG, "t-SNE tree: %lld points is too many", (long long)cap);
  void *p;
#define GROW(field, n)                                                                             \
  p = sd_realloc(t->field, (size_t)(n), sizeof *t->field, "t-SNE tree");                           \
  if (!p)                                                                                          \
    return SD_ERR_NOMEM;                                                                           \
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
  if (!t)
    return SD_ERR_NOMEM;
  sd_status st = tree_reserve(t, capacity > 1 ? capacity : 1);
  if (st == SD_OK) {
    t->node_cap = 2 * t->cap + 16;
    t->nodes = sd_malloc((size_t)t->node_cap, sizeof *t->nodes, "t-SNE tree nodes");
    if (!t->nodes)
      st = SD_ERR_NOMEM;
  }
  if (st != SD_OK) {
    sd_tsne_tree_destroy(&t);
    return st;
  }
  *out = t;
  return SD_OK;
}

static int list_grow(sd_tsne_tree *t, int64_t need);

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

/* the same by table: the 8 bits of an index spread to the even bits of 16 */
#define SP8(v)                                                                                     \
  (((v)&1) | (((v)&2) << 1) | (((v)&4) << 2) | (((v)&8) << 3) | (((v)&16) << 4) |                  \
   (((v)&32) << 5) | (((v)&64) << 6) | (((v)&128) << 7))
#define SP8_4(b) SP8(b), SP8(b + 1), SP8(b + 2), SP8(b + 3)
#define SP8_16(b) SP8_4(b), SP8_4(b + 4), SP8_4(b + 8), SP8_4(b + 12)
#define SP8_64(b) SP8_16(b), SP8_16(b + 16), SP8_16(b + 32), SP8_16(b + 48)
static const uint16_t spread8[256] = {SP8_64(0), SP8_64(64), SP8_64(128), SP8_64(192)};
#undef SP8_64
#undef SP8_16
#undef SP8_4
#undef SP8

static inline uint64_t spread_table(uint32_t v) {
  return (uint64_t)spread8[v & 255] | (uint64_t)spread8[(v >> 8) & 255] << 16 |
         (uint64_t)spread8[(v >> 16) & 255] << 32 | (uint64_t)spread8[v >> 24] << 48;
}

/* the 32-bit grid coordinate of a position (the reference arithmetic, shared by both builds) */
static inline uint32_t grid_coord(double v, double vmin, double scale) {
  double f = floor((v - vmin) * scale);
  return f >= 4294967295.0 ? 4294967295U : (f <= 0 ? 0U : (uint32_t)f);
}

/* The same value without floor (a library call on baseline x86-64): v >= vmin, so the
 * scaled offset is >= 0 (or NaN, excluded by the finite bounding box) and truncation is
 * floor. */
static inline uint32_t grid_coord_fast(double v, double vmin, double scale) {
  double f = (v - vmin) * scale;
  return f >= 4294967295.0 ? 4294967295U : (f > 0 ? (uint32_t)f : 0U);
}

static inline uint64_t morton_code(const double *p, double xmin, double ymin, double scale) {
  return (spread_table(grid_coord_fast(p[0], xmin, scale)) << 1) |
         spread_table(grid_coord_fast(p[1], ymin, scale));
}

/* stable LSD radix sort of (code, order) by code, 8 passes of 8 bits */
static void radix_sort(sd_tsne_tree *t, int64_t n) {
  uint64_t *a = t->code, *b = t->code2;
  int32_t *oa = t->order, *ob = t->order2;
  for (int pass = 0; pass < 8; pass++) {
    int shift = pass * 8;
    int64_t hist[256] = {0};
    for (int64_t i = 0; i < n; i++)
      hist[(a[i] >> shift) & 255]++;
    if (hist[(a[0] >> shift) & 255] == n)
      continue; /* all equal in this digit */
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

/* Sorts the points by (code, index) into t->code / t->order. The previous build's order is
 * the starting permutation: between iterations the points move little, so an insertion sort
 * finishes in about n steps; when it needs more than 4n moves (early on, the embedding still
 * changes fast, and the Morton order is not stable under the moving bounding box) the rest
 * is left to the radix sort from the index order, and the next attempts are spaced out. Either way
 * the result is the unique (code, index) order, that of the radix sort alone. */
static void sort_points(sd_tsne_tree *t, int64_t n, const double *y, double xmin, double ymin,
                        double scale) {
  uint64_t *code = t->code;
  int32_t *order = t->order;
  int insertion = t->sorted_n == n;
  if (insertion && t->sort_skip > 0) {
    t->sort_skip--;
    insertion = 0;
  }
  if (insertion) {
    for (int64_t s = 0; s < n; s++)
      code[s] = morton_code(y + 2 * (int64_t)order[s], xmin, ymin, scale);
    const int64_t budget = 4 * n;
    int64_t moves = 0;
    int64_t s = 1;
    for (; s < n; s++) {
      uint64_t c = code[s];
      int32_t o = order[s];
      int64_t r = s;
      while (r > 0 && (code[r - 1] > c || (code[r - 1] == c && order[r - 1] > o))) {
        code[r] = code[r - 1];
        order[r] = order[r - 1];
        r--;
      }
      code[r] = c;
      order[r] = o;
      moves += s - r;
      if (moves > budget)
        break;
    }
    if (s >= n) {
      t->sorts_insertion++;
      t->sort_backoff = 0;
      return;
    }
    /* the order changed a lot: skip the attempt for the next 1, 3, 7, .. 31 builds */
    t->sort_backoff = t->sort_backoff < 31 ? 2 * t->sort_backoff + 1 : 31;
    t->sort_skip = t->sort_backoff;
    /* back to the index order (the pairs are still a permutation), then the radix sort */
    for (int64_t q = 0; q < n; q++)
      t->code2[order[q]] = code[q];
    memcpy(code, t->code2, (size_t)n * sizeof *code);
  } else {
    for (int64_t i = 0; i < n; i++)
      code[i] = morton_code(y + 2 * i, xmin, ymin, scale);
  }
  for (int64_t i = 0; i < n; i++)
    order[i] = (int32_t)i;
  radix_sort(t, n);
  t->sorts_radix++;
  t->sorted_n = n;
}

/* first position in [lo, hi) whose quadrant digit at level is >= q (codes sorted) */
static int64_t lower_quadrant(const uint64_t *code, int64_t lo, int64_t hi, int shift, uint64_t q) {
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (((code[mid] >> shift) & 3) < q)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static int nodes_reserve(sd_tsne_tree *t, int64_t need) {
  if (need <= t->node_cap)
    return 1;
  int64_t want = 2 * t->node_cap + 64;
  if (want < need)
    want = need;
  if (want > INT32_MAX)
    return 0;
  void *p = sd_realloc(t->nodes, (size_t)want, sizeof *t->nodes, "t-SNE tree nodes");
  if (!p)
    return 0;
  t->nodes = p;
  t->node_cap = want;
  return 1;
}

/* The reference layout, recursively: emits the subtree of sorted range [lo, hi) at level in
 * depth-first order; returns its node index, or -1 when the node array cannot grow. */
static int32_t build_node(sd_tsne_tree *t, int64_t lo, int64_t hi, int level, double w) {
  if (!nodes_reserve(t, t->nnodes + 1))
    return -1;
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
  for (uint64_t q = 1; q < 4; q++)
    b[q] = lower_quadrant(t->code, b[q - 1], hi, shift, q);
  double sx = 0, sy = 0;
  for (int q = 0; q < 4; q++) {
    if (b[q + 1] <= b[q])
      continue;
    int32_t c = build_node(t, b[q], b[q + 1], level + 1, 0.5 * w);
    if (c < 0)
      return -1;
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

/* The level below which sorted codes a != b part: their first differing quadrant digit. */
static inline int split_level(uint64_t a, uint64_t b) {
  return __builtin_clzll(a ^ b) >> 1;
}

/* The same tree as build_node (the same nodes in the same order with the same bits), in one
 * pass over the sorted codes with a stack of the open cells. The cells containing the run of
 * equal codes [lo, hi) are those of levels 0 .. leaf, leaf = 1 + the larger of the levels at
 * which the run parts from its neighbours; the ones of levels above the split from the left
 * neighbour open at lo (pre-order), and after the leaf the ones deeper than the split to the
 * right neighbour close. A closing cell sums its children's count-weighted centres in child
 * order, as build_node does (walking the children by their next links, so the divisions of
 * the children are long done and do not form one dependency chain). */
static int build_stack(sd_tsne_tree *t, int64_t n) {
  double w2l[34];
  {
    double w = t->root_w;
    for (int l = 0; l < 34; l++) {
      w2l[l] = w * w;
      w *= 0.5;
    }
  }
  const uint64_t *code = t->code;
  const double *ys = t->ys;
  int32_t sid[34];
  int slv[34];
  int top = 0, prev = -1;
  int64_t nn = 0;
  for (int64_t lo = 0; lo < n;) {
    int64_t hi = lo + 1;
    while (hi < n && code[hi] == code[lo])
      hi++;
    const int right = hi < n ? split_level(code[hi - 1], code[hi]) : -1;
    const int leafl = (prev > right ? prev : right) + 1;
    if (nn + 36 > t->node_cap && !nodes_reserve(t, nn + 36))
      return 0;
    tnode *nodes = t->nodes;
    for (int l = prev + 1; l < leafl; l++) {
      tnode *nd = &nodes[nn];
      nd->w2 = w2l[l];
      nd->lo = (int32_t)lo;
      nd->leaf = 0;
      sid[top] = (int32_t)nn;
      slv[top] = l;
      top++;
      nn++;
    }
    {
      tnode *nd = &nodes[nn];
      nd->w2 = w2l[leafl];
      nd->lo = (int32_t)lo;
      nd->count = (int32_t)(hi - lo);
      nd->leaf = 1;
      if (hi - lo == 1) { /* (0 + y) / 1 = 0 + y exactly */
        nd->cx = 0.0 + ys[2 * lo];
        nd->cy = 0.0 + ys[2 * lo + 1];
      } else {
        double sx = 0, sy = 0;
        for (int64_t s = lo; s < hi; s++) {
          sx += ys[2 * s];
          sy += ys[2 * s + 1];
        }
        nd->cx = sx / (double)(hi - lo);
        nd->cy = sy / (double)(hi - lo);
      }
      nn++;
      nd->next = (int32_t)nn;
    }
    while (top > 0 && slv[top - 1] > right) {
      top--;
      const int32_t id = sid[top];
      tnode *nd = &nodes[id];
      double sx = 0, sy = 0;
      for (int64_t ch = id + 1; ch < nn; ch = nodes[ch].next) {
        const double c = (double)nodes[ch].count;
        sx += nodes[ch].cx * c;
        sy += nodes[ch].cy * c;
      }
      const double c = (double)(hi - nd->lo);
      nd->count = (int32_t)(hi - nd->lo);
      nd->cx = sx / c;
      nd->cy = sy / c;
      nd->next = (int32_t)nn;
    }
    prev = right;
    lo = hi;
  }
  t->nnodes = nn;
  return 1;
}

/* Reserves the storage of a build and finds the square bounding box: *w = 0 for n = 0. */
static sd_status build_begin(sd_tsne_tree *t, int64_t n, const double *y, double *xmin,
                             double *ymin, double *w) {
  SD_CHECK(tree_reserve(t, n));
  if (t->node_cap < 2 * n + 16 || !t->nodes) {
    /* n leaves and < n branching nodes, plus chains of one-child nodes (grown on demand) */
    int64_t want = 3 * n + 64;
    void *p = sd_realloc(t->nodes, (size_t)want, sizeof *t->nodes, "t-SNE tree nodes");
    if (!p)
      return SD_ERR_NOMEM;
    t->nodes = p;
    t->node_cap = want;
  }
  /* an interaction list never exceeds n entries: reserve it now so the force pass cannot
   * fail (it runs between collectives) */
  if (!list_grow(t, n + 1))
    return SD_ERR_NOMEM;
  t->n = n;
  t->nnodes = 0;
  t->ngroups = 0;
  *w = 0;
  if (n == 0)
    return SD_OK;
  double x0 = y[0], x1 = y[0], y0 = y[1], y1 = y[1];
  int nonfinite = 0; /* a NaN passes every comparison below: test each value */
  for (int64_t i = 0; i < n; i++) {
    double a = y[2 * i], b = y[2 * i + 1];
    nonfinite |= !isfinite(a) | !isfinite(b);
    if (a < x0)
      x0 = a;
    if (a > x1)
      x1 = a;
    if (b < y0)
      y0 = b;
    if (b > y1)
      y1 = b;
  }
  if (nonfinite || !isfinite(x0) || !isfinite(x1) || !isfinite(y0) || !isfinite(y1))
    return SD_ERROR(SD_ERR_INTERNAL, "t-SNE: the embedding holds non-finite values (diverged; try "
                                     "a smaller learning rate)");
  double ww = x1 - x0 > y1 - y0 ? x1 - x0 : y1 - y0;
  if (!(ww > 0))
    ww = 1.0;
  ww *= 1.0 + 1e-9;
  *xmin = x0;
  *ymin = y0;
  *w = ww;
  return SD_OK;
}

/* Sorted positions, then (after the nodes) the groups in depth-first order with the
 * bounding boxes of their points. */
static void build_scatter(sd_tsne_tree *t, int64_t n, const double *y) {
  for (int64_t s = 0; s < n; s++) {
    int32_t i = t->order[s];
    t->pos[i] = (int32_t)s;
    t->ys[2 * s] = y[2 * i];
    t->ys[2 * s + 1] = y[2 * i + 1];
  }
}

static sd_status build_groups(sd_tsne_tree *t) {
  t->ngroups = 0;
  for (int32_t nd = 0; nd < (int32_t)t->nnodes;) {
    const tnode *c = &t->nodes[nd];
    if (c->count > SD_TSNE_GROUP && !c->leaf) {
      nd++;
      continue;
    }
    if (t->ngroups == t->group_cap) {
      int64_t want = 2 * t->group_cap + 64;
      void *p1 = sd_realloc(t->group, (size_t)want, sizeof *t->group, "t-SNE groups");
      if (!p1)
        return SD_ERR_NOMEM;
      t->group = p1;
      void *p2 = sd_realloc(t->gbox, (size_t)want * 4, sizeof *t->gbox, "t-SNE groups");
      if (!p2)
        return SD_ERR_NOMEM;
      t->gbox = p2;
      t->group_cap = want;
    }
    double *b = t->gbox + 4 * t->ngroups;
    const double *p = t->ys + 2 * (int64_t)c->lo;
    double x0 = p[0], x1 = p[0], y0 = p[1], y1 = p[1];
    for (int32_t s = 1; s < c->count; s++) {
      double a = p[2 * s], e = p[2 * s + 1];
      x0 = a < x0 ? a : x0;
      x1 = a > x1 ? a : x1;
      y0 = e < y0 ? e : y0;
      y1 = e > y1 ? e : y1;
    }
    b[0] = x0;
    b[1] = x1;
    b[2] = y0;
    b[3] = y1;
    t->group[t->ngroups++] = nd;
    nd = c->next;
  }
  return SD_OK;
}

sd_status sd_tsne_tree_build(sd_tsne_tree *t, int64_t n, const double *y) {
  double xmin = 0, ymin = 0, w = 0;
  SD_CHECK(build_begin(t, n, y, &xmin, &ymin, &w));
  if (n == 0)
    return SD_OK;
  double ta = sd_time_now();
  sort_points(t, n, y, xmin, ymin, 4294967296.0 / w);
  double tb = sd_time_now();
  build_scatter(t, n, y);
  t->root_w = w;
  if (!build_stack(t, n))
    return SD_ERR_NOMEM;
  double tc = sd_time_now();
  sd_status st = build_groups(t);
  double td = sd_time_now();
  t->t_sort += tb - ta;
  t->t_nodes += tc - tb;
  t->t_groups += td - tc;
  return st;
}

sd_status sd_tsne_tree_build_reference(sd_tsne_tree *t, int64_t n, const double *y) {
  double xmin = 0, ymin = 0, w = 0;
  SD_CHECK(build_begin(t, n, y, &xmin, &ymin, &w));
  if (n == 0)
    return SD_OK;
  const double scale = 4294967296.0 / w;
  for (int64_t i = 0; i < n; i++) {
    t->code[i] = (spread_bits(grid_coord(y[2 * i], xmin, scale)) << 1) |
                 spread_bits(grid_coord(y[2 * i + 1], ymin, scale));
    t->order[i] = (int32_t)i;
  }
  radix_sort(t, n);
  t->sorted_n = 0; /* the next sd_tsne_tree_build starts from the index order */
  build_scatter(t, n, y);
  t->root_w = w;
  if (build_node(t, 0, n, 0, w) < 0)
    return SD_ERR_NOMEM;
  return build_groups(t);
}

int sd_tsne_tree_same(const sd_tsne_tree *a, const sd_tsne_tree *b) {
  if (a->n != b->n || a->nnodes != b->nnodes || a->ngroups != b->ngroups)
    return 0;
  if (memcmp(&a->root_w, &b->root_w, sizeof a->root_w) != 0)
    return 0;
  size_t n = (size_t)a->n;
  if (n == 0)
    return 1;
  return memcmp(a->nodes, b->nodes, (size_t)a->nnodes * sizeof *a->nodes) == 0 &&
         memcmp(a->code, b->code, n * sizeof *a->code) == 0 &&
         memcmp(a->order, b->order, n * sizeof *a->order) == 0 &&
         memcmp(a->pos, b->pos, n * sizeof *a->pos) == 0 &&
         memcmp(a->ys, b->ys, 2 * n * sizeof *a->ys) == 0 &&
         memcmp(a->group, b->group, (size_t)a->ngroups * sizeof *a->group) == 0 &&
         memcmp(a->gbox, b->gbox, 4 * (size_t)a->ngroups * sizeof *a->gbox) == 0;
}

void sd_tsne_tree_stats(const sd_tsne_tree *t, sd_tsne_tree_info *info) {
  memset(info, 0, sizeof *info);
  info->nodes = t->nnodes;
  info->groups = t->ngroups;
  info->sorts_insertion = t->sorts_insertion;
  info->sorts_radix = t->sorts_radix;
  info->seconds_sort = t->t_sort;
  info->seconds_nodes = t->t_nodes;
  info->seconds_groups = t->t_groups;
}

static int list_grow(sd_tsne_tree *t, int64_t need) {
  if (need <= t->list_cap)
    return 1;
  int64_t want = need > 2 * t->list_cap ? need : 2 * t->list_cap;
  double *a = sd_realloc(t->lx, (size_t)want, sizeof *a, "t-SNE interaction list");
  if (!a)
    return 0;
  t->lx = a;
  a = sd_realloc(t->ly, (size_t)want, sizeof *a, "t-SNE interaction list");
  if (!a)
    return 0;
  t->ly = a;
  a = sd_realloc(t->lc, (size_t)want, sizeof *a, "t-SNE interaction list");
  if (!a)
    return 0;
  t->lc = a;
  t->list_cap = want;
  return 1;
}

/* The interaction list of group g: cells accepted against the group's box (the distance
 * from the cell's centre of mass to the nearest point of the box), points of the leaves
 * that must be opened; returns its length, or -1 when it cannot grow. */
static int64_t group_list(sd_tsne_tree *t, int64_t g, double theta2) {
  const tnode *nodes = t->nodes;
  const int32_t nnodes = (int32_t)t->nnodes, gn = t->group[g];
  const int32_t glo = nodes[gn].lo;
  const double *b = t->gbox + 4 * g;
  int64_t len = 0;
  int32_t nd = 0;
  while (nd < nnodes) {
    const tnode *c = &nodes[nd];
    if (nd == gn) { /* the group's own points are handled one by one */
      nd = c->next;
      continue;
    }
    if ((uint32_t)(glo - c->lo) < (uint32_t)c->count) { /* an ancestor of the group */
      nd++;
      continue;
    }
    double dx = c->cx < b[0] ? b[0] - c->cx : (c->cx > b[1] ? c->cx - b[1] : 0.0);
    double dy = c->cy < b[2] ? b[2] - c->cy : (c->cy > b[3] ? c->cy - b[3] : 0.0);
    if (c->leaf || c->w2 < theta2 * (dx * dx + dy * dy)) {
      if (len + c->count > t->list_cap && !list_grow(t, len + c->count + 1024))
        return -1;
      if (!c->leaf || c->count == 1) {
        t->lx[len] = c->cx;
        t->ly[len] = c->cy;
        t->lc[len] = (double)c->count;
        len++;
      } else { /* coincident points: one by one */
        for (int32_t s = c->lo; s < c->lo + c->count; s++) {
          t->lx[len] = t->ys[2 * s];
          t->ly[len] = t->ys[2 * s + 1];
          t->lc[len] = 1.0;
          len++;
        }
      }
      nd = c->next;
    } else {
      nd++;
    }
  }
  return len;
}

/* The force and z of the point in sorted slot s of group node gn, given the group's list. */
static inline void point_force(const sd_tsne_tree *t, const tnode *gn, int32_t s, int64_t len,
                               double out[3]) {
  const double *ys = t->ys, *lx = t->lx, *ly = t->ly, *lc = t->lc;
  double xi = ys[2 * s], yi = ys[2 * s + 1];
  /* four interleaved partial sums (a fixed order: the same bits on every rank) */
  double fx[4] = {0, 0, 0, 0}, fy[4] = {0, 0, 0, 0}, zs[4] = {0, 0, 0, 0};
  int64_t e = 0;
  for (; e + 4 <= len; e += 4) {
    for (int u = 0; u < 4; u++) {
      double dx = xi - lx[e + u], dy = yi - ly[e + u];
      double w = 1.0 / (1.0 + dx * dx + dy * dy);
      double cw = lc[e + u] * w;
      zs[u] += cw;
      cw *= w;
      fx[u] += cw * dx;
      fy[u] += cw * dy;
    }
  }
  for (; e < len; e++) {
    double dx = xi - lx[e], dy = yi - ly[e];
    double w = 1.0 / (1.0 + dx * dx + dy * dy);
    double cw = lc[e] * w;
    zs[0] += cw;
    cw *= w;
    fx[0] += cw * dx;
    fy[0] += cw * dy;
  }
  /* the other points of the group, exactly */
  for (int32_t r = gn->lo; r < gn->lo + gn->count; r++) {
    if (r == s)
      continue;
    double dx = xi - ys[2 * r], dy = yi - ys[2 * r + 1];
    double w = 1.0 / (1.0 + dx * dx + dy * dy);
    zs[1] += w;
    w *= w;
    fx[1] += w * dx;
    fy[1] += w * dy;
  }
  out[0] = (fx[0] + fx[1]) + (fx[2] + fx[3]);
  out[1] = (fy[0] + fy[1]) + (fy[2] + fy[3]);
  out[2] = (zs[0] + zs[1]) + (zs[2] + zs[3]);
}

sd_status sd_tsne_tree_repulsion(sd_tsne_tree *t, int64_t first, int64_t count, double theta,
                                 double *neg, double *z) {
  const double theta2 = theta * theta;
  const int64_t last = first + count;
  for (int64_t g = 0; g < t->ngroups; g++) {
    const tnode *gn = &t->nodes[t->group[g]];
    int own = 0;
    for (int32_t s = gn->lo; s < gn->lo + gn->count && !own; s++)
      own = t->order[s] >= first && t->order[s] < last;
    if (!own)
      continue;
    int64_t len = group_list(t, g, theta2);
    if (len < 0)
      return SD_ERR_NOMEM;
    for (int32_t s = gn->lo; s < gn->lo + gn->count; s++) {
      int64_t i = t->order[s];
      if (i < first || i >= last)
        continue;
      double f[3];
      point_force(t, gn, s, len, f);
      int64_t q = i - first;
      neg[2 * q] = f[0];
      neg[2 * q + 1] = f[1];
      z[q] = f[2];
    }
  }
  return SD_OK;
}

sd_status sd_tsne_tree_repulsion_share(sd_tsne_tree *t, int part, int parts, double theta,
                                       double *out, int stride, int offset) {
  const double theta2 = theta * theta;
  const int64_t n = t->n;
  for (int64_t g = 0; g < t->ngroups; g++) {
    const tnode *gn = &t->nodes[t->group[g]];
    /* groups are in tree order and hold consecutive sorted slots: the group whose first
     * slot falls in part's share of [0, n) is part's */
    int64_t lo = gn->lo;
    if (lo < (int64_t)part * n / parts || lo >= (int64_t)(part + 1) * n / parts)
      continue;
    int64_t len = group_list(t, g, theta2);
    if (len < 0)
      return SD_ERR_NOMEM;
    for (int32_t s = gn->lo; s < gn->lo + gn->count; s++) {
      double *o = out + (size_t)t->order[s] * stride + offset;
      point_force(t, gn, s, len, o);
    }
  }
  return SD_OK;
}

const int32_t *sd_tsne_tree_order(const sd_tsne_tree *t) {
  return t->order;
}

const int32_t *sd_tsne_tree_slots(const sd_tsne_tree *t) {
  return t->pos;
}

int64_t sd_tsne_tree_cut(const sd_tsne_tree *t, int64_t x) {
  if (x <= 0)
    return 0;
  if (x >= t->n)
    return t->n;
  /* the first group starting at or after x: groups are in slot order and tile [0, n) */
  int64_t lo = 0, hi = t->ngroups;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (t->nodes[t->group[mid]].lo < x)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < t->ngroups ? t->nodes[t->group[lo]].lo : t->n;
}

sd_status sd_tsne_tree_repulsion_slots(sd_tsne_tree *t, int64_t s0, int64_t s1, double theta,
                                       double *out, double *work, int nbins) {
  const double theta2 = theta * theta;
  /* the first group starting at s0 (s0 is a cut) */
  int64_t lo = 0, hi = t->ngroups;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (t->nodes[t->group[mid]].lo < s0)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (int64_t g = lo; g < t->ngroups; g++) {
    const tnode *gn = &t->nodes[t->group[g]];
    if (gn->lo >= s1)
      break;
    int64_t len = group_list(t, g, theta2);
    if (len < 0)
      return SD_ERR_NOMEM;
    for (int32_t s = gn->lo; s < gn->lo + gn->count; s++)
      point_force(t, gn, s, len, out + 3 * (s - s0));
    if (work) /* the list walk and, per point, the list and the group's own points */
      work[(gn->lo - s0) * nbins / (s1 - s0)] +=
          (double)(2 * len) + (double)gn->count * (double)(len + gn->count);
  }
  return SD_OK;
}

/* Exact path-dependent TreeSHAP (what LightGBM's pred_contrib computes) in O(nodes x points) per
   tree and record, instead of LightGBM's O(leaves x depth^2). treeshap.py has the derivation; in
   short, for a leaf v whose path has the distinct split features F_v and, per feature j, the
   product z_j of the cover fractions and p_j of the record's 0/1 decisions on its splits:

     phi_i(v) = value_v (p_i - z_i) * integral_0^1 prod_{j in F_v, j != i} (z_j + (p_j - z_j) t) dt

   The integrand is a polynomial of degree |F_v| - 1, so Gauss-Legendre quadrature with
   ceil(max |F_v| / 2) points is exact. At each point, A = the product over a node's path is
   carried down (preorder), W = the sum over its leaves of value * A is carried up (reverse
   preorder), and the edge into a node credits its feature with the leaves below it that no deeper
   split on the same feature claims (D). Both passes are flat loops over a tree laid out in
   preorder by forestops_treeshap_layout: no recursion, and each node's facts are read in order.

   Node slots: a laid-out tree occupies slots 1..size of its block; slot 0 is a sentinel "no
   earlier split on this feature" (p = 1, 1 / g = 1).

   Two kinds of forest: a LightGBM multiclass booster (one value per leaf, tree t adds to class
   t mod K) and a forest of classification trees (scikit-learn's: K values per leaf, one per class,
   every tree adds to every class). `values` says which: 1 or K. */

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POINTS 32
#define LANES 4 /* points per vector operation; MAX_POINTS is a multiple */
#define K_ZERO_THRESHOLD 1.0000000180025095e-35 /* LightGBM's kZeroThreshold, 1e-35f */

typedef struct {
  /* Per slot, relative to the tree's block: */
  const int32_t *parent;   /* the parent's slot (0 for the root) */
  const int32_t *earlier;  /* the nearest ancestor entered by a split on the same feature, or 0 */
  const int32_t *edge;     /* the feature of the split into this node (unused for the root) */
  const uint8_t *is_left;  /* this node is its parent's left child */
  const double *z;         /* product of cover fractions of the splits on `edge` down to here */
  const double *value;     /* a leaf's value for the class explained (at slot x stride) */
  size_t stride;           /* values per slot: 1, or K for a forest of classification trees */
  const int32_t *split;    /* the feature an internal node splits on (0 for a leaf) */
  const double *threshold; /* an internal node's threshold */
  const uint8_t *decision; /* LightGBM's decision_type: bit 1 default left, bits 2-3 missing;
                              or PLAIN_DECISION */
} Layout;

#define PLAIN_DECISION 128 /* scikit-learn's test: left when value <= threshold, nothing else */

/* LightGBM's Tree::NumericalDecision: 1 when the record goes to the left child. LightGBM reads
   a dense row keeping only values with |value| > kZeroThreshold or NaN (the rest are zero), so a
   value of +-1e-35f decides as 0 does; it matters only where a threshold is exactly -1e-35f. */
static inline int goes_left(double value, double threshold, uint8_t decision) {
  if (decision & PLAIN_DECISION) return value <= threshold;
  int missing = (decision >> 2) & 3;
  if (fabs(value) <= K_ZERO_THRESHOLD) value = 0.0;
  if (isnan(value) && missing != 2) value = 0.0;
  if ((missing == 1 && value >= -K_ZERO_THRESHOLD && value <= K_ZERO_THRESHOLD) ||
      (missing == 2 && isnan(value)))
    return (decision & 2) != 0;
  return value <= threshold;
}

typedef double Lanes __attribute__((vector_size(LANES * sizeof(double))));

static inline Lanes load(const double *from) {
  Lanes v;
  memcpy(&v, from, sizeof v);
  return v;
}

static inline void store(double *to, Lanes v) { memcpy(to, &v, sizeof v); }

/* One tree for record x into phi (per feature, the weighted integrand summed by lane: the lanes
   are added once per record, not at every node): internal nodes in slots 1..inner (preorder),
   leaves in inner + 1..size. Its points come in `chunks` groups of LANES (the last padded with
   weight 0); work holds 4 (inner + 1) chunks LANES doubles, p and left_taken inner + 1. A leaf
   needs neither its own A nor 1 / g: its integral is value * the sum of w A_parent / g_earlier.
   Written in GCC vector types, inlined once per chunk count (EXPLAINS): each node's points are a
   few vector operations. W and D are zeroed in one sweep each, not node by node. */
static inline __attribute__((always_inline)) void explain_tree(
    const Layout *l, int32_t inner, int32_t size, const double *restrict x,
    const double *restrict t, const double *restrict w, double *restrict work,
    double *restrict p, uint8_t *restrict left_taken, Lanes *restrict phi, const int chunks) {
  const int n = chunks * LANES;
  double *restrict A = work, *restrict W = A + (inner + 1) * n, *restrict D = W + (inner + 1) * n,
                   *restrict G = D + (inner + 1) * n;
  /* The layout's arrays in restrict locals: a store through left_taken (a char type) or phi
     would otherwise make the compiler reload every pointer of *l at each node. */
  const int32_t *restrict parent = l->parent, *restrict earlier = l->earlier,
                          *restrict edge = l->edge, *restrict split = l->split;
  const uint8_t *restrict is_left = l->is_left, *restrict decision = l->decision;
  const double *restrict zs = l->z, *restrict values = l->value, *restrict threshold = l->threshold;
  const size_t stride = l->stride;
  Lanes at[MAX_POINTS / LANES], weight[MAX_POINTS / LANES];
  for (int c = 0; c < chunks; c++) {
    at[c] = load(t + c * LANES);
    weight[c] = load(w + c * LANES);
    store(A + n + c * LANES, (Lanes){} + 1.0); /* the root: an empty product */
    store(W + n + c * LANES, (Lanes){});
    store(G + c * LANES, (Lanes){} + 1.0); /* the sentinel's 1 / g */
  }
  memset(W + 2 * n, 0, ((size_t)inner - 1) * n * sizeof *W); /* W[2..inner]; D follows W */
  memset(D + 2 * n, 0, ((size_t)inner - 1) * n * sizeof *D);
  for (int32_t i = 1; i <= inner; i++) /* each split's decision, once */
    left_taken[i] = (uint8_t)goes_left(x[split[i]], threshold[i], decision[i]);
  p[0] = 1.0; /* p: 1 while every split on the edge's feature down to the node was taken */
  for (int32_t i = 2; i <= inner; i++) {
    const int32_t up = parent[i], before = earlier[i];
    const double z = zs[i], pi = (double)(left_taken[up] == is_left[i]) * p[before];
    p[i] = pi;
    for (int c = 0; c < chunks; c++) {
      const Lanes g = z + (pi - z) * at[c];
      store(G + i * n + c * LANES, 1.0 / g);
      store(A + i * n + c * LANES,
            load(A + up * n + c * LANES) * g * load(G + before * n + c * LANES));
    }
  }
  for (int32_t i = inner + 1; i <= size; i++) {
    const int32_t up = parent[i], before = earlier[i];
    const double z = zs[i], value = values[(size_t)i * stride];
    const double pi = (double)(left_taken[up] == is_left[i]) * p[before];
    Lanes sum = {};
    for (int c = 0; c < chunks; c++) {
      const Lanes a = load(A + up * n + c * LANES) * load(G + before * n + c * LANES);
      const Lanes below = value * a * (z + (pi - z) * at[c]);
      sum += weight[c] * a;
      store(W + up * n + c * LANES, load(W + up * n + c * LANES) + below);
      store(D + before * n + c * LANES, load(D + before * n + c * LANES) + below);
    }
    phi[edge[i]] += ((pi - z) * value) * sum;
  }
  for (int32_t i = inner; i >= 2; i--) {
    const int32_t up = parent[i], before = earlier[i];
    Lanes sum = {};
    for (int c = 0; c < chunks; c++) {
      const Lanes below = load(W + i * n + c * LANES);
      sum += weight[c] * (below - load(D + i * n + c * LANES)) * load(G + i * n + c * LANES);
      store(W + up * n + c * LANES, load(W + up * n + c * LANES) + below);
      /* at the sentinel, written and never read */
      store(D + before * n + c * LANES, load(D + before * n + c * LANES) + below);
    }
    phi[edge[i]] += (p[i] - zs[i]) * sum;
  }
}

typedef void (*Explain)(const Layout *, int32_t, int32_t, const double *, const double *,
                        const double *, double *, double *, uint8_t *, Lanes *);
#define EXPLAIN(C)                                                                         \
  static void explain_##C(const Layout *l, int32_t inner, int32_t size, const double *x,  \
                          const double *t, const double *w, double *work, double *p,       \
                          uint8_t *left_taken, Lanes *phi) {                               \
    explain_tree(l, inner, size, x, t, w, work, p, left_taken, phi, C);                    \
  }
EXPLAIN(1) EXPLAIN(2) EXPLAIN(3) EXPLAIN(4) EXPLAIN(5) EXPLAIN(6) EXPLAIN(7) EXPLAIN(8)
/* By chunk count: every count up to MAX_POINTS / LANES, as the layout admits paths of up to
   2 MAX_POINTS distinct features. */
static const Explain EXPLAINS[MAX_POINTS / LANES + 1] = {
    NULL, explain_1, explain_2, explain_3, explain_4, explain_5, explain_6, explain_7, explain_8};
_Static_assert(MAX_POINTS / LANES == 8, "one EXPLAIN per chunk count");

typedef struct {
  int32_t node, up, up_node;
  uint8_t is_left;
} Pending;

/* Lays out every tree in preorder. In: LightGBM's trees with each tree's leaves numbered after
   its internal nodes (left/right: a child's number within the tree, -1 for a leaf's children),
   `cover` its training rows, per node; starts[t] the first node of tree t (starts[trees]: all).
   `values` values per node in `value` (row-major), and per slot in out_value.
   Out: tree t in slots base + 1 .. base + its nodes, base = starts[t] + t (base itself is its
   sentinel), its inner[t] internal nodes first in preorder, then its leaves; and points[t] =
   ceil(the most distinct features on a path / 2). Returns the most nodes in a tree, or -1 when a
   path has more than 2 MAX_POINTS distinct features or memory runs out. */
int32_t forestops_treeshap_layout(const int32_t *left, const int32_t *right,
                                  const int32_t *feature, const double *threshold,
                                  const uint8_t *decision, const double *cover,
                                  const double *value, size_t values, const int32_t *starts,
                                  size_t trees, int32_t *parent, int32_t *earlier, int32_t *edge,
                                  uint8_t *is_left, double *z, double *out_value, int32_t *split,
                                  double *out_threshold, uint8_t *out_decision, int32_t *inner,
                                  int32_t *points) {
  int32_t largest = 0;
  size_t capacity = 0;
  Pending *pending = NULL;
  int32_t *distinct = NULL;
  for (size_t tree = 0; tree < trees; tree++) {
    const int32_t first = starts[tree], size = starts[tree + 1] - first;
    if ((size_t)size + 1 > capacity) {
      capacity = (size_t)size + 1;
      free(pending);
      free(distinct);
      pending = malloc(capacity * sizeof *pending);
      distinct = malloc(capacity * sizeof *distinct);
      if (pending == NULL || distinct == NULL) {
        free(pending);
        free(distinct);
        return -1;
      }
    }
    if (size > largest) largest = size;
    const size_t base = (size_t)first + tree;
    parent[base] = earlier[base] = edge[base] = split[base] = 0;
    is_left[base] = out_decision[base] = 0;
    z[base] = 1.0;
    out_threshold[base] = 0.0;
    for (size_t v = 0; v < values; v++) out_value[base * values + v] = 0.0;
    int32_t most = 0, next = 1, depth = 0, leaf = 1;
    for (int32_t node = 0; node < size; node++) leaf += left[first + node] >= 0;
    inner[tree] = leaf - 1; /* leaves take the slots after the internal nodes' */
    pending[depth++] = (Pending){0, 0, 0, 0};
    distinct[0] = 0;
    while (depth > 0) {
      const Pending item = pending[--depth];
      const int32_t node = first + item.node, slot = left[node] >= 0 ? next++ : leaf++;
      const size_t at = base + slot;
      parent[at] = item.up;
      is_left[at] = item.is_left;
      if (item.up == 0) { /* the root */
        earlier[at] = edge[at] = 0;
        z[at] = 1.0;
        distinct[slot] = 0;
      } else {
        const int32_t j = split[base + item.up];
        int32_t a = item.up;
        while (a > 1 && edge[base + a] != j) a = parent[base + a];
        earlier[at] = a > 1 ? a : 0;
        edge[at] = j;
        z[at] = cover[node] / cover[first + item.up_node] * (a > 1 ? z[base + a] : 1.0);
        distinct[slot] = distinct[item.up] + (a > 1 ? 0 : 1);
        if (distinct[slot] > most) most = distinct[slot];
      }
      const int internal = left[node] >= 0;
      for (size_t v = 0; v < values; v++)
        out_value[at * values + v] = internal ? 0.0 : value[(size_t)node * values + v];
      split[at] = internal ? feature[node] : 0;
      out_threshold[at] = threshold[node];
      out_decision[at] = decision[node];
      if (internal) { /* the left child next: preorder */
        pending[depth++] = (Pending){right[node], slot, item.node, 0};
        pending[depth++] = (Pending){left[node], slot, item.node, 1};
      }
    }
    points[tree] = (most + 1) / 2;
    if (points[tree] > MAX_POINTS) {
      largest = -1;
      break;
    }
  }
  free(pending);
  free(distinct);
  return largest;
}

/* Contributions of `rows` records X (row-major, num_features each) added into out
   (rows x K x num_features) by trees first..last - 1, only to the class explain[r] (-1: every
   class): with `values` 1, tree t adds to class t mod K; with `values` K, every tree to every
   class, class k from the k-th value of its leaves. `largest`: forestops_treeshap_layout's
   answer. Returns 0, or -1 when out of memory. */
int forestops_treeshap(const int32_t *parent, const int32_t *earlier, const int32_t *edge,
                       const uint8_t *is_left, const double *z, const double *value,
                       const int32_t *split, const double *threshold, const uint8_t *decision,
                       const int32_t *starts, const int32_t *inner, const int32_t *points,
                       size_t values, size_t first, size_t last, size_t K, int32_t largest,
                       const double *quad_t, const double *quad_w, const double *X, size_t rows, size_t num_features, const int32_t *explain,
                       double *out) {
  const size_t slots = (size_t)largest + 1;
  double *work = malloc(4 * slots * MAX_POINTS * sizeof *work), *p = malloc(slots * sizeof *p);
  uint8_t *left_taken = malloc(slots);
  /* per class and feature, one sum per lane: reduced once per record, not at every node */
  Lanes *phi = aligned_alloc(sizeof *phi, K * num_features * sizeof *phi);
  if (work == NULL || p == NULL || left_taken == NULL || phi == NULL) {
    free(work);
    free(p);
    free(left_taken);
    free(phi);
    return -1;
  }
  for (size_t r = 0; r < rows; r++) {
    memset(phi, 0, K * num_features * sizeof *phi);
    for (size_t tree = first; tree < last; tree++) {
      if (points[tree] == 0) continue;
      const size_t base = (size_t)starts[tree] + tree;
      const int n = points[tree];
      for (size_t k = values == 1 ? tree % K : 0; k < (values == 1 ? tree % K + 1 : K); k++) {
        if (explain[r] >= 0 && (size_t)explain[r] != k) continue;
        const Layout l = {parent + base,
                          earlier + base,
                          edge + base,
                          is_left + base,
                          z + base,
                          value + base * values + (values == 1 ? 0 : k),
                          values,
                          split + base,
                          threshold + base,
                          decision + base};
        EXPLAINS[(n + LANES - 1) / LANES](
            &l, inner[tree], starts[tree + 1] - starts[tree], X + r * num_features,
            quad_t + (size_t)n * MAX_POINTS, quad_w + (size_t)n * MAX_POINTS, work, p, left_taken,
            phi + k * num_features);
      }
    }
    for (size_t j = 0; j < K * num_features; j++) {
      double sum = 0.0;
      for (int lane = 0; lane < LANES; lane++) sum += phi[j][lane];
      out[r * K * num_features + j] += sum;
    }
  }
  free(phi);
  free(work);
  free(p);
  free(left_taken);
  return 0;
}

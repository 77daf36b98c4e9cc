"""C source for a LightGBM multiclass model: every tree an if/else nest with its constants inline.

Why code and not a tree walker: a walker (LightGBM's own, ONNX Runtime's, one written in numba
here) loads each node's feature, threshold and child before it can take the next step, so every
level waits on a chain of loads; branches with their constants in the instructions are predicted
and run ahead. Measured on a 1,169-tree, 255-leaf champion, one thread, 1,000 rows: 22-27 ms
compiled (gcc -O1), 74 ms ONNX Runtime, 80 ms a numba walker, 138-240 ms `Booster.predict`.

Why ranks: a split without missing-value handling (all of a forestops champion's) tests
`value <= threshold`, and a double constant in C is a load from the data section, a second cache
miss per node beside the code's own when one record runs through thousands of cold trees. Each
row is therefore first ranked once per feature against that feature's sorted distinct thresholds
(rank = how many are below the value, a binary search), and such a node tests `rank <= k`, k the
threshold's position, an immediate in the instruction: `value <= t[k]` exactly when fewer than
k + 1 thresholds are below the value. Measured on a 2,240-tree champion, one thread, real
records: one record 156 -> 115 us, 1,000 records 42.6 -> 33.2 us per record, raw scores equal.

Why leaves as integers: a leaf's double written as a C constant is a load from the constant pool,
a cache line of its own for each of a record's thousands of trees; its bit pattern as a 64-bit
integer is an immediate in the instruction (`movabs`), fetched with the code, and `memcpy` makes
it the same double. On a 3,465-tree champion, one thread, real records, six alternated runs: one
record 298-318 -> 274-288 us p50, a 3,000-record batch 45.0-46.8 -> 41.7-42.9 us per record, the
library 26.0 -> 19.0 MB, its compile 105 -> 94 s (`-Os` instead: 18.4 MB but 380-393 us).

Why exact: thresholds are written as C hexadecimal floats (`float.hex`) and leaf values as their
bit patterns, the exact doubles LightGBM parses from its model text; each decision is LightGBM's
`NumericalDecision` (a value within kZeroThreshold, 1e-35f, of 0 is 0, as LightGBM reads a dense
row; a NaN becomes 0 unless the node's missing type is NaN; zero- or NaN-missing values take the
default child; otherwise `value <= threshold`, as a rank above); leaves are added per class in
tree order from 0.0, as `GBDT::PredictRaw` does. The raw scores therefore equal LightGBM's bit
for bit, and only the softmax (numpy's `exp`, not the C library's) may differ in the last bit.

What it refuses (`UnsupportedModel`, the booster keeps serving): categorical splits, linear trees,
random-forest averaging and any objective but `multiclass` (softmax); forestops' encoder gives
LightGBM ordinal codes, so its champions have none of these.

The trees are split into translation units of similar size so that a multi-core machine compiles
them in parallel; the rows are taken in blocks so that one tree's code stays in cache while it runs
over a block of rows (the larger the block, the fewer times each tree's code is fetched).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from forestops.modeling.lightgbm_text import Forest, UnsupportedModel, parse_model

# Bump when the generated code changes: compiled libraries are cached under a name derived from it.
CODEGEN_VERSION = 4
ENTRY_POINT = "forestops_forest_raw"
_BLOCK_ROWS = 512  # measured on 1,000 rows: 36 ms with blocks of 64, 26 with 256, 22 with 512
_K_ZERO_THRESHOLD = "0x1.a95a5c0000000p-117"  # LightGBM's kZeroThreshold, the double of 1e-35f
_MAX_RANK = 65_535  # ranks are unsigned short; LightGBM's max_bin keeps a feature far below
_TREE_ARGS = (
    "const double *restrict X, const double *restrict Z, const unsigned short *restrict R, "
    "size_t m, size_t F, size_t K, double *restrict out"
)


@dataclass(frozen=True)
class ForestSource:
    """The C files of one forest: `units` compile separately, `main` drives them."""

    units: list[str]
    main: str


def forest_source(model_text: str, units: int) -> ForestSource:
    forest = parse_model(model_text)
    thresholds = ranked_thresholds(forest)
    ranks = [{value: rank for rank, value in enumerate(values)} for values in thresholds]
    functions = [
        _tree_function(i, tree, forest.num_class, ranks) for i, tree in enumerate(forest.trees)
    ]
    chunks = list(_balanced_chunks(functions, max(1, units)))
    unit_sources = [_unit(index, chunk) for index, chunk in enumerate(chunks)]
    return ForestSource(unit_sources, _main(forest, len(chunks), thresholds))


def ranked_thresholds(forest: Forest) -> list[list[float]]:
    """Per feature, the sorted distinct thresholds of the splits tested by rank (missing type
    None), the table a row's ranks are counted in."""
    found: list[set[float]] = [set() for _ in range(forest.num_features)]
    for tree in forest.trees:
        if int(tree["num_leaves"]) == 1:
            continue
        splits = zip(
            tree["split_feature"].split(),
            tree["threshold"].split(),
            tree["decision_type"].split(),
            strict=True,
        )
        for feature, threshold, decision in splits:
            if (int(decision) >> 2) & 3 == 0:
                found[int(feature)].add(float(threshold))
    tables = [sorted(values) for values in found]
    if any(len(values) > _MAX_RANK for values in tables):
        raise UnsupportedModel(f"a feature has more than {_MAX_RANK} distinct thresholds")
    return tables


def _tree_function(
    index: int, tree: dict[str, str], num_class: int, ranks: list[dict[float, int]]
) -> tuple[str, str]:
    """(name, definition): the tree applied to `m` rows, adding its leaf to its class's score."""
    name = f"tree_{index}"
    values = [float(v) for v in tree["leaf_value"].split()]
    klass = index % num_class
    if int(tree["num_leaves"]) == 1:
        body = f"    v = {_bits(values[0])};"
    else:
        body = "\n".join(_TreeWriter(tree, values, ranks).lines())
    definition = (
        f"static void {name}({_TREE_ARGS}) {{\n"
        f"  for (size_t i = 0; i < m; i++) {{\n"
        f"    const double *x = X + i * F, *z = Z + i * F; const unsigned short *r = R + i * F;\n"
        f"    unsigned long long v;\n"
        f"{body}\n"
        f"    double leaf;\n"
        f"    memcpy(&leaf, &v, sizeof leaf);\n"
        f"    out[i * K + {klass}] += leaf;\n"
        f"  }}\n}}\n"
    )
    return name, definition


def _bits(value: float) -> str:
    """A double's IEEE 754 bit pattern as a C unsigned 64-bit constant (see "leaves as integers")."""
    return f"{struct.unpack('<Q', struct.pack('<d', value))[0]:#x}ULL"


class _TreeWriter:
    """One tree as nested ifs, the branch more training rows took marked as the likely one."""

    def __init__(
        self, tree: dict[str, str], values: list[float], ranks: list[dict[float, int]]
    ) -> None:
        self.ranks = ranks
        self.feature = [int(v) for v in tree["split_feature"].split()]
        self.threshold = [float(v) for v in tree["threshold"].split()]
        self.decision = [int(v) for v in tree["decision_type"].split()]
        self.left = [int(v) for v in tree["left_child"].split()]
        self.right = [int(v) for v in tree["right_child"].split()]
        self.internal_count = [int(v) for v in tree.get("internal_count", "").split()]
        self.leaf_count = [int(v) for v in tree.get("leaf_count", "").split()]
        self.values = values

    def lines(self) -> Iterator[str]:
        # Iterative: LightGBM trees can be deeper than Python's recursion limit allows.
        stack: list[tuple[int | str, int]] = [(0, 0)]  # (node, or closing text; depth)
        while stack:
            item, depth = stack.pop()
            indent = "    " + "  " * depth
            if isinstance(item, str):
                yield indent + item
            elif item < 0:
                yield f"{indent}v = {_bits(self.values[~item])};"
            else:
                stack += [("}", depth), (self.right[item], depth + 1)]
                stack += [("} else {", depth), (self.left[item], depth + 1)]
                yield f"{indent}if ({self._condition(item)}) {{"

    def _condition(self, node: int) -> str:
        f, threshold = self.feature[node], self.threshold[node].hex()
        decision = self.decision[node]
        default_left = "1" if decision & 2 else "0"
        missing = (decision >> 2) & 3
        if missing == 2:  # NaN is missing: the raw value decides whether it is
            test = f"(isnan(x[{f}]) ? {default_left} : z[{f}] <= {threshold})"
        elif missing == 1:  # zero (and NaN, made zero) is missing
            test = (
                f"((z[{f}] >= -{_K_ZERO_THRESHOLD} && z[{f}] <= {_K_ZERO_THRESHOLD}) "
                f"? {default_left} : z[{f}] <= {threshold})"
            )
        else:  # no missing values: NaN counts as zero, `z[f] <= threshold` as ranks
            test = f"r[{f}] <= {self.ranks[f][self.threshold[node]]}"
        likely = self._likely_left(node)
        return test if likely is None else f"__builtin_expect({test}, {likely})"

    def _likely_left(self, node: int) -> int | None:
        if not self.internal_count or not self.leaf_count:
            return None

        def count(child: int) -> int:
            return self.leaf_count[~child] if child < 0 else self.internal_count[child]

        return int(count(self.left[node]) >= count(self.right[node]))


def _balanced_chunks(
    functions: list[tuple[str, str]], units: int
) -> Iterator[list[tuple[str, str]]]:
    """Consecutive runs of trees (tree order is summation order) of about equal source size."""
    total = sum(len(definition) for _, definition in functions)
    target, chunk, size = total / units, [], 0
    for function in functions:
        chunk.append(function)
        size += len(function[1])
        if size >= target:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _unit(index: int, functions: list[tuple[str, str]]) -> str:
    calls = "\n".join(f"  {name}(X, Z, R, m, F, K, out);" for name, _ in functions)
    definitions = "".join(definition for _, definition in functions)
    return (
        "#include <math.h>\n#include <stddef.h>\n#include <string.h>\n\n"
        f"{definitions}\n"
        f"void forestops_unit_{index}({_TREE_ARGS}) {{\n{calls}\n}}\n"
    )


def _main(forest: Forest, units: int, thresholds: list[list[float]]) -> str:
    declarations = "\n".join(f"void forestops_unit_{i}({_TREE_ARGS});" for i in range(units))
    tables = "\n".join(
        f"static const double T{f}[] = {{{', '.join(t.hex() for t in values) or '0.0'}}};"
        for f, values in enumerate(thresholds)
    )
    table_list = ", ".join(f"T{f}" for f in range(len(thresholds)))
    table_sizes = ", ".join(str(len(values)) for values in thresholds)
    calls = "\n".join(
        f"    forestops_unit_{i}(X + b * F, Z, R, m, F, K, out + b * K);" for i in range(units)
    )
    return f"""#include <math.h>
#include <stddef.h>
#include <stdlib.h>

{declarations}

/* Per feature, the sorted distinct thresholds its rank is counted in. */
{tables}
static const double *const T[] = {{{table_list}}};
static const size_t TN[] = {{{table_sizes}}};

int forestops_forest_version(void) {{ return {CODEGEN_VERSION}; }}
int forestops_forest_num_features(void) {{ return {forest.num_features}; }}
int forestops_forest_num_classes(void) {{ return {forest.num_class}; }}

/* Raw scores of n rows (row-major, num_features doubles each) added into out (n x num_classes,
   zeroed by the caller); 0, or -1 when out of memory. Z holds the block as LightGBM reads a dense
   row (|value| <= kZeroThreshold is 0), NaN replaced by 0 (a NaN-missing split tests X first); R each value's rank, the number
   of its feature's thresholds below it. */
int {ENTRY_POINT}(const double *restrict X, size_t n, double *restrict out) {{
  const size_t B = {_BLOCK_ROWS}, F = {forest.num_features}, K = {forest.num_class};
  double *Z = malloc((n < B ? n : B) * F * sizeof *Z);
  unsigned short *R = malloc((n < B ? n : B) * F * sizeof *R);
  if ((Z == NULL || R == NULL) && n > 0) {{
    free(Z);
    free(R);
    return -1;
  }}
  for (size_t b = 0; b < n; b += B) {{
    size_t m = n - b < B ? n - b : B;
    for (size_t j = 0; j < m * F; j++) {{
      double value = X[b * F + j];
      Z[j] = isnan(value) || fabs(value) <= {_K_ZERO_THRESHOLD} ? 0.0 : value;
      const double *t = T[j % F];
      size_t low = 0, high = TN[j % F];
      while (low < high) {{
        size_t middle = (low + high) / 2;
        if (t[middle] < Z[j]) low = middle + 1; else high = middle;
      }}
      R[j] = (unsigned short)low;
    }}
{calls}
  }}
  free(Z);
  free(R);
  return 0;
}}
"""

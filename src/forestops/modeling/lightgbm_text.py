"""What forestops reads of a LightGBM model's text (`Booster.model_to_string()`): the header facts
and the trees that both the compiled forest (`serving.forest_codegen`) and the TreeSHAP kernel
(`modeling.treeshap`) are generated from, and the LightGBM features neither reproduces, refused
here once for both (`UnsupportedModel`: the booster keeps answering).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lightgbm import Booster


class UnsupportedModel(ValueError):
    """The model uses a LightGBM feature the generated code does not reproduce."""


@dataclass(frozen=True)
class Forest:
    num_class: int
    num_features: int
    trees: list[dict[str, str]]  # each tree's key=value lines from the model text


def parse_model(model_text: str) -> Forest:
    """The header facts and trees of `Booster.model_to_string()`, refusing what cannot be compiled."""
    return parse_lines(model_text.splitlines())


def booster_forest(booster: Booster) -> Forest:
    """`parse_model` of the booster's text, read line by line from a file LightGBM writes.

    Why not `model_to_string()`: a full-data champion's text is ~94 MB, and decoding it, then
    splitting it, are long single calls that hold the GIL throughout (a serving replica's requests
    wait); LightGBM writes the file with the GIL released, and each line read after is a short
    call, and the text is never held three times over. Measured while laying out the kernel of a
    3,563-tree champion, a thread sleeping 1 ms at a time was held up at worst 122-255 ms before,
    27-79 ms after (benchmarks/RESULTS.md, Explanations)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.txt"
        booster.save_model(path)
        with path.open(encoding="utf-8") as lines:
            return parse_lines(lines)


def parse_lines(lines: Iterable[str]) -> Forest:
    """`parse_model` over the text's lines (newlines kept or not)."""
    header: dict[str, str] = {}
    flags: set[str] = set()
    trees: list[dict[str, str]] = []
    for line in lines:
        line = line.rstrip("\r\n")
        if line.startswith("Tree="):
            trees.append({})
        elif line == "end of trees":
            break
        elif "=" in line:
            key, value = line.split("=", 1)
            (trees[-1] if trees else header)[key] = value
        elif not trees:
            flags.add(line)
    objective = header.get("objective", "").split()
    if not objective or objective[0] != "multiclass":
        raise UnsupportedModel(f"objective {header.get('objective')!r} is not multiclass")
    if "average_output" in flags:
        raise UnsupportedModel("random-forest boosting (average_output) is not supported")
    num_class = int(header["num_class"])
    if int(header["num_tree_per_iteration"]) != num_class:
        raise UnsupportedModel("num_tree_per_iteration differs from num_class")
    for index, tree in enumerate(trees):
        if int(tree.get("num_cat", "0")) > 0:
            raise UnsupportedModel(f"tree {index} has categorical splits")
        if tree.get("is_linear", "0") != "0":
            raise UnsupportedModel(f"tree {index} is a linear tree")
    return Forest(num_class, int(header["max_feature_idx"]) + 1, trees)

"""What forestops reads of a LightGBM model's text (`Booster.model_to_string()`): the header facts
and the trees that both the compiled forest (`serving.forest_codegen`) and the TreeSHAP kernel
(`modeling.treeshap`) are generated from, and the LightGBM features neither reproduces, refused
here once for both (`UnsupportedModel`: the booster keeps answering).
"""

from __future__ import annotations

from dataclasses import dataclass


class UnsupportedModel(ValueError):
    """The model uses a LightGBM feature the generated code does not reproduce."""


@dataclass(frozen=True)
class Forest:
    num_class: int
    num_features: int
    trees: list[dict[str, str]]  # each tree's key=value lines from the model text


def parse_model(model_text: str) -> Forest:
    """The header facts and trees of `Booster.model_to_string()`, refusing what cannot be compiled."""
    head, _, body = model_text.partition("\nTree=")
    header = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    objective = header.get("objective", "").split()
    if not objective or objective[0] != "multiclass":
        raise UnsupportedModel(f"objective {header.get('objective')!r} is not multiclass")
    if "average_output" in head.splitlines():
        raise UnsupportedModel("random-forest boosting (average_output) is not supported")
    num_class = int(header["num_class"])
    if int(header["num_tree_per_iteration"]) != num_class:
        raise UnsupportedModel("num_tree_per_iteration differs from num_class")
    body = body.split("\nend of trees", 1)[0]
    trees = [
        dict(line.split("=", 1) for line in chunk.splitlines()[1:] if "=" in line)
        for chunk in ("Tree=" + body).split("\nTree=")
    ]
    for index, tree in enumerate(trees):
        if int(tree.get("num_cat", "0")) > 0:
            raise UnsupportedModel(f"tree {index} has categorical splits")
        if tree.get("is_linear", "0") != "0":
            raise UnsupportedModel(f"tree {index} is a linear tree")
    return Forest(num_class, int(header["max_feature_idx"]) + 1, trees)

"""Draw docs/architecture.png: the packages, their sizes and which imports which, read from the code.

    python tools/draw_architecture.py [--out docs/architecture.png]

The import graph is the one tests/test_layout.py checks (tools/layout_rules.py: read with `ast`,
lazy imports and modules named to importlib included), summed per package: an arrow A -> B with a
number n says that n modules of A import from B. The stages go left to right (common, preprocess,
training, inference), inference's subpackages bottom to top in their order (training and preprocess
one box each, their subpackages inside), so every arrow points left or down; an arrow that went up
would fail test_layout before it got here. (The benchmarks' runs of the commands, `python -m
inference.predict` in a subprocess to time it, are no import and no arrow.)
"""

from __future__ import annotations

import argparse
import ast
import sys
import textwrap
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tools.layout_rules import INFERENCE_ORDER, STAGES, all_imports, modules  # noqa: E402

WIDTH, HEIGHT = 2.9, 0.74  # a package's box, in axis units


def package_of(name: str) -> str:
    """The box a module belongs to: a stage, or inference's subpackage, or inference's commands."""
    parts = name.split(".")
    if parts[0] != "inference":
        return parts[0]
    if len(parts) > 1 and parts[1] in INFERENCE_ORDER:
        return f"inference.{parts[1]}"
    return "inference (commands)"


def package_edges() -> Counter:
    """(importer's package, imported package) -> how many of the importer's modules import it."""
    edges: Counter = Counter()
    for name, targets in all_imports().items():
        source = package_of(name)
        for target in {package_of(target) for target in targets if target.split(".")[0] in STAGES}:
            if target != source and target != "inference":
                edges[source, target] += 1
    return edges


def module_counts() -> Counter:
    """Modules per box (training's and preprocess' subpackages counted in their stage's box), packages'
    __init__.py not counted."""
    counts: Counter = Counter()
    for stage in STAGES:
        for name, path in modules(stage).items():
            if path.name != "__init__.py":
                counts[package_of(name)] += 1
    return counts


def summary(package: str) -> str:
    """The package docstring's first sentence, in two short lines (cut with "..." beyond)."""
    if package == "inference (commands)":
        text = "predict, detect, app, weights, calibrate, evaluate, score, bench, fit_ensemble"
    else:
        init = REPO_ROOT.joinpath(*package.split(".")) / "__init__.py"
        text = " ".join((ast.get_docstring(ast.parse(init.read_text())) or "").split()).split(". ")[0]
    lines = textwrap.wrap(text, 46)
    return "\n".join(lines[:2]) + (" ..." if len(lines) > 2 else "")


def positions() -> dict[str, tuple[float, float]]:
    places = {"common": (0.0, 1.5), "preprocess": (3.4, 3.0), "training": (6.8, 4.5)}
    for rank, sub in enumerate(INFERENCE_ORDER):
        places[f"inference.{sub}"] = (10.6, rank * 1.0)
    places["inference (commands)"] = (10.6, len(INFERENCE_ORDER) * 1.0 + 0.4)
    return places


def draw(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    places, counts, edges = positions(), module_counts(), package_edges()
    figure, axes = plt.subplots(figsize=(17, 12))
    colours = {"common": "#d9d9d9", "preprocess": "#c6dbef", "training": "#c7e9c0"}
    for package, (x, y) in places.items():
        colour = colours.get(package, "#fdd0a2" if package != "inference (commands)" else "#fc9272")
        axes.add_patch(
            FancyBboxPatch(
                (x - WIDTH / 2, y - HEIGHT / 2), WIDTH, HEIGHT, boxstyle="round,pad=0.04", fc=colour, ec="#555555"
            )
        )
        axes.text(x, y + 0.17, f"{package}  ({counts[package]})", ha="center", va="center", fontsize=9.5, weight="bold")
        axes.text(x, y - 0.13, summary(package), ha="center", va="center", fontsize=6.5, linespacing=1.1)
    for (source, target), count in sorted(edges.items()):
        (x0, y0), (x1, y1) = places[source], places[target]
        same_column = abs(x0 - x1) < 1e-6
        start = (x0 - WIDTH / 2, y0) if not same_column else (x0 + WIDTH / 2, y0)
        end = (x1 + WIDTH / 2, y1) if not same_column else (x1 + WIDTH / 2, y1)
        bend = 0.0 if not same_column else -0.25 - 0.05 * abs(y0 - y1)
        arrow = FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=9,
            lw=0.5 + 0.12 * min(count, 20),
            color="#2b5c8a" if not same_column else "#a63603",
            alpha=0.55,
            connectionstyle=f"arc3,rad={bend}",
        )
        axes.add_patch(arrow)
        if same_column and abs(y0 - y1) <= 1.01:
            axes.text(x0 + WIDTH / 2 + 0.12, (y0 + y1) / 2, str(count), fontsize=6.5, color="#a63603")
    axes.text(
        -1.3,
        -0.8,
        "Packages and their imports: an arrow says modules of one package import the other (width: how many).\n"
        "Stages left to right: common < preprocess < training < inference; inference's subpackages bottom to top.\n"
        "Data: videos -> preprocess (boxes, crops, landmarks, folds) -> training (checkpoints)\n"
        "-> inference (scores, submission, verdicts).",
        fontsize=9,
        va="top",
    )
    top = len(INFERENCE_ORDER) + 1.0
    axes.set_xlim(-1.5, 10.6 + WIDTH / 2 + 0.4 * top)  # room for the arcs between inference's subpackages
    axes.set_ylim(-2.0, top)
    axes.axis("off")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.partial.png")
    figure.savefig(temporary, dpi=110, bbox_inches="tight")
    plt.close(figure)
    temporary.replace(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "architecture.png", help="the picture")
    args = parser.parse_args(argv)
    draw(args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

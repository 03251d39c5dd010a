"""Tables for people: plain text for the terminal, Markdown and CSV for files."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def text_table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> str:
    """Left-aligned columns separated by two spaces, with a header and a rule."""
    cells = [[str(c) for c in columns]] + [[_cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> str:
    head = "| " + " | ".join(columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(_cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def csv_table(
    rows: Sequence[dict[str, object]], columns: Sequence[str], digits: int | None = None
) -> str:
    """CSV with a header; floats at full precision unless `digits` is given."""
    if digits is not None:
        rows = [
            {k: round(v, digits) if isinstance(v, float) else v for k, v in r.items()} for r in rows
        ]
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def interval_rows(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Copies of `rows` with each fraction at `keys` shown in percent with its interval from
    row["intervals"], as "73.30 (71.90-74.60)"."""
    out = []
    for r in rows:
        cells = {}
        for k in keys:
            low, high = r["intervals"][k]
            cells[k] = f"{100 * r[k]:.2f} ({100 * low:.2f}-{100 * high:.2f})"
        out.append(r | cells)
    return out


def format_number(value: float) -> str:
    """Enough digits to tell grid values apart (0.000313, 1000, 0.5)."""
    return f"{value:.6g}"


def _save_figure(fig: object, path: str | Path) -> None:
    from . import files

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")  # type: ignore[attr-defined]
    files.write_bytes(path, buffer.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_score_histogram(
    path: str | Path, id_scores: np.ndarray, ood_scores: np.ndarray, ood_name: str, method: str
) -> None:
    """Overlaid histograms of ID and OOD scores (each bar: the fraction of its set), as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    both = np.concatenate([id_scores, ood_scores])
    bins = np.linspace(both.min(), both.max() + 1e-12, 60)
    for scores, label in ((id_scores, "ID"), (ood_scores, ood_name)):
        weights = np.full(len(scores), 1.0 / len(scores))
        ax.hist(scores, bins=bins, weights=weights, alpha=0.6, label=f"{label} (n={len(scores)})")
    ax.ticklabel_format(axis="x", useOffset=False)
    ax.set_xlabel(f"{method} score (higher = more in-distribution)")
    ax.set_ylabel("fraction of the set's images")
    ax.legend()
    _save_figure(fig, path)
    plt.close(fig)


def plot_roc(
    path: str | Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], method: str
) -> None:
    """ROC curves (ID positive) of every OOD set in one PNG."""
    from .metrics import auroc, roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    for name, (ids, oods) in curves.items():
        fpr, tpr, _ = roc_curve(ids, oods)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {100 * auroc(ids, oods):.1f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate (OOD accepted)")
    ax.set_ylabel("true positive rate (ID accepted)")
    ax.set_title(method)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    _save_figure(fig, path)
    plt.close(fig)


def replace_section(text: str, name: str, body: str) -> str:
    """Put `body` between <!-- name:start --> and <!-- name:end --> in `text` (appended if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        return text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    return text.rstrip() + "\n\n" + block + "\n"


def read_section(text: str, name: str) -> str | None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in text and end in text:
        return text[text.index(start) + len(start) : text.index(end)].strip()
    return None

import csv
import io

import numpy as np

from leaveout.reports import (
    csv_table,
    markdown_table,
    plot_roc,
    plot_score_histogram,
    read_section,
    replace_section,
    text_table,
)

ROWS = [{"ood": "uniform", "AUROC": 99.123}, {"ood": "gaussian", "AUROC": 50.0}]


def test_tables():
    assert markdown_table(ROWS, ["ood", "AUROC"]).splitlines() == [
        "| ood | AUROC |",
        "| --- | --- |",
        "| uniform | 99.12 |",
        "| gaussian | 50.00 |",
    ]
    lines = text_table(ROWS, ["ood", "AUROC"]).splitlines()
    assert lines[0].split() == ["ood", "AUROC"] and lines[2].split() == ["uniform", "99.12"]
    parsed = list(csv.DictReader(io.StringIO(csv_table(ROWS, ["ood", "AUROC"]))))
    assert parsed[0] == {"ood": "uniform", "AUROC": "99.123"}


def test_sections_are_replaced_in_place_or_appended():
    text = replace_section("# Title\n", "ablation", "first")
    assert read_section(text, "ablation") == "first"
    again = replace_section(text + "\nafter\n", "ablation", "second")
    assert read_section(again, "ablation") == "second" and again.count("ablation:start") == 1
    assert again.endswith("after\n") and read_section("none", "ablation") is None


def test_plots_are_png(tmp_path):
    rng = np.random.default_rng(0)
    ids, oods = rng.normal(1, 1, 100), rng.normal(0, 1, 80)
    plot_score_histogram(tmp_path / "h.png", ids, oods, "noise", "leaveout")
    plot_roc(tmp_path / "r.png", {"noise": (ids, oods)}, "leaveout")
    for name in ("h.png", "r.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

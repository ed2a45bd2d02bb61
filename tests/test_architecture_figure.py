"""examples/make_architecture_figure.py draws the README's figure, and the files it names exist."""

import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_figure_is_drawn_and_names_files_that_exist(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    figure = importlib.import_module("make_architecture_figure")
    for step, where, _ in figure.TRIAL_PATH:
        assert (ROOT / "stacey_lightning" / where.split(":")[0]).is_file(), step
    figure.draw(tmp_path / "architecture.png")
    assert (tmp_path / "architecture.png").stat().st_size > 10_000

"""``attribkit demo``'s comparison grid: one method per main family by default (8 columns
with the image; the full demo had 17, 3741 px wide), every built-in method on request."""

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

from attribkit.api import methods
from attribkit.cli import build_parser
from attribkit.demo import COMPARED, compared_methods
from attribkit.errors import UnknownMethodError
from attribkit.testing import TinyCNN
from attribkit.viz import compare

EVERY = ["saliency", "gradcam", "lrp"]


def test_default_is_one_method_per_main_family_and_all_on_request():
    assert compared_methods(None, EVERY) == list(COMPARED)
    assert compared_methods(["all"], EVERY) == EVERY
    assert compared_methods(["gradcam", "grad_cam"], EVERY) == ["gradcam", "grad_cam"]
    with pytest.raises(UnknownMethodError, match="gradcm"):
        compared_methods(["gradcm"], EVERY)
    registered = {s.name: s for s in methods()}
    assert set(COMPARED) <= set(registered)
    assert {registered[m].family for m in COMPARED} == {"gradient", "lrp", "cam"}
    assert len(COMPARED) + 1 <= 8  # the image column makes the eighth


def test_default_grid_has_at_most_8_columns():
    torch.manual_seed(0)
    model = TinyCNN().eval()
    fig = compare(model, torch.rand(2, 3, 16, 16), methods=compared_methods(None, EVERY))
    FigureCanvasAgg(fig).draw()
    images = [ax for ax in fig.axes if ax.get_images()]
    columns = {round(ax.get_position().x0, 3) for ax in images}
    assert len(columns) == 8 and len(images) == 16


def test_cli_passes_compare_through():
    parser = build_parser()
    assert parser.parse_args(["demo"]).compare is None
    assert parser.parse_args(["demo", "--compare", "all"]).compare == ["all"]
    assert parser.parse_args(["demo", "--compare", "saliency", "gradcam"]).compare == ["saliency", "gradcam"]


def test_the_demo_profile_is_the_short_benchmark():
    from attribkit.bench.config import BenchConfig
    from attribkit.bench.profiles import profile

    demo, quick = profile("demo"), profile("quick")
    assert demo["n_images"] == 16 and demo["speed_batch"] == 8 and demo["repeats"] == quick["repeats"]
    assert demo["metrics"] == ("pointing_game", "relevance_mass_accuracy", "deletion_auc")
    assert BenchConfig(out="x", profile="demo", n_images=32).settings()["n_images"] == 32
    with pytest.raises(ValueError, match="quick, demo, full"):
        profile("nope")


def test_make_demo_lets_openmp_threads_sleep():
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("needs make")
    root = Path(__file__).resolve().parents[1]
    plan = subprocess.run(["make", "-n", "-C", str(root), "demo", "VENV=/nonexistent/venv", "-o",
                           "/nonexistent/venv/.attribkit-installed"], capture_output=True, text=True).stdout
    assert "OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} /nonexistent/venv/bin/attribkit demo" in plan


def test_compare_default_is_the_main_families_and_all_is_every_method():
    torch.manual_seed(0)
    model = TinyCNN().eval()
    fig = compare(model, torch.rand(1, 3, 16, 16))  # methods=None
    FigureCanvasAgg(fig).draw()
    columns = {round(ax.get_position().x0, 3) for ax in fig.axes if ax.get_images()}
    assert len(columns) == 8
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the methods that do not apply to this model are skipped, warned
        every = compare(model, torch.rand(1, 3, 16, 16), methods="all")
    FigureCanvasAgg(every).draw()
    assert len({round(ax.get_position().x0, 3) for ax in every.axes if ax.get_images()}) > 8

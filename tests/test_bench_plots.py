"""The speed charts (the PNG of the bench report and the SVG of its HTML page) show
every name whole, however long ("ablationcam (pytorch-grad-cam)" was cut on the left)."""

import re

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

from attribkit.report.svg import bar_chart
from attribkit.viz import plot_speed

NAMES = ["gradcam", "ablationcam (pytorch-grad-cam)", "captum.layer_integrated_gradients (captum)",
         "a_method_with_a_really_quite_long_name.and_a_variant (pytorch-grad-cam)"]


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_png_speed_chart_keeps_every_label_inside_the_figure(count):
    names = NAMES[:count]
    fig = plot_speed({n: float(i + 1) for i, n in enumerate(names)}, floor=1.0, unit="× floor")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    labels = {t.get_text(): t.get_window_extent(renderer) for t in ax.get_yticklabels()}
    assert set(labels) == set(names)
    for name, box in labels.items():
        assert box.x0 >= fig.bbox.x0 and box.x1 <= ax.get_window_extent(renderer).x0, name
    assert ax.get_window_extent(renderer).width >= 3.5 * fig.dpi  # the bars keep their room


def _text_px(text: str, size: float = 11.0) -> float:
    """Width of ``text`` at ``size`` px in DejaVu Sans (matplotlib's font, wider than most sans-serif)."""
    width, _height, _descent = TextToPath().get_text_width_height_descent(
        text, FontProperties(family="DejaVu Sans", size=size), ismath=False)
    return width


def test_svg_bar_chart_gives_the_longest_name_its_width():
    values = {n: float(i + 1) for i, n in enumerate(NAMES)}
    svg = bar_chart(values, title="time per batch / floor", unit="× floor", reference=1.0)
    width = float(re.search(r'<svg[^>]* width="(\d+)"', svg).group(1))
    # each name is right-aligned at x = left - 6: it must start at or right of 0
    anchors = dict(re.findall(r'<text x="([\d.]+)" y="[\d.]+" text-anchor="end">([^<]+)</text>', svg)[i][::-1]
                   for i in range(len(NAMES)))
    for name in NAMES:
        assert float(anchors[name]) - _text_px(name) >= 0, (name, anchors[name], _text_px(name))
    bars = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"', svg)]
    assert max(bars) == pytest.approx(460 - 170 - 70, abs=1)  # the bars keep their room
    assert width > 460
    short = bar_chart({"gradcam": 1.0}, title="t", unit="u")
    assert 'width="460"' in short  # short names: the chart as before

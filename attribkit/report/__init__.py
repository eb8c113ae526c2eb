"""The self-contained HTML report of a dataset store or a bench run folder.

``ak.write_report(RUN, out="report.html")`` (:func:`write_report`) writes one HTML file
with its pictures as data URIs and its CSS and script inline: it needs no
server and nothing from the network, and it opens from ``file://``.

- :mod:`~attribkit.report.store`: an ``explain_dataset`` store, one row per image;
  its pictures come from :mod:`~attribkit.report.pictures`, and
  :mod:`~attribkit.report.classes` decides whether labels and predictions name the
  same classes.
- :mod:`~attribkit.report.bench`: an ``attribkit bench`` folder, tables and curves.
- :mod:`~attribkit.report.text`: token attributions, a row per text, a column per method
  (its pieces in :mod:`~attribkit.report.text_cells`).
- :mod:`~attribkit.report.page`: the page shell, its CSS and its script.
- :mod:`~attribkit.report.svg`: the inline SVG charts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_report(run: Any, out: str | Path | None = None, **options: Any) -> Path:
    """Write the HTML report of ``run`` to ``out`` and return its path.

    ``run`` is an :class:`~attribkit.datasets.store.AttributionStore`, the path of
    one (``RUN.zarr``), a bench run folder (``attribkit bench --out DIR``), or token
    attributions: a :class:`~attribkit.text.result.TokenAttribution` or a dict of them by
    method, written by :func:`~attribkit.report.text.write_text_report` (``metrics=``,
    ``evidence=``, ``title=``, ``ids=``; ``out`` defaults to ``report.html``).
    ``options`` go to :func:`~attribkit.report.store.store_report` (``images=``,
    ``class_names=``, ``model_classes=``, ``size=``, ``limit=``, ...) or
    :func:`~attribkit.report.bench.bench_report` (``title=``).
    """
    from attribkit.report.bench import bench_report, is_bench_folder

    if _token_results(run):
        from attribkit.report.text import write_text_report

        return write_text_report("report.html" if out is None else out, run, **options)
    if isinstance(run, (str, Path)) and is_bench_folder(run):
        return bench_report(run, out, **options)
    if isinstance(run, (str, Path)) and not (Path(run) / "zarr.json").is_file():
        raise FileNotFoundError(2, "neither a dataset store (RUN.zarr, from explain-dataset) nor a bench "
                                   "run folder (with results.json)", str(run))
    from attribkit.report.store import store_report

    return store_report(run, out, **options)


def _token_results(run: Any) -> bool:
    """Whether ``run`` is token attributions: one, or a dict of them."""
    from attribkit.text.result import TokenAttribution

    if isinstance(run, dict):
        return bool(run) and all(isinstance(r, TokenAttribution) for r in run.values())
    return isinstance(run, TokenAttribution)


__all__ = ["write_report"]

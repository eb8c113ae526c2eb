"""The HTML report of token attributions: a row per text, a column per method.

``write_text_report(path, {"saliency": r1, "occlusion": r2}, metrics=...)`` writes one
self-contained page (the shell of :mod:`attribkit.report.page`: inline CSS and
script, nothing fetched). Each method's column shows every text's tokens
highlighted on that method's diverging scale (its colour bar in the header),
special tokens dimmed, the value in each token's tooltip; a continuation
(``result.matrix``) adds a folded output x input token heat map per text. The
per-text metric scores are columns too, and a summary table gives each
method's mean per metric. Clicking a header sorts the rows (the only thing the
script does: the content reads without JavaScript). :func:`text_section_html`
is the same content without the page, for other reports to embed, and
:func:`text_data` its numbers as JSON-ready data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attribkit.errors import InputError
from attribkit.report.page import esc, number, page, sort_value, write
from attribkit.report.text_cells import CSS, colour_bar, matrix_html, tokens_html
from attribkit.text.result import TokenAttribution, token_numpy

Results = Mapping[str, TokenAttribution]
Metrics = Mapping[str, Mapping[str, Any]]


def _as_results(results: Any) -> dict[str, TokenAttribution]:
    if isinstance(results, TokenAttribution):
        return {results.method: results}
    if not isinstance(results, Mapping) or not results:
        raise InputError("results must be a TokenAttribution or a non-empty dict of method name -> "
                         f"TokenAttribution; got {type(results).__name__}")
    for name, result in results.items():
        if not isinstance(result, TokenAttribution):
            raise InputError(f"results[{name!r}] is a {type(result).__name__}, not a TokenAttribution "
                             "(ak.explain on text returns one)")
    return {str(name): result for name, result in results.items()}


def _check(results: dict[str, TokenAttribution], metrics: Metrics | None,
           evidence: Sequence[Sequence[bool]] | None, ids: Sequence[Any] | None) -> dict[str, dict[str, np.ndarray]]:
    """Every argument checked against the first result's texts; the metrics as float arrays."""
    first_name, first = next(iter(results.items()))
    n = len(first.tokens)
    for name, result in results.items():
        if result.tokens != first.tokens:
            raise InputError(f"results[{name!r}] explains other texts (or other tokens) than "
                             f"results[{first_name!r}]: a text report compares methods on the same texts")
    scores: dict[str, dict[str, np.ndarray]] = {}
    for name, per_metric in (metrics or {}).items():
        if name not in results:
            raise InputError(f"metrics name the method {name!r}, which has no result; results: "
                             f"{', '.join(results)}")
        scores[name] = {}
        for metric, values in per_metric.items():
            array = token_numpy(values).reshape(-1)
            if array.shape != (n,):
                raise InputError(f"metrics[{name!r}][{metric!r}] has {array.size} scores for {n} texts")
            scores[name][str(metric)] = array
    if evidence is not None:
        if len(evidence) != n:
            raise InputError(f"evidence has {len(evidence)} rows for {n} texts")
        width = first.numpy().shape[1]
        for i, marks in enumerate(evidence):
            if len(marks) not in (len(first.tokens[i]), width):
                raise InputError(f"evidence[{i}] has {len(marks)} marks for the {len(first.tokens[i])} "
                                 f"tokens of text {i} (or {width}, padded as the values)")
    if ids is not None and len(ids) != n:
        raise InputError(f"ids has {len(ids)} names for {n} texts")
    return scores


def _arrays(result: TokenAttribution) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``values``, the tokens that carry a value, the special tokens: ``(B, T)`` each."""
    values = result.numpy().astype(np.float64)
    shown = np.asarray(token_numpy(result.mask) if result.mask is not None else np.ones_like(values), bool)
    special = (np.asarray(token_numpy(result.special), bool) if result.special is not None
               else np.zeros_like(shown))
    return values, shown & np.isfinite(values), special


def _scale(values: np.ndarray, shown: np.ndarray) -> float:
    """The largest magnitude of ``values`` where ``shown`` (0 when nothing is shown)."""
    picked = np.abs(values[shown])
    return float(picked.max()) if picked.size else 0.0


def _matrix_shown(result: TokenAttribution, shown: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``(B, T_out, T)`` matrix and which of its cells hold a value, or ``None``."""
    if result.matrix is None or not result.output_tokens:
        return None
    matrix = token_numpy(result.matrix)
    valid = np.zeros(matrix.shape, bool)
    for i, outs in enumerate(result.output_tokens):
        valid[i, :len(outs)] = shown[i, None, :]
    return matrix, valid & np.isfinite(matrix)


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _directions(metrics: Sequence[str]) -> dict[str, bool | None]:
    """Whether a higher score is better, per metric (``None``: not a registered metric)."""
    from attribkit.api import get_metric

    found: dict[str, bool | None] = {}
    for name in metrics:
        try:
            found[name] = bool(get_metric(name).higher_is_better)
        except Exception:  # noqa: BLE001 - a name of the caller's own: no arrow
            found[name] = None
    return found


def _target(result: TokenAttribution, i: int) -> str:
    if result.output_tokens:
        return " ".join(result.output_tokens[i])
    if result.target is not None:
        return str(token_numpy(result.target).reshape(-1)[i].astype(int))
    return ""


def _sort_th(key: str, label: str, cls: str = "num") -> str:
    return (f"<th scope=\"col\" class=\"{cls}\" data-key=\"{key}\"><button type=\"button\" class=\"sort\">"
            f"{label}</button></th>")


def _summary(names: list[str], scores: dict[str, dict[str, np.ndarray]], metric_names: list[str],
             higher: dict[str, bool | None]) -> str:
    """The methods x metrics table of means (± standard error over the texts), sortable."""
    if not metric_names:
        return ""
    arrow = {True: " ↑", False: " ↓", None: ""}
    head = [_sort_th("method", "method", "")] + [_sort_th(f"k{k}", f"{esc(m)}{arrow[higher[m]]}")
                                                  for k, m in enumerate(metric_names)]
    means = {(m, k): _mean_sem(scores.get(m, {}).get(k)) for m in names for k in metric_names}
    best = {}
    for k in metric_names:
        found = [means[m, k][0] for m in names if means[m, k][0] is not None]
        best[k] = (max(found) if higher[k] else min(found)) if found and higher[k] is not None else None
    rows = []
    for m in names:
        cells = [f"<th scope=\"row\" data-key=\"method\" data-value=\"{esc(m)}\">{esc(m)}</th>"]
        for j, k in enumerate(metric_names):
            mean, sem, count = means[m, k]
            cls = "num best" if mean is not None and mean == best[k] else "num"
            text = "" if count == 0 else f"{number(mean)} <span class=\"sem\">± {number(sem)} (n={count})</span>"
            cells.append(f"<td class=\"{cls}\" data-key=\"k{j}\" data-value=\"{sort_value(mean)}\">{text}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return ("<h2>Methods × metrics</h2><p class=\"note\">Mean ± standard error over the texts with a score; "
            "the best per metric in bold. Click a header to sort.</p><table id=\"text-summary\" "
            f"class=\"sortable\"><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _mean_sem(values: np.ndarray | None) -> tuple[float | None, float | None, int]:
    if values is None:
        return None, None, 0
    finite = values[np.isfinite(values)]
    if not finite.size:
        return None, None, 0
    sem = float(finite.std(ddof=1) / np.sqrt(finite.size)) if finite.size > 1 else None
    return float(finite.mean()), sem, int(finite.size)


def text_section_html(results: Results | TokenAttribution, metrics: Metrics | None = None, *,
                      evidence: Sequence[Sequence[bool]] | None = None, ids: Sequence[Any] | None = None,
                      table_id: str = "texts") -> str:
    """The text report's content without the page: its own ``<style>``, the summary table of
    metric means (when there are metrics) and the table of texts (``id=table_id``), both
    ``class="sortable"`` for :mod:`attribkit.report.page`'s script. Arguments as
    :func:`write_text_report`; ``ids`` names the rows (default ``0, 1, ...``)."""
    results = _as_results(results)
    scores = _check(results, metrics, evidence, ids)
    names = list(results)
    first = results[names[0]]
    metric_names = list(dict.fromkeys(k for per in scores.values() for k in per))
    higher = _directions(metric_names)
    arrays = {m: _arrays(r) for m, r in results.items()}
    scales = {m: _scale(v, s & ~sp if (s & ~sp).any() else s) for m, (v, s, sp) in arrays.items()}
    matrices = {m: _matrix_shown(r, arrays[m][1]) for m, r in results.items()}
    matrix_scales = {m: _scale(*found) for m, found in matrices.items() if found is not None}

    head = [_sort_th("n", "#", ""), _sort_th("length", "tokens"), "<th scope=\"col\">target</th>"]
    for m in names:
        head.append(f"<th scope=\"col\">{esc(m)}{colour_bar(scales[m], m)}</th>")
    columns = [(j, m, k) for j, m in enumerate(names) for k in scores.get(m, {})]
    for j, m, k in columns:
        arrow = {True: " ↑", False: " ↓", None: ""}[higher[k]]
        head.append(_sort_th(f"m{j}k{metric_names.index(k)}", f"{esc(k)}{arrow}<br>{esc(m)}"))
    rows = []
    for i, tokens in enumerate(first.tokens):
        name = str(ids[i]) if ids is not None else str(i)
        cells = [f"<th scope=\"row\" class=\"id\" data-key=\"n\" data-value=\"{i}\">{esc(name)}</th>",
                 f"<td class=\"num\" data-key=\"length\" data-value=\"{len(tokens)}\">{len(tokens)}</td>",
                 f"<td>{esc(_target(first, i))}</td>"]
        for j, m in enumerate(names):
            values, shown, special = arrays[m]
            marks = [bool(e) for e in evidence[i]][:len(tokens)] if evidence is not None else None
            body = tokens_html(tokens, values[i], shown[i], special[i], marks, scales[m])
            result = results[m]
            if matrices[m] is not None:
                outs = result.output_tokens[i]
                body += (f" <span class=\"continuation\">→ {' '.join(f'<span class=tok>{esc(o)}</span>' for o in outs)}"
                         "</span>")
                body += matrix_html(tokens, outs, matrices[m][0][i], shown[i], matrix_scales[m], m)
            cells.append(f"<td data-m=\"{j}\"><div class=\"tokens\">{body}</div></td>")
        for j, m, k in columns:
            value = scores[m][k][i]
            cells.append(f"<td class=\"num\" data-key=\"m{j}k{metric_names.index(k)}\" "
                         f"data-value=\"{sort_value(value)}\">{number(value)}</td>")
        rows.append(f"<tr data-row=\"{i}\" data-text-id=\"{esc(name)}\">{''.join(cells)}</tr>")
    note = ("<p class=\"note\">A row per text, a column per method: each token's colour gives its value on the "
            "method's own scale (red positive, blue negative; hover for the value); special tokens and tokens "
            "without a value are grey" + ("; ground-truth tokens are outlined" if evidence is not None else "")
            + ". Click a header to sort the rows.</p>")
    table = (f"<h2>Texts</h2>{note}<div class=\"table-wrap\"><table id=\"{esc(table_id)}\" class=\"sortable\">"
             f"<thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")
    return (f"<div class=\"text-report\"><style>{CSS}</style>"
            f"{_summary(names, scores, metric_names, higher)}{table}</div>")



def _floats(values: np.ndarray) -> list:
    """An array as nested lists of floats, ``None`` for a non-finite value (JSON has no NaN)."""
    if values.ndim == 0:
        return _finite(values)  # type: ignore[return-value]
    return [_floats(v) for v in values]


def text_data(results: Results | TokenAttribution, metrics: Metrics | None = None) -> dict[str, Any]:
    """The report's numbers as JSON-ready data: per text its tokens, and per method the
    values of its tokens, its per-output-token matrix (continuations) and its metric scores."""
    results = _as_results(results)
    scores = _check(results, metrics, None, None)
    first = next(iter(results.values()))
    texts = []
    for i, tokens in enumerate(first.tokens):
        row: dict[str, Any] = {"tokens": list(tokens), "values": {}, "metrics": {}}
        if first.output_tokens:
            row["output_tokens"] = list(first.output_tokens[i])
            row["matrix"] = {}
        for m, result in results.items():
            row["values"][m] = _floats(result.numpy()[i, :len(tokens)].astype(np.float64))
            if result.matrix is not None and result.output_tokens:
                matrix = token_numpy(result.matrix)[i, :len(result.output_tokens[i]), :len(tokens)]
                row.setdefault("matrix", {})[m] = _floats(matrix)
            row["metrics"][m] = {k: _finite(v[i]) for k, v in scores.get(m, {}).items()}
        texts.append(row)
    return {"kind": "text", "methods": list(results), "texts": texts}


def write_text_report(path: str | Path, results: Results | TokenAttribution, metrics: Metrics | None = None,
                      title: str = "Token attributions", evidence: Sequence[Sequence[bool]] | None = None,
                      *, ids: Sequence[Any] | None = None) -> Path:
    """Write the self-contained HTML report of token attributions to ``path``; returns it.

    Args:
        path: the HTML file to write (parent folders are made).
        results: method name -> :class:`~attribkit.text.result.TokenAttribution`, all on
            the same texts (or one result, named by its method).
        metrics: ``metrics[method][metric]``: one score per text (``NaN``: none); shown per
            text (sortable) and as means in a methods x metrics table.
        title: the page's title.
        evidence: per text, one bool per token (or a ``(B, T)`` array padded as ``values``):
            the ground-truth tokens, outlined.
        ids: the rows' names (default ``0, 1, ...``).
    """
    results = _as_results(results)
    body = text_section_html(results, metrics, evidence=evidence, ids=ids)
    first = next(iter(results.values()))
    subtitle = f"{len(first.tokens)} texts · {len(results)} methods"
    return write(page(title, body, text_data(results, metrics), subtitle=subtitle), path)

"""The page shell shared by both reports: one HTML file with its CSS, script and data inline.

Nothing is fetched: a Content-Security-Policy meta tag allows only inline
styles and scripts and ``data:`` images, so the file works from ``file://``,
offline, and cannot reach the network even by mistake. The data a script
needs is one JSON object in ``<script type="application/json" id="report-data">``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")


def esc(value: Any) -> str:
    """``value`` as text safe in HTML content and attribute values."""
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int = 3) -> str:
    """A score as short text: ``0.123``, ``1.2e-05``; ``—`` for a missing or NaN value."""
    if value is None:
        return "—"
    value = float(value)
    if not math.isfinite(value):
        return "—"
    if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 10 ** 5):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def sort_value(value: Any) -> str:
    """A cell's ``data-value`` for sorting: the number, or empty (sorted last) when missing."""
    if value is None:
        return ""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return ""
    return repr(value) if math.isfinite(value) else ""


def data_uri(image: np.ndarray, *, fmt: str = "JPEG", quality: int = 85) -> str:
    """An ``(H, W, 3)`` float image in ``[0, 1]`` or an ``(H, W)`` uint8 map as a base64 data URI."""
    from PIL import Image

    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    picture = Image.fromarray(image)
    if fmt == "JPEG":
        picture.save(buffer, "JPEG", quality=quality, optimize=True)
    else:
        picture.save(buffer, "PNG", optimize=True)
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def colormap_lut(name: str) -> list[list[int]]:
    """The matplotlib colormap ``name`` as 256 RGB triples (0-255), for the script."""
    from matplotlib import colormaps

    rgb = np.asarray(colormaps[name](np.linspace(0.0, 1.0, 256)))[:, :3]
    return (rgb * 255 + 0.5).astype(int).tolist()


def gradient_css(lut: Sequence[Sequence[int]], stops: int = 9) -> str:
    """A CSS ``linear-gradient`` through ``stops`` colours of ``lut`` (a colour bar)."""
    picks = [lut[round(i * (len(lut) - 1) / (stops - 1))] for i in range(stops)]
    colours = ", ".join(f"rgb({r},{g},{b}) {100 * i / (stops - 1):.0f}%" for i, (r, g, b) in enumerate(picks))
    return f"linear-gradient(90deg, {colours})"


#: the characters that could end or change an inline script (``</script>``, ``<!--``, ``]]>``, an
#: entity) or a JavaScript string (the line separators), as JSON's ``\\uXXXX`` escapes
HTML_SAFE_JSON = str.maketrans({c: f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"})


def json_script(data: Any) -> str:
    """``data`` as JSON safe inside a ``<script type="application/json">``: ``<``, ``>``, ``&``,
    U+2028 and U+2029 written as ``\\uXXXX`` (``JSON.parse`` reads them back unchanged), so no
    value, whatever it holds (``</script>``, ``<!--``), can end or change the script."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.translate(HTML_SAFE_JSON)


def page(title: str, body: str, data: Any, *, subtitle: str = "") -> str:
    """The whole HTML document: ``body`` (HTML), ``data`` for the script, the CSS and script inline."""
    head = f"<p class=\"subtitle\">{esc(subtitle)}</p>" if subtitle else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{esc(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header><h1>{esc(title)}</h1>{head}</header>
<main>
{body}
</main>
<script type="application/json" id="report-data">{json_script(data)}</script>
<script>{SCRIPT}</script>
</body>
</html>
"""


def write(text: str, out: str | Path) -> Path:
    """Write the page to ``out`` (parent folders created); returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


CSS = """
:root { --fg: #1d2230; --muted: #5b6475; --line: #d9dde5; --bg: #f7f8fa; --accent: #2b5fd9; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); }
header { padding: 14px 20px 6px; background: #fff; border-bottom: 1px solid var(--line); }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
.subtitle, .note { color: var(--muted); margin: 2px 0 8px; }
main { padding: 10px 20px 40px; }
.controls { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; padding: 8px 0 10px; }
.controls label { display: inline-flex; gap: 6px; align-items: center; }
.controls fieldset { border: 1px solid var(--line); border-radius: 6px; padding: 2px 10px; margin: 0;
                     display: inline-flex; gap: 10px; }
.controls legend { color: var(--muted); font-size: 12px; padding: 0 4px; }
select, button { font: inherit; }
table { border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: middle; }
thead th { position: sticky; top: 0; background: #fff; z-index: 1; font-weight: 600;
           box-shadow: 0 1px 0 var(--line); vertical-align: bottom; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
th button.sort { all: unset; cursor: pointer; display: inline-flex; gap: 4px; align-items: baseline; }
th button.sort:focus-visible, button.cell:focus-visible, .viewer button:focus-visible
  { outline: 2px solid var(--accent); outline-offset: 2px; }
th button.sort::after { content: "\\25B8"; color: #a0a7b4; font-size: 11px; }
th[aria-sort="ascending"] button.sort::after { content: "\\25B4"; color: var(--accent); }
th[aria-sort="descending"] button.sort::after { content: "\\25BE"; color: var(--accent); }
button.cell { padding: 0; border: 0; background: none; cursor: zoom-in; display: block; line-height: 0; }
button.cell img, button.cell canvas { display: block; border-radius: 3px; }
.cbar { display: block; width: 100%; min-width: 90px; height: 8px; border-radius: 2px; margin-top: 4px; }
.cbar-scale { display: flex; justify-content: space-between; font-size: 11px; color: var(--muted);
              font-weight: 400; gap: 6px; }
.wrong { color: #b3261e; }
.best { font-weight: 700; }
.id { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; max-width: 220px;
      overflow-wrap: anywhere; }
.sem { color: var(--muted); font-size: 12px; }
.count { color: var(--muted); }
.figures { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 4px; max-width: 460px; }
.viewer figcaption { max-width: 260px; }
.viewer svg { width: 260px; height: 260px; }
svg text { font: 11px system-ui, sans-serif; fill: var(--fg); }
svg .axis { stroke: #8a92a1; stroke-width: 1; }
svg .grid { stroke: #e6e9ef; stroke-width: 1; }
dialog.viewer { border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; max-width: 96vw; }
dialog.viewer::backdrop { background: rgba(20, 24, 33, 0.55); }
.viewer-head { display: flex; justify-content: space-between; gap: 20px; align-items: baseline; }
.viewer-head h2 { margin: 0; }
.viewer .tabs { display: flex; gap: 6px; margin: 8px 0; flex-wrap: wrap; }
.viewer .tabs button { border: 1px solid var(--line); background: #fff; border-radius: 4px; padding: 2px 10px;
                       cursor: pointer; }
.viewer .tabs button[aria-pressed="true"] { background: var(--accent); color: #fff; border-color: var(--accent); }
.viewer .panes { display: flex; gap: 14px; flex-wrap: wrap; align-items: flex-start; }
.viewer .panes canvas, .viewer .panes img { width: 260px; height: 260px; image-rendering: auto;
                                            border-radius: 4px; background: #eee; }
.viewer .hint { color: var(--muted); font-size: 12px; }
ul.plain { padding-left: 18px; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);

  // ------------------------------------------------------------ sorting (both reports)
  function cellValue(row, key) {
    var cell = row.querySelector('[data-key="' + key + '"]');
    if (!cell) { return null; }
    var raw = cell.getAttribute("data-value");
    if (raw === null || raw === "") { return null; }
    var num = Number(raw);
    return isNaN(num) ? raw : num;
  }
  function sortTable(table, th) {
    var key = th.getAttribute("data-key");
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.querySelectorAll("thead th[aria-sort]"), function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, i) { return [cellValue(row, key), i, row]; });
    keyed.sort(function (a, b) {
      if (a[0] === null || b[0] === null) {            // missing values last, either way
        return (a[0] === null) - (b[0] === null) || a[1] - b[1];
      }
      var c = (typeof a[0] === "number" && typeof b[0] === "number") ? a[0] - b[0]
        : String(a[0]).localeCompare(String(b[0]), undefined, {numeric: true});
      return (ascending ? c : -c) || a[1] - b[1];
    });
    var frag = document.createDocumentFragment();
    keyed.forEach(function (k) { frag.appendChild(k[2]); });
    body.appendChild(frag);
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.querySelectorAll("thead th[data-key]"), function (th) {
      var button = th.querySelector("button.sort");
      if (button) { button.addEventListener("click", function () { sortTable(table, th); }); }
    });
  });

  if (DATA.kind !== "store") { return; }

  // ------------------------------------------------------------ store report: maps on canvases
  var LUT = DATA.lut, ALPHA = DATA.alpha;
  var table = document.getElementById("images");
  var thumbs = {};    // row index -> loaded <img> of the picture (or null)
  var maps = {};      // row index + "/" + method -> {img, width, height}

  function loadImage(src) {
    return new Promise(function (resolve, reject) {
      var im = new Image();
      im.onload = function () { resolve(im); };
      im.onerror = function () { reject(new Error("an embedded map could not be decoded")); };
      im.src = src;
    });
  }
  function coloured(mapImg) {      // grey map (0-255) -> a canvas of the colour scale
    var c = document.createElement("canvas");
    c.width = mapImg.naturalWidth; c.height = mapImg.naturalHeight;
    var g = c.getContext("2d");
    g.drawImage(mapImg, 0, 0);
    var px = g.getImageData(0, 0, c.width, c.height);
    var d = px.data;
    for (var i = 0; i < d.length; i += 4) {
      var rgb = LUT[d[i]];
      d[i] = rgb[0]; d[i + 1] = rgb[1]; d[i + 2] = rgb[2]; d[i + 3] = 255;
    }
    g.putImageData(px, 0, 0);
    return c;
  }
  function draw(canvas, picture, colour, blend) {
    var g = canvas.getContext("2d");
    g.imageSmoothingEnabled = true;
    g.imageSmoothingQuality = "high";
    g.clearRect(0, 0, canvas.width, canvas.height);
    if (picture && blend) {
      g.globalAlpha = 1;
      g.drawImage(picture, 0, 0, canvas.width, canvas.height);
      g.globalAlpha = ALPHA;
    } else {
      g.globalAlpha = 1;
    }
    if (colour) { g.drawImage(colour, 0, 0, canvas.width, canvas.height); }
    g.globalAlpha = 1;
  }
  var pictureOf = function (row) {
    return thumbs[row] || null;
  };
  var pending = [];
  Array.prototype.forEach.call(table.querySelectorAll("img.picture"), function (im) {
    var row = im.closest("tr").getAttribute("data-row");
    thumbs[row] = im;
    if (!im.complete) {
      pending.push(new Promise(function (resolve) { im.onload = resolve; im.onerror = resolve; }));
    }
  });
  Promise.all(pending).then(function () {
    var jobs = [];
    Array.prototype.forEach.call(table.querySelectorAll("canvas.overlay"), function (canvas) {
      var row = canvas.closest("tr").getAttribute("data-row");
      var method = canvas.getAttribute("data-method");
      var src = DATA.rows[row].maps[method];
      if (!src) { canvas.setAttribute("data-drawn", "empty"); return; }
      jobs.push(loadImage(src).then(function (im) {
        var colour = coloured(im);
        maps[row + "/" + method] = colour;
        draw(canvas, pictureOf(row), colour, true);
        canvas.setAttribute("data-drawn", "1");
      }));
    });
    return Promise.all(jobs);
  }).then(function () {
    document.body.setAttribute("data-ready", "1");
  });

  // ------------------------------------------------------------ filters
  var classFilter = document.getElementById("class-filter");
  var fieldFilter = document.getElementById("class-field");
  var wrongOnly = document.getElementById("wrong-only");
  var count = document.getElementById("count");
  function applyFilters() {
    var cls = classFilter ? classFilter.value : "";
    var field = fieldFilter ? fieldFilter.value : DATA.class_field;
    var wrong = wrongOnly ? wrongOnly.checked : false;
    var shown = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (tr) {
      var ok = cls === "" || tr.getAttribute("data-" + field) === cls;
      if (ok && wrong) { ok = tr.getAttribute("data-wrong") === "1"; }
      tr.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = "showing " + shown + " of " + table.tBodies[0].rows.length + " images";
  }
  [classFilter, fieldFilter, wrongOnly].forEach(function (el) {
    if (el) { el.addEventListener("change", applyFilters); }
  });
  Array.prototype.forEach.call(document.querySelectorAll("input[data-method-toggle]"), function (box) {
    box.addEventListener("change", function () {
      var m = box.getAttribute("data-method-toggle");
      Array.prototype.forEach.call(table.querySelectorAll('[data-m="' + m + '"]'), function (el) {
        el.hidden = !box.checked;
      });
    });
  });
  applyFilters();

  // ------------------------------------------------------------ the large view
  var dialog = document.getElementById("viewer");
  var current = {row: null, method: null};
  function histogram(svg, hist) {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var NS = "http://www.w3.org/2000/svg", W = 300, H = 300, L = 44, B = 40, T = 10, R = 10;
    function el(name, attrs, text) {
      var e = document.createElementNS(NS, name);
      Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
      if (text !== undefined) { e.textContent = text; }
      svg.appendChild(e); return e;
    }
    if (!hist) { el("text", {x: 20, y: 150}, "no values stored"); return; }
    var counts = hist.counts, top = Math.max.apply(null, counts) || 1, n = counts.length;
    var bw = (W - L - R) / n;
    counts.forEach(function (c, i) {
      var h = (H - T - B) * c / top;
      el("rect", {x: L + i * bw + 0.5, y: H - B - h, width: Math.max(bw - 1, 1), height: h, fill: "#2b5fd9"});
    });
    el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, "class": "axis"});
    el("line", {x1: L, y1: T, x2: L, y2: H - B, "class": "axis"});
    el("text", {x: L, y: H - B + 14, "text-anchor": "start"}, fmt(hist.edges[0]));
    el("text", {x: W - R, y: H - B + 14, "text-anchor": "end"}, fmt(hist.edges[1]));
    el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle"}, "map value (channels summed)");
    el("text", {x: L - 4, y: T + 8, "text-anchor": "end"}, String(top));
    el("text", {x: L - 4, y: H - B, "text-anchor": "end"}, "0");
    el("text", {x: 12, y: (H - B) / 2, transform: "rotate(-90 12 " + (H - B) / 2 + ")",
                "text-anchor": "middle"}, "pixels");
  }
  function fmt(v) {
    if (v === null || v === undefined || isNaN(v)) { return "—"; }
    var a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e5)) ? v.toExponential(2) : v.toFixed(3);
  }
  function showView() {
    var row = current.row, method = current.method, info = DATA.rows[row];
    document.getElementById("viewer-title").textContent = info.id;
    document.getElementById("viewer-facts").textContent = info.facts;
    Array.prototype.forEach.call(dialog.querySelectorAll(".tabs button"), function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-method") === method ? "true" : "false");
    });
    var colour = maps[row + "/" + method] || null;
    draw(document.getElementById("view-heat"), null, colour, false);
    draw(document.getElementById("view-blend"), pictureOf(row), colour, true);
    var pic = document.getElementById("view-picture");
    var thumb = pictureOf(row);
    if (thumb) { pic.src = thumb.src; pic.hidden = false; } else { pic.hidden = true; }
    var m = DATA.methods[method];
    document.getElementById("view-scale").textContent = m.layer ? method + " @ " + m.layer : method;
    document.getElementById("view-cbar").style.background = DATA.gradient;
    document.getElementById("view-top").textContent = "\u2265 " + fmt(m.scale);
    histogram(document.getElementById("view-hist"), (info.hist || {})[method]);
    var metrics = (info.metrics || {})[method] || {};
    document.getElementById("view-metrics").textContent = Object.keys(metrics).map(function (k) {
      return k + " " + fmt(metrics[k]);
    }).join(" · ");
  }
  function openView(row, method) {
    current.row = row;
    current.method = method || DATA.method_names[0];
    showView();
    if (!dialog.open) { dialog.showModal(); }
  }
  function visibleRows() {
    return Array.prototype.filter.call(table.tBodies[0].rows, function (tr) { return !tr.hidden; })
      .map(function (tr) { return tr.getAttribute("data-row"); });
  }
  table.addEventListener("click", function (event) {
    var button = event.target.closest("button.cell");
    if (!button) { return; }
    openView(button.closest("tr").getAttribute("data-row"), button.getAttribute("data-method"));
  });
  Array.prototype.forEach.call(dialog.querySelectorAll(".tabs button"), function (b) {
    b.addEventListener("click", function () { current.method = b.getAttribute("data-method"); showView(); });
  });
  document.getElementById("viewer-close").addEventListener("click", function () { dialog.close(); });
  dialog.addEventListener("click", function (event) { if (event.target === dialog) { dialog.close(); } });
  dialog.addEventListener("keydown", function (event) {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") { return; }
    var rows = visibleRows(), at = rows.indexOf(current.row);
    if (at < 0 || !rows.length) { return; }
    current.row = rows[(at + (event.key === "ArrowRight" ? 1 : rows.length - 1)) % rows.length];
    event.preventDefault();
    showView();
  });
}());
"""

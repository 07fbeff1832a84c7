"""Self-contained HTML pages: one file, plotly.js embedded once, no network, every user string escaped.

Both the audit report and the training report are built with `Page`. The rules that keep them safe live here:
- text, table cells and attributes go through `escape` (html.escape with quotes);
- strings shown inside plotly figures (class names, file names) go through `plot_text`: plotly renders a
  subset of HTML tags in its text (`<b>`, `<a href>`...), so they are escaped too and shown literally;
- figures are serialised by plotly, which encodes `<`, `>` and `/` in its JSON, so no data can close the
  surrounding <script>;
- `Page.html` is only for markup this code builds itself.
"""

from __future__ import annotations

import base64
import html
import itertools
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from dataset_doctor.atomic import atomic_write_text

_FIGURE_CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "png"}}

_STYLE = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --bg: #f5f7fa; --error: #c81e1e; --warning: #b7791f;
        --info: #2b6cb0; --good: #2f855a; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: var(--ink);
       background: var(--bg); }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; }
header.page { background: #fff; border-bottom: 1px solid var(--line); }
header.page div { max-width: 1180px; margin: 0 auto; padding: 18px 28px; }
header.page h1 { margin: 0; font-size: 24px; }
header.page p { margin: 4px 0 0; color: var(--muted); }
nav.toc { margin: 10px 0 0; font-size: 14px; }
nav.toc a { margin-right: 14px; color: var(--info); text-decoration: none; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 18px 22px; margin: 18px 0; }
h2 { margin: 0 0 10px; font-size: 19px; }
h3 { margin: 18px 0 8px; font-size: 16px; }
p.note { color: var(--muted); font-size: 13px; margin: 4px 0 10px; }
.verdict { font-size: 17px; font-weight: 600; padding: 10px 14px; border-radius: 6px; margin: 6px 0 12px; }
.verdict.error { background: #fde8e8; color: var(--error); }
.verdict.warning { background: #fefcbf; color: #744210; }
.verdict.good { background: #e6fffa; color: var(--good); }
.badges span { display: inline-block; padding: 2px 10px; border-radius: 12px; margin-right: 8px; font-weight: 600;
               font-size: 13px; }
.sev-error { background: #fde8e8; color: var(--error); }
.sev-warning { background: #fefcbf; color: #744210; }
.sev-info { background: #ebf8ff; color: var(--info); }
ul.actions li { margin: 4px 0; }
code { background: #edf2f7; padding: 1px 5px; border-radius: 4px; font-size: 13px; }
.table-tools { margin: 6px 0; }
.table-tools input { padding: 5px 8px; width: 320px; max-width: 100%; border: 1px solid var(--line);
                     border-radius: 4px; }
.table-wrap { max-height: 520px; overflow: auto; border: 1px solid var(--line); border-radius: 6px; }
table.data { border-collapse: collapse; width: 100%; font-size: 13px; }
table.data th, table.data td { padding: 5px 9px; border-bottom: 1px solid var(--line); text-align: left;
                               vertical-align: top; }
table.data th { position: sticky; top: 0; background: #f0f4f8; cursor: pointer; user-select: none;
                white-space: nowrap; }
table.data td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.data tr:hover td { background: #f7fafc; }
.figure { margin: 10px 0; overflow-x: auto; }  /* a chart of a hundred classes scrolls sideways */
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.gallery figure { margin: 0; width: 300px; }
.gallery img { width: 100%; border: 1px solid var(--line); border-radius: 4px; }
.gallery figcaption { font-size: 12px; color: var(--muted); word-break: break-all; }
.pair { display: flex; gap: 8px; }
.pair figure { width: 220px; }
"""

_SCRIPT = """
document.querySelectorAll('table.data.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, column) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.from(body.rows), ascending = th.dataset.order !== 'asc';
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.value ?? a.cells[column].textContent,
            y = b.cells[column].dataset.value ?? b.cells[column].textContent,
            nx = parseFloat(x), ny = parseFloat(y);
        var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return ascending ? order : -order;
      });
      table.querySelectorAll('th').forEach(function (h) { h.dataset.order = ''; });
      th.dataset.order = ascending ? 'asc' : 'desc';
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
document.querySelectorAll('input.table-filter').forEach(function (input) {
  var table = document.getElementById(input.dataset.table);
  input.addEventListener('input', function () {
    var needle = input.value.toLowerCase();
    Array.from(table.tBodies[0].rows).forEach(function (row) {
      row.style.display = row.textContent.toLowerCase().indexOf(needle) >= 0 ? '' : 'none';
    });
  });
});
"""


def escape(text: object) -> str:
    """HTML-escape any value for text or attribute context."""
    return html.escape("" if text is None else str(text), quote=True)


def plot_text(text: object) -> str:
    """A user string made safe to show inside a plotly figure (plotly renders some HTML tags in text)."""
    return escape(text)


class Page:
    """A report page assembled from sections; `render` gives one self-contained HTML document."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title, self.subtitle = title, subtitle
        self._parts: list[str] = []
        self._toc: list[tuple[str, str]] = []
        self._ids = itertools.count(1)
        self._open = False
        self._css: list[str] = []
        self._head: list[str] = []

    def section(self, title: str, anchor: str | None = None) -> Page:
        """Start a new section (closing the previous one); it gets an entry in the table of contents."""
        self._close_section()
        anchor = anchor or f"section-{next(self._ids)}"
        self._toc.append((anchor, title))
        self._parts.append(f'<section id="{escape(anchor)}"><h2>{escape(title)}</h2>')
        self._open = True
        return self

    def heading(self, text: str) -> Page:
        self._parts.append(f"<h3>{escape(text)}</h3>")
        return self

    def paragraph(self, text: str, note: bool = False) -> Page:
        css = ' class="note"' if note else ""
        self._parts.append(f"<p{css}>{escape(text)}</p>")
        return self

    def html(self, markup: str) -> Page:
        """Markup built by our own code (its user strings already escaped)."""
        self._parts.append(markup)
        return self

    def figure(self, figure: go.Figure, caption: str | None = None) -> Page:
        div_id = f"plot-{next(self._ids)}"
        body = pio.to_html(figure, full_html=False, include_plotlyjs=False, config=_FIGURE_CONFIG, div_id=div_id)
        caption_html = f'<p class="note">{escape(caption)}</p>' if caption else ""
        self._parts.append(f'<div class="figure">{body}{caption_html}</div>')
        return self

    def table(self, frame: pd.DataFrame, *, filterable: bool = False, sortable: bool = True,
              float_format: str = "{:.3f}", max_rows: int | None = None) -> Page:
        """A data table; every cell escaped. Numbers right-aligned and sorted numerically."""
        table_id = f"table-{next(self._ids)}"
        shown = frame if max_rows is None else frame.head(max_rows)
        head = "".join(f"<th>{escape(column)}</th>" for column in shown.columns)
        rows = []
        for values in shown.itertuples(index=False):
            cells = []
            for value in values:
                if isinstance(value, bool) or value is None or (isinstance(value, float) and pd.isna(value)):
                    cells.append(f"<td>{'' if value is None or value != value else escape(value)}</td>")
                elif isinstance(value, int | float) and not isinstance(value, bool):
                    text = float_format.format(value) if isinstance(value, float) else f"{value:,}"
                    cells.append(f'<td class="num" data-value="{value}">{escape(text)}</td>')
                else:
                    cells.append(f"<td>{escape(value)}</td>")
            rows.append(f"<tr>{''.join(cells)}</tr>")
        tools = ""
        if filterable:
            tools = (f'<div class="table-tools"><input class="table-filter" data-table="{table_id}" '
                     f'placeholder="filter rows..." aria-label="filter rows"></div>')
        more = ""
        if max_rows is not None and len(frame) > max_rows:
            more = f'<p class="note">first {max_rows:,} of {len(frame):,} rows</p>'
        css = "data sortable" if sortable else "data"
        self._parts.append(f'{tools}<div class="table-wrap"><table id="{table_id}" class="{css}"><thead><tr>{head}'
                           f'</tr></thead><tbody>{"".join(rows)}</tbody></table></div>{more}')
        return self

    def style(self, css: str) -> Page:
        """Style rules of one report, added after the shared ones (our own CSS, never user text)."""
        self._css.append(css)
        return self

    def head(self, markup: str) -> Page:
        """Markup for <head> built by our own code, e.g. a live report's <meta http-equiv="refresh">."""
        self._head.append(markup)
        return self

    def render(self) -> str:
        self._close_section()
        toc = "".join(f'<a href="#{escape(anchor)}">{escape(title)}</a>' for anchor, title in self._toc)
        subtitle = f"<p>{escape(self.subtitle)}</p>" if self.subtitle else ""
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"{''.join(self._head)}<title>{escape(self.title)}</title><style>{_STYLE}{''.join(self._css)}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>"
            f'<header class="page"><div><h1>{escape(self.title)}</h1>{subtitle}'
            f'<nav class="toc">{toc}</nav></div></header>'
            f"<main>{''.join(self._parts)}</main><script>{_SCRIPT}</script></body></html>\n"
        )

    def write(self, path: str | Path) -> Path:
        """Write atomically; returns the path."""
        path = Path(path)
        atomic_write_text(path, self.render())
        return path

    def _close_section(self) -> None:
        if self._open:
            self._parts.append("</section>")
            self._open = False


def image_data_uri(data: bytes, mime: str = "image/jpeg") -> str:
    """Embed an encoded image in the page (no external files: the report must stay one file)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail_figure(data: bytes, caption: str, mime: str = "image/jpeg") -> str:
    """One gallery entry: an embedded image with an escaped caption."""
    return (f'<figure><img src="{image_data_uri(data, mime)}" alt="{escape(caption)}" loading="lazy">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")

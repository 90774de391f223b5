"""A small HTML report: headings, text, tables and figures in one self-contained page."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
from pathlib import Path
from typing import Any

from cytolens.core.files import atomic_path

__all__ = ["Report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #2a6f97;padding-bottom:.2em}h2{color:#2a6f97;margin-top:1.8em}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#eef4f8}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}
figcaption{color:#555;font-size:.9em}.meta{color:#777;font-size:.85em}
"""


class Report:
    """Build an HTML report section by section, then :meth:`save` it.

    PNG figures are embedded in the page, so the HTML file stands alone;
    :meth:`figure` also keeps a PNG file given by path where it is.

    Examples
    --------
    >>> import tempfile
    >>> rep = Report("Demo")
    >>> rep.heading("Numbers")
    >>> rep.table([{"image": "a.tif", "score": 0.5}])
    >>> path = rep.save(Path(tempfile.mkdtemp()) / "report.html")
    >>> "<table>" in path.read_text()
    True
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        """Add a heading (level 2 by default; the title is level 1)."""
        self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str) -> None:
        """Add a paragraph of plain text."""
        self._parts.append(f"<p>{html.escape(text)}</p>")

    def table(self, rows: Any, *, floatfmt: str = ".4g") -> None:
        """Add a table from a pandas DataFrame or a list of dicts with the same keys."""
        if hasattr(rows, "to_dict"):
            rows = rows.to_dict(orient="records")
        rows = list(rows)
        if not rows:
            self._parts.append("<p><em>(no rows)</em></p>")
            return
        cols = list(rows[0])

        def cell(v: Any) -> str:
            return html.escape(format(v, floatfmt) if isinstance(v, float) else str(v))

        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows
        )
        self._parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def figure(self, figure: Any, caption: str = "") -> None:
        """Add a figure: a Matplotlib figure or the path of a PNG file."""
        if isinstance(figure, (str, os.PathLike)):
            data = Path(figure).read_bytes()
        else:
            import io

            buf = io.BytesIO()
            figure.savefig(buf, format="png", dpi=100, bbox_inches="tight")
            import matplotlib.pyplot as plt

            plt.close(figure)
            data = buf.getvalue()
        src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self._parts.append(f'<figure><img src="{src}" alt="{html.escape(caption)}">{cap}</figure>')

    def to_html(self) -> str:
        """The whole page as a string."""
        from cytolens import __version__

        stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>"
            f"<p class='meta'>cytolens {__version__} · {stamp}</p>"
            + "\n".join(self._parts)
            + "</body></html>\n"
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the page atomically and return its path."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_html(), encoding="utf-8")
        return path

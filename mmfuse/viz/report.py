"""A single self-contained HTML page (inline CSS, no JavaScript, no external URLs) for a report folder."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, urlsplit

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; background: #f6f7f9; color: #1d2329; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.6em; margin: 0 0 16px; }
h2 { font-size: 1.2em; margin: 0 0 10px; }
table.summary { border-collapse: collapse; background: #fff; margin-bottom: 28px; }
table.summary th, table.summary td { border: 1px solid #d0d5db; padding: 6px 12px; text-align: left; }
table.summary th { background: #eef1f4; font-weight: 600; }
table.summary td { font-variant-numeric: tabular-nums; }
figure { background: #fff; border: 1px solid #d0d5db; border-radius: 6px; margin: 0 0 28px; padding: 16px; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #4a545e; margin-top: 8px; font-size: 0.95em; }
"""


def _fmt(value: str | float | int) -> str:
    """Floats to 4 significant digits; everything else as ``str``."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _src(name: str) -> str:
    """URL-quoted relative path of a figure; absolute paths and URLs are refused (the page is self-contained)."""
    parts = urlsplit(name)
    if parts.scheme or parts.netloc or name.startswith(("/", "\\")) or Path(name).is_absolute():
        raise ValueError(f"figure file must be a path relative to the report folder, got {name!r}")
    return quote(Path(name).as_posix())


def write_index_html(out_dir: Path | str, title: str, summary: Mapping[str, str | float | int],
                     figures: Sequence[tuple[str, str, str]]) -> Path:
    """Write ``out_dir/index.html``: title, summary table (key / value), then per figure
    ``(heading, png file name relative to out_dir, caption)`` a heading, the image and its caption.

    All text is HTML-escaped. Returns the path of ``index.html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    esc = html.escape
    rows = "\n".join(f'<tr><th scope="row">{esc(str(k))}</th><td>{esc(_fmt(v))}</td></tr>' for k, v in summary.items())
    figs = "\n".join(
        f'<figure id="fig-{i}">\n<h2>{esc(heading)}</h2>\n<img src="{esc(_src(name))}" alt="{esc(heading)}">\n'
        f"<figcaption>{esc(caption)}</figcaption>\n</figure>"
        for i, (heading, name, caption) in enumerate(figures, 1))
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{esc(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{esc(title)}</h1>\n"
            f'<table class="summary">\n<tbody>\n{rows}\n</tbody>\n</table>\n{figs}\n</main>\n</body>\n</html>\n')
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path

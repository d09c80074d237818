"""Pictures drawn on the server as SVG: bar charts and the attribution evidence.

No script and no inline style (the CSP forbids both); colours come from classes in the
app's stylesheet, with presentation attributes as a fallback for printing and export.
Every chart has a title and a text alternative, and its numbers are also in a table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from markupsafe import Markup

ROW = 24
LABEL_W = 170
BAR_W = 300
PAD = 8


def _attr(value: object) -> str:
    return escape(str(value), {'"': "&quot;"})


def bar_chart(
    title: str,
    data: Mapping[str, int],
    *,
    label: Callable[[str], str] = str,
    testid: str = "chart",
    top: int = 15,
) -> Markup:
    """A horizontal bar chart of ``data`` (largest first, at most ``top`` bars)."""
    items = sorted(data.items(), key=lambda kv: -kv[1])[:top]
    peak = max((v for _, v in items), default=0) or 1
    height = PAD * 2 + ROW * max(len(items), 1) + 20
    width = LABEL_W + BAR_W + 90
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'data-testid="{_attr(testid)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" aria-label="{_attr(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="14" class="chart-title" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (key, value) in enumerate(items):
        y = 20 + PAD + i * ROW
        w = max(1, round(BAR_W * value / peak)) if value else 0
        parts.append(
            f'<text x="{LABEL_W - 6}" y="{y + 15}" text-anchor="end" class="chart-label">'
            f"{escape(label(key))}</text>"
            f'<rect x="{LABEL_W}" y="{y + 3}" width="{w}" height="{ROW - 8}" class="bar" '
            f'fill="#2f6f9f"><title>{escape(label(key))}: {value:,}</title></rect>'
            f'<text x="{LABEL_W + w + 6}" y="{y + 15}" class="chart-value">{value:,}</text>'
        )
    if not items:
        parts.append(f'<text x="0" y="{20 + PAD + 15}" class="chart-label">–</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _when(text: str, fallback: datetime) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return fallback
    return value if value.tzinfo else value.replace(tzinfo=fallback.tzinfo)


def attribution_picture(
    suspects: Sequence[Mapping[str, Any]],
    found_at: datetime,
    *,
    t: Callable[..., str] = lambda s, **_: s,
    top: int = 4,
) -> Markup:
    """The evidence of a trace on a time line.

    One lane per suspect: each share it received is a circle at the time it was shared,
    filled in proportion to the canaries of that share found in the leak (``seen/planted``
    beside it); the band is the window in which the copy was taken; the dashed line is
    when the leak was found. Only counts are drawn, never which records are canaries.
    """
    lanes = [s for s in suspects if s.get("shares")][:top]
    times = [_when(str(e["shared_at"]), found_at) for s in lanes for e in s["shares"]] + [found_at]
    start, end = min(times), max(times)
    span = (end - start).total_seconds() or 1.0
    left, width, lane_h = 190, 420, 64
    height = 40 + lane_h * max(len(lanes), 1) + 30

    def x(when: datetime) -> float:
        return round(left + width * (when - start).total_seconds() / span, 1)

    title = t("Attribution evidence")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart attribution" role="img" '
        f'data-testid="attribution-picture" viewBox="0 0 {left + width + 60} {height}" '
        f'width="{left + width + 60}" height="{height}" aria-label="{_attr(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="14" class="chart-title" font-weight="bold">'
        f"{escape(t('Canaries found per share'))}</text>",
    ]
    for i, s in enumerate(lanes):
        y = 40 + i * lane_h
        mid = y + lane_h / 2
        who = str(s["recipient"])
        verdict = t("accused") if s.get("accused") else t("not accused")
        lane_class = "lane accused" if s.get("accused") else "lane"
        parts.append(
            f'<rect x="0" y="{y + 4}" width="{left + width + 60}" height="{lane_h - 8}" '
            f'class="{lane_class}" fill="#f4f6f8"/>'
            f'<text x="6" y="{mid - 2}" class="chart-label" font-weight="bold">'
            f"{escape(who[:28])}</text>"
            f'<text x="6" y="{mid + 14}" class="chart-note">{escape(verdict)}</text>'
            f'<line x1="{left}" y1="{mid}" x2="{left + width}" y2="{mid}" class="axis" '
            f'stroke="#888"/>'
        )
        window = s.get("window")
        if window:
            w0 = x(_when(str(window[0]), found_at))
            w1 = x(found_at if window[1] == "now" else _when(str(window[1]), found_at))
            parts.append(
                f'<rect x="{w0}" y="{mid - 16}" width="{max(w1 - w0, 2)}" height="32" '
                f'class="window" fill="#f2c14e" fill-opacity="0.35">'
                f"<title>{escape(t('Time window'))}: {escape(str(window[0])[:16])} – "
                f"{escape(str(window[1])[:16])}</title></rect>"
            )
        for e in s["shares"]:
            cx = x(_when(str(e["shared_at"]), found_at))
            planted = max(int(e.get("canaries_planted") or 0), 1)
            seen = int(e.get("canaries_seen") or 0)
            r = 11
            frac = min(seen / planted, 1.0)
            parts.append(
                f'<g class="share-mark" data-share="{int(e["share_id"])}">'
                f"<title>#{int(e['share_id'])} {escape(str(e['shared_at'])[:16])}: "
                f"{seen}/{planted} {escape(t('Canaries seen').lower())}</title>"
                f'<circle cx="{cx}" cy="{mid}" r="{r}" class="planted" fill="#fff" '
                f'stroke="#2f6f9f" stroke-width="2"/>'
            )
            if frac > 0:
                inner = round(r * frac**0.5, 1)
                parts.append(
                    f'<circle cx="{cx}" cy="{mid}" r="{inner}" class="seen" fill="#c0392b"/>'
                )
            parts.append(
                f'<text x="{cx}" y="{mid - 15}" text-anchor="middle" class="chart-note">'
                f"{seen}/{planted}</text></g>"
            )
    fx = x(found_at)
    parts.append(
        f'<line x1="{fx}" y1="30" x2="{fx}" y2="{height - 24}" class="found" '
        f'stroke="#c0392b" stroke-dasharray="4 3"/>'
        f'<text x="{left}" y="{height - 8}" class="chart-note">{escape(start.strftime("%Y-%m-%d"))}</text>'
        f'<text x="{left + width}" y="{height - 8}" text-anchor="end" class="chart-note">'
        f"{escape(end.strftime('%Y-%m-%d %H:%M'))}</text>"
    )
    if not lanes:
        parts.append(f'<text x="0" y="60" class="chart-label">{escape(t("none"))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))

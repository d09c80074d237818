from __future__ import annotations

from datetime import UTC, datetime
from xml.etree import ElementTree

from canarino.web.charts import attribution_picture, bar_chart

FOUND = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _svg(markup: str) -> ElementTree.Element:
    return ElementTree.fromstring(str(markup))


def test_bar_chart_is_valid_svg_with_bars_largest_first() -> None:
    root = _svg(bar_chart("By country", {"FR": 3, "IT": 30, "DE": 0}, testid="c"))
    rects = [e for e in root.iter() if e.tag.endswith("rect")]
    widths = [float(r.get("width", 0)) for r in rects]
    assert widths == sorted(widths, reverse=True) and widths[-1] == 0
    assert root.get("data-testid") == "c" and root.get("role") == "img"


def test_bar_chart_escapes_hostile_labels() -> None:
    markup = str(bar_chart('<script>x</script>"', {"<img src=x onerror=alert(1)>": 1}))
    assert "<script>" not in markup and "<img" not in markup
    _svg(markup)


def test_bar_chart_of_nothing_still_renders() -> None:
    assert _svg(bar_chart("Empty", {})) is not None


def _suspect(accused: bool, shares: list[tuple[str, int, int]], window: list[str] | None) -> dict:
    return {
        "recipient": "Vendor <A>",
        "accused": accused,
        "window": window,
        "shares": [
            {"share_id": i + 1, "shared_at": at, "canaries_seen": seen, "canaries_planted": planted}
            for i, (at, seen, planted) in enumerate(shares)
        ],
    }


def test_attribution_picture_marks_each_share_and_the_window() -> None:
    suspects = [
        _suspect(
            True,
            [("2026-11-01T10:00:00+00:00", 4, 12), ("2026-11-10T10:00:00+00:00", 0, 12)],
            ["2026-11-01T10:00:00+00:00", "now"],
        ),
        _suspect(False, [("2026-11-05T10:00:00+00:00", 0, 12)], None),
    ]
    root = _svg(attribution_picture(suspects, FOUND))
    marks = [g for g in root.iter() if g.get("class") == "share-mark"]
    assert len(marks) == 3
    seen = [c for c in root.iter() if c.get("class") == "seen"]
    assert len(seen) == 1  # only the share whose canaries turned up is filled
    windows = [r for r in root.iter() if r.get("class") == "window"]
    assert len(windows) == 1 and float(windows[0].get("width", 0)) > 2
    assert "Vendor &lt;A&gt;" in str(attribution_picture(suspects, FOUND))


def test_attribution_picture_survives_odd_dates_and_no_suspects() -> None:
    odd = [_suspect(False, [("not a date", 1, 0)], ["garbage", "now"])]
    assert _svg(attribution_picture(odd, FOUND)) is not None
    assert _svg(attribution_picture([], FOUND)) is not None

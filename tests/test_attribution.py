from __future__ import annotations

from datetime import UTC, datetime

from canarino.attribution import ShareFacts, attribute

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _share(sid: int, rid: int, name: str, customers: int = 100, kind: str = "vendor") -> ShareFacts:
    return ShareFacts(sid, rid, name, kind, None, T0, customers, 10)


SHARES = {1: _share(1, 1, "A"), 2: _share(2, 2, "B"), 3: _share(3, 1, "A")}


def test_canary_evidence_ranks_first_and_explains_itself() -> None:
    suspects = attribute(SHARES, {10: [1], 11: [3], 12: [2]}, {1: 40, 2: 40, 3: 10}, 40)
    assert [s.recipient for s in suspects] == ["A", "B"]
    a = suspects[0]
    assert (a.canaries_seen, a.canaries_observed, a.score) == (2, 3, round(2 / 3, 4))
    assert [e.share_id for e in a.shares] == [1, 3]
    assert "2 of the 3 canaries" in a.explanation and "share #1" in a.explanation


def test_without_canaries_coverage_ranks_and_is_capped() -> None:
    suspects = attribute(SHARES, {}, {1: 30, 2: 27}, 30)
    assert [s.recipient for s in suspects] == ["A", "B"]
    assert suspects[0].score == 0.5 and suspects[1].score == 0.45
    assert "30 of the 30 real customers" in suspects[0].explanation


def test_without_canaries_a_recipient_missing_most_leaked_customers_is_excluded() -> None:
    suspects = attribute(SHARES, {}, {1: 30, 2: 12}, 30)
    assert [s.recipient for s in suspects] == ["A"]


def test_a_canary_keeps_a_low_coverage_recipient_listed() -> None:
    suspects = attribute(SHARES, {10: [2]}, {1: 30, 2: 3}, 30)
    assert [s.recipient for s in suspects] == ["B", "A"]


def test_no_evidence_names_nobody() -> None:
    assert attribute(SHARES, {}, {}, 0) == []


def test_coverage_is_never_above_the_customers_matched() -> None:
    suspects = attribute(SHARES, {}, {1: 30, 3: 30}, 30)
    assert suspects[0].customers_covered == 30


def test_limit_keeps_the_strongest() -> None:
    shares = {i: _share(i, i, f"R{i:02d}") for i in range(1, 30)}
    suspects = attribute(shares, {100 + i: [i] for i in range(1, 30)}, {}, 0, limit=5)
    assert len(suspects) == 5

from __future__ import annotations

import csv
import gzip
import zipfile
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import func, select

from canarino import models as m
from canarino.errors import InvalidInput, NotFound
from canarino.scope import fields_of
from canarino.shares import ShareResult
from canarino.testing import make_customers, make_dump, write_customers_csv
from canarino.trace import (
    Tick,
    exposed_people,
    get_trace_report,
    list_traces,
    recent_traces,
    run_trace,
)
from canarino.workspace import Workspace


def _traces(ws: Workspace) -> tuple[int, int, int]:
    with ws.db.session() as s:
        return tuple(  # type: ignore[return-value]
            s.scalar(select(func.count()).select_from(t)) or 0
            for t in (m.Trace, m.TraceCustomer, m.TraceCanary)
        )


def test_trace_names_the_vendor_whose_canaries_leaked(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    dump = tmp_path / "dump.csv"
    # 70% of a share with 10 canaries: no canary in it 1 time in 170,000.
    leaked = make_dump(shared["Vendor B"].path, dump, fraction=0.7, seed=4, noise_rows=50)
    report = run_trace(loaded, dump)
    assert report.rows_read == leaked + 50
    assert report.canaries_matched >= 1
    top = report.suspects[0]
    assert top.recipient == "Vendor B" and top.canaries_seen == report.canaries_matched
    assert top.score == 1.0
    assert "Vendor B" in top.explanation and "share #" in top.explanation
    # Vendor A received the same customers: it ranks below, with no canary.
    others = {s.recipient: s for s in report.suspects[1:]}
    assert others["Vendor A"].canaries_seen == 0
    assert report.customers_matched + report.canaries_matched == leaked


def test_the_scope_counts_each_country_and_region_as_the_customer_table_does(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    from canarino.scope import build_scope

    dump = tmp_path / "dump.csv"
    make_dump(shared["Vendor A"].path, dump, fraction=0.6, seed=8, reformat=True)
    report = run_trace(loaded, dump)
    with loaded.db.session() as s:
        groups = s.execute(
            select(m.Customer.country, m.Customer.region, m.TraceCustomer.mask, func.count())
            .join(m.TraceCustomer, m.TraceCustomer.customer_id == m.Customer.id)
            .where(m.TraceCustomer.trace_id == report.trace_id)
            .group_by(m.Customer.country, m.Customer.region, m.TraceCustomer.mask)
        ).all()
    truth = build_scope([(c, r, ",".join(fields_of(k)), n) for c, r, k, n in groups])
    assert len(truth.by_region) > 3
    assert report.scope == truth


def test_trace_finds_exposed_fields_per_person_and_scope(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    dump = tmp_path / "dump.csv"
    make_dump(shared["Vendor A"].path, dump, fraction=0.2, seed=5, reformat=True)
    report = run_trace(loaded, dump)
    assert report.scope.people == report.customers_matched
    assert set(report.scope.by_field) <= {
        "customer_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "address",
    }
    assert report.scope.by_field["email"] == report.customers_matched
    assert sum(report.scope.by_country.values()) == report.customers_matched
    assert report.scope.by_category["contact"] == report.customers_matched
    with loaded.db.session() as s:
        masks = set(s.scalars(select(m.TraceCustomer.mask)))
    assert masks and all("email" in fields_of(k) for k in masks)


def test_only_the_columns_present_count_as_exposed(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    with shared["Vendor A"].path.open(encoding="utf-8") as fp:
        rows = list(csv.reader(fp))[1:30]
    dump = tmp_path / "phones.csv"
    with dump.open("w", encoding="utf-8", newline="") as fp:
        csv.writer(fp).writerows([[r[4]] for r in rows])  # phones only, no header
    report = run_trace(loaded, dump)
    assert report.customers_matched + report.canaries_matched == 29
    assert report.scope.by_field == {"phone": report.customers_matched}
    assert report.columns == {"column 1": "phone"}


def test_employee_leak_names_the_employee_and_their_vendor(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    dump = tmp_path / "dump.csv"
    make_dump(shared["Agent A1"].path, dump, fraction=1.0, seed=6)
    top = run_trace(loaded, dump).suspects[0]
    assert (top.recipient, top.kind, top.parent) == ("Agent A1", "employee", "Vendor A")


def test_a_dump_of_strangers_names_nobody(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    dump = write_customers_csv(tmp_path / "strangers.csv", make_customers(100, seed=999))
    report = run_trace(loaded, dump)
    assert (report.customers_matched, report.canaries_matched, report.suspects) == (0, 0, [])
    assert report.scope.people == 0


def test_recent_traces_are_the_newest_and_follow_new_traces(
    loaded: Workspace, tmp_path: Path
) -> None:
    dump = write_customers_csv(tmp_path / "strangers.csv", make_customers(20, seed=5))
    first, second = run_trace(loaded, dump).trace_id, run_trace(loaded, dump).trace_id
    assert [t["trace_id"] for t in recent_traces(loaded, 1)] == [second]
    third = run_trace(loaded, dump).trace_id
    assert [t["trace_id"] for t in recent_traces(loaded, 2)] == [third, second]
    assert [t["trace_id"] for t in recent_traces(loaded, 1)] == [third]
    assert [t["trace_id"] for t in list_traces(loaded)] == [third, second, first]


def test_trace_result_is_stored_without_personal_data(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path, people: list[dict[str, str]]
) -> None:
    dump = tmp_path / "dump.csv"
    make_dump(shared["Vendor A"].path, dump, fraction=0.5, seed=7)
    report = run_trace(loaded, dump)
    stored = get_trace_report(loaded, report.trace_id)
    assert stored == report.as_dict()
    text = repr(stored)
    assert not any(p["email"] in text or p["last_name"] in text for p in people[:50])
    assert list_traces(loaded)[0]["top_suspect"] == "Vendor A"


HOSTILE = {
    "empty": b"",
    "header_only": b"email,phone\r\n",
    "binary": bytes(range(256)) * 40,
    "long_line": b"email\r\n" + b"x" * (10 * 1024 * 1024) + b"\r\n",
    "many_columns": (",".join(f"c{i}" for i in range(10_000)) + "\r\n").encode(),
    "no_identifiers": b"nome,citta\r\nMario,Roma\r\nAnna,Milano\r\n",
    "invalid_utf8_later": b"email\r\n" + b"a@posta.it\r\n" * 120_000 + b"\xff\xfe@x.it\r\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_dumps_fail_cleanly_and_store_nothing(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path, name: str
) -> None:
    path = tmp_path / f"{name}.csv"
    path.write_bytes(HOSTILE[name])
    before = _traces(loaded)
    with pytest.raises(InvalidInput) as info:
        run_trace(loaded, path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "posta.it" not in message
    assert _traces(loaded) == before


def test_trace_reads_archives_and_folders(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    dump = tmp_path / "dump.csv"
    leaked = make_dump(shared["Vendor B"].path, dump, fraction=0.3, seed=4, noise_rows=50)
    plain = run_trace(loaded, dump)
    archive = tmp_path / "leak.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/dump.csv.gz", gzip.compress(dump.read_bytes()))
        zf.writestr("junk.bin", b"\0\1\2" * 10)
    report = run_trace(loaded, archive)
    assert report.rows_read == leaked + 50
    assert report.customers_matched == plain.customers_matched
    assert report.problems == [f"{archive}!junk.bin: not a format canarino reads"]
    assert all(k.startswith("a/dump.csv.gz!dump.csv: ") for k in report.columns)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "x.csv").write_bytes(dump.read_bytes())
    assert run_trace(loaded, folder).customers_matched == plain.customers_matched


def test_a_combo_list_exposes_credentials_without_keeping_the_passwords(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path, people: list[dict[str, str]]
) -> None:
    combo = tmp_path / "combo.txt"
    combo.write_text("".join(f"{p['email']}:Hunter2-{i}\n" for i, p in enumerate(people[:40])))
    report = run_trace(loaded, combo)
    assert report.customers_matched == 40
    assert report.scope.by_category.get("credentials") == 40
    assert "Hunter2" not in repr(get_trace_report(loaded, report.trace_id))


def test_trace_reports_bytes_and_rows_as_it_reads(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    dump = tmp_path / "dump.csv"
    make_dump(shared["Vendor A"].path, dump, fraction=1.0, seed=8, noise_rows=3000)
    loaded.settings.max_line_bytes = 1 << 16  # 64 KiB blocks: several from a small file
    ticks: list[Tick] = []
    progress: list[tuple[int, int]] = []
    report = run_trace(
        loaded, dump, on_tick=ticks.append, progress=lambda d, t: progress.append((d, t))
    )
    assert len(ticks) == len(progress) > 2
    assert [(t.bytes_done, t.bytes_total) for t in ticks] == progress
    assert all(a.rows < b.rows and a.bytes_done <= b.bytes_done for a, b in pairwise(ticks))
    assert ticks[-1].rows == report.rows_read
    assert ticks[-1].bytes_done == ticks[-1].bytes_total == dump.stat().st_size


def test_exposed_people_lists_each_person_with_fields_and_categories(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    with shared["Vendor A"].path.open(encoding="utf-8") as fp:
        rows = list(csv.reader(fp))
    header, body = rows[0], rows[1:]
    keep = [header.index(h) for h in ("first_name", "email", "phone")]
    dump = tmp_path / "dump.csv"
    with dump.open("w", encoding="utf-8", newline="") as fp:
        writer = csv.writer(fp)
        writer.writerow(["nome", "email", "telefono"])
        for i, row in enumerate(body[:60]):
            cells = [row[k] for k in keep]
            if i % 2:
                cells[2] = ""  # half of them leaked without the phone
            writer.writerow(cells)
    report = run_trace(loaded, dump)
    listed = list(exposed_people(loaded, report.trace_id))
    assert len(listed) == report.customers_matched == report.scope.people
    assert [p.customer_id for p in listed] == sorted(p.customer_id for p in listed)
    assert {p.fields for p in listed} == {
        ("first_name", "email", "phone"),
        ("first_name", "email"),
    }
    assert all(p.categories == ("identity", "contact") for p in listed)
    assert sum(report.scope.by_exposure.values()) == report.customers_matched
    # Canaries are not people: none of the listed ids is a canary's.
    with loaded.db.session() as s:
        customers = set(s.scalars(select(m.Customer.id)))
    assert {p.customer_id for p in listed} <= customers


def test_exposed_people_of_an_unknown_trace_is_a_clear_error(loaded: Workspace) -> None:
    with pytest.raises(NotFound):
        list(exposed_people(loaded, 999))


def test_matching_in_worker_processes_gives_the_same_result(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    dump = tmp_path / "dump.csv"
    make_dump(shared["Vendor B"].path, dump, fraction=0.8, seed=9, noise_rows=4000)
    loaded.settings.max_line_bytes = 1 << 16  # 64 KiB blocks: several batches to share out
    ticks: list[Tick] = []
    one = run_trace(loaded, dump, workers=1).as_dict()
    two = run_trace(loaded, dump, workers=2, on_tick=ticks.append).as_dict()
    assert len(ticks) > 2 and ticks[-1].rows == two["rows_read"]
    assert [(x["recipient"], x["canaries_seen"]) for x in one["suspects"]] == [
        (x["recipient"], x["canaries_seen"]) for x in two["suspects"]
    ]
    for report in (one, two):
        for key in ("trace_id", "created_at", "suspects", "attribution"):
            report.pop(key)
    assert one == two
    with loaded.db.session() as s:
        stored = {
            trace_id: set(
                s.execute(
                    select(m.TraceCustomer.customer_id, m.TraceCustomer.mask).where(
                        m.TraceCustomer.trace_id == trace_id
                    )
                ).all()
            )
            for trace_id in (1, 2)
        }
    assert stored[1] == stored[2] and len(stored[1]) == one["customers_matched"]


# --- record hits: two independent identifiers of one canary in one row ------------------


def _canary_contacts(ws: Workspace, share_id: int) -> list[tuple[str, str]]:
    """(e-mail, phone) of the exclusive canaries planted in one share."""
    from canarino.shares import CANARY_CONTEXT

    with ws.db.session() as s:
        sealed = s.scalars(
            select(m.Canary.sealed)
            .join(m.ShareCanary, m.ShareCanary.canary_id == m.Canary.id)
            .where(m.ShareCanary.share_id == share_id, m.Canary.layer == "exclusive")
            .order_by(m.Canary.id)
        ).all()
    clear = [ws.vault.open(blob, context=CANARY_CONTEXT) for blob in sealed]
    return [(c["email"], c["phone"]) for c in clear]


def _contact_dump(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A small dump: the given (e-mail, phone) rows among unrelated people."""
    strangers = [(p["email"], p["phone"]) for p in make_customers(30, seed=977)]
    with path.open("w", newline="", encoding="utf-8") as fp:
        writer = csv.writer(fp)
        writer.writerow(["email", "phone"])
        writer.writerows(strangers[:15] + rows + strangers[15:])
    return path


def _matched_by(ws: Workspace, trace_id: int) -> list[list[str]]:
    with ws.db.session() as s:
        return list(
            s.scalars(select(m.TraceCanary.matched_by).where(m.TraceCanary.trace_id == trace_id))
        )


def test_one_canary_seen_as_a_record_accuses_its_recipient(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    email, phone = _canary_contacts(loaded, shared["Vendor B"].share_id)[0]
    report = run_trace(loaded, _contact_dump(tmp_path / "one.csv", [(email, phone)]))
    top = report.suspects[0]
    assert (top.recipient, top.accused, top.canaries_seen, top.records_seen) == (
        "Vendor B",
        True,
        1,
        1,
    )
    assert _matched_by(loaded, report.trace_id) == [["email", "phone", "record"]]
    assert report.as_dict()["attribution"]["record_noise"] == pytest.approx(1e-15)


def test_one_canary_seen_only_as_a_contact_does_not_accuse(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    email, _ = _canary_contacts(loaded, shared["Vendor B"].share_id)[0]
    stranger = make_customers(1, seed=978)[0]["phone"]
    report = run_trace(loaded, _contact_dump(tmp_path / "one.csv", [(email, stranger)]))
    top = report.suspects[0]
    assert top.recipient == "Vendor B" and top.canaries_seen == 1
    assert not top.accused and top.records_seen == 0


def test_a_canary_email_beside_another_canarys_phone_is_not_a_record(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    a_email, _ = _canary_contacts(loaded, shared["Vendor A"].share_id)[0]
    _, b_phone = _canary_contacts(loaded, shared["Vendor B"].share_id)[0]
    report = run_trace(loaded, _contact_dump(tmp_path / "mixed.csv", [(a_email, b_phone)]))
    assert report.canaries_matched == 2
    assert not any(s.accused for s in report.suspects)
    assert all(s.records_seen == 0 for s in report.suspects)
    assert sorted(_matched_by(loaded, report.trace_id)) == [["email"], ["phone"]]


def test_a_canarys_email_and_phone_in_different_rows_are_not_a_record(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    email, phone = _canary_contacts(loaded, shared["Vendor B"].share_id)[0]
    stranger = make_customers(2, seed=979)
    rows = [(email, stranger[0]["phone"]), (stranger[1]["email"], phone)]
    report = run_trace(loaded, _contact_dump(tmp_path / "split.csv", rows))
    (top,) = [s for s in report.suspects if s.canaries_seen]
    assert top.records_seen == 0 and not top.accused


def test_worker_processes_find_the_same_record_hits(
    shared: dict[str, ShareResult], loaded: Workspace, tmp_path: Path
) -> None:
    dump = tmp_path / "dump.csv"
    make_dump(shared["Vendor B"].path, dump, fraction=0.8, seed=9, noise_rows=4000)
    loaded.settings.max_line_bytes = 1 << 16  # several batches to share out
    one, two = (run_trace(loaded, dump, workers=k) for k in (1, 2))
    records = [(s.recipient, s.records_seen) for s in one.suspects if s.records_seen]
    assert records and records == [
        (s.recipient, s.records_seen) for s in two.suspects if s.records_seen
    ]
    assert one.suspects[0].recipient == "Vendor B" and one.suspects[0].accused

"""Trace a leak: read a dump, match it, name suspects, measure scope, store the result."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, aliased

from . import models as m
from . import store
from .attribution import RECORD_NOISE, Attribution, CanaryFacts, ShareFacts, Suspect, attribute
from .errors import InvalidInput
from .index import Lookup, load_lookup
from .normalize import PhoneCandidates, Pseudonymizer
from .recognition import CanaryRecognizer, Candidate, Monitored, Recognition
from .scope import (
    FIELD_BIT,
    BatchMatch,
    Exposure,
    Matcher,
    PersonScope,
    PseudonymIndex,
    Scope,
    build_scope,
    classify_columns,
    fields_of,
    person_scope,
)
from .shares import CANARY_CONTEXT
from .sources import Batch, Limits, Problem, Source, open_sources
from .workspace import Workspace

Progress = Callable[[int, int], None]
# Below this size a dump is matched in one process: forking would cost more than it saves.
PARALLEL_MIN_BYTES = 32 << 20


@dataclass(frozen=True)
class Tick:
    """How far a trace has read: bytes of the current file and rows of the whole dump."""

    bytes_done: int
    bytes_total: int
    rows: int


Ticker = Callable[[Tick], None]
# Damaged rows on monitored domains compared in clear; more than this is not a typo.
MAX_CANDIDATES = 100_000


@dataclass
class TraceReport:
    """The outcome of one trace, free of personal data."""

    trace_id: int
    created_at: datetime
    source: str
    sha256: str
    size_bytes: int
    rows_read: int
    rows_skipped: int
    columns: dict[str, str]
    customers_matched: int
    canaries_matched: int
    suspects: list[Suspect] = field(default_factory=list)
    scope: Scope = field(default_factory=Scope)
    attribution: Attribution | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "trace_id": self.trace_id,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "source": self.source,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "rows_read": self.rows_read,
            "rows_skipped": self.rows_skipped,
            "columns": self.columns,
            "customers_matched": self.customers_matched,
            "canaries_matched": self.canaries_matched,
            "suspects": [s.as_dict() for s in self.suspects],
            "attribution": {
                k: v
                for k, v in (self.attribution.as_dict() if self.attribution else {}).items()
                if k != "suspects"
            },
            "scope": self.scope.as_dict(),
            "problems": self.problems,
        }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fp:
        for chunk in iter(lambda: fp.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class _Read:
    """What reading one source of a dump gave."""

    exposure: Exposure
    candidates: list[Candidate]
    rows: int
    columns: dict[str, str]
    matchable: bool
    records: set[int] = field(default_factory=set)


def _read_source(
    source: Source,
    label: str,
    pool: _BatchMatcher,
    room: int,
    progress: Progress | None,
    ticker: Callable[[int, int, int], None] | None = None,
) -> _Read:
    layout = source.layout()
    # Matches go to a private Exposure: a member that fails half-way adds nothing.
    read = _Read(Exposure(), [], 0, {}, False)
    batches = source.batches()
    first = next(batches, None)
    if first is None:
        return read
    matcher = pool.matcher(classify_columns(layout.headers, first.data))
    for bytes_read, rows, found in pool.map(matcher, chain([first], batches)):
        read.candidates += found.candidates[: room - len(read.candidates)]
        read.exposure.add(found)
        read.records.update(getattr(found, "records", ()))
        read.rows += rows
        if progress:
            progress(bytes_read, source.size)
        if ticker:
            ticker(bytes_read, source.size, read.rows)
    read.matchable = bool(matcher.email_cols or matcher.phone_cols)
    for i, f in matcher.columns.items():
        name = layout.headers[i] if layout.headers and i < len(layout.headers) else ""
        read.columns[f"{label}{name or f'column {i + 1}'}"] = f
    return read


@dataclass
class _RowMatch(BatchMatch):
    """A batch's matches, with the canaries seen as records (see :class:`_RowMatcher`)."""

    records: frozenset[int] = frozenset()


class _RowMatcher(Matcher):
    """A :class:`Matcher` that also tells which canaries a row holds as a record.

    A canary is a record hit when its e-mail and its phone, drawn independently of each
    other, both match in the same row: guessing makes contacts, never that pairing.
    A canary's e-mail next to another canary's phone is two contact hits.
    """

    def match(self, batch: pa.RecordBatch, first_row: int = 0) -> BatchMatch:
        """:meth:`Matcher.match`, plus the ids of the canaries seen as records."""
        self._seen: list[tuple[int, npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
        found = super().match(batch, first_row)
        by_kind: dict[int, set[tuple[int, int]]] = {}
        for bit, rows, owners in self._seen:
            canary = owners < 0
            by_kind.setdefault(bit, set()).update(
                zip(rows[canary].tolist(), owners[canary].tolist(), strict=True)
            )
        both = by_kind.get(FIELD_BIT["email"], set()) & by_kind.get(FIELD_BIT["phone"], set())
        records = frozenset(-owner for _, owner in both)
        return _RowMatch(found.owners, found.masks, found.kinds, found.candidates, records)

    def _lookup(
        self,
        kind: str,
        positions: npt.NDArray[np.int64],
        forms: pa.Array,
        rows: list[npt.NDArray[np.int64]],
        owners: list[npt.NDArray[np.int64]],
        kinds: list[npt.NDArray[np.int64]],
    ) -> None:
        super()._lookup(kind, positions, forms, rows, owners, kinds)
        self._seen.append((FIELD_BIT[kind], rows[-1], owners[-1]))


@dataclass
class _Kit:
    """Everything a matcher needs besides the column layout."""

    index: PseudonymIndex
    pseudonyms: Pseudonymizer
    phones: PhoneCandidates
    monitored: Monitored

    def matcher(self, columns: dict[int, str]) -> Matcher:
        """A matcher for one layout of columns."""
        return _RowMatcher(self.index, self.pseudonyms, self.phones, columns, self.monitored)


_WORKER_KIT: _Kit | None = None


def _start_worker(kit: _Kit) -> None:
    global _WORKER_KIT
    # A worker only matches, and was forked before anything could start DataFusion's
    # threads: the one kind of process where the column hasher is safe and pays.
    kit.pseudonyms.accelerate()
    _WORKER_KIT = kit


def _match_in_worker(columns: dict[int, str], data: pa.RecordBatch, first_row: int) -> BatchMatch:
    assert _WORKER_KIT is not None
    return _WORKER_KIT.matcher(columns).match(data, first_row)


class _BatchMatcher:
    """Matches batches in this process, or in forked worker processes when ``workers`` > 1.

    Workers are forked once the index is loaded and before any file is read, so they
    share the index (copy-on-write), no reader thread is running when they start, and
    the workspace key never travels through a pipe. Results come back in batch order,
    so candidates and their limit are the same as in one process.
    """

    def __init__(self, kit: _Kit, workers: int) -> None:
        self.kit = kit
        self.workers = workers if "fork" in mp.get_all_start_methods() else 1
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> _BatchMatcher:
        if self.workers > 1:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=mp.get_context("fork"),
                initializer=_start_worker,
                initargs=(self.kit,),
            )
            # The pool forks on its first task: make that happen now, before reading.
            self._pool.submit(int).result()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def matcher(self, columns: dict[int, str]) -> Matcher:
        """A matcher for one layout of columns."""
        return self.kit.matcher(columns)

    def map(
        self, matcher: Matcher, batches: Iterable[Batch]
    ) -> Iterator[tuple[int, int, BatchMatch]]:
        """``(bytes read, rows, matches)`` of each batch, in order."""
        if self._pool is None:
            for batch in batches:
                yield (
                    batch.bytes_read,
                    batch.data.num_rows,
                    matcher.match(batch.data, batch.first_row),
                )
            return
        # A few batches in flight keep every worker busy while bounding memory.
        pending: deque[tuple[int, int, Future[BatchMatch]]] = deque()
        for batch in batches:
            job = self._pool.submit(_match_in_worker, matcher.columns, batch.data, batch.first_row)
            pending.append((batch.bytes_read, batch.data.num_rows, job))
            if len(pending) >= 2 * self.workers:
                done, rows, job = pending.popleft()
                yield done, rows, job.result()
        while pending:
            done, rows, job = pending.popleft()
            yield done, rows, job.result()


def run_trace(
    ws: Workspace,
    path: Path,
    *,
    progress: Progress | None = None,
    password: str | None = None,
    on_tick: Ticker | None = None,
    workers: int | None = None,
) -> TraceReport:
    """Trace the leaked file at ``path`` and store the result; nothing is stored on error.

    Archives (zip, tar, 7z, gzip, bzip2, xz, nested) are read member by member;
    ``password`` opens encrypted ones. A member that cannot be read is listed in
    ``problems`` and the rest is traced. ``progress(done, total)`` gets the bytes read
    of the current file after each batch; ``on_tick`` gets a :class:`Tick` that also
    counts the rows read so far. ``workers`` processes match the rows; by default
    dumps of 32 MiB or more use one per CPU (at most two), smaller ones this process.
    """
    limits = Limits(ws.settings.max_line_bytes, ws.settings.max_columns, ws.settings.batch_rows)
    with (
        ExitStack() as stack,
        ws.db.session() as s,
        open_sources(path, limits, password=password) as dump,
    ):
        if workers is None:
            workers = _default_workers() if _input_size(path) >= PARALLEL_MIN_BYTES else 1
        lookup = load_lookup(s, ws.vault.pseudonyms, ws.settings.workspace, split=workers > 1)
        kit = _Kit(
            lookup.pseudonyms,
            ws.vault.pseudonyms,
            PhoneCandidates(store.customer_countries(s) or ["IT"]),
            Monitored(ws.settings.mail_domains, ws.settings.phone_ranges),
        )
        pool = stack.enter_context(_BatchMatcher(kit, workers))
        exposure = Exposure()
        candidates: list[Candidate] = []
        names: dict[str, str] = {}
        rows = skipped = columns_seen = 0
        matchable = False
        records: set[int] = set()
        for source in dump:
            ticker = partial(_tick, on_tick, rows) if on_tick else None
            whole = source.name == str(path)
            label = "" if whole else f"{source.name.removeprefix(str(path) + '!')}: "
            try:
                read = _read_source(
                    source,
                    label,
                    pool,
                    MAX_CANDIDATES - len(candidates),
                    progress,
                    ticker,
                )
            except InvalidInput as exc:
                if whole:
                    raise
                reason = str(exc).removeprefix(f"{source.name}: ")
                dump.problems.append(Problem(source.name, reason))
                continue
            exposure.merge(read.exposure)
            candidates += read.candidates
            names |= read.columns
            rows += read.rows
            records |= read.records
            skipped += source.skipped_rows
            columns_seen += source.layout().columns
            matchable = matchable or read.matchable
        problems = [str(p) for p in dump.problems]
        if rows == 0:
            raise InvalidInput(f"{path}: no data rows to trace")
        if not matchable:
            raise InvalidInput(
                f"{path}: found no email or phone column in {columns_seen} columns",
                hint="canarino matches leaks on email addresses and phone numbers",
            )
        size = _input_size(path)
        found = exposure.arrays()
        trace = m.Trace(
            source_name=path.name,
            source_sha256=_sha256(path) if path.is_file() else "",
            size_bytes=size,
            rows_read=rows,
            result={},
        )
        s.add(trace)
        s.flush()
        real = found.owners > 0
        customers = _Matched(found.owners[real], found.masks[real])
        canaries = {
            -o: [k for k in ("email", "phone") if kinds & FIELD_BIT[k]]
            for o, kinds in zip(
                found.owners[~real].tolist(), found.kinds[~real].tolist(), strict=True
            )
        }
        for cid in records & canaries.keys():
            canaries[cid].append("record")
        for hit in _recognise(ws, s, candidates, kit.monitored):
            canaries.setdefault(hit.canary_id, []).append(hit.how)
        _insert_matches(s, trace.id, customers, canaries)
        decision = _attribute(ws, s, trace.id, customers.ids.size, trace.created_at)
        scope = build_scope(_scope_groups(s, lookup, customers))
        report = TraceReport(
            trace.id,
            trace.created_at,
            path.name,
            trace.source_sha256,
            size,
            rows,
            skipped,
            names,
            customers.ids.size,
            len(canaries),
            decision.suspects,
            scope,
            decision,
            problems,
        )
        trace.result = report.as_dict()
        return report


def _input_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _default_workers() -> int:
    return max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


def _tick(sink: Ticker, base: int, done: int, total: int, rows: int) -> None:
    sink(Tick(done, total, base + rows))


def _recognise(
    ws: Workspace, s: Session, candidates: list[Candidate], monitored: Monitored
) -> list[Recognition]:
    """Compare damaged rows on our domains and ranges with the canaries, in memory only."""
    if not candidates:
        return []
    sealed = s.execute(select(m.Canary.id, m.Canary.sealed)).all()
    clear = {cid: ws.vault.open(blob, context=CANARY_CONTEXT) for cid, blob in sealed}
    return CanaryRecognizer(clear, monitored).recognise(candidates)


@dataclass(frozen=True)
class _Matched:
    """Real customers a trace found (ascending ids) and the mask of fields exposed."""

    ids: npt.NDArray[np.int64]
    masks: npt.NDArray[np.int64]


def _insert_matches(
    s: Session, trace_id: int, customers: _Matched, canaries: dict[int, list[str]]
) -> None:
    conn = s.connection()
    table = m.TraceCustomer.__tablename__
    if conn.dialect.name == "sqlite":
        # One statement per field set, the ids as a JSON array SQLite unpacks itself:
        # a third faster than binding a row at a time, for hundreds of thousands.
        for mask in np.unique(customers.masks).tolist():
            conn.exec_driver_sql(
                f"INSERT INTO {table} (trace_id, customer_id, mask) "
                "SELECT ?, value, ? FROM json_each(?)",
                (trace_id, mask, json.dumps(customers.ids[customers.masks == mask].tolist())),
            )
    else:
        # Straight to the driver's executemany: the ORM's per-row bookkeeping cost seconds
        # per million people and bought nothing here.
        sql = f"INSERT INTO {table} (trace_id, customer_id, mask) VALUES (%s, %s, %s)"
        rows = list(zip(customers.ids.tolist(), customers.masks.tolist(), strict=True))
        for start in range(0, len(rows), 50_000):
            conn.exec_driver_sql(sql, [(trace_id, c, k) for c, k in rows[start : start + 50_000]])
    if canaries:
        s.execute(
            insert(m.TraceCanary),
            [
                {"trace_id": trace_id, "canary_id": cid, "matched_by": how}
                for cid, how in canaries.items()
            ],
        )


def _attribute(
    ws: Workspace, s: Session, trace_id: int, customers_matched: int, found_at: datetime
) -> Attribution:
    canary_ids = select(m.TraceCanary.canary_id).where(m.TraceCanary.trace_id == trace_id)
    how = s.execute(
        select(m.TraceCanary.canary_id, m.TraceCanary.matched_by).where(
            m.TraceCanary.trace_id == trace_id
        )
    )
    records = {cid for cid, matched_by in how if "record" in matched_by}
    per_share = dict(
        s.execute(
            select(m.ShareCustomer.share_id, func.count())
            .join(m.TraceCustomer, m.TraceCustomer.customer_id == m.ShareCustomer.customer_id)
            .where(m.TraceCustomer.trace_id == trace_id)
            .group_by(m.ShareCustomer.share_id)
        ).all()
    )
    return decide(
        ws,
        s,
        canary_ids,
        per_share,
        customers_matched,
        found_at,
        noise=ws.settings.noise,
        records=records,
    )


def decide(
    ws: Workspace,
    s: Session,
    canary_ids: Any,
    per_share: dict[int, int],
    customers_matched: int,
    found_at: datetime,
    *,
    noise: float,
    records: Collection[int] | None = None,
) -> Attribution:
    """Gather the ledger facts for the observed canaries and run the decoder.

    ``canary_ids`` is a collection or a SQL subquery of the canaries observed (controls
    included); ``per_share`` counts the leaked real customers each share contained.
    ``records`` holds the canaries a dump showed as records; ``None`` (sightings, which
    are single contact points) leaves the record test out.
    """
    observed: dict[int, tuple[str, float, list[int]]] = {}
    rows = s.execute(
        select(m.Canary.id, m.Canary.layer, m.Canary.bias, m.ShareCanary.share_id)
        .outerjoin(m.ShareCanary, m.ShareCanary.canary_id == m.Canary.id)
        .where(m.Canary.id.in_(canary_ids))
    )
    for cid, layer, bias, sid in rows:
        entry = observed.setdefault(cid, (layer, bias, []))
        if sid is not None:
            entry[2].append(sid)
    touched = set(per_share) | {sid for _, _, sids in observed.values() for sid in sids}
    recipient_ids = set(
        s.scalars(select(m.Share.recipient_id).where(m.Share.id.in_(touched))) if touched else []
    )
    parent = aliased(m.Recipient)
    facts: dict[int, ShareFacts] = {}
    if recipient_ids:
        query = (
            select(m.Share, m.Recipient, parent.name)
            .join(m.Recipient, m.Share.recipient_id == m.Recipient.id)
            .outerjoin(parent, m.Recipient.parent_id == parent.id)
            .where(m.Share.recipient_id.in_(recipient_ids), m.Share.created_at <= found_at)
        )
        for share, who, parent_name in s.execute(query):
            facts[share.id] = ShareFacts(
                share.id,
                who.id,
                who.name,
                who.kind,
                parent_name,
                share.created_at,
                share.customer_count,
                share.canary_count,
            )
    exclusive_counts: dict[int, int] = {}
    if recipient_ids:
        exclusive_counts = dict(
            s.execute(
                select(m.Share.recipient_id, func.count())
                .join(m.ShareCanary, m.ShareCanary.share_id == m.Share.id)
                .join(m.Canary, m.Canary.id == m.ShareCanary.canary_id)
                .where(m.Share.recipient_id.in_(recipient_ids), m.Canary.layer == "exclusive")
                .group_by(m.Share.recipient_id)
            ).all()
        )
    controls_total = s.scalar(
        select(func.count()).select_from(m.Canary).where(m.Canary.layer == "control")
    )
    controls_seen = sum(1 for layer, _, _ in observed.values() if layer == "control")
    recipients = s.scalar(select(func.count()).select_from(m.Recipient)) or 0
    return attribute(
        facts,
        [
            CanaryFacts(cid, layer, bias, tuple(sids), cid in (records or ()))
            for cid, (layer, bias, sids) in observed.items()
        ],
        exclusive_counts,
        per_share,
        customers_matched,
        recipients=recipients,
        epsilon=ws.settings.epsilon,
        noise=noise,
        record_noise=None if records is None else RECORD_NOISE,
        controls=(controls_seen, controls_total or 0),
        found_at=found_at,
    )


def _scope_groups(
    s: Session, lookup: Lookup, customers: _Matched
) -> list[tuple[str | None, str | None, str, int]]:
    """``(country, region, "f1,f2", people)`` of the matched ``customers``."""
    ids, masks = customers.ids, customers.masks
    codes = lookup.places.of(ids).astype(np.int64)
    names = list(lookup.places.names)
    unknown = np.flatnonzero(codes < 0)
    if unknown.size:
        # Customers newer than the index file (added while this trace ran): few, so asked.
        extra: dict[int, tuple[str | None, str | None]] = {}
        asked = ids[unknown].tolist()
        for start in range(0, len(asked), 10_000):
            rows = s.execute(
                select(m.Customer.id, m.Customer.country, m.Customer.region).where(
                    m.Customer.id.in_(asked[start : start + 10_000])
                )
            )
            extra.update((cid, (country, region)) for cid, country, region in rows)
        for i in unknown.tolist():
            names.append(extra.get(int(ids[i]), (None, None)))
            codes[i] = len(names) - 1
    keys, counts = np.unique((codes << 32) | masks, return_counts=True)
    return [
        (*names[int(k) >> 32], ",".join(fields_of(int(k) & 0xFFFFFFFF)), int(n))
        for k, n in zip(keys.tolist(), counts.tolist(), strict=True)
    ]


def exposed_people(ws: Workspace, trace_id: int) -> Iterator[PersonScope]:
    """Each real person trace ``trace_id`` exposes, with their exposed fields and categories.

    Streams in customer order, so a leak of millions is listed in constant memory.
    Canaries are not people and never appear here.
    """
    with ws.db.session() as s:
        store.get_trace(s, trace_id)  # a clear error for an unknown trace
        query = (
            select(m.TraceCustomer.customer_id, m.Customer.country, m.Customer.region)
            .add_columns(m.TraceCustomer.mask)
            .join(m.Customer, m.Customer.id == m.TraceCustomer.customer_id)
            .where(m.TraceCustomer.trace_id == trace_id)
            .order_by(m.TraceCustomer.customer_id)
            .execution_options(yield_per=10_000)
        )
        for cid, country, region, mask in s.execute(query):
            yield person_scope(cid, country, region, ",".join(fields_of(mask)))


def get_trace_report(ws: Workspace, trace_id: int) -> dict[str, Any]:
    """The stored result of trace ``trace_id``."""
    with ws.db.session() as s:
        return dict(store.get_trace(s, trace_id).result)


def list_traces(ws: Workspace, limit: int | None = None) -> list[dict[str, Any]]:
    """Stored traces, newest first (all, or the newest ``limit``), as short summaries."""
    with ws.db.session() as s:
        rows = s.scalars(select(m.Trace).order_by(m.Trace.id.desc()).limit(limit)).all()
        return [
            {
                "trace_id": t.id,
                "created_at": t.created_at.isoformat(timespec="seconds"),
                "source": t.source_name,
                "rows_read": t.rows_read,
                "customers_matched": t.result.get("customers_matched", 0),
                "top_suspect": (t.result.get("suspects") or [{}])[0].get("recipient"),
            }
            for t in rows
        ]


def recent_traces(ws: Workspace, limit: int = 5) -> list[dict[str, Any]]:
    """The newest traces' summaries, reused until the database changes."""
    return ws.db.cached(("traces", limit), lambda: list_traces(ws, limit))

"""Alerts: tell the security team, within a minute, that a share's canaries were contacted.

Each share whose canary receives an evidence sighting (not expected use, not a control
canary) gets one alert per UTC day on which such sightings arrive. The alert names the
recipient, the share and when it was made, and the decoder's p-value, and links to the
share. It goes to every configured target: e-mail to ``security_contacts`` through
``smtp_relay``, a JSON POST to each ``alert_webhooks`` URL and a Slack-compatible message
to each ``slack_webhooks`` URL. The ``alerts`` table's unique (share, day) key makes the
de-duplication hold across processes; each target's outcome is kept in
``Alert.deliveries``, and a failed target is tried again on a later call, with backoff.

A sighting of a *shared* canary alone alerts only when the decoder accuses the
recipient: such a canary sits in many shares, and one contact must not alert them all.
No alert carries a canary's contact details.
"""

from __future__ import annotations

import hashlib
import json
import smtplib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import models as m
from .attribution import Attribution, one_in
from .errors import DeliveryError
from .inbound.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_generic
from .sightings import attribute_sightings
from .workspace import Workspace

# Sightings recorded this long ago still raise (or retry) alerts; older ones are history.
LOOKBACK = timedelta(days=7)
TIMEOUT = httpx.Timeout(5.0, connect=3.0)
SMTP_TIMEOUT = 10.0
FIRST_RETRY = 30
MAX_RETRY = 3600


@dataclass
class AlertView:
    """One alert as people and scripts see it; no personal data."""

    alert_id: int
    share_id: int
    recipient: str
    recipient_kind: str
    shared_at: str
    day: str
    created_at: str
    sightings: int
    channels: list[str]
    first_seen: str | None
    p_value: float | None
    accused: bool
    explanation: str
    link: str
    deliveries: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @property
    def delivered(self) -> bool:
        """Whether every target took the alert."""
        return all(d.get("state") == "sent" for d in self.deliveries.values())


@dataclass(frozen=True)
class _Target:
    """One place an alert goes: its key in ``Alert.deliveries`` and how to send there."""

    key: str
    kind: str
    address: str


def _url_key(kind: str, url: str) -> str:
    # Webhook URLs often embed a secret token: keep only the host and a short hash.
    host = urlsplit(url).hostname or "?"
    return f"{kind}:{host}#{hashlib.sha256(url.encode()).hexdigest()[:10]}"


def _targets(ws: Workspace) -> dict[str, _Target]:
    cfg = ws.settings
    out: dict[str, _Target] = {}
    # Contacts count as targets even without a relay: the alert waits for one to be set.
    for address in cfg.security_contacts:
        out[f"email:{address}"] = _Target(f"email:{address}", "email", address)
    for url in cfg.alert_webhooks:
        out[_url_key("webhook", url)] = _Target(_url_key("webhook", url), "webhook", url)
    for url in cfg.slack_webhooks:
        out[_url_key("slack", url)] = _Target(_url_key("slack", url), "slack", url)
    return out


@dataclass
class _Candidate:
    share_id: int
    day: str
    first_sighting: int
    sightings: int = 0
    exclusive: bool = False


def _day_of(dialect: str) -> Any:
    """SQL for the UTC day (``YYYY-MM-DD``) a sighting was recorded, or ``None``."""
    if dialect == "sqlite":
        # Stored as UTC text 'YYYY-MM-DD HH:MM:SS…' (see models.UTCDateTime).
        return func.substr(m.Sighting.created_at, 1, 10)
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", m.Sighting.created_at), "YYYY-MM-DD")
    return None


def _candidates(ws: Workspace, since: datetime) -> dict[tuple[int, str], _Candidate]:
    """(share, day) pairs with evidence sightings recorded since ``since`` and no alert yet.

    The database groups and filters, so a call returns only what is new.
    """
    with ws.db.session() as s:
        day = _day_of(s.get_bind().dialect.name)
        if day is None:
            return _candidates_portable(s, since)
        alerted = (
            select(m.Alert.id)
            .where(m.Alert.share_id == m.ShareCanary.share_id, m.Alert.day == day)
            .exists()
        )
        query = (
            select(
                m.ShareCanary.share_id,
                day,
                func.min(m.Sighting.id),
                func.count(),
                func.max(case((m.Canary.layer == "exclusive", 1), else_=0)),
            )
            .select_from(m.Sighting)
            .join(m.ShareCanary, m.ShareCanary.canary_id == m.Sighting.canary_id)
            .join(m.Canary, m.Canary.id == m.Sighting.canary_id)
            .join(m.Share, m.Share.id == m.ShareCanary.share_id)
            .where(*_evidence_since(since), ~alerted)
            .group_by(m.ShareCanary.share_id, day)
        )
        return {
            (share_id, name): _Candidate(share_id, name, first, count, bool(exclusive))
            for share_id, name, first, count, exclusive in s.execute(query)
        }


def _evidence_since(since: datetime) -> list[Any]:
    return [
        m.Sighting.created_at >= since,
        m.Sighting.expected_use.is_(False),
        m.Canary.layer != "control",
        # A share made after the contact cannot be where the canary leaked from.
        m.Share.created_at <= m.Sighting.seen_at,
    ]


def _candidates_portable(s: Session, since: datetime) -> dict[tuple[int, str], _Candidate]:
    """The same as :func:`_candidates`, grouped in Python, for other databases."""
    query = (
        select(m.Sighting.id, m.Sighting.created_at, m.ShareCanary.share_id, m.Canary.layer)
        .join(m.ShareCanary, m.ShareCanary.canary_id == m.Sighting.canary_id)
        .join(m.Canary, m.Canary.id == m.Sighting.canary_id)
        .join(m.Share, m.Share.id == m.ShareCanary.share_id)
        .where(*_evidence_since(since))
        .order_by(m.Sighting.id)
    )
    out: dict[tuple[int, str], _Candidate] = {}
    for sid, created, share_id, layer in s.execute(query):
        key = (share_id, created.astimezone(UTC).date().isoformat())
        c = out.setdefault(key, _Candidate(share_id, key[1], sid))
        c.sightings += 1
        c.exclusive |= layer == "exclusive"
    for share_id, day in s.execute(
        select(m.Alert.share_id, m.Alert.day).where(m.Alert.share_id.in_({k[0] for k in out}))
    ):
        out.pop((share_id, day), None)
    return out


def _create(
    ws: Workspace,
    found: dict[tuple[int, str], _Candidate],
    verdicts: dict[str, dict[str, Any]],
    now: datetime,
) -> list[int]:
    """Insert the alerts the decoder supports; return the ids this process created."""
    targets = _targets(ws)
    created: list[int] = []
    for c in found.values():
        with ws.db.session() as s:
            share = s.get(m.Share, c.share_id)
            who = s.get(m.Recipient, share.recipient_id) if share else None
            if who is None:
                continue
            verdict = verdicts.get(who.name, {})
            if not c.exclusive and not verdict.get("accused"):
                continue
            alert = m.Alert(
                share_id=c.share_id,
                day=c.day,
                sighting_id=c.first_sighting,
                created_at=now,
                p_value=verdict.get("p_value"),
                deliveries={key: {"state": "pending", "attempts": 0} for key in targets},
            )
            s.add(alert)
            try:
                s.flush()
            except IntegrityError:
                # Another process raised this alert first; it delivers it.
                s.rollback()
                continue
            created.append(alert.id)
    return created


def _view(ws: Workspace, alert: m.Alert, verdict: dict[str, Any] | None = None) -> AlertView:
    with ws.db.session() as s:
        share = s.get(m.Share, alert.share_id)
        assert share is not None
        who = s.get(m.Recipient, share.recipient_id)
        assert who is not None
        day_start = datetime.combine(date.fromisoformat(alert.day), datetime.min.time(), UTC)
        rows = s.execute(
            select(m.Sighting.channel, m.Sighting.seen_at)
            .join(m.ShareCanary, m.ShareCanary.canary_id == m.Sighting.canary_id)
            .where(
                m.ShareCanary.share_id == share.id,
                m.Sighting.expected_use.is_(False),
                m.Sighting.created_at >= day_start,
                m.Sighting.created_at < day_start + timedelta(days=1),
            )
        ).all()
    verdict = verdict or {}
    seen = sorted(at for _, at in rows)
    return AlertView(
        alert_id=alert.id,
        share_id=share.id,
        recipient=who.name,
        recipient_kind=who.kind,
        shared_at=share.created_at.isoformat(timespec="seconds"),
        day=alert.day,
        created_at=alert.created_at.isoformat(timespec="seconds"),
        sightings=len(rows),
        channels=sorted({c for c, _ in rows}),
        first_seen=seen[0].isoformat(timespec="seconds") if seen else None,
        # The verdict of this round, when there is one, is newer than the stored p-value.
        p_value=verdict.get("p_value", alert.p_value),
        accused=bool(verdict.get("accused", False)),
        explanation=str(verdict.get("explanation", "")),
        link=f"{ws.settings.public_url.rstrip('/')}/shares/{share.id}",
        deliveries=dict(alert.deliveries or {}),
    )


def summary(view: AlertView) -> str:
    """The alert in a few lines of plain text, as e-mail and Slack show it."""
    shared = view.shared_at[:16].replace("T", " ")
    first = (view.first_seen or "")[:16].replace("T", " ")
    odds = (
        f"the chance that an innocent recipient matches this well is {one_in(view.p_value)} "
        f"(p = {view.p_value:.2g})"
        if view.p_value is not None
        else "the decoder has no p-value for this recipient yet"
    )
    verdict = (
        f"{view.recipient} is accused"
        if view.accused
        else f"{view.recipient} is not accused at the workspace's error bound (yet)"
    )
    lines = [
        f"Canaries of share #{view.share_id}, sent to {view.recipient} ({view.recipient_kind}) "
        f"on {shared} UTC, were contacted: {view.sightings} sighting(s) by "
        f"{', '.join(view.channels) or 'unknown channel'}, the first at {first} UTC.",
        f"Decoder: {verdict}; {odds}.",
    ]
    if view.explanation:
        lines.append(view.explanation)
    lines.append(f"Evidence: {view.link}")
    return "\n".join(lines)


def _payload(view: AlertView) -> dict[str, Any]:
    data = view.as_dict()
    data.pop("deliveries")
    return {"type": "canarino.alert", **data, "text": summary(view)}


def _send_email(ws: Workspace, target: _Target, view: AlertView) -> None:
    cfg = ws.settings
    if not cfg.smtp_relay:
        raise DeliveryError("no smtp_relay is set", hint="set smtp_relay = 'HOST:PORT'")
    host, _, port = (
        cfg.smtp_relay.rpartition(":") if ":" in cfg.smtp_relay else (cfg.smtp_relay, "", "25")
    )
    msg = EmailMessage()
    msg["From"] = cfg.company_email
    msg["To"] = target.address
    msg["Subject"] = (
        f"[canarino] Leak alert: canaries of share #{view.share_id} ({view.recipient}) "
        "were contacted"
    )
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(f"alert-{view.alert_id}", cfg.company_email.rpartition("@")[2])
    msg.set_content(summary(view) + "\n")
    with smtplib.SMTP(host or "localhost", int(port or 25), timeout=SMTP_TIMEOUT) as smtp:
        smtp.send_message(msg)


def _post(url: str, payload: dict[str, Any], headers: dict[str, str]) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode()
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
        reply = client.post(
            url, content=body, headers={"Content-Type": "application/json", **headers}
        )
    reply.raise_for_status()


def _send_webhook(ws: Workspace, target: _Target, view: AlertView) -> None:
    payload = _payload(view)
    headers: dict[str, str] = {}
    secret = ws.settings.webhook_secret
    if secret is not None:
        # Signed like incoming webhooks, so the receiver can check it came from us.
        stamp = str(int(time.time()))
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign_generic(secret.get_secret_value().encode(), stamp, body),
        }
    _post(target.address, payload, headers)


def _send_slack(ws: Workspace, target: _Target, view: AlertView) -> None:
    _post(target.address, {"text": summary(view)}, {})


_SENDERS: dict[str, Callable[[Workspace, _Target, AlertView], None]] = {
    "email": _send_email,
    "webhook": _send_webhook,
    "slack": _send_slack,
}


def _error(exc: Exception) -> str:
    """Why a delivery failed, without the URL (it may hold a token)."""
    if isinstance(exc, DeliveryError):
        return str(exc)
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP {exc.smtp_code}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "SMTP recipient refused"
    return type(exc).__name__


def _due(state: dict[str, Any], now: datetime, mine: bool) -> bool:
    """Whether a target should be tried now: never tried (by us), or its backoff is over."""
    if state.get("state") == "sent":
        return False
    attempts = int(state.get("attempts", 0))
    if attempts == 0 or "at" not in state:
        return mine
    wait = min(FIRST_RETRY * 2 ** (attempts - 1), MAX_RETRY)
    return datetime.fromisoformat(state["at"]) + timedelta(seconds=wait) <= now


def _deliver(
    ws: Workspace,
    alert: m.Alert,
    targets: dict[str, _Target],
    verdict: dict[str, Any],
    now: datetime,
    mine: bool,
) -> AlertView:
    """Send the alert to each due target at once; record every outcome."""
    view = _view(ws, alert, verdict)
    due = [
        targets[k]
        for k, state in view.deliveries.items()
        if k in targets and _due(state, now, mine)
    ]

    def attempt(target: _Target) -> tuple[str, str | None]:
        try:
            _SENDERS[target.kind](ws, target, view)
        except Exception as exc:
            return target.key, _error(exc)
        return target.key, None

    if not due:
        return view
    with ThreadPoolExecutor(max_workers=min(8, len(due))) as pool:
        outcomes = list(pool.map(attempt, due))
    with ws.db.session() as s:
        row = s.get(m.Alert, alert.id)
        assert row is not None
        deliveries = dict(row.deliveries or {})
        for key, problem in outcomes:
            state = dict(deliveries.get(key, {}))
            state["attempts"] = int(state.get("attempts", 0)) + 1
            state["at"] = now.isoformat(timespec="seconds")
            state["state"] = "failed" if problem else "sent"
            if problem:
                state["error"] = problem
            else:
                state.pop("error", None)
            deliveries[key] = state
        row.deliveries = deliveries
    view.deliveries = deliveries
    return view


def raise_alerts(ws: Workspace, *, now: datetime | None = None) -> list[AlertView]:
    """Raise the alerts new evidence sightings call for and retry failed deliveries.

    Cheap when nothing is new: one query over recent sightings and one over recent
    alerts. Returns the alerts raised or retried by this call.
    """
    now = now or datetime.now(UTC)
    since = now - LOOKBACK
    found = _candidates(ws, since)
    verdicts = _verdicts(ws) if found else None
    created = set(_create(ws, found, verdicts or {}, now)) if found else set()
    targets = _targets(ws)
    with ws.db.session() as s:
        recent = s.scalars(
            select(m.Alert).where(m.Alert.created_at >= since).order_by(m.Alert.id)
        ).all()
    pending = []
    for alert in recent:
        # A fresh alert of another process is that process's to deliver first.
        orphan = alert.id in created or alert.created_at <= now - timedelta(seconds=FIRST_RETRY)
        states = (alert.deliveries or {}).items()
        # New alerts are returned even with no target configured: they are still recorded.
        if alert.id in created or any(k in targets and _due(v, now, orphan) for k, v in states):
            pending.append((alert, orphan))
    if not pending:
        return []
    if verdicts is None:
        verdicts = _verdicts(ws)
    out = []
    for alert, orphan in pending:
        with ws.db.session() as s:
            share = s.get(m.Share, alert.share_id)
            who = s.get(m.Recipient, share.recipient_id) if share else None
        verdict = verdicts.get(who.name, {}) if who else {}
        out.append(_deliver(ws, alert, targets, verdict, now, orphan))
    return out


def _verdicts(ws: Workspace) -> dict[str, dict[str, Any]]:
    """The decoder's verdict on every suspect, by recipient name."""
    decision: Attribution = attribute_sightings(ws)
    return {
        s.recipient: {"accused": s.accused, "explanation": s.explanation, "p_value": s.p_value}
        for s in decision.suspects
    }


def list_alerts(ws: Workspace, *, limit: int = 50) -> list[AlertView]:
    """The latest alerts, newest first, with each target's delivery state."""
    with ws.db.session() as s:
        rows = s.scalars(select(m.Alert).order_by(m.Alert.id.desc()).limit(limit)).all()
    return [_view(ws, a) for a in rows]

"""SQLAlchemy tables. Personal data is stored only sealed (encrypted) or as pseudonyms.

Only constructs PostgreSQL also supports are used; the schema is created by Alembic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store in UTC; naive values are refused."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Read back as aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with stable constraint names for migrations."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


class Customer(Base):
    """A real data subject; fields sealed, identity as a pseudonym."""

    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    identity: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    country: Mapped[str | None] = mapped_column(String(2), index=True)
    region: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(8))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Recipient(Base):
    """Who receives customer data: a vendor, an employee or a system."""

    __tablename__ = "recipients"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("recipients.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Canary(Base):
    """A synthetic customer; its identity is sealed like a real one.

    ``layer`` is ``exclusive`` (planted in one share), ``shared`` (drawn into each share
    with probability ``bias``) or ``control`` (never shared: measures background noise).
    """

    __tablename__ = "canaries"
    id: Mapped[int] = mapped_column(primary_key=True)
    layer: Mapped[str] = mapped_column(
        String(16), default="exclusive", server_default="exclusive", index=True
    )
    bias: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    locale: Mapped[str] = mapped_column(String(16))
    country: Mapped[str | None] = mapped_column(String(2))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Pseudonym(Base):
    """Keyed pseudonym of one normalised identifier of a customer or a canary."""

    __tablename__ = "pseudonyms"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    canary_id: Mapped[int | None] = mapped_column(
        ForeignKey("canaries.id", ondelete="CASCADE"), index=True
    )


class Share(Base):
    """One delivery of customer data to one recipient at one time."""

    __tablename__ = "shares"
    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    fields: Mapped[list[Any]]
    customer_filter: Mapped[str] = mapped_column(String(500), default="")
    customer_count: Mapped[int]
    canary_count: Mapped[int]
    export_sha256: Mapped[str] = mapped_column(String(64))


class ShareCustomer(Base):
    """The ledger of which real customers went out in which share."""

    __tablename__ = "share_customers"
    share_id: Mapped[int] = mapped_column(
        ForeignKey("shares.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    __table_args__ = (Index("ix_share_customers_customer", "customer_id"),)


class ShareCanary(Base):
    """Which canaries were planted in which share."""

    __tablename__ = "share_canaries"
    share_id: Mapped[int] = mapped_column(
        ForeignKey("shares.id", ondelete="CASCADE"), primary_key=True
    )
    canary_id: Mapped[int] = mapped_column(ForeignKey("canaries.id"), primary_key=True)
    __table_args__ = (Index("ix_share_canaries_canary", "canary_id"),)


class Trace(Base):
    """The stored result of analysing one leak; ``result`` holds no personal data."""

    __tablename__ = "traces"
    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    source_name: Mapped[str] = mapped_column(String(500))
    source_sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    rows_read: Mapped[int] = mapped_column(BigInteger)
    result: Mapped[dict[str, Any]]


class TraceCustomer(Base):
    """A real customer found in a traced leak, with the fields exposed there.

    ``mask`` has bit i set when field ``FIELD_NAMES[i]`` was exposed: a large leak
    writes hundreds of thousands of these rows, so they stay small.
    """

    __tablename__ = "trace_customers"
    __table_args__ = ({"sqlite_with_rowid": False},)
    trace_id: Mapped[int] = mapped_column(
        ForeignKey("traces.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    mask: Mapped[int]


class TraceCanary(Base):
    """A canary found in a traced leak, and by which identifiers."""

    __tablename__ = "trace_canaries"
    trace_id: Mapped[int] = mapped_column(
        ForeignKey("traces.id", ondelete="CASCADE"), primary_key=True
    )
    canary_id: Mapped[int] = mapped_column(ForeignKey("canaries.id"), primary_key=True)
    matched_by: Mapped[list[Any]]


class Incident(Base):
    """The response case opened on a leak."""

    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default="open")
    trace_id: Mapped[int | None] = mapped_column(ForeignKey("traces.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    aware_at: Mapped[datetime]
    occurred_at: Mapped[datetime | None]
    contained_at: Mapped[datetime | None]
    risk: Mapped[str] = mapped_column(String(16), default="risk", server_default="risk")
    risk_reason: Mapped[str | None] = mapped_column(Text)


class IncidentPerson(Base):
    """An affected person of an incident and the fields of theirs exposed."""

    __tablename__ = "incident_people"
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    fields: Mapped[str] = mapped_column(String(500))


class Notice(Base):
    """One message to one affected person on one channel: the outbox row."""

    __tablename__ = "notices"
    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(8))
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str] = mapped_column(String(200), index=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # Outbox lease: a row in 'sending' past lease_until was left by a run that stopped.
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(32))
    reference: Mapped[str | None] = mapped_column(String(16), index=True)
    route: Mapped[str | None] = mapped_column(String(64))
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    events: Mapped[list[Any] | None]


class AllowedSender(Base):
    """Infrastructure a recipient is authorised to contact customers from."""

    __tablename__ = "allowed_senders"
    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("recipient_id", "kind", "value"),)


class Sighting(Base):
    """One contact with a monitored address or number; the contact kept as a pseudonym."""

    __tablename__ = "sightings"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(64), unique=True)
    contact_digest: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    canary_id: Mapped[int | None] = mapped_column(ForeignKey("canaries.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    seen_at: Mapped[datetime] = mapped_column(index=True)
    strong: Mapped[bool] = mapped_column(Boolean, default=False)
    expected_use: Mapped[bool] = mapped_column(Boolean, default=False)
    allowed_recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipients.id"))
    evidence: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundMessage(Base):
    """A raw message that reached a canary, kept compressed and size-capped as evidence."""

    __tablename__ = "inbound_messages"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sighting_id: Mapped[int | None] = mapped_column(ForeignKey("sightings.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    channel: Mapped[str] = mapped_column(String(16), default="email")
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class NoiseCount(Base):
    """Contacts per day and channel that were not evidence: unknown addresses, controls."""

    __tablename__ = "noise_counts"
    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


class Alert(Base):
    """One alert about one share on one day; the unique key is the de-duplication."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(primary_key=True)
    share_id: Mapped[int] = mapped_column(ForeignKey("shares.id"), index=True)
    day: Mapped[str] = mapped_column(String(10))
    sighting_id: Mapped[int | None] = mapped_column(ForeignKey("sightings.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    p_value: Mapped[float | None] = mapped_column(Float)
    deliveries: Mapped[dict[str, Any]]
    __table_args__ = (UniqueConstraint("share_id", "day"),)


class Campaign(Base):
    """Sightings that share sender infrastructure, links or message template."""

    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    features: Mapped[dict[str, Any]]


class CampaignSighting(Base):
    """Membership of a sighting in a campaign."""

    __tablename__ = "campaign_sightings"
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    sighting_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("sightings.id"), primary_key=True
    )


class User(Base):
    """A person who signs in to the web app."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A machine's bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class WebSession(Base):
    """A signed-in browser; only the SHA-256 of the cookie value is stored."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class AuditEvent(Base):
    """Who viewed, revealed or exported personal data, or changed something, and when."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    target: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]]
    address: Mapped[str | None] = mapped_column(String(64))


class OutboundContact(Base):
    """A contact staff registered, so a customer can check that a caller is really us."""

    __tablename__ = "outbound_contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    contact_digest: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    code_digest: Mapped[str] = mapped_column(String(64), index=True)
    staff: Mapped[str] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class Assessment(Base):
    """One computation of an incident's obligations, kept so changes over time show."""

    __tablename__ = "assessments"
    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(String(300))
    obligations: Mapped[list[Any]]


class PoolMailbox(Base):
    """A mailbox the company provisioned at a consumer provider, given to one canary ever.

    The address (with the name it was made for) is sealed; ``digest`` is its e-mail
    pseudonym, so mail to it and a second registration are recognised. ``canary_id`` is
    set when a canary takes it; from then on it is used for good.
    """

    __tablename__ = "mailbox_pool"
    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    domain: Mapped[str] = mapped_column(String(253), index=True)
    country: Mapped[str | None] = mapped_column(String(2))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    canary_id: Mapped[int | None] = mapped_column(
        ForeignKey("canaries.id", ondelete="SET NULL"), index=True
    )
    used_at: Mapped[datetime | None]
    added_at: Mapped[datetime] = mapped_column(default=utcnow)

"""Settings: one typed object, from ``CANARINO_*`` variables and the workspace file.

Precedence: explicit arguments, then environment variables, then ``canarino.toml`` in the
workspace, then defaults. Created at the door (CLI, web) and passed down explicitly.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import WorkspaceError

CONFIG_FILE = "canarino.toml"
SECRET_FILE = "secret.key"
DATABASE_FILE = "canarino.db"


class Settings(BaseSettings):
    """Everything canarino can be configured with; each field documents itself."""

    model_config = SettingsConfigDict(env_prefix="CANARINO_", extra="forbid")

    workspace: Path = Field(Path("."), description="Folder holding the config, key and database.")
    database_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL of the database; default: SQLite file in the workspace. "
        "Set a postgresql+psycopg:// URL for production.",
    )
    secret_file: Path | None = Field(
        None,
        description="File with the workspace secret (keyed pseudonyms, encryption at rest); "
        "default: secret.key in the workspace. Keep it outside database backups.",
    )
    company_name: str = Field("Example S.p.A.", description="Who writes to affected people.")
    company_email: str = Field(
        "privacy@example.com", description="Sender address of notices and contact for questions."
    )
    dpo_contact: str = Field(
        "dpo@example.com", description="Contact of the data protection officer, named in notices."
    )
    mail_domains: list[str] = Field(
        default_factory=list, description="Monitored mail domains canary addresses live on."
    )
    phone_ranges: list[str] = Field(
        default_factory=list,
        description="Monitored phone number prefixes in E.164 (e.g. +3934755) canaries use.",
    )
    places_file: Path | None = Field(
        None,
        description="CSV of real places (country, city, postcode, region, population) "
        "canaries may live in where no customer of a share does, e.g. the national "
        "postcode list; relative to the workspace.",
    )
    timezone: str = Field("Europe/Rome", description="Time zone deadlines are shown in.")
    establishment: str = Field(
        "IT",
        description="Country of the company's main establishment (ISO code): decides the "
        "lead supervisory authority under the GDPR.",
    )
    role: str = Field(
        "controller", description="The company's role for the shared data: controller or processor."
    )
    sectors: list[str] = Field(
        default_factory=list,
        description="Regimes that apply to the company, e.g. telecom_provider, "
        "hipaa_covered_entity, nis2_entity.",
    )
    canary_min: int = Field(10, ge=1, description="Fewest canaries added to any share.")
    canary_max_fraction: float = Field(
        0.02, gt=0, le=0.2, description="Most canaries in a share, as a fraction of its rows."
    )
    canary_smallest_leak: float = Field(
        0.02,
        gt=0,
        le=1,
        description="Smallest leaked fraction of a share that should still contain a canary.",
    )
    canary_miss: float = Field(
        0.01, gt=0, lt=1, description="Accepted chance that such a smallest leak has no canary."
    )
    colluders: int = Field(
        1,
        ge=1,
        le=10,
        description="Most recipients expected to merge their copies; above 1 adds a shared "
        "canary layer that survives colluders keeping only the records they all hold.",
    )
    epsilon: float = Field(
        1e-6,
        gt=0,
        lt=0.5,
        description="Accepted chance, per trace, of accusing any innocent recipient.",
    )
    noise: float = Field(
        1e-6,
        ge=0,
        lt=1,
        description="Assumed chance that a canary shows up in a leak without its recipient "
        "having leaked it; control canaries raise it when they are seen.",
    )
    sighting_noise: float = Field(
        1e-3,
        ge=0,
        lt=1,
        description="Assumed chance that a canary address or number is contacted by spam "
        "or robocalls in the window; control canaries raise it when they are contacted.",
    )
    design_recipients: int = Field(
        100, ge=1, description="Recipients to size the canary design for, at the least."
    )
    control_canaries: int = Field(
        100, ge=0, description="Canaries never shared, kept to measure background noise."
    )
    batch_rows: int = Field(65_536, ge=1_000, description="Rows per batch when streaming dumps.")
    max_line_bytes: int = Field(
        1 << 20, ge=1024, description="Longest line accepted in a CSV file, in bytes."
    )
    max_columns: int = Field(1_000, ge=1, description="Most columns accepted in a CSV file.")
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="Address the web app is reached at; alerts and notices link to it.",
    )
    web_listen: str = Field("127.0.0.1:8000", description="HOST:PORT the web app listens on.")
    smtp_listen: str = Field(
        "127.0.0.1:2525", description="HOST:PORT the inbound SMTP listener for canary mail uses."
    )
    smtp_max_bytes: int = Field(
        10 << 20, ge=1024, description="Largest inbound message accepted, in bytes."
    )
    smtp_max_connections: int = Field(
        100, ge=1, description="Most simultaneous inbound SMTP connections."
    )
    smtp_rate_per_minute: int = Field(
        600, ge=1, description="Most inbound messages accepted per client IP per minute."
    )
    smtp_tls_cert: Path | None = Field(
        None, description="PEM certificate chain the inbound SMTP listener offers STARTTLS with."
    )
    smtp_tls_key: Path | None = Field(None, description="PEM private key of smtp_tls_cert.")
    raw_message_cap: int = Field(
        1 << 20,
        ge=1024,
        description="Most bytes of a raw inbound message kept (compressed) as evidence.",
    )
    security_contacts: list[str] = Field(
        default_factory=list, description="E-mail addresses that receive leak alerts."
    )
    smtp_relay: str | None = Field(
        None,
        description="SMTP relay (HOST:PORT) for mail the app sends on its own: alerts, "
        "self-check answers.",
    )
    alert_webhooks: list[str] = Field(
        default_factory=list, description="URLs that receive each alert as JSON."
    )
    slack_webhooks: list[str] = Field(
        default_factory=list, description="Slack-compatible incoming-webhook URLs for alerts."
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Shared key of the generic SMS/voice webhooks (HMAC-SHA256 signatures).",
    )
    twilio_auth_token: SecretStr | None = Field(
        None, description="Twilio auth token, to verify X-Twilio-Signature on webhooks."
    )
    sms_provider: Literal["json", "twilio"] | None = Field(
        None,
        description="HTTP provider of notices by text message: 'json' (a signed JSON POST to "
        "sms_url) or 'twilio' (Twilio's Messages API); none: no text messages.",
    )
    sms_url: str | None = Field(
        None,
        description="Where text messages are posted: the JSON endpoint, or the base URL of "
        "a Twilio-compatible API (default https://api.twilio.com).",
    )
    sms_account: str | None = Field(
        None, description="Twilio account SID (the user name of basic auth)."
    )
    sms_token: SecretStr | None = Field(
        None,
        description="Provider credential: bearer token of the JSON provider, or Twilio auth token.",
    )
    sms_secret: SecretStr | None = Field(
        None,
        description="Key the JSON provider's requests are signed with (HMAC-SHA256, as webhooks).",
    )
    sms_from: str | None = Field(
        None,
        description="Sender of text messages: an E.164 number, an alphanumeric sender ID, or a "
        "Twilio messaging service SID (MG…).",
    )
    sms_when: Literal["never", "fallback", "always"] = Field(
        "never",
        description="When a person gets a text message: 'fallback' when no e-mail reaches them "
        "(none, invalid, hard bounce; next to the letter), 'always' next to every notice.",
    )
    selfcheck_per_hour: int = Field(
        20, ge=1, description="Most public self-check or caller-check requests per IP per hour."
    )

    @field_validator("mail_domains")
    @classmethod
    def _domains_lower(cls, value: list[str]) -> list[str]:
        return [d.strip().lower().lstrip("@") for d in value if d.strip()]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Let environment variables override values read from the workspace file."""
        return env_settings, init_settings

    @property
    def secret_path(self) -> Path:
        """Where the workspace secret lives."""
        return self.secret_file or self.workspace / SECRET_FILE

    @property
    def url(self) -> str:
        """The database URL in force."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.workspace / DATABASE_FILE).resolve()}"


def read_config(workspace: Path) -> dict[str, Any]:
    """Read the workspace file ``canarino.toml``; a broken file is a clear error."""
    path = workspace / CONFIG_FILE
    try:
        with path.open("rb") as fp:
            data = tomllib.load(fp)
    except FileNotFoundError:
        raise WorkspaceError(
            f"no canarino workspace at {workspace}",
            hint="run 'canarino init' there, or pass --workspace / set CANARINO_WORKSPACE",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise WorkspaceError(f"{path}: not valid TOML: {exc}") from None
    section = data.get("canarino", {})
    if not isinstance(section, dict):
        raise WorkspaceError(f"{path}: [canarino] must be a table")
    return section


def load_settings(workspace: Path, **overrides: Any) -> Settings:
    """Build the settings of the workspace at ``workspace``."""
    values = read_config(workspace)
    values.update(overrides)
    values["workspace"] = workspace
    try:
        return Settings(**values)
    except ValueError as exc:
        raise WorkspaceError(f"{workspace / CONFIG_FILE}: invalid setting: {exc}") from None


def find_workspace(start: Path) -> Path | None:
    """Return the nearest folder at or above ``start`` that holds a workspace file."""
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    return None

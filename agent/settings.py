"""Service configuration: one `Settings`, read from `SMSAGENT_*` environment variables.

Built once by an entry point and passed down; nothing reads the environment anywhere else.
The defaults run on a fresh machine: a SQLite file under ./var/, the console SMS provider, no LLM.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.booking import DEFAULT_HOURS, Hours
from agent.phones import InvalidPhoneNumber, normalize_phone
from agent.quiet import parse_window

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/smsagent.db"

Vertical = Literal["dental", "home_services", "generic"]
ProviderName = Literal["console", "twilio", "telnyx", "gateway", "avochato"]
PROVIDER_NAMES: tuple[ProviderName, ...] = ("console", "twilio", "telnyx", "gateway", "avochato")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMSAGENT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Where providers reach this service; signatures are checked against it, not the request URL,
    # which is wrong behind a proxy or tunnel.
    public_url: str | None = None

    database_url: str = DEFAULT_DATABASE_URL
    # PostgreSQL only: the schema (search_path) the tables live in.
    database_schema: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")

    api_key: SecretStr | None = None
    # Each API credential (a key, an Avaamo channel; without one, the client's address) may send
    # `burst` requests at once, then `rate_per_second` on average; past that it is answered 429.
    api_rate_per_second: float = Field(default=20.0, gt=0)
    api_rate_burst: int = Field(default=40, ge=1)

    business_name: str = "our office"
    vertical: Vertical = "generic"
    timezone: str = "America/New_York"
    # The review commands (`transcripts`, `report`) read as of this moment instead of now, so
    # a report or a "2 hours ago" is reproducible; the service itself ignores it.
    review_now: datetime | None = None
    # Keep each agent run's exact model input and output (`transcripts show --raw`).
    keep_model_io: bool = True
    # The built-in appointment book: opening hours by weekday, e.g.
    # '{"mon": "08:00-12:00, 13:00-17:00", "sat": "09:00-13:00"}' (a day left out is closed),
    # dates it is closed, and whether the agent books here or asks the business ("external").
    business_hours: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_HOURS))
    closed_days: list[str] = Field(default_factory=list)
    scheduling: Literal["builtin", "external"] = "builtin"
    # Kinds of visit and their length in minutes, e.g. '{"cleaning": 60, "checkup": 30}': the
    # book finds times long enough for each; any other visit takes 30 minutes.
    appointment_types: dict[str, int] = Field(default_factory=dict)
    # The business's own endpoint for what happens to its texts, customers and appointments,
    # and the secret each request is signed with (events and the recipe: agent/hooks.py).
    webhook_url: str | None = None
    # Webhooks and status callbacks go to public addresses only unless this is on: a URL an API
    # caller gives must not reach the service's own network (turn on for an office's systems on
    # a private network).
    callbacks_allow_private: bool = False
    webhook_secret: SecretStr | None = None
    # The wait after a webhook's first failed attempt; it doubles each time, up to an hour.
    webhook_retry_seconds: float = Field(default=2.0, gt=0)

    # When texts the business starts may reach people, in their own time zone ("00:00-24:00":
    # any time). Outside it they wait for the next opening; alerts and replies do not wait.
    send_window: str = "08:00-20:00"

    # The provider of SMSAGENT_FROM_NUMBER; more numbers, each with its own provider, by
    # '{"+15550001234": "telnyx"}' (one workspace may mix providers: each number sends through
    # the one it belongs to).
    sms_provider: ProviderName = "console"
    from_number: str = "+15550000000"
    sender_numbers: dict[str, ProviderName] = Field(default_factory=dict)
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto / X-Forwarded-Host (or
    # Forwarded), a signature over the URL the provider called is also checked against the URL
    # those headers give. Turn on only when the proxy sets them itself.
    trust_forwarded_headers: bool = False
    # How old a signed webhook's timestamp may be (Telnyx, the generic gateway).
    webhook_tolerance_seconds: int = Field(default=300, ge=10, le=3600)
    # Webhooks refused for their signature are kept for `smsagent quarantine`; past this many,
    # the oldest ones go.
    quarantine_keep: int = Field(default=10_000, ge=10)

    twilio_api_url: str = "https://api.twilio.com"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    # Send through a Messaging Service (its sender pool, sticky sender, compliance) with our
    # number as From; Twilio answers STOP itself when Advanced Opt-Out is on, so say so and the
    # opt-out is recorded without a confirmation of our own.
    twilio_messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")
    twilio_advanced_opt_out: bool = False

    telnyx_api_url: str = "https://api.telnyx.com"
    telnyx_api_key: SecretStr | None = None
    # The account's public key (base64 ed25519, Mission Control > Keys & Credentials).
    telnyx_public_key: str | None = None
    telnyx_messaging_profile_id: str | None = None
    # The messaging profile answers STOP / START / HELP itself (Advanced Opt-In/Out
    # auto-responses): the opt-out is recorded, and no confirmation of ours follows.
    telnyx_answers_keywords: bool = False

    # The default workspace's generic signed gateway: where texts go, and the shared secret.
    gateway_url: str | None = None
    gateway_secret: SecretStr | None = None

    # Avochato as a sender: its API, and the account's auth_id / auth_secret.
    avochato_api_url: str = "https://www.avochato.com"
    avochato_auth_id: str | None = None
    avochato_auth_secret: SecretStr | None = None

    # Photos and other media that come with texts: fetched, checked and kept, on disk under
    # media_dir or in an S3-compatible bucket.
    media_store: Literal["file", "s3"] = "file"
    media_dir: Path = Path("./var/media")
    media_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    # Content types kept ("image/*" takes every image); others are refused, not fetched whole.
    media_types: list[str] = Field(
        default_factory=lambda: ["image/*", "video/*", "audio/*", "application/pdf", "text/vcard"]
    )
    media_s3_endpoint: str | None = None
    media_s3_bucket: str | None = None
    media_s3_region: str = "us-east-1"
    media_s3_access_key: str | None = None
    media_s3_secret_key: SecretStr | None = None
    media_s3_prefix: str = "media/"
    # The model takes images: a photo's pixels go to it; otherwise it gets a note that one came.
    llm_vision: bool = False
    sms_max_segments: int = Field(default=4, ge=1, le=10)
    sms_cost_per_segment_cents: float = Field(default=0.83, ge=0)
    sms_allowed_link_hosts: list[str] = Field(default_factory=list)
    send_timeout_seconds: float = Field(default=10.0, gt=0)

    llm_base_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_api_key: SecretStr | None = None
    llm_timeout_seconds: float = Field(default=30.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    llm_max_steps: int = Field(default=8, ge=2, le=50)
    llm_history_messages: int = Field(default=30, ge=1, le=200)
    # The model's input (instructions, tools, history) is kept within this many tokens
    # (estimated at four characters a token): older lines of a long thread are left out.
    llm_prompt_token_budget: int = Field(default=2_500, ge=500, le=200_000)
    # Model calls in flight per process. OpenAI-compatible servers queue or answer 429 (retried
    # with backoff) past their own limit; lower this for a small self-hosted model.
    llm_max_concurrency: int = Field(default=1000, ge=1, le=10_000)

    # Jobs in flight per process, per lane. Turns mostly wait on the model, so hundreds fit;
    # sends wait on the provider. A ready reply never waits for a turn slot.
    worker_turns: int = Field(default=1000, ge=1, le=10_000)
    worker_sends: int = Field(default=100, ge=1, le=1_000)
    # Webhooks to the business, in a lane of their own: a slow endpoint never holds up a reply.
    worker_hooks: int = Field(default=50, ge=1, le=1_000)
    # Broadcast text segments each sender number sends a second at most (carriers throttle per
    # number, in segments: about 1/s for a long code, more for toll-free and short codes).
    broadcast_per_second: float = Field(default=1.0, gt=0, le=1_000)
    # Turns at work at once (not waiting on the model); the rest wait in line, so under a rush
    # turns finish in the order they started rather than all together at the end.
    worker_turns_at_work: int = Field(default=32, ge=1, le=1_000)
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    # PostgreSQL connections per process (SQLite always has one writer and a few readers).
    database_pool_size: int = Field(default=10, ge=1, le=200)
    # Inbound texts arriving together are stored in one transaction of at most this many.
    ingest_max_batch: int = Field(default=200, ge=1, le=1_000)
    # Texts arriving within this window are answered by one turn.
    turn_quiet_seconds: float = Field(default=1.5, ge=0)
    # Renewed every third of itself while a job runs; after a crash, recovery waits this long.
    job_lease_seconds: float = Field(default=30.0, gt=0)
    job_max_attempts: int = Field(default=6, ge=1)
    # Finished jobs are kept this long (for looking into a turn), then deleted; failed ones stay.
    job_keep_done_hours: float = Field(default=24 * 7, ge=0)
    run_worker: bool = True

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        """Accept the URLs people paste and use the async driver for each."""
        for prefix, replacement in (
            ("postgres://", "postgresql+asyncpg://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("sqlite:///", "sqlite+aiosqlite:///"),
        ):
            if url.startswith(prefix):
                return replacement + url[len(prefix) :]
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("use a sqlite:/// or postgresql:// URL")
        return url

    @field_validator("from_number")
    @classmethod
    def _e164_sender(cls, number: str) -> str:
        try:
            return normalize_phone(number)
        except InvalidPhoneNumber as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("sender_numbers")
    @classmethod
    def _e164_numbers(cls, numbers: dict[str, ProviderName]) -> dict[str, ProviderName]:
        try:
            return {normalize_phone(number): provider for number, provider in numbers.items()}
        except InvalidPhoneNumber as exc:
            raise ValueError(f"SMSAGENT_SENDER_NUMBERS: {exc}") from exc

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r}") from exc
        return zone

    @model_validator(mode="after")
    def _hours_make_sense(self) -> Settings:
        Hours.parse(self.business_hours, self.closed_days)
        parse_window(self.send_window)
        for name, minutes in self.appointment_types.items():
            if not name.strip() or not 5 <= minutes <= 8 * 60:
                raise ValueError(
                    f"appointment type {name!r}: give a name and 5 to 480 minutes, not {minutes}"
                )
        return self

    @field_validator(
        "public_url",
        "llm_base_url",
        "twilio_api_url",
        "webhook_url",
        "telnyx_api_url",
        "gateway_url",
        "avochato_api_url",
        "media_s3_endpoint",
    )
    @classmethod
    def _no_trailing_slash(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _provider_complete(self) -> Settings:
        for provider in {self.sms_provider, *self.sender_numbers.values()}:
            if missing := self.missing_for(provider):
                raise ValueError(f"the {provider} provider needs {', '.join(missing)}")
        if self.media_store == "s3" and (
            missing := [
                name
                for name, value in (
                    ("SMSAGENT_MEDIA_S3_BUCKET", self.media_s3_bucket),
                    ("SMSAGENT_MEDIA_S3_ACCESS_KEY", self.media_s3_access_key),
                    ("SMSAGENT_MEDIA_S3_SECRET_KEY", self.media_s3_secret_key),
                )
                if not value
            ]
        ):
            raise ValueError(f"SMSAGENT_MEDIA_STORE=s3 needs {', '.join(missing)}")
        if self.api_key is not None and len(self.api_key.get_secret_value()) < 16:
            raise ValueError("SMSAGENT_API_KEY must be at least 16 characters")
        if self.webhook_url is not None and (
            self.webhook_secret is None or len(self.webhook_secret.get_secret_value()) < 16
        ):
            raise ValueError("SMSAGENT_WEBHOOK_URL needs SMSAGENT_WEBHOOK_SECRET (16+ characters)")
        return self

    def missing_for(self, provider: str) -> list[str]:
        """The settings a provider still needs before it can send (empty: it is configured)."""
        needs: dict[str, tuple[tuple[str, object], ...]] = {
            "twilio": (
                ("SMSAGENT_TWILIO_ACCOUNT_SID", self.twilio_account_sid),
                ("SMSAGENT_TWILIO_AUTH_TOKEN", self.twilio_auth_token),
                ("SMSAGENT_PUBLIC_URL", self.public_url),
            ),
            "telnyx": (
                ("SMSAGENT_TELNYX_API_KEY", self.telnyx_api_key),
                ("SMSAGENT_TELNYX_PUBLIC_KEY", self.telnyx_public_key),
                ("SMSAGENT_PUBLIC_URL", self.public_url),
            ),
            "gateway": (
                ("SMSAGENT_GATEWAY_URL", self.gateway_url),
                ("SMSAGENT_GATEWAY_SECRET", self.gateway_secret),
                ("SMSAGENT_PUBLIC_URL", self.public_url),
            ),
            "avochato": (
                ("SMSAGENT_AVOCHATO_AUTH_ID", self.avochato_auth_id),
                ("SMSAGENT_AVOCHATO_AUTH_SECRET", self.avochato_auth_secret),
                ("SMSAGENT_PUBLIC_URL", self.public_url),
            ),
        }
        return [name for name, value in needs.get(provider, ()) if not value]

    @property
    def llm_enabled(self) -> bool:
        return self.llm_base_url is not None

    def sqlite_path(self) -> Path | None:
        """The database file when SQLite is used, so the entry point can create its folder."""
        prefix = "sqlite+aiosqlite:///"
        if not self.database_url.startswith(prefix):
            return None
        path = self.database_url[len(prefix) :].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)

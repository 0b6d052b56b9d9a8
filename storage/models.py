"""The tables. Rows stay inside the service: the HTTP edge maps them to public shapes.

Times are UTC (`UTCDateTime`), phone numbers E.164, public ids prefixed (`conv_…`, `msg_…`).
Status-like columns are plain strings whose values are the enums below, so adding a value
needs no database migration.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime, utcnow


class MessageDirection(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class MessageAuthor(StrEnum):
    CONTACT = "contact"
    AGENT = "agent"
    SYSTEM = "system"  # fast-path replies: opt-out confirmations, HELP, confirmations
    API = "api"  # kickoff and other API sends
    HUMAN = "human"


class MessageStatus(StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELED = "canceled"
    SCHEDULED = "scheduled"  # waits for `send_at` (asked for, or the recipient's quiet hours)


class MessageType(StrEnum):
    TRANSACTIONAL = "transactional"
    CONVERSATIONAL = "conversational"
    MARKETING = "marketing"  # needs the contact's recorded consent
    ALERT = "alert"  # may be sent in the recipient's quiet hours


class ConversationStatus(StrEnum):
    OPEN = "open"
    PENDING = "pending"  # waiting for a person
    CLOSED = "closed"


class ConversationMode(StrEnum):
    AGENT = "agent"
    HUMAN = "human"


class AppointmentStatus(StrEnum):
    SCHEDULED = "scheduled"
    CONFIRMED = "confirmed"
    RESCHEDULE_REQUESTED = "reschedule_requested"
    RESCHEDULED = "rescheduled"
    CANCELED = "canceled"


class Scheduling(StrEnum):
    BUILTIN = "builtin"  # the agent books into the appointment book kept here
    EXTERNAL = "external"  # the business keeps its calendar; the agent asks it to move a visit


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


# Jobs still to run or running; a literal so the partial index and ON CONFLICT agree on it.
ACTIVE_JOB_PREDICATE = "status IN ('queued', 'running')"


def _created() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime)


class Workspace(SQLModel, table=True):
    __tablename__ = "workspaces"

    id: str = Field(primary_key=True, max_length=40)
    name: str
    business_name: str
    timezone: str
    vertical: str
    api_key_hash: str | None = Field(default=None, unique=True, max_length=64)
    # Avaamo's channel uuid, the credential of its compatible API (hashed: it is the secret).
    avaamo_channel_hash: str | None = Field(default=None, unique=True, max_length=64)
    # The inbox's name in the Avochato-compatible API (`subdomain`).
    subdomain: str | None = Field(default=None, unique=True, max_length=63)
    # Weekday ("mon") -> open spans ("08:00-12:00, 13:00-17:00"); None: the default hours.
    hours: dict[str, str] | None = Field(default=None, sa_type=JSON)
    closed_days: list[str] = Field(default_factory=list, sa_type=JSON)
    scheduling: str = Scheduling.BUILTIN
    # Kinds of visit and their length in minutes ({"cleaning": 60}); others take the default.
    appointment_types: dict[str, int] = Field(default_factory=dict, sa_type=JSON)
    # Where the business's own systems hear of what needs them (a move to confirm), signed with
    # the secret (kept as is: it signs every request).
    webhook_url: str | None = None
    webhook_secret: str | None = None
    # The generic signed gateway (webhooks/gateway.py): where its texts are sent, and the secret
    # both directions are signed with (kept as is: it signs every request).
    gateway_url: str | None = None
    gateway_secret: str | None = None
    created_at: datetime = _created()
    updated_at: datetime = _created()


class Contact(SQLModel, table=True):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("workspace_id", "phone", name="uq_contacts_workspace_phone"),
        Index("ix_contacts_workspace_external_id", "workspace_id", "external_id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    workspace_id: str = Field(foreign_key="workspaces.id", max_length=40)
    phone: str = Field(max_length=16)
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    external_id: str | None = None
    date_of_birth: date | None = None
    timezone: str | None = None
    custom_fields: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    opted_out: bool = False
    opted_out_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    opt_out_source: str | None = None
    blocked: bool = False
    # When the contact agreed to marketing texts; None: marketing is refused.
    marketing_consent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The inbox's fields: street, city, state, zip, country, company, other_phone, notes,
    # muted, landline, priority, double_opted_in, visible, stuck_number, salesforce ids and
    # custom variables.
    profile: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    owner_user_id: str | None = Field(default=None, max_length=40)
    created_at: datetime = _created()
    updated_at: datetime = _created()


class MembershipRole(StrEnum):
    MEMBER = "member"
    MANAGER = "manager"
    OWNER = "owner"


class User(SQLModel, table=True):
    """A team member: a person who answers in one or more workspaces' inboxes."""

    __tablename__ = "users"

    id: str = Field(primary_key=True, max_length=40)
    email: str = Field(unique=True, max_length=254)
    name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=16)
    # Credentials of the Avochato-compatible API: the id as is, the secret hashed.
    auth_id: str | None = Field(default=None, unique=True, max_length=40)
    auth_secret_hash: str | None = Field(default=None, max_length=64)
    # The workspace its credentials act in when a request names no subdomain.
    home_workspace_id: str | None = Field(default=None, foreign_key="workspaces.id", max_length=40)
    require_2fa: bool = True
    # Password resets and MFA phone set-ups asked for, oldest first: {"kind", "at", ...}.
    requests: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    signed_in_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _created()
    updated_at: datetime = _created()


class Membership(SQLModel, table=True):
    """A user's place in a workspace's team."""

    __tablename__ = "memberships"

    workspace_id: str = Field(foreign_key="workspaces.id", primary_key=True, max_length=40)
    user_id: str = Field(foreign_key="users.id", primary_key=True, index=True, max_length=40)
    role: str = Field(default=MembershipRole.MEMBER, max_length=20)
    enabled: bool = True
    # The round-robin roster: the next ticket goes to the one assigned longest ago.
    last_assigned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    added_at: datetime = _created()


class Tag(SQLModel, table=True):
    """A tag a workspace uses on its contacts (contacts keep the names they carry)."""

    __tablename__ = "tags"

    workspace_id: str = Field(foreign_key="workspaces.id", primary_key=True, max_length=40)
    name: str = Field(primary_key=True, max_length=100)
    color: str | None = Field(default=None, max_length=20)
    created_at: datetime = _created()


class BroadcastStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    COMPLETED = "completed"
    CANCELED = "canceled"


class Broadcast(SQLModel, table=True):
    """One message to an audience of contacts, each in a 1-on-1 thread."""

    __tablename__ = "broadcasts"
    __table_args__ = (Index("ix_broadcasts_workspace_created", "workspace_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=40)
    workspace_id: str = Field(foreign_key="workspaces.id", max_length=40)
    user_id: str | None = Field(default=None, max_length=40)
    name: str | None = Field(default=None, max_length=200)
    message: str = Field(sa_column=Column(Text, nullable=False))
    media_url: str | None = None
    status_callback: str | None = None
    sender_number: str | None = Field(default=None, max_length=16)
    status: str = Field(default=BroadcastStatus.DRAFT, max_length=20)
    # How the audience was chosen: via_tags, via_contact_ids, via_phone_numbers, via_field.
    audience: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    scheduled_for: datetime | None = Field(default=None, sa_type=UTCDateTime)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _created()
    updated_at: datetime = _created()


class BroadcastRecipient(SQLModel, table=True):
    """A contact in a broadcast's audience, and what became of their text."""

    __tablename__ = "broadcast_recipients"
    __table_args__ = (Index("ix_broadcast_recipients_message", "message_id"),)

    broadcast_id: str = Field(foreign_key="broadcasts.id", primary_key=True, max_length=40)
    contact_id: str = Field(foreign_key="contacts.id", primary_key=True, max_length=40)
    message_id: str | None = Field(default=None, max_length=40)
    conversation_id: str | None = Field(default=None, max_length=40)
    status: str = Field(max_length=20)
    error_code: str | None = Field(default=None, max_length=40)
    attempted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _created()


class Campaign(SQLModel, table=True):
    """A drip sequence: texts sent one after another, started by a keyword or the API."""

    __tablename__ = "campaigns"
    __table_args__ = (UniqueConstraint("workspace_id", "key", name="uq_campaigns_workspace_key"),)

    id: str = Field(primary_key=True, max_length=40)
    workspace_id: str = Field(foreign_key="workspaces.id", max_length=40)
    key: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=200)
    # The texts in order: {"message", "delay_seconds", "media_url"}; the first goes at once.
    steps: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = _created()
    updated_at: datetime = _created()


class CampaignEnrollment(SQLModel, table=True):
    """A contact going through a campaign."""

    __tablename__ = "campaign_enrollments"
    __table_args__ = (Index("ix_campaign_enrollments_contact", "contact_id", "campaign_id"),)

    id: str = Field(primary_key=True, max_length=40)
    campaign_id: str = Field(foreign_key="campaigns.id", max_length=40)
    workspace_id: str = Field(foreign_key="workspaces.id", max_length=40)
    contact_id: str = Field(foreign_key="contacts.id", max_length=40)
    conversation_id: str | None = Field(default=None, max_length=40)
    status: str = Field(max_length=20)  # active, done, canceled
    # The messages queued for its steps, in order (scheduled ones can be canceled).
    message_ids: list[str] = Field(default_factory=list, sa_type=JSON)
    started_at: datetime = _created()
    updated_at: datetime = _created()


class SenderNumber(SQLModel, table=True):
    """A number the workspace texts from; inbound texts to it belong to the workspace."""

    __tablename__ = "sender_numbers"

    number: str = Field(primary_key=True, max_length=16)
    workspace_id: str = Field(foreign_key="workspaces.id", index=True, max_length=40)
    provider: str = Field(max_length=20)
    created_at: datetime = _created()


class Template(SQLModel, table=True):
    """A message with `{variables}`, per workspace."""

    __tablename__ = "templates"

    workspace_id: str = Field(foreign_key="workspaces.id", primary_key=True, max_length=40)
    id: str = Field(primary_key=True, max_length=64)
    name: str | None = Field(default=None, max_length=100)
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _created()
    updated_at: datetime = _created()


class ShortLink(SQLModel, table=True):
    """A link in a text, shortened to `PUBLIC_URL/l/<code>`; each visit is counted."""

    __tablename__ = "short_links"

    code: str = Field(primary_key=True, max_length=16)
    workspace_id: str = Field(foreign_key="workspaces.id", max_length=40)
    conversation_id: str | None = Field(default=None, max_length=40)
    message_id: str | None = Field(default=None, max_length=40)
    url: str = Field(sa_column=Column(Text, nullable=False))
    clicks: int = 0
    created_at: datetime = _created()


class Appointment(SQLModel, table=True):
    __tablename__ = "appointments"
    __table_args__ = (
        UniqueConstraint("workspace_id", "external_id", name="uq_appointments_workspace_external"),
        Index("ix_appointments_workspace_starts", "workspace_id", "starts_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    workspace_id: str = Field(foreign_key="workspaces.id", max_length=40)
    contact_id: str = Field(foreign_key="contacts.id", index=True, max_length=40)
    external_id: str | None = None
    starts_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ends_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The zone or offset the business gave the time in, to render it back the same way.
    timezone: str | None = None
    type: str | None = None
    description: str | None = None
    status: str = AppointmentStatus.SCHEDULED
    requested_start: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Earlier times when it was moved, oldest first: {"starts_at", "ends_at", "moved_at"}.
    history: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = _created()
    updated_at: datetime = _created()


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_thread", "workspace_id", "contact_id", "sender_number", "status"),
        Index("ix_conversations_workspace_updated", "workspace_id", "updated_at"),
        # Newest activity first across workspaces: the review list and its export pages.
        Index("ix_conversations_last_message", "last_message_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    workspace_id: str = Field(foreign_key="workspaces.id", max_length=40)
    contact_id: str = Field(foreign_key="contacts.id", index=True, max_length=40)
    appointment_id: str | None = Field(default=None, foreign_key="appointments.id", max_length=40)
    sender_number: str = Field(max_length=16)
    provider: str = Field(max_length=20)
    status: str = ConversationStatus.OPEN
    mode: str = ConversationMode.AGENT
    context: str | None = Field(default=None, sa_column=Column(Text))
    handoff_reason: str | None = None
    # What the lines older than the model's window said (written by the model as they fall out
    # of it), and the last message folded in.
    summary: str | None = Field(default=None, sa_column=Column(Text))
    summary_through: str | None = Field(default=None, max_length=40)
    # The team member who owns the thread (the inbox's ticket owner), and when it was last
    # marked answered.
    assignee_user_id: str | None = Field(default=None, max_length=40)
    addressed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _created()
    updated_at: datetime = _created()
    last_message_at: datetime = _created()


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("provider", "provider_message_id", name="uq_messages_provider_id"),
        Index("ix_messages_conversation_created", "conversation_id", "created_at"),
        Index("ix_messages_workspace_created", "workspace_id", "created_at"),
        # The newest matches of a search across workspaces, without sorting every match.
        Index("ix_messages_created", "created_at", "id"),
        # Only scheduled messages have a send_at: the index holds just those.
        Index(
            "ix_messages_workspace_send_at",
            "workspace_id",
            "send_at",
            sqlite_where=text("send_at IS NOT NULL"),
            postgresql_where=text("send_at IS NOT NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=40)
    workspace_id: str = Field(foreign_key="workspaces.id", max_length=40)
    conversation_id: str = Field(foreign_key="conversations.id", max_length=40)
    direction: str
    author: str
    body: str = Field(sa_column=Column(Text, nullable=False))
    media_urls: list[str] = Field(default_factory=list, sa_type=JSON)
    from_number: str = Field(max_length=16)
    to_number: str = Field(max_length=16)
    provider: str = Field(max_length=20)
    provider_message_id: str | None = Field(default=None, max_length=64)
    status: str
    error_code: str | None = None
    error_message: str | None = None
    segments: int = 0
    encoding: str | None = None
    cost_cents: float | None = None
    message_type: str | None = Field(default=None, max_length=20)
    # Which API sent it, for status webhooks in that API's own shape ("avoca", …).
    origin: str | None = Field(default=None, max_length=20)
    # A scheduled message goes out at this time (status `scheduled` until then).
    send_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The team member who sent it (a person's reply through the inbox API).
    sender_user_id: str | None = Field(default=None, max_length=40)
    # Where the inbox API's caller wants its delivery statuses POSTed.
    status_callback: str | None = None
    # Deleted from the inbox's view (a sent text cannot be unsent).
    hidden: bool = False
    # Inbound only: when a turn answered it; unanswered inbound messages make up the next turn.
    handled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    agent_run_id: str | None = Field(default=None, max_length=40)
    created_at: datetime = _created()
    updated_at: datetime = _created()
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_conversation_created", "conversation_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=40)
    workspace_id: str = Field(foreign_key="workspaces.id", max_length=40)
    conversation_id: str = Field(foreign_key="conversations.id", max_length=40)
    agent_run_id: str | None = Field(default=None, max_length=40)
    type: str
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    revenue: float | None = None
    created_at: datetime = _created()


class AgentRun(SQLModel, table=True):
    __tablename__ = "agent_runs"

    id: str = Field(primary_key=True, max_length=40)
    workspace_id: str = Field(foreign_key="workspaces.id", max_length=40)
    conversation_id: str = Field(foreign_key="conversations.id", index=True, max_length=40)
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    tool_calls: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    inbound_message_ids: list[str] = Field(default_factory=list, sa_type=JSON)
    # Replies the claim check stopped before they reached the customer, and what it did.
    corrections: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    outcome: str = "running"
    error: str | None = Field(default=None, sa_column=Column(Text))
    # The model's exact input and output, call by call: {"call", "input": [...], "output": [...]}
    # (SMSAGENT_KEEP_MODEL_IO); None when not kept or no model was asked.
    exchange: list[dict[str, Any]] | None = Field(default=None, sa_type=JSON)
    started_at: datetime = _created()
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        # At most one unfinished job per key: a burst of texts folds into one turn.
        Index(
            "uq_jobs_active_key",
            "key",
            unique=True,
            sqlite_where=text(ACTIVE_JOB_PREDICATE),
            postgresql_where=text(ACTIVE_JOB_PREDICATE),
        ),
        Index("ix_jobs_lane_due", "kind", "status", "run_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)
    key: str = Field(max_length=80)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    status: str = JobStatus.QUEUED
    run_at: datetime = _created()
    attempts: int = 0
    max_attempts: int = 6
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    leased_by: str | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = _created()
    updated_at: datetime = _created()


class IdempotencyKey(SQLModel, table=True):
    """A POST's Idempotency-Key, per workspace, with the first answer once there is one."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created", "created_at"),)

    workspace_id: str = Field(foreign_key="workspaces.id", primary_key=True, max_length=40)
    key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=64)
    state: str = Field(max_length=10)  # "running" or "done"
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    response_status: int | None = None
    response_body: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = _created()


class MediaStatus(StrEnum):
    STORED = "stored"
    # Not kept, and why: the fetch failed, it was larger than allowed, or of a type not taken.
    FAILED = "failed"
    TOO_LARGE = "too_large"
    REFUSED_TYPE = "refused_type"


class Media(SQLModel, table=True):
    """A photo (or other file) that came with a text, fetched from the provider and kept."""

    __tablename__ = "media"
    __table_args__ = (UniqueConstraint("message_id", "position", name="uq_media_message_position"),)

    id: str = Field(primary_key=True, max_length=40)
    workspace_id: str = Field(foreign_key="workspaces.id", max_length=40)
    conversation_id: str = Field(foreign_key="conversations.id", index=True, max_length=40)
    message_id: str = Field(foreign_key="messages.id", max_length=40)
    # Its place among the text's media (0 for MediaUrl0).
    position: int = 0
    source_url: str = Field(sa_column=Column(Text, nullable=False))
    status: str = MediaStatus.STORED
    content_type: str | None = Field(default=None, max_length=100)
    size_bytes: int | None = None
    sha256: str | None = Field(default=None, max_length=64)
    # Where it is kept: "file" (under the media folder) or "s3", and its key there.
    storage: str | None = Field(default=None, max_length=10)
    key: str | None = None
    error: str | None = None
    created_at: datetime = _created()


class QuarantinedWebhook(SQLModel, table=True):
    """A provider webhook refused for its signature: kept whole, never processed, until an
    operator replays it (`smsagent quarantine replay`)."""

    __tablename__ = "quarantined_webhooks"
    __table_args__ = (Index("ix_quarantined_webhooks_received", "received_at", "id"),)

    id: str = Field(primary_key=True, max_length=40)
    provider: str = Field(max_length=20)
    method: str = Field(max_length=10)
    # The path and query it arrived on.
    path: str = Field(sa_column=Column(Text, nullable=False))
    # Its headers but credentials (Authorization, Cookie), names lower-cased.
    headers: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    reason: str
    remote: str | None = Field(default=None, max_length=64)
    received_at: datetime = _created()
    replayed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # What the replay did: its HTTP status, and who asked for it.
    replay_status: int | None = None
    replayed_by: str | None = Field(default=None, max_length=100)

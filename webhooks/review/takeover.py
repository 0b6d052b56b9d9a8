"""`smsagent reply / handback / close / reopen / tag / untag / note`: a person takes a thread
over from the terminal while the service runs.

Each command writes one transaction to the service's database; the running service sends a
queued reply on its next look at the job queue (at once on PostgreSQL, which notifies it).
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import phonenumbers
from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from agent import takeover
from agent.errors import DomainError
from agent.schemas import HumanReply
from agent.settings import Settings
from storage import conversations
from storage.engine import SessionFactory
from storage.models import Contact, Conversation, ConversationMode, ConversationStatus
from storage.review import AmbiguousId, NoSuchId, resolve_conversation_id
from webhooks.review.db import load_settings, write_db

T = TypeVar("T")
SOURCE = "cli"
MAX_TAG = 100
MAX_NOTE = 4000


@dataclass(frozen=True)
class Thread:
    """The thread as it is once the command is done."""

    id: str
    status: str
    mode: str
    contact_id: str
    phone: str
    tags: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"conversation_id": self.id, "status": self.status, "mode": self.mode}


Act = Callable[[AsyncSession, Conversation], Awaitable[T]]


def _in_thread(
    settings: Settings, ref: str, workspace_id: str | None, act: Act[T]
) -> tuple[T, Thread]:
    """Run `act` on the thread `ref` names, in one transaction; what it answered and the thread
    after it."""
    path = settings.sqlite_path()
    if path is not None and not Path(path).exists():
        raise click.ClickException(f"no database at {path}: start the service once with `serve`")

    async def change(sessions: SessionFactory) -> tuple[T, Thread]:
        async with sessions() as session, session.begin():
            conversation_id = await resolve_conversation_id(
                await session.connection(), ref, workspace_id=workspace_id
            )
            conversation = await conversations.get_conversation(
                session=session, conversation_id=conversation_id
            )
            assert conversation is not None
            answer = await act(session, conversation)
            await session.refresh(conversation)
            contact = await session.get(Contact, conversation.contact_id, populate_existing=True)
            assert contact is not None
            thread = Thread(
                id=conversation.id,
                status=conversation.status,
                mode=conversation.mode,
                contact_id=contact.id,
                phone=contact.phone,
                tags=list(contact.tags),
            )
        return answer, thread

    try:
        return write_db(settings, change)
    except AmbiguousId as exc:
        more = " (and more)" if len(exc.matches) > 5 else ""
        listed = ", ".join(exc.matches[:5])
        raise click.ClickException(
            f"{exc.prefix} starts more than one conversation: {listed}{more}; give more of the id"
        ) from exc
    except NoSuchId as exc:
        where = f" in workspace {workspace_id}" if workspace_id else ""
        raise click.ClickException(f"{exc}{where}") from exc
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc


def operator(name: str | None) -> str:
    """Who runs the command: --as, else $SMSAGENT_OPERATOR, else the login name."""
    for found in (name, os.environ.get("SMSAGENT_OPERATOR")):
        if found and found.strip():
            return found.strip()
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


async def _author(session: AsyncSession, conversation: Conversation, name: str) -> takeover.Author:
    return await takeover.find_author(
        session=session, workspace_id=conversation.workspace_id, name=name, source=SOURCE
    )


def shown_phone(number: str) -> str:
    """A number as people read it, with all but its area code and last two digits hidden:
    `+1 (310) ***-**34`."""
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_possible_number(parsed):
        return number[:2] + "*" * max(len(number) - 4, 0) + number[-2:]
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    digits = sum(c.isdigit() for c in national)
    keep_head = 3 if parsed.country_code == 1 else 0
    seen, shown = 0, []
    for char in national:
        if char.isdigit():
            seen += 1
            if keep_head < seen <= digits - 2:
                char = "*"
        shown.append(char)
    return f"+{parsed.country_code} {''.join(shown)}"


def _echo_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2))


_ID = click.argument("ref", metavar="ID")
_WORKSPACE = click.option(
    "--workspace", "workspace_id", default=None, help="Look ID up in this workspace only."
)
_AS = click.option(
    "--as",
    "name",
    default=None,
    metavar="NAME",
    help="Who you are (default: $SMSAGENT_OPERATOR, else your login name). A team member's "
    "name or email links it to them.",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
F = TypeVar("F", bound=Callable[..., Any])


def _options(command: F) -> F:
    """What every command takes: who runs it, where to look ID up, and JSON output."""
    return _AS(_WORKSPACE(_JSON(command)))


@click.command()
@_ID
@click.argument("text")
@_options
def reply(ref: str, text: str, name: str | None, workspace_id: str | None, as_json: bool) -> None:
    """Text the customer as a person; the agent stays silent in the thread until handed back.

    ID is a conversation id or a unique start of one (`conv_01J…`, `01j9`). A closed thread is
    reopened, unless another thread with the customer is live.
    """
    settings = load_settings()
    person = operator(name)
    try:
        checked = HumanReply(message=text, author_name=person)
    except ValidationError as exc:
        raise click.ClickException(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from exc

    async def act(session: AsyncSession, conversation: Conversation) -> dict[str, Any]:
        author = await _author(session, conversation, checked.author_name or person)
        reopened = conversation.status == ConversationStatus.CLOSED
        queued = await takeover.reply(
            session,
            settings,
            conversation,
            text=checked.message,
            author=author,
            origin=SOURCE,
        )
        return {
            "message_id": queued.message.id,
            "message_status": queued.message.status,
            "segments": queued.message.segments,
            "author_name": author.name,
            "user_id": author.user_id,
            "reopened": reopened,
        }

    sent, thread = _in_thread(settings, ref, workspace_id, act)
    if as_json:
        _echo_json({**thread.as_json(), **sent})
        return
    reopened = "reopened and " if sent["reopened"] else ""
    click.echo(
        f"{reopened}sent as {sent['author_name']} to {shown_phone(thread.phone)} — {thread.id} "
        "is now with a person; the agent stays silent until "
        f"`smsagent handback {thread.id}`"
    )


def _state_command(
    ref: str,
    workspace_id: str | None,
    name: str | None,
    *,
    status: str | None = None,
    mode: str | None = None,
) -> tuple[dict[str, str], Thread]:
    settings = load_settings()
    person = operator(name)

    async def act(session: AsyncSession, conversation: Conversation) -> dict[str, str]:
        author = await _author(session, conversation, person)
        return await takeover.change_state(
            session, conversation, status=status, mode=mode, author=author
        )

    return _in_thread(settings, ref, workspace_id, act)


def _say_state(
    changes: dict[str, str], thread: Thread, as_json: bool, done: str, same: str
) -> None:
    if as_json:
        _echo_json({**thread.as_json(), "changed": sorted(changes)})
    else:
        click.echo(done if changes else same)


def _holder(thread: Thread) -> str:
    return "a person" if thread.mode == ConversationMode.HUMAN else "the agent"


@click.command()
@_ID
@_options
def handback(ref: str, name: str | None, workspace_id: str | None, as_json: bool) -> None:
    """Give the thread back to the agent: it answers the customer's next text. A thread waiting
    for a person (pending) is open again."""
    changes, thread = _state_command(ref, workspace_id, name, mode=ConversationMode.AGENT)
    closed = " (the thread is closed)" if thread.status == ConversationStatus.CLOSED else ""
    _say_state(
        changes,
        thread,
        as_json,
        f"{thread.id} is back with the agent: it answers the customer's next text{closed}",
        f"{thread.id} was already with the agent{closed}",
    )


@click.command()
@_ID
@_options
def close(ref: str, name: str | None, workspace_id: str | None, as_json: bool) -> None:
    """Close the thread: the customer's next text starts a new one."""
    changes, thread = _state_command(ref, workspace_id, name, status=ConversationStatus.CLOSED)
    _say_state(changes, thread, as_json, f"closed {thread.id}", f"{thread.id} was already closed")


@click.command()
@_ID
@_options
def reopen(ref: str, name: str | None, workspace_id: str | None, as_json: bool) -> None:
    """Open a closed thread again (refused while another thread with the customer is live)."""
    changes, thread = _state_command(ref, workspace_id, name, status=ConversationStatus.OPEN)
    _say_state(
        changes,
        thread,
        as_json,
        f"reopened {thread.id}, with {_holder(thread)}",
        f"{thread.id} is already {thread.status}, with {_holder(thread)}",
    )


def _tag_command(
    ref: str, tag: str, workspace_id: str | None, name: str | None, as_json: bool, *, add: bool
) -> None:
    label = tag.strip()
    if not label or len(label) > MAX_TAG:
        raise click.BadParameter(f"give 1 to {MAX_TAG} characters", param_hint="TAG")
    settings = load_settings()
    person = operator(name)

    async def act(session: AsyncSession, conversation: Conversation) -> bool:
        author = await _author(session, conversation, person)
        return await takeover.tag_contact(session, conversation, label, add=add, author=author)

    changed, thread = _in_thread(settings, ref, workspace_id, act)
    if as_json:
        shown = {"contact_id": thread.contact_id, "tag": label, "changed": changed}
        _echo_json({**thread.as_json(), **shown, "tags": thread.tags})
        return
    who = shown_phone(thread.phone)
    if add:
        click.echo(f"tagged {who} '{label}'" if changed else f"{who} was already tagged '{label}'")
    else:
        click.echo(f"untagged {who} '{label}'" if changed else f"{who} was not tagged '{label}'")


def _tagging(verb: str, *, add: bool, about: str) -> click.Command:
    @click.command(verb, help=about)
    @_ID
    @click.argument("tag")
    @_options
    def command(
        ref: str, tag: str, name: str | None, workspace_id: str | None, as_json: bool
    ) -> None:
        _tag_command(ref, tag, workspace_id, name, as_json, add=add)

    return command


tag = _tagging("tag", add=True, about="Tag the thread's contact.")
untag = _tagging("untag", add=False, about="Take a tag off the thread's contact.")


@click.command()
@_ID
@click.argument("text")
@_options
def note(ref: str, text: str, name: str | None, workspace_id: str | None, as_json: bool) -> None:
    """Leave a note in the thread for the team; it is never sent to the customer."""
    body = text.strip()
    if not body or len(body) > MAX_NOTE:
        raise click.BadParameter(f"give 1 to {MAX_NOTE} characters", param_hint="TEXT")
    settings = load_settings()
    person = operator(name)

    async def act(session: AsyncSession, conversation: Conversation) -> tuple[str, str | None]:
        author = await _author(session, conversation, person)
        event_id = await takeover.add_note(session, conversation, body, author=author)
        return event_id, author.name

    (event_id, author_name), thread = _in_thread(settings, ref, workspace_id, act)
    if as_json:
        _echo_json({**thread.as_json(), "event_id": event_id, "author": author_name})
        return
    click.echo(f"noted in {thread.id} as {author_name} (not sent to the customer)")


COMMANDS = (reply, handback, close, reopen, tag, untag, note)


def register(group: click.Group) -> None:
    """Add the commands to the `smsagent` group."""
    for command in COMMANDS:
        group.add_command(command)

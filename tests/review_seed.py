"""A fixed week of two businesses' texts, for the review commands' tests and snapshots.

`seed_review` writes the same rows, ids and times every time, on SQLite and PostgreSQL. The
week ends at `FIXED_NOW` (Tuesday 2026-11-24, noon in New York); every thread lies in the 7
days before it, except one (`OLD_THREAD`, 10 days before) that `--since 7d` leaves out and one
(`CORRECTED`) started 12 days before but active in the week.

Bright Smiles Dental (`ws_default`, +15550001111):

- `CONFIRMED`   Sarah Johnson (vip): a reminder, "Yes I'll be there!", the agent confirms
  (`confirm_appointment`), `appointment.confirmed`; the run keeps its model exchange.
- `RESCHEDULED` Michael Chen (new-patient): asks for Monday, `check_availability`, then
  `reschedule_appointment`, `appointment.rescheduled`; the second run keeps its exchange.
- `CANCELED`    Emily Davis: `cancel_appointment`, `appointment.canceled`; then closed.
- `BILLING`     a contact without a name: the agent hands off ("billing question"); pending,
  mode human, the last message is inbound.
- `TAKEN_OVER`  Olivia Brown (vip): Maria Lopez takes over, replies (author human), leaves a
  note ("Called her back, all sorted") and hands back; the agent answers again.
- `OPTED_OUT`   James Wilson: "STOP" to a marketing text, `contact.opted_out`, the system's
  confirmation.
- `UNDELIVERED` Robert Taylor: the agent's reply undelivered (30007, Carrier violation).
- `FAILED` / `FAST_CONFIRM` one reminder batch in the same millisecond: ids that share their
  first 21 characters. Karen White's reminder failed (30003); David Lee answers "Y" and the
  fast path confirms.
- `CORRECTED`   Jennifer Garcia: the claim check stops "you're confirmed" and asks again.
- `RETRIED`     Patricia Moore: a run fails (APITimeoutError), the retry answers; the reply is
  sent with no delivery receipt yet.
- `FALLBACK`    Thomas Anderson: the model gives no reply; hand-off ("the agent could not
  answer").
- `SPANISH`     Lucía Hernández: in Spanish (UCS-2 replies); books a cleaning.
- `OLD_THREAD`  Nancy Thomas, 10 days before: a fast-path confirmation; closed.

Rapid Rooter Plumbing (`RAPID_ROOTER`, +15550002222, moves are requests to the office):

- `MMS`         Kevin Martin: a photo of a leak (MMS), `log_event` quote_requested.
- `MOVE_ASKED`  Brian Clark (commercial): `appointment.reschedule_requested`.
- `SCHEDULED`   a contact without a name: a visit agreed, a text scheduled for tomorrow.
- `EMERGENCY`   Steven Young: a burst pipe; the fast path hands off ("emergency: flooding").
- `STEP_LIMIT`  Mark Allen: the model runs out of steps; hand-off.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from agent.composer import count_segments
from agent.deps import DEFAULT_WORKSPACE_ID
from storage.engine import create_engine
from storage.migrate import migrate
from storage.models import (
    AgentRun,
    Appointment,
    Contact,
    Conversation,
    Event,
    Membership,
    Message,
    SenderNumber,
    User,
    Workspace,
)
from storage.raw import finish_plans
from tests.harness import Database

FIXED_NOW = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)
ZONE = "America/New_York"
MODEL = "gpt-4o-mini"
PER_SEGMENT_CENTS = 0.79

DENTAL = DEFAULT_WORKSPACE_ID
DENTAL_NUMBER = "+15550001111"
RAPID_ROOTER = "ws_01kz3ys6r0h3sa9jckj1jkwnjg"
ROOTER_NUMBER = "+15550002222"
MARIA = "usr_01m1egw64072r3vfhsn0dpwcs3"

CONFIRMED = "conv_01m7ne2pw0ezh0xt7gf7w207w3"
RESCHEDULED = "conv_01m7qh11j0958fes2hv60vc5fa"
CANCELED = "conv_01m7tsqw40zdf0tfzk5esry0zf"
BILLING = "conv_01m7za286rnex00g6z3z3v1k87"
TAKEN_OVER = "conv_01m7wtzwh0ga0p5jrr1e9vk68f"
OPTED_OUT = "conv_01m7z6g8r0sx0s5bq2xx4kjga1"
UNDELIVERED = "conv_01m82xt0q0thp25yjjcbcyjxrz"
FAILED = "conv_01m84b9pr0292hxkp9mac46ws9"
FAST_CONFIRM = "conv_01m84b9pr0292hxkt3b8v7nf2d"
CORRECTED = "conv_01m78ngzg0vmy8s7ree9c8bn32"
RETRIED = "conv_01m86thq309vaaqxzdx4yxnmn1"
FALLBACK = "conv_01m84tr320vzgpk89hjxkr0tjf"
SPANISH = "conv_01m7tcjqj0dqs4crhkbah9c5at"
OLD_THREAD = "conv_01m7d953c04eq3jnkr96cpgaxw"
MMS = "conv_01m7qavk6gy5hfwf9wzdvn08rb"
MOVE_ASKED = "conv_01m82gy140z98g9se0davjykwn"
SCHEDULED = "conv_01m85hxnh0qg4bb29213bzbcav"
EMERGENCY = "conv_01m7yyyjc0ygppscqpvyjq2jq1"
STEP_LIMIT = "conv_01m871zr90xpgb72qw4gxq294t"

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_HANDOFF_TEXT = "Thanks for your message! Someone from {} will get back to you shortly."


def at(day: int, clock: str, month: int = 11) -> datetime:
    """A moment in 2026 given in New York's time (EST all week), as UTC."""
    hour, minute, second = (int(part) for part in f"{clock}:00"[:8].split(":"))
    local = datetime(2026, month, day, hour, minute, second, tzinfo=ZoneInfo(ZONE))
    return local.astimezone(UTC)


def _ulid(prefix: str, moment: datetime, salt: str) -> str:
    """An id as the service makes them (time first, then noise), the noise fixed by `salt`."""
    noise = int.from_bytes(hashlib.sha256(f"{prefix}:{salt}".encode()).digest()[:10], "big")
    value = (int(moment.timestamp() * 1000) << 80) | noise
    return f"{prefix}_" + "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def _sid(kind: str, of: str) -> str:
    return kind + hashlib.sha256(of.encode()).hexdigest()[:32]


@dataclass
class _Thread:
    """One conversation's rows, added in the order they happened."""

    conversation: Conversation
    contact: Contact
    rows: list[SQLModel] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.conversation.id

    def _message(self, moment: datetime, direction: str, salt: str, **values: Any) -> Message:
        conversation, phone = self.conversation, self.contact.phone
        inbound = direction == "inbound"
        message = Message(
            id=_ulid("msg", moment, f"{self.id}:{moment.isoformat()}:{salt}"),
            workspace_id=conversation.workspace_id,
            conversation_id=conversation.id,
            direction=direction,
            from_number=phone if inbound else conversation.sender_number,
            to_number=conversation.sender_number if inbound else phone,
            provider="twilio",
            created_at=moment,
            updated_at=moment,
            **values,
        )
        self.rows.append(message)
        return message

    def inbound(self, moment: datetime, body: str, *, media: list[str] | None = None) -> Message:
        message = self._message(
            moment, "inbound", "in", author="contact", body=body, status="received", segments=0
        )
        kind = "MM" if media else "SM"
        message.provider_message_id = _sid(kind, message.id)
        if media:
            message.media_urls = [
                f"https://api.twilio.com/2010-04-01/Accounts/{_sid('AC', 'rooter')}/Messages/"
                f"{message.provider_message_id}/Media/{_sid('ME', url)}"
                for url in media
            ]
        return message

    def outbound(
        self,
        moment: datetime,
        body: str,
        *,
        author: str,
        status: str = "delivered",
        run: AgentRun | None = None,
        error: tuple[str, str] | None = None,
        user: str | None = None,
        send_at: datetime | None = None,
        message_type: str | None = None,
    ) -> Message:
        info = count_segments(body)
        message = self._message(
            moment,
            "outbound",
            f"out:{author}",
            author=author,
            body=body,
            status=status,
            segments=info.segments,
            encoding=str(info.encoding),
            cost_cents=round(info.segments * PER_SEGMENT_CENTS, 4),
            agent_run_id=run.id if run else None,
            sender_user_id=user,
            send_at=send_at,
            message_type=message_type,
            origin="v1" if author == "api" else None,
        )
        if status != "scheduled":
            message.provider_message_id = _sid("SM", message.id)
            message.sent_at = moment + timedelta(seconds=1)
            message.updated_at = message.sent_at
        if status == "delivered":
            message.delivered_at = moment + timedelta(seconds=4)
            message.updated_at = message.delivered_at
        elif status in ("undelivered", "failed"):
            assert error is not None
            message.error_code, message.error_message = error
            message.updated_at = moment + timedelta(seconds=3)
        return message

    def run(
        self,
        moment: datetime,
        answers: list[Message],
        *,
        latency: int,
        tokens: tuple[int, int] = (0, 0),
        tools: list[dict[str, Any]] | None = None,
        outcome: str = "replied",
        model: str | None = MODEL,
        error: str | None = None,
        corrections: list[dict[str, Any]] | None = None,
        exchange: list[dict[str, Any]] | None = None,
        handles: bool = True,
    ) -> AgentRun:
        run = AgentRun(
            id=_ulid("run", moment, f"{self.id}:{moment.isoformat()}"),
            workspace_id=self.conversation.workspace_id,
            conversation_id=self.id,
            model=model,
            prompt_tokens=tokens[0],
            completion_tokens=tokens[1],
            latency_ms=latency,
            tool_calls=tools or [],
            inbound_message_ids=[m.id for m in answers],
            corrections=corrections or [],
            outcome=outcome,
            error=error,
            exchange=exchange,
            started_at=moment,
            finished_at=moment + timedelta(milliseconds=max(latency, 30)),
        )
        if handles:
            for message in answers:
                message.handled_at = run.finished_at
                message.agent_run_id = run.id
        self.rows.append(run)
        return run

    def event(
        self, moment: datetime, type: str, data: dict[str, Any], run: AgentRun | None = None
    ) -> Event:
        event = Event(
            id=_ulid("evt", moment, f"{self.id}:{moment.isoformat()}:{type}"),
            workspace_id=self.conversation.workspace_id,
            conversation_id=self.id,
            agent_run_id=run.id if run else None,
            type=type,
            data=data,
        )
        event.created_at = moment
        self.rows.append(event)
        return event


@dataclass
class _Seed:
    rows: list[SQLModel] = field(default_factory=list)
    threads: list[_Thread] = field(default_factory=list)

    def contact(
        self,
        workspace_id: str,
        phone: str,
        first: str | None = None,
        last: str | None = None,
        *,
        tags: list[str] | None = None,
        **values: Any,
    ) -> Contact:
        since = datetime(2026, 6, 2, 15, 0, tzinfo=UTC) + timedelta(days=len(self.rows) % 60)
        contact = Contact(
            id=_ulid("ct", since, f"{workspace_id}:{phone}"),
            workspace_id=workspace_id,
            phone=phone,
            first_name=first,
            last_name=last,
            tags=tags or [],
            created_at=since,
            updated_at=since,
            **values,
        )
        self.rows.append(contact)
        return contact

    def appointment(
        self, contact: Contact, starts: datetime, minutes: int, kind: str, **values: Any
    ) -> Appointment:
        made = min(starts - timedelta(days=21), datetime(2026, 11, 10, 15, tzinfo=UTC))
        appointment = Appointment(
            id=_ulid("apt", made, f"{contact.id}:{starts.isoformat()}"),
            workspace_id=contact.workspace_id,
            contact_id=contact.id,
            external_id=f"{kind[:3]}-{starts:%m%d%H%M}",
            starts_at=starts,
            ends_at=starts + timedelta(minutes=minutes),
            timezone=ZONE,
            type=kind,
            created_at=made,
            updated_at=made,
            **values,
        )
        self.rows.append(appointment)
        return appointment

    def thread(
        self,
        conversation_id: str,
        contact: Contact,
        started: datetime,
        *,
        appointment: Appointment | None = None,
        **values: Any,
    ) -> _Thread:
        rooter = contact.workspace_id == RAPID_ROOTER
        thread = _Thread(
            Conversation(
                id=conversation_id,
                workspace_id=contact.workspace_id,
                contact_id=contact.id,
                appointment_id=appointment.id if appointment else None,
                sender_number=ROOTER_NUMBER if rooter else DENTAL_NUMBER,
                provider="twilio",
                created_at=started,
                **values,
            ),
            contact,
        )
        self.threads.append(thread)
        return thread

    def finish(self) -> list[SQLModel]:
        """Every row; each thread's last message and update times are its newest message's."""
        done = list(self.rows)
        for thread in self.threads:
            times = [r.created_at for r in thread.rows if isinstance(r, Message)]
            thread.conversation.last_message_at = max(times)
            thread.conversation.updated_at = max(times)
            done.append(thread.conversation)
            done.extend(thread.rows)
        return done


def _tool(name: str, args: dict[str, Any], result: str, *, error: bool = False) -> dict[str, Any]:
    return {"name": name, "args": args, "result": result, "error": error}


def _exchange(
    system: str, said: list[tuple[str, str]], calls: list[dict[str, Any]], reply: str
) -> list[dict[str, Any]]:
    """The model's input and output for a run: the prompt, the thread, its tool calls with
    their results, then the reply."""
    thread = [{"role": "system", "content": system}] + [
        {"role": role, "content": text} for role, text in said
    ]
    output: list[dict[str, Any]] = []
    for number, call in enumerate(calls, 1):
        call_id = f"call_{hashlib.sha256(f'{reply}:{number}'.encode()).hexdigest()[:24]}"
        output.append(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": call_id, "name": call["name"], "args": call["args"]}],
                "usage": {"input_tokens": 1650 + 40 * number, "output_tokens": 18},
            }
        )
        output.append(
            {
                "role": "tool",
                "content": call["result"],
                "tool_call_id": call_id,
                "status": "success",
            }
        )
    output.append(
        {
            "role": "assistant",
            "content": reply,
            "usage": {"input_tokens": 1790, "output_tokens": 31},
        }
    )
    return [{"call": 1, "input": thread, "output": output}]


_DENTAL_PROMPT = (
    "You are the text-message assistant of Bright Smiles Dental, a dental office. Keep replies "
    "short and plain. Today is {today}. The customer: {name}. Their appointment: {visit}."
)


def _dental(seed: _Seed) -> None:
    ws = DENTAL

    # A confirmation by the agent.
    sarah = seed.contact(
        ws,
        "+13105551234",
        "Sarah",
        "Johnson",
        tags=["vip"],
        email="sarah.johnson@example.com",
        external_id="pt-1042",
    )
    cleaning = seed.appointment(sarah, at(19, "10:00"), 60, "cleaning", status="confirmed")
    t = seed.thread(
        CONFIRMED,
        sarah,
        at(17, "14:00"),
        appointment=cleaning,
        context="Reminder for Sarah's cleaning on Thu, Nov 19 at 10:00 AM.",
    )
    t.event(
        at(17, "14:00"), "conversation.started", {"source": "v1", "appointment_id": cleaning.id}
    )
    reminder = (
        "Hi Sarah! This is Bright Smiles Dental reminding you of your cleaning on Thu, Nov 19 at "
        "10:00 AM. Reply Y to confirm or let us know if you need to change it."
    )
    t.outbound(at(17, "14:00"), reminder, author="api")
    yes = t.inbound(at(17, "14:12:30"), "Yes I'll be there! Is it ok to park out front?")
    confirm = _tool(
        "confirm_appointment",
        {"appointment_id": cleaning.id},
        "Confirmed. Tell the customer their appointment is confirmed.",
    )
    reply = (
        "You're all set for Thu, Nov 19 at 10:00 AM. Street parking out front is fine. "
        "See you then!"
    )
    run = t.run(
        at(17, "14:12:32"),
        [yes],
        latency=2140,
        tokens=(1850, 64),
        tools=[confirm],
        exchange=_exchange(
            _DENTAL_PROMPT.format(
                today="Tuesday, November 17, 2026",
                name="Sarah Johnson",
                visit="cleaning on Thu, Nov 19 at 10:00 AM (scheduled)",
            ),
            [("assistant", reminder), ("user", yes.body)],
            [confirm],
            reply,
        ),
    )
    t.event(at(17, "14:12:34"), "appointment.confirmed", {"appointment_id": cleaning.id}, run)
    t.outbound(at(17, "14:12:35"), reply, author="agent", run=run)

    # A move: open times first, then the one the patient picked.
    michael = seed.contact(ws, "+16465550182", "Michael", "Chen", tags=["new-patient"])
    exam = seed.appointment(
        michael,
        at(23, "14:30"),
        45,
        "exam",
        status="rescheduled",
        history=[
            {
                "starts_at": at(20, "09:00").isoformat(),
                "ends_at": at(20, "09:45").isoformat(),
                "moved_at": at(18, "10:21:44").isoformat(),
            }
        ],
    )
    t = seed.thread(
        RESCHEDULED,
        michael,
        at(18, "09:30"),
        appointment=exam,
        context="Reminder for Michael's exam on Fri, Nov 20 at 9:00 AM.",
    )
    t.event(at(18, "09:30"), "conversation.started", {"source": "v1", "appointment_id": exam.id})
    t.outbound(
        at(18, "09:30"),
        "Hi Michael, this is Bright Smiles Dental: a reminder of your exam on Fri, Nov 20 at "
        "9:00 AM. Reply Y to confirm.",
        author="api",
    )
    ask = t.inbound(at(18, "10:05:10"), "I can't make Friday morning. Anything Monday afternoon?")
    run = t.run(
        at(18, "10:05:12"),
        [ask],
        latency=3420,
        tokens=(2010, 58),
        tools=[
            _tool(
                "check_availability",
                {"day": "2026-11-23", "after": "12:00"},
                "Open times: Mon, Nov 23 at 1:00 PM; Mon, Nov 23 at 2:30 PM; Mon, Nov 23 at "
                "4:00 PM. Offer a few of these; book one only when the customer picks it.",
            )
        ],
    )
    offer = "Monday afternoon we have 1:00, 2:30 or 4:00 PM open. Which works best?"
    t.outbound(at(18, "10:05:16"), offer, author="agent", run=run)
    pick = t.inbound(at(18, "10:21:40"), "2:30 please")
    move = _tool(
        "reschedule_appointment",
        {"new_start": "2026-11-23T14:30"},
        "Moved. Tell the customer their appointment is now Mon, Nov 23 at 2:30 PM.",
    )
    reply = "Done! Your exam is now Mon, Nov 23 at 2:30 PM. See you then."
    run = t.run(
        at(18, "10:21:42"),
        [pick],
        latency=2870,
        tokens=(2240, 71),
        tools=[move],
        exchange=_exchange(
            _DENTAL_PROMPT.format(
                today="Wednesday, November 18, 2026",
                name="Michael Chen",
                visit="exam on Fri, Nov 20 at 9:00 AM (scheduled)",
            ),
            [("user", ask.body), ("assistant", offer), ("user", pick.body)],
            [move],
            reply,
        ),
    )
    t.event(
        at(18, "10:21:44"),
        "appointment.rescheduled",
        {
            "appointment_id": exam.id,
            "from": at(20, "09:00").isoformat(),
            "to": at(23, "14:30").isoformat(),
        },
        run,
    )
    t.outbound(at(18, "10:21:46"), reply, author="agent", run=run)

    # A cancellation, then closed by the office.
    emily = seed.contact(ws, "+19175550123", "Emily", "Davis")
    filling = seed.appointment(emily, at(23, "11:00"), 60, "filling", status="canceled")
    t = seed.thread(
        CANCELED,
        emily,
        at(19, "16:00"),
        appointment=filling,
        status="closed",
        context="Reminder for Emily's filling on Mon, Nov 23 at 11:00 AM.",
    )
    t.event(at(19, "16:00"), "conversation.started", {"source": "v1", "appointment_id": filling.id})
    t.outbound(
        at(19, "16:00"),
        "Hi Emily, a reminder of your filling on Mon, Nov 23 at 11:00 AM at Bright Smiles "
        "Dental. Reply Y to confirm.",
        author="api",
    )
    out_of_town = t.inbound(
        at(19, "18:40:05"),
        "I need to cancel, I'll be out of town that week. I'll call to rebook",
    )
    run = t.run(
        at(19, "18:40:07"),
        [out_of_town],
        latency=2650,
        tokens=(1930, 55),
        tools=[
            _tool(
                "cancel_appointment",
                {"reason": "out of town"},
                "Canceled. Tell the customer it is canceled and they can text to book again.",
            )
        ],
    )
    t.event(
        at(19, "18:40:09"),
        "appointment.canceled",
        {"appointment_id": filling.id, "reason": "out of town"},
        run,
    )
    t.outbound(
        at(19, "18:40:11"),
        "No problem, Emily. Your filling on Mon, Nov 23 is canceled. Text us anytime to book "
        "again.",
        author="agent",
        run=run,
    )
    t.event(at(20, "09:15"), "conversation.closed", {"source": "api"})

    # A billing question for a person; the patient wrote again after the hand-off.
    nameless = seed.contact(ws, "+12125550147")
    t = seed.thread(
        BILLING,
        nameless,
        at(21, "10:02:15"),
        status="pending",
        mode="human",
        handoff_reason="billing question",
    )
    charged = t.inbound(
        at(21, "10:02:15"),
        "Hi, why was I charged $85 after my last visit? I thought insurance covered it",
    )
    run = t.run(
        at(21, "10:02:17"),
        [charged],
        latency=3980,
        tokens=(1720, 48),
        tools=[
            _tool(
                "handoff_to_human",
                {"reason": "billing question"},
                "A person will take over. Tell the customer someone will follow up shortly.",
            )
        ],
    )
    t.event(at(21, "10:02:20"), "conversation.handoff", {"reason": "billing question"}, run)
    t.outbound(
        at(21, "10:02:21"),
        "I've passed this to our billing team. Someone will text you back shortly.",
        author="agent",
        run=run,
    )
    t.inbound(at(21, "10:30:02"), "Ok. Please call after 5pm if possible")

    # A team member takes the thread over, leaves a note, and hands it back.
    olivia = seed.contact(ws, "+17185550164", "Olivia", "Brown", tags=["vip"])
    t = seed.thread(TAKEN_OVER, olivia, at(20, "11:00:20"), assignee_user_id=MARIA)
    plan = t.inbound(at(20, "11:00:20"), "Do you take Delta Dental PPO? My employer just switched")
    run = t.run(at(20, "11:00:22"), [plan], latency=2310, tokens=(1790, 62))
    t.outbound(
        at(20, "11:00:25"),
        "Yes, we're in network with Delta Dental PPO. Bring your new card to your next visit "
        "and we'll update your file.",
        author="agent",
        run=run,
    )
    card = t.inbound(
        at(20, "11:04:10"),
        "The member ID is on a card I can't find right now, can someone call me?",
    )
    run = t.run(at(20, "11:04:12"), [card], latency=1980, tokens=(1905, 40))
    t.outbound(
        at(20, "11:04:14"),
        "No problem. What's the best number and time to reach you?",
        author="agent",
        run=run,
    )
    t.inbound(at(20, "11:06:02"), "This number, anytime before noon")
    t.event(at(20, "11:06:30"), "conversation.taken_over", {"source": "api"})
    human = t.outbound(
        at(20, "11:07:10"),
        "Hi Olivia, this is Maria at Bright Smiles. I'll call you in a few minutes to get the "
        "new member ID.",
        author="human",
        user=MARIA,
    )
    t.event(
        at(20, "11:07:10"),
        "conversation.human_reply",
        {"message_id": human.id, "author_name": "Maria Lopez"},
    )
    t.event(
        at(20, "11:32"),
        "conversation.note",
        {"text": "Called her back, all sorted", "author": "Maria Lopez"},
    )
    t.event(at(20, "11:32:30"), "conversation.handed_back", {"source": "api"})
    thanks = t.inbound(at(20, "15:10"), "Thanks so much for sorting that out!")
    run = t.run(at(20, "15:10:02"), [thanks], latency=1650, tokens=(2120, 35))
    t.outbound(
        at(20, "15:10:04"),
        "You're welcome, Olivia! See you at your next visit.",
        author="agent",
        run=run,
    )

    # An opt-out, answered by the fast path.
    james = seed.contact(
        ws,
        "+13475550111",
        "James",
        "Wilson",
        opted_out=True,
        opted_out_at=at(21, "09:14:34"),
        opt_out_source="keyword",
        marketing_consent_at=datetime(2026, 3, 2, 15, tzinfo=UTC),
    )
    t = seed.thread(OPTED_OUT, james, at(21, "09:00"))
    t.event(at(21, "09:00"), "conversation.started", {"source": "v1", "appointment_id": None})
    t.outbound(
        at(21, "09:00"),
        "Hi James, it's time for your 6-month checkup at Bright Smiles Dental. Reply to this "
        "text to book a time that suits you.",
        author="api",
        message_type="marketing",
    )
    stop = t.inbound(at(21, "09:14:33"), "STOP")
    run = t.run(at(21, "09:14:34"), [stop], latency=4, model=None, outcome="opt_out")
    t.event(at(21, "09:14:34"), "contact.opted_out", {"source": "keyword", "matched": "stop"}, run)
    t.outbound(
        at(21, "09:14:35"),
        "Bright Smiles Dental: You're unsubscribed and will get no more messages. Reply START "
        "to resubscribe.",
        author="system",
        run=run,
    )

    # The carrier refused the agent's reply.
    robert = seed.contact(ws, "+15165550139", "Robert", "Taylor")
    t = seed.thread(UNDELIVERED, robert, at(22, "19:45"))
    early = t.inbound(at(22, "19:45"), "Do you have anything early next week, before work?")
    run = t.run(
        at(22, "19:45:02"),
        [early],
        latency=4210,
        tokens=(1880, 77),
        tools=[
            _tool(
                "check_availability",
                {"day": "2026-11-30", "until": "2026-12-02", "before": "09:00"},
                "Open times: Mon, Nov 30 at 8:00 AM; Wed, Dec 2 at 8:00 AM. Offer a few of "
                "these; book one only when the customer picks it.",
            )
        ],
    )
    t.outbound(
        at(22, "19:45:07"),
        "We have Mon, Nov 30 at 8:00 AM or Wed, Dec 2 at 8:00 AM. Want one of those?",
        author="agent",
        run=run,
        status="undelivered",
        error=("30007", "Carrier violation"),
    )

    # One reminder batch, one millisecond: a landline that failed, and a fast "Y".
    karen = seed.contact(ws, "+12015550176", "Karen", "White")
    visit = seed.appointment(karen, at(25, "08:30"), 60, "cleaning")
    t = seed.thread(FAILED, karen, at(23, "09:00"), appointment=visit)
    t.event(at(23, "09:00"), "conversation.started", {"source": "v1", "appointment_id": visit.id})
    t.outbound(
        at(23, "09:00"),
        "Hi Karen, a reminder of your cleaning on Wed, Nov 25 at 8:30 AM at Bright Smiles "
        "Dental. Reply Y to confirm.",
        author="api",
        status="failed",
        error=("30003", "Unreachable destination handset"),
    )
    david = seed.contact(ws, "+19735550158", "David", "Lee")
    checkup = seed.appointment(david, at(25, "13:00"), 30, "checkup", status="confirmed")
    t = seed.thread(FAST_CONFIRM, david, at(23, "09:00"), appointment=checkup)
    t.event(at(23, "09:00"), "conversation.started", {"source": "v1", "appointment_id": checkup.id})
    t.outbound(
        at(23, "09:00"),
        "Hi David, a reminder of your checkup on Wed, Nov 25 at 1:00 PM at Bright Smiles "
        "Dental. Reply Y to confirm.",
        author="api",
    )
    y = t.inbound(at(23, "09:07:41"), "Y")
    run = t.run(at(23, "09:07:42"), [y], latency=6, model=None, outcome="confirm")
    t.event(
        at(23, "09:07:42"),
        "appointment.confirmed",
        {"appointment_id": checkup.id, "source": "fast_path"},
        run,
    )
    t.outbound(
        at(23, "09:07:43"),
        "Thanks, David! Your checkup appointment on Wed, Nov 25 at 1:00 PM is confirmed. See "
        "you then.",
        author="system",
        run=run,
    )

    # The claim check: "you're confirmed" was not so; asked again, the agent offers instead.
    jennifer = seed.contact(ws, "+16315550190", "Jennifer", "Garcia", tags=["new-patient"])
    crown = seed.appointment(jennifer, at(24, "09:00"), 90, "crown fitting")
    t = seed.thread(
        CORRECTED,
        jennifer,
        at(12, "15:00"),
        appointment=crown,
        context="Her crown is ready; fitting on Tue, Nov 24 at 9:00 AM.",
    )
    t.outbound(
        at(12, "15:00"),
        "Hi Jennifer, your crown from Bright Smiles Dental is ready. Your fitting is Tue, Nov 24 "
        "at 9:00 AM.",
        author="api",
    )
    set_ = t.inbound(at(23, "17:20:10"), "Am I all set for tomorrow morning?")
    first = "Yes, you're confirmed for tomorrow at 9:00 AM!"
    reply = (
        "Your crown fitting is tomorrow, Tue, Nov 24 at 9:00 AM. Would you like me to confirm it?"
    )
    prompt = _DENTAL_PROMPT.format(
        today="Monday, November 23, 2026",
        name="Jennifer Garcia",
        visit="crown fitting on Tue, Nov 24 at 9:00 AM (scheduled)",
    )
    history = [("user", set_.body)]
    run = t.run(
        at(23, "17:20:12"),
        [set_],
        latency=6840,
        tokens=(3920, 118),
        corrections=[{"claims": ["confirmed"], "reply": first, "action": "asked_again"}],
        exchange=[
            {
                "call": 1,
                "input": [{"role": "system", "content": prompt}]
                + [{"role": r, "content": c} for r, c in history],
                "output": [
                    {
                        "role": "assistant",
                        "content": first,
                        "usage": {"input_tokens": 1940, "output_tokens": 14},
                    }
                ],
            },
            {
                "call": 2,
                "input": [
                    {"role": "system", "content": prompt},
                    *({"role": r, "content": c} for r, c in history),
                    {"role": "assistant", "content": first},
                    {
                        "role": "system",
                        "content": "Nothing was confirmed this turn: no tool confirmed the "
                        "appointment. Do not say it is confirmed.",
                    },
                ],
                "output": [
                    {
                        "role": "assistant",
                        "content": reply,
                        "usage": {"input_tokens": 1980, "output_tokens": 104},
                    }
                ],
            },
        ],
    )
    t.outbound(at(23, "17:20:19"), reply, author="agent", run=run)

    # The model timed out; the retry answered. No delivery receipt yet.
    patricia = seed.contact(ws, "+19145550105", "Patricia", "Moore")
    t = seed.thread(RETRIED, patricia, at(24, "08:05"))
    hours = t.inbound(at(24, "08:05"), "What time do you open today?")
    t.run(
        at(24, "08:05:02"),
        [hours],
        latency=0,
        outcome="error",
        error="APITimeoutError: Request timed out.",
        handles=False,
    )
    run = t.run(at(24, "08:05:34"), [hours], latency=1520, tokens=(1690, 30))
    t.outbound(
        at(24, "08:05:36"),
        "We're open today from 8:00 AM to 5:00 PM.",
        author="agent",
        run=run,
        status="sent",
    )

    # No reply from the model: a person takes it.
    thomas = seed.contact(ws, "+17325550128", "Thomas", "Anderson")
    t = seed.thread(
        FALLBACK,
        thomas,
        at(23, "13:30"),
        status="pending",
        mode="human",
        handoff_reason="the agent could not answer",
    )
    xrays = t.inbound(
        at(23, "13:30"),
        "Can you send a copy of my x-rays to my new orthodontist? Dr. Patel at Smile Align",
    )
    run = t.run(at(23, "13:30:02"), [xrays], latency=9120, tokens=(4210, 12), outcome="no_reply")
    t.event(
        at(23, "13:30:12"), "conversation.handoff", {"reason": "the agent could not answer"}, run
    )
    t.outbound(
        at(23, "13:30:12"), _HANDOFF_TEXT.format("Bright Smiles Dental"), author="system", run=run
    )

    # In Spanish: Saturday is closed, Monday is booked.
    lucia = seed.contact(ws, "+13475550187", "Lucía", "Hernández", tags=["new-patient"])
    t = seed.thread(SPANISH, lucia, at(19, "12:10"))
    sabado = t.inbound(
        at(19, "12:10"), "Hola, ¿tienen citas disponibles el sábado para una limpieza?"
    )
    run = t.run(
        at(19, "12:10:02"),
        [sabado],
        latency=3150,
        tokens=(2050, 90),
        tools=[
            _tool(
                "check_availability",
                {"day": "2026-11-21", "kind": "cleaning"},
                "No open times for a 60-minute visit on 2026-11-21. Office hours: Mon-Fri "
                "8:00 AM-5:00 PM. Suggest another day.",
            )
        ],
    )
    t.outbound(
        at(19, "12:10:06"),
        "Hola Lucía, los sábados estamos cerrados. ¿Le viene bien el lunes 23 por la mañana?",
        author="agent",
        run=run,
    )
    lunes = t.inbound(at(19, "12:14:30"), "Sí, el lunes a las 9 está bien")
    run = t.run(
        at(19, "12:14:32"),
        [lunes],
        latency=2760,
        tokens=(2290, 85),
        tools=[
            _tool(
                "book_appointment",
                {"start": "2026-11-23T09:00", "kind": "cleaning"},
                "Booked. Tell the customer their appointment is on Mon, Nov 23 at 9:00 AM.",
            )
        ],
    )
    booked = seed.appointment(lucia, at(23, "09:00"), 60, "cleaning")
    t.event(
        at(19, "12:14:34"),
        "appointment.booked",
        {"appointment_id": booked.id, "starts_at": at(23, "09:00").isoformat()},
        run,
    )
    t.outbound(
        at(19, "12:14:37"),
        "¡Listo! Su limpieza es el lunes 23 de noviembre a las 9:00 AM. ¡Hasta pronto!",
        author="agent",
        run=run,
    )

    # Ten days before: outside a 7-day report.
    nancy = seed.contact(ws, "+12035550172", "Nancy", "Thomas")
    old_visit = seed.appointment(nancy, at(17, "15:00"), 60, "cleaning", status="confirmed")
    t = seed.thread(OLD_THREAD, nancy, at(14, "10:00"), appointment=old_visit, status="closed")
    t.event(
        at(14, "10:00"), "conversation.started", {"source": "v1", "appointment_id": old_visit.id}
    )
    t.outbound(
        at(14, "10:00"),
        "Hi Nancy, a reminder of your cleaning on Tue, Nov 17 at 3:00 PM at Bright Smiles "
        "Dental. Reply Y to confirm.",
        author="api",
    )
    old_yes = t.inbound(at(14, "10:20:11"), "Yes")
    run = t.run(at(14, "10:20:12"), [old_yes], latency=5, model=None, outcome="confirm")
    t.event(
        at(14, "10:20:12"),
        "appointment.confirmed",
        {"appointment_id": old_visit.id, "source": "fast_path"},
        run,
    )
    t.outbound(
        at(14, "10:20:13"),
        "Thanks, Nancy! Your cleaning appointment on Tue, Nov 17 at 3:00 PM is confirmed. See "
        "you then.",
        author="system",
        run=run,
    )
    t.event(at(14, "10:30"), "conversation.closed", {"source": "api"})


def _rooter(seed: _Seed) -> None:
    ws = RAPID_ROOTER

    # A photo of a leak (MMS); the agent asks the office for a quote.
    kevin = seed.contact(ws, "+16175550143", "Kevin", "Martin", tags=["new-customer"])
    t = seed.thread(MMS, kevin, at(18, "07:42:10"))
    leak = t.inbound(
        at(18, "07:42:10"),
        "Water is leaking under the kitchen sink, here's a photo",
        media=["leak.jpg"],
    )
    quote = _tool(
        "log_event",
        {"type": "quote_requested", "context": "Leak under the kitchen sink; photo sent."},
        "Recorded 'quote_requested'.",
    )
    reply = (
        "Thanks for the photo! That looks like a leaking trap. A technician will text you a "
        "quote within the hour. If water is pooling, close the shut-off valve under the sink "
        "and put a bucket under the trap."
    )
    run = t.run(
        at(18, "07:42:12"),
        [leak],
        latency=3340,
        tokens=(1760, 66),
        tools=[quote],
        exchange=_exchange(
            "You are the text-message assistant of Rapid Rooter Plumbing, a plumbing company. "
            "Keep replies short and plain. Today is Wednesday, November 18, 2026. The customer: "
            "Kevin Martin. No appointment on file.",
            [("user", f"{leak.body} [1 photo]")],
            [quote],
            reply,
        ),
    )
    t.event(
        at(18, "07:42:14"),
        "custom.quote_requested",
        {"context": "Leak under the kitchen sink; photo sent.", "source": "agent"},
        run,
    )
    t.outbound(at(18, "07:42:16"), reply, author="agent", run=run)
    price = t.inbound(at(18, "07:50:03"), "Roughly how much is that usually?")
    run = t.run(at(18, "07:50:05"), [price], latency=2090, tokens=(1980, 52))
    t.outbound(
        at(18, "07:50:08"),
        "A trap repair is usually $150-$250 including parts. The technician will confirm the "
        "exact price.",
        author="agent",
        run=run,
    )

    # The office keeps its own calendar: a move is a request.
    brian = seed.contact(ws, "+16175550166", "Brian", "Clark", tags=["commercial"])
    install = seed.appointment(
        brian,
        at(25, "08:00"),
        240,
        "water heater install",
        status="reschedule_requested",
        requested_start=at(30, "08:00"),
    )
    t = seed.thread(
        MOVE_ASKED,
        brian,
        at(22, "16:00"),
        appointment=install,
        context="Water heater install on Wed, Nov 25 at 8:00 AM.",
    )
    t.event(at(22, "16:00"), "conversation.started", {"source": "v1", "appointment_id": install.id})
    t.outbound(
        at(22, "16:00"),
        "Hi Brian, Rapid Rooter Plumbing here: your water heater install is on Wed, Nov 25 at "
        "8:00 AM. Reply here if you need to change it.",
        author="api",
    )
    push = t.inbound(at(22, "16:30"), "Can we push it to Monday the 30th, same time?")
    run = t.run(
        at(22, "16:30:02"),
        [push],
        latency=2480,
        tokens=(1810, 52),
        tools=[
            _tool(
                "reschedule_appointment",
                {"new_start": "2026-11-30T08:00"},
                "Asked the office to move it to Mon, Nov 30 at 8:00 AM. Tell the customer the "
                "office will confirm.",
            )
        ],
    )
    t.event(
        at(22, "16:30:04"),
        "appointment.reschedule_requested",
        {"appointment_id": install.id, "requested_start": at(30, "08:00").isoformat()},
        run,
    )
    t.outbound(
        at(22, "16:30:05"),
        "I've asked the office to move your install to Mon, Nov 30 at 8:00 AM. They'll text "
        "you to confirm.",
        author="agent",
        run=run,
    )

    # A visit agreed at night; the office schedules a text for the morning of the visit.
    nameless = seed.contact(ws, "+17815550120")
    t = seed.thread(SCHEDULED, nameless, at(23, "20:15"))
    toilet = t.inbound(
        at(23, "20:15"), "Toilet keeps running all night, can someone come by this week?"
    )
    run = t.run(at(23, "20:15:02"), [toilet], latency=2950, tokens=(1830, 70))
    t.outbound(
        at(23, "20:15:06"),
        "We can send a technician Wednesday between 9 and 11 AM. Does that work?",
        author="agent",
        run=run,
    )
    works = t.inbound(at(23, "20:22:40"), "Yes that works")
    run = t.run(
        at(23, "20:22:42"),
        [works],
        latency=2210,
        tokens=(1900, 45),
        tools=[
            _tool(
                "log_event",
                {"type": "job_booked", "context": "Running toilet; Wednesday 9-11 AM window."},
                "Recorded 'job_booked'.",
            )
        ],
    )
    t.event(
        at(23, "20:22:44"),
        "custom.job_booked",
        {"context": "Running toilet; Wednesday 9-11 AM window.", "source": "agent"},
        run,
    )
    t.outbound(
        at(23, "20:22:46"),
        "Great, you're on the schedule for Wednesday 9-11 AM. We'll text you when the "
        "technician is on the way.",
        author="agent",
        run=run,
    )
    t.outbound(
        at(24, "09:30"),
        "Rapid Rooter Plumbing: your technician will arrive between 9 and 11 AM today. Reply "
        "here if that no longer works.",
        author="api",
        status="scheduled",
        send_at=at(25, "08:30"),
    )

    # An emergency: the fast path hands off at once.
    steven = seed.contact(ws, "+16175550199", "Steven", "Young")
    t = seed.thread(
        EMERGENCY,
        steven,
        at(21, "06:48"),
        status="pending",
        mode="human",
        handoff_reason="emergency: flooding",
    )
    burst = t.inbound(at(21, "06:48"), "My basement is flooding, a pipe just burst!!")
    run = t.run(at(21, "06:48:01"), [burst], latency=5, model=None, outcome="emergency")
    t.event(at(21, "06:48:01"), "conversation.emergency", {"matched": "flooding"}, run)
    t.event(at(21, "06:48:01"), "conversation.handoff", {"reason": "emergency: flooding"}, run)
    t.outbound(
        at(21, "06:48:02"),
        "Rapid Rooter Plumbing: This sounds urgent. If anyone is in danger, call 911 now. "
        "We've alerted our team and someone will contact you as soon as possible.",
        author="system",
        run=run,
    )

    # Too much at once: the model runs out of steps and a person takes it.
    mark = seed.contact(ws, "+15085550134", "Mark", "Allen")
    t = seed.thread(
        STEP_LIMIT,
        mark,
        at(24, "10:15"),
        status="pending",
        mode="human",
        handoff_reason="the agent could not answer",
    )
    repipe = t.inbound(
        at(24, "10:15"),
        "Need a quote to repipe a 3 bed house, replace the gas line to the dryer and add an "
        "outdoor spigot. When can someone look?",
    )
    wrong = (
        "Give day (and until) as ISO dates like 2025-03-12, and after/before as 24-hour times "
        "like 15:00. Nothing was looked up."
    )
    run = t.run(
        at(24, "10:15:02"),
        [repipe],
        latency=14800,
        tokens=(9650, 210),
        outcome="step_limit",
        tools=[
            _tool("check_availability", {"day": "next week"}, wrong),
            _tool("check_availability", {"day": "monday"}, wrong),
            _tool(
                "check_availability",
                {"day": "2026-11-30"},
                "This office keeps its own calendar. Ask which day and time suit the customer "
                "and pass it to reschedule_appointment; the office will confirm.",
            ),
        ],
    )
    t.event(
        at(24, "10:15:17"), "conversation.handoff", {"reason": "the agent could not answer"}, run
    )
    t.outbound(
        at(24, "10:15:17"), _HANDOFF_TEXT.format("Rapid Rooter Plumbing"), author="system", run=run
    )


def _workspaces() -> list[SQLModel]:
    opened = datetime(2026, 8, 3, 14, 0, tzinfo=UTC)
    dental = Workspace(
        id=DENTAL,
        name="Bright Smiles Dental",
        business_name="Bright Smiles Dental",
        timezone=ZONE,
        vertical="dental",
        appointment_types={"cleaning": 60, "exam": 45, "filling": 60, "crown fitting": 90},
        created_at=opened,
        updated_at=opened,
    )
    rooter = Workspace(
        id=RAPID_ROOTER,
        name="Rapid Rooter Plumbing",
        business_name="Rapid Rooter Plumbing",
        timezone=ZONE,
        vertical="home_services",
        subdomain="rapid-rooter",
        scheduling="external",
        created_at=opened,
        updated_at=opened,
    )
    maria = User(
        id=MARIA,
        email="maria.lopez@brightsmiles.example",
        name="Maria Lopez",
        home_workspace_id=DENTAL,
        created_at=opened,
        updated_at=opened,
    )
    return [
        dental,
        rooter,
        SenderNumber(
            number=DENTAL_NUMBER, workspace_id=DENTAL, provider="twilio", created_at=opened
        ),
        SenderNumber(
            number=ROOTER_NUMBER, workspace_id=RAPID_ROOTER, provider="twilio", created_at=opened
        ),
        maria,
        Membership(workspace_id=DENTAL, user_id=MARIA, role="manager", added_at=opened),
    ]


# Parents before the rows that point at them (the tables have no ORM relationships to order by).
_PARENTS_FIRST: tuple[type[SQLModel], ...] = (
    Workspace,
    SenderNumber,
    User,
    Membership,
    Contact,
    Appointment,
    Conversation,
    Message,
    AgentRun,
    Event,
)


def review_rows() -> list[SQLModel]:
    """Every row of the seeded week, parents first."""
    seed = _Seed()
    _dental(seed)
    _rooter(seed)
    rows = _workspaces() + seed.finish()
    return sorted(rows, key=lambda row: _PARENTS_FIRST.index(type(row)))


async def seed_review(engine: AsyncEngine, *, schema: str | None = None) -> None:
    """Bring the database to the current schema and write the week into it."""
    await migrate(engine, schema=schema)
    rows = review_rows()
    async with AsyncSession(engine, expire_on_commit=False) as session:
        for kind in _PARENTS_FIRST:
            for row in (r for r in rows if type(r) is kind):
                # The default workspace may be there already (a service started on this file).
                if kind is Workspace:
                    await session.merge(row)
                else:
                    session.add(row)
            await session.flush()
        await session.commit()


async def seed_database(db: Database) -> None:
    """Seed the test database `db` through an engine of its own."""
    engine = create_engine(db.url, schema=db.schema, pool_size=1)
    try:
        await seed_review(engine, schema=db.schema)
    finally:
        await finish_plans(engine)
        await engine.dispose()


def review_env(db: Database) -> dict[str, str]:
    """The environment `smsagent` reads the seeded database with, as of `FIXED_NOW`."""
    env = {
        "SMSAGENT_DATABASE_URL": db.url,
        "SMSAGENT_REVIEW_NOW": FIXED_NOW.isoformat(),
        "SMSAGENT_TIMEZONE": ZONE,
    }
    if db.schema:
        env["SMSAGENT_DATABASE_SCHEMA"] = db.schema
    return env


def week() -> list[date]:
    """The days (in New York) a 7-day report as of `FIXED_NOW` covers."""
    first = (FIXED_NOW - timedelta(days=7)).astimezone(ZoneInfo(ZONE)).date()
    return [first + timedelta(days=n) for n in range(8)]

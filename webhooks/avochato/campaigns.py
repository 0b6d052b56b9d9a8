"""Campaigns (`/v1/campaigns`, `/v1/campaigns/:ids`, `/v1/campaigns/:id/cancel`): the inbox's
drip campaigns, their steps, and calling them off for a contact or for everyone.

Avochato lists campaign *steps*: each is a text (`raw_text`) and the follow-up sent
`follow_up_delay` after it. A campaign here is a keyword with texts in order; step n is text n
with text n+1 as its follow-up, so a campaign of N texts lists N-1 steps (one, without a
follow-up, when it has a single text):

| step field          | from the campaign's step n (n from 1)                         |
|---------------------|---------------------------------------------------------------|
| `id`, `hash_id`     | `<campaign id>.<n>`                                           |
| `key`               | the campaign's keyword (every step of a campaign carries it)  |
| `raw_text`          | text n                                                        |
| `follow_up_message` | text n+1, or null for a campaign of one text                  |
| `follow_up_delay`   | seconds from text n to text n+1, or null with no follow-up    |
| `media_url`         | text n's picture, or null (text n+1's goes with it when sent) |
| `hotkey`            | always null: the inbox has no hotkeys                         |

A campaign of two texts is thus one step, the seed's shape exactly.

- Fetching takes keywords (any case), campaign ids (all their steps) or step ids (that step),
  comma-separated; those that name nothing here are left out, and when none names anything the
  answer is 404. Both routes page by campaign: 30 campaigns a page, each with all its steps,
  and both answers say their `page` (the seed's list example leaves it out).
- Cancel takes keywords or campaign ids, and `phone`, `contacts` (a list, or comma-separated)
  or `all`. A contact is on the step whose text (`raw_text`) they last received; removing them
  from it cancels its follow-up, the next scheduled text, and later steps stay scheduled. With
  `recursive` every step they have left is canceled. `all` does the same for everyone in the
  campaign. `contacts` takes up to 1000 numbers. The answer says what was asked, as the seed
  does ("Processing 1 cancellations."): a phone with nothing waiting is no error.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from pydantic import BaseModel, Field

from agent import campaigns
from agent.campaigns import CAMPAIGN_ID, steps_of
from agent.phones import InvalidPhoneNumber, normalize_phone
from storage.campaigns import list_campaigns
from storage.models import Campaign
from webhooks.avochato.common import (
    PAGE_SIZE,
    Credentials,
    Paged,
    caller,
    csv,
    id_list,
    inbox_route,
    ok,
    params,
)
from webhooks.errors import HttpError
from webhooks.keys import DEPS
from webhooks.routing import Route

MAX_CONTACTS = 1000


class CampaignStepOut(BaseModel):
    id: str
    key: str
    raw_text: str
    follow_up_message: str | None
    follow_up_delay: int | None = Field(description="seconds after raw_text")
    media_url: str | None
    hash_id: str
    hotkey: str | None


class CampaignList(BaseModel):
    campaigns: list[CampaignStepOut]


class CampaignsAnswer(BaseModel):
    status: int
    data: CampaignList
    page: int


class CancelIn(Credentials):
    phone: str | None = Field(
        default=None,
        max_length=32,
        description="Phone number of the contact to cancel the campaign",
    )
    contacts: list[str] | str | None = Field(
        default=None, description="List of contacts (phone numbers) to cancel"
    )
    all: bool = Field(
        default=False,
        description="Cancel the campaign for all contacts on it; not with phone or contacts",
    )
    recursive: bool = Field(
        default=False,
        description="Cancel this step as well as all subsequent steps in this campaign (1 or 0)",
    )


class CancelOut(BaseModel):
    campaigns: str
    contacts: list[str]
    ids: list[str]


class CancelAnswer(BaseModel):
    status: int
    data: CancelOut


def step_count(campaign: Campaign) -> int:
    return max(1, len(campaign.steps) - 1)


def step_rows(campaign: Campaign, only: set[int] | None = None) -> list[CampaignStepOut]:
    """The campaign's texts as Avochato's steps (see the module's table); `only` these (from 1)."""
    steps = steps_of(campaign)
    rows = []
    for n, step in enumerate(steps[: step_count(campaign)], start=1):
        if only is not None and n not in only:
            continue
        after = steps[n] if n < len(steps) else None
        step_id = f"{campaign.id}.{n}"
        rows.append(
            CampaignStepOut(
                id=step_id,
                key=campaign.key,
                raw_text=step.message,
                follow_up_message=after.message if after else None,
                follow_up_delay=after.delay_seconds if after else None,
                media_url=step.media_url,
                hash_id=step_id,
                hotkey=None,
            )
        )
    return rows


def _answer(groups: Sequence[tuple[Campaign, set[int] | None]], page: int) -> web.Response:
    rows = [row for campaign, only in groups for row in step_rows(campaign, only)]
    return ok(CampaignList(campaigns=rows).model_dump(mode="json"), page=page)


@inbox_route
async def list_all_campaigns(request: web.Request) -> web.Response:
    who = await caller(request)
    query = Paged.model_validate(await params(request))
    async with request.app[DEPS].reads() as session:
        found = await list_campaigns(
            session=session,
            workspace_id=who.workspace.id,
            offset=(query.page - 1) * PAGE_SIZE,
            limit=PAGE_SIZE,
        )
    return _answer([(campaign, None) for campaign in found], query.page)


@inbox_route
async def fetch_campaigns(request: web.Request) -> web.Response:
    who = await caller(request)
    query = Paged.model_validate(await params(request))
    ids = id_list(request.match_info["ids"])
    # A step id names its campaign and the step: `<campaign id>.<n>`.
    steps: dict[str, tuple[str, int]] = {}
    for name in ids:
        campaign_id, dot, number = name.partition(".")
        if dot and CAMPAIGN_ID.fullmatch(campaign_id) and number.isdigit():
            steps[name] = (campaign_id, int(number))
    names = [steps[name][0] if name in steps else name for name in ids]
    matched = dict(await campaigns.find(request.app[DEPS], who.workspace.id, names))
    # Each campaign once, where first named, with the steps asked for (None: all of them).
    groups: dict[str, tuple[Campaign, set[int] | None]] = {}
    for asked, name in zip(ids, names, strict=True):
        campaign = matched.get(name)
        if campaign is None:
            continue
        only = {steps[asked][1]} if asked in steps else None
        if only is not None and not only <= set(range(1, step_count(campaign) + 1)):
            continue
        kept = groups.get(campaign.id)
        if kept is None:
            groups[campaign.id] = (campaign, only)
        elif kept[1] is not None:
            groups[campaign.id] = (campaign, None if only is None else kept[1] | only)
    if not groups:
        raise HttpError(404, "not_found", "no campaign here has these keys or ids")
    chosen = list(groups.values())[(query.page - 1) * PAGE_SIZE : query.page * PAGE_SIZE]
    return _answer(chosen, query.page)


@inbox_route
async def cancel_campaigns(request: web.Request) -> web.Response:
    who = await caller(request)
    body = CancelIn.model_validate(await params(request))
    names = id_list(request.match_info["id"], name="id")
    given = ([("phone", body.phone)] if body.phone else []) + [
        ("contacts", phone) for phone in csv(body.contacts)
    ]
    if body.all and given:
        raise HttpError(
            422, "validation_error", 'all: cannot pass "phone" or "contacts" when using all'
        )
    if not body.all and not given:
        raise HttpError(422, "validation_error", "give phone, contacts, or all=1")
    if len(given) > MAX_CONTACTS:
        raise HttpError(422, "validation_error", f"contacts: at most {MAX_CONTACTS} at a time")
    phones = list(dict.fromkeys(_e164(field, raw) for field, raw in given))
    await campaigns.cancel(
        request.app[DEPS],
        who.workspace.id,
        names,
        phones=None if body.all else phones,
        recursive=body.recursive,
    )
    if body.all:
        said = (
            f"Processing cancellation of all contacts from {len(names)} campaigns. "
            "This may take a moment."
        )
    elif body.contacts is not None:
        said = f"Processing up to {len(phones)} cancellations."
    else:
        said = f"Processing {len(phones)} cancellations."
    answer = CancelOut(campaigns=said, contacts=[] if body.all else phones, ids=names)
    return ok(answer.model_dump(mode="json"))


def _e164(field: str, raw: str) -> str:
    try:
        return normalize_phone(raw)
    except InvalidPhoneNumber as exc:
        raise HttpError(
            422,
            "validation_error",
            f"{field}: {exc}",
            details=[{"field": field, "message": str(exc)}],
        ) from exc


def routes() -> list[Route]:
    return [
        Route(
            "GET",
            "/compat/avochato/v1/campaigns",
            list_all_campaigns,
            "Avochato's List Campaigns: every campaign step in this inbox",
            "avochato",
            auth="avochato",
            query=Paged,
            responses={200: CampaignsAnswer},
        ),
        Route(
            "GET",
            "/compat/avochato/v1/campaigns/{ids}",
            fetch_campaigns,
            "Avochato's Fetch Campaigns: steps by comma-separated keywords or ids",
            "avochato",
            auth="avochato",
            query=Paged,
            responses={200: CampaignsAnswer},
        ),
        Route(
            "POST",
            "/compat/avochato/v1/campaigns/{id}/cancel",
            cancel_campaigns,
            "Avochato's campaign cancel: remove contacts (or all) from a campaign step, "
            "or with recursive from every later step",
            "avochato",
            auth="avochato",
            body=CancelIn,
            responses={200: CancelAnswer},
        ),
    ]

"""Photos and other media that come with texts: fetched once each by the turn, checked, kept on
disk or in an S3-compatible bucket, shown to the model (or described to it), listed in review
and given back by `GET /v1/media/{id}`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from click.testing import CliRunner, Result
from moto.server import ThreadedMotoServer

from agent.evals.scripted import ScriptedLLM, error, reply
from agent.media import image_type, size_text
from agent.transcripts import load_conversation
from storage.engine import create_engine, create_session_factory
from storage.workspaces import DEFAULT_WORKSPACE_ID
from tests.conftest import ServiceFactory
from tests.fakes.media_server import MediaServer, Recorded, RecordingProxy
from tests.fakes.twilio_server import TwilioStub
from tests.harness import FROM_NUMBER, PATIENT, Database, Service, count_rows, wait_until
from tests.test_cli import _env
from tests.workspaces import call, new_workspace
from webhooks.cli import main

LIMIT = 64 * 1024
ACCESS_KEY = "AKIDMEDIATEST"
SECRET_KEY = "media-test-secret-key"
REGION = "us-east-1"


@pytest.fixture
async def media(twilio: TwilioStub) -> AsyncIterator[MediaServer]:
    async with MediaServer(
        twilio.account_sid, twilio.auth_token, forward_to=twilio.base_url
    ) as server:
        yield server


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    return tmp_path / "media"


async def _start(
    make_service: ServiceFactory, media: MediaServer, media_dir: Path, **settings: Any
) -> Service:
    # Twilio's media lives on its API host: the media server is that host here.
    values: dict[str, Any] = {
        "twilio_api_url": media.api_url,
        "media_dir": str(media_dir),
        "media_max_bytes": LIMIT,
    }
    return await make_service(**(values | settings))


async def _mms(service: Service, sid: str, body: str, *media: tuple[str, str]) -> str:
    """A Twilio-signed MMS from the patient; the id of its conversation."""
    params = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": service.settings.twilio_account_sid or "",
        "From": PATIENT,
        "To": FROM_NUMBER,
        "Body": body,
        "NumMedia": str(len(media)),
    }
    for position, (url, content_type) in enumerate(media):
        params[f"MediaUrl{position}"] = url
        params[f"MediaContentType{position}"] = content_type
    status, text, _ = await service.twilio_post("/webhooks/twilio/sms", params)
    assert status == 200, text
    found, listed, _ = await service.request("GET", "/v1/conversations")
    assert found == 200, listed
    return str(listed["data"][0]["id"])


def _customer_said(request: dict[str, Any]) -> Any:
    """The content of the last customer message the model was sent."""
    return [m for m in request["messages"] if m["role"] == "user"][-1]["content"]


async def _cli(db: Database, *args: str) -> Result:
    result = await asyncio.to_thread(CliRunner().invoke, main, list(args), env=_env(db))
    assert result.exit_code == 0, result.output
    return result


async def test_each_item_is_fetched_once_checked_kept_or_refused_with_its_reason(
    make_service: ServiceFactory,
    media: MediaServer,
    media_dir: Path,
    llm: ScriptedLLM,
    twilio: TwilioStub,
    db: Database,
    tmp_path: Path,
) -> None:
    service = await _start(make_service, media, media_dir)
    llm.script(reply("Thanks for the photos! A plumber will call you within the hour."))
    sid = "MM" + "a" * 32
    sent = [
        (media.twilio_url(sid, "ME" + "1" * 32), "image/jpeg"),
        (media.file_url("photo.png"), "image/png"),
        (media.file_url("large.jpg"), "image/jpeg"),
        (media.file_url("endless.jpg"), "image/jpeg"),
        (media.file_url("archive.zip"), "application/zip"),
        (media.file_url("fake.jpg"), "image/jpeg"),
        (media.file_url("loop/0"), "image/jpeg"),
        (media.file_url("gone.jpg"), "image/jpeg"),
    ]
    # A text that is only photos.
    conversation_id = await _mms(service, sid, "", *sent)
    await twilio.wait_for_messages(1, timeout=15)
    assert twilio.messages[0]["Body"].startswith("Thanks for the photos!")

    thread = await service.conversation(conversation_id)
    items = thread["messages"][0]["media"]
    assert [(m["position"], m["status"]) for m in items] == [
        (0, "stored"),
        (1, "stored"),
        (2, "too_large"),
        (3, "too_large"),
        (4, "refused_type"),
        (5, "refused_type"),
        (6, "failed"),
        (7, "failed"),
    ]
    for item, data, content_type in (
        (items[0], media.stored_jpeg, "image/jpeg"),
        (items[1], media.png, "image/png"),
    ):
        kept = media_dir / item["key"]
        assert kept.read_bytes() == data
        assert kept.parent == media_dir / DEFAULT_WORKSPACE_ID / conversation_id
        assert kept.name == f"{item['id']}{'.jpg' if content_type == 'image/jpeg' else '.png'}"
        assert item["sha256"] == hashlib.sha256(data).hexdigest()
        assert (item["size_bytes"], item["content_type"]) == (len(data), content_type)
        assert (item["storage"], item["url"]) == ("file", f"/v1/media/{item['id']}")
    # Written whole, then renamed into place: no temporary file is left.
    assert not await asyncio.to_thread(lambda: list(media_dir.rglob("*.tmp")))
    assert f"more than the {LIMIT} allowed" in items[2]["error"]
    assert f"more than the {LIMIT} bytes allowed" in items[3]["error"]
    assert items[4]["error"] == "application/zip is not a type kept"
    assert "no JPEG, PNG, GIF, WebP or HEIC image" in items[5]["error"]
    assert items[6]["error"] == "more than 5 redirects"
    assert items[7]["error"] == "answered 404"
    assert all(m["url"] is None for m in items[2:])

    # Twilio's credentials went to its API host, never on to the storage it redirected to.
    api = [h for h in media.requests if h.origin == "api" and "/Media/" in h.path]
    storage = [h for h in media.requests if h.origin == "storage"]
    assert [h.authorization is not None for h in api] == [True]
    assert [h.authorization for h in storage] == [None]
    assert len(media.hits("/files/loop/0")) == 1
    assert len([h for h in media.requests if "/files/loop/" in h.path]) == 6

    # The model read a note for each, the text being only photos.
    said = _customer_said(llm.requests[0])
    assert isinstance(said, str)
    assert said.startswith(
        f"[The customer sent a photo (image/jpeg, {size_text(len(media.stored_jpeg))}).] "
        f"[The customer sent a photo (image/png, {size_text(len(media.png))}).] "
        "[The customer sent a photo too large to open.] "
        "[The customer sent a photo too large to open.] "
        "[The customer sent a file of a type not opened here (application/zip).] "
        "[The customer sent a photo that could not be opened.] "
        "[The customer sent an attachment that could not be opened.]"
    )
    assert "image_url" not in json.dumps(llm.requests[0])

    # A later turn fetches nothing again.
    before = len(media.requests)
    llm.script(reply("You're welcome!"))
    status, _, _ = await service.twilio_inbound("thank you", sid="SM" + "b" * 32)
    assert status == 200
    await twilio.wait_for_messages(2, timeout=10)
    assert len(media.requests) == before
    assert await count_rows(db, "media") == len(sent)
    # It still reads what came earlier.
    earlier = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "user"]
    assert earlier[-1] == "thank you"
    assert any("[The customer sent a photo (image/png" in said for said in earlier)

    # The media route gives the kept file back, to this workspace only.
    photo = items[0]
    assert service.http is not None
    async with service.http.get(
        service.url(photo["url"]), headers={"Authorization": f"Bearer {_api_key(service)}"}
    ) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "image/jpeg"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert await answer.read() == media.stored_jpeg
    other = await new_workspace(db, "Other Dental", "+15550002222")
    status, body = await call(service, "GET", photo["url"], other.api_key)
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body, _ = await service.request("GET", "/v1/media/med_unknown")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body, _ = await service.request("GET", photo["url"], auth=False)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    status, _, _ = await service.request("GET", f"/v1/media/{items[7]['id']}")
    assert status == 404  # recorded, not kept

    # Review lists each under its text.
    shown = (await _cli(db, "transcripts", "show", conversation_id)).output
    assert f"media: image/jpeg, {size_text(len(media.stored_jpeg))}, kept in file " in shown
    assert f"{DEFAULT_WORKSPACE_ID}/{conversation_id}/{photo['id']}.jpg" in shown
    assert f"media: failed: answered 404 ({media.file_url('gone.jpg')})" in shown
    assert "media: application/zip, refused type: application/zip is not a type kept" in shown
    whole = json.loads((await _cli(db, "transcripts", "show", conversation_id, "--json")).output)
    assert whole["messages"][0]["media"] == items
    page = tmp_path / "thread.html"
    await _cli(db, "transcripts", "export", conversation_id, "--format", "html", "--out", str(page))
    html = page.read_text()
    assert f"{DEFAULT_WORKSPACE_ID}/{conversation_id}/{photo['id']}.jpg" in html
    assert "too large: more than the" in html


def _api_key(service: Service) -> str:
    assert service.settings.api_key is not None
    return service.settings.api_key.get_secret_value()


async def test_with_vision_the_model_sees_the_photo_and_a_rerun_fetches_nothing_twice(
    make_service: ServiceFactory,
    media: MediaServer,
    media_dir: Path,
    llm: ScriptedLLM,
    twilio: TwilioStub,
    db: Database,
) -> None:
    service = await _start(make_service, media, media_dir, llm_vision=True)
    # The first try fails after the photo is kept: the turn runs again.
    llm.script(error(500, "model exploded"), reply("That looks like a cracked filling."))
    conversation_id = await _mms(
        service,
        "MM" + "c" * 32,
        "Here is the tooth",
        (media.file_url("photo.jpg"), "image/jpeg"),
        (media.file_url("archive.zip"), "application/zip"),
    )
    await twilio.wait_for_messages(1, timeout=15)
    assert len(llm.requests) == 2
    assert len(media.hits("/files/photo.jpg")) == 1
    assert len(media.hits("/files/archive.zip")) == 1
    assert await count_rows(db, "media") == 2

    said = _customer_said(llm.requests[1])
    size = size_text(len(media.jpeg))
    assert said == [
        {
            "type": "text",
            "text": f"Here is the tooth\n[The customer sent a photo (image/jpeg, {size}); it is "
            "attached.] [The customer sent a file of a type not opened here (application/zip).]",
        },
        {
            "type": "image_url",
            "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(media.jpeg).decode()},
        },
    ]
    # What is kept of the run for review names the photo, without its pixels.
    engine = create_engine(db.url, schema=db.schema)
    try:
        thread = await load_conversation(
            sessions=create_session_factory(engine), conversation_id=conversation_id, raw=True
        )
    finally:
        await engine.dispose()
    kept = json.dumps([run.exchange for run in thread.agent_runs], ensure_ascii=False)
    assert base64.b64encode(media.jpeg).decode()[:40] not in kept
    assert f"data:image/jpeg;base64,… ({len(media.jpeg):,} bytes)" in kept


async def test_without_a_model_the_turn_still_keeps_the_photo(
    make_service: ServiceFactory,
    media: MediaServer,
    media_dir: Path,
    twilio: TwilioStub,
) -> None:
    service = await _start(make_service, media, media_dir, llm_base_url=None)
    conversation_id = await _mms(
        service, "MM" + "d" * 32, "", (media.file_url("photo.jpg"), "image/jpeg")
    )
    await twilio.wait_for_messages(1, timeout=10)  # the hand-off reply
    items = (await service.conversation(conversation_id))["messages"][0]["media"]
    assert [m["status"] for m in items] == ["stored"]
    assert (media_dir / items[0]["key"]).read_bytes() == media.jpeg


async def test_private_addresses_are_refused_unless_allowed(
    make_service: ServiceFactory,
    media: MediaServer,
    media_dir: Path,
    twilio: TwilioStub,
) -> None:
    service = await _start(make_service, media, media_dir, callbacks_allow_private=False)
    conversation_id = await _mms(
        service, "MM" + "e" * 32, "see photo", (media.file_url("photo.jpg"), "image/jpeg")
    )
    await twilio.wait_for_messages(1, timeout=10)
    items = (await service.conversation(conversation_id))["messages"][0]["media"]
    assert [(m["status"], m["error"]) for m in items] == [
        ("failed", "refused: 127.0.0.1 is not a public address")
    ]
    assert media.hits("/files/photo.jpg") == []


# The S3-compatible store, against moto's server on loopback


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _s3(moto_url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<day>\d{8})/(?P<region>[^/]+)/s3/"
    r"aws4_request, SignedHeaders=(?P<names>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})"
)


def _signed_as_aws_signs(sent: Recorded, base_url: str) -> None:
    """Sign the request again with botocore's own SigV4 code: the same signature."""
    found = _AUTHORIZATION.fullmatch(sent.headers["authorization"])
    assert found is not None, sent.headers["authorization"]
    assert (found["key"], found["region"]) == (ACCESS_KEY, REGION)
    names = found["names"].split(";")
    assert {"host", "x-amz-date", "x-amz-content-sha256"} <= set(names)
    request = AWSRequest(
        method=sent.method,
        url=base_url + sent.path_qs,
        data=sent.body,
        headers={name: sent.headers[name] for name in names},
    )
    request.context["timestamp"] = sent.headers["x-amz-date"]
    signer = S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION)
    assert sent.headers["x-amz-content-sha256"] == signer.payload(request)
    assert signer.signed_headers(signer.headers_to_sign(request)) == found["names"]
    canonical = signer.canonical_request(request)
    assert (
        signer.signature(signer.string_to_sign(request, canonical), request) == (found["signature"])
    )


async def test_the_s3_store_puts_each_photo_in_the_bucket_signed_as_aws_signs(
    make_service: ServiceFactory,
    media: MediaServer,
    media_dir: Path,
    twilio: TwilioStub,
    moto_url: str,
) -> None:
    bucket = f"photos-{hashlib.sha256(media.api_url.encode()).hexdigest()[:12]}"
    s3 = _s3(moto_url)
    await asyncio.to_thread(s3.create_bucket, Bucket=bucket)
    async with RecordingProxy(moto_url) as proxy:
        service = await _start(
            make_service,
            media,
            media_dir,
            media_store="s3",
            media_s3_endpoint=proxy.url,
            media_s3_bucket=bucket,
            media_s3_region=REGION,
            media_s3_access_key=ACCESS_KEY,
            media_s3_secret_key=SECRET_KEY,
            media_s3_prefix="texts/",
        )
        conversation_id = await _mms(
            service, "MM" + "f" * 32, "the leak", (media.file_url("photo.jpg"), "image/jpeg")
        )
        await twilio.wait_for_messages(1, timeout=15)
        [item] = (await service.conversation(conversation_id))["messages"][0]["media"]
        assert (item["status"], item["storage"]) == ("stored", "s3")
        assert item["key"] == f"texts/{DEFAULT_WORKSPACE_ID}/{conversation_id}/{item['id']}.jpg"
        assert not await asyncio.to_thread(media_dir.exists)

        stored = await asyncio.to_thread(s3.get_object, Bucket=bucket, Key=item["key"])
        assert stored["Body"].read() == media.jpeg
        assert stored["ContentType"] == "image/jpeg"

        # The media route reads it back from the bucket.
        assert service.http is not None
        async with service.http.get(
            service.url(item["url"]), headers={"Authorization": f"Bearer {_api_key(service)}"}
        ) as answer:
            assert answer.status == 200
            assert await answer.read() == media.jpeg

        await wait_until(
            lambda: _done(proxy, {"PUT", "GET"}), what="the bucket's requests", within=5
        )
        sent = [r for r in proxy.requests if r.method in ("PUT", "GET")]
        assert [r.method for r in sent] == ["PUT", "GET"]
        for request in sent:
            assert request.path_qs == f"/{bucket}/{item['key']}"
            _signed_as_aws_signs(request, proxy.url)
        assert sent[0].body == media.jpeg


async def _done(proxy: RecordingProxy, methods: set[str]) -> bool:
    return methods <= {r.method for r in proxy.requests}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "image/heic"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00", "image/heif"),
        (b"<html><body>", None),
    ],
)
def test_images_are_known_by_their_bytes_not_their_word(data: bytes, expected: str | None) -> None:
    assert image_type(data) == expected

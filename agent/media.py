"""Photos and other files that come with texts: fetched once each, checked, kept, and shown to
the model.

A turn fetches its texts' media before it decides, a few at a time and each within a time
limit. A media URL is whatever the text's sender made it, so it is fetched with the guarded
client (no private addresses), redirects are followed here, hop by hop, and the provider's
credentials go only to the hosts the provider names (never on to the storage it redirects to).
Each item ends as one row: kept, or why not (failed, too large, of a type not taken).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import mimetypes
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from agent.errors import NotFound
from agent.hooks import PrivateAddress, private_address, refuse_private_literal
from agent.providers import SmsProvider
from agent.settings import Settings
from storage import media as kept
from storage.engine import SessionFactory
from storage.media import FileStore, MediaMissing, MediaStore, S3Store, StoreError
from storage.models import Media, MediaStatus, Message, MessageDirection
from storage.raw import Dialect, commit_plan
from storage.types import new_id, utcnow

log = logging.getLogger("smsagent.media")

# Redirects followed from a media URL to the file (Twilio's API answers with one, to storage).
MAX_REDIRECTS = 5
# Items fetched at once by one turn, and at most per turn (the rest are recorded as not
# fetched): a burst of photos cannot hold the turn for long.
AT_ONCE = 3
MAX_PER_TURN = 30
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024

# What the model is shown of one turn's photos: the types vision models take, and a budget.
VISION_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
VISION_MAX_IMAGES = 4
VISION_MAX_BYTES = 8 * 1024 * 1024

_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/heic": ".heic",
    "image/heif": ".heif",
    "text/vcard": ".vcf",
    "text/x-vcard": ".vcf",
    "application/pdf": ".pdf",
    "video/mp4": ".mp4",
    "video/3gpp": ".3gp",
    "audio/mpeg": ".mp3",
    "audio/amr": ".amr",
    "audio/ogg": ".ogg",
}
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})


@dataclass(frozen=True)
class Fetched:
    """One fetch's outcome: the file and its checked type, or why it was not kept."""

    status: MediaStatus
    content_type: str | None = None
    data: bytes = b""
    error: str | None = None


def image_type(data: bytes) -> str | None:
    """The image format the bytes are (JPEG, PNG, GIF, WebP or HEIC/HEIF), by their magic."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        if data[8:12] in _HEIC_BRANDS:
            return "image/heic"
        if data[8:12] in _HEIF_BRANDS:
            return "image/heif"
    return None


def type_allowed(content_type: str, allowed: Collection[str]) -> bool:
    """Whether `content_type` is one of `allowed` ("image/*" takes every image)."""
    kind = content_type.partition("/")[0]
    for pattern in (p.strip().lower() for p in allowed):
        if pattern in ("*", "*/*", content_type) or pattern == f"{kind}/*":
            return True
    return False


def extension(content_type: str) -> str:
    return _EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type) or ".bin"


class MediaKeeper:
    """Fetches a turn's media (`keep`) into the configured store; reads kept files back."""

    def __init__(
        self,
        settings: Settings,
        *,
        http: aiohttp.ClientSession,
        stores: Mapping[str, MediaStore],
        engine: AsyncEngine,
        reader: AsyncEngine,
        providers: Mapping[str, SmsProvider],
    ) -> None:
        self._settings = settings
        self._http = http
        self._stores = stores
        self._engine = engine
        self._reader = reader
        self._dialect = Dialect(engine.dialect.name)
        self._providers = providers

    @property
    def store(self) -> MediaStore:
        """Where new media is kept."""
        return self._stores[self._settings.media_store]

    def store_for(self, media: Media) -> MediaStore | None:
        """Where a row's file is (it may be kept in a store no longer the configured one)."""
        return self._stores.get(media.storage or "")

    @contextlib.asynccontextmanager
    async def open_kept(
        self, *, sessions: SessionFactory, workspace_id: str, media_id: str
    ) -> AsyncIterator[tuple[Media, AsyncIterator[bytes]]]:
        """A kept file of the workspace and its bytes; NotFound when there is none (another
        workspace's is not found either)."""
        async with sessions() as session:
            item = await kept.find(session=session, media_id=media_id, workspace_id=workspace_id)
        store = self.store_for(item) if item is not None else None
        if item is None or item.status != MediaStatus.STORED or item.key is None or store is None:
            raise NotFound(f"no media {media_id}")
        try:
            async with store.open(item.key) as pieces:
                yield item, pieces
        except MediaMissing:
            raise NotFound(f"media {media_id} is no longer kept") from None

    async def keep(
        self,
        *,
        workspace_id: str,
        conversation_id: str,
        messages: Sequence[Message],
        known: Sequence[Media],
    ) -> list[Media]:
        """Fetch and record every item of the inbound `messages` that has no row in `known`
        yet; return `known` with the new rows."""
        done = {(m.message_id, m.position) for m in known}
        todo = [
            (message, position, url)
            for message in messages
            if message.direction == MessageDirection.INBOUND
            for position, url in enumerate(message.media_urls)
            if (message.id, position) not in done
        ]
        if not todo:
            return list(known)
        slots = asyncio.Semaphore(AT_ONCE)

        async def one(message: Message, position: int, url: str) -> None:
            async with slots:
                fetched = await self._fetch_in_time(url, message.provider)
            await self._record(workspace_id, conversation_id, message, position, url, fetched)

        tasks = [asyncio.create_task(one(*item)) for item in todo[:MAX_PER_TURN]]
        # However the fetches go, the turn waits no longer than this for all of them.
        _, late = await asyncio.wait(tasks, timeout=self._settings.send_timeout_seconds * 3)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        unfinished: list[tuple[tuple[Message, int, str], str]] = []
        for task, item in zip(tasks, todo, strict=False):
            if task.cancelled() or task.exception() is not None:
                if not task.cancelled():
                    log.error(
                        "media.not_recorded message_id=%s position=%d error=%s",
                        item[0].id,
                        item[1],
                        type(task.exception()).__name__,
                    )
                unfinished.append((item, "the turn could not wait longer for it"))
        unfinished += [
            (item, f"not fetched: more than {MAX_PER_TURN} files came in one turn")
            for item in todo[MAX_PER_TURN:]
        ]
        for (message, position, url), reason in unfinished:
            failed = Fetched(MediaStatus.FAILED, error=reason)
            await self._record(workspace_id, conversation_id, message, position, url, failed)
        fresh = await commit_plan(
            self._reader, kept.of_messages(sorted({message.id for message, _, _ in todo}))
        )
        ours = {(m.message_id, m.position) for m in fresh}
        return [m for m in known if (m.message_id, m.position) not in ours] + fresh

    async def _fetch_in_time(self, url: str, provider: str) -> Fetched:
        timeout = self._settings.send_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                return await self.fetch(url, provider)
        except TimeoutError:
            return Fetched(MediaStatus.FAILED, error=f"no whole answer within {timeout:g} s")

    async def _record(
        self,
        workspace_id: str,
        conversation_id: str,
        message: Message,
        position: int,
        url: str,
        fetched: Fetched,
    ) -> None:
        media_id = new_id("med")
        row = Media(
            id=media_id,
            workspace_id=workspace_id,
            conversation_id=conversation_id,
            message_id=message.id,
            position=position,
            source_url=url,
            status=fetched.status,
            content_type=fetched.content_type,
            error=fetched.error,
            created_at=utcnow(),
        )
        store = self.store
        if fetched.status == MediaStatus.STORED and fetched.content_type is not None:
            name = f"{workspace_id}/{conversation_id}/{media_id}{extension(fetched.content_type)}"
            key = store.key_for(name)
            try:
                await store.put(key, fetched.data, fetched.content_type)
            except (OSError, StoreError, aiohttp.ClientError, TimeoutError) as exc:
                row.status = MediaStatus.FAILED
                row.error = f"fetched, but could not be kept ({type(exc).__name__})"
            else:
                row.storage, row.key = store.kind, key
                row.size_bytes = len(fetched.data)
                row.sha256 = hashlib.sha256(fetched.data).hexdigest()
        inserted = await commit_plan(self._engine, kept.add_plan(self._dialect, row))
        if not inserted and row.key is not None:
            # Recorded meanwhile by another run of the turn: its copy is the one kept.
            try:
                await store.delete(row.key)
            except (OSError, StoreError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("media.orphan key=%s error=%s", row.key, type(exc).__name__)
        log.info(
            "media.%s media_id=%s message_id=%s position=%d content_type=%s bytes=%s",
            row.status,
            media_id,
            message.id,
            position,
            row.content_type,
            row.size_bytes,
        )

    async def fetch(self, url: str, provider: str) -> Fetched:
        """The file at `url`, following redirects; the provider's credentials go with each
        request only where the provider says they belong."""
        source = self._providers.get(provider)
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            if urlsplit(current).scheme not in ("http", "https"):
                return Fetched(MediaStatus.FAILED, error="not an http(s) URL")
            headers = source.media_headers(current) if source is not None else {}
            try:
                refuse_private_literal(current, self._settings)
                async with self._http.get(
                    current, headers=headers, allow_redirects=False
                ) as answer:
                    if answer.status in _REDIRECTS:
                        location = answer.headers.get("Location")
                        try:
                            current = str(answer.url.join(URL(location or "")))
                        except ValueError:
                            location = None
                        if not location:
                            return Fetched(MediaStatus.FAILED, error="a redirect to nowhere")
                        continue
                    if answer.status != 200:
                        return Fetched(MediaStatus.FAILED, error=f"answered {answer.status}")
                    return await self._read(answer)
            except PrivateAddress as exc:
                return Fetched(MediaStatus.FAILED, error=f"refused: {exc}")
            except aiohttp.ClientError as exc:
                if private_address(exc):
                    return Fetched(MediaStatus.FAILED, error="refused: not a public address")
                return Fetched(MediaStatus.FAILED, error=f"could not fetch ({type(exc).__name__})")
        return Fetched(MediaStatus.FAILED, error=f"more than {MAX_REDIRECTS} redirects")

    async def _read(self, answer: aiohttp.ClientResponse) -> Fetched:
        declared = answer.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if not declared:
            return Fetched(MediaStatus.REFUSED_TYPE, error="no content type given")
        if not type_allowed(declared, self._settings.media_types):
            return Fetched(
                MediaStatus.REFUSED_TYPE, declared, error=f"{declared} is not a type kept"
            )
        limit = self._settings.media_max_bytes
        if answer.content_length is not None and answer.content_length > limit:
            return Fetched(
                MediaStatus.TOO_LARGE,
                declared,
                error=f"{answer.content_length} bytes, more than the {limit} allowed",
            )
        data = bytearray()
        async for piece in answer.content.iter_chunked(_CHUNK):
            data += piece
            if len(data) > limit:
                # Stop reading: whatever it claimed, it is larger than allowed.
                return Fetched(
                    MediaStatus.TOO_LARGE, declared, error=f"more than the {limit} bytes allowed"
                )
        content_type = declared
        if declared.startswith("image/"):
            found = image_type(bytes(data[:16]))
            if found is None:
                return Fetched(
                    MediaStatus.REFUSED_TYPE,
                    declared,
                    error=f"said {declared}, but is no JPEG, PNG, GIF, WebP or HEIC image",
                )
            content_type = found
        return Fetched(MediaStatus.STORED, content_type, bytes(data))


# What the model is told


@dataclass(frozen=True)
class Seen:
    """What the model is given of the thread's media: a note to add to each text's words, and
    the photos (data URLs) it is shown with a text."""

    notes: Mapping[str, str] = field(default_factory=dict)
    images: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def text(self, message: Message) -> str:
        """The text's words as the model reads them: never empty when a photo came alone."""
        note = self.notes.get(message.id)
        if not note:
            return message.body
        return f"{message.body}\n{note}" if message.body.strip() else note


async def seen(
    messages: Sequence[Message],
    media: Sequence[Media],
    *,
    keeper: MediaKeeper | None,
    show: Collection[str],
    vision: bool,
) -> Seen:
    """Notes for every inbound text with media; with `vision`, the stored photos of the texts
    in `show` (the turn's own) too, within a budget (the rest are described instead)."""
    by_message: dict[str, dict[int, Media]] = defaultdict(dict)
    for row in media:
        by_message[row.message_id][row.position] = row
    notes: dict[str, str] = {}
    images: dict[str, tuple[str, ...]] = {}
    count = spent = 0
    for message in messages:
        if (
            message.direction != MessageDirection.INBOUND
            or not message.media_urls
            or message.id in notes
        ):
            continue
        said: list[str] = []
        shown: list[str] = []
        for position in range(len(message.media_urls)):
            item = by_message[message.id].get(position)
            if item is None:
                said.append("[The customer sent an attachment that was not fetched.]")
                continue
            size = item.size_bytes or 0
            url = None
            if (
                vision
                and keeper is not None
                and message.id in show
                and item.status == MediaStatus.STORED
                and item.content_type in VISION_TYPES
                and count < VISION_MAX_IMAGES
                and spent + size <= VISION_MAX_BYTES
            ):
                url = await _data_url(keeper, item)
                if url is None:
                    said.append(note(item, unreadable=True))
                    continue
                shown.append(url)
                count, spent = count + 1, spent + size
            said.append(note(item, attached=url is not None))
        notes[message.id] = " ".join(said)
        if shown:
            images[message.id] = tuple(shown)
    return Seen(notes, images)


async def _data_url(keeper: MediaKeeper, item: Media) -> str | None:
    store = keeper.store_for(item)
    if store is None or item.key is None or item.content_type is None:
        return None
    try:
        data = await store.read(item.key)
    except (MediaMissing, StoreError, OSError, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("media.unreadable media_id=%s error=%s", item.id, type(exc).__name__)
        return None
    return f"data:{item.content_type};base64,{base64.b64encode(data).decode()}"


def note(item: Media, *, attached: bool = False, unreadable: bool = False) -> str:
    """One item in a few words: "[The customer sent a photo (image/jpeg, 240 KB).]"."""
    what = _kind(item.content_type)
    if item.status == MediaStatus.STORED and not unreadable:
        detail = f"{item.content_type}, {size_text(item.size_bytes or 0)}"
        return f"[The customer sent {what} ({detail}){'; it is attached' if attached else ''}.]"
    if item.status == MediaStatus.TOO_LARGE:
        return f"[The customer sent {what} too large to open.]"
    refused = item.status == MediaStatus.REFUSED_TYPE and item.content_type
    if refused and not str(item.content_type).startswith("image/"):
        return f"[The customer sent a file of a type not opened here ({item.content_type}).]"
    return f"[The customer sent {what} that could not be opened.]"


def _kind(content_type: str | None) -> str:
    kind = (content_type or "").partition("/")[0]
    if content_type in ("text/vcard", "text/x-vcard"):
        return "a contact card"
    if content_type == "application/pdf":
        return "a PDF"
    return {"image": "a photo", "video": "a video", "audio": "an audio clip"}.get(
        kind, "an attachment" if content_type is None else "a file"
    )


def size_text(size: int) -> str:
    """240 KB, 1.3 MB, 812 bytes."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{round(size / 1024)} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def build_keeper(
    settings: Settings,
    *,
    fetch_with: aiohttp.ClientSession,
    store_with: aiohttp.ClientSession,
    engine: AsyncEngine,
    reader: AsyncEngine,
    providers: Mapping[str, SmsProvider],
) -> MediaKeeper:
    """The keeper as configured: `fetch_with` is the guarded client for URLs from texts,
    `store_with` the plain one for the bucket the operator set up."""
    stores: dict[str, MediaStore] = {"file": FileStore(settings.media_dir)}
    if settings.media_s3_bucket and settings.media_s3_access_key and settings.media_s3_secret_key:
        stores["s3"] = S3Store(
            store_with,
            bucket=settings.media_s3_bucket,
            region=settings.media_s3_region,
            access_key=settings.media_s3_access_key,
            secret_key=settings.media_s3_secret_key.get_secret_value(),
            endpoint=settings.media_s3_endpoint,
            prefix=settings.media_s3_prefix,
        )
    return MediaKeeper(
        settings,
        http=fetch_with,
        stores=stores,
        engine=engine,
        reader=reader,
        providers=providers,
    )

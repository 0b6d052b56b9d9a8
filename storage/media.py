"""Media that came with texts: their rows, and the stores that keep the files.

A store is a folder on disk (each file written whole under a temporary name, then renamed into
place, so a reader never sees half a photo) or an S3-compatible bucket, spoken to with plain
HTTP requests signed with AWS Signature Version 4 (no SDK at run time).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Protocol
from urllib.parse import parse_qsl, quote, urlsplit

import aiohttp
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from yarl import URL

from storage.models import Media
from storage.raw import Columns, Dialect, Plan, marks
from storage.types import utcnow

# Files are read and streamed in pieces of this size.
CHUNK = 64 * 1024

_MEDIA = Columns(Media, "d")


# Rows


def of_messages(message_ids: Sequence[str]) -> Plan[list[Media]]:
    """The media rows of these messages, each message's in order."""
    if not message_ids:
        return []
    # Only placeholders and the table's column names are formatted into the statement.
    found = yield (
        f"SELECT {_MEDIA.sql} FROM media d "  # noqa: S608
        f"WHERE d.message_id IN ({marks(len(message_ids))}) ORDER BY d.message_id, d.position",
        tuple(message_ids),
    )
    return [_MEDIA.load(row) for row in found]


def add_plan(dialect: Dialect, media: Media) -> Plan[bool]:
    """Record one item; False when the message's item at that position is recorded already
    (each is fetched once: a turn run again after a crash finds it there)."""
    found = yield (
        "INSERT INTO media (id, workspace_id, conversation_id, message_id, position, source_url, "
        "status, content_type, size_bytes, sha256, storage, key, error, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (message_id, position) DO NOTHING RETURNING id",
        (
            media.id,
            media.workspace_id,
            media.conversation_id,
            media.message_id,
            media.position,
            media.source_url,
            str(media.status),
            media.content_type,
            media.size_bytes,
            media.sha256,
            media.storage,
            media.key,
            media.error,
            dialect.ts(media.created_at),
        ),
    )
    return bool(found)


async def find(*, session: AsyncSession, media_id: str, workspace_id: str) -> Media | None:
    """One item, only within its workspace (another's is not found, as if it did not exist)."""
    result = await session.exec(
        select(Media).where(Media.id == media_id, Media.workspace_id == workspace_id)
    )
    return result.first()


# Stores


class MediaMissing(Exception):
    """The store no longer has what a row says it keeps."""


class StoreError(Exception):
    """The store did not take or give back a file."""


class MediaStore(Protocol):
    kind: str

    def key_for(self, name: str) -> str:
        """The store's key for `name` (`workspace/conversation/id.ext`)."""
        ...

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def read(self, key: str) -> bytes: ...

    def open(self, key: str) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """The file's bytes in pieces; MediaMissing on entering when it is not there."""
        ...

    async def delete(self, key: str) -> None: ...


class FileStore:
    """Files under one folder: `<root>/<workspace>/<conversation>/<media id>.<ext>`."""

    kind = "file"

    def __init__(self, root: Path) -> None:
        self._root = root

    def key_for(self, name: str) -> str:
        return name

    def path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        # Keys are made of our own ids; one that would leave the folder is refused all the same.
        if not parts or key.startswith("/") or any(p in ("..", ".", "") for p in parts):
            raise MediaMissing(f"not a key of this store: {key!r}")
        return self._root.joinpath(*parts)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(_write_atomically, self.path(key), data)

    async def read(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except FileNotFoundError as exc:
            raise MediaMissing(key) from exc

    @contextlib.asynccontextmanager
    async def open(self, key: str) -> AsyncIterator[AsyncIterator[bytes]]:
        try:
            file = await asyncio.to_thread(self.path(key).open, "rb")
        except FileNotFoundError as exc:
            raise MediaMissing(key) from exc
        try:
            yield _pieces(file)
        finally:
            await asyncio.to_thread(file.close)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)


async def _pieces(file: IO[bytes]) -> AsyncIterator[bytes]:
    while piece := await asyncio.to_thread(file.read, CHUNK):
        yield piece


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with temporary.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class S3Store:
    """An S3-compatible bucket (AWS S3, MinIO, R2, …). With an endpoint, objects are addressed
    by path (`<endpoint>/<bucket>/<key>`), as every S3-compatible server takes; without one,
    AWS's own virtual-hosted address for the bucket and region."""

    kind = "s3"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        bucket: str,
        region: str,
        access_key: str,
        secret_key: str,
        endpoint: str | None = None,
        prefix: str = "",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._http = http
        self._bucket = bucket
        self._region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._endpoint = endpoint
        self._prefix = prefix
        self._clock = clock

    def key_for(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def url(self, key: str) -> str:
        path = quote(key, safe="/~")
        if self._endpoint is not None:
            return f"{self._endpoint}/{quote(self._bucket, safe='')}/{path}"
        return f"https://{self._bucket}.s3.{self._region}.amazonaws.com/{path}"

    def _signed(
        self, method: str, url: str, payload_hash: str, headers: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        return sign_v4(
            method=method,
            url=url,
            headers=headers or {},
            payload_hash=payload_hash,
            region=self._region,
            access_key=self._access_key,
            secret_key=self._secret_key,
            now=self._clock(),
        )

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        url = self.url(key)
        digest = hashlib.sha256(data).hexdigest()
        headers = self._signed("PUT", url, digest, {"Content-Type": content_type})
        async with self._http.put(URL(url, encoded=True), data=data, headers=headers) as answer:
            if answer.status != 200:
                raise StoreError(f"the bucket answered {answer.status} to PUT")

    async def read(self, key: str) -> bytes:
        async with self.open(key) as pieces:
            return b"".join([piece async for piece in pieces])

    @contextlib.asynccontextmanager
    async def open(self, key: str) -> AsyncIterator[AsyncIterator[bytes]]:
        url = self.url(key)
        headers = self._signed("GET", url, EMPTY_SHA256)
        async with self._http.get(URL(url, encoded=True), headers=headers) as answer:
            if answer.status == 404:
                raise MediaMissing(key)
            if answer.status != 200:
                raise StoreError(f"the bucket answered {answer.status} to GET")
            yield answer.content.iter_chunked(CHUNK)

    async def delete(self, key: str) -> None:
        url = self.url(key)
        headers = self._signed("DELETE", url, EMPTY_SHA256)
        async with self._http.delete(URL(url, encoded=True), headers=headers) as answer:
            if answer.status not in (200, 204, 404):
                raise StoreError(f"the bucket answered {answer.status} to DELETE")


# AWS Signature Version 4

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_ALGORITHM = "AWS4-HMAC-SHA256"


def sign_v4(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    payload_hash: str,
    region: str,
    access_key: str,
    secret_key: str,
    now: datetime,
    service: str = "s3",
) -> dict[str, str]:
    """`headers` with Host, X-Amz-Date, X-Amz-Content-SHA256 and the Authorization that signs
    them all: AWS's Signature Version 4, for a request to `url` (its path already encoded, as
    it is sent; S3 signs the path as is) whose body hashes to `payload_hash`."""
    parts = urlsplit(url)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    signed = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    signed.update({"host": parts.netloc, "x-amz-date": stamp, "x-amz-content-sha256": payload_hash})
    names = sorted(signed)
    query = "&".join(
        sorted(
            f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}"
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        )
    )
    canonical = "\n".join(
        [
            method.upper(),
            parts.path or "/",
            query,
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            payload_hash,
        ]
    )
    to_sign = "\n".join([_ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret_key}".encode()
    for part in (stamp[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        **headers,
        "Host": parts.netloc,
        "X-Amz-Date": stamp,
        "X-Amz-Content-SHA256": payload_hash,
        "Authorization": (
            f"{_ALGORITHM} Credential={access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        ),
    }

"""A loopback file server for the media that comes with texts, with the ways real ones go wrong.

It listens on two origins, as a provider's API host and its storage do. The `api` origin serves
Twilio-like media URLs that require the account's basic auth and answer with a 307 to the
`storage` origin, which refuses any request carrying an Authorization header (as a presigned
storage URL does: credentials must not follow the redirect). It also serves plain files: a real
JPEG and PNG, a file too large (with and without Content-Length), a type not kept, an
"image/jpeg" made of HTML, a redirect loop and a 404. Being the API host, it passes Twilio
Messages API calls on to the Twilio stub, so replies still go out::

    async with MediaServer(account_sid, auth_token, forward_to=twilio.base_url) as media:
        url = media.file_url("photo.jpg")
        twilio_url = media.twilio_url("MM123", "ME456")

Every request is recorded in `requests` (origin, path, whether it carried credentials).
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import Self

import aiohttp
import numpy as np
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from matplotlib.image import imsave
from yarl import URL

API_VERSION = "2010-04-01"
HTML = b"<!DOCTYPE html><html><body><h1>Not a photo</h1></body></html>\n"


def image_bytes(color: tuple[int, int, int], image_format: str, size: int = 24) -> bytes:
    """A real image of one colour (with a stripe, so the encoder has something to say)."""
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[:, :] = color
    pixels[size // 3 : size // 2, :] = (255, 255, 255)
    out = io.BytesIO()
    imsave(out, pixels, format=image_format)
    return out.getvalue()


@dataclass(frozen=True)
class Hit:
    origin: str  # "api" or "storage"
    path: str
    authorization: str | None


class MediaServer:
    """Loopback media host (`api`) and its storage (`storage`)."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        forward_to: str | None = None,
        large_bytes: int = 256 * 1024,
        host: str = "127.0.0.1",
    ) -> None:
        self.account_sid = account_sid
        self._auth = aiohttp.encode_basic_auth(account_sid, auth_token)
        self._forward_to = forward_to
        self.large_bytes = large_bytes
        self.host = host
        self.jpeg = image_bytes((200, 40, 40), "jpeg")
        self.png = image_bytes((40, 40, 200), "png")
        # What Twilio's storage holds: a photo of its own, to tell the two apart.
        self.stored_jpeg = image_bytes((40, 160, 40), "jpeg", size=32)
        self.requests: list[Hit] = []
        self._runners: dict[str, web.AppRunner] = {}
        self._ports: dict[str, int] = {}

    async def start(self) -> None:
        api = web.Application()
        api.router.add_get("/files/photo.jpg", self._file(self.jpeg, "image/jpeg"))
        api.router.add_get("/files/photo.png", self._file(self.png, "image/png"))
        api.router.add_get("/files/large.jpg", self._large)
        api.router.add_get("/files/endless.jpg", self._endless)
        api.router.add_get(
            "/files/archive.zip", self._file(b"PK\x03\x04" + b"\0" * 64, "application/zip")
        )
        api.router.add_get("/files/fake.jpg", self._file(HTML, "image/jpeg"))
        api.router.add_get("/files/loop/{n}", self._loop)
        api.router.add_get("/files/gone.jpg", self._gone)
        api.router.add_get(
            f"/{API_VERSION}/Accounts/{{sid}}/Messages/{{message}}/Media/{{media}}",
            self._twilio_media,
        )
        api.router.add_post(f"/{API_VERSION}/Accounts/{{sid}}/Messages.json", self._forward)
        storage = web.Application()
        storage.router.add_get("/media/{media}", self._storage)
        for name, app in (("api", api), ("storage", storage)):
            app.middlewares.append(self._recorder(name))
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            await web.TCPSite(runner, self.host, 0).start()
            self._runners[name] = runner
            self._ports[name] = int(runner.addresses[0][1])

    async def stop(self) -> None:
        for runner in self._runners.values():
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self._ports['api']}"

    @property
    def storage_url(self) -> str:
        return f"http://{self.host}:{self._ports['storage']}"

    def file_url(self, name: str) -> str:
        return f"{self.api_url}/files/{name}"

    def twilio_url(self, message_sid: str, media_sid: str) -> str:
        """Where Twilio keeps a text's media: on its API host, behind the account's auth."""
        return (
            f"{self.api_url}/{API_VERSION}/Accounts/{self.account_sid}/Messages/"
            f"{message_sid}/Media/{media_sid}"
        )

    def hits(self, path_end: str) -> list[Hit]:
        return [hit for hit in self.requests if hit.path.endswith(path_end)]

    def _recorder(self, origin: str) -> Middleware:
        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not request.path.endswith("/Messages.json"):
                hit = Hit(origin, request.path, request.headers.get("Authorization"))
                self.requests.append(hit)
            return await handler(request)

        return record

    @staticmethod
    def _file(data: bytes, content_type: str) -> Handler:
        async def serve(request: web.Request) -> web.StreamResponse:
            return web.Response(body=data, content_type=content_type)

        return serve

    async def _large(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self.jpeg + b"\0" * self.large_bytes, content_type="image/jpeg")

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        """A large file sent in chunks, with no Content-Length to refuse it by."""
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = 0
        try:
            await response.write(self.jpeg)
            while sent < self.large_bytes:
                await response.write(b"\0" * 8192)
                sent += 8192
                await asyncio.sleep(0)
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass  # the reader stopped reading, as it should
        return response

    async def _loop(self, request: web.Request) -> web.StreamResponse:
        following = int(request.match_info["n"]) + 1
        raise web.HTTPFound(f"/files/loop/{following}")

    async def _gone(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPNotFound(text="no such file")

    async def _twilio_media(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != self._auth:
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        raise web.HTTPTemporaryRedirect(f"{self.storage_url}/media/{request.match_info['media']}")

    async def _storage(self, request: web.Request) -> web.StreamResponse:
        if "Authorization" in request.headers:
            # As S3 answers a presigned URL that also carries an Authorization header.
            raise web.HTTPBadRequest(text="Only one auth mechanism allowed")
        return web.Response(body=self.stored_jpeg, content_type="image/jpeg")

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        """The Messages API, passed on to the Twilio stub."""
        if self._forward_to is None:
            raise web.HTTPNotFound()
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in ("authorization", "content-type")
        }
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                self._forward_to + request.path_qs, data=await request.read(), headers=headers
            ) as answer,
        ):
            return web.Response(
                status=answer.status, body=await answer.read(), content_type=answer.content_type
            )


@dataclass(frozen=True)
class Recorded:
    method: str
    path_qs: str  # as it arrived, still encoded
    headers: dict[str, str]  # names lower-cased
    body: bytes


class RecordingProxy:
    """Passes every request on to `target` and keeps a copy of each (to check what a client
    sent an S3-compatible server, signature and all)."""

    def __init__(self, target: str, host: str = "127.0.0.1") -> None:
        self._target = target
        self.host = host
        self.requests: list[Recorded] = []
        self._runner: web.AppRunner | None = None
        self._port = 0

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._pass_on)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    async def _pass_on(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.requests.append(Recorded(request.method, request.raw_path, headers, body))
        forwarded = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as http,
            http.request(
                request.method,
                URL(self._target + request.raw_path, encoded=True),
                data=body,
                headers=forwarded,
            ) as answer,
        ):
            passed = {
                k: v
                for k, v in answer.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            return web.Response(status=answer.status, body=await answer.read(), headers=passed)

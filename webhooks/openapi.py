"""`/openapi.json`: the OpenAPI 3.1 description of the public routes, made from the route table.

Every schema in it is generated from the pydantic models a route declares (`webhooks/routes.py`):
bodies in validation mode (what the handler accepts), answers in serialization mode (what it sends).
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from agent.settings import Settings
from webhooks.keys import SETTINGS

if TYPE_CHECKING:
    from webhooks.routing import Handler, Route

OPENAPI_VERSION = "3.1.0"
_PREFIX = "#/components/schemas/"
_REF = _PREFIX + "{model}"
# aiohttp path segments: `{name}` or `{name:regex}`.
_SEGMENT = re.compile(r"\{(?P<name>[^{}:]+)(?::(?P<regex>[^{}]*))?\}")
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Document = dict[str, Any]
# A model and the side it is seen from: what a handler accepts, or what it sends.
ModelKey = tuple[type[Any], JsonSchemaMode]


class ErrorDetail(BaseModel):
    code: str
    message: str
    # Whatever helps the caller fix the request (bad fields, limits), or null.
    details: Any


class Error(BaseModel):
    """What every failure answers with (`webhooks/errors.py`)."""

    error: ErrorDetail


def build_openapi(
    routes: Sequence[Route], *, title: str, version: str, server_url: str
) -> Document:
    """The OpenAPI 3.1 document of the routes marked public."""
    public = [route for route in routes if route.public]
    refs, schemas = _schemas(public)
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for route in public:
        path, in_path = _path_parameters(route.path)
        paths.setdefault(path, {})[route.method.lower()] = {
            "operationId": _operation_id(route, operation_ids),
            **_operation(route, in_path, refs, schemas),
        }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "servers": [{"url": server_url}],
        "tags": [{"name": tag} for tag in dict.fromkeys(route.tag for route in public)],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def openapi_handler(table: Callable[[Settings], Sequence[Route]]) -> Handler:
    """A handler serving the document of the routes `table` mounts for the app's settings.

    The document is built on the first request and kept for the app's lifetime; only the server
    URL follows the request when the settings have no public URL.
    """
    built: weakref.WeakKeyDictionary[web.Application, Document] = weakref.WeakKeyDictionary()

    async def serve_openapi(request: web.Request) -> web.Response:
        settings = request.app[SETTINGS]
        server_url = settings.public_url or f"{request.scheme}://{request.host}"
        document = built.get(request.app)
        if document is None:
            document = build_openapi(
                table(settings),
                title="smsagent",
                version=package_version("smsagent"),
                server_url=server_url,
            )
            built[request.app] = document
        return web.json_response({**document, "servers": [{"url": server_url}]})

    return serve_openapi


def _schemas(routes: Iterable[Route]) -> tuple[dict[ModelKey, Any], dict[str, Any]]:
    """Each model's reference, and the components they point at.

    All models go through one generator, so one model is one component and two models that
    share a class name get distinct ones.
    """
    keys: dict[ModelKey, None] = {(Error, "serialization"): None}
    for route in routes:
        if route.body is not None:
            keys[route.body, "validation"] = None
        if route.query is not None:
            keys[route.query, "validation"] = None
        for model in route.responses.values():
            if model is not None:
                keys[model, "serialization"] = None
    refs, top = models_json_schema(list(keys), by_alias=True, ref_template=_REF)
    by_model: dict[ModelKey, Any] = dict(refs)
    return _merge_duplicates(by_model, dict(top.get("$defs", {})))


def _merge_duplicates(
    refs: dict[ModelKey, Any], schemas: dict[str, Any]
) -> tuple[dict[ModelKey, Any], dict[str, Any]]:
    """One component for one shape.

    When class names clash, pydantic can give a model's validation and serialization schemas
    two names even where they are the same; the plainest name is kept.
    """
    while True:
        kept: dict[str, str] = {}
        renamed: dict[str, str] = {}
        for name in sorted(schemas, key=_plainness):
            key = json.dumps(schemas[name], sort_keys=True)
            renamed_to = kept.setdefault(key, name)
            if renamed_to != name:
                renamed[name] = renamed_to
        if not renamed:
            return refs, schemas
        schemas = {
            name: _renamed(schema, renamed)
            for name, schema in schemas.items()
            if name not in renamed
        }
        refs = {key: _renamed(ref, renamed) for key, ref in refs.items()}


def _plainness(name: str) -> tuple[bool, int, str]:
    return name.endswith(("-Input", "-Output")), len(name), name


def _renamed(schema: Any, renamed: dict[str, str]) -> Any:
    if isinstance(schema, list):
        return [_renamed(item, renamed) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_PREFIX):
        name = ref.removeprefix(_PREFIX)
        schema = {**schema, "$ref": _PREFIX + renamed.get(name, name)}
    return {key: _renamed(value, renamed) for key, value in schema.items()}


def _operation(
    route: Route,
    in_path: list[tuple[str, dict[str, Any]]],
    refs: dict[ModelKey, Any],
    schemas: dict[str, Any],
) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": schema} for name, schema in in_path
    ]
    if route.query is not None:
        parameters += _query_parameters(refs[route.query, "validation"], schemas)
    parameters += [
        {
            "name": name,
            "in": "header",
            "required": required,
            "description": description,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        }
        for name, (required, description) in route.headers.items()
    ]
    operation: dict[str, Any] = {"summary": route.summary, "tags": [route.tag]}
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[route.body, "validation"]}},
        }
    if route.auth == "bearer":
        operation["security"] = [{"bearer": []}]
    operation["responses"] = _responses(route, refs, names_in_path=bool(in_path))
    return operation


def _responses(route: Route, refs: dict[ModelKey, Any], *, names_in_path: bool) -> dict[str, Any]:
    answers: dict[int, Any] = {
        status: None if model is None else refs[model, "serialization"]
        for status, model in route.responses.items()
    }
    if not any(200 <= status < 300 for status in answers):
        # A route that declares no answer answers 200 with a body left undescribed.
        answers[200] = None
    failures = {
        400: route.body is not None,
        401: route.auth != "none",
        # Whatever a request names (in its path, query or body) may not be there.
        404: names_in_path or route.body is not None or route.query is not None,
        409: route.method.upper() in _WRITES,
        422: route.body is not None or route.query is not None,
        429: True,
    }
    error = refs[Error, "serialization"]
    for status, applies in failures.items():
        if applies:
            answers.setdefault(status, error)
    return {str(status): _response(status, schema) for status, schema in sorted(answers.items())}


def _response(status: int, schema: Any) -> dict[str, Any]:
    response: dict[str, Any] = {"description": HTTPStatus(status).phrase}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    return response


def _path_parameters(path: str) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """The path as OpenAPI writes it, and each `{name}` segment with its schema."""
    found: list[tuple[str, dict[str, Any]]] = []

    def plain(match: re.Match[str]) -> str:
        # aiohttp's default segment is one or more characters other than "/".
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if match["regex"]:
            schema["pattern"] = f"^(?:{match['regex']})$"
        found.append((match["name"], schema))
        return "{" + match["name"] + "}"

    return _SEGMENT.sub(plain, path), found


def _query_parameters(ref: dict[str, Any], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    model = schemas[ref["$ref"].removeprefix(_PREFIX)]
    required = set(model.get("required", ()))
    parameters = []
    for name, prop in model.get("properties", {}).items():
        schema = _without_null(prop)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if "description" in schema:
            parameter["description"] = schema.pop("description")
        parameter["schema"] = schema
        parameters.append(parameter)
    return parameters


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query value is never null: an optional one is left out instead."""
    schema = {key: value for key, value in schema.items() if key != "title"}
    options = [option for option in schema.get("anyOf", ()) if option != {"type": "null"}]
    if "anyOf" in schema and len(options) < len(schema["anyOf"]):
        del schema["anyOf"]
        if schema.get("default", ...) is None:
            del schema["default"]
        schema.update(options[0] if len(options) == 1 else {"anyOf": options})
    return schema


def _operation_id(route: Route, taken: set[str]) -> str:
    """The view's own name; method and path when it has none of its own (a wrapper's closure,
    or a name another route already took)."""
    name = getattr(route.handler, "__name__", "")
    qualname = getattr(route.handler, "__qualname__", "")
    candidate = name if name.isidentifier() and "<locals>" not in qualname else ""
    if not candidate or candidate in taken:
        path = _SEGMENT.sub(lambda match: f"by_{match['name']}", route.path)
        candidate = "_".join(re.findall(r"[A-Za-z0-9]+", f"{route.method} {path}")).lower()
    unique, n = candidate, 2
    while unique in taken:
        unique, n = f"{candidate}_{n}", n + 1
    taken.add(unique)
    return unique

"""`GET /openapi.json`: the API described from the route table, valid OpenAPI 3.1, and true to
what the running service answers, checked by fuzzing every operation with schemathesis."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.strategies import SearchStrategy
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from pydantic import BaseModel, Field
from pydantic.json_schema import JsonSchemaMode
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agent.schemas import KickoffRequest
from agent.workspaces import Credentials
from tests.conftest import ServiceFactory
from tests.harness import PATIENT, PUBLIC_URL, Database, Service
from tests.test_kickoff import KICKOFF
from tests.workspaces import call, new_workspace
from webhooks import api
from webhooks.openapi import build_openapi
from webhooks.routes import all_routes
from webhooks.routing import Route

_REF = "#/components/schemas/"
# Per operation and run: keeps the whole fuzzing within a minute on two busy cores.
_EXAMPLES = 25
_NUMBER = "+15550003333"
# Body fields that must hold a phone number (the schema can only say "string"), with one that
# does, so valid requests get past the number check to the rest of the handler.
_PHONES = {
    "to": PATIENT,
    "toNumber": PATIENT,
    "to_phone": PATIENT,
    "from": _NUMBER,
    "fromNumber": _NUMBER,
}


async def _document(service: Service) -> dict[str, Any]:
    status, document, headers = await service.request("GET", "/openapi.json", auth=False)
    assert status == 200, document
    assert headers["Content-Type"].startswith("application/json")
    assert isinstance(document, dict)
    return document


async def test_the_document_is_openapi_31_and_lists_every_public_route(service: Service) -> None:
    document = await _document(service)

    validate(document, cls=OpenAPIV31SpecValidator)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": PUBLIC_URL}]
    public = [route for route in all_routes(service.settings) if route.public]
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert documented == {(route.method, _plain(route.path)) for route in public}
    # Provider webhooks are mounted but left out.
    assert not any(path.startswith("/webhooks/") for path in document["paths"])
    operation_ids = [
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))


async def test_bodies_and_answers_are_the_route_models(service: Service) -> None:
    document = await _document(service)
    components = document["components"]["schemas"]

    for route in all_routes(service.settings):
        if not route.public:
            continue
        operation = document["paths"][_plain(route.path)][route.method.lower()]
        if route.body is not None:
            body = operation["requestBody"]
            assert body["required"] is True
            schema = body["content"]["application/json"]["schema"]
            assert _inline(schema, components) == _model_schema(route.body, "validation")
        for status, model in route.responses.items():
            answer = operation["responses"][str(status)]
            if model is None:
                assert "content" not in answer
                continue
            schema = answer["content"]["application/json"]["schema"]
            assert _inline(schema, components) == _model_schema(model, "serialization")
        if route.auth == "bearer":
            assert operation["security"] == [{"bearer": []}]
            assert "401" in operation["responses"]
        else:
            assert "security" not in operation

    kickoff = document["paths"]["/v1/conversations"]["post"]
    ref = kickoff["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = components[ref.removeprefix(_REF)]
    required = [
        field.alias or name
        for name, field in KickoffRequest.model_fields.items()
        if field.is_required()
    ]
    assert "to" in required
    assert sorted(request["required"]) == sorted(required)
    # Fields are documented by the name they are sent with.
    assert "from" in request["properties"]
    assert "from_" not in request["properties"]
    assert request["additionalProperties"] is False
    assert set(request["properties"]) == {
        field.alias or name for name, field in KickoffRequest.model_fields.items()
    }

    conversation = document["paths"]["/v1/conversations/{conversation_id}"]["get"]
    assert conversation["parameters"] == [
        {
            "name": "conversation_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
        }
    ]
    error = {"$ref": f"{_REF}Error"}
    for code in ("401", "404", "429"):
        assert conversation["responses"][code]["content"]["application/json"]["schema"] == error
    assert components["Error"]["required"] == ["error"]
    assert sorted(components["ErrorDetail"]["required"]) == ["code", "details", "message"]
    assert document["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer"}
    }


async def test_without_a_public_url_the_server_is_the_request_host(
    make_service: ServiceFactory,
) -> None:
    service = await make_service(sms_provider="console", public_url=None)

    document = await _document(service)

    validate(document, cls=OpenAPIV31SpecValidator)
    assert document["servers"] == [{"url": service.url("/").rstrip("/")}]


class _Page(BaseModel):
    limit: int = Field(default=50, ge=1, le=200, description="How many to give back")
    cursor: str | None = None
    status: str


class _Note(BaseModel):
    text: str


def _other_note() -> type[BaseModel]:
    # Another model with the same class name, as vendor-compatible shapes often have.
    class _Note(BaseModel):
        body: str
        pinned: bool

    return _Note


def test_components_are_one_per_model_and_never_clash() -> None:
    other_note = _other_note()
    routes = [
        Route("POST", "/notes", api.healthz, "Add a note", "notes", body=_Note),
        Route(
            "GET",
            "/notes/{note_id:[0-9]+}",
            api.healthz,
            "A note",
            "notes",
            responses={200: _Note},
        ),
        Route(
            "POST",
            "/vendor/notes",
            api.healthz,
            "Add a vendor's note",
            "vendor",
            auth="avaamo_channel",
            body=other_note,
            responses={200: _Note},
        ),
        Route("GET", "/notes", api.list_conversations, "Notes", "notes", query=_Page),
        Route("GET", "/internal", api.healthz, "Not documented", "notes", public=False),
    ]

    document = build_openapi(routes, title="t", version="1", server_url="https://x.test")

    validate(document, cls=OpenAPIV31SpecValidator)
    paths = document["paths"]
    assert set(paths) == {"/notes", "/notes/{note_id}", "/vendor/notes"}
    note = paths["/notes"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    same = paths["/notes/{note_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    vendor = paths["/vendor/notes"]["post"]["requestBody"]["content"]["application/json"]
    assert same["schema"] == note
    assert vendor["schema"] != note
    components = document["components"]["schemas"]
    assert _inline(note, components)["required"] == ["text"]
    assert _inline(vendor["schema"], components)["required"] == ["body", "pinned"]
    [path_id] = paths["/notes/{note_id}"]["get"]["parameters"]
    assert path_id["schema"]["pattern"] == "^(?:[0-9]+)$"
    assert "security" not in paths["/vendor/notes"]["post"]
    query = {p["name"]: p for p in paths["/notes"]["get"]["parameters"]}
    assert query["limit"] == {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "How many to give back",
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    }
    # An optional query value is left out, never sent as null.
    assert query["cursor"]["schema"] == {"type": "string"}
    assert query["status"]["required"] is True
    operation_ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(set(operation_ids)) == len(operation_ids) == 4


async def test_the_service_answers_as_documented(
    make_service: ServiceFactory, db: Database
) -> None:
    # Every generated request counts against one key: lift the limit so the fuzzing reaches
    # the handlers rather than the rate limit.
    service = await make_service(api_rate_per_second=10_000, api_rate_burst=10_000)
    workspace = await new_workspace(db, "Fuzzed Dental", _NUMBER)
    target = _Target(
        base_url=service.url("/").rstrip("/"),
        headers={
            "Authorization": f"Bearer {workspace.api_key}",
            # Avoca's compatible route also wants the workspace named in a header.
            "X-Workspace-ID": workspace.id,
        },
        known=await _things_that_exist(service, workspace),
        inbox={
            "auth_id": workspace.avochato_auth_id,
            "auth_secret": workspace.avochato_auth_secret,
        },
    )
    document = await _document(service)

    # schemathesis sends with a blocking client: off the loop that serves the app.
    tested, failures = await asyncio.to_thread(_fuzz, document, target)

    public = sum(len(item) for item in document["paths"].values())
    assert tested == public, f"fuzzed {tested} of {public} operations"
    assert not failures, "\n\n".join(failures)


@dataclass(frozen=True)
class _Target:
    base_url: str
    headers: dict[str, str]
    # Path parameters naming things that exist, so requests get past the 404.
    known: dict[str, str]
    # The inbox API's credentials (parameters, not headers), so requests get past the 401.
    inbox: dict[str, str]


@dataclass(frozen=True)
class _Run:
    mode: GenerationMode
    known_ids: dict[str, str]
    real_numbers: dict[str, str]
    # Every text in the body ends in U+0000: valid JSON, which PostgreSQL cannot store as text.
    nul: bool = False
    # The inbox API's credentials put in the query or the body.
    inbox: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        known = ", existing ids" if self.known_ids else ""
        numbers = ", real phone numbers" if self.real_numbers else ""
        nul = ", texts ending in U+0000" if self.nul else ""
        inbox = ", inbox credentials" if self.inbox else ""
        return f"{self.mode.value} data{known}{numbers}{nul}{inbox}"


async def _things_that_exist(service: Service, workspace: Credentials) -> dict[str, str]:
    status, started = await call(
        service, "POST", "/v1/conversations", workspace.api_key, json=KICKOFF
    )
    assert status == 201, started
    status, templates = await call(service, "GET", "/v1/templates", workspace.api_key)
    assert status == 200, templates
    return {
        "conversation_id": started["conversation_id"],
        "message_id": started["message_id"],
        "template_id": templates["data"][0]["id"],
        "channel_uuid": workspace.avaamo_channel_uuid,
    }


def _fuzz(document: dict[str, Any], target: _Target) -> tuple[int, list[str]]:
    """Every operation, each run bounded; the failures, each with the request that caused it."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    tested = 0
    with requests.Session() as session:
        session.headers.update(target.headers)
        for result in schema.get_all_operations():
            if not isinstance(result, Ok):
                failures.append(f"an operation schemathesis cannot read: {result.err()}")
                continue
            operation = result.ok()
            tested += 1
            definition = document["paths"][operation.path][operation.method.lower()]
            runs = _runs(definition, document["components"]["schemas"], target)
            if operation.path.startswith("/compat/avochato/"):
                runs.append(_Run(GenerationMode.POSITIVE, {}, {}, inbox=target.inbox))
            for run in runs:
                cases = operation.as_strategy(
                    generation_mode=run.mode, path_parameters=run.known_ids or None
                )
                if run.nul:
                    cases = cases.map(_with_nul)
                if run.real_numbers:
                    cases = cases.map(partial(_with_numbers, numbers=run.real_numbers))
                if run.inbox:
                    cases = cases.map(partial(_with_credentials, credentials=run.inbox))
                try:
                    _call_each(cases, target.base_url, session)
                # A check that failed, or a request the service never answered.
                except (AssertionError, BaseExceptionGroup, requests.RequestException) as exc:
                    failures.append(f"{operation.label} ({run}):\n{exc}")
    return tested, failures


def _runs(definition: dict[str, Any], components: dict[str, Any], target: _Target) -> list[_Run]:
    """Valid requests naming things that may not exist; naming ones that do; with real phone
    numbers where the body has them; then invalid requests."""
    parameters = definition.get("parameters", [])
    in_path = {p["name"] for p in parameters if p["in"] == "path"}
    known = {name: target.known[name] for name in in_path if name in target.known}
    if known.keys() != in_path:
        known = {}
    body = definition.get("requestBody", {}).get("content", {}).get("application/json")
    fields = _inline(body["schema"], components).get("properties", {}) if body else {}
    numbers = {name: number for name, number in _PHONES.items() if name in fields}
    runs = [_Run(GenerationMode.POSITIVE, {}, {})]
    if known:
        runs.append(_Run(GenerationMode.POSITIVE, known, {}))
    if numbers:
        runs.append(_Run(GenerationMode.POSITIVE, known, numbers))
    if body:
        runs.append(_Run(GenerationMode.POSITIVE, known, numbers, nul=True))
    # Invalid requests need something to make invalid: parameters or a body.
    if parameters or body:
        runs.append(_Run(GenerationMode.NEGATIVE, known, {}))
    return runs


def _with_nul(case: Case[Any]) -> Case[Any]:
    case.body = _ending_in_nul(case.body)
    return case


def _ending_in_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value + "\x00"
    if isinstance(value, list):
        return [_ending_in_nul(item) for item in value]
    if isinstance(value, dict):
        return {key: _ending_in_nul(item) for key, item in value.items()}
    return value


def _with_numbers(case: Case[Any], *, numbers: dict[str, str]) -> Case[Any]:
    if isinstance(case.body, dict):
        case.body.update({name: numbers[name] for name in numbers if name in case.body})
    return case


def _with_credentials(case: Case[Any], *, credentials: dict[str, str]) -> Case[Any]:
    if isinstance(case.body, dict):
        case.body.update(credentials)
    else:
        case.query = {**(case.query or {}), **credentials}
    return case


def _call_each(cases: SearchStrategy[Case[Any]], base_url: str, session: requests.Session) -> None:
    """Up to `_EXAMPLES` requests, the same ones every run; raises on the first that fails a
    check (a 5xx, or an answer its operation does not document)."""
    checks = [
        schemathesis.checks.not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]

    @given(case=cases)
    @settings(
        max_examples=_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Case[Any]) -> None:
        case.call_and_validate(base_url=base_url, session=session, checks=checks, timeout=10)

    call()


def _plain(path: str) -> str:
    """The path as OpenAPI writes it: `{name}` without aiohttp's `:regex`."""
    return re.sub(r"\{([^{}:]+):[^{}]*\}", r"{\1}", path)


def _model_schema(model: type[BaseModel], mode: JsonSchemaMode) -> Any:
    schema = model.model_json_schema(by_alias=True, mode=mode, ref_template=_REF + "{model}")
    return _inline(schema, schema.get("$defs", {}))


def _inline(schema: Any, defs: Mapping[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """The schema with every `$ref` replaced by what it names, so two documents that name their
    components differently compare equal."""
    if isinstance(schema, list):
        return [_inline(item, defs, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    rest = {key: _inline(value, defs, seen) for key, value in schema.items() if key != "$defs"}
    if not isinstance(ref, str):
        return rest
    name = ref.removeprefix(_REF)
    if name in seen:
        return {"recursive": defs[name].get("title", name)}
    del rest["$ref"]
    return {**_inline(defs[name], defs, (*seen, name)), **rest}

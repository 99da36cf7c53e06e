"""The OpenAPI document: valid OpenAPI 3.1, in step with the Klein routes both ways, every problem
type the API code raises catalogued with its status, and nothing of the admin API in what everyone
else is served."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from klein import Klein
from openapi_spec_validator import validate
from twisted.internet.defer import fail, succeed

import desktop_relay.service
from desktop_relay.web import openapi
from desktop_relay.web.api import UserAPI
from desktop_relay.web.classes import ClassesAPI
from desktop_relay.web.classwork import ClassworkAPI, HandoutFiles
from desktop_relay.web.files import FilesAPI
from desktop_relay.web.looks import LooksAPI
from desktop_relay.web.openapi import PLANNED, admin_document, packaged_document, user_document
from desktop_relay.web.responses import PROBLEM_TYPE_PREFIX, Problem

WEB = Path(openapi.__file__).parent
METHODS = {"get", "put", "post", "delete", "patch"}
# The modules whose problems reach API callers (the pages' own, under /desktop/ and /login, do not).
API_MODULES = ["api.py", "files.py", "classes.py", "classwork.py", "looks.py", "bodies.py", "guard.py", "responses.py",
               "admin/*.py"]


def klein_routes(app: Klein, prefix: str) -> Iterator[tuple[str, str]]:
    """(path in OpenAPI's spelling, method) for every route of a Klein app mounted at prefix."""
    for rule in app.url_map.iter_rules():
        path = prefix + re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method.lower() in METHODS:
                yield path, method.lower()


def admin_groups() -> dict[str, Klein]:
    """The admin API's groups as service.py mounts them, each name with its Klein app: named
    in the wiring ({"sessions": SessionsAdmin(...).app.resource(), ...}), or by a class's own
    resources() ({"audit": self.app.resource(), "audit.csv": self.csv_app.resource()})."""
    try:
        package = importlib.import_module("desktop_relay.web.admin")
    except ImportError:
        return {}
    classes: dict[str, type] = {}
    for found in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{found.name}")
        classes.update({name: value for name, value in vars(module).items()
                        if isinstance(value, type) and isinstance(getattr(value, "app", None), Klein)})
    wiring = Path(desktop_relay.service.__file__).read_text()
    groups = {name: classes[cls].app for name, cls in re.findall(r'"([a-z][a-z0-9.-]*)": (\w+)\(', wiring)
              if cls in classes}
    for cls in classes.values():
        if "resources" in vars(cls) and re.search(rf"\b{cls.__name__}\(", wiring):
            own = inspect.getsource(cls.resources)
            groups.update({name: getattr(cls, attribute)
                           for name, attribute in re.findall(r'"([a-z][a-z0-9.-]*)": self\.(\w+)\.resource\(\)', own)})
    return groups


def routes() -> set[tuple[str, str]]:
    """Every route under /api/ that the relay has: the user API's and each admin group's."""
    found = set(klein_routes(UserAPI.app, "/api"))
    # The files API, mounted at /api/files/; its branch routes' rest is the path below a home.
    found.update((path.replace("{__rest__}", "{path}"), method) for path, method in klein_routes(FilesAPI.app, "/api/files"))
    # The class view's API, mounted at /api/classes/.
    found.update(klein_routes(ClassesAPI.app, "/api/classes"))
    found.update(klein_routes(LooksAPI.app, "/api/looks"))
    # The classwork API at /api/classwork/, and the files API's routes again on the hand-outs.
    found.update((path, method) for path, method in klein_routes(ClassworkAPI.app, "/api/classwork")
                 if "{__rest__}" not in path)
    found.update((path.replace("{__rest__}", "{path}"), method)
                 for path, method in klein_routes(HandoutFiles.app, "/api/classwork/handout"))
    for name, group in admin_groups().items():
        # A group's "/" is its mount point itself, /api/admin/<name> (with or without the slash).
        found.update((path.removesuffix("/"), method) for path, method in klein_routes(group, f"/api/admin/{name}"))
    return found


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item if method in METHODS}


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def problem_catalogue() -> dict[str, int]:
    """Every problem type the document lists (the user API's and the admin API's), with its status."""
    schemas = packaged_document()["components"]["schemas"]
    return {entry["const"]: entry["x-status"]
            for catalogue in ("ProblemType", "AdminProblemType") for entry in schemas[catalogue]["oneOf"]}


def raised_problems() -> set[tuple[int, str]]:
    """(status, type) of every Problem the API's modules raise, read from their source."""
    found = set()
    for pattern in API_MODULES:
        for module in WEB.glob(pattern):
            source = module.read_text()
            found.update((int(status), PROBLEM_TYPE_PREFIX + slug)
                         for status, slug in re.findall(r'Problem\(\s*(\d{3}),\s*"([a-z0-9-]+)"', source))
            # The routing errors' types, from responses.py's table of them.
            found.update((int(status), PROBLEM_TYPE_PREFIX + slug)
                         for status, slug in re.findall(r'(\d{3}): "([a-z0-9-]+)"', source))
    return found


@pytest.mark.parametrize("document", [packaged_document, admin_document, user_document],
                         ids=["packaged", "admin", "user"])
def test_document_is_valid_openapi_3_1(document: Any) -> None:
    served = document()
    assert served["openapi"].startswith("3.1.")
    validate(served)


def test_every_api_route_is_documented() -> None:
    missing = routes() - documented(packaged_document())
    assert not missing, f"routes without a description in web/openapi.json: {sorted(missing)}"


def test_every_documented_operation_is_a_route_unless_marked_planned() -> None:
    planned = {(path, method) for path, method in documented(packaged_document())
               if packaged_document()["paths"][path].get(PLANNED)}
    assert not planned & routes(), f"these exist now; drop their {PLANNED} mark: {sorted(planned & routes())}"
    served = documented(admin_document())
    assert served == routes(), f"described but not routes: {sorted(served - routes())}"


def test_every_problem_the_api_raises_is_catalogued_with_its_status() -> None:
    catalogue = problem_catalogue()
    raised = raised_problems()
    assert raised, "no problems found in the API's source: has the Problem( spelling changed?"
    wrong = {(status, type_) for status, type_ in raised if catalogue.get(type_) != status}
    assert not wrong, f"not in ProblemType with this status: {sorted(wrong)}"


def test_every_problem_a_response_documents_is_catalogued_with_that_status() -> None:
    document = packaged_document()
    catalogue = problem_catalogue()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            for status, response in operation["responses"].items():
                if "$ref" in response:
                    response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
                schema = response.get("content", {}).get("application/problem+json", {}).get("schema")
                if schema is None:
                    continue
                narrowed = schema["allOf"][1]["properties"]
                assert narrowed["status"]["const"] == int(status), (path, method, status)
                for type_ in narrowed["type"]["enum"]:
                    assert catalogue.get(type_) == int(status), (path, method, status, type_)


def test_everyone_else_is_served_no_trace_of_the_admin_api() -> None:
    document = user_document()
    text = json.dumps(document)
    assert "/api/admin" not in text
    assert not [name for entries in document["components"].values() for name in entries
                if name.lower().startswith("admin")]
    # Whatever is left refers only to what is left.
    for reference in references(document):
        kind, name = reference.removeprefix("#/components/").split("/")
        assert name in document["components"][kind], reference


def served(admin_caller: Any = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """GET /api/openapi.json from a UserAPI whose store, sessions and guard are never consulted."""
    from treq.testing import StubTreq

    api = UserAPI(store=None, sessions=None, guard=None, admin_caller=admin_caller)  # type: ignore[arg-type]
    http = StubTreq(api.app.resource())
    response = http.get("http://relay.example/openapi.json", headers=headers or {})
    http.flush()
    answered = response.result
    body = json.loads(http.content(answered).result)
    return answered.code, {k.decode().lower(): v[0].decode() for k, v in answered.headers.getAllRawHeaders()}, body


def test_the_user_document_is_served_to_anyone_without_sign_in() -> None:
    code, headers, body = served()
    assert code == 200 and body == user_document()
    assert headers["content-type"] == "application/json"


def test_a_caller_the_admin_api_refuses_is_served_the_user_document() -> None:
    def refuse(request: Any) -> Any:
        return fail(Problem(404, "no-such-page", "Not Found"))

    code, headers, body = served(refuse, {"Authorization": "Bearer wrong"})
    assert code == 200 and body == user_document()
    assert "Cookie" in headers["vary"] and "Authorization" in headers["vary"]


def test_an_admin_is_served_the_whole_document() -> None:
    code, _, body = served(lambda request: succeed(object()))
    assert code == 200 and body == admin_document()
    assert "adminToken" in body["components"]["securitySchemes"]

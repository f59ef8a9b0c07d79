"""``autonomous demo``: the whole tool, offline, in about a minute, for someone who just installed it.

It builds a sample git project from ``examples/todo-api/spec.md``, starts the scripted
model server (:mod:`autonomous.testing.model_server`) with a scenario that implements
every task of that spec through the real Claude Code CLI's tools (``Read``, ``Write``,
``Bash`` to run the tests), then runs ``autonomous init`` and ``autonomous start`` as a
user would: real CLI, real verification commands, a real commit per task.

Nothing is spent and no account is needed. ``init`` and ``start`` run as child processes
whose environment is built from nothing (:func:`runner_env`): the scripted server's URL,
a dummy API key and a throwaway ``HOME``, so a developer's real credentials
(``ANTHROPIC_API_KEY``, ``CLAUDE_CODE_OAUTH_TOKEN``, Bedrock/Vertex switches) can never
reach the Claude Code CLI and send the demo to a paid endpoint.

The scenario is data built here (:func:`demo_rules`) because its ``Read`` calls need the
project's absolute paths. Rules match the prompt heading (``Task TODO-1.2:``) and later
tasks' rules come first: a later task's prompt quotes earlier tasks' notes, never the
other way round.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from autonomous.errors import AutonomousError, BackendError, ConfigError

__all__ = ["DEMO_API_KEY", "DEMO_TASKS", "demo_rules", "prepare_project", "run_demo", "runner_env"]

# Sent to the scripted server only; it is not a credential and looks nothing like one.
DEMO_API_KEY = "demo-key-for-the-scripted-server"
SDK_HINT = "pip install 'autonomous-runner[sdk]'"
SPEC_NAME = "spec.md"
# Environment the child processes may inherit: how the terminal looks and where Python
# and temporary files live. Nothing here can carry a credential.
_PASSTHROUGH = (
    "TERM",
    "COLORTERM",
    "COLUMNS",
    "LINES",
    "NO_COLOR",
    "FORCE_COLOR",
    "TMPDIR",
    "TEMP",
    "TMP",
    "PYTHONPATH",
)

# -- the sample project's files, as a careful agent would write them --------------------------

GITIGNORE = """\
__pycache__/
.pytest_cache/
*.tmp
todos.json
.ai-agents/state/
.ai-agents/logs/
"""

AGENTS_MD = """\
# Conventions

- Python 3.11+, standard library only at run time; tests use pytest.
- Code in `todo_api/`, tests in `tests/`; every public function has a docstring.
- Run `python -m pytest -q` before reporting a task done.
"""

INIT_PY = '''\
"""A small JSON-over-HTTP todo list service, standard library only."""

__version__ = "0.1.0"
'''

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "todo-api"
version = "0.1.0"
requires-python = ">=3.11"

[project.optional-dependencies]
test = ["pytest>=8"]

[tool.setuptools]
packages = ["todo_api"]

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["."]
"""

TEST_SMOKE = """\
import todo_api


def test_version():
    assert todo_api.__version__ == "0.1.0"
"""

MODEL_PY = '''\
"""The Todo model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

MAX_TITLE = 200


def utc_now() -> str:
    """The current time as ISO 8601 in UTC."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def clean_title(title: object) -> str:
    """The title without surrounding whitespace; ValueError if it is empty or too long."""
    if not isinstance(title, str):
        raise ValueError("title must be a string")
    title = title.strip()
    if not title:
        raise ValueError("title must not be empty")
    if len(title) > MAX_TITLE:
        raise ValueError(f"title must be at most {MAX_TITLE} characters")
    return title


@dataclass
class Todo:
    """One todo item."""

    id: int
    title: str
    done: bool = False
    created_at: str = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        self.title = clean_title(self.title)

    def to_dict(self) -> dict:
        """The todo as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Todo:
        """The todo a dict made by to_dict() describes."""
        return cls(id=int(data["id"]), title=data["title"], done=bool(data["done"]), created_at=data["created_at"])
'''

TEST_MODEL = """\
import pytest

from todo_api.model import Todo


def test_round_trip_and_stripped_title():
    todo = Todo(id=1, title="  Buy milk  ", done=True)
    assert todo.title == "Buy milk"
    assert Todo.from_dict(todo.to_dict()) == todo


@pytest.mark.parametrize("title", ["", "   ", "x" * 201])
def test_invalid_titles_raise(title):
    with pytest.raises(ValueError):
        Todo(id=1, title=title)
"""

STORE_PY = '''\
"""Todos kept in one JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from todo_api.model import Todo, clean_title


class TodoStore:
    """Todos in a JSON file; every write replaces the file atomically."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._todos: dict[int, Todo] = {}
        self._next_id = 1
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = json.loads(self.path.read_text(encoding="utf-8"))
        self._next_id = int(data["next_id"])
        self._todos = {todo.id: todo for todo in map(Todo.from_dict, data["todos"])}

    def _save(self) -> None:
        data = {"next_id": self._next_id, "todos": [todo.to_dict() for todo in self.list()]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(tmp, self.path)

    def add(self, title: str) -> Todo:
        """Create a todo with the next id and return it."""
        todo = Todo(id=self._next_id, title=title)
        self._todos[todo.id] = todo
        self._next_id += 1
        self._save()
        return todo

    def list(self, done: bool | None = None) -> list[Todo]:
        """Todos in id order; only done (or only open) ones when done is given."""
        return [todo for _, todo in sorted(self._todos.items()) if done is None or todo.done == done]

    def get(self, todo_id: int) -> Todo:
        """The todo with this id; KeyError if there is none."""
        return self._todos[todo_id]

    def update(self, todo_id: int, title: str | None = None, done: bool | None = None) -> Todo:
        """Change the title and/or the done flag; KeyError for an unknown id."""
        todo = self._todos[todo_id]
        if title is not None:
            todo.title = clean_title(title)
        if done is not None:
            todo.done = bool(done)
        self._save()
        return todo

    def delete(self, todo_id: int) -> None:
        """Remove a todo; its id is never given out again."""
        del self._todos[todo_id]
        self._save()
'''

TEST_STORE = """\
import pytest

from todo_api.store import TodoStore


def test_ids_increase_and_are_never_reused(tmp_path):
    store = TodoStore(tmp_path / "todos.json")
    assert [store.add("a").id, store.add("b").id] == [1, 2]
    store.delete(2)
    assert TodoStore(tmp_path / "todos.json").add("c").id == 3


def test_missing_file_is_empty_until_the_first_write(tmp_path):
    path = tmp_path / "todos.json"
    store = TodoStore(path)
    assert store.list() == [] and not path.exists()
    store.add("first")
    assert [todo.title for todo in TodoStore(path).list()] == ["first"]
    assert [p.name for p in tmp_path.iterdir()] == ["todos.json"]


def test_update_and_filter(tmp_path):
    store = TodoStore(tmp_path / "todos.json")
    todo = store.add("write tests")
    store.update(todo.id, done=True)
    assert store.list(done=True) == [store.get(todo.id)]
    assert store.list(done=False) == []


@pytest.mark.parametrize("method", ["get", "update", "delete"])
def test_unknown_id_raises_key_error(tmp_path, method):
    with pytest.raises(KeyError):
        getattr(TodoStore(tmp_path / "todos.json"), method)(42)
"""

STORE_ERROR_CLASS = '''\
class StoreError(Exception):
    """The store file is damaged: not JSON, or not the store's shape."""


class TodoStore:
'''

STORE_LOAD_CHECKED = """\
    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._next_id = int(data["next_id"])
            self._todos = {todo.id: todo for todo in map(Todo.from_dict, data["todos"])}
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{self.path}: not a todo store file ({exc!r})") from None
"""

TEST_STORE_DAMAGED = """\
import pytest

from todo_api.store import StoreError, TodoStore


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"todos": 3}', '{"next_id": 2, "todos": [{"id": 1}]}'])
def test_damaged_file_raises_store_error_and_is_left_alone(tmp_path, content):
    path = tmp_path / "todos.json"
    path.write_text(content)
    with pytest.raises(StoreError, match="todos.json"):
        TodoStore(path)
    assert path.read_text() == content
"""

SERVER_PY = '''\
"""The HTTP API: JSON over http.server, backed by a TodoStore."""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from todo_api.model import Todo
from todo_api.store import TodoStore

ITEM_PATH = re.compile(r"/todos/(\\d+)")


class ApiError(Exception):
    """An error answered with an HTTP status and the JSON body {"error": message}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TodoHandler(BaseHTTPRequestHandler):
    """Routes /todos and /todos/{id} to the store; every answer is JSON."""

    store: TodoStore
    list_routes = {"GET": "list_todos"}
    item_routes = {"GET": "get_todo"}

    def log_message(self, format: str, *args: object) -> None:
        """No access log: keep the terminal quiet."""

    def send_json(self, status: int, payload: object = None, headers: dict[str, str] | None = None) -> None:
        """Answer with a JSON body (no body when payload is None)."""
        body = b"" if payload is None else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def route(self) -> None:
        """Call the handler for this method and path; an ApiError becomes a JSON answer."""
        url = urlsplit(self.path)
        item = ITEM_PATH.fullmatch(url.path)
        try:
            if url.path == "/todos" and self.command in self.list_routes:
                getattr(self, self.list_routes[self.command])(parse_qs(url.query, keep_blank_values=True))
            elif item and self.command in self.item_routes:
                getattr(self, self.item_routes[self.command])(int(item.group(1)))
            else:
                raise ApiError(404, "not found")
        except ApiError as exc:
            self.send_json(exc.status, {"error": str(exc)})

    do_GET = do_POST = do_PATCH = do_DELETE = route

    def find(self, todo_id: int) -> Todo:
        """The todo with this id, or a 404."""
        try:
            return self.store.get(todo_id)
        except KeyError:
            raise ApiError(404, "not found") from None

    def list_todos(self, query: dict[str, list[str]]) -> None:
        """GET /todos: every todo in id order."""
        self.send_json(200, [todo.to_dict() for todo in self.store.list()])

    def get_todo(self, todo_id: int) -> None:
        """GET /todos/{id}."""
        self.send_json(200, self.find(todo_id).to_dict())


def make_server(store: TodoStore, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for the store on host:port (port 0: a free one); call serve_forever()."""
    handler = type("BoundTodoHandler", (TodoHandler,), {"store": store})
    return ThreadingHTTPServer((host, port), handler)
'''

TEST_SERVER = """\
import json
import threading
import urllib.error
import urllib.request

import pytest

from todo_api.server import make_server
from todo_api.store import TodoStore


@pytest.fixture
def api(tmp_path):
    store = TodoStore(tmp_path / "todos.json")
    server = make_server(store)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", store
    server.shutdown()
    server.server_close()
    thread.join()


def call(url, method="GET", body=None):
    \"\"\"(status, headers, decoded JSON body or None) of one request.\"\"\"
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request) as response:
            raw = response.read()
            return response.status, response.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        with error:
            raw = error.read()
            return error.code, error.headers, json.loads(raw) if raw else None


def test_list_in_id_order(api):
    base, store = api
    store.add("first")
    store.add("second")
    status, headers, body = call(base + "/todos")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert [todo["id"] for todo in body] == [1, 2]


def test_get_one_or_404(api):
    base, store = api
    store.add("only")
    assert call(base + "/todos/1")[2]["title"] == "only"
    status, _, body = call(base + "/todos/9")
    assert (status, body) == (404, {"error": "not found"})


def test_unknown_path_is_a_json_404(api):
    base, _ = api
    status, _, body = call(base + "/nothing")
    assert status == 404 and body["error"]
"""

SERVER_CREATE = '''
    def read_json(self) -> dict:
        """The request body as a JSON object, or a 400."""
        length = int(self.headers.get("Content-Length") or 0)
        try:
            data = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            raise ApiError(400, "invalid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "expected a JSON object")
        return data

    def create_todo(self, query: dict[str, list[str]]) -> None:
        """POST /todos {"title": ...}: 201, the new todo and its Location."""
        data = self.read_json()
        if "title" not in data:
            raise ApiError(400, "missing title")
        try:
            todo = self.store.add(data["title"])
        except ValueError as exc:
            raise ApiError(400, f"invalid title: {exc}") from None
        self.send_json(201, todo.to_dict(), {"Location": f"/todos/{todo.id}"})
'''

TEST_SERVER_CREATE = """

def test_post_creates_201_with_location(api):
    base, _ = api
    status, headers, body = call(base + "/todos", "POST", {"title": " Buy milk "})
    assert status == 201 and body["title"] == "Buy milk"
    assert headers["Location"] == f"/todos/{body['id']}"


@pytest.mark.parametrize("payload", [b"{not json", {}, {"title": "  "}, {"title": 5}])
def test_post_rejects_bad_bodies(api, payload):
    base, _ = api
    status, _, body = call(base + "/todos", "POST", payload)
    assert status == 400 and body["error"]
"""

SERVER_UPDATE = '''
    def update_todo(self, todo_id: int) -> None:
        """PATCH /todos/{id} with title and/or done: 200 and the updated todo."""
        self.find(todo_id)
        data = self.read_json()
        if not {"title", "done"} & data.keys():
            raise ApiError(400, "nothing to update: give title and/or done")
        done = data.get("done")
        if done is not None and not isinstance(done, bool):
            raise ApiError(400, "done must be true or false")
        try:
            todo = self.store.update(todo_id, title=data.get("title"), done=done)
        except ValueError as exc:
            raise ApiError(400, f"invalid title: {exc}") from None
        self.send_json(200, todo.to_dict())

    def delete_todo(self, todo_id: int) -> None:
        """DELETE /todos/{id}: 204 and no body."""
        self.find(todo_id)
        self.store.delete(todo_id)
        self.send_json(204)
'''

TEST_SERVER_UPDATE = """

def test_patch_updates_title_and_done(api):
    base, store = api
    store.add("draft")
    status, _, body = call(base + "/todos/1", "PATCH", {"title": "final", "done": True})
    assert status == 200 and (body["title"], body["done"]) == ("final", True)


def test_patch_unknown_or_invalid(api):
    base, store = api
    store.add("x")
    assert call(base + "/todos/7", "PATCH", {"done": True})[0] == 404
    assert call(base + "/todos/1", "PATCH", {"done": "yes"})[0] == 400
    assert call(base + "/todos/1", "PATCH", b"{oops")[0] == 400


def test_delete_is_204_then_404(api):
    base, store = api
    store.add("gone soon")
    status, _, body = call(base + "/todos/1", "DELETE")
    assert (status, body) == (204, None)
    assert call(base + "/todos/1", "DELETE")[0] == 404
"""

LIST_PLAIN = '''\
    def list_todos(self, query: dict[str, list[str]]) -> None:
        """GET /todos: every todo in id order."""
        self.send_json(200, [todo.to_dict() for todo in self.store.list()])
'''

LIST_FILTERED = '''\
    def list_todos(self, query: dict[str, list[str]]) -> None:
        """GET /todos[?done=true|false]: todos in id order, optionally by state."""
        done = None
        if "done" in query:
            value = query["done"][-1]
            if value not in ("true", "false"):
                raise ApiError(400, "done must be true or false")
            done = value == "true"
        self.send_json(200, [todo.to_dict() for todo in self.store.list(done=done)])
'''

TEST_SERVER_FILTER = """

def test_filter_by_done(api):
    base, store = api
    store.add("open")
    store.update(store.add("closed").id, done=True)
    assert [todo["title"] for todo in call(base + "/todos?done=true")[2]] == ["closed"]
    assert [todo["title"] for todo in call(base + "/todos?done=false")[2]] == ["open"]
    assert call(base + "/todos?done=maybe")[0] == 400
"""

MAIN_PY = '''\
"""python -m todo_api serve [--port 8000] [--data todos.json]"""

from __future__ import annotations

import argparse
import sys

from todo_api.server import make_server
from todo_api.store import StoreError, TodoStore


def main(argv: list[str] | None = None) -> int:
    """Serve the API until Ctrl-C, then exit 0."""
    parser = argparse.ArgumentParser(prog="python -m todo_api")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve.add_argument("--data", default="todos.json", help="the JSON file the todos live in")
    args = parser.parse_args(argv)
    try:
        store = TodoStore(args.data)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = make_server(store, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"Serving on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

TEST_CLI = """\
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_serve_on_a_free_port_until_ctrl_c(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "todo_api", "serve", "--port", "0", "--data", str(tmp_path / "todos.json")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("Serving on http://"), line
        with urllib.request.urlopen(line.split()[-1] + "/todos") as response:
            assert json.load(response) == []
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
        proc.stdout.close()
    assert code == 0
"""

README_MD = """\
# Todo API

A small JSON-over-HTTP todo list service, standard library only. Todos live in one JSON file.

## Install

    python -m pip install -e '.[test]'
    python -m pytest -q

## Serve

    python -m todo_api serve --port 8000 --data todos.json

`--port 0` picks a free port; the first line printed is the URL. Ctrl-C stops the server.

## Endpoints

Every body is JSON; errors are `{"error": "..."}`.

| request | answer |
|---|---|
| `GET /todos` | 200, every todo in id order |
| `GET /todos?done=true` / `?done=false` | 200, only done / open todos; any other value 400 |
| `GET /todos/{id}` | 200 and the todo, or 404 |
| `POST /todos` `{"title": "..."}` | 201, the todo and `Location: /todos/{id}`; 400 for a bad body or title |
| `PATCH /todos/{id}` `{"title": "...", "done": true}` | 200 and the todo; 404 unknown id, 400 bad body |
| `DELETE /todos/{id}` | 204, no body; 404 unknown id |

    curl -i localhost:8000/todos
    curl -i localhost:8000/todos?done=false
    curl -i localhost:8000/todos/1
    curl -i -X POST localhost:8000/todos -d '{"title": "Buy milk"}'
    curl -i -X PATCH localhost:8000/todos/1 -d '{"done": true}'
    curl -i -X DELETE localhost:8000/todos/1

A todo looks like `{"id": 1, "title": "Buy milk", "done": false, "created_at": "2025-01-01T12:00:00+00:00"}`.
"""


def _replace(text: str, old: str, new: str) -> str:
    """``text`` with the one occurrence of ``old`` replaced; the scenario is wrong otherwise."""
    if text.count(old) != 1:
        raise AssertionError(f"demo scenario: expected exactly one {old[:40]!r}")
    return text.replace(old, new)


def _before_make_server(text: str, methods: str) -> str:
    return _replace(text, "\n\n\ndef make_server", methods.rstrip("\n") + "\n\n\ndef make_server")


STORE_PY_CHECKED = _replace(
    _replace(STORE_PY, "class TodoStore:\n", STORE_ERROR_CLASS),
    STORE_PY[STORE_PY.index("    def _load") : STORE_PY.index("    def _save")].rstrip("\n") + "\n",
    STORE_LOAD_CHECKED,
)
SERVER_PY_CREATE = _before_make_server(
    _replace(
        SERVER_PY, 'list_routes = {"GET": "list_todos"}', 'list_routes = {"GET": "list_todos", "POST": "create_todo"}'
    ),
    SERVER_CREATE,
)
SERVER_PY_UPDATE = _before_make_server(
    _replace(
        SERVER_PY_CREATE,
        'item_routes = {"GET": "get_todo"}',
        'item_routes = {"GET": "get_todo", "PATCH": "update_todo", "DELETE": "delete_todo"}',
    ),
    SERVER_UPDATE,
)
SERVER_PY_FILTER = _replace(SERVER_PY_UPDATE, LIST_PLAIN, LIST_FILTERED)
TEST_SERVER_2 = TEST_SERVER + TEST_SERVER_CREATE
TEST_SERVER_3 = TEST_SERVER_2 + TEST_SERVER_UPDATE
TEST_SERVER_4 = TEST_SERVER_3 + TEST_SERVER_FILTER


# -- the scenario -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoTask:
    """What the scripted agent does for one task of the spec."""

    key: str
    intro: str
    summary: str
    writes: Mapping[str, str]
    reads: Sequence[str] = ()  # files changed by this task that an earlier task created
    test_command: str = "python -m pytest -q"
    extra: Mapping[str, Any] = field(default_factory=dict)


DEMO_TASKS: tuple[DemoTask, ...] = (
    DemoTask(
        "TODO-1.1",
        "I'll set up the package, the packaging metadata and a smoke test.",
        "Created the todo_api package (version 0.1.0), pyproject.toml with a test extra, and a smoke test.",
        {"todo_api/__init__.py": INIT_PY, "pyproject.toml": PYPROJECT, "tests/test_smoke.py": TEST_SMOKE},
    ),
    DemoTask(
        "TODO-1.2",
        "I'll add the Todo dataclass with title validation and dict round-tripping.",
        "Added the Todo dataclass with to_dict/from_dict and title validation (stripped, 1-200 characters).",
        {"todo_api/model.py": MODEL_PY, "tests/test_model.py": TEST_MODEL},
        test_command="python -m pytest -q tests/test_model.py",
    ),
    DemoTask(
        "TODO-1.3",
        "I'll add TodoStore, persisting to a JSON file replaced atomically with os.replace.",
        "Added TodoStore (add, list, get, update, delete) over a JSON file written atomically; ids never reused.",
        {"todo_api/store.py": STORE_PY, "tests/test_store.py": TEST_STORE},
        test_command="python -m pytest -q tests/test_store.py",
    ),
    DemoTask(
        "TODO-1.3a",
        "I'll make TodoStore raise StoreError for a damaged file, leaving the file untouched.",
        "TodoStore now raises StoreError naming the path for a file that is not JSON or not the store's shape.",
        {"todo_api/store.py": STORE_PY_CHECKED, "tests/test_store_damaged.py": TEST_STORE_DAMAGED},
        reads=("todo_api/store.py",),
    ),
    DemoTask(
        "TODO-2.1",
        "I'll add the HTTP handler with GET /todos and GET /todos/{id}, plus server tests.",
        "Added todo_api/server.py: GET /todos, GET /todos/{id}, JSON 404s; make_server() for tests.",
        {"todo_api/server.py": SERVER_PY, "tests/test_server.py": TEST_SERVER},
        test_command="python -m pytest -q tests/test_server.py",
    ),
    DemoTask(
        "TODO-2.2",
        "I'll add POST /todos with body validation and a Location header.",
        "Added POST /todos: 201 with Location, 400 for invalid JSON or a missing or invalid title.",
        {"todo_api/server.py": SERVER_PY_CREATE, "tests/test_server.py": TEST_SERVER_2},
        reads=("todo_api/server.py", "tests/test_server.py"),
        test_command="python -m pytest -q tests/test_server.py -k post",
    ),
    DemoTask(
        "TODO-2.3",
        "I'll add PATCH and DELETE for single todos.",
        "Added PATCH /todos/{id} (200) and DELETE /todos/{id} (204), with 404 and 400 answers.",
        {"todo_api/server.py": SERVER_PY_UPDATE, "tests/test_server.py": TEST_SERVER_3},
        reads=("todo_api/server.py", "tests/test_server.py"),
        test_command='python -m pytest -q tests/test_server.py -k "patch or delete"',
    ),
    DemoTask(
        "TODO-2.4",
        "I'll add the done filter to GET /todos.",
        "GET /todos now filters by ?done=true|false and answers 400 for any other value.",
        {"todo_api/server.py": SERVER_PY_FILTER, "tests/test_server.py": TEST_SERVER_4},
        reads=("todo_api/server.py", "tests/test_server.py"),
        test_command="python -m pytest -q tests/test_server.py -k filter",
    ),
    DemoTask(
        "TODO-3.1",
        "I'll add `python -m todo_api serve` and a test that runs it on a free port.",
        "Added python -m todo_api serve (--port, --data; port 0 prints the URL; Ctrl-C exits 0) and its test.",
        {"todo_api/__main__.py": MAIN_PY, "tests/test_cli.py": TEST_CLI},
        test_command="python -m pytest -q tests/test_cli.py",
    ),
    DemoTask(
        "TODO-3.2",
        "I'll write the README with installation, serve and every endpoint.",
        "Wrote README.md: installation, the serve command, and every endpoint with a curl example.",
        {"README.md": README_MD},
    ),
)


def _report(task: DemoTask) -> str:
    report = {"status": "complete", "summary": task.summary, "files_changed": list(task.writes), "blocker": None}
    return f"The tests pass; {task.key} is done.\n\n```json\n{json.dumps(report)}\n```"


def _verdict(task: DemoTask) -> str:
    verdict = {"status": "complete", "verdict": "approve", "summary": f"The diff does what {task.key} asks."}
    return f"I read the diff and the files it touches.\n\n```json\n{json.dumps(verdict)}\n```"


def demo_rules(project: Path, python: str = "python") -> list[Any]:
    """The scenario: for every task, (Read ->) Write -> Bash (tests) -> completion report.

    ``project`` is the demo project's absolute path (the CLI's ``Read`` and ``Edit`` want
    absolute paths); ``python`` is the interpreter name the ``Bash`` calls use. Token usage
    is reported as zero so the CLI computes a cost of $0, which is what the demo costs.
    """
    from autonomous.testing.model_server import Match, Response, Rule

    project = Path(project)
    usage = {"input_tokens": 0, "output_tokens": 0}
    rules: list[Rule] = []
    for task in reversed(DEMO_TASKS):  # later tasks first: their prompts quote earlier tasks' notes
        heading = f"Task {task.key}:"
        turns: list[Response] = []
        if task.reads:
            turns.append(
                Response(
                    text=f"Reading {', '.join(task.reads)} before changing {'them' if len(task.reads) > 1 else 'it'}.",
                    tool_use=[{"name": "Read", "input": {"file_path": str(project / p)}} for p in task.reads],
                    usage=usage,
                )
            )
        turns.append(
            Response(
                text=task.intro,
                tool_use=[
                    {"name": "Write", "input": {"file_path": str(project / path), "content": content}}
                    for path, content in task.writes.items()
                ],
                usage=usage,
            )
        )
        command = task.test_command.replace("python ", f"{python} ", 1)
        turns.append(
            Response(
                text="Running the tests.",
                tool_use=[{"name": "Bash", "input": {"command": command, "description": "Run the tests"}}],
                usage=usage,
            )
        )
        done = Response(text=_report(task), usage=usage)
        for n, response in enumerate(turns, 1):
            rules.append(
                Rule(
                    name=f"{task.key}: turn {n}",
                    match=Match(contains=heading, turn=n, has_tools=True),
                    response=response,
                )
            )
        # The report; also the answer to anything later in the conversation (verification feedback).
        rules.append(Rule(name=f"{task.key}: report", match=Match(contains=heading, has_tools=True), response=done))
    # The independent review (verification.review: true) reads each diff in a fresh
    # session and approves; its prompt never holds an agent's "Task KEY:" heading.
    rules += [
        Rule(
            name=f"{task.key}: review",
            match=Match(contains=f"# Review of task {task.key}:", has_tools=True),
            response=Response(text=_verdict(task), usage=usage),
        )
        for task in reversed(DEMO_TASKS)
    ]
    return rules


# -- the project ------------------------------------------------------------------------------------


def find_spec() -> Path:
    """The sample spec: packaged in the wheel, or ``examples/`` of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (
        here / "examples" / "todo-api" / "spec.md",
        here.parent.parent / "examples" / "todo-api" / "spec.md",
    ):
        if candidate.is_file():
            return candidate
    raise ConfigError("the sample spec examples/todo-api/spec.md is missing from this installation")


def python_command() -> tuple[str, Path]:
    """How the project's shell commands name this interpreter, and the folder to put first on PATH."""
    bin_dir = Path(sys.executable).parent
    for name in ("python", "python.exe"):
        if (bin_dir / name).exists():
            return "python", bin_dir
    return shlex.quote(sys.executable), bin_dir


def config_text(claude_path: Path, python: str) -> str:
    test = f"{python} -m pytest -q"
    return f"""\
# The demo project's configuration (see docs/configuration.md for every key).
# `autonomous demo` runs the agent against its scripted model server: it starts the
# Claude Code CLI below with ANTHROPIC_BASE_URL pointing at the server, a dummy API key
# and a throwaway HOME. Nothing here needs changing for a real model except, if you
# like, deleting claude_path to use the `claude` on your PATH.
state_provider:
  type: file
autonomous:
  backend: claude-code
  model: sonnet
  claude_path: {json.dumps(str(claude_path))}
  max_turns_per_task: 10
  max_tasks_per_session: 20
  cost_limit_per_session: 1.0
  inactivity_timeout: 120
execution:
  on_failure: stop
verification:
  commands:
    - {json.dumps(test)}
  require_changes: true
  review: true   # a fresh read-only session reviews each diff before the task is done
  max_attempts: 2
"""


def _git(project: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ConfigError("git is not installed; the demo needs it for a commit per task") from None
    if proc.returncode != 0:
        raise AutonomousError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def prepare_project(project: Path, claude_path: Path, python: str = "python") -> None:
    """A git repository with the spec, conventions, config and .gitignore, committed."""
    project.mkdir(parents=True, exist_ok=True)
    _git(project, "init", "-q")
    _git(project, "symbolic-ref", "HEAD", "refs/heads/main")
    _git(project, "config", "user.name", "autonomous demo")
    _git(project, "config", "user.email", "demo@example.invalid")
    _git(project, "config", "commit.gpgsign", "false")
    shutil.copyfile(find_spec(), project / SPEC_NAME)
    (project / ".gitignore").write_text(GITIGNORE)
    (project / "AGENTS.md").write_text(AGENTS_MD)
    (project / ".ai-agents").mkdir(exist_ok=True)
    (project / ".ai-agents" / "config.yml").write_text(config_text(claude_path, python))
    _git(project, "add", "--", SPEC_NAME, ".gitignore", "AGENTS.md", ".ai-agents/config.yml")
    _git(project, "commit", "-q", "-m", "Demo project: spec, conventions and autonomous config")


def runner_env(server_url: str, home: Path, path_first: Path | None = None) -> dict[str, str]:
    """The environment of ``init`` and ``start``: built from nothing, never from ``os.environ``.

    :func:`~autonomous.testing.cli_env.claude_cli_env` (server URL, dummy key, throwaway
    HOME, no telemetry) plus how the terminal looks; the interpreter's folder goes first
    on PATH so ``python -m pytest`` means this Python.
    """
    from autonomous.testing.cli_env import claude_cli_env

    env = claude_cli_env(server_url, home, api_key=DEMO_API_KEY)
    for name in _PASSTHROUGH:
        if os.environ.get(name):
            env[name] = os.environ[name]
    if path_first is not None:
        env["PATH"] = os.pathsep.join([str(path_first), env["PATH"]])
    return env


def _check_directory(directory: Path | None) -> Path:
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="autonomous-demo-"))
    directory = Path(directory).expanduser()
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        raise ConfigError(f"{directory}: the directory is not empty; give a new or empty directory")
    return directory


def _check_requirements() -> Path:
    from autonomous.testing.cli_env import bundled_claude_path

    if importlib.util.find_spec("claude_agent_sdk") is None:
        raise BackendError(f"the demo runs the Claude Code CLI bundled with claude-agent-sdk: {SDK_HINT}")
    claude = bundled_claude_path()
    if claude is None:
        raise BackendError(f"claude-agent-sdk is installed without its bundled Claude Code CLI: {SDK_HINT}")
    if importlib.util.find_spec("pytest") is None:
        raise ConfigError("the demo's sample project is tested with pytest: pip install pytest")
    if shutil.which("git") is None:
        raise ConfigError("git is not installed; the demo needs it for a commit per task")
    return claude


def _run_step(args: Sequence[str], project: Path, env: Mapping[str, str], say: Callable[[str], None]) -> int:
    say(f"\n$ autonomous {' '.join(args)}")
    proc = subprocess.Popen([sys.executable, "-m", "autonomous", *args], cwd=project, env=dict(env))
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the child got the same Ctrl-C: let it stop cleanly and save
        return proc.wait()


def _summary(project: Path) -> tuple[list[Any], list[str]]:
    from autonomous.config import load_config
    from autonomous.providers import get_provider
    from autonomous.scheduler import order

    config = load_config(project / ".ai-agents" / "config.yml")
    with get_provider(config) as provider:
        tasks = [t for t in order(provider.list_tasks()) if not t.key.startswith("META")]
    commits = _git(project, "log", "--oneline").splitlines()
    return tasks, commits


def run_demo(directory: Path | None = None, *, out: TextIO | None = None) -> int:
    """``autonomous demo [DIR]``; returns the exit code (0: every task done)."""
    from autonomous.testing.model_server import Response, Scenario, ScriptedModelServer

    stream = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    claude = _check_requirements()
    project = _check_directory(directory).resolve()
    python, bin_dir = python_command()
    started = time.monotonic()
    prepare_project(project, claude, python)
    scenario = Scenario(
        demo_rules(project, python),
        default=Response(text="The demo scenario has no scripted answer for this request."),
    )
    say(f"autonomous demo: a sample project in {project}")
    say(f"  spec.md                 the todo-api example spec ({len(DEMO_TASKS)} tasks in 3 phases)")
    say(f"  .ai-agents/config.yml   backend claude-code, verification `{python} -m pytest -q`, a commit per task")
    say(f"  Claude Code CLI         {claude}")
    with tempfile.TemporaryDirectory(prefix="autonomous-demo-home-") as home, ScriptedModelServer(scenario) as server:
        say(f"  model                   the scripted model server at {server.url} (no account, no cost)")
        env = runner_env(server.url, Path(home), bin_dir)
        code = _run_step(["init", "--spec", SPEC_NAME], project, env, say)
        if code != 0:
            say(f"autonomous demo: init failed (exit {code})")
            return code
        _git(project, "add", "--", ".project_state.json")
        _git(project, "commit", "-q", "-m", "autonomous init: tasks from spec.md")
        code = _run_step(["start"], project, env, say)
        requests = len(server.message_requests())
        unanswered = sum(1 for r in server.message_requests() if r.rule is None)
    elapsed = time.monotonic() - started
    tasks, commits = _summary(project)
    done = [t for t in tasks if t.status.value == "done"]
    say("")
    say(f"Summary: {len(done)} of {len(tasks)} tasks done in {elapsed:.0f} s, {requests} model requests, $0.00 spent.")
    for t in tasks:
        say(f"  {t.status.value:<11} {t.key:<10} {t.title}")
    if unanswered:
        say(f"  ({unanswered} request(s) got the scenario's default answer)")
    say("")
    say(f"Commits (git log --oneline in {project}):")
    for line in commits:
        say(f"  {line}")
    say("")
    say(f"The project is in {project}:")
    say("  todo_api/   the code the agent wrote     tests/   its tests (`python -m pytest -q`)")
    say("  .ai-agents/logs/   autonomous.log and events.jsonl (`autonomous logs`, `autonomous status`)")
    say(f"  look around: cd {project} && autonomous tasks && autonomous tasks show TODO-1.3")
    say("")
    say("To use a real model in your own project:")
    say("  1. Leave out the demo's model-server settings: the demo started the CLI with ANTHROPIC_BASE_URL")
    say("     pointing at its scripted server and a dummy ANTHROPIC_API_KEY; do not set these, and drop")
    say("     autonomous.claude_path to use the `claude` on your PATH (or keep it: it is the real CLI).")
    say("  2. Sign in: `claude login` (Claude subscription), or export ANTHROPIC_API_KEY=<your key>.")
    say("  3. autonomous init --spec your-spec.md")
    say("  4. autonomous start        (and `autonomous status` in another terminal)")
    if code != 0:
        return code
    return 0 if len(done) == len(tasks) and tasks else 1

"""The HTTP API: JSON over http.server, backed by a TodoStore."""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from todo_api.model import Todo
from todo_api.store import TodoStore

ITEM_PATH = re.compile(r"/todos/(\d+)")


class ApiError(Exception):
    """An error answered with an HTTP status and the JSON body {"error": message}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TodoHandler(BaseHTTPRequestHandler):
    """Routes /todos and /todos/{id} to the store; every answer is JSON."""

    store: TodoStore
    list_routes = {"GET": "list_todos", "POST": "create_todo"}
    item_routes = {"GET": "get_todo", "PATCH": "update_todo", "DELETE": "delete_todo"}

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


def make_server(store: TodoStore, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for the store on host:port (port 0: a free one); call serve_forever()."""
    handler = type("BoundTodoHandler", (TodoHandler,), {"store": store})
    return ThreadingHTTPServer((host, port), handler)

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
    """(status, headers, decoded JSON body or None) of one request."""
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


def test_filter_by_done(api):
    base, store = api
    store.add("open")
    store.update(store.add("closed").id, done=True)
    assert [todo["title"] for todo in call(base + "/todos?done=true")[2]] == ["closed"]
    assert [todo["title"] for todo in call(base + "/todos?done=false")[2]] == ["open"]
    assert call(base + "/todos?done=maybe")[0] == 400

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

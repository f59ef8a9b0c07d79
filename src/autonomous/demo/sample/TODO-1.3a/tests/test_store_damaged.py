import pytest

from todo_api.store import StoreError, TodoStore


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"todos": 3}', '{"next_id": 2, "todos": [{"id": 1}]}'])
def test_damaged_file_raises_store_error_and_is_left_alone(tmp_path, content):
    path = tmp_path / "todos.json"
    path.write_text(content)
    with pytest.raises(StoreError, match="todos.json"):
        TodoStore(path)
    assert path.read_text() == content

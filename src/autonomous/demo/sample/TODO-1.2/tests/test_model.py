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

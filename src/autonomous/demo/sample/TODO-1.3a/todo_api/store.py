"""Todos kept in one JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from todo_api.model import Todo, clean_title


class StoreError(Exception):
    """The store file is damaged: not JSON, or not the store's shape."""


class TodoStore:
    """Todos in a JSON file; every write replaces the file atomically."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._todos: dict[int, Todo] = {}
        self._next_id = 1
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._next_id = int(data["next_id"])
            self._todos = {todo.id: todo for todo in map(Todo.from_dict, data["todos"])}
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{self.path}: not a todo store file ({exc!r})") from None

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

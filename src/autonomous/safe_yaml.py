"""The tool's one YAML loader: safe, and bounded, for every YAML file it reads.

PyYAML's safe loader still accepts what a configuration never needs and what a fuzzer
turns into a traceback or a hang. This loader, on top of it:

* **No tags.** A value whose tag was written in the file (``!!int "zz"``,
  ``!!timestamp 2001-13-99``, ``!!binary``, ``!!set``, ``!!python/object``, ``!custom``)
  is refused, as is a value the file's own tag gives another type than its text would
  (``!!str 5``): the tool's files are plain data. Dates stay strings (no implicit
  timestamps), so ``2001-13-99`` can never be a bad date.
* **Bounded aliases.** Anchors and aliases are allowed (``<<: *defaults`` is handy), but
  the document, with every alias expanded, may have at most ``max_nodes`` nodes and
  ``max_depth`` levels: a 342-byte "billion laughs" is refused in microseconds instead
  of taking gigabytes, and a self-referencing alias (``&c [*c]``) is refused instead of
  recursing forever. The check walks the parsed node graph (shared nodes once) before
  anything is built.
* **Bounded size.** A text over ``max_bytes`` is refused before parsing.
* **Clear errors.** A value the safe constructors cannot build (an integer of 5,000
  digits) and a key given twice are :class:`yaml.MarkedYAMLError` s naming the line and
  column, like every syntax error; callers turn them into their one-line message.

Integers are Python integers; one written with more than ``INT_DIGITS`` digits is an
:class:`OutOfRangeInt` (its text), never converted. Each caller range-checks the values it
uses (``autonomous.config`` names the key of one out of range).
"""

from __future__ import annotations

import typing
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64

_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_DEFAULT_TAGS = {SequenceNode: "tag:yaml.org,2002:seq", MappingNode: "tag:yaml.org,2002:map"}


class SafeLoader(_Base):  # type: ignore[misc, valid-type]
    """Safe loading with the rules of the module docstring (use :func:`load`)."""

    # every implicit resolver of the safe loader but the timestamp: dates stay strings
    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }
    max_nodes = MAX_NODES
    max_depth = MAX_DEPTH

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        self._check_graph(node)
        return self.construct_document(node)

    def _check_graph(self, root: Node) -> None:
        """Refuse tags, recursive aliases, and documents too big or deep once expanded."""
        sizes: dict[int, int] = {}  # id(node) -> nodes in its expansion
        path: set[int] = set()  # the nodes being expanded (an alias to one is a cycle)
        stack: list[tuple[Node, int, bool]] = [(root, 0, False)]
        while stack:
            node, depth, finished = stack.pop()
            ident = id(node)
            children = _children(node)
            if finished:
                path.discard(ident)
                size = 1 + sum(sizes[id(child)] for child in children)
                if size > self.max_nodes:
                    raise _error(node, f"too many values once aliases are expanded (over {self.max_nodes:,})")
                sizes[ident] = size
                continue
            if ident in sizes:
                continue
            if depth > self.max_depth:
                raise _error(node, f"nested more than {self.max_depth} levels deep")
            self._check_tag(node)
            path.add(ident)
            stack.append((node, depth, True))
            for child in children:
                if id(child) in path:
                    raise _error(child, "an alias refers to a value that contains it (a recursive alias)")
                if id(child) not in sizes:
                    stack.append((child, depth + 1, False))

    def _check_tag(self, node: Node) -> None:
        if isinstance(node, ScalarNode):
            plain = not node.style  # None (pure Python parser) or "" (libyaml) for a plain scalar
            expected = self.resolve(ScalarNode, node.value, (plain, not plain))
        else:
            expected = _DEFAULT_TAGS[type(node)]
        if node.tag != expected:
            raise _error(node, f"tags are not allowed (found {_short(node.tag)}); write the value plainly")

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
            shown = node.value if isinstance(node, ScalarNode) else node.tag
            if isinstance(shown, str) and len(shown) > 40:
                shown = f"{shown[:30]}... ({len(shown)} characters)"
            raise _error(node, f"cannot read the value {shown!r} ({' '.join(str(exc).split())[:120]})") from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A key given twice is an error (YAML keeps the last silently, so a second
        ``autonomous:`` section would drop the first without a word)."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key]})", key_node.start_mark
                )
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


class OutOfRangeInt:
    """An integer written with more than ``INT_DIGITS`` digits: kept as its text rather
    than converted (Python refuses to convert 4,300 digits, and slowly), so the caller
    can say which key holds it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.digits = sum(ch.isdigit() for ch in text)

    def __repr__(self) -> str:
        return f"<integer of {self.digits} digits>"


INT_DIGITS = 100


def _construct_int(loader: SafeLoader, node: ScalarNode) -> Any:
    text = loader.construct_scalar(node)
    if len(text) > INT_DIGITS:
        return OutOfRangeInt(text)
    return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)


SafeLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _short(tag: str) -> str:
    return "!!" + tag.rsplit(":", 1)[-1] if tag.startswith("tag:yaml.org,2002:") else tag


def _error(node: Node, problem: str) -> ConstructorError:
    return ConstructorError(None, None, problem, node.start_mark)


def load(text: str, *, max_bytes: int = MAX_BYTES) -> Any:
    """The data of a YAML text under this module's rules; :class:`yaml.YAMLError` (marked
    with line and column where there is one) for anything it refuses."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise yaml.YAMLError(f"too large ({size:,} bytes; the limit is {max_bytes:,})")
    return yaml.load(text, Loader=SafeLoader)

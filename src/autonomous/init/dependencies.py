"""Dependencies as a spec writes them, pointed at real keys: a full key, a bare number
when the prefix is unambiguous, any case. What names nothing, names the task itself or
closes a cycle (the ordering's implicit edges included) is dropped with a warning, since
such a task could never start. Shared by every format and by model decomposition.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from autonomous.init.common import SpecTask
from autonomous.tasks import TitleKind, parse_title


def resolve_dependencies(
    tasks: Sequence[SpecTask], known_keys: Iterable[str] = (), ordering: str = "strict"
) -> list[str]:
    """Point every dependency at a real key, in place; return warnings for what was dropped.

    A dependency may be written as a full key (``AUTH-1.1``), a bare number when the
    prefix is unambiguous (``1.1``) or in a different case. One that names nothing, names
    the task itself, or closes a cycle is dropped with a warning: such a task could never
    start. Under the ``strict`` and ``phases`` orderings a dependency on a task that the
    ordering already puts *after* this one is a cycle too (the scheduler would deadlock),
    so it is dropped the same way.
    """
    warnings: list[str] = []
    spec_keys = [t.key for t in tasks]
    all_keys = list(dict.fromkeys([*spec_keys, *known_keys]))
    exact = set(all_keys)
    lower = {}
    for k in all_keys:
        lower.setdefault(k.lower(), []).append(k)
    suffix: dict[str, list[str]] = {}
    for k in all_keys:
        if "-" in k:
            suffix.setdefault(k.rsplit("-", 1)[1].lower(), []).append(k)

    def resolve(dep: str) -> str | None:
        if dep in exact:
            return dep
        hits = lower.get(dep.lower(), [])
        if len(hits) == 1:
            return hits[0]
        hits = suffix.get(dep.lower(), [])
        if len(hits) == 1:
            return hits[0]
        return None

    for t in tasks:
        resolved: list[str] = []
        for dep in t.task.dependencies:
            key = resolve(dep)
            if key is None:
                warnings.append(f"{t.key}: dependency {dep!r} names no task; dropped")
            elif key == t.key:
                warnings.append(f"{t.key}: depends on itself; dropped")
            elif key not in resolved:
                resolved.append(key)
        t.task.dependencies = resolved
    warnings += _break_cycles(tasks, ordering)
    return warnings


def _break_cycles(tasks: Sequence[SpecTask], ordering: str) -> list[str]:
    """Drop explicit dependencies that close a cycle, counting the ordering's implicit
    edges (each phased task waits for the one before it under ``strict``; for every task
    of the previous phase under ``phases``)."""
    warnings: list[str] = []
    by_key = {t.key: t for t in tasks}
    implicit: dict[str, list[str]] = {k: [] for k in by_key}
    if ordering in ("strict", "phases"):
        phased = []
        for i, t in enumerate(tasks):
            tk = parse_title(t.task.title)
            if tk.kind is TitleKind.PHASED:
                phased.append((tk.position, t.task.priority.rank, i, t.key, tk.phase or 0))
        phased.sort()
        if ordering == "strict":
            for before, after in itertools.pairwise(phased):
                implicit[after[3]].append(before[3])
        else:
            groups: dict[int, list[str]] = {}
            for entry in phased:
                groups.setdefault(entry[4], []).append(entry[3])
            previous: str | None = None
            for phase, members in groups.items():
                gate = f"\0phase-{phase}"
                implicit[gate] = list(members)
                if previous is not None:
                    for m in members:
                        implicit[m].append(previous)
                previous = gate

    def edges(node: str) -> list[tuple[str, bool]]:
        out = [(d, False) for d in implicit.get(node, ())]
        t = by_key.get(node)
        if t is not None:
            out += [(d, True) for d in t.task.dependencies if d in by_key]
        return out

    while True:
        cycle = _find_cycle(list(implicit), edges)
        if cycle is None:
            return warnings
        # drop the last explicit edge of the cycle (there is one: implicit edges are acyclic)
        for src, dst, explicit in reversed(cycle):
            if explicit:
                by_key[src].task.dependencies.remove(dst)
                names = [e[0] for e in cycle if not e[0].startswith("\0")] + [cycle[0][0]]
                under = "" if ordering == "dependencies" else f" under {ordering} ordering"
                warnings.append(
                    f"{src}: dependency on {dst} would never be satisfied (cycle {' -> '.join(names)}{under}); dropped"
                )
                break
        else:  # pragma: no cover - implicit edges alone never form a cycle
            return warnings


def _find_cycle(nodes: list[str], edges) -> list[tuple[str, str, bool]] | None:
    """One cycle as a list of (src, dst, explicit) edges, or None. Iterative DFS."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(nodes, WHITE)
    for root in nodes:
        if colour[root] != WHITE:
            continue
        colour[root] = GREY
        stack: list[tuple[str, list[tuple[str, bool]], int]] = [(root, edges(root), 0)]
        path_edges: list[tuple[str, str, bool]] = []
        while stack:
            node, out, i = stack[-1]
            if i < len(out):
                stack[-1] = (node, out, i + 1)
                nxt, explicit = out[i]
                if nxt not in colour:
                    continue
                if colour[nxt] == GREY:
                    cycle = [*path_edges, (node, nxt, explicit)]
                    start = next(j for j, e in enumerate(cycle) if e[0] == nxt)
                    return cycle[start:]
                if colour[nxt] == WHITE:
                    colour[nxt] = GREY
                    path_edges.append((node, nxt, explicit))
                    stack.append((nxt, edges(nxt), 0))
            else:
                colour[node] = BLACK
                stack.pop()
                if path_edges:
                    path_edges.pop()
    return None

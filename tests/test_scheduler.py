from datetime import timedelta

import pytest

from autonomous import scheduler
from autonomous.errors import DependencyCycle
from autonomous.tasks import Claim, Priority, Task, TaskStatus, TitleKind, derive_key, parse_title, utcnow

NOW = utcnow()


def make(title: str, priority: str = "normal", status: str = "todo", deps=(), tid=None, **kw) -> Task:
    key = derive_key(title)
    return Task(
        id=tid or key,
        key=key,
        title=title,
        priority=Priority(priority),
        status=TaskStatus(status),
        dependencies=list(deps),
        **kw,
    )


def keys(tasks):
    return [t.key for t in tasks]


# -- title patterns -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "kind", "key", "phase", "number", "letter"),
    [
        ("META: Authentication Project", TitleKind.META, "META", None, None, ""),
        ("meta: lower case", TitleKind.META, "META", None, None, ""),
        ("[AUTH-1.2] Implement login", TitleKind.PHASED, "AUTH-1.2", 1, 2, ""),
        ("[AUTH-1.2a] Split part", TitleKind.PHASED, "AUTH-1.2a", 1, 2, "a"),
        ("[DB_CORE-10.11] Big numbers", TitleKind.PHASED, "DB_CORE-10.11", 10, 11, ""),
        ("1.2: Setup database", TitleKind.PHASED, "1.2", 1, 2, ""),
        ("3.4b: Lettered", TitleKind.PHASED, "3.4b", 3, 4, "b"),
        ("Phase 2.1 - Add tests", TitleKind.PHASED, "2.1", 2, 1, ""),
        ("Task 1.5 API endpoints", TitleKind.PHASED, "1.5", 1, 5, ""),
        ("ARK-123", TitleKind.TRACKER, "ARK-123", None, 123, ""),
        ("ARK-9 Fix the thing", TitleKind.TRACKER, "ARK-9", None, 9, ""),
        ("Fix bug in login", TitleKind.OTHER, None, None, None, ""),
        ("Version 1.2: not at start", TitleKind.OTHER, None, None, None, ""),
    ],
)
def test_title_patterns(title, kind, key, phase, number, letter):
    tk = parse_title(title)
    assert (tk.kind, tk.key, tk.phase, tk.number, tk.letter) == (kind, key, phase, number, letter)


def test_derive_key_falls_back_to_slug():
    assert derive_key("[AUTH-1.2] Implement login") == "AUTH-1.2"
    assert derive_key("Fix bug in login!") == "fix-bug-in-login"
    assert derive_key("META: Something") == "META"


# -- the documented example -----------------------------------------------------------


def documented_example():
    return [
        make("[AUTH-2.1] Add password reset", "high"),
        make("[AUTH-1.3] Validate login form", "normal"),
        make("[AUTH-1.1] Create login endpoint", "high"),
        make("META: Authentication Project", "low"),
        make("[AUTH-1.2] Add session handling", "high"),
    ]


def test_documented_order():
    assert keys(scheduler.order(documented_example())) == ["META", "AUTH-1.1", "AUTH-1.2", "AUTH-1.3", "AUTH-2.1"]


def test_meta_is_listed_but_never_handed_out():
    tasks = [make("META: Project")]
    assert scheduler.next_ready(tasks, NOW) is None
    assert scheduler.plan(tasks, NOW) == []


def test_next_ready_is_first_in_phase_order():
    assert scheduler.next_ready(documented_example(), NOW).key == "AUTH-1.1"


def test_documented_waiting_explanation():
    tasks = documented_example()
    by_key = {t.key: t for t in tasks}
    by_key["AUTH-1.1"].status = TaskStatus.DONE
    by_key["AUTH-1.2"].status = TaskStatus.IN_PROGRESS
    by_key["AUTH-1.2"].claim = Claim("w1", NOW + timedelta(minutes=5), 1)
    decisions = {d.task.key: d for d in scheduler.plan(tasks, NOW)}
    assert scheduler.next_ready(tasks, NOW) is None
    assert decisions["AUTH-1.3"].explain() == "Skipping AUTH-1.3 - blocked by: AUTH-1.2 (in_progress)"
    assert decisions["AUTH-2.1"].explain() == "Skipping AUTH-2.1 - blocked by: AUTH-1.2 (in_progress), AUTH-1.3 (todo)"
    assert "claimed by w1" in decisions["AUTH-1.2"].explain()


def test_priority_breaks_ties_within_same_position_and_for_untitled():
    tasks = [
        make("[A-1.1] low one", "low", tid="a"),
        make("[B-1.1] urgent one", "urgent", tid="b"),
        make("Untitled normal", "normal"),
        make("Untitled urgent", "urgent"),
        make("ARK-20 later"),
        make("ARK-3 earlier"),
    ]
    assert [t.id for t in scheduler.order(tasks)] == [
        "b",
        "a",
        "ARK-3",
        "ARK-20",
        "untitled-urgent",
        "untitled-normal",
    ]


def test_letter_suffix_orders_between_numbers():
    tasks = [make("[X-1.3] c"), make("[X-1.2a] b"), make("[X-1.2] a"), make("[X-1.10] d")]
    assert keys(scheduler.order(tasks)) == ["X-1.2", "X-1.2a", "X-1.3", "X-1.10"]


def test_phase_gates_and_canceled_counts_as_satisfied():
    tasks = [make("[P-1.1] a", status="canceled"), make("[P-1.2] b", status="done"), make("[P-2.1] c")]
    assert scheduler.next_ready(tasks, NOW).key == "P-2.1"


def test_blocked_task_holds_back_later_tasks_under_strict():
    tasks = [make("[P-1.1] a", status="blocked"), make("[P-1.2] b")]
    decisions = scheduler.plan(tasks, NOW)
    assert decisions[0].explain().startswith("Skipping P-1.1 - blocked")
    assert decisions[1].explain() == "Skipping P-1.2 - blocked by: P-1.1 (blocked)"
    assert scheduler.next_ready(tasks, NOW) is None


def test_explicit_dependencies_block_untitled_tasks():
    a = make("Write the parser", tid="a")
    b = make("Write the printer", deps=["a"], tid="b")
    assert scheduler.next_ready([b, a], NOW).id == "a"
    decision = next(d for d in scheduler.plan([a, b], NOW) if d.task.id == "b")
    assert decision.explain() == "Skipping write-the-printer - blocked by: write-the-parser (todo)"
    a.status = TaskStatus.DONE
    assert scheduler.next_ready([a, b], NOW).id == "b"


def test_missing_dependency_waits_and_says_so():
    t = make("Do it", deps=["ghost"])
    (decision,) = scheduler.plan([t], NOW)
    assert not decision.ready
    assert decision.explain() == "Skipping do-it - blocked by: ghost (missing)"


def test_expired_lease_is_ready_again_live_lease_is_not():
    t = make("[P-1.1] a", status="in_progress")
    t.claim = Claim("w1", NOW - timedelta(seconds=1), 3)
    assert scheduler.next_ready([t], NOW).key == "P-1.1"
    t.claim = Claim("w1", NOW + timedelta(seconds=60), 3)
    assert scheduler.next_ready([t], NOW) is None


def test_in_progress_without_claim_is_not_taken():
    assert scheduler.next_ready([make("Manual work", status="in_progress")], NOW) is None


def test_ordering_policies():
    tasks = [make("[P-1.1] a"), make("[P-1.2] b"), make("[P-2.1] c"), make("[P-2.2] d", deps=["P-2.1"])]
    ready = {}
    for ordering in scheduler.ORDERINGS:
        ready[ordering] = {d.task.key for d in scheduler.plan(tasks, NOW, ordering) if d.ready}
    assert ready["strict"] == {"P-1.1"}
    assert ready["phases"] == {"P-1.1", "P-1.2"}
    assert ready["dependencies"] == {"P-1.1", "P-1.2", "P-2.1"}


def test_exclude_skips_to_the_next_candidate():
    tasks = [make("[P-1.1] a"), make("[P-1.2] b")]
    assert scheduler.next_ready(tasks, NOW, "phases", exclude={"P-1.1"}).key == "P-1.2"


def test_explicit_cycle_is_named():
    tasks = [make("[P-1.1] a", deps=["P-1.2"]), make("[P-1.2] b", deps=["P-1.1"])]
    with pytest.raises(DependencyCycle) as err:
        scheduler.plan(tasks, NOW, "dependencies")
    assert set(err.value.cycle) == {"P-1.1", "P-1.2"}
    assert "dependency cycle: " in str(err.value)


def test_dependency_against_the_implicit_order_is_a_cycle_under_strict_only():
    tasks = [make("[P-1.1] a", deps=["P-1.2"]), make("[P-1.2] b")]
    with pytest.raises(DependencyCycle):
        scheduler.plan(tasks, NOW, "strict")
    assert scheduler.next_ready(tasks, NOW, "dependencies").key == "P-1.2"


def test_dependency_on_a_later_phase_is_a_cycle_under_phases():
    tasks = [make("[P-1.1] a", deps=["P-2.1"]), make("[P-2.1] b")]
    with pytest.raises(DependencyCycle):
        scheduler.plan(tasks, NOW, "phases")


def test_cycle_among_finished_tasks_is_harmless():
    tasks = [make("a", deps=["b"], tid="a", status="done"), make("b", deps=["a"], tid="b", status="done"), make("c")]
    assert scheduler.next_ready(tasks, NOW).key == "c"


def test_explanations_are_capped_at_scale():
    tasks = [make(f"[P-1.{i}] t{i}") for i in range(1, 200)]
    last = scheduler.plan(tasks, NOW)[-1]
    assert last.waits_on_count == 198
    assert last.explain().endswith("and 188 more")


@pytest.mark.parametrize("ordering", scheduler.ORDERINGS)
def test_a_task_in_review_holds_back_what_follows_unless_review_unblocks_dependents(ordering):
    review = make("[A-1.1] In review", status="in_review", tid="r")
    sibling = make("[A-1.2] Sibling", deps=["r"], tid="s")
    later = make("[A-2.1] Later", tid="l")
    tasks = [review, sibling, later]
    waiting = {d.task.id: d for d in scheduler.plan(tasks, ordering=ordering)}
    assert not waiting["s"].ready and "A-1.1 (in_review)" in waiting["s"].explain()
    assert scheduler.next_ready(tasks, ordering=ordering) is (later if ordering == "dependencies" else None)
    going = {d.task.id: d for d in scheduler.plan(tasks, ordering=ordering, review_satisfies=True)}
    assert going["s"].ready and not going["r"].ready  # the task in review itself is never handed out
    assert going["l"].ready is (ordering == "dependencies")  # the phase policies: 2.1 waits for 1.2
    assert "in_review" in going["r"].explain()
    assert scheduler.next_ready(tasks, ordering=ordering, review_satisfies=True) is sibling

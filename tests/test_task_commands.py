"""The commands a person reaches for: retry, tasks edit, diff, completion, logs by key.

Through click's CliRunner on a real FileProvider store; ``diff`` on a real git repository
whose commit sha is recorded the way the runner records it (the e2e dashboard module
runs ``diff`` on a real run's commits).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from autonomous.cli import main
from autonomous.events import TaskClaimed, Text, ToolUse
from autonomous.events.sinks.files import JsonlSink
from autonomous.providers.file import FileProvider
from autonomous.tasks import TaskStatus

SPEC = """\
# Shop

## Phase 1: Basics

- [SHOP-1.1] Create the cart
  - Priority: high
  - Acceptance criteria:
    - a cart holds items
- [SHOP-1.2] Price the cart
  - Depends on: SHOP-1.1

## Phase 2: Checkout

- [SHOP-2.1] Take payment
"""


def cli(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result


def error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "shop"
    (root / ".ai-agents").mkdir(parents=True)
    monkeypatch.chdir(root)
    (root / "spec.md").write_text(SPEC)
    assert cli("init", "--spec", "spec.md").exit_code == 0
    return root


def store(project: Path) -> FileProvider:
    return FileProvider(project / ".ai-agents" / "state")


def show(ref: str) -> dict:
    result = cli("tasks", "show", ref, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# -- approve / reject (execution.handoff: review) ------------------------------------------------


def test_approve_and_reject_answer_a_task_in_review_and_show_in_tasks_status_and_next(shop: Path) -> None:
    with store(shop) as p:
        task = p.find_task("SHOP-1.1")
        claimed = p.claim(task.id, "w1", 60)
        p.release(
            task.id, claimed.claim.token, status=TaskStatus.IN_REVIEW, note="In review: branch autonomous/SHOP-1.1"
        )
    listing = cli("tasks", "--status", "in_review")
    assert listing.exit_code == 0 and "SHOP-1.1" in listing.output and "SHOP-1.2" not in listing.output
    explain = cli("next", "--explain")
    assert "Skipping SHOP-1.1 - in_review (waits for `autonomous approve`" in explain.output, explain.output
    status = json.loads(cli("status", "--json").output)
    assert status["in_review"] == ["SHOP-1.1"] and status["tasks"]["by_status"]["in_review"] == 1
    assert "Review:   1 task(s) wait for `autonomous approve`: SHOP-1.1" in cli("status").output

    line = error_line(cli("reject", "SHOP-1.1", "--note", "  "), 1)
    assert "reject needs a note (--note)" in line
    result = cli("reject", "shop-1.1", "--note", "name the cart Basket")
    assert result.exit_code == 0 and "SHOP-1.1 rejected" in result.output
    data = show("SHOP-1.1")["task"]
    assert data["status"] == "todo" and data["notes"][-1]["text"].endswith(": name the cart Basket")
    assert data["notes"][-1]["text"].startswith("Rejected by ")

    line = error_line(cli("approve", "SHOP-1.1"), 1)  # todo now: nothing to review
    assert "SHOP-1.1 is todo, not in_review" in line
    cli("tasks", "update", "SHOP-1.1", "--status", "in_review")
    approved = json.loads(cli("approve", "SHOP-1.1", "--json").output)
    assert approved["task"]["status"] == "todo" and approved["task"]["notes"][-1]["text"].startswith("Approved by ")


def test_approve_refuses_a_task_whose_pull_request_decides(shop: Path) -> None:
    """handoff: pr: the pull request is approved and merged on GitHub; a local approve would
    send the task to be merged again by the runner, beside the pull request."""
    note = "In review: pull request #7 https://github.com/acme/shop/pull/7 (branch autonomous/SHOP-1.1, opened)"
    with store(shop) as p:
        task = p.find_task("SHOP-1.1")
        claimed = p.claim(task.id, "w1", 60)
        p.release(task.id, claimed.claim.token, status=TaskStatus.IN_REVIEW, note=note)
    line = error_line(cli("approve", "SHOP-1.1"), 1)
    assert "waits on pull request #7 (https://github.com/acme/shop/pull/7)" in line
    assert show("SHOP-1.1")["task"]["status"] == "in_review"
    rejected = cli("reject", "SHOP-1.1", "--note", "use the shared cart")  # the agent's next round updates the PR
    assert rejected.exit_code == 0 and show("SHOP-1.1")["task"]["status"] == "todo"


def test_next_and_show_follow_review_unblocks_dependents(shop: Path) -> None:
    """With execution.review_unblocks_dependents the reading commands plan as the runner
    claims: SHOP-1.2 (after SHOP-1.1) is next while SHOP-1.1 waits in review."""
    with store(shop) as p:
        task = p.find_task("SHOP-1.1")
        claimed = p.claim(task.id, "w1", 60)
        p.release(task.id, claimed.claim.token, status=TaskStatus.IN_REVIEW, note="In review: branch x")
    nothing = json.loads(cli("next", "--json").output)
    assert nothing["task"] is None and nothing["waiting_count"] == 3  # SHOP-1.1 in review, and the rest
    assert show("SHOP-1.2")["ready"] is False
    (shop / ".ai-agents" / "config.yml").write_text("execution:\n  review_unblocks_dependents: true\n")
    ready = json.loads(cli("next", "--json").output)
    assert ready["task"]["key"] == "SHOP-1.2" and ready["waiting_count"] == 2
    assert show("SHOP-1.2")["ready"] is True


def test_adding_a_task_reopens_a_meta_that_said_everything_was_done(shop: Path) -> None:
    with store(shop) as p:
        for task in p.list_tasks():
            p.update_task(task.id, status=TaskStatus.DONE)
    assert show("META")["task"]["status"] == "done"
    assert cli("tasks", "add", "--title", "[SHOP-2.2] Send a receipt").exit_code == 0
    assert show("META")["task"]["status"] == "todo"


# -- retry ---------------------------------------------------------------------------------------


def test_retry_sends_a_blocked_task_back_to_todo_with_a_note_saying_who(shop: Path) -> None:
    with store(shop) as p:
        task = p.find_task("SHOP-1.1")
        claimed = p.claim(task.id, "w1", 60)
        p.release(task.id, claimed.claim.token, status=TaskStatus.BLOCKED, note="Blocked: no database")
    result = cli("retry", "shop-1.1")
    assert result.exit_code == 0, result.output
    assert "SHOP-1.1 is back to todo" in result.output
    data = show("SHOP-1.1")
    assert data["task"]["status"] == "todo"
    last = data["task"]["notes"][-1]
    assert last["text"].startswith("Retry requested by ") and "(was blocked)" in last["text"]
    assert last["author"] == last["text"].split("Retry requested by ")[1].split(" ")[0]


def test_retry_resets_the_attempts_a_limit_counts(shop: Path) -> None:
    from autonomous import history

    with store(shop) as p:
        task = p.find_task("SHOP-1.1")
        p.add_note(task.id, "Merge failed (conflict, attempt 1 of 2) into main: back to todo", "runner")
        assert len(history.since_retry(p.get_task(task.id).notes)) == 1
    assert cli("retry", "SHOP-1.1").exit_code == 0
    with store(shop) as p:
        assert list(history.since_retry(p.find_task("SHOP-1.1").notes)) == []


def test_retry_refuses_done_tasks_and_live_claims(shop: Path) -> None:
    cli("tasks", "update", "SHOP-2.1", "--status", "done")
    line = error_line(cli("retry", "SHOP-2.1"), 1)
    assert "SHOP-2.1 is done: nothing to retry" in line
    with store(shop) as p:
        p.claim(p.find_task("SHOP-1.1").id, "host:1:w1", 600)
    line = error_line(cli("retry", "SHOP-1.1"), 1)
    assert "being worked on by host:1:w1" in line
    assert show("SHOP-1.1")["task"]["status"] == "in_progress"
    assert "no task with id or key 'NOPE-9'" in error_line(cli("retry", "NOPE-9"), 2)


# -- tasks edit ----------------------------------------------------------------------------------


def test_tasks_edit_changes_what_the_task_says_and_notes_it(shop: Path) -> None:
    result = cli(
        "tasks", "edit", "SHOP-1.2", "--title", "[SHOP-1.2] Price the cart in euros",
        "--description", "Prices are in EUR.", "--criterion", "totals are in EUR", "--criterion", "VAT is added",
        "--test-step", "pytest -q tests/test_price.py",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    task = show("SHOP-1.2")["task"]
    assert task["title"] == "[SHOP-1.2] Price the cart in euros" and task["key"] == "SHOP-1.2"
    assert task["description"] == "Prices are in EUR."
    assert task["acceptance_criteria"] == ["totals are in EUR", "VAT is added"]
    assert task["test_steps"] == ["pytest -q tests/test_price.py"]
    assert task["notes"][-1]["text"].startswith("Edited by ") and "acceptance_criteria" in task["notes"][-1]["text"]


def test_tasks_edit_dependencies_by_key(shop: Path) -> None:
    ids = {t["key"]: t["id"] for t in json.loads(cli("tasks", "--json").output)["tasks"]}
    assert cli("tasks", "edit", "SHOP-2.1", "--add-dependency", "SHOP-1.2").exit_code == 0
    assert show("SHOP-2.1")["task"]["dependencies"] == [ids["SHOP-1.2"]]
    assert cli("tasks", "edit", "SHOP-1.2", "--remove-dependency", "SHOP-1.1").exit_code == 0
    assert show("SHOP-1.2")["task"]["dependencies"] == []
    assert "does not depend on 'SHOP-1.1'" in error_line(cli("tasks", "edit", "SHOP-1.2", "--remove-dependency",
                                                             "SHOP-1.1"), 2)  # fmt: skip


def test_tasks_edit_refuses_a_cycle_and_nonsense_without_writing(shop: Path) -> None:
    before = show("SHOP-1.1")["task"]
    line = error_line(cli("tasks", "edit", "SHOP-1.1", "--add-dependency", "SHOP-1.2"), 2)
    assert line.startswith("error: dependency cycle:") and "SHOP-1.1" in line
    assert "cannot depend on itself" in error_line(cli("tasks", "edit", "SHOP-1.1", "--add-dependency", "SHOP-1.1"), 1)
    assert "nothing to edit" in error_line(cli("tasks", "edit", "SHOP-1.1"), 1)
    assert "needs a title" in error_line(cli("tasks", "edit", "SHOP-1.1", "--title", "  "), 1)
    unknown = cli("tasks", "edit", "SHOP-1.1", "--add-dependency", "NOPE")
    assert "no task with id or key 'NOPE'" in error_line(unknown, 2)
    assert show("SHOP-1.1")["task"] == before


# -- tasks show: attempts and evidence -------------------------------------------------------------


def test_tasks_show_lists_attempts_and_verification_evidence(shop: Path) -> None:
    from autonomous.verify import CommandResult, VerificationResult

    check = VerificationResult(
        False, [CommandResult("pytest -q", 1, ["E   assert 2 == 3", "1 failed"], 2.5)], reason="pytest -q failed"
    )
    with store(shop) as p:
        task = p.find_task("SHOP-1.1")
        claimed = p.claim(task.id, "w1", 60)
        p.add_note(task.id, f"{check.evidence()}\n(attempt 1 of 2)", "runner", token=claimed.claim.token)
        p.release(
            task.id, claimed.claim.token, status=TaskStatus.BLOCKED, cost_usd=0.25, turns=7,
            note="Blocked: verification failed after 2 attempt(s): pytest -q failed\nSummary: tried\n"
                 "Turns: 7, cost: $0.2500, duration: 31.0s, commit: 0123456789abcdef0123456789abcdef01234567",
        )  # fmt: skip
    data = show("SHOP-1.1")
    (attempt,) = data["attempts"]
    assert attempt["result"] == "blocked" and attempt["turns"] == 7 and attempt["cost_usd"] == 0.25
    assert attempt["commit"] == "0123456789abcdef0123456789abcdef01234567" and attempt["summary"] == "tried"
    (evidence,) = data["evidence"]
    assert evidence["passed"] is False and evidence["attempt"] == 1 and evidence["reason"] == "pytest -q failed"
    assert evidence["commands"] == [
        {"command": "pytest -q", "exit_code": 1, "timed_out": False, "duration_s": 2.5,
         "tail": ["E   assert 2 == 3", "1 failed"]}
    ]  # fmt: skip
    text = cli("tasks", "show", "SHOP-1.1").output
    assert "Attempts:\n  1. " in text and "Blocked: verification failed" in text and "7 turns, $0.2500" in text
    assert "Verification evidence:" in text and "$ pytest -q -> exit 1 (2.5s)" in text and "E   assert 2 == 3" in text


def test_tasks_show_reads_back_the_change_set_baseline_and_review(shop: Path) -> None:
    from autonomous.checks.review import Criterion, ReviewVerdict
    from autonomous.verify import CommandResult, VerificationResult

    check = VerificationResult(
        True,
        [CommandResult("pytest -q", 1, ["1 failed"], 2.0, failing_tests=["tests.test_old::test_x"])],
        require_changes=True,
        changed=True,
        diffstat="1 file, +2 -0: README.md (new, +2)",
        notes=["`pytest -q`: failed before the run with the same tests (1); no new failures"],
        review=ReviewVerdict(True, "fine", [Criterion("has a README", True, "it does")], turns=2, cost_usd=0.01),
    )
    with store(shop) as p:
        task = p.find_task("SHOP-1.1")
        claimed = p.claim(task.id, "w1", 60)
        p.add_note(task.id, f"{check.evidence()}\n(attempt 1 of 2)", "runner", token=claimed.claim.token)
    (evidence,) = show("SHOP-1.1")["evidence"]
    assert evidence["passed"] is True and evidence["diffstat"] == "1 file, +2 -0: README.md (new, +2)"
    assert evidence["review"] == "approved (2 turns, $0.0100): fine"
    assert "review met: has a README (it does)" in evidence["lines"]
    assert evidence["commands"][0]["tail"] == ["1 failed"]  # the summary lines are not the command's output
    text = cli("tasks", "show", "SHOP-1.1").output
    assert "    change set: 1 file, +2 -0: README.md (new, +2)" in text and "no new failures" in text


# -- diff ------------------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_diff_shows_the_commits_recorded_in_the_notes(shop: Path) -> None:
    git(shop, "init", "-q")
    git(shop, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "start")
    (shop / "cart.py").write_text("class Cart:\n    items = []\n")
    git(shop, "add", "cart.py")
    git(shop, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "SHOP-1.1: cart")
    sha = git(shop, "rev-parse", "HEAD").strip()
    assert "no recorded commit" in error_line(cli("diff", "SHOP-1.1"), 1)
    with store(shop) as p:
        task = p.find_task("SHOP-1.1")
        claimed = p.claim(task.id, "w1", 60)
        p.release(task.id, claimed.claim.token, status=TaskStatus.DONE,
                  note=f"Done (commit {sha[:12]})\nTurns: 3, cost: $0.0100, duration: 4.0s, commit: {sha}")  # fmt: skip
    patch = cli("diff", "SHOP-1.1")
    assert patch.exit_code == 0, patch.output
    assert f"commit {sha}" in patch.output and "+class Cart:" in patch.output and "+    items = []" in patch.output
    stat = cli("diff", "SHOP-1.1", "--stat").output
    assert "cart.py | 2 ++" in stat and "+class Cart" not in stat


def test_diff_of_a_commit_no_longer_in_the_repository(shop: Path) -> None:
    git(shop, "init", "-q")
    with store(shop) as p:
        task = p.find_task("SHOP-1.1")
        p.add_note(task.id, "Done\nTurns: 1, cost: $0.0000, duration: 1.0s, commit: " + "ab" * 20, "runner")
    assert "commit abababababab of SHOP-1.1 is not in" in error_line(cli("diff", "SHOP-1.1"), 1)


# -- logs ------------------------------------------------------------------------------------------


def test_logs_label_every_line_of_a_task_with_its_key(shop: Path) -> None:
    with store(shop) as p:
        tid = p.find_task("SHOP-1.2").id
    sink = JsonlSink(shop / ".ai-agents" / "logs")
    # an older log: only the claim carried the key, the backend's events only the id
    for event in (
        TaskClaimed(key="SHOP-1.2", title="Price the cart", task_id=tid),
        ToolUse(name="Bash", input={"command": "pytest"}, task_id=tid),
    ):
        sink._file.write_line(json.dumps(event.to_dict()))
    sink.handle(Text(text="working", task_id=tid))  # the sink adds the key now
    sink.close()
    for args in (("logs",), ("logs", "--tail", "1"), ("logs", "--tail", "2")):
        lines = cli(*args).output.splitlines()
        assert lines and all("[SHOP-1.2]" in line for line in lines), lines
        assert not any(f"[{tid}]" in line for line in lines)


# -- completion ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script(shell: str) -> None:
    result = cli("completion", shell)
    assert result.exit_code == 0
    assert "_AUTONOMOUS_COMPLETE" in result.output and f"{shell}_complete" in result.output


def test_bash_completion_completes_commands_and_subcommands(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    bindir = Path(sys.executable).parent
    assert (bindir / "autonomous").exists(), "the console script is installed with the package"
    script = (
        "source <(autonomous completion bash)\n"
        'complete_as() { COMPREPLY=(); COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1));'
        " _autonomous_completion autonomous; }\n"
        'complete_as autonomous ret; echo "1:${COMPREPLY[*]}"\n'
        'complete_as autonomous tasks e; echo "2:${COMPREPLY[*]}"\n'
    )
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([bash, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["1:retry", "2:edit"]


def test_completion_refuses_an_unknown_shell() -> None:
    line = error_line(cli("completion", "tcsh"), 2)
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in line

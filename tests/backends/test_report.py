import pytest

from autonomous.backends.report import NUDGE_PROMPT, REPORT_INSTRUCTIONS, Report, parse_report


def test_fenced_json_report():
    text = 'Done.\n```json\n{"status": "complete", "summary": "added login", "files_changed": ["a.py", "b.py"]}\n```'
    assert parse_report(text) == Report("complete", "added login", ["a.py", "b.py"], "", "json")


def test_bare_json_report_at_the_end():
    report = parse_report('All good. {"status": "blocked", "summary": "half", "blocker": "no DB credentials"}')
    assert report is not None and report.blocked
    assert report.blocker == "no DB credentials"
    assert report.summary == "half"


def test_last_report_wins_over_a_quoted_example():
    text = (
        'The format is {"status": "complete", "summary": "example"}.\n'
        'Final:\n```json\n{"status": "blocked", "blocker": "the API is down", "files_changed": []}\n```'
    )
    report = parse_report(text)
    assert report is not None and report.status == "blocked" and report.blocker == "the API is down"


def test_nested_objects_do_not_count_as_reports():
    text = '{"status": "complete", "summary": "s", "details": {"status": "blocked"}}'
    report = parse_report(text)
    assert report is not None and report.complete


def test_json_wins_over_markers():
    text = '## Task Blocked\nwaiting\n{"status": "complete", "summary": "finished after all"}'
    assert parse_report(text).status == "complete"


def test_marker_complete_with_files():
    report = parse_report("## Task Complete\nDEMO-1.1 implemented. Files Modified: done/DEMO-1.1.txt. Tests pass.")
    assert report is not None and report.complete and report.source == "marker"
    assert report.files_changed == ["done/DEMO-1.1.txt"]
    assert "DEMO-1.1 implemented" in report.summary


def test_marker_blocked_takes_the_text_after_it():
    report = parse_report("Tried things.\n\n### Task Blocked: \nNeed the staging URL from ops.\n")
    assert report is not None and report.blocked
    assert report.blocker == "Need the staging URL from ops."


def test_last_marker_wins():
    assert parse_report("## Task Blocked\nx\n## Task Complete\ndone").complete


def test_blocked_without_reason_still_has_a_blocker():
    assert parse_report('{"status": "blocked"}').blocker
    assert parse_report("## Task Blocked").blocker


def test_status_aliases_and_coercion():
    report = parse_report('{"status": " Completed ", "summary": 42, "files_changed": "one.py"}')
    assert report.complete and report.summary == "42" and report.files_changed == ["one.py"]
    report = parse_report('{"status": "complete", "files_changed": ["a", 3, null, "a", " b "]}')
    assert report.files_changed == ["a", "b"]


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "no report here",
        "{",
        "{{{{ not json }}}}",
        '{"status": "maybe"}',
        '{"status": 1}',
        "[1, 2, 3]",
        '{"summary": "no status"}',
        "```json\n{broken: json}\n```",
        "## Task Completed-ish? no, ### task blockers",
        "\x00\xff" * 1000,
        "{" * 5000,
    ],
)
def test_no_report_and_junk_never_raise(text):
    assert parse_report(text) is None


def test_non_string_input():
    assert parse_report(123) is None  # type: ignore[arg-type]


def test_report_at_the_end_of_a_huge_text():
    text = "x{" * 100_000 + '{"status": "complete", "summary": "ok"}'
    assert parse_report(text).summary == "ok"


def test_instructions_and_nudge_describe_the_json():
    assert '"status": "complete"' in REPORT_INSTRUCTIONS and '"status": "blocked"' in REPORT_INSTRUCTIONS
    assert "files_changed" in REPORT_INSTRUCTIONS and "blocker" in REPORT_INSTRUCTIONS
    assert "JSON" in NUDGE_PROMPT and len(NUDGE_PROMPT) < 500
    # the examples in the instructions parse as reports themselves (the last one is "blocked")
    assert parse_report(REPORT_INSTRUCTIONS).blocked

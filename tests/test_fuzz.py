"""Bad input never crashes: fuzzed config files and specs through the real loaders.

Each test runs at least 500 generated cases (plus the known bad inputs as explicit
examples) and asserts that every one ends in a value or in the tool's own one-line error
(``ConfigError``; ``init`` exiting 0 or 2 with one ``error:`` line): 0 tracebacks. Each
case's allocations are traced and bounded (no alias bomb gets to build its gigabytes), and
the test's time is bounded by its timeout (no hang). In CI (``CI`` set) Hypothesis is
derandomized, so a run is reproducible; locally every run explores new cases.
"""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autonomous.cli.init import run_init
from autonomous.config import InitializerConfig, load_config
from autonomous.errors import ConfigError
from autonomous.providers.file import FileProvider

CASES = 500
MEMORY_LIMIT = 64 * 1024 * 1024  # bytes any one case may allocate at its peak
FUZZ = settings(
    max_examples=CASES,
    derandomize=bool(os.environ.get("CI")),
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)

# -- config files --------------------------------------------------------------------------------

SECTIONS = {
    "state_provider": ["type", "state_dir", "api_key_env", "repo", "write_interval", "dsn", "schema"],
    "autonomous": ["backend", "model", "max_tokens", "max_turns_per_task", "max_tasks_per_session", "workers",
                   "cost_limit_per_session", "allowed_tools", "mcp_servers", "command_policy", "lease_seconds"],
    "execution": ["mode", "on_failure", "ordering", "checkpoints", "git"],
    "progress": ["slack_webhook", "notification_interval"],
    "verification": ["commands", "max_attempts", "timeout", "require_changes"],
    "logging": ["level", "dir"],
    "initializer": ["max_turns", "max_attempts", "section_chars"],
}  # fmt: skip

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)
KNOWN_BAD_CONFIGS = [
    "autonomous:\n  allowed_tools: &c [*c]\n",  # a self-referencing alias
    "commands: &c [*c]\n",
    BOMB,  # 342 bytes, nine levels: 387 million strings once expanded
    'autonomous:\n  max_turns_per_task: !!int "zz"\n',
    "autonomous:\n  model: !!timestamp 2001-13-99\n",
    f"autonomous:\n  max_turns_per_task: {'9' * 5000}\n",
    f"autonomous:\n  workers: {'9' * 40}\n",
    "autonomous: !!python/object/apply:os.system [echo hi]\n",
    "autonomous: !custom {}\n",
    "x: !!binary aGVsbG8=\n",
    "autonomous:\n  model: ${UNSET_FUZZ_VARIABLE}\n",
    "- just\n- a list\n",
    "\ta: tab\n",
    "{" * 2000,
    "state_provider:\n  ? '0\n\n    '\n  : null\n",  # a key ending in a newline (found by this test)
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["${HOME}", "${UNSET_FUZZ:-x}", "${UNSET_FUZZ}", "$${x}", "file", "strict", "opus", "-1", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)
sections = st.dictionaries(
    st.sampled_from(list(SECTIONS)),
    st.one_of(
        values, st.dictionaries(st.sampled_from([k for keys in SECTIONS.values() for k in keys]), values, max_size=5)
    ),
    max_size=5,
)
# Fragments spliced into a valid-looking file: tags, anchors, aliases, odd syntax.
FRAGMENTS = [
    '!!int "zz"', "!!timestamp 2001-13-99", "!!float nope", "!!bool maybe", "!!python/name:os.system", "!foo bar",
    "&a [1, 2]", "*a", "&s [*s]", "<<: *a", "{a: 1, a: 2}", "'unterminated", '"\\x00"', "[" * 30, "- - - -",
    "9" * 4500, "0x" + "f" * 60, "1:2:3:4:5:6:7:8:9", ".inf", "-.nan", "2001-12-14", "~", "? complex key",
]  # fmt: skip


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:  # well-formed YAML of random shape over the real keys
        return yaml.safe_dump(draw(sections), allow_unicode=True)
    if kind == 1:  # well-formed, then fragments spliced into its lines
        lines = yaml.safe_dump(draw(sections)).splitlines() or [""]
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(lines)))
            lines.insert(at, f"{draw(st.sampled_from(list(SECTIONS)))}: {draw(st.sampled_from(FRAGMENTS))}")
        return "\n".join(lines) + "\n"
    if kind == 2:  # any text at all
        return draw(st.text(max_size=300))
    return "\n".join(draw(st.lists(st.sampled_from([*FRAGMENTS, "a:", "  b: 1", "c:", "- x"]), max_size=12)))


def bounded(call) -> object:
    """Run ``call`` with its allocations traced; fail when its peak passes MEMORY_LIMIT."""
    tracemalloc.start()
    try:
        return call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < MEMORY_LIMIT, f"a case allocated {peak / 2**20:.0f} MiB"


@pytest.mark.timeout(600)
@FUZZ
@given(text=config_texts())
@example(text=KNOWN_BAD_CONFIGS[0])
@example(text=KNOWN_BAD_CONFIGS[1])
@example(text=KNOWN_BAD_CONFIGS[2])
@example(text=KNOWN_BAD_CONFIGS[3])
@example(text=KNOWN_BAD_CONFIGS[4])
@example(text=KNOWN_BAD_CONFIGS[5])
@example(text=KNOWN_BAD_CONFIGS[6])
@example(text=KNOWN_BAD_CONFIGS[7])
@example(text=KNOWN_BAD_CONFIGS[8])
@example(text=KNOWN_BAD_CONFIGS[9])
@example(text=KNOWN_BAD_CONFIGS[10])
@example(text=KNOWN_BAD_CONFIGS[11])
@example(text=KNOWN_BAD_CONFIGS[12])
@example(text=KNOWN_BAD_CONFIGS[13])
@example(text=KNOWN_BAD_CONFIGS[14])
def test_config_files_load_or_fail_with_one_line(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    project = tmp_path_factory.mktemp("cfg")
    path = project / ".ai-agents" / "config.yml"
    path.parent.mkdir()
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        bounded(lambda: load_config(path, environ={"HOME": "/home/fuzz"}))
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and "config.yml" in message, message


@pytest.mark.parametrize("text", KNOWN_BAD_CONFIGS[:10])
def test_the_known_bad_configs_are_refused_naming_line_or_key(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        bounded(lambda: load_config(path))
    message = str(err.value)
    assert "line " in message or "autonomous." in message, message
    if "9" * 40 in text or "9" * 5000 in text:
        assert "number out of range" in message and "autonomous." in message


# -- specs ---------------------------------------------------------------------------------------

KNOWN_BAD_SPECS = [
    f"# P\n\n## Phase 1\n- [A-{'5' * 5000}.1] huge phase\n",
    "# P\n\n## Phase 1\n- [A-1.99999999999999999999999] huge number\n- [A-1.2] fine\n",
    "# P\n\n## Phase 1\n- [B-99999999999999999999.1] x\n",
    f"# P\n\n## Phase {'7' * 5000}\n- [A-1.1] under a huge phase heading\n",
    "# P\n\n- [A-1.1] a\n  - Depends on: A-1.99999999999999999999\n- [A-1.2] b\n",
    "# P\n\n- 1.999999999999: leading form\n- 2.1: fine\n",
    "# P\n\n- Task 1.1 worded\n- Task 99999999999.2 worded\n",
]
KEYS = st.one_of(
    st.builds(lambda p, a, b, x: f"[{p}-{a}.{b}{x}]", st.sampled_from(["A", "AUTH", "x1"]),
              st.integers(0, 10**12), st.integers(0, 10**25), st.sampled_from(["", "a", "b"])),
    st.builds(lambda a, b: f"{a}.{b}:", st.integers(0, 10**12), st.integers(0, 30)),
    st.builds(lambda a, b: f"Task {a}.{b}", st.integers(0, 30), st.integers(0, 10**12)),
    st.just(f"[A-{'3' * 5000}.1]"),
)  # fmt: skip
SPEC_LINES = st.one_of(
    st.builds(lambda k, t: f"- {k} {t}", KEYS, st.text(max_size=20)),
    st.builds(lambda h, k, t: f"{h} {k} {t}", st.sampled_from(["##", "###"]), KEYS, st.text(max_size=10)),
    st.builds(lambda n: f"## Phase {n}: area", st.integers(0, 10**30)),
    st.builds(lambda k: f"  - Depends on: {k.strip('[]:')}", KEYS),
    st.sampled_from(["  - Priority: high", "  - Priority: zz", "  - Acceptance criteria:", "    - works", "```", "",
                     "  - Labels: a, b", "META: tracking", "- ARK-99999999999999999999 tracker", "# Title"]),
    st.text(max_size=40),
)  # fmt: skip


@pytest.fixture(scope="module")
def init_config(tmp_path_factory: pytest.TempPathFactory) -> InitializerConfig:
    return InitializerConfig(project_dir=tmp_path_factory.mktemp("init-project"))


@pytest.mark.timeout(900)
@FUZZ
@given(lines=st.lists(SPEC_LINES, min_size=1, max_size=25))
@example(lines=KNOWN_BAD_SPECS[0].splitlines())
@example(lines=KNOWN_BAD_SPECS[1].splitlines())
@example(lines=KNOWN_BAD_SPECS[2].splitlines())
@example(lines=KNOWN_BAD_SPECS[3].splitlines())
@example(lines=KNOWN_BAD_SPECS[4].splitlines())
@example(lines=KNOWN_BAD_SPECS[5].splitlines())
@example(lines=KNOWN_BAD_SPECS[6].splitlines())
def test_specs_init_or_fail_with_one_line(
    tmp_path_factory: pytest.TempPathFactory, init_config: InitializerConfig, lines: list[str]
) -> None:
    """The whole ``init --no-model`` (parse, dependencies, the store's batch, META and
    marker), and its dry run: exit 0, or 2 with one ``error:`` line; never a traceback."""
    work = tmp_path_factory.mktemp("spec")
    spec = work / "spec.md"
    spec.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    for dry_run in (True, False):
        err = io.StringIO()
        provider = FileProvider(work / "state")

        def init(dry_run: bool = dry_run, provider: FileProvider = provider, err: io.StringIO = err) -> int:
            return run_init(spec, no_model=True, dry_run=dry_run, config=init_config, provider=provider,
                            project_dir=work, out=io.StringIO(), err=err)  # fmt: skip

        try:
            code = bounded(init)
        finally:
            provider.close()
        errors = [line for line in err.getvalue().splitlines() if line.startswith("error:")]
        assert code in (0, 2), (code, err.getvalue())
        assert (code == 2) == bool(errors) and len(errors) <= 1, err.getvalue()
        if code == 2:
            return


@pytest.mark.parametrize("text", KNOWN_BAD_SPECS[:3] + KNOWN_BAD_SPECS[5:])
def test_task_numbers_beyond_the_range_are_refused_with_the_spec_line(
    tmp_path: Path, init_config: InitializerConfig, text: str
) -> None:
    spec = tmp_path / "spec.md"
    spec.write_text(text)
    err = io.StringIO()
    code = run_init(spec, no_model=True, dry_run=True, config=init_config, project_dir=tmp_path, out=io.StringIO(),
                    err=err)  # fmt: skip
    assert code == 2
    line = err.getvalue().strip()
    assert line.startswith("error: line ") and "out of range (at most 999,999,999)" in line, line
    bad = next(i for i, row in enumerate(text.splitlines(), 1) if "9999999999" in row or "5555555555" in row)
    assert line.startswith(f"error: line {bad}:"), line

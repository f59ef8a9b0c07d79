"""Secrets never reach git: the check that runs on a task's staged change before any commit.

Two nets, because either alone misses things:

* the exact values the runner knows are secret (the Redactor's: API keys, tokens, the
  Slack webhook, DSN passwords), wherever they appear in an added line or binary file;
* common credential shapes, through Yelp's ``detect-secrets`` with its pattern plugins
  (cloud keys, GitHub/GitLab/Slack/Stripe/npm/PyPI/OpenAI tokens, private keys, JWTs,
  credentials in URLs) plus an Anthropic key pattern of our own. The entropy and keyword
  heuristics are left out: they flag hashes in lock files and every ``password = ...``
  variable, and a guard that cries wolf gets turned off.

Only *added* lines are read (``git diff --cached -U0``): a secret that is already in the
project's history is not this task's doing. A finding names the file and line and the
kind of secret, never the secret itself.

Files that usually hold credentials (``.env``, ``*.pem``, ``id_rsa*`` ...) are not scanned
but kept out of every task commit (:func:`is_protected`), unless the user allows them.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autonomous.workspace import git

# Credential files never staged unless ``execution.git.allow_files`` names them.
PROTECTED_FILES = (
    ".env", ".env.*", "*.env", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_dsa*", "id_ecdsa*",
    "id_ed25519*", ".netrc", ".pgpass", ".npmrc", ".pypirc", "credentials.json", ".git-credentials",
)  # fmt: skip
# Examples and templates of those files hold placeholders, not secrets.
_TEMPLATE_SUFFIXES = (".example", ".sample", ".template", ".dist")

_PLUGINS = (
    "ArtifactoryDetector", "AWSKeyDetector", "AzureStorageKeyDetector", "BasicAuthDetector", "CloudantDetector",
    "DiscordBotTokenDetector", "GitHubTokenDetector", "GitLabTokenDetector", "IbmCloudIamDetector",
    "IbmCosHmacDetector", "JwtTokenDetector", "MailchimpDetector", "NpmDetector", "OpenAIDetector",
    "PrivateKeyDetector", "PypiTokenDetector", "SendGridDetector", "SlackDetector", "SoftlayerDetector",
    "SquareOAuthDetector", "StripeDetector", "TelegramBotTokenDetector", "TwilioKeyDetector",
)  # fmt: skip
_OWN_PATTERNS = (("Anthropic API key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),)
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")
_LINE_CAP = 4000  # longer added lines (minified files) are checked for known values only


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    line: int | None  # None: a binary file
    kind: str

    def describe(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else f"{self.path} (binary)"
        return f"{where}: {self.kind}"


def is_protected(path: str, allow: Iterable[str] = (), protected: Iterable[str] = PROTECTED_FILES) -> bool:
    """Whether ``path`` is a credential file kept out of commits (matched on its name)."""
    name = path.rsplit("/", 1)[-1]
    if name.endswith(_TEMPLATE_SUFFIXES):
        return False
    if any(fnmatch.fnmatchcase(path, pat) or fnmatch.fnmatchcase(name, pat) for pat in allow):
        return False
    return any(fnmatch.fnmatchcase(name, pat) for pat in protected)


_detector_lock = threading.Lock()  # detect-secrets keeps its settings in a global


def _shapes(lines: list[tuple[str, int | None, str]]) -> list[Finding]:
    """Credential shapes in ``lines``: our own patterns, then detect-secrets' plugins
    (imported here, on first use: it costs 0.2 s and only commits need it)."""
    findings: list[Finding] = []
    pending: list[tuple[str, int | None, str]] = []
    for path, number, text in lines:
        own = next((kind for kind, pattern in _OWN_PATTERNS if pattern.search(text)), None)
        if own:
            findings.append(Finding(path, number, own))
        else:
            pending.append((path, number, text))
    if not pending:
        return findings
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import transient_settings

    with _detector_lock, transient_settings({"plugins_used": [{"name": name} for name in _PLUGINS]}):
        for path, number, text in pending:
            secret = next(iter(scan_line(text)), None)
            if secret is not None:
                findings.append(Finding(path, number, secret.type))
    return findings


def scan_lines(lines: Iterable[tuple[str, int | None, str]], known: Sequence[str]) -> list[Finding]:
    """Findings in ``(path, line number, text)`` triples: known values, then shapes."""
    findings: list[Finding] = []
    rest: list[tuple[str, int | None, str]] = []
    for path, number, text in lines:
        if any(value in text for value in known):
            findings.append(Finding(path, number, "a secret this runner knows (a configured key, token or URL)"))
        elif text.strip() and len(text) <= _LINE_CAP:
            rest.append((path, number, text))
    findings += _shapes(rest)
    return sorted(findings, key=lambda f: (f.path, f.line or 0))


def added_lines(patch: str) -> tuple[list[tuple[str, int | None, str]], list[str]]:
    """The added lines of a ``-U0`` patch as ``(path, line, text)``, and the binary files."""
    lines: list[tuple[str, int | None, str]] = []
    binary: list[str] = []
    path = ""
    number = 0
    for raw in patch.splitlines():
        if raw.startswith("diff --git "):
            path = ""
        elif raw.startswith("+++ "):
            path = _unquote(raw[4:])
            path = path[2:] if path.startswith("b/") else path
        elif raw.startswith("Binary files ") and raw.endswith(" differ"):
            target = _unquote(raw[len("Binary files ") : -len(" differ")].split(" and ", 1)[-1])
            if target != "/dev/null":
                binary.append(target[2:] if target.startswith("b/") else target)
        elif (match := _HUNK.match(raw)) is not None:
            number = int(match.group(1))
        elif raw.startswith("+") and path:
            lines.append((path, number, raw[1:]))
            number += 1
    return lines, binary


def _unquote(text: str) -> str:
    """git's C-style quoting of unusual path names (``"a\\tb"``)."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1").decode()
    return text


def scan_staged(repo: Path, paths: Sequence[str], known: Iterable[str]) -> list[Finding]:
    """Findings in what is staged for ``paths`` (call after :func:`git.stage`)."""
    known = sorted({k for k in known if k}, key=len, reverse=True)
    lines, binary = added_lines(git.staged_diff(repo, paths))
    findings = scan_lines(lines, known)
    for path in binary:
        try:
            data = (Path(repo) / path).read_bytes()
        except OSError:
            continue
        if any(value.encode() in data for value in known):
            findings.append(Finding(path, None, "a secret this runner knows (a configured key, token or URL)"))
    return findings

"""The environment of anything the agent runs: the runner's, without a single credential.

A command the agent runs can print its environment, so nothing that looks like a
credential reaches it: API keys, tokens, webhooks, passwords, DSNs. The model API call
itself is the runner's (anthropic-sdk) or the Claude Code CLI's, outside the sandbox, and
gets its key another way (:mod:`autonomous.sandbox.claude`).

Standard library only: :mod:`autonomous.config` imports the pattern, and ``status`` must
start fast.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from autonomous.config_view import SECRET_NAME_PATTERN

# Names of environment variables whose values are credentials: the configuration's own
# pattern (config_view.py), so what is redacted and what the agent never sees agree.
_SECRET_NAME = re.compile(SECRET_NAME_PATTERN, re.I)
# Inside the sandbox, home is the private /tmp: the real one is absent.
SANDBOX_HOME = "/tmp"


def is_secret_name(name: str) -> bool:
    """Whether an environment variable called ``name`` holds a credential."""
    return bool(_SECRET_NAME.search(name))


def scrubbed(environ: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` plus ``extra`` without credentials, with home and temp in the sandbox's /tmp."""
    env = {k: v for k, v in {**environ, **(extra or {})}.items() if not is_secret_name(k)}
    env.update(HOME=SANDBOX_HOME, TMPDIR=SANDBOX_HOME)
    env.pop("CLAUDECODE", None)
    return env

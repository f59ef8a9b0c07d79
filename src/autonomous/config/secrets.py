"""Which strings of a configuration are secrets, and the one :class:`Redactor` built from them.

Values substituted from variables whose names look like credentials (``*TOKEN*``,
``*KEY*``, ``*SECRET*``, ``*PASSWORD*``, ``*WEBHOOK*`` ...), the Slack webhook, DSN
passwords and the ``env`` / ``headers`` values of MCP servers are shown as ``***`` by
:meth:`Config.redacted`; :func:`secret_values` lists the secret strings in use so events,
logs and the dashboard scrub them from any text. Every scrubber of the process is made
by :func:`build_redactor`, so they all hide the same strings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from autonomous.config_view import lazy_regex

if TYPE_CHECKING:  # pragma: no cover
    from autonomous.config.models import Config
    from autonomous.events import Redactor

MASK = "***"
# Strings shorter than this are masked in the config display but not scrubbed from free
# text: replacing every "1" or "true" in a log would garble it and hide nothing.
MIN_SECRET_LEN = 6
# Credentials the backends and providers read from the environment on their own.
AMBIENT_SECRETS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
PROVIDER_TOKENS = {"linear": ("LINEAR_API_KEY",), "github": ("GITHUB_TOKEN", "GH_TOKEN")}

Loc = tuple[str | int, ...]

_DSN_URL = lazy_regex(r"^(?P<head>[a-zA-Z][\w+.-]*://[^:/@]*:)(?P<password>[^@]*)(?P<tail>@.*)$", re.S)
_DSN_KV = lazy_regex(r"(?P<head>\bpassword\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|\S+)")


def is_secret_key(loc: Loc) -> bool:
    """Keys that hold secrets whatever their value's origin."""
    if loc == ("progress", "slack_webhook"):
        return True
    return len(loc) == 5 and loc[:2] == ("autonomous", "mcp_servers") and loc[3] in ("env", "headers")


def dsn_passwords(dsn: str) -> list[str]:
    found = []
    url = _DSN_URL().match(dsn)
    if url and url.group("password"):
        found.append(url.group("password"))
    for match in _DSN_KV().finditer(dsn):
        found.append(match.group("password").strip("'"))
    return [p for p in found if p]


def mask_dsn(dsn: str) -> str:
    url = _DSN_URL().match(dsn)
    if url and url.group("password"):
        dsn = f"{url.group('head')}{MASK}{url.group('tail')}"
    return _DSN_KV().sub(lambda m: m.group("head") + MASK, dsn)


def secret_values(config: Config, environ: Mapping[str, str] | None = None) -> set[str]:
    """The secret strings this configuration uses now, to scrub from any text.

    Values substituted from credential-named variables, the Slack webhook, DSN
    passwords (``state_provider.dsn``, else ``$DATABASE_URL`` for postgres), MCP
    server ``env`` / ``headers`` values, and the environment's values of the token
    variables in use: ``api_key_env`` / ``oauth_token_env`` / ``linear_api_key_env``
    (or the provider's default LINEAR_API_KEY / GITHUB_TOKEN), ANTHROPIC_API_KEY,
    ANTHROPIC_AUTH_TOKEN and CLAUDE_CODE_OAUTH_TOKEN. Strings shorter than six
    characters are left out (scrubbing them would garble text and hide nothing).
    """
    env = os.environ if environ is None else environ
    found: set[str] = set(getattr(config, "_secret_strings", ()))
    provider = config.state_provider
    auto = config.autonomous
    if config.progress.slack_webhook:
        found.add(config.progress.slack_webhook)
    dsn = provider.dsn or (env.get("DATABASE_URL") if provider.type == "postgres" else None)
    if dsn:
        found.update(dsn_passwords(dsn))
    for server in auto.mcp_servers.values():
        for key in ("env", "headers"):
            found.update(str(v) for v in (server.get(key) or {}).values())
    names = [provider.api_key_env, auto.oauth_token_env, auto.linear_api_key_env, *AMBIENT_SECRETS]
    if config.execution.handoff == "pr":
        names.append(config.execution.pull_requests.token_env)
    if provider.api_key_env is None:
        names.extend(PROVIDER_TOKENS.get(provider.type, ()))
    for name in names:
        if name and env.get(name):
            found.add(env[name])
    return {s for s in found if len(s) >= MIN_SECRET_LEN}


def build_redactor(config: Config) -> Redactor:
    """The scrubber for everything that leaves the process (events, logs, Slack, the dashboard)."""
    from autonomous.events import Redactor

    return Redactor(sorted(secret_values(config)))


def redact_data(config: Config, data: Any, secret_paths: frozenset[Loc]) -> Any:
    """``data`` (the configuration as JSON-able data) with every secret shown as ``***``."""
    scrub = sorted(secret_values(config), key=len, reverse=True)

    def walk(node: Any, loc: Loc) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*loc, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*loc, i)) for i, v in enumerate(node)]
        if not isinstance(node, str) or not node:
            return node
        if loc in secret_paths or is_secret_key(loc):
            return MASK
        if loc == ("state_provider", "dsn"):
            node = mask_dsn(node)
        for secret in scrub:
            node = node.replace(secret, MASK)
        return node

    return walk(data, ())

"""GitHub: tasks as issues (:mod:`.provider`), over one REST client (:mod:`.client`) that
pull requests (``execution.handoff: pr``) share; :mod:`.codec` maps issues to tasks."""

from autonomous.providers.github.client import GitHubClient
from autonomous.providers.github.provider import GitHubProvider

__all__ = ["GitHubClient", "GitHubProvider"]

"""``AutonomousRunnerSDK``: the same loop, async, on the Agent SDK backend.

    import asyncio
    from autonomous.runner_sdk import AutonomousRunnerSDK, RunnerConfig

    async def main():
        runner = AutonomousRunnerSDK(RunnerConfig.from_yaml(".ai-agents/config.yml"))
        result = await runner.start()
        print(result.exit_code)

    asyncio.run(main())

Nothing about the loop differs from :class:`autonomous.runner.AutonomousRunner`: one place
decides completion, limits and recording, whichever backend talks to the model. Only the
default backend changes (``claude-code-sdk`` unless the config names another SDK-style one),
and ``start`` is a coroutine for callers that already run an event loop.
"""

from __future__ import annotations

from typing import Any

from autonomous.backends.base import Backend
from autonomous.config import Config, load_config, override
from autonomous.runner import AutonomousRunner, RunResult

SDK_BACKEND = "claude-code-sdk"

__all__ = ["SDK_BACKEND", "AutonomousRunnerSDK", "RunResult"]  # and RunnerConfig, lazily


class AutonomousRunnerSDK(AutonomousRunner):
    def __init__(self, config: Config | None = None, *, backend: Backend | None = None, **kwargs: Any):
        config = config if config is not None else load_config()
        if backend is None and config.autonomous.backend == "claude-code":
            # The config's default names the CLI; this class exists to run on the SDK.
            config = override(config, {"autonomous.backend": SDK_BACKEND})
        super().__init__(config, backend=backend, **kwargs)

    async def start(self, *, resume: bool = False, dry_run: bool = False) -> RunResult:  # type: ignore[override]
        """Run the session in the caller's event loop; returns a RunResult (``.exit_code``)."""
        return await self.run(resume=resume, dry_run=dry_run)


def __getattr__(name: str) -> Any:
    if name == "RunnerConfig":  # the predecessor's README imports it from here
        from autonomous.config import RunnerConfig

        return RunnerConfig
    raise AttributeError(name)

"""The dashboard on a large project: what each request costs with 10,000 tasks.

    python benchmarks/bench_dashboard.py [--tasks 10000] [--repeat 5] [--no-browser]

Builds a project with N phased tasks (each with a description, two criteria and a note)
in the file provider, serves the real dashboard with uvicorn on a loopback port, and times
each API request over HTTP (median of ``--repeat``), then, with Debian's chromium, how
long the board takes to show in a headless browser. docs/benchmarks.md holds the figures.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from autonomous.config import load_config
from autonomous.dashboard import create_app
from autonomous.dashboard.server import bind
from autonomous.providers.file import FileProvider
from autonomous.tasks import NewTask, TaskStatus


def make_project(root: Path, n: int) -> None:
    (root / ".ai-agents").mkdir(parents=True)
    with FileProvider(root / ".ai-agents" / "state") as p:
        p.create_tasks(
            [NewTask("META: Big project", labels=["meta"])]
            + [
                NewTask(
                    f"[BIG-{i // 100 + 1}.{i % 100 + 1}] task number {i}",
                    description="Do the thing. " * 20,
                    acceptance_criteria=["it works", "it is tested"],
                )
                for i in range(n)
            ]
        )
        for t in p.list_tasks()[1 : n // 2]:
            p.update_task(t.id, status=TaskStatus.DONE)
            p.add_note(t.id, "Done (commit 0123456789ab)\nTurns: 3, cost: $0.0100, duration: 9.0s", "runner")


def timed(client: httpx.Client, path: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - start)
        response.raise_for_status()
    return statistics.median(times) * 1000


def browser_ms(url: str, repeat: int) -> float:
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    times = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        for _ in range(repeat):
            page = browser.new_page()
            start = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("#board[data-loaded=true]", timeout=60_000)
            times.append(time.perf_counter() - start)
            page.close()
        browser.close()
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp()) / "big"
    start = time.perf_counter()
    make_project(root, args.tasks)
    print(f"project of {args.tasks} tasks built in {time.perf_counter() - start:.1f}s")
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = create_app(load_config(None, project_dir=root), hosts=[f"127.0.0.1:{port}"])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=120) as client:
        while not server.started:
            time.sleep(0.05)
        rows = [
            ("GET /api/board (5 columns, 50 cards each)", "/api/board"),
            ("GET /api/board?column=todo&offset=2500 (next page)", "/api/board?column=todo&offset=2500"),
            ("GET /api/tasks?offset=9000&limit=200", "/api/tasks?offset=9000&limit=200"),
            ("GET /api/tasks/BIG-50.50 (task page)", "/api/tasks/BIG-50.50"),
            ("GET /api/status", "/api/status"),
        ]
        print(f"| request ({args.tasks} tasks) | median ms |")
        print("|---|---:|")
        for label, path in rows:
            print(f"| {label} | {timed(client, path, args.repeat):.0f} |")
        size = len(client.get("/api/board").content)
        print(f"/api/board document: {size / 1024:.0f} KiB")
    if not args.no_browser:
        shown = browser_ms(base + "/", args.repeat)
        print(f"board shown in headless chromium (goto to cards on screen): {shown:.0f} ms")
    server.should_exit = True
    thread.join(timeout=10)


if __name__ == "__main__":
    main()

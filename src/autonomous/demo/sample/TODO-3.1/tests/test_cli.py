import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_serve_on_a_free_port_until_ctrl_c(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "todo_api", "serve", "--port", "0", "--data", str(tmp_path / "todos.json")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("Serving on http://"), line
        with urllib.request.urlopen(line.split()[-1] + "/todos") as response:
            assert json.load(response) == []
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
        proc.stdout.close()
    assert code == 0

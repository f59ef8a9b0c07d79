"""python -m todo_api serve [--port 8000] [--data todos.json]"""

from __future__ import annotations

import argparse
import signal
import sys

from todo_api.server import make_server
from todo_api.store import StoreError, TodoStore


def main(argv: list[str] | None = None) -> int:
    """Serve the API until Ctrl-C, then exit 0."""
    parser = argparse.ArgumentParser(prog="python -m todo_api")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve.add_argument("--data", default="todos.json", help="the JSON file the todos live in")
    args = parser.parse_args(argv)
    try:
        store = TodoStore(args.data)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Ctrl-C stops the server even when it was started in the background (nohup ... &),
    # where SIGINT is inherited as ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server = make_server(store, args.host, args.port)
    try:
        host, port = server.server_address[:2]
        print(f"Serving on http://{host}:{port}", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

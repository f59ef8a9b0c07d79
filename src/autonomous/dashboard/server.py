"""Serving the dashboard: bind, decide the token, print where it is, run uvicorn."""

from __future__ import annotations

import ipaddress
import secrets
import socket
import sys
import webbrowser

import uvicorn

from autonomous.config import Config
from autonomous.dashboard.app import create_app
from autonomous.errors import ConfigError
from autonomous.providers import get_provider

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or a one-line error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"dashboard: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    return sock


def serve(
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    open_browser: bool = False,
    read_only: bool = False,
    token: str | None = None,
) -> None:
    """Serve until Ctrl-C. Off loopback a token is required on every request: ``token``,
    or a new one printed with the address."""
    local = is_loopback(host)
    if not local and not token:
        token = secrets.token_urlsafe(24)
    provider = get_provider(config)  # opened here, so a store that cannot open is a one-line error
    try:
        sock = bind(host, port)
    except ConfigError:
        provider.close()
        raise
    port = sock.getsockname()[1]
    hosts = [f"{name}:{port}" for name in LOOPBACK_NAMES] if local and not token else None
    app = create_app(config, read_only=read_only, token=token, hosts=hosts, provider=provider)
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host.strip("[]"), host.strip("[]"))
    url = f"http://{shown if ':' not in shown else f'[{shown}]'}:{port}/" + (f"?token={token}" if token else "")
    mode = " (read-only)" if read_only else ""
    print(f"Dashboard{mode}: {url}", flush=True)
    if token and not local:
        print(f"Listening on {host}:{port}; every request needs the token above.", flush=True)
    print("Ctrl-C stops it.", file=sys.stderr, flush=True)
    if open_browser:
        webbrowser.open(url)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1, lifespan="on")
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: stopping is the normal end
        pass
    finally:
        provider.close()

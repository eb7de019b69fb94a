"""Runs the sidecar: ``python -m sidecar [--config PATH] [--host H] [--port P] [--demo]``, or one
of its maintenance commands: ``python -m sidecar forget|backup|restore|compact ...``."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import socket
import sys
from typing import Any

from pydantic import ValidationError

from sidecar.commands import COMMANDS
from sidecar.config import Config, ConfigError, config_error, load_config


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chatwoot-sidecar", description=__doc__)
    parser.add_argument("--config", help="config file (default: $SIDECAR_CONFIG, else ./config.yaml)")
    parser.add_argument("--host", help="listen address (overrides server.host)")
    parser.add_argument("--port", type=int, help="listen port (overrides server.port)")
    parser.add_argument("--demo", action="store_true",
                        help="run with a simulated Chatwoot, MCP-Crew and customers (nothing else needed)")
    parser.add_argument("--demo-rate", type=float, metavar="RATE",
                        help="with --demo: customer messages per second (default: $DEMO_RATE, else 1)")
    # The multi-process mode's parent starts its children with these (sidecar.processes).
    parser.add_argument("--role", choices=("intake", "worker"), help=argparse.SUPPRESS)
    parser.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, *, extra_blueprints: tuple[Any, ...] = ()) -> int:
    """Runs the sidecar (or the demo, or a maintenance command: forget, backup, restore, compact);
    ``extra_blueprints`` is for bench/noop.py only."""
    words = sys.argv[1:] if argv is None else argv
    if words and words[0] in COMMANDS:
        from sidecar.commands import run

        return run(words)
    args = parse_args(argv)
    if args.demo:
        try:
            from demo import run_demo
        except ImportError:
            print("the demo is not part of this installation: run it from a checkout (make run)", file=sys.stderr)
            return 2

        return run_demo(config_path=args.config, host=args.host, port=args.port, rate=args.demo_rate)
    try:
        config = load_config(args.config, os.environ)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    server = config.server
    if args.host or args.port:
        try:
            server = dataclasses.replace(server, host=args.host or server.host, port=args.port or server.port)
        except ValidationError as exc:  # the records check every value, command-line ones too
            error = config_error(exc)
            print(f"config error: --{error.key}: {error.reason}", file=sys.stderr)
            return 2
        config = dataclasses.replace(config, server=server)

    if args.role is not None:
        return _serve_child(args, config)

    # What the environment refuses (a busy port, a state path that cannot be written) is, like
    # a bad config, one line naming the key and exit status 2, found before anything starts.
    listener, problem = listen(server.host, server.port)
    if problem is None:
        problem = check_state(config)
    if problem is not None:
        if listener is not None:
            listener.close()
        print(f"error: {problem}", file=sys.stderr)
        return 2

    assert listener is not None
    from sidecar.processes import process_count

    if process_count(config) > 1 and not extra_blueprints:
        from sidecar.processes import run_parent

        return run_parent(config, listener, _child_args(args))
    from sidecar.serve import serve_http

    return serve_http(config, listener, extra_blueprints=extra_blueprints)


def _child_args(args: argparse.Namespace) -> list[str]:
    """What a child of the multi-process mode is started with: the parent's own options."""
    out: list[str] = []
    if args.config:
        out += ["--config", args.config]
    if args.host:
        out += ["--host", args.host]
    if args.port:
        out += ["--port", str(args.port)]
    return out


def _serve_child(args: argparse.Namespace, config: Config) -> int:
    from sidecar.processes import die_with_parent

    die_with_parent()
    if args.role == "worker":
        from sidecar.serve import serve_worker

        return serve_worker(config)
    if args.listen_fd is None:
        print("error: --role intake needs --listen-fd", file=sys.stderr)
        return 2
    from sidecar.serve import serve_http

    return serve_http(config, socket.socket(fileno=args.listen_fd), role="intake")


def check_state(config: Config) -> str | None:
    """Opens (creating and migrating, as the sidecar does at start) the state database once;
    returns ``"state.path: ..."`` (or ``"state.database_url: ..."``) when that fails, else None."""
    if config.state.database_url:
        return check_database(config.state.database_url)
    from state import StateError, open_database

    path = config.state.path
    existed = os.path.exists(path)
    try:
        open_database(path, migrate=True).close()
    except (StateError, OSError) as exc:
        cause = exc.__cause__ or exc
        return f"state.path: cannot {'open' if existed else 'create'} {path} ({cause})"
    return None


def check_database(url: str) -> str | None:
    """The PostgreSQL state: reachable, and migrated (as the sidecar does at start). The line
    names the server and database, never the password (state's messages leave it out)."""
    from state import StateError, open_database

    try:
        open_database(url, migrate=True).close()
    except StateError as exc:
        return f"state.database_url: {exc}"
    return None


def listen(host: str, port: int) -> tuple[socket.socket | None, str | None]:
    """The listening socket, bound like Sanic binds it, or why it cannot be (``server.*: ...``)."""
    from sanic.server.socket import bind_socket

    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        return bind_socket(host, port), None
    except socket.gaierror as exc:
        return None, f"server.host: cannot listen on {where} ({exc.strerror})"
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return None, f"server.port: {where} is already in use"
        key = "server.host" if exc.errno == errno.EADDRNOTAVAIL else "server.port"
        return None, f"{key}: cannot listen on {where} ({exc.strerror or exc})"


if __name__ == "__main__":
    sys.exit(main())

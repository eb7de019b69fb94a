"""Runs the sidecar: ``python -m sidecar [--config PATH] [--host H] [--port P] [--demo]``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from pydantic import ValidationError

from sidecar.config import ConfigError, config_error, load_config


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chatwoot-sidecar", description=__doc__)
    parser.add_argument("--config", help="config file (default: $SIDECAR_CONFIG, else ./config.yaml)")
    parser.add_argument("--host", help="listen address (overrides server.host)")
    parser.add_argument("--port", type=int, help="listen port (overrides server.port)")
    parser.add_argument("--demo", action="store_true",
                        help="run with a simulated Chatwoot, MCP-Crew and customers (nothing else needed)")
    parser.add_argument("--demo-rate", type=float, metavar="RATE",
                        help="with --demo: customer messages per second (default: $DEMO_RATE, else 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, *, extra_blueprints: tuple[Any, ...] = ()) -> int:
    """Runs the sidecar (or the demo); ``extra_blueprints`` is for bench/noop.py only."""
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

    from sidecar.app import create_app

    app = create_app(config, config_path=config.source_path)
    for blueprint in extra_blueprints:
        app.blueprint(blueprint)
    app.run(host=server.host, port=server.port, single_process=True, access_log=False, motd=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

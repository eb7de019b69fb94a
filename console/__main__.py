"""Provides the ``python -m console`` / ``chatwoot-console`` command line."""

from __future__ import annotations

import argparse
import sys

from console.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    """Runs the console; exits 2 with one line when the config cannot be used."""
    parser = argparse.ArgumentParser(
        prog="chatwoot-console",
        description="Textual ops console for the Chatwoot connector (reads its SQLite or PostgreSQL state).",
    )
    parser.add_argument("--config", help="config.yaml (default: $SIDECAR_CONFIG, else ./config.yaml)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", help="SQLite file (default: the config's state: $SIDECAR_DATABASE_URL or "
                                    "state.database_url, else $SIDECAR_DB or state.path)")
    where.add_argument("--database-url", metavar="URL",
                       help="PostgreSQL state: postgresql://user:password@host:port/database")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, args.db, database_url=args.database_url)
    except SettingsError as exc:
        print(f"chatwoot-console: {exc}", file=sys.stderr)
        return 2
    # Imported late so that --help and config errors do not pay for loading Textual.
    from console.app import make_console

    make_console(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

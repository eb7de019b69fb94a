"""The console on PostgreSQL: where it reads (--database-url, or the config's state.database_url),
and the password never on screen or in a message."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.reader import Reader, ReadError
from console.settings import SettingsError, load_settings
from tests import backends
from tests.console.seed import seed

URL = "postgresql://connector:s3cret-pw-0042@db.example:5433/connector"


def test_the_database_url_comes_from_the_flag_or_the_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"state:\n  database_url: {URL}\n", encoding="utf-8")
    assert load_settings(str(config), env={}).db_path == URL
    assert load_settings(None, env={"SIDECAR_DATABASE_URL": URL}).db_path == URL
    assert load_settings(None, env={}, database_url=URL).db_path == URL
    assert load_settings(None, env={"SIDECAR_DATABASE_URL": URL}, db="x.db").db_path == "x.db"  # --db wins
    with pytest.raises(SettingsError, match="--database-url: must start with postgresql://") as caught:
        load_settings(None, env={}, database_url="mysql://u:s3cret-pw-0042@h/db")
    assert "s3cret" not in str(caught.value)


def test_the_reader_shows_where_it_reads_without_the_password(tmp_path: Path) -> None:
    url = backends.state_location(tmp_path, backends.POSTGRES)
    seed(url)
    reader = Reader(url)
    try:
        assert reader.overview().queue is not None
        assert "connector-test-pw" not in reader.path and reader.path.endswith(url.rsplit("/", 1)[1])
        changed = reader.data_version()
        assert isinstance(changed, int)
    finally:
        reader.close()
    wrong = Reader(url.replace(":connector-test-pw-7f3a@", ":wrong-pw-0042@"))
    with pytest.raises(ReadError) as caught:
        wrong.overview()
    assert "wrong-pw" not in str(caught.value) and "connector-test-pw" not in str(caught.value)

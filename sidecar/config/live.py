"""Provides ConfigManager: live config changes from ``POST /config`` and from hand edits.

Both paths end in the same place (:meth:`ConfigManager._apply`): the new config replaces the
running one as a whole (``ConfigHolder.replace``), an audit entry records which keys changed
(old and new values, secrets masked), and the kv table gets ``config.status`` and
``config.effective`` for the console.

- ``POST /config`` merges a partial document into the file's raw mapping, validates the result
  with the same code as start-up, writes config.yaml back atomically with its comments kept
  (:func:`connector_config.render_patched_yaml`), and then applies it. When the file cannot be
  written (compose mounts it read-only) the change is still applied, and the answer says it
  is not persisted: it lasts until the next restart or the next edit of the file, and later
  posts build on it.
- A background task stats config.yaml every second (mtime, size, inode; no extra dependency).
  A valid edit is applied; an invalid one keeps the last good config running, is logged once
  in one line naming the key, and shows in ``/health`` until the file is fixed.
- A file that becomes empty (no YAML document: nothing, blanks or comments) while the sidecar
  runs is treated as invalid, not as "all defaults": editors and scripts that save by
  truncating and then writing show an empty file for a moment, and applying it would drop the
  webhook secret and every URL. It is re-read at its next change. Starting with an empty or
  absent file still means all defaults, and then an empty file is no change.

Environment variables still win over the file after a change. Keys that cannot change while
running (listen address, database, log directory, worker start) keep their running value and
are reported as needing a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from connector_config import (
    DEFAULT_CONFIG_PATH,
    EMPTY_FILE_REASON,
    Config,
    ConfigError,
    config_from_mapping,
    config_to_dict,
    deep_merge,
    load_raw,
    masked_config_dict,
    parse_yaml,
    render_patched_yaml,
    write_atomically,
)
from sidecar.config.holder import ConfigHolder
from sidecar.config.patch import config_changes, drop_env_masks, env_overridden, strip_masked_echoes
from sidecar.ops.logs import get_logger, log_event, reconfigure
from sidecar.ops.metrics import Metrics
from state import StateError, StateService, Tx
from state.vocabulary import CONFIG_EFFECTIVE, CONFIG_STATUS

log = get_logger()

WATCH_INTERVAL_SECONDS = 1.0
RESTART_KEYS: tuple[str, ...] = (
    "server.host", "server.port", "server.shutdown_grace_seconds", "server.processes", "state.path",
    "state.database_url", "state.pool_size", "logging.dir",
    "processing.workers_enabled", "processing.worker_processes")
"""Keys read once at start-up; a change is written and reported, and applies after a restart."""

STATUS_KEY = CONFIG_STATUS
EFFECTIVE_KEY = CONFIG_EFFECTIVE
_ENVELOPE_KEYS = {"config", "meta"}


@dataclasses.dataclass(frozen=True, slots=True)
class ApplyResult:
    status: int
    body: dict[str, Any]


def _get(config: Config, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _keep_running(running: Config, new: Config) -> Config:
    """``new`` with the start-up-only keys kept at their running values."""
    return dataclasses.replace(
        new,
        server=dataclasses.replace(new.server, host=running.server.host, port=running.server.port),
        state=running.state,
        logging=dataclasses.replace(new.logging, dir=running.logging.dir),
        processing=dataclasses.replace(new.processing, workers_enabled=running.processing.workers_enabled),
    )


def unserved_warnings(config: Config) -> list[str]:
    """One line per crew the routing names that no back-end serves, naming its first key."""
    unserved = set(config.unserved_crews)
    named = [("routing.default_crew", config.routing.default_crew)]
    named += [(f"routing.rules[{index}].crew", rule.crew) for index, rule in enumerate(config.routing.rules)]
    out = []
    for key, crew in named:
        if crew in unserved:
            unserved.discard(crew)
            out.append(f'{key}: no back-end serves crew "{crew}": list it under crews: or set mcp_crew.api_url')
    return out


def _why_not_written(path: Path, exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.EBUSY):
        # EBUSY: a single file bind-mounted into a container cannot be replaced by a rename.
        return f"{path.name} is read-only"
    return f"{path.name} cannot be written ({exc.strerror or type(exc).__name__})"


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ConfigManager:
    """Owns every run-time change of the config (API and file)."""

    def __init__(self, state: StateService, metrics: Metrics, holder: ConfigHolder, config_path: str | None, *,
                 env: Mapping[str, str] | None = None) -> None:
        self._state = state
        self._metrics = metrics
        self.holder = holder
        self.path = Path(config_path or DEFAULT_CONFIG_PATH)
        self._env = env
        self.error: ConfigError | None = None
        """The refused hand edit, while config.yaml stays invalid."""
        self.loaded_at = time.time()
        self.restart_pending: list[str] = []
        self.listeners: list[Callable[[], None]] = []
        """Called after every applied change (e.g. re-probe peers with the new URLs)."""
        self._lock = asyncio.Lock()
        self._signature = _signature(self.path)
        self._existed = self._signature is not None
        self._reported: tuple[Any, str] | None = None
        self._unsaved: dict[str, Any] = {}
        """Posted changes config.yaml could not take: live, and the base of the next post."""
        self.unsaved_reason: str | None = None
        """Why the posted changes are not in config.yaml (e.g. it is read-only), while they are not."""
        # An absent or empty file means "all defaults" only while the running config came from
        # one; once it came from a document, an empty file is a save in progress (module docs).
        self._blank_ok = True
        # Start-up values of the restart-only keys as the file (plus env) gave them; a --port on
        # the command line is not "a change in the file".
        self._baseline = holder.current
        if self._existed:
            with contextlib.suppress(ConfigError):
                raw = self._load_raw()[0]
                self._blank_ok = not raw
                self._baseline = config_from_mapping(raw, self.env)
        holder.on_change(self._reconfigure_logging)
        _log_unserved(holder.current)

    @property
    def env(self) -> Mapping[str, str]:
        return os.environ if self._env is None else self._env

    def _load_raw(self) -> tuple[dict[str, Any], str | None]:
        """The file's mapping; absent or empty is an error unless the running config came from that."""
        if not self.path.exists():
            if not self._blank_ok:
                raise ConfigError(str(self.path), "file not found (deleted or renamed)")
            return {}, None
        try:
            return load_raw(str(self.path), self.env, allow_empty=self._blank_ok)
        except ConfigError as exc:
            if exc.reason != EMPTY_FILE_REASON:
                raise
            raise ConfigError(exc.key, f"{EMPTY_FILE_REASON} (a save in progress?); it is read again when it "
                                       "changes (to run on the defaults, restart with it empty)") from None

    # -- what /health shows ---------------------------------------------------------------
    def problem(self) -> str | None:
        if self.error is None:
            return None
        return f"config.yaml edit not applied, running the last good config: {self.error}"

    def warnings(self) -> list[str]:
        config = self.holder.current
        out = []
        problem = self.problem()
        if problem:
            out.append(problem)
        if config.chatwoot.allow_unsigned:
            out.append("chatwoot.allow_unsigned is on: webhook signatures are not checked")
        elif not config.chatwoot.webhook_secrets:
            out.append("chatwoot.webhook_secret is empty: every webhook is refused (401)")
        if config.server.admin_token and len(config.server.admin_token) < 32:
            out.append("server.admin_token is shorter than 32 characters")
        out += [f"{key} changed in config.yaml: restart the sidecar to apply it" for key in self.restart_pending]
        out += unserved_warnings(config)
        if self.unsaved_reason:
            out.append(f"changes made through POST /config are live but not saved ({self.unsaved_reason}): "
                       f"they last until the next restart or the next edit of the file")
        return out

    # -- kv for the console ---------------------------------------------------------------
    async def publish(self) -> None:
        status = {"valid": self.error is None, "error": str(self.error) if self.error else None,
                  "path": str(self.path), "loaded_at": self.loaded_at}
        effective = masked_config_dict(self.holder.current)

        def write(tx: Tx) -> None:
            now = time.time()
            tx.documents.put(CONFIG_STATUS, status, now)
            tx.documents.put(CONFIG_EFFECTIVE, effective, now)

        try:
            await self._state.write(write)
        except StateError as exc:
            log_event(log, "config.publish_failed", level=30, error=str(exc))

    # -- applying -------------------------------------------------------------------------
    def _restart_keys(self, new: Config) -> list[str]:
        return [key for key in RESTART_KEYS if _get(new, key) != _get(self._baseline, key)]

    async def _apply(self, new: Config, *, actor: str, source: str) -> tuple[dict[str, Any], list[str]]:
        running = self.holder.current
        restart = self._restart_keys(new)
        effective = _keep_running(running, new)
        changes = config_changes(running, effective)
        fresh_restart = [k for k in restart if k not in self.restart_pending]
        for key in fresh_restart:
            changes[key] = {"old": _get(running, key), "new": _get(new, key), "applies": "after a restart"}
        self.restart_pending = restart
        self.loaded_at = time.time()
        if changes:
            self.holder.replace(effective)
            try:
                await self._state.write(lambda tx: tx.audit.config_change(actor, list(changes), changes, time.time()))
            except StateError as exc:
                log_event(log, "config.audit_failed", level=40, error=str(exc))
            log_event(log, "config.applied", source=source, actor=actor, keys=",".join(changes),
                      restart_required=",".join(restart) or None)
            if effective.unserved_crews != running.unserved_crews:
                _log_unserved(effective)
            self._metrics.inc("connector_config_reloads_total", source=source, outcome="applied")
            for listener in list(self.listeners):
                listener()
        else:
            self._metrics.inc("connector_config_reloads_total", source=source, outcome="unchanged")
        await self.publish()
        return changes, restart

    def _reconfigure_logging(self, old: Config, new: Config) -> None:
        if dataclasses.replace(old.logging, dir=new.logging.dir) != new.logging:
            reconfigure(level=new.logging.level, as_json=new.logging.json, max_bytes=new.logging.max_bytes,
                        backup_count=new.logging.backup_count)

    # -- the file watcher -----------------------------------------------------------------
    async def watch(self, interval: float = WATCH_INTERVAL_SECONDS) -> None:
        """Background task: applies hand edits of config.yaml (see module docs)."""
        await self.publish()
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check_file()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the watcher must survive any one bad edit
                log.exception("config watcher failed")

    async def check_file(self) -> None:
        async with self._lock:
            signature = _signature(self.path)
            if signature == self._signature:
                return
            self._signature = signature
            if signature is None and not self._existed:
                return  # running on defaults without a file, and there still is none
            try:
                if signature is None:
                    raise ConfigError(str(self.path), "file not found (deleted or renamed)")
                self._existed = True
                raw, source = self._load_raw()
                new = config_from_mapping(raw, self.env, source_path=source)
            except ConfigError as exc:
                await self._refuse(exc)
                return
            recovered = self.error is not None
            self.error = None
            self._reported = None
            self._blank_ok = not raw
            if recovered:
                log_event(log, "config.recovered", path=str(self.path))
            if self._unsaved:
                # The operator edited the file: it is the config now, posted changes included or not.
                log_event(log, "config.unsaved_dropped", level=30, keys=",".join(self._unsaved),
                          reason="config.yaml was edited; changes posted but not saved are replaced by it")
                self._unsaved, self.unsaved_reason = {}, None
            await self._apply(new, actor="file", source="file")

    async def _refuse(self, exc: ConfigError) -> None:
        self.error = exc
        # One line per distinct problem: an editor saving the same broken file twice must not
        # flood the log.
        if self._reported != (exc.key, exc.reason):
            self._reported = (exc.key, exc.reason)
            log_event(log, "config.invalid", level=40, path=str(self.path), key=exc.key, reason=exc.reason,
                      action="kept the last good config")
            self._metrics.inc("connector_config_reloads_total", source="file", outcome="rejected")
        await self.publish()
        for listener in list(self.listeners):
            listener()

    # -- POST /config ---------------------------------------------------------------------
    async def post(self, document: Any, *, actor: str) -> ApplyResult:
        if not isinstance(document, dict):
            return _rejected(400, "config", "the body must be a JSON object (a partial config.yaml)")
        if set(document) <= _ENVELOPE_KEYS and isinstance(document.get("config"), dict):
            document = document["config"]  # GET /config's answer sent back as it is
        async with self._lock:
            try:
                raw, source = self._load_raw()
            except ConfigError as exc:
                return _rejected(409, exc.key, f"config.yaml cannot be read, fix the file first: {exc.reason}")
            running = self.holder.current
            try:
                patch = strip_masked_echoes(drop_env_masks(document, self.env), masked_config_dict(running),
                                            config_to_dict(running))
                # Earlier posts the file could not take are still live: build on them.
                pending = deep_merge(self._unsaved, patch)
                merged = deep_merge(raw, pending)
                new = config_from_mapping(merged, self.env, source_path=source or str(self.path))
                text = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
                rendered = render_patched_yaml(text, pending)
            except ConfigError as exc:
                self._metrics.inc("connector_config_reloads_total", source="api", outcome="rejected")
                if self.error is not None:
                    # The file itself is broken (a hand edit): say so instead of blaming the patch.
                    return _rejected(409, exc.key, f"{exc.reason} (config.yaml is invalid: fix the file first, "
                                                   f"or post a valid value for this key)")
                return _rejected(400, exc.key, exc.reason)
            if not self._round_trips(rendered, new):
                # A bug of ours, not the operator's: say so in the log, where it can be reported.
                reason = "the rewritten config.yaml would not load back the same"
                log_event(log, "config.post_failed", level=40, actor=actor, keys=",".join(pending), reason=reason)
                self._metrics.inc("connector_config_reloads_total", source="api", outcome="failed")
                return _rejected(500, "config", reason)
            try:
                write_atomically(self.path, rendered)
            except OSError as exc:
                # Still applied: the operator asked for the change, and refusing it would not make
                # the file writable (compose mounts it read-only). The answer says it is not kept.
                self._unsaved, self.unsaved_reason = pending, _why_not_written(self.path, exc)
                log_event(log, "config.not_persisted", level=30, path=str(self.path), keys=",".join(pending),
                          reason=self.unsaved_reason)
            else:
                self._signature = _signature(self.path)  # our own write is not a hand edit
                self._existed, self._blank_ok = True, False
                self._unsaved, self.unsaved_reason = {}, None
                self.error = None
                self._reported = None
            changes, restart = await self._apply(new, actor=actor, source="api")
        body: dict[str, Any] = {
            "status": "applied" if changes else "unchanged",
            "changed": list(changes),
            "restart_required": restart,
            "overridden_by_env": env_overridden(patch, self.env),
            "persisted": self.unsaved_reason is None,
        }
        if self.unsaved_reason is not None:
            body["warning"] = f"{self.unsaved_reason}: the change is live until the next restart"
        body["warnings"] = self.warnings()
        body["config"] = masked_config_dict(self.holder.current)
        return ApplyResult(200, body)

    def _round_trips(self, text: str, expected: Config) -> bool:
        """The text we are about to write loads back into exactly the validated config (with
        the start-up loader: PyYAML reads YAML 1.1, where ruamel's defaults differ)."""
        try:
            data = parse_yaml(str(self.path), text) or {}
            return config_from_mapping(data, self.env, source_path=expected.source_path) == expected
        except ConfigError:
            return False


def _log_unserved(config: Config) -> None:
    if config.unserved_crews:
        log_event(log, "config.unserved_crews", level=30, crews=",".join(config.unserved_crews),
                  action="their messages fail: list them under crews: or set mcp_crew.api_url")


def _rejected(status: int, key: str, reason: str) -> ApplyResult:
    return ApplyResult(status, {"status": "rejected", "key": key, "error": f"{key}: {reason}"})

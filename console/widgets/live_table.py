"""Provides LiveTable: a DataTable that can be refreshed every second without losing its place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import RenderableType
from rich.text import Text
from textual.render import measure
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowDoesNotExist

Row = tuple[str, Sequence[RenderableType]]
"""A row key and its cells (cells with customer text must be ``rich.text.Text``)."""


def _signature(cell: RenderableType) -> Any:
    if isinstance(cell, Text):
        return (cell.plain, str(cell.style), tuple(cell.spans))
    return repr(cell)


class LiveTable(DataTable[RenderableType]):
    """A row-cursor table fed with whole snapshots.

    When the same rows come back, only changed cells are updated, so the cursor and the
    scroll position stay put; when rows come and go, the table is rebuilt and the cursor
    follows the row it was on.
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self._keys: list[str] = []
        self._signatures: list[tuple[Any, ...]] = []
        self._column_keys: list[str] = []

    def set_columns(self, *columns: tuple[str, str]) -> None:
        """Declares the columns once: (key, label) pairs."""
        for key, label in columns:
            self.add_column(label, key=key)
            self._column_keys.append(key)

    @property
    def current_key(self) -> str | None:
        """The key of the row under the cursor, if any."""
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except (CellDoesNotExist, RowDoesNotExist):
            return None
        return row_key.value

    def sync(self, rows: Sequence[Row]) -> bool:
        """Shows exactly ``rows``; returns False when nothing changed."""
        keys = [key for key, _ in rows]
        signatures = [tuple(_signature(c) for c in cells) for _, cells in rows]
        if keys == self._keys and signatures == self._signatures:
            return False
        self._fit_columns(rows)
        if keys == self._keys:
            for (key, cells), new, old in zip(rows, signatures, self._signatures, strict=True):
                for column, cell, a, b in zip(self._column_keys, cells, new, old, strict=True):
                    if a != b:
                        self.update_cell(key, column, cell, update_width=True)
        else:
            self._rebuild(rows)
        self._keys, self._signatures = keys, signatures
        return True

    def _fit_columns(self, rows: Sequence[Row]) -> None:
        # DataTable measures new widths only on its next idle, and it caches rendered cells
        # without their width: a repaint in between kept a grown value cut ("paus…") until
        # the next change. Setting now the widths it would compute leaves idle nothing to do.
        console = self.app.console
        for index, key in enumerate(self._column_keys):
            column = self.columns[ColumnKey(key)]
            column.content_width = max([measure(console, column.label, 1),
                                        *(measure(console, cells[index], 1) for _, cells in rows)])

    def _rebuild(self, rows: Sequence[Row]) -> None:
        current, old_row = self.current_key, self.cursor_row
        scroll_y = self.scroll_y
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        if not rows or current is None:
            # First fill: leave the cursor at the top. Moving it now would render (and cache)
            # lines before the column widths are settled, leaving stale header lines behind.
            return
        target = min(old_row, len(rows) - 1)
        if current in {k for k, _ in rows}:
            target = self.get_row_index(current)
        if target == 0 and scroll_y == 0:
            return
        self.move_cursor(row=target, animate=False, scroll=False)
        self.scroll_to(y=scroll_y, animate=False, immediate=True)
        if not self.is_visible_row(target):
            self.move_cursor(row=target, animate=False, scroll=True)

    def is_visible_row(self, row: int) -> bool:
        top = int(self.scroll_y)
        return top <= row < top + max(self.scrollable_content_region.height - 1, 1)

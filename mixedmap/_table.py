"""Rich tables that keep whole the cells saying which row or column is which, at any width.

rich fits a table to the terminal by shrinking its widest wrappable columns and, when that
is not enough, every column evenly: at 80 columns ``x86_64/2.6.26`` became ``x86_64/2.…`` and
2.6.26, 2.6.27 and 6.18 rows could not be told apart. Here key columns never wrap (rich
shrinks them only as a last resort), figures give their room to prose before rich levels
the columns, and a side-by-side table with one column per key comes as several tables that
each fit. Both decide when rendered, for the width they are given. The lower layers' reports
and the CLI all build their tables here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, JustifyMethod, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Column, Table
from rich.text import Text

#: a side-by-side key column is at least this wide when its cells are: any narrower and
#: "fast_pages=6400 slow_pages=0" reads one word a line
KEY_CELL = 15
#: a wrappable leading column (a step's label) keeps at least this much of its width
LEAD_MIN = 12
#: what one column adds to a table besides its content: padding (0, 1) and one border
_COLUMN_EXTRA = 3
_NATURAL = 1 << 16

Spec = str | Column
Row = tuple[Sequence[RenderableType], Sequence[RenderableType]]


def key_column(spec: Spec, **options: Any) -> Column:
    """A column that names its row: it never wraps, so rich shrinks it only as a last resort."""
    col = spec.copy() if isinstance(spec, Column) else Column(spec)
    return dataclasses.replace(col, no_wrap=True, **options)


def column(spec: Spec) -> Column:
    """Any other column: it wraps, and folds a word too long for it rather than cutting it.
    A :class:`Column` given as such is taken as it is (a copy: a table fills its columns)."""
    return spec.copy() if isinstance(spec, Column) else Column(spec, overflow="fold")


def _plain(console: Console, cell: RenderableType) -> RenderableType:
    return console.render_str(cell) if isinstance(cell, str) else cell


def _range(console: Console, cells: Iterable[RenderableType]) -> tuple[int, int]:
    """(longest word, longest line) over ``cells``, as rich measures them."""
    options = console.options.update_width(_NATURAL)
    lo = hi = 0
    for cell in cells:
        m = Measurement.get(console, options, _plain(console, cell))
        lo, hi = max(lo, m.minimum), max(hi, m.maximum)
    return lo, hi


def _natural(console: Console, table: Table) -> int:
    """The width ``table`` takes when nothing limits it."""
    return console.measure(table, options=console.options.update_width(_NATURAL)).maximum


def _one_word(console: Console, cell: RenderableType) -> bool:
    text = _plain(console, cell)
    return isinstance(text, Text) and len(text.plain.split()) <= 1


class KeyedTable(Table):
    """A :class:`Table` that, when too wide, first narrows its one-word wrappable columns
    (figures, hex, names) to their longest word so its prose columns keep the room; rich
    would otherwise level the widest columns alike and leave prose one word a line. It owns
    the ``max_width`` of those columns."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        figures = [
            c
            for c in self.columns
            if not c.no_wrap and c.width is None and all(_one_word(console, x) for x in c.cells)
        ]
        for c in figures:
            c.max_width = None
        if _natural(console, self) > options.max_width:
            for c in figures:
                c.max_width = _range(console, [c.header, *c.cells])[0]
        yield from super().__rich_console__(console, options)


def keyed_table(keys: Sequence[Spec], columns: Sequence[Spec] = (), **options: Any) -> KeyedTable:
    """A table whose leading ``keys`` columns stay whole (``options`` go to :class:`Table`)."""
    return KeyedTable(*(key_column(k) for k in keys), *(column(c) for c in columns), **options)


def _arch_of(key: str) -> str:
    return key.split("/", 1)[0]


def _chunks(groups: Sequence[Sequence[int]], need: Sequence[int], budget: int) -> list[list[int]]:
    """Pack key columns into tables of at most ``budget`` columns of width, whole groups
    (one arch's kernels) together when they fit, a too-wide group key by key."""
    chunks: list[list[int]] = []
    cur: list[int] = []
    used = 0
    for g in groups:
        width = sum(need[i] for i in g)
        parts = [list(g)] if width <= budget else [[i] for i in g]
        for part in parts:
            w = sum(need[i] for i in part)
            if cur and used + w > budget:
                chunks.append(cur)
                cur, used = [], 0
            cur += part
            used += w
    if cur:
        chunks.append(cur)
    return chunks


def _level(widest: Sequence[int], floors: Sequence[int], room: int) -> int:
    """The largest width L with sum(min(w, max(L, floor))) <= room: every column wider
    than L cut to L, none below its floor (0 when even the floors do not fit)."""
    lo, hi = 0, max(widest, default=0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(min(w, max(mid, f)) for w, f in zip(widest, floors, strict=True)) <= room:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclasses.dataclass
class SideBySide:
    """One column per key (an ``arch/kernel``, a test area) after the ``lead`` columns, each
    row ``(lead cells, one cell per key)``. Rendered as one table when that fits, else as
    tables that repeat the lead columns and split the keys, one ``group`` (by default the
    arch before ``/``) to a table where it fits, every key whole. The widths reckoned here
    are those of rich's default box and cell padding."""

    lead: Sequence[Spec]
    keys: Sequence[str]
    rows: Sequence[Row]
    title: str
    justify: JustifyMethod = "left"
    group: Callable[[str], str] = _arch_of
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def _table(self, idx: Sequence[int], widths: Sequence[int] | None, title: str) -> Table:
        cols = [
            Column(
                self.keys[i],
                justify=self.justify,
                overflow="fold",
                width=None if widths is None else widths[i],
            )
            for i in idx
        ]
        table = KeyedTable(*(column(c) for c in self.lead), *cols, title=title, **self.options)
        for lead_cells, key_cells in self.rows:
            table.add_row(*lead_cells, *(key_cells[i] for i in idx))
        return table

    def tables(self, console: Console, width: int) -> list[Table]:
        """The tables for ``width`` columns."""
        whole = self._table(range(len(self.keys)), None, self.title)
        if not self.keys or _natural(console, whole) <= width:
            return [whole]
        lead_hi, lead_need = [], []
        for j, spec in enumerate(self.lead):
            col = column(spec)
            hi = _range(console, [col.header, *(r[0][j] for r in self.rows)])[1]
            lead_hi.append(hi)
            lead_need.append(hi if col.no_wrap else min(hi, LEAD_MIN))
        key_hi, need = [], []
        for i, key in enumerate(self.keys):
            hi = max(cell_len(key), _range(console, (r[1][i] for r in self.rows))[1])
            key_hi.append(hi)
            need.append(max(cell_len(key), min(hi, KEY_CELL)))
        groups: list[list[int]] = []
        for i, key in enumerate(self.keys):
            if groups and self.group(self.keys[groups[-1][0]]) == self.group(key):
                groups[-1].append(i)
            else:
                groups.append([i])
        budget = width - 1 - sum(n + _COLUMN_EXTRA for n in lead_need)
        cost = [n + _COLUMN_EXTRA for n in need]
        chunks = _chunks(groups, cost, budget)
        # as few tables as that, and as even: the narrowest budget that still packs them so
        for narrower in range(max(cost), budget):
            if len(even := _chunks(groups, cost, narrower)) == len(chunks):
                chunks = even
                break
        tables = []
        for n, idx in enumerate(chunks, 1):
            title = self.title if len(chunks) == 1 else f"{self.title} ({n}/{len(chunks)})"
            table = self._table(idx, None, title)
            if _natural(console, table) > width:
                # rich's levelling of the widest columns, but not below a key's need, in fixed
                # widths rich leaves alone; the lead columns get the rest
                room = width - 1 - _COLUMN_EXTRA * (len(self.lead) + len(idx))
                level = _level(
                    [*lead_hi, *(key_hi[i] for i in idx)], [*lead_need, *(need[i] for i in idx)], room
                )
                widths = [min(h, max(level, n)) for h, n in zip(key_hi, need, strict=True)]
                table = self._table(idx, widths, title)
            tables.append(table)
        return tables

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.tables(console, options.max_width)


def side_by_side(
    lead: Sequence[Spec],
    keys: Sequence[str],
    rows: Sequence[Row],
    *,
    title: str,
    justify: JustifyMethod = "left",
    group: Callable[[str], str] = _arch_of,
    **options: Any,
) -> SideBySide:
    """A :class:`SideBySide` (``options`` go to each :class:`Table`)."""
    return SideBySide(lead, keys, rows, title, justify, group, options)

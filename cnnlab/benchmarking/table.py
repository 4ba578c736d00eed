"""A benchmark's table: aligned lines for the terminal, one CSV row per contender, and the notes that say how."""

import csv
from dataclasses import dataclass, field

from cnnlab import files
from cnnlab.console import aligned


@dataclass
class Table:
    """What `cnnlab benchmark` prints and writes.

    Attributes:
        title: the lines above the table (what was measured, where).
        header: the terminal's column names; `rows`: their cells, one list per contender.
        right: the indices of the columns aligned right (numbers).
        records: one dict per contender, the CSV's rows (raw numbers, spreads as min and max).
        notes: the lines below the table: how each figure was measured.
    """

    title: list
    header: list
    right: tuple
    rows: list = field(default_factory=list)
    records: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def add(self, cells, record):
        """One contender: its terminal cells and its CSV row."""
        self.rows.append([str(cell) for cell in cells])
        self.records.append(record)

    def lines(self):
        """The terminal table: title, header and rows aligned, then the notes."""
        return [*self.title, *aligned([self.header, *self.rows], self.right), *([""] + self.notes if self.notes
                                                                               else [])]

    def columns(self):
        """The CSV's columns: every record's keys, in the order they first appear."""
        return list(dict.fromkeys(key for record in self.records for key in record))

    def write_csv(self, path):
        """The records as CSV at `path`, atomically."""
        with files.atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=self.columns())
            writer.writeheader()
            writer.writerows(self.records)


def spread_fields(name, spread):
    """A figure's CSV fields: ``name`` (the median), ``name_min`` and ``name_max``; empty without a figure."""
    if spread is None:
        return {name: "", f"{name}_min": "", f"{name}_max": ""}
    return {name: round(spread.median, 6), f"{name}_min": round(spread.low, 6), f"{name}_max": round(spread.high, 6)}


def millions(count):
    """``138.4M``, ``950k``, ``12``."""
    if count >= 1e6:
        return f"{count / 1e6:,.1f}M"
    return f"{count / 1e3:,.0f}k" if count >= 1e4 else f"{count:,}"


def operations(count):
    """Operations with their unit: ``15.47G``, ``311.4M``, ``820.5k``."""
    for unit, scale in (("G", 1e9), ("M", 1e6)):
        if count >= scale:
            return f"{count / scale:,.{2 if unit == 'G' else 1}f}{unit}"
    return f"{count / 1e3:,.1f}k"

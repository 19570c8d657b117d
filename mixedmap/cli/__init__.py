"""The ``mixedmap`` command line: the only application in the package, and its top layer
(it may import anything in mixedmap; nothing else in mixedmap imports it).

One module per command group, :mod:`mixedmap.cli.main` putting them together, and
:mod:`mixedmap.cli.common` for what they share: options, logging (to stderr; stdout belongs
to reports), rich output that fits 80 columns, and ``--json`` for scripts.
"""

from mixedmap.cli.main import entry, run

__all__ = ["entry", "run"]

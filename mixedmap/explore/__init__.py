"""The page-table explorer: the library's walks, layouts and scenario runs as a web page.

:mod:`mixedmap.explore.api` turns library calls into JSON-ready records (nothing is computed
here that the library does not compute), :mod:`mixedmap.explore.app` serves them and the page
over a loopback Starlette app, and :mod:`mixedmap.explore.html` writes one scenario run as a
single self-contained HTML file.
"""

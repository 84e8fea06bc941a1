"""``personae serve``: read-only pages over a Personae database, and the one-file HTML export.

Above the library: it reads through the store (``Store.open_readonly``) and the memory and quality
modules, and nothing in the library imports it. ``pages.py`` builds what each page shows as plain
dicts (also its ``?format=json``), ``render.py`` the HTML, ``app.py`` the routes, ``access.py``
the token and headers, ``serve.py`` the server, ``export.py`` the frozen page, ``datasette.py``
the metadata that makes the same database readable in Datasette.
"""

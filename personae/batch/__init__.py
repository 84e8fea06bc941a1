"""Sweeps: many runs of the same scenarios under varied settings (``personae batch``).

Above the orchestrator: it uses the run loop, the store and the quality scorer, and nothing in
the library imports it. ``sweep.py`` reads the sweep file and expands it into variants,
``rows.py`` stores the batch and its variants, ``runner.py`` runs them on worker threads,
``start.py`` starts or resumes a batch, ``report.py`` compares the variants.
"""

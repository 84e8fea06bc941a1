"""Bringing work from other agent frameworks into Personae files (`personae import …`).

An importer reads another framework's configuration and writes ordinary persona and scenario
YAML, which a user can read, change and run like any other. It sits above the library (it uses
``personae.config`` to check what it wrote) and nothing in the library imports it.
"""

"""The store's inventory kiosk: subscribes to every device of a store, holds the planogram, raises
incidents that a person owns, runs reconciliation counts, keeps history in SQLite and serves a web page.

``kiosk`` imports ``edge`` (schemas, messages, credentials, errors); nothing imports ``kiosk``.
Entry point: ``gemsight-kiosk`` (:mod:`kiosk.cli`).
"""

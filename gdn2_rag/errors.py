"""Errors the library raises for problems a user can fix. The CLI prints them as one line and exits 2."""


class RagError(Exception):
    """Base class: a user-fixable problem (bad path, no index, bad option). Message is one line."""

"""Search sources behind one interface, chosen by name: `get_source(name, settings)`."""

from harvest.sources.base import (
    Hit,
    Page,
    Source,
    SourceError,
    get_source,
    register_source,
    source_names,
)

__all__ = ["Hit", "Page", "Source", "SourceError", "get_source", "register_source", "source_names"]

"""Errors for problems a user can fix: each message is one line the CLI can print as-is (exit 2)."""

from __future__ import annotations


class IngestError(Exception):
    """Base class for user-fixable ingest and index problems."""


class MissingPathError(IngestError):
    """A path given to ingest does not exist."""


class IndexNotFoundError(IngestError):
    """No index (or no finished generation of one) at the given folder."""


class EmbedderMismatchError(IngestError):
    """The index was built with a different embedder than the one requested."""


class IndexFormatError(IngestError):
    """The index folder was written by an incompatible format version or is damaged."""


class IndexUpgradeNeededError(IndexFormatError):
    """The index has an earlier format that `rag upgrade` (gdn2_ingest.upgrade) converts in place."""


class IndexLockedError(IngestError):
    """Another ingest holds the index lock and did not release it in time."""


class EmbedderLoadError(IngestError):
    """The embedding model could not be loaded from the configured path."""


class IndexBrokenError(IndexFormatError):
    """A file of the live (or a just-built) generation is missing, truncated or disagrees with the others."""


class IndexPathError(IngestError):
    """The index path is not a folder that can be created or written (e.g. it is a regular file)."""


class DiskSpaceError(IngestError):
    """Not enough free disk space (or a file-size limit) for the new index generation."""


class VectorStoreError(IngestError):
    """The index's vector store (a Qdrant server or embedded folder) cannot be used: unreachable,
    missing its extra, open in another process, or not the store the index records."""

"""Progress bars (files, chunks, embedding) and the closing summary, on stderr via rich; silent when off."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from gdn2_ingest.types import IngestReport


class Feedback:
    """Terminal feedback for one ingest run; `enabled=False` prints nothing at all."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._console = None
        if enabled:
            from rich.console import Console

            self._console = Console(stderr=True)

    @contextmanager
    def bar(self, label: str, total: int) -> Iterator[Callable[[int], None]]:
        """Yield `advance(n=1)`; a no-op when disabled or there is nothing to do."""
        if not self.enabled or total == 0:
            yield lambda n=1: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=self._console, transient=False,
        ) as prog:  # fmt: skip
            task = prog.add_task(label, total=total)
            yield lambda n=1: prog.advance(task, n)

    def finish(self, report: IngestReport) -> None:
        """One line per skipped file, then the summary line."""
        if not self.enabled:
            return
        from rich.markup import escape

        from gdn2_ingest.scan import display_path

        for s in report.skipped:
            # paths and reasons may hold brackets ('[.1.gz', '[bold].txt') that rich would read as markup;
            # soft_wrap keeps each on one line (a path folded at the terminal width cannot be copied)
            line = f"[yellow]skipped[/] {escape(f'{display_path(s.path)}: {s.reason}')}"
            self._console.print(line, highlight=False, soft_wrap=True)
        self._console.print(f"[bold]ingest[/] {report.summary()}", highlight=False, soft_wrap=True)

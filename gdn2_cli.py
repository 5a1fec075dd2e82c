"""The `rag` command line: thin wrappers over the gdn2_rag/ library.

Conventions for every command: user errors print one line to stderr and exit 2 (traceback with
--debug), internal failures exit 1; `--json` prints data for scripts; `-v` adds timings.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from gdn2_rag import __version__
from gdn2_rag.errors import RagError


def _click_exceptions():
    """The click exception classes typer raises: typer >= 0.25 vendors click as typer._click."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


class _OneLineUsageErrors(TyperGroup):
    """Usage errors (bad option value, unknown option, missing argument) as one stderr line, exit 2.

    typer's default draws a multi-line box; every other error of the CLI is one `error:` line.
    """

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        exc_types = _click_exceptions()
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except exc_types.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                # `rag` alone: the help text, as no_args_is_help promises
                exc.show()
                sys.exit(exc.exit_code)
            where = f" (see `{exc.ctx.command_path} -h`)" if exc.ctx is not None else ""
            message = " ".join(exc.format_message().split())
            err_console.print(f"[bold red]error:[/] {escape(message)}{escape(where)}", highlight=False)
            sys.exit(2)
        except exc_types.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            err_console.print("[bold red]error:[/] aborted", highlight=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="rag",
    cls=_OneLineUsageErrors,
    help="Ask questions over your documents, answered by a Gated DeltaNet-2 reader with cited sources.",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# soft_wrap: an error stays one line however narrow the terminal
err_console = Console(stderr=True, soft_wrap=True)


class _State:
    debug: bool = False
    verbose: bool = False
    threads: int | None = None


state = _State()


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"rag {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Print timings per stage.")] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="CPU threads for reading and embedding (default: the cores this process can really use: "
            "affinity, cgroup quota, less those other work keeps busy).",
            show_default=False,
        ),
    ] = None,
) -> None:
    state.debug = debug
    state.verbose = verbose
    state.threads = threads


def fail(message: str, code: int = 2) -> None:
    """Print one error line to stderr and exit with `code`."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code=code)


def _user_error_types() -> tuple[type[BaseException], ...]:
    """RagError plus ingest's IngestError (imported lazily: the CLI must start fast)."""
    try:
        from gdn2_ingest.errors import IngestError
    except ImportError:
        return (RagError,)
    return (RagError, IngestError)


def run_guarded(fn, *args, **kwargs):
    """Call library code; turn user errors into one line + exit 2, crashes into exit 1."""
    try:
        return fn(*args, **kwargs)
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except BrokenPipeError:
        # the reader of stdout went away (`rag ask --json | head -1`): stop quietly, as rich does;
        # stdout goes to /dev/null so the interpreter's final flush does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(code=1) from None
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - the CLI boundary reports any crash as one line
        if state.debug:
            raise
        if isinstance(exc, _user_error_types()):
            fail(str(exc), code=2)
        fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", code=1)


IndexOpt = Annotated[
    str, typer.Option("--index", "-i", help="Index folder (created by `rag ingest`).", show_default=True)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
DomainOpt = Annotated[
    str | None, typer.Option("--domain", "-d", help="Only chunks of this domain: legal | support | code.")
]
PathOpt = Annotated[
    str | None,
    typer.Option("--path", help="Only chunks whose file path matches this glob (e.g. '*.py', 'docs/*.md')."),
]
TopKOpt = Annotated[int | None, typer.Option("--top-k", "-k", min=1, help="Number of passages to use.")]
ContextTokensOpt = Annotated[
    int | None,
    typer.Option(
        "--context-tokens",
        "-c",
        min=64,
        help="Reader-token budget of the assembled context (default 100000; 4000 when the reader runs "
        "on CPU).",
        show_default=False,
    ),
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="Reader checkpoint folder (default: the shipped reader).")
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu | cuda (default: cuda when available).")]
ReaderOpt = Annotated[
    bool | None,
    typer.Option(
        "--reader/--no-reader",
        help="--reader: answer with the GDN-2 reader (an error if it cannot load). --no-reader: answer from "
        "the retrieved evidence without loading it. Default: the reader only where its checkpoint is "
        "calibrated to beat retrieval.",
        show_default=False,
    ),
]
AbstainOpt = Annotated[
    bool,
    typer.Option(
        "--abstain",
        help="Answer 'the documents do not seem to answer this' when the question names something no "
        "indexed document mentions, or no retrieved passage is close to it (threshold calibrated per "
        "embedder; off by default, see the README).",
    ),
]
DEFAULT_INDEX = ".rag"


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files or folders to ingest.")],
    index: IndexOpt = DEFAULT_INDEX,
    domain: Annotated[str, typer.Option(help="legal | support | code | auto (detected per file).")] = "auto",
    max_file_mb: Annotated[
        float,
        typer.Option(
            "--max-file-mb",
            min=0.000001,
            help="Skip files larger than this many megabytes (1 MB = 1,000,000 bytes); each skipped file is "
            "listed with the reason, and a later run with a higher limit retries it.",
        ),
    ] = 50.0,
    engine: Annotated[
        str,
        typer.Option(
            help="Where files are loaded, chunked and embedded: local (this process) or ray (Ray Data "
            "workers; pip install 'gdn2-rag\\[ray]'). The index is the same either way.",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join with --engine ray (e.g. auto); default: a Ray on this host."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Ray workers with --engine ray (default: every CPU of the cluster)."),
    ] = None,
    vector_store: Annotated[
        str | None,
        typer.Option(
            "--vector-store",
            help="Where a new index keeps its vectors: faiss (in the index folder; the default) or qdrant "
            "(pip install 'gdn2-rag\\[qdrant]'). Recorded in the index: later commands use it without flags.",
            show_default=False,
        ),
    ] = None,
    qdrant_url: Annotated[
        str | None, typer.Option("--qdrant-url", help="Qdrant server or cluster, e.g. http://localhost:6333.")
    ] = None,
    qdrant_path: Annotated[
        str | None,
        typer.Option(
            "--qdrant-path", help="Folder for embedded Qdrant (one process at a time) instead of a server."
        ),
    ] = None,
    qdrant_collection: Annotated[
        str | None,
        typer.Option("--qdrant-collection", help="Collection name (default: gdn2-<index folder>-<hash>)."),
    ] = None,
    qdrant_api_key_file: Annotated[
        str | None,
        typer.Option(
            "--qdrant-api-key-file", help="File holding the server's API key (the index records the path)."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Chunk, embed and index documents (incremental: only new or changed files are embedded).

    An ingest builds a new index generation next to the live one, checks it, switches to it and then
    deletes the old one: it first checks that the disk has room for it (-v and --json report the
    estimate). A second ingest of the same index waits for the first (and says so).
    """

    from gdn2_rag.api import ingest_command, vector_store_config

    run_guarded(
        ingest_command,
        paths,
        index=index,
        domain=domain,
        json_out=json_out,
        verbose=state.verbose,
        max_file_bytes=max(1, round(max_file_mb * 1_000_000)),
        threads=state.threads,
        notify=lambda line: err_console.print(escape(line), highlight=False),
        engine=engine,
        address=address,
        workers=workers,
        vector_store=vector_store_config(
            vector_store, qdrant_url, qdrant_path, qdrant_collection, qdrant_api_key_file
        ),
    )


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    index: IndexOpt = DEFAULT_INDEX,
    context_tokens: ContextTokensOpt = None,
    top_k: TopKOpt = None,
    domain: DomainOpt = None,
    path_glob: PathOpt = None,
    json_out: JsonOpt = False,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    reader: ReaderOpt = None,
    abstain: AbstainOpt = False,
    generate: Annotated[
        bool,
        typer.Option("--generate", help="Also generate a free-text answer (checkpoints with an LM head)."),
    ] = False,
) -> None:
    """Answer a question from the index, citing files and lines.

    --json prints one object described by gdn2_rag/schemas/ask.schema.json.
    """
    from gdn2_rag.api import ask_command

    run_guarded(
        ask_command,
        question,
        index=index,
        json_out=json_out,
        verbose=state.verbose,
        context_tokens=context_tokens,
        top_k=top_k,
        domain=domain,
        path_glob=path_glob,
        model=model,
        device=device,
        reader=reader,
        generate=generate,
        threads=state.threads,
        abstain=abstain,
    )


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The search query.")],
    index: IndexOpt = DEFAULT_INDEX,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Number of passages to print.")] = 10,
    domain: DomainOpt = None,
    path_glob: PathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print ranked chunks with scores (hybrid dense + BM25).

    --json prints one object described by gdn2_rag/schemas/search.schema.json.
    """
    from gdn2_rag.api import search_command

    run_guarded(
        search_command,
        query,
        index=index,
        json_out=json_out,
        verbose=state.verbose,
        top_k=top_k,
        domain=domain,
        path_glob=path_glob,
    )


@app.command()
def remove(
    paths: Annotated[list[str], typer.Argument(help="Indexed files or folders to delete from the index.")],
    index: IndexOpt = DEFAULT_INDEX,
    json_out: JsonOpt = False,
) -> None:
    """Delete documents from the index (the files may already be gone from disk).

    Their chunks leave dense, keyword and metadata search together at once; `rag compact` (or the
    automatic compaction after updates) then drops them from disk.
    """
    from gdn2_rag.api import update_command

    notify = lambda line: err_console.print(escape(line), highlight=False)  # noqa: E731
    run_guarded(update_command, "remove", paths, index=index, json_out=json_out, notify=notify)


@app.command()
def compact(index: IndexOpt = DEFAULT_INDEX, json_out: JsonOpt = False) -> None:
    """Merge the index's segments into one; search results stay the same, deleted text leaves the disk."""
    from gdn2_rag.api import update_command

    notify = lambda line: err_console.print(escape(line), highlight=False)  # noqa: E731
    run_guarded(update_command, "compact", index=index, json_out=json_out, notify=notify)


@app.command()
def upgrade(index: IndexOpt = DEFAULT_INDEX, json_out: JsonOpt = False) -> None:
    """Upgrade an index of the previous release (format 2) in place, without re-embedding.

    Search results stay the same; `rag ingest` into such an index upgrades it first."""
    from gdn2_rag.api import upgrade_command

    notify = lambda line: err_console.print(escape(line), highlight=False)  # noqa: E731
    run_guarded(upgrade_command, index=index, json_out=json_out, notify=notify)


@app.command()
def info(index: IndexOpt = DEFAULT_INDEX, json_out: JsonOpt = False) -> None:
    """Print index statistics."""
    from gdn2_rag.api import info_command

    run_guarded(info_command, index=index, json_out=json_out)


@app.command()
def serve(
    index: IndexOpt = DEFAULT_INDEX,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; not loopback needs a key.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port.")] = 8000,
    api_key_file: Annotated[
        str | None,
        typer.Option(
            "--api-key-file",
            help="File holding the API key clients must send (Authorization: Bearer KEY); a file, not a "
            "flag, so the key stays out of `ps` and shell history.",
        ),
    ] = None,
    context_tokens: ContextTokensOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    reader: ReaderOpt = None,
    abstain: AbstainOpt = False,
    max_batch: Annotated[
        int, typer.Option("--max-batch", min=1, help="Reader contexts per packed pass.")
    ] = 32,
    batch_wait_ms: Annotated[
        float, typer.Option("--batch-wait-ms", min=0, help="How long a read waits for others to batch with.")
    ] = 5.0,
    max_queue: Annotated[int, typer.Option("--max-queue", min=1, help="Reads waiting before 429.")] = 128,
    max_inflight: Annotated[
        int, typer.Option("--max-inflight", min=1, help="Asks in progress before 429.")
    ] = 64,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", min=1, help="Largest request body (413 beyond).")
    ] = 65536,
) -> None:
    """Serve the index over HTTP: /ask, /search, /info, /health and OpenAI's /v1/chat/completions.

    `rag -v serve` logs a line per request.
    """
    from gdn2_rag.api import reader_config

    def start() -> None:
        # inside the guard: without the serve extra the import is a one-line RagError
        from gdn2_rag.serve.command import serve_command

        config = reader_config(model, device, reader, threads=state.threads, abstain=abstain)
        serve_command(
            index=index, host=host, port=port, api_key_file=api_key_file,
            config=config.with_(context_tokens=context_tokens), max_batch=max_batch,
            batch_wait_ms=batch_wait_ms, max_queue=max_queue, max_inflight=max_inflight,
            max_body_bytes=max_body_bytes, access_log=state.verbose,
        )  # fmt: skip

    run_guarded(start)


@app.command("eval")
def eval_(
    file: Annotated[
        str, typer.Argument(help="JSONL: one {question, answers: [...], source?, domain?} per line.")
    ],
    index: IndexOpt = DEFAULT_INDEX,
    k: Annotated[int, typer.Option("--k", min=1, help="Passages counted for retrieval hit@k.")] = 10,
    out: Annotated[str | None, typer.Option("--out", help="Also write the full JSON report here.")] = None,
    json_out: JsonOpt = False,
    context_tokens: ContextTokensOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    reader: ReaderOpt = None,
    abstain: AbstainOpt = False,
) -> None:
    """Score retrieval hit@k, answer EM/F1 and citation accuracy on your own question set.

    Run it twice, with and without --no-reader, to see what the reader adds over the best passage.
    """
    from gdn2_rag.api import reader_config
    from gdn2_rag.evaluate import eval_command

    def run() -> None:
        config = reader_config(model, device, reader, threads=state.threads, abstain=abstain)
        eval_command(
            file, index=index, k=k, json_out=json_out, out=out, config=config, context_tokens=context_tokens
        )

    run_guarded(run)


def _train_command(**kw) -> None:
    from gdn2_model.training_cli import prepare, train_run

    try:
        if kw.pop("prepare_data"):
            typer.echo(prepare(kw["data_dir"]))
        typer.echo(train_run(**kw))
    except (FileNotFoundError, ValueError) as exc:
        raise RagError(str(exc)) from None


@app.command()
def train(
    config: Annotated[
        str,
        typer.Option(help="Named config: default (the shipped reader) | cpu-small | tiny."),
    ] = "default",
    data: Annotated[str, typer.Option(help="Folder with corpus.jsonl.xz + tokenizer.json.")] = "data",
    out: Annotated[str, typer.Option(help="Run folder (history.jsonl, resume.pt).")] = "runs/default",
    export: Annotated[str | None, typer.Option(help="Write the finished checkpoint here.")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Stop after this many steps.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/resume.pt.")] = False,
    prepare_data: Annotated[
        bool, typer.Option("--prepare", help="First build corpus + tokenizer from this machine's text.")
    ] = False,
    device: Annotated[str | None, typer.Option(help="cuda | cpu (default: cuda if present).")] = None,
) -> None:
    """Train the GDN-2 reader (bf16, resumable, long-context curriculum); `python -m gdn2_model.train -h`."""
    run_guarded(
        _train_command,
        config=config,
        data_dir=data,
        out_dir=out,
        export=export,
        steps=steps,
        resume=resume,
        prepare_data=prepare_data,
        device=device,
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())

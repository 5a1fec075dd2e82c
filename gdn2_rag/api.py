"""The functions behind the CLI commands: call the library, print text or JSON.

gdn2_cli.py only parses options and calls these; everything here raises RagError for user errors (the
CLI turns those into one line + exit 2). Text goes to stdout; `-v` timing breakdowns go to stderr so
`--json` output stays one clean object.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from gdn2_rag.config import RAGConfig
from gdn2_rag.errors import RagError
from gdn2_rag.pipeline import RAG, RETRIEVAL_ONLY, check_question, jsonable
from gdn2_rag.reading import check_device
from gdn2_rag.types import Answer, Passage

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
SNIPPET_CHARS = 240


def _echo_json(data: dict) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def vector_store_config(kind=None, url=None, path=None, collection=None, api_key_file=None):
    """The VectorStoreConfig that `rag ingest`'s store flags ask for; None without any (the index's own
    store, FAISS for a new index). Qdrant flags without `--vector-store qdrant` are refused when the
    config is validated."""
    from gdn2_ingest.config import VectorStoreConfig

    if kind is None and url is None and path is None and collection is None and api_key_file is None:
        return None
    return VectorStoreConfig(
        kind or "faiss", url=url, path=path, collection=collection, api_key_file=api_key_file
    )


def ingest_command(
    paths, *, index, domain, json_out, verbose, max_file_bytes=None, threads=None, notify=None,
    engine="local", address=None, workers=None, vector_store=None,
) -> None:  # fmt: skip
    """Ingest; ingest's own progress bars, skipped-file lines and summary go to stderr (not with --json).

    `notify` gets one-off lines such as "waiting for the index lock held by PID N"; `vector_store`: a
    VectorStoreConfig (`vector_store_config`) or None.
    """
    from gdn2_ingest.store import human

    t0 = time.perf_counter()
    rag = RAG.open(index, create=True, config=RAGConfig(cpu_threads=threads))
    report = rag.ingest(
        paths, domain=domain, progress=not json_out, max_file_bytes=max_file_bytes, notify=notify,
        engine=engine, engine_address=address, engine_workers=workers, vector_store=vector_store,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    data = report.to_dict()
    if json_out:
        _echo_json({"index": str(index), "report": jsonable(data), "seconds": round(elapsed, 3)})
        return
    out.print(
        f"index ready: {escape(str(index))} ({report.chunks_total} chunks, {report.generation} verified)"
    )
    if verbose:
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in (data.get("stage_seconds") or {}).items())
        err.print(f"timings: ingest {elapsed:.2f} s ({stages})")
        disk = data.get("disk") or {}
        line = f"disk: generation {human(disk.get('generation_bytes', 0))}"
        if "estimate_bytes" in disk:
            line += f" (estimated {human(disk['estimate_bytes'])} needed)"
        line += f", {human(disk.get('free_bytes', 0))} free"
        if disk.get("previous_generation_kept"):
            line += "; the previous generation is kept while a reader holds it"
        err.print(escape(line))


def update_command(action: str, paths=None, *, index, json_out, notify=None) -> None:
    """`rag remove` (action "remove") or `rag compact` (action "compact")."""
    rag = RAG.open(index)
    t0 = time.perf_counter()
    report = rag.remove(paths, notify=notify) if action == "remove" else rag.compact(notify=notify)
    if json_out:
        _echo_json({"index": str(index), "report": jsonable(report.to_dict()),
                    "seconds": round(time.perf_counter() - t0, 3)})  # fmt: skip
        return
    if action == "remove":
        what = f"removed {report.files_deleted} files ({report.chunks_removed} chunks)"
    elif report.changed:
        what = (
            f"compacted {report.compacted} segment(s) into one ({report.chunks_removed} deleted chunks gone)"
        )
    else:
        what = "already compact"
    out.print(
        f"{what}; index ready: {escape(str(index))} ({report.chunks_total} chunks, {report.generation})"
    )


def upgrade_command(*, index, json_out, notify=None) -> None:
    """`rag upgrade`: convert an index of the previous release's format in place (no re-embedding)."""
    if not Path(index).exists():
        raise RagError(f"no index at {index}")
    report = RAG.open(index, create=True).upgrade(notify=notify)
    if json_out:
        _echo_json({"index": str(index), "report": jsonable(report.to_dict())})
        return
    if report.changed:
        what = (
            f"upgraded from format {report.from_format} to {report.to_format} in {report.seconds:.1f} s"
            " (no re-embedding)"
        )
    else:
        what = f"already format {report.to_format}"
    out.print(
        f"{what}; index ready: {escape(str(index))} ({report.chunks_total} chunks, {report.generation})"
    )


def reader_config(
    model: str | None,
    device: str | None,
    reader: bool | None,
    generate: bool = False,
    threads: int | None = None,
    abstain: bool = False,
) -> RAGConfig:
    """The reader part of a command's RAGConfig, after the cheap checks of --model/--device/--[no-]reader.

    reader: None is the default policy ("auto": the shipped reader only where it is calibrated to beat
    retrieval), True (`--reader`) requires a reader, False (`--no-reader`) answers from retrieval alone.
    """
    if model is not None and not Path(model).exists():
        raise RagError(f"model path {model} does not exist")
    check_device(device)
    if reader is False and (model is not None or generate):
        raise RagError("--no-reader contradicts --model and --generate")
    return RAGConfig(use_reader=reader is not False, require_reader=reader is True, abstain=abstain).with_(
        model_path=model, device=device, cpu_threads=threads
    )


def ask_command(
    question,
    *,
    index,
    json_out,
    verbose,
    context_tokens=None,
    top_k=None,
    domain=None,
    path_glob=None,
    model=None,
    device=None,
    reader=None,
    generate=False,
    threads=None,
    abstain=False,
) -> None:
    t0 = time.perf_counter()
    # cheap argument checks before the index and the reader are opened
    check_question(question)
    config = reader_config(model, device, reader, generate, threads, abstain)
    rag = RAG.open(index, config=config)
    with _spinner(enabled=not json_out) as on_stage:
        answer = rag.ask(
            question,
            context_tokens=context_tokens,
            top_k=top_k,
            domain=domain,
            path_glob=path_glob,
            generate=generate,
            on_stage=on_stage,
        )
    cold = time.perf_counter() - t0
    if answer.reader_error and not json_out:
        # stderr, so it is seen even when stdout is piped; --json carries it as `reader_error`
        err.print(
            f"[bold red]warning:[/] {escape(answer.reader_error)}; this answer comes from the retrieved "
            "evidence only (use --no-reader to ask for that on purpose)"
        )
    if json_out:
        _echo_json(answer.to_dict())
    else:
        print_answer(answer, _filters_note(domain, path_glob))
    if verbose:
        _print_timings(answer, cold)


@contextmanager
def _spinner(enabled: bool):
    """A spinner naming the current stage on stderr, only on a terminal (never with --json or when piped).

    A CPU read can take seconds; without it the terminal shows nothing meanwhile. Yields the `on_stage`
    callback for `RAG.ask`.
    """
    if not (enabled and err.is_terminal):
        yield None
        return
    with err.status("starting", spinner="dots") as status:
        yield lambda name: status.update(f"{name}…")


def _filters_note(domain: str | None, path_glob: str | None) -> str:
    """` (filters: --domain legal --path '*.md')` for "nothing matched" lines; empty without filters."""
    parts = ([f"--domain {domain}"] if domain else []) + ([f"--path '{path_glob}'"] if path_glob else [])
    return f" (filters: {' '.join(parts)})" if parts else ""


def print_answer(answer: Answer, filters_note: str = "") -> None:
    """The human-readable answer: text, its citations, the evidence snippet; retrieval-only says so first."""
    if not answer.passages:
        out.print(f"No passage in the index matched the question{escape(filters_note)}.")
        return
    if answer.abstained:
        out.print(
            "[bold]No answer:[/] the indexed documents do not seem to answer this question "
            f"({escape(answer.model.get('reason', ''))}). Closest passages:"
        )
        for p in answer.passages[:3]:
            out.print(f"  {escape(p.location)}")
        return
    if answer.mode == RETRIEVAL_ONLY:
        reason = answer.model.get("reason") or "no reader checkpoint"
        out.print(
            f"[bold yellow]retrieval-only answer: no reader was used[/] ({escape(reason)}); "
            "showing the best-matching lines of the best passages."
        )
    if not answer.text:
        out.print(f"No answer span was found in the {len(answer.passages)} passages read.")
        return
    # P(start) * P(end) of the span: above 0.5, 82 % of generated held-out answers were exact; under 0.2, 59 %
    confidence = ""
    if answer.used_reader and answer.score is not None:
        confidence = f"  [dim](reader confidence {answer.score:.2f})[/]"
    out.print(f"[bold]Answer:[/] {escape(' '.join(answer.text.split()))}{confidence}")
    if answer.generated:
        out.print(f"[bold]Generated:[/] {escape(answer.generated)}")
    if answer.citations:
        out.print("[bold]Citations:[/]")
        for i, c in enumerate(answer.citations, start=1):
            section = f"  § {escape(c.section)}" if c.section else ""
            out.print(f"  [{i}] {escape(c.location)}{section}")
    else:
        out.print("[bold]Citations:[/] none could be verified against the source files")
    if answer.evidence:
        out.print("[bold]Evidence:[/]")
        for line in answer.evidence.splitlines():
            out.print(f"  │ {escape(line)}")


def _print_timings(answer: Answer, cold: float) -> None:
    t = answer.timings
    err.print(
        f"timings: retrieve {_ms(t.retrieve_s)} · assemble {_ms(t.assemble_s)} · read {_ms(t.read_s)} · "
        f"ask total {_ms(t.total_s)} (of which loading: reader {_ms(t.load_reader_s)}, "
        f"embedder {_ms(t.load_embedder_s)}) · command {_ms(cold)}"
    )
    err.print(
        f"context: {answer.context_tokens} of {answer.context_budget} tokens ({answer.token_counter}) in "
        f"{answer.context_pieces} pieces "
        f"from {len(answer.passages)} passages"
    )


def search_command(query, *, index, json_out, verbose, top_k=10, domain=None, path_glob=None) -> None:
    if not query.strip():
        raise RagError("the query is empty; give a question or search words")
    check_question(query)
    rag = RAG.open(index)
    # the query embedder loads once per process: reported apart, as `ask` does
    load = rag._warm_embedder()
    t0 = time.perf_counter()
    passages = rag.search(query, k=top_k, domain=domain, path_glob=path_glob)
    elapsed = time.perf_counter() - t0
    if json_out:
        timings = {"retrieve_s": round(elapsed, 6), "load_embedder_s": round(load, 6)}
        _echo_json(
            {
                "schema_version": 1,
                "query": query,
                "passages": [p.to_dict() for p in passages],
                "timings": timings,
            }
        )
    else:
        print_passages(passages, _filters_note(domain, path_glob))
    if verbose:
        err.print(f"timings: retrieve {_ms(elapsed)} (loading the embedder before it: {_ms(load)})")


def print_passages(passages: list[Passage], filters_note: str = "") -> None:
    if not passages:
        out.print(f"No passage matched{escape(filters_note)}.")
        return
    for p in passages:
        raw = []
        if p.dense_score is not None:
            raw.append(f"dense {p.dense_score:.3f}")
        if p.bm25_score is not None:
            raw.append(f"bm25 {p.bm25_score:.2f}")
        # one line per row whatever the path or section holds (newlines, tabs)
        section = f" § {escape(_one_line(p.section))}" if p.section else ""
        where = escape(_one_line(p.location))
        out.print(f"[bold]{p.rank:>3}.[/] {p.score:.4f}  {where}{section}  ({', '.join(raw)})")
        snippet = " ".join(p.text.split())
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet[: SNIPPET_CHARS - 1] + "…"
        out.print(f"      {escape(snippet)}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def info_command(*, index, json_out) -> None:
    rag = RAG.open(index)
    data = rag.index_identity()
    if json_out:
        _echo_json(data)
        return
    width = max(map(len, data))
    for key, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        out.print(f"{key:>{width}}: {escape(str(value))}")

"""The reader stage: load the GDN-2 reader once, run it on an assembled context, thread-safely.

`ReaderRuntime` wraps the reader of a checkpoint folder (`gdn2_model.readers.load_reader`: reader v3, the
shipped one, or a v2 checkpoint; docs/CONTRACTS.md). It loads lazily on first use and keeps the model for
the life of the `RAG` object. Three policies:

- "off" (`--no-reader`): never load it; answers come from the retrieved evidence.
- "on" (`--reader`, or an explicit `--model`): the reader must load, or the call fails (RagError).
- "auto" (the default): the shipped reader is used only when its checkpoint carries a calibration
  (`calibration.json`, measured on hand-written questions) that says it beats retrieval; otherwise
  `reason` says why it was not used. A reader that should have loaded and did not is never quiet:
  `error` holds the reason, the log warns, and the answer carries it (`Answer.reader_error`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gdn2_rag.assemble import AssembledContext
from gdn2_rag.errors import RagError
from gdn2_rag.fusion import fuse_reader_spans, piece_ranks
from gdn2_rag.threads import cpu_threads, limited_threads
from gdn2_rag.tokens import EstimateLayout, LayoutCost, TokenCounter

# spans of the reader considered when they are fused with the retrieval ranking
FUSION_CANDIDATES = 30
CALIBRATION_FILE = "calibration.json"
POLICIES = ("auto", "on", "off")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadSpan:
    """The reader's answer: a char span inside one piece of the context (rag-side mirror of ReaderSpan)."""

    piece_index: int
    char_start: int
    char_end: int
    text: str
    score: float
    generated: str | None = None


def check_device(device: str | None) -> str:
    """Resolve None to cuda-if-available; refuse cuda on a machine without it (a user error)."""
    if device not in (None, "cpu", "cuda"):
        raise RagError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cpu":
        return "cpu"
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise RagError("--device cuda was asked for, but CUDA is not available on this machine")
    return "cuda" if torch.cuda.is_available() else "cpu"


# the shipped reader: v3 (MiniLM windows under GDN-2 layers, fine-tuned on questions written like a user's);
# 0.32 answer+citation on the hand-written dev set where v2 (checkpoints/default) scores 0.09
SHIPPED_READER = "v3"


def default_checkpoint() -> Path:
    """gdn2_model/checkpoints/v3, located without importing the model package (which imports torch)."""
    spec = importlib.util.find_spec("gdn2_model")
    if spec is None or not spec.submodule_search_locations:
        return Path("gdn2_model/checkpoints") / SHIPPED_READER
    return Path(next(iter(spec.submodule_search_locations))) / "checkpoints" / SHIPPED_READER


@dataclass(frozen=True)
class Calibration:
    """What a checkpoint's `calibration.json` says of it, measured on a hand-written question set.

    threshold: reader confidence (ReaderSpan.score) below which its span is not trusted and the answer
        falls back to the retrieved evidence.
    beats_retrieval: the reader scored better than retrieval alone on that set in every domain; only
        then is it used by default ("auto").
    measured: where the numbers come from (set, command, date), shown when the reader is not used.
    """

    threshold: float
    beats_retrieval: bool
    measured: str = ""


def read_calibration(checkpoint: Path) -> Calibration | None:
    """The checkpoint's calibration; None when it has none (an uncalibrated reader is never the default)."""
    path = checkpoint / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return Calibration(
            float(data["threshold"]), bool(data["beats_retrieval"]), str(data.get("measured", ""))
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None


def _is_checkpoint(path: Path) -> bool:
    """A reader checkpoint folder of either format: config.json and safetensors weights (the loader
    checks the rest)."""
    return (path / "config.json").is_file() and any(path.glob("*.safetensors*"))


def context_pieces(context: AssembledContext) -> list:
    """Our pieces as gdn2_model.prompt.ContextPiece: what the reader reads, and where it comes from."""
    from gdn2_model.prompt import ContextPiece

    return [
        ContextPiece(
            text=p.text,
            header=p.header,
            path=p.path,
            line_start=p.line_start,
            line_end=p.line_end,
            section=p.section,
            page=p.page,
        )
        for p in context.pieces
    ]


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' "Loading weights" progress bar and info/warning logs off for the block, then as before.

    The library stays quiet by default; the settings are process-wide, so they are restored on exit
    (an app that turned the bar or its logs on keeps them outside the reader load).
    """
    try:
        from huggingface_hub import utils as hub_utils
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    verbosity = hf_logging.get_verbosity()
    bar = hf_logging.is_progress_bar_enabled()
    hub_bars_off = hub_utils.are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
        if hub_bars_off != hub_utils.are_progress_bars_disabled():
            (hub_utils.disable_progress_bars if hub_bars_off else hub_utils.enable_progress_bars)()


def choose_span(spans: list, ranks: list[int] | None, retrieval_prior: float) -> ReadSpan:
    """The answer among a reader's spans (best first): the first, or with `ranks` the one
    `fuse_reader_spans` picks; as a ReadSpan."""
    if not spans:
        raise ValueError("no context text to read: every piece is empty")
    span = spans[0] if ranks is None else fuse_reader_spans(spans, ranks, retrieval_prior)
    return ReadSpan(
        piece_index=int(span.piece_index),
        char_start=int(span.char_start),
        char_end=int(span.char_end),
        text=span.text,
        score=float(span.score),
        generated=getattr(span, "generated", None),
    )


class ReaderRuntime:
    """One reader per process-lifetime `RAG`; `extract` calls are serialised by a lock.

    Serialising is deliberate: one GPU runs one 100k-token prefill at a time anyway, and the model's
    caches are per call, so the lock only protects the load and keeps memory bounded.
    """

    def __init__(
        self,
        model_path: str | None = None,
        device: str | None = None,
        require: bool = False,
        enabled: bool = True,
        threads: int | None = None,
    ) -> None:
        if model_path is not None and not Path(model_path).exists():
            raise RagError(f"model path {model_path} does not exist")
        self.enabled = enabled
        self.model_path = model_path
        self.requested_device = device
        self.require = require or model_path is not None
        self.policy = "off" if not enabled else "on" if self.require else "auto"
        self.threads = threads
        self._lock = threading.Lock()
        self._loaded = False
        self._reader = None
        self.calibration: Calibration | None = None
        self.reason = ""
        self.error = ""
        self.load_seconds = 0.0
        self.device = "cpu"

    def load(self) -> bool:
        """Load the reader if not done yet (by the policy, see the module docstring); True when available."""
        with self._lock:
            if self._loaded:
                return self._reader is not None
            self._loaded = True
            # an explicit device is always checked (--device cuda without CUDA is an error)
            if self.requested_device is not None:
                self.device = check_device(self.requested_device)
            if self.policy == "off":
                self.reason = "the reader was turned off (--no-reader)"
                return False
            checkpoint = Path(self.model_path) if self.model_path is not None else default_checkpoint()
            # the calibration decides only the default policy: `--reader` takes the reader's span as it is
            self.calibration = read_calibration(checkpoint) if self.policy == "auto" else None
            trusted = self.calibration is not None and self.calibration.beats_retrieval
            if self.policy == "auto" and _is_checkpoint(checkpoint) and not trusted:
                # cheap: decided from one JSON file, without importing torch
                measured = self.calibration.measured if self.calibration else ""
                self.reason = (
                    "the shipped reader is off by default: it has not been shown to beat retrieval on "
                    "hand-written questions" + (f" ({measured})" if measured else "") + "; --reader uses it"
                )
                return False
            if self.model_path is None and not _is_checkpoint(checkpoint):
                self._fail(f"no reader checkpoint at {checkpoint}")
                return False
            self.device = check_device(self.requested_device)
            t0 = time.perf_counter()
            try:
                from gdn2_model.readers import load_reader

                with quiet_transformers():
                    self._reader = load_reader(checkpoint, device=self.device)
            except Exception as exc:  # noqa: BLE001 - any load failure is reported, never swallowed
                self._fail(f"{type(exc).__name__}: {exc}", exc)
            self.load_seconds = time.perf_counter() - t0
            return self._reader is not None

    def _fail(self, message: str, exc: BaseException | None = None) -> None:
        """A reader that should have loaded did not: an error with --reader, a loud warning in auto."""
        if self.require:
            # not loaded: the next call tries again and fails again, never falls back in silence
            self._loaded = False
            where = self.model_path or "the default checkpoint"
            raise RagError(f"cannot load the reader from {where}: {message}") from exc
        self.error = self.reason = f"the reader failed to load: {message}"
        log.warning("%s; answering from the retrieved evidence (--no-reader does so on purpose)", self.error)

    def _cpu_threads(self):
        """On the CPU, torch threads for one read chosen from the cores really available (threads.py)."""
        return limited_threads(cpu_threads(self.threads) if self.device == "cpu" else None)

    @property
    def threshold(self) -> float:
        """Confidence under which the reader's span gives way to the evidence: the calibrated one by default
        ("auto"), none when the reader was asked for (`--reader`: its span, whatever it is)."""
        if self.calibration is None:
            return 0.0
        return self.calibration.threshold

    @property
    def loaded(self) -> bool:
        """True once `load` ran (whether or not a reader came of it)."""
        return self._loaded

    @property
    def available(self) -> bool:
        return self.load()

    @property
    def identity(self) -> dict:
        if not self.load():
            return {"name": "none", "mode": "retrieval-only", "reason": self.reason}
        ident = dict(getattr(self._reader, "identity", {}) or {})
        ident["device"] = self.device
        return ident

    def token_counter(self) -> TokenCounter:
        """Token counts of bare texts: the reader's layout without the repeated question (see `layout`)."""
        return self.layout()

    def layout(self, repeat_question: bool = False) -> LayoutCost:
        """Token costs of the reader's prompt layout for context budgets.

        With a reader loaded: the model's own layout (gdn2_model.prompt.ReaderLayout), counted with its
        tokenizer, so an assembled context's `tokens` is the reader's input length; the texts it counts
        stay tokenised in the reader, which lays them out without tokenising again. Without one: the
        documented estimate (gdn2_rag.tokens.EstimateLayout). `repeat_question` lays the question out
        again after the context; the context assembled with it carries it to `extract` and `generate`.
        """
        if self.load():
            try:
                return self._reader.layout(repeat_question=repeat_question)
            except ValueError as exc:  # a setting this reader does not have (v3: repeat_question)
                raise RagError(str(exc)) from exc
        return EstimateLayout(repeat_question=repeat_question)

    def extract(
        self, context: AssembledContext, max_answer_tokens: int = 32, retrieval_prior: float = 0.0
    ) -> ReadSpan:
        """The reader's best span in the assembled context (pieces keep their headers).

        The reader lays the context out as it was counted (`context.repeat_question`). With
        `retrieval_prior` > 0 the reader's best `FUSION_CANDIDATES` spans are fused with the retrieval
        rank of their pieces (`gdn2_rag.fusion.fuse_reader_spans`).
        """
        ranks = piece_ranks([p.score for p in context.pieces]) if retrieval_prior > 0 else None
        return self._extract(
            context.question,
            context_pieces(context),
            max_answer_tokens,
            ranks,
            retrieval_prior,
            repeat_question=context.repeat_question,
        )

    def extract_texts(self, question: str, texts: list[str], max_answer_tokens: int = 32) -> ReadSpan:
        """The reader's best span over bare passage texts (the LlamaIndex LLM adapter's case)."""
        from gdn2_model.prompt import ContextPiece

        return self._extract(question, [ContextPiece(text=t) for t in texts], max_answer_tokens)

    def _extract(
        self,
        question: str,
        pieces: list,
        max_answer_tokens: int,
        ranks: list[int] | None = None,
        retrieval_prior: float = 0.0,
        repeat_question: bool = False,
    ) -> ReadSpan:
        if not self.load():
            raise RagError(f"no reader: {self.reason}")
        with self._lock, self._cpu_threads():
            if ranks is None:
                span = self._reader.extract(
                    question, pieces, max_answer_tokens=max_answer_tokens, repeat_question=repeat_question
                )
                return choose_span([span], None, 0.0)
            spans = self._reader.extract_spans(
                question,
                pieces,
                k=FUSION_CANDIDATES,
                max_answer_tokens=max_answer_tokens,
                repeat_question=repeat_question,
            )
        return choose_span(spans, ranks, retrieval_prior)

    @property
    def can_generate(self) -> bool:
        """True when the loaded checkpoint has an LM head (`config.reader_lm_head`)."""
        return self.load() and self._reader.can_generate

    def generate(self, context: AssembledContext, max_new_tokens: int = 64) -> str:
        """A generated answer after the query-first prompt (greedy), for checkpoints with an LM head."""
        if not self.load():
            raise RagError(f"--generate needs a reader: {self.reason}")
        if not self.can_generate:
            raise RagError(
                "--generate needs a reader checkpoint with an LM head; this one only extracts spans"
            )
        with self._lock, self._cpu_threads():
            return self._reader.generate(
                context.question,
                context_pieces(context),
                max_new_tokens,
                repeat_question=context.repeat_question,
            )

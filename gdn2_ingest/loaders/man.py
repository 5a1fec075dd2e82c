"""Man pages (gzipped roff, man and mdoc macros) rendered to plain text.

Renderer: groff, the maintained roff formatter `man` itself runs (/usr/bin/groff on our Debian image,
CI included), so paragraphs are filled, fonts are inline and `.TP`/`.IP` options stay with their
description. It runs without a shell, on stdin, in an empty folder with a bare environment, with the
requests that read or run other files removed (`.so .mso .cf .trf .nx .rd .pso .sy .pi .open .opena`;
groff's default safer mode covers the last five too), a timeout, an output size cap and (with
util-linux `prlimit`) a 512 MiB address-space limit.

Citations (line spans) are lines of the rendered text, which is the chunk text. They are reproducible
with groff's own command line, without this code:

    zcat PAGE.1.gz | groff -t -k -Kutf-8 -man -Tutf8 -P-c -P-b -P-u -rcR=1 -rHY=0 -rLL=100n | sed -n A,Bp

(`-mdoc` for mdoc pages; our text differs from that output only in trailing spaces and in runs of
spaces inside a line, never in its lines). When groff is missing, fails, times out or overflows,
the page is rendered by the built-in parser below instead, and the reason is logged (logger
`gdn2_ingest.loaders`): it keeps to the roff subset that carries text, one output line per source line
(requests that print nothing become blank lines), so its lines are also the source page's lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from gdn2_ingest.loaders.base import SkipFile, decode_text, gunzip_capped
from gdn2_ingest.types import Document

_GLYPHS = {
    "em": "\u2014", "en": "\u2013", "bu": "\u2022", "aq": "'", "dq": '"', "lq": "\u201c", "rq": "\u201d",
    "oq": "\u2018", "cq": "\u2019", "co": "\u00a9", "rg": "\u00ae", "ti": "~", "ha": "^", "hy": "-",
    "mi": "-", "pl": "+", "<=": "<=", ">=": ">=", "->": "->", "<-": "<-", "mu": "x", "de": "\u00b0",
}  # fmt: skip
_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),
    (re.compile(r"\\s[+-]?\d+"), ""),
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),
    (re.compile(r"\\[kz]."), ""),
    (re.compile(r"\\[hvwlLoDbxHNSRXZ]'[^']*'"), ""),
    (re.compile(r"\\n(\[[^\]]*\]|\(..|.)"), ""),
]
_GLYPH = re.compile(r"\\\((..)|\\\[([^\]]{1,12})\]")
_SIMPLE = {"\\-": "-", "\\e": "\\", "\\&": "", "\\|": "", "\\^": "", "\\ ": " ", "\\c": "", "\\~": " ",
           "\\0": " ", "\\%": "", "\\'": "'", "\\`": "`", "\\.": ".", "\\,": "", "\\/": ""}  # fmt: skip
_SILENT = {
    "PP", "LP", "P", "RS", "RE", "br", "sp", "nf", "fi", "in", "ti", "ne", "ad", "na", "hy", "nh",
    "ft", "ps", "vs", "ll", "ta", "bp", "fam", "ie", "if", "el", "ig", "so", "UC", "PD", "DT", "Pp",
    "Bl", "El", "Ed", "Bd", "Ek", "Bk", "Lp", "Os", "Dd", "ns", "rs", "mk", "rt", "tr", "cc", "c2",
    "ec", "eo", "ss", "cs", "cu", "lt", "pl", "po", "pn", "nr", "ds", "as", "rm", "rn", "am", "de1",
    "de", "nx", "rd", "ex", "ab", "tm", "hc", "ch", "wh", "it", "em", "ev", "lf", "ul", "cflags", "pc",
    "mso", "EE", "EX", "YS", "TS", "TE", "ME", "MT", "UE", "UR", "rr", "als", "IX", "LINKSTYLE", "Sp", "Vb",
    "Ve", "cp", "do", "hw", "hla", "hlm", "hym", "kern", "pvs", "sty", "warn", "blm", "lsm", "ecs", "ecr",
}  # fmt: skip


def inline(text: str) -> str:
    """Strip font/size escapes and map common glyphs."""
    for rx, rep in _ESCAPES:
        text = rx.sub(rep, text)
    text = _GLYPH.sub(lambda m: _GLYPHS.get(m.group(1) or m.group(2), ""), text)
    for k, v in _SIMPLE.items():
        text = text.replace(k, v)
    return text


def _args(rest: str) -> list[str]:
    return [a[1:-1] if len(a) > 1 and a[0] == a[-1] == '"' else a for a in re.findall(r'"[^"]*"|\S+', rest)]


def roff_to_text(src: str) -> tuple[str, str]:
    """(text, title) with one output line per source line."""
    out: list[str] = []
    title = ""
    skipping_macro = False
    for line in src.split("\n"):
        if skipping_macro:
            # ".." ends a definition; groff also accepts spaces after the control character (".  .")
            skipping_macro = re.fullmatch(r"[.']\s*\.\s*", line.strip()) is None
            out.append("")
            continue
        if line.startswith(('.\\"', "'\\\"", '.\\"', '\\"')) or line.strip() in (".", "'"):
            out.append("")
            continue
        if line[:1] in (".", "'"):
            name, _, rest = line[1:].strip().partition(" ")
            args = _args(inline(rest))
            if name in ("de", "de1", "am", "ig"):
                skipping_macro = True
                out.append("")
            elif name in ("TH", "Dt"):
                if args:
                    title = f"{args[0]}({args[1]})" if len(args) > 1 else args[0]
                out.append(title)
            elif name in ("SH", "Sh", "SS", "Ss"):
                # rendered as markdown headings so the support chunker starts a section there
                out.append(
                    ("# " + " ".join(args).upper()) if name in ("SH", "Sh") else "## " + " ".join(args)
                )
            elif name in ("TP", "IP", "HP") or name in _SILENT:
                # `.IP "--recursive" 4`: the tag only (the second argument is an indent)
                out.append(args[0] if name == "IP" and args else "")
            elif len(name) == 2 and name.isalpha() and name[0].isupper() and name[1] in "BIR":
                # .BR/.IR/.RB...: alternating fonts, words joined without spaces
                out.append("".join(args))
            else:
                # .B, .I, mdoc .Nm/.Nd/.Fl/.Ar...: print the arguments
                out.append(" ".join(args))
        else:
            out.append(inline(line))
    return "\n".join(out), title


log = logging.getLogger("gdn2_ingest.loaders")
if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
    log.addHandler(logging.NullHandler())

GROFF = shutil.which("groff")  # None: every page uses the built-in parser
# util-linux prlimit caps the address space of groff's whole pipeline (a page that grows a string
# forever dies with "out of memory" in seconds instead of taking the machine's memory)
PRLIMIT = shutil.which("prlimit")
GROFF_MEMORY = 512 << 20
GROFF_TIMEOUT = 10.0  # seconds per page (the largest installed pages render in well under 1 s)
LINE_LENGTH = 100
# requests that read, include or run other files, or stop reading: removed before the page is read
_UNSAFE = "so mso cf trf nx rd pso sy pi open opena"
_MDOC = re.compile(r"^[.']\s*(Dd|Dt|Sh)\b", re.M)
_MAN = re.compile(r"^[.']\s*TH\b", re.M)
_INNER_SPACES = re.compile(r"(?<=\S)  +(?=\S)")
_GLYPH_MAP = str.maketrans({"\u2010": "-", "\u2212": "-", "\u00ad": ""})


class RenderError(Exception):
    """groff could not render this page (the message says why): the built-in parser is used."""


def render_groff(src: str, mdoc: bool, max_bytes: int, timeout: float | None = None) -> str:
    """The page rendered by groff (see the module docstring); RenderError with the reason."""
    timeout = GROFF_TIMEOUT if timeout is None else timeout
    if GROFF is None:
        raise RenderError("groff not found")
    # the packages themselves (-man/-mdoc load them lazily through .mso, which is removed below)
    cmd = [GROFF, "-t", "-k", "-Kutf-8", "-mdoc" if mdoc else "-man-old", "-Tutf8", "-P-c", "-P-b", "-P-u",
           "-rcR=1", "-rHY=0", f"-rLL={LINE_LENGTH}n", "-ww"]  # fmt: skip
    if PRLIMIT:
        cmd = [PRLIMIT, f"--as={GROFF_MEMORY}", "--", *cmd]
    # `.ad l` fills without stretching spaces (same line breaks as the documented command)
    prelude = f".rm {_UNSAFE}\n.ad l\n"
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "GROFF_NO_SGR": "1"}
    with tempfile.TemporaryDirectory(prefix="gdn2-groff-") as tmp, tempfile.TemporaryFile(dir=tmp) as out:
        try:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.DEVNULL, cwd=tmp, env=env,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise RenderError(f"groff could not start ({exc.strerror or exc})") from None
        # wait in short steps, watching the output size: a runaway page is stopped at the cap
        data: bytes | None = (prelude + src).encode("utf-8", "surrogateescape")
        deadline = time.monotonic() + timeout
        problem = ""
        while True:
            try:
                proc.communicate(data, timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                data = None  # communicate() keeps writing the input it was given first
                if os.fstat(out.fileno()).st_size >= max_bytes:
                    problem = f"groff output over {max_bytes} bytes"
                elif time.monotonic() > deadline:
                    problem = f"groff timed out after {timeout:g} s"
                if problem:
                    # the pipeline (preconv, tbl, troff, grotty) is groff's session: stop all of it,
                    # before groff is reaped so its group id cannot belong to anyone else
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    raise RenderError(problem) from None
            except BrokenPipeError:
                proc.wait()
                break
        if os.fstat(out.fileno()).st_size >= max_bytes:
            raise RenderError(f"groff output over {max_bytes} bytes")
        if proc.returncode != 0:
            raise RenderError(f"groff failed (exit {proc.returncode})")
        out.seek(0)
        raw = out.read()
    text = raw.decode("utf-8", "replace").translate(_GLYPH_MAP)
    lines = [_INNER_SPACES.sub(" ", ln.rstrip()) for ln in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


def _title(src: str) -> str:
    m = re.search(r"^[.']\s*(TH|Dt)[ \t]+(.*)$", src, re.M)
    if not m:
        return ""
    args = _args(inline(m.group(2)))
    if not args:
        return ""
    return f"{args[0]}({args[1]})" if len(args) > 1 else args[0]


def man_to_text(src: str, max_bytes: int) -> tuple[str, str]:
    """(text, title): groff's rendering, else the built-in parser's (reason logged)."""
    mdoc = (m := _MDOC.search(src)) is not None and not ((t := _MAN.search(src)) and t.start() < m.start())
    try:
        # rendered text is a few times the source at most (indents); more means a runaway page
        text = render_groff(src, mdoc, max(1 << 20, min(max_bytes, 8 * len(src.encode("utf-8")))))
        return text, _title(src)
    except RenderError as exc:
        log.warning("man page rendered by the built-in parser: %s", exc)
        return roff_to_text(src)


def load_man(path: Path, data: bytes, max_expanded_bytes: int = 50_000_000) -> list[Document]:
    if path.suffix == ".gz":
        data = gunzip_capped(data, max_expanded_bytes)
    src = decode_text(data)
    if src.lstrip().startswith(".so ") and src.count("\n") <= 3:
        raise SkipFile(f"man page alias ({src.strip()})")
    text, title = man_to_text(src, max_expanded_bytes)
    if not text.strip():
        raise SkipFile("man page has no text")
    name = path.name.removesuffix(".gz")
    return [Document(path=str(path), text=text, title=title or name, fmt="man")]

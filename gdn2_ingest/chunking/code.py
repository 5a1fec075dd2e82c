"""Code chunking on tree-sitter syntax trees (tree-sitter-language-pack grammars).

A unit is a definition (function, class, method, impl, ...) with the comments and decorators above
it, labelled with its qualified symbol (`Class.method`). A unit larger than the budget is opened up
into its children, so a long class becomes its header (signature, docstring) plus one unit per
method, and a long function is cut between statements; tiny neighbours are merged by the packer.
Files whose grammar is missing, or whose parse fails, fall back to line-based packing: `code_pieces`
raises `CodeFallback` with the reason, which `chunk_document` logs (logger `gdn2_ingest.chunking`) and
hands to its caller to count (IngestReport.code_fallbacks).
"""

from __future__ import annotations

import logging
from functools import lru_cache

from gdn2_ingest.chunking.base import FLOW, SECTION, Piece, TokenIndex

# node types that define a named symbol, across the grammars we map extensions to
DEFINITIONS = {
    "function_definition", "function_declaration", "function_item", "method_definition",
    "method_declaration", "class_definition", "class_declaration", "class_specifier", "struct_specifier",
    "struct_item", "enum_item", "trait_item", "impl_item", "mod_item", "interface_declaration",
    "type_declaration", "enum_declaration", "constructor_declaration", "method", "singleton_method",
    "class", "module", "object_declaration", "object_definition", "trait_definition", "namespace_definition",
    "function", "local_function", "protocol_declaration", "record_declaration", "struct_declaration",
    "generator_function_declaration", "arrow_function", "function_signature", "abstract_class_declaration",
}  # fmt: skip
# wrappers whose inner definition carries the name
_COMMENTS = {"comment", "line_comment", "block_comment"}
_WRAPPERS = {"decorated_definition", "export_statement", "template_declaration"}


log = logging.getLogger("gdn2_ingest.chunking")
if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
    # a library logs; the app decides what is shown (no 'lastResort' lines on stderr by default)
    log.addHandler(logging.NullHandler())


class CodeFallback(Exception):
    """Syntax-aware chunking is impossible for this file (no grammar, parser error): the message is
    the reason; the file is chunked on lines instead."""


@lru_cache(maxsize=32)
def _parser(language: str) -> tuple[object | None, str]:
    """(tree-sitter parser, "") or (None, why there is none)."""
    try:
        from tree_sitter_language_pack import get_parser as _get

        return _get(language), ""
    except Exception as exc:  # noqa: BLE001 - any failure means "no grammar"; the reason is kept
        return None, f"no {language} grammar ({type(exc).__name__}: {str(exc)[:100]})"


def get_parser(language: str):
    """A tree-sitter parser, or None when the grammar is unavailable."""
    return _parser(language)[0]


def _name(node, src: bytes) -> str:
    target = node
    if node.type in _WRAPPERS:
        inner = [c for c in node.named_children if c.type in DEFINITIONS or c.type in _WRAPPERS]
        if not inner:
            return ""
        target = inner[-1]
        if target.type in _WRAPPERS:
            return _name(target, src)
    n = target.child_by_field_name("name")
    if n is None and target.type == "impl_item":
        n = target.child_by_field_name("type")
    if n is None:
        # c/c++ functions name their declarator
        d = target.child_by_field_name("declarator")
        while d is not None and d.child_by_field_name("declarator") is not None:
            d = d.child_by_field_name("declarator")
        n = d
    if n is None:
        return ""
    return src[n.start_byte : n.end_byte].decode("utf-8", "replace")[:80]


def _is_def(node) -> bool:
    return node.type in DEFINITIONS or (
        node.type in _WRAPPERS and any(c.type in DEFINITIONS for c in node.named_children)
    )


def _leads(children, i: int) -> bool:
    """A comment followed by a sibling: it is emitted with that sibling, never cut off from it."""
    return children[i].type in _COMMENTS and i + 1 < len(children)


class _Walker:
    def __init__(self, text: str, src: bytes, tix: TokenIndex, budget: int) -> None:
        self.text, self.src, self.tix, self.budget = text, src, tix, budget
        self.ascii = len(src) == len(text)
        if not self.ascii:
            import numpy as np

            # byte offset -> char offset for non-ASCII sources
            lens = np.fromiter((len(c.encode("utf-8")) for c in text), dtype=np.int64, count=len(text))
            self.byte_starts = np.concatenate([[0], np.cumsum(lens)])
        self.pieces: list[Piece] = []

    def char(self, b: int) -> int:
        if self.ascii:
            return b
        import numpy as np

        return int(np.searchsorted(self.byte_starts, b, "left"))

    def walk(self, node, start: int, qual: str, level: int) -> int:
        """Emit pieces covering [start, node end); returns the end char offset."""
        end = self.char(node.end_byte)
        children = node.children
        if self.tix.count(start, end) <= self.budget or not children:
            self.pieces.append(Piece(start, end, qual, level, prose=False))
            return end
        cur = start
        first = True
        for i, ch in enumerate(children):
            if self.char(ch.end_byte) <= cur or _leads(children, i):
                continue
            sym = qual
            if _is_def(ch):
                nm = _name(ch, self.src)
                sym = f"{qual}.{nm}" if qual and nm else (nm or qual)
            lvl = SECTION if _is_def(ch) else (level if first else FLOW)
            cur = self.walk(ch, cur, sym, lvl)
            first = False
        if cur < end:
            self.pieces.append(Piece(cur, end, qual, FLOW, prose=False))
        return end


def code_pieces(text: str, language: str | None, tix: TokenIndex, budget: int) -> list[Piece] | None:
    """Syntax-aware pieces; None when there is no language to parse (plain line packing is the plan,
    not a fallback); CodeFallback(reason) when the grammar is missing or parsing fails."""
    if not language:
        return None
    parser, why = _parser(language)
    if parser is None:
        raise CodeFallback(why)
    try:
        return _code_pieces(parser, text, tix, budget)
    except RecursionError:
        raise CodeFallback(f"{language} syntax tree too deep to walk") from None
    except Exception as exc:  # noqa: BLE001 - a parser/binding failure on odd input must not lose the file
        raise CodeFallback(f"{language} parser failed ({type(exc).__name__}: {str(exc)[:100]})") from None


def _code_pieces(parser, text: str, tix: TokenIndex, budget: int) -> list[Piece]:
    src = text.encode("utf-8")
    tree = parser.parse(src)
    w = _Walker(text, src, tix, budget)
    root = tree.root_node
    cur = 0
    for i, ch in enumerate(root.children):
        if _leads(root.children, i):
            continue
        sym = _name(ch, src) if _is_def(ch) else ""
        cur = w.walk(ch, cur, sym, SECTION if _is_def(ch) else FLOW)
    if cur < len(text) and text[cur:].strip():
        w.pieces.append(Piece(cur, len(text), "", FLOW, prose=False))
    return w.pieces

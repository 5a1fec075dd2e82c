"""Code chunking on tree-sitter syntax trees (tree-sitter-language-pack grammars).

A unit is a definition (function, class, method, impl, ...) with the comments and decorators above
it, labelled with its qualified symbol (`Class.method`). A unit larger than the budget is opened up
into its children, so a long class becomes its header (signature, docstring) plus one unit per
method, and a long function is cut between statements; tiny neighbours are merged by the packer.
Files whose grammar is missing fall back to line-based packing.
"""

from __future__ import annotations

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


@lru_cache(maxsize=32)
def get_parser(language: str):
    """A tree-sitter parser, or None when the grammar is unavailable (logged by the caller as fallback)."""
    try:
        from tree_sitter_language_pack import get_parser as _get

        return _get(language)
    except Exception:  # noqa: BLE001 - any failure means "no grammar": we fall back to lines
        return None


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
    """Syntax-aware pieces, or None when no grammar is available for `language`."""
    parser = get_parser(language) if language else None
    if parser is None:
        return None
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

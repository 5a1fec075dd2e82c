"""E-mail: .eml (one message) and .mbox (one document per message, citing its lines of the mbox)."""

from __future__ import annotations

import contextlib
import email
import re
from email import policy
from email.message import EmailMessage
from pathlib import Path

from gdn2_ingest.loaders.base import SkipFile, decode_text, strip_bom
from gdn2_ingest.types import Document

_HEADERS = ("Subject", "From", "To", "Cc", "Date")


def header(msg: EmailMessage, name: str) -> str:
    """A header's decoded value; its raw text when the policy's parser rejects it (the email
    package raises IndexError, HeaderParseError, ... on malformed addresses such as 'From: 0@')."""
    try:
        return str(msg.get(name, "") or "")
    except Exception:  # noqa: BLE001 - any parser failure: fall back to the raw value
        raw = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), "")
        return " ".join(str(raw).split())


def message_text(msg: EmailMessage) -> tuple[str, str]:
    """(text, subject): the headers users ask about, then the plain body (HTML bodies stripped)."""
    subject = header(msg, "Subject").strip()
    head = [f"{h}: {v}" for h in _HEADERS if (v := header(msg, h))]
    body = ""
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
        if part is not None:
            body = part.get_content()
            if part.get_content_type() == "text/html":
                from gdn2_ingest.loaders.office import html_to_text

                # malformed markup that html.parser rejects: the raw HTML is still the message
                with contextlib.suppress(Exception):
                    body = html_to_text(body)[0]
    except Exception:  # noqa: BLE001 - malformed MIME (LookupError, ValueError, parser errors): raw payload
        try:
            payload = msg.get_payload(decode=True)
        except Exception:  # noqa: BLE001 - even the raw payload cannot be read
            payload = None
        body = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    body = body.replace("\r\n", "\n").replace("\r", "\n").strip()
    return "\n".join(head) + "\n\n" + body + "\n", subject


def load_eml(path: Path, data: bytes) -> list[Document]:
    if not data.strip():
        raise SkipFile("empty file")
    data = strip_bom(data)
    msg = email.message_from_bytes(data, policy=policy.default)
    if not msg.keys():
        raise SkipFile("not an e-mail (no headers)")
    text, subject = message_text(msg)
    lines = (1, max(1, data.rstrip().count(b"\n") + 1))
    return [Document(path=str(path), text=text, title=subject or path.name, fmt="email", source_lines=lines)]


_FROM_LINE = re.compile(r"^From \S", re.M)


def load_mbox(path: Path, data: bytes) -> list[Document]:
    """Split on mbox 'From ' separator lines (what `mailbox.mbox` does) keeping each message's line."""
    text = decode_text(data)
    starts = [m.start() for m in _FROM_LINE.finditer(text)]
    if not starts:
        raise SkipFile("not an mbox (no 'From ' separator lines)")
    docs = []
    for i, s in enumerate(starts):
        e = starts[i + 1] if i + 1 < len(starts) else len(text)
        raw = text[s:e].split("\n", 1)[1] if "\n" in text[s:e] else ""
        # undo mboxrd quoting of body lines that began with 'From '
        raw = re.sub(r"^>(>*From )", r"\1", raw, flags=re.M)
        msg = email.message_from_string(raw, policy=policy.default)
        body, subject = message_text(msg)
        line = text.count("\n", 0, s) + 1
        last = line + text[s:e].rstrip().count("\n")
        msg_id = header(msg, "Message-ID").strip("<> ") or f"msg{i + 1}"
        docs.append(
            Document(
                path=str(path),
                text=body,
                title=subject or f"{path.name} message {i + 1}",
                fmt="email",
                sub=f"{i + 1}:{msg_id}",
                line_offset=line,
                source_lines=(line, last),
            )
        )
    return docs

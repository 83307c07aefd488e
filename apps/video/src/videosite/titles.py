"""What a video's title may hold, checked where a title enters, cleaned where one is shown.

A title is refused, with the character and its place named, when it holds a control
character (Unicode category Cc: NUL, tab, newline, escape, DEL, C1 controls), a line or
paragraph separator (U+2028, U+2029) or a bidirectional embedding, override or isolate
(U+202A–U+202E, U+2066–U+2069). Those change how the text around a title is laid out or
read (a right-to-left override makes ``exe.mp4`` read backwards), and no one types them
into a title. Other format characters stay: joiners build emoji and scripts need them.
Leading and trailing whitespace is removed first, so a trailing newline is not an error.

``shown`` removes the same characters from a title already stored (recorded before this
check, or by a program that wrote the stream itself), so a page never carries them.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_TITLE", "BadTitle", "check_title", "shown", "storable"]

MAX_TITLE = 200
#: bidirectional embeddings and overrides (LRE RLE PDF LRO RLO) and isolates (LRI RLI FSI PDI)
_BIDI = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A))
_SEPARATORS = frozenset({"Zl", "Zp"})


class BadTitle(ValueError):
    """Raised when a title is empty, too long, or holds a character titles may not hold."""


def forbidden(char: str) -> bool:
    """Whether ``char`` may not be in a title."""
    category = unicodedata.category(char)
    return category == "Cc" or category in _SEPARATORS or ord(char) in _BIDI


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


def check_title(raw: str) -> str:
    """``raw`` without leading and trailing whitespace; BadTitle when that is empty, longer
    than MAX_TITLE characters (the message gives its length), or holds a forbidden
    character."""
    title = raw.strip()
    for place, char in enumerate(title, start=1):
        if forbidden(char):
            raise BadTitle(f"the title holds {_describe(char)} at character {place}: "
                           "remove control, line-separator and bidi-override characters")
    if not title:
        sent = "empty" if not raw else f"only blanks ({len(raw)} characters)"
        raise BadTitle(f"the title is {sent}: a title of 1 to {MAX_TITLE} characters is "
                       "needed")
    if len(title) > MAX_TITLE:
        raise BadTitle(f"the title has {len(title)} characters: a title of 1 to {MAX_TITLE} "
                       "characters is needed")
    return title


def shown(title: str) -> str:
    """``title`` without the characters titles may not hold."""
    return "".join(char for char in title if not forbidden(char))


def storable(title: str) -> str:
    """``title`` as the catalog keeps it: without NUL, which no table can hold (PostgreSQL
    refuses it, and a table output refuses a row holding one on every backend). Titles are
    checked at upload; only a record written before that check can hold one."""
    return title.replace("\x00", "")

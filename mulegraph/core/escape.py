"""Writing values from exports safely: the one place for CSV formula guards and text escaping.

Account ids, transfer ids, channels and currencies come from bank exports, and a fraudster can
choose some of them (a payee reference, an account name in another bank's format). Nothing from an
export is trusted: every output that shows such a value to a person or a program passes it through
one of these functions.

* **CSV** (:func:`neutralise_formulas`): a spreadsheet runs a cell that starts with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return as a formula. Such text cells get a leading ``'``
  (OWASP's advice for CSV injection); so do text cells that already start with ``'``, which makes
  the guard reversible: :func:`strip_formula_guard` removes exactly one leading ``'`` and gives the
  value back. Numbers stay numbers: numeric columns are not touched, nor is text that is exactly
  a number (``-1``, ``+2.5e3``), which a spreadsheet reads as that number. Only String (and
  Categorical) columns are guarded, in one vectorised expression per column.
* **Text for people** (:func:`visible`): control characters (C0, DEL, C1), bidirectional controls
  (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), the line and paragraph separators
  U+2028/U+2029 and U+FEFF are shown as visible escapes (``\\x1b``, ``\\u202e``), never raw, so that
  no value can move the cursor, clear the screen, set a terminal title or reorder the text around
  it. A backslash already in a value is kept as it is, so ``C:\\x`` still reads ``C:\\x``.
* **Terminal** (:func:`terminal_text`): :func:`visible` text; commands print it as Rich ``Text``
  (never as markup), so ``[bold red]X[/bold red]`` prints literally.
* **Markdown** (:func:`markdown_text`): :func:`visible` text with ``&``, ``<``, ``>`` as HTML
  entities (backslash escapes are not honoured by every renderer) and Markdown's own control
  characters backslash-escaped, so a value can neither carry HTML nor start a table cell, a link,
  an emphasis, a code span, a heading or a list.
* **XML** (:func:`xml_text`, :func:`has_xml_illegal`): XML 1.0 cannot carry most control characters,
  not even as character references; attribute text shows them as visible escapes, and ids holding
  one are refused by the graph exports (an id must stay the store's id).

HTML pages are rendered by Jinja2 with autoescape on and :func:`visible` as the finaliser of every
expression, so HTML gets both.

Examples
--------
>>> visible("a\\x1b[2Jb\\u202ec")
'a\\\\x1b[2Jb\\\\u202ec'
>>> markdown_text("<script>|x*_")
'&lt;script&gt;\\\\|x\\\\*\\\\_'
>>> neutralise_formula("=1+2"), neutralise_formula("-2+3"), neutralise_formula("ACC1")
("'=1+2", "'-2+3", 'ACC1')
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

__all__ = [
    "FORMULA_PREFIXES",
    "FORMULA_GUARD",
    "neutralise_formula",
    "neutralise_formulas",
    "strip_formula_guard",
    "visible",
    "terminal_text",
    "markdown_text",
    "xml_text",
    "has_xml_illegal",
]

#: a text cell starting with one of these is read as a formula by spreadsheets (OWASP, CSV injection)
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
#: the character put in front of such a cell (and of a cell already starting with it, so it can be undone)
FORMULA_GUARD = "'"

# FORMULA_PREFIXES and FORMULA_GUARD as one regular expression (Python's re and Polars read it alike)
_GUARDED_PATTERN = r"^['=+@\t\r-]"
_GUARDED = re.compile(_GUARDED_PATTERN)
# text that is exactly a decimal number: a spreadsheet reads it as that number, not as a formula
_NUMBER_PATTERN = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_NUMBER = re.compile(_NUMBER_PATTERN)

# control characters shown as visible escapes: C0, DEL, C1, bidirectional controls, separators, BOM
_INVISIBLE = (
    list(range(0x00, 0x20)) + [0x7F] + list(range(0x80, 0xA0))
    + [0x061C, 0x200E, 0x200F] + list(range(0x202A, 0x202F)) + list(range(0x2066, 0x206A))
    + [0x2028, 0x2029, 0xFEFF]
)


def _escape_of(cp: int) -> str:
    return f"\\x{cp:02x}" if cp <= 0xFF else f"\\u{cp:04x}"


_VISIBLE = {cp: _escape_of(cp) for cp in _INVISIBLE}
_VISIBLE_KEEP_NEWLINES = {cp: e for cp, e in _VISIBLE.items() if cp not in (0x09, 0x0A)}

# Markdown: HTML entities first (one pass with the rest, so the entities are not escaped again)
_MARKDOWN = {
    ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;",
    **{ord(c): "\\" + c for c in "\\`*[]|#~$"},
}
# an underscore between two letters or digits cannot open or close emphasis (CommonMark's flanking
# rules), so feature names such as in_value stay readable; every other underscore is escaped
_MD_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
# characters that start a block (list, heading, quote, setext underline) at the start of a text
_MD_LEADING = re.compile(r"^([-+=])|^(\d{1,9})([.)])")

# XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def neutralise_formula(value: str | None) -> str | None:
    """One cell with the formula guard (see :func:`neutralise_formulas`); None stays None."""
    if value is None:
        return None
    return FORMULA_GUARD + value if _GUARDED.match(value) and not _NUMBER.match(value) else value


def neutralise_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every text cell that a spreadsheet would run as a formula guarded by a ``'``.

    Text cells starting with ``=``, ``+``, ``-``, ``@``, tab, carriage return, or ``'`` itself get a
    leading ``'``, unless the text is exactly a number; other cells, numeric, temporal and boolean
    columns and nulls are unchanged. Call it on the frame just before ``write_csv``.

    >>> neutralise_formulas(pl.DataFrame({"id": ["=cmd|' /C calc'!A0", "-2+3", "-1", None], "x": [-2, 3, 4, 5]})).rows()
    [("'=cmd|' /C calc'!A0", -2), ("'-2+3", 3), ('-1', 4), (None, 5)]
    """
    exprs = []
    for name, dtype in frame.schema.items():
        if dtype == pl.String or dtype == pl.Categorical:
            col = pl.col(name).cast(pl.String)
            exprs.append(
                pl.when(col.str.contains(_GUARDED_PATTERN) & ~col.str.contains(_NUMBER_PATTERN))
                .then(pl.lit(FORMULA_GUARD) + col)
                .otherwise(col)
                .alias(name)
            )
    return frame.with_columns(exprs) if exprs else frame


def strip_formula_guard(frame: pl.DataFrame, columns: list[str] | None = None) -> pl.DataFrame:
    """Undo :func:`neutralise_formulas` on a frame read back from CSV: one leading ``'`` removed
    from every text cell of ``columns`` (all String columns when None) that starts with one."""
    names = columns if columns is not None else [n for n, t in frame.schema.items() if t == pl.String]
    exprs = [
        pl.when(pl.col(n).str.starts_with(FORMULA_GUARD)).then(pl.col(n).str.slice(1)).otherwise(pl.col(n)).alias(n)
        for n in names
        if frame.schema.get(n) == pl.String
    ]
    return frame.with_columns(exprs) if exprs else frame


def visible(value: Any, *, keep_newlines: bool = False) -> str:
    """``value`` as text with every control character shown as a visible escape (``\\x1b``, ``\\u202e``).

    ``keep_newlines`` keeps tab and line feed (for messages of several lines); a carriage return is
    always escaped, since it lets a line overwrite itself on a terminal.
    """
    text = value if isinstance(value, str) else str(value)
    return text.translate(_VISIBLE_KEEP_NEWLINES if keep_newlines else _VISIBLE)


def terminal_text(value: Any) -> str:
    """A value from the data for a terminal: :func:`visible` text (``None`` as ``""``).

    Print it as ``rich.text.Text`` (or with ``typer.echo``), never as Rich markup.
    """
    return "" if value is None else visible(value)


def markdown_text(value: Any) -> str:
    """A value from the data as Markdown text that renders as exactly that text.

    Control characters become visible escapes (:func:`visible`); ``&``, ``<``, ``>`` become HTML
    entities; ``\\ ` * [ ] | # ~ $`` and ``_`` (except between two letters or digits, where it
    cannot mark emphasis) are backslash-escaped; a leading ``-``, ``+``, ``=`` or
    ``1.``/``1)`` is escaped so that it cannot start a list or a heading. ``None`` becomes ``""``.
    """
    if value is None:
        return ""
    text = _MD_UNDERSCORE.sub(r"\\_", visible(value).translate(_MARKDOWN))
    return _MD_LEADING.sub(lambda m: "\\" + m.group(1) if m.group(1) else m.group(2) + "\\" + m.group(3), text, count=1)


def has_xml_illegal(value: Any) -> bool:
    """True when ``value`` (as text) holds a character XML 1.0 cannot carry, even as a reference."""
    return isinstance(value, str) and _XML_ILLEGAL.search(value) is not None


def xml_text(value: str) -> str:
    """``value`` with every character XML 1.0 cannot carry shown as a visible escape (others kept)."""
    return _XML_ILLEGAL.sub(lambda m: _escape_of(ord(m.group())), value)

"""Regenerate the hostile-export corpus: `python tests/hostile_exports/regenerate.py`.

`hostile.csv` is one export in the canonical mapping whose account ids, transfer ids, channels and
currencies hold what a fraudster could choose: spreadsheet formulas, HTML, Rich markup, ANSI and
OSC escape sequences, NUL and other control characters, right-to-left overrides, 10 kB strings,
path-like ids and Markdown. Ordinary background transfers surround them, and every hostile account
gets a mule-like flow (several payers, money out again within hours), so that a run alerts it and
every output (reports, scores, show, trace) has to carry it.

Rows with control characters come after the first 64 KiB of the file (where a NUL could make the
whole file look binary), so the rest of the export is ingested whatever the control-character
rule of the day decides for them. The values are in `HOSTILE` for the tests to import.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl

HERE = Path(__file__).parent

FORMULAS = ['=HYPERLINK("http://x","y")', "=cmd|' /C calc'!A0", "+SUM(1)", "@x", "-2+3", "=1+1", "'=quoted"]
HTML = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<svg onload=alert(1)>",
    "</title><script>alert(2)</script>", '"><b onmouseover=alert(3)>x</b>', "&lt;script&gt;", "javascript:alert(4)",
]
MARKUP = ["[bold red]X[/bold red]", "x[/]y", "[link=http://x]y[/link]", ":smile:", "{{ 7*7 }}", "$\\frac{1$"]
MARKDOWN = ["| a | b |", "# heading", "- item", "1. item", "**bold** _em_", "`code`", "[x](http://evil.example)",
            "![i](http://evil.example/x.png)", "a\\|b"]
PATHS = ["../../etc/passwd", "C:\\x", "/dev/null", "~/.ssh/id_rsa", "CON", "a/../../b"]
BIDI = ["abc\u202edcba", "x\u2066y\u2069z", "\u200fRLM", "exe.\u202etxt"]
OTHER = ["\u00e9\u6f22\u5b57\U0001f642", 'quo"te', "com,ma", "semi;colon"]
LONG = ["L" * 10_000, ("<script>alert(5)</script>" * 400)[:10_000]]
# control characters: NUL, ANSI clear screen, OSC window title, bell, C1 CSI, DEL, line breaks
CONTROL = ["nul\x00byte", "\x1b[2Jclear", "\x1b]0;pwned\x07title", "red\x1b[31mx\x1b[0m", "bell\x07", "c1\x9b31mx",
           "del\x7fx", "new\nline", "car\rret"]

#: hostile account ids, transfer ids, channels and currencies, by kind
HOSTILE = {
    "formula": FORMULAS, "html": HTML, "markup": MARKUP, "markdown": MARKDOWN, "path": PATHS, "bidi": BIDI,
    "other": OTHER, "long": LONG, "control": CONTROL,
}

_T0 = datetime(2025, 1, 6, tzinfo=timezone.utc)
_COLUMNS = ["txn_id", "ts", "src_account", "dst_account", "amount", "currency", "channel"]


class _Rows:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rows: list[dict] = []
        self.n = 0

    def add(self, src: str, dst: str, when: datetime, amount: float, *, txn: str | None = None,
            currency: str = "EUR", channel: str | None = "sepa") -> None:
        self.n += 1
        self.rows.append({
            "txn_id": txn if txn is not None else f"T{self.n:06d}",
            "ts": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "src_account": src, "dst_account": dst, "amount": f"{amount:.2f}", "currency": currency, "channel": channel,
        })

    def background(self, n: int) -> None:
        """Ordinary transfers among 80 accounts over two weeks."""
        for _ in range(n):
            a, b = self.rng.sample(range(80), 2)
            when = _T0 + timedelta(minutes=self.rng.randrange(14 * 24 * 60))
            self.add(f"ACC{a:04d}", f"ACC{b:04d}", when, self.rng.uniform(5, 400),
                     channel=self.rng.choice(["card", "sepa", "instant"]))

    def mule(self, account: str, day: int, *, txn_ids: list[str], channels: list[str], payees: list[str],
             payers: int = 5) -> None:
        """``payers`` ordinary payers, then the money out again within hours (to ``payees``)."""
        start = _T0 + timedelta(days=day, hours=8)
        total = 0.0
        for i in range(payers):
            amount = self.rng.uniform(300, 900)
            total += amount
            self.add(f"ACC{self.rng.randrange(80):04d}", account, start + timedelta(minutes=20 * i), amount,
                     txn=txn_ids.pop(0) if txn_ids else None, channel=channels.pop(0) if channels else "instant")
        for j, payee in enumerate(payees):
            self.add(account, payee, start + timedelta(hours=3 + j), total * 0.95 / len(payees),
                     txn=txn_ids.pop(0) if txn_ids else None, channel=channels.pop(0) if channels else "instant")


def build(seed: int = 10) -> str:
    """The text of hostile.csv."""
    r = _Rows(seed)
    r.background(400)
    plain = [v for kind, values in HOSTILE.items() if kind not in ("control", "long") for v in values]
    # transfer ids and channels: every hostile value once (the second 10 kB string only there)
    txn_ids = plain + [LONG[1]]
    channels = plain + [LONG[1]]
    for i, account in enumerate(plain):
        payees = [f"ACC{r.rng.randrange(80):04d}", plain[(i + 1) % len(plain)]]
        r.mule(account, i % 12, txn_ids=txn_ids, channels=channels, payees=payees)
    # a 10 kB account id, on few rows to keep the file small
    r.mule(LONG[0], 5, txn_ids=txn_ids, channels=channels, payees=["ACC0004"], payers=3)
    assert not txn_ids and not channels
    # hostile currencies: the rows are quarantined (not ISO 4217 codes), the export is not refused
    for i, cur in enumerate(["=1+1", "<b>", "[red]", "E\u202eUR", "eur"]):
        r.add("ACC0001", "ACC0002", _T0 + timedelta(days=3, minutes=i), 10.0, currency=cur)
    text = pl.DataFrame(r.rows, schema={c: pl.String for c in _COLUMNS}).write_csv()
    while len(text.encode("utf-8")) < 70 * 1024:  # the control rows start after 64 KiB
        r.background(50)
        text = pl.DataFrame(r.rows, schema={c: pl.String for c in _COLUMNS}).write_csv()
    head = len(r.rows)
    for i, account in enumerate(CONTROL):
        r.mule(account, 12 + i % 2, txn_ids=[f"{CONTROL[(i + 1) % len(CONTROL)]}-{i}"],
               channels=[CONTROL[(i + 2) % len(CONTROL)]], payees=["ACC0003", CONTROL[(i + 1) % len(CONTROL)]])
    tail = pl.DataFrame(r.rows[head:], schema={c: pl.String for c in _COLUMNS}).write_csv(include_header=False)
    return text + tail


def main() -> None:
    (HERE / "hostile.csv").write_bytes(build().encode("utf-8"))


if __name__ == "__main__":
    main()

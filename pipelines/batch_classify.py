"""Classify many texts at once: pasted lines or a CSV / TSV / TXT file, each row reported on its own.

Files are read as UTF-8 (with or without a BOM) or GBK, whichever decodes. A CSV's quotes follow RFC 4180
and are checked strictly: a quote that does not balance is refused, naming its line, rather than merging the
rows after it into one text. A TSV has no quoting (as in the IANA definition): its quotes are part of the text.
At most ``MODELDECK_MAX_BATCH_ROWS`` rows (1000) are taken; an empty, unreadable or over-long row gets a note in
its own row of the result and never fails the batch. Results are written as CSV in UTF-8 with a BOM, so
spreadsheet programs show Chinese correctly.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from . import settings
from .classify import classify_texts
from .downloads import save_download
from .errors import InvalidInputError
from .inputs import blank

# A column is told by whole words of its name: "message" and "review_text" name texts, "message_id",
# "context" and "评论编号" do not.
TEXT_WORDS = {"text", "review", "comment", "content", "sentence", "message", "body", "feedback"}
TEXT_NAMES = re.compile(r"评论|评价|内容|文本|句子|留言|反馈|正文")
ID_WORDS = {"id", "ids", "uuid", "guid", "key", "no", "num", "number", "idx", "index", "code"}
ID_NAMES = re.compile(r"(编号|序号|号码|代码)$")
WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
NOT_PROSE = re.compile(r"[\d\s.,:/#+-]*")  # numbers, dates, times: never the texts
EMPTY = "空行，已跳过 / empty, skipped"
NOT_TEXT = "不是文本，已跳过 / not text, skipped"


def max_rows() -> int:
    """The most rows one batch may have (``MODELDECK_MAX_BATCH_ROWS``, default 1000)."""
    return settings.get("MODELDECK_MAX_BATCH_ROWS")


@dataclass
class Table:
    """A file's rows as text, its column names and the encoding it was read in."""

    columns: list[str]
    rows: list[list[str]]
    encoding: str
    multiline: list[int] = field(default_factory=list)  # rows (from 1) whose quoted text spans several lines


@dataclass
class RowResult:
    """One input row: its number (from 1), text, every label's score (empty when skipped) and a note."""

    row: int
    text: str
    scores: dict[str, float] = field(default_factory=dict)
    note: str = ""


def decode(data: bytes) -> tuple[str, str]:
    """Return the text and the name of the encoding it was in (UTF-8, UTF-8 BOM or GBK)."""
    for codec, name in (("utf-8-sig", "UTF-8"), ("gbk", "GBK")):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        return text, "UTF-8 BOM" if name == "UTF-8" and data.startswith(b"\xef\xbb\xbf") else name
    raise InvalidInputError("无法识别文件编码。请把文件另存为 UTF-8 或 GBK 编码的 CSV / TSV / TXT。",
                            "The file's encoding is not recognised. Save it as a CSV / TSV / TXT file in UTF-8 or GBK.")


def unbalanced(start: int, line: int, error: csv.Error) -> InvalidInputError:
    """The message for a CSV whose record from line ``start`` could not be read at line ``line``."""
    if "unexpected end of data" in str(error):  # a quote opened and never closed
        return InvalidInputError(
            f"第 {start} 行起有一个引号没有闭合，它后面的每一行都会被读成同一段文本。请删掉多余的引号，"
            "或把文本里的引号写成两个（\"\"）。",
            f"A quote from line {start} on is never closed: every line after it would be read as one text. "
            'Remove the stray quote, or double a quote that is part of the text ("").')
    where_zh, where_en = (f"第 {line} 行", f"line {line}") if line == start else \
        (f"第 {start}–{line} 行", f"lines {start}–{line}")
    return InvalidInputError(
        f"无法解析这个表格文件：{where_zh}的引号不成对（{error}）。请检查引号是否成对，或把文本里的引号写成两个（\"\"）。",
        f"The table cannot be parsed: the quotes on {where_en} are not balanced ({error}). Check that quotes "
        'are balanced, or double a quote that is part of the text ("").')


def parse_rows(text: str, delimiter: str) -> tuple[list[list[str]], list[int]]:
    """A CSV's (strict quotes) or TSV's (no quoting) rows, and the indexes of rows that span several lines."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    # csv refuses a field over 131 072 characters by default, which read as a quote error in a file with a long
    # text and no quote at all. The whole file is in memory already (uploads are capped): no field can be longer.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    rows: list[list[str]] = []
    multiline: list[int] = []
    start = 1
    try:
        for row in reader:
            if reader.line_num > start:
                multiline.append(len(rows))
            rows.append(row)
            start = reader.line_num + 1
    except csv.Error as error:
        raise unbalanced(start, max(reader.line_num, start), error) from None
    return rows, multiline


def read_table(path: str, *, header: bool = True) -> Table:
    """Read a CSV, TSV or TXT file (one text per line); the first row names the columns when ``header``."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in (".csv", ".tsv", ".txt"):
        raise InvalidInputError("只支持 CSV、TSV 或 TXT 文件。", "Only CSV, TSV and TXT files are supported.")
    with open(path, "rb") as f:
        text, encoding = decode(f.read())
    text = text.replace("\x00", "")
    if extension == ".txt":
        rows, multiline = [[line] for line in text.splitlines()], []
    else:
        rows, multiline = parse_rows(text, "\t" if extension == ".tsv" else ",")
    width = max((len(r) for r in rows), default=0)
    if width == 0:
        raise InvalidInputError("文件是空的。", "The file is empty.")
    rows = [r + [""] * (width - len(r)) for r in rows]
    names = rows.pop(0) if header and extension != ".txt" else []
    columns = [name.strip() or f"列 {i + 1} column {i + 1}" for i, name in enumerate(names)] or \
        [f"列 {i + 1} column {i + 1}" for i in range(width)]
    columns += [f"列 {i + 1} column {i + 1}" for i in range(len(columns), width)]
    first = 1 if names else 0
    return Table(columns, rows, encoding, [i - first + 1 for i in multiline if i >= first])


def guess_text_column(table: Table) -> int:
    """The column that most likely holds the texts: never an id-like or numbers-only one; a name that says
    text (a whole word: "message", not "message_id"), then the longest values on average."""
    sample = table.rows[:200]

    def words(i: int) -> list[str]:
        return [w.lower() for w in WORDS.findall(table.columns[i])]

    def prose(i: int) -> bool:
        name, values = table.columns[i], [r[i] for r in sample if r[i].strip()]
        id_like = (words(i)[-1:] and words(i)[-1] in ID_WORDS) or ID_NAMES.search(name.strip())
        return not id_like and any(not NOT_PROSE.fullmatch(v) for v in values)

    def named(i: int) -> bool:
        return any(w in TEXT_WORDS or w.removesuffix("s") in TEXT_WORDS for w in words(i)) or \
            bool(TEXT_NAMES.search(table.columns[i]))

    candidates = [i for i in range(len(table.columns)) if prose(i)] or list(range(len(table.columns)))
    return max(candidates, key=lambda i: (named(i), sum(len(r[i]) for r in sample) / max(len(sample), 1)))


def check_row_count(count: int) -> None:
    """Refuse more rows than one batch may have (``MODELDECK_MAX_BATCH_ROWS``), saying what to do."""
    if count > max_rows():
        raise InvalidInputError(
            f"一次最多分类 {max_rows()} 行，这里有 {count} 行。请拆分文件，或调大 MODELDECK_MAX_BATCH_ROWS。",
            f"At most {max_rows()} rows can be classified at once; this has {count}. Split the file, "
            "or raise MODELDECK_MAX_BATCH_ROWS.")


def pasted_lines(text: Any) -> list[str]:
    """The non-blank lines of pasted text."""
    if not isinstance(text, str):
        return []
    return [line for line in text.splitlines() if line.strip()]


def classify_rows(texts: Any, model: str | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[RowResult]:
    """Classify every text in order; a row that cannot be classified gets a note instead of failing the batch."""
    if not isinstance(texts, (list, tuple)):
        raise InvalidInputError("texts 必须是文本列表，例如 [\"很好\", \"很差\"]。",
                                'texts must be a list of texts, like ["great", "awful"].')
    if not texts:
        raise InvalidInputError("请至少给出一段文本。", "Give at least one text.")
    check_row_count(len(texts))
    results = [RowResult(i + 1, t if isinstance(t, str) else "") for i, t in enumerate(texts)]
    todo = []
    for result, text in zip(results, texts):
        if not isinstance(text, str):
            result.note = NOT_TEXT
        elif blank(text):
            result.note = EMPTY
        else:
            todo.append(result)
    if not todo:
        return results
    notes: list[str] = []
    scores = classify_texts([r.text for r in todo], model, progress=progress, notes=notes)
    for result, score, note in zip(todo, scores, notes):
        result.scores, result.note = score, note
    return results


def label_names(results: list[RowResult]) -> list[str]:
    """Every label that appears in the results, sorted by name."""
    names: list[str] = []
    for result in results:
        names += [n for n in sorted(result.scores) if n not in names]
    return names


def result_rows(results: list[RowResult]) -> tuple[list[str], list[list[Any]]]:
    """The result as a table: row, text, top label, note, every label's score (the note beside the label: on a
    narrow screen the last columns are off to the side, and a skipped row's only content is its note)."""
    labels = label_names(results)
    headers = ["行 row", "文本 text", "标签 label", "备注 note", *labels]
    rows = [[r.row, r.text, max(r.scores, key=r.scores.get) if r.scores else "", r.note,
             *[round(r.scores[n], 4) if n in r.scores else "" for n in labels]] for r in results]
    return headers, rows


def save_results_csv(results: list[RowResult]) -> str:
    """Write the result table as a UTF-8 CSV with a BOM and return its path."""
    headers, rows = result_rows(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(headers)
    writer.writerows(rows)
    return save_download(buffer.getvalue().encode("utf-8-sig"), "modeldeck-classified", "csv")

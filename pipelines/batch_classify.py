"""Classify many texts at once: pasted lines or a CSV / TSV / TXT file, each row reported on its own.

Files are read as UTF-8 (with or without a BOM) or GBK, whichever decodes. At most
``MODELDECK_MAX_BATCH_ROWS`` rows (1000) are taken; an empty, unreadable or over-long row gets a note in
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
from .backends import classifier
from .classify import classify_texts
from .downloads import save_download
from .errors import InvalidInputError
from .inputs import _CONTROL, max_input_chars
from .windows import input_window

TEXT_COLUMN = re.compile(r"(?i)text|review|comment|content|sentence|message|评论|评价|内容|文本|句子|留言")
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


def read_table(path: str, *, header: bool = True) -> Table:
    """Read a CSV, TSV or TXT file (one text per line); the first row names the columns when ``header``."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in (".csv", ".tsv", ".txt"):
        raise InvalidInputError("只支持 CSV、TSV 或 TXT 文件。", "Only CSV, TSV and TXT files are supported.")
    with open(path, "rb") as f:
        text, encoding = decode(f.read())
    text = text.replace("\x00", "")
    if extension == ".txt":
        rows = [[line] for line in text.splitlines()]
    else:
        try:
            rows = list(csv.reader(io.StringIO(text), delimiter="\t" if extension == ".tsv" else ","))
        except csv.Error as exc:
            raise InvalidInputError(f"无法解析这个表格文件（{exc}）。请检查引号是否成对。",
                                    f"The table cannot be parsed ({exc}). Check that quotes are balanced.") from None
    width = max((len(r) for r in rows), default=0)
    if width == 0:
        raise InvalidInputError("文件是空的。", "The file is empty.")
    rows = [r + [""] * (width - len(r)) for r in rows]
    names = rows.pop(0) if header and extension != ".txt" else []
    columns = [name.strip() or f"列 {i + 1} column {i + 1}" for i, name in enumerate(names)] or \
        [f"列 {i + 1} column {i + 1}" for i in range(width)]
    columns += [f"列 {i + 1} column {i + 1}" for i in range(len(columns), width)]
    return Table(columns, rows, encoding)


def guess_text_column(table: Table) -> int:
    """The column that most likely holds the texts: a telling name, else the longest on average."""
    for i, name in enumerate(table.columns):
        if TEXT_COLUMN.search(name):
            return i
    sample = table.rows[:200]
    return max(range(len(table.columns)), key=lambda i: sum(len(r[i]) for r in sample)) if sample else 0


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
    if len(texts) > max_rows():
        raise InvalidInputError(
            f"一次最多分类 {max_rows()} 行，这里有 {len(texts)} 行。请拆分文件，或调大 MODELDECK_MAX_BATCH_ROWS。",
            f"At most {max_rows()} rows can be classified at once; this has {len(texts)}. Split the file, "
            "or raise MODELDECK_MAX_BATCH_ROWS.")
    results = [RowResult(i + 1, t if isinstance(t, str) else "") for i, t in enumerate(texts)]
    todo = []
    for result, text in zip(results, texts):
        if not isinstance(text, str):
            result.note = NOT_TEXT
        elif not _CONTROL.sub("", text).strip():
            result.note = EMPTY
        else:
            todo.append(result)
    if not todo:
        return results
    loaded = getattr(classifier(model), "loaded", None)  # a remote classifier's window is the server's business
    limit = input_window(loaded) if loaded is not None else 0
    chars = max_input_chars()
    lengths = ([len(ids) for ids in loaded.processor([r.text[:chars] for r in todo], truncation=False)["input_ids"]]
               if loaded is not None else [0] * len(todo))
    for result, length in zip(todo, lengths):
        if length > limit:
            result.note = (f"过长：模型只读了前 {limit} 个词元 / too long: the model read only its first {limit} "
                           "tokens")
    scores = classify_texts([r.text for r in todo], model, progress=progress)
    for result, score in zip(todo, scores):
        result.scores = score
    return results


def label_names(results: list[RowResult]) -> list[str]:
    """Every label that appears in the results, sorted by name."""
    names: list[str] = []
    for result in results:
        names += [n for n in sorted(result.scores) if n not in names]
    return names


def result_rows(results: list[RowResult]) -> tuple[list[str], list[list[Any]]]:
    """The result as a table: row, text, top label, every label's score, note."""
    labels = label_names(results)
    headers = ["行 row", "文本 text", "标签 label", *labels, "备注 note"]
    rows = [[r.row, r.text, max(r.scores, key=r.scores.get) if r.scores else "",
             *[round(r.scores[n], 4) if n in r.scores else "" for n in labels], r.note] for r in results]
    return headers, rows


def save_results_csv(results: list[RowResult]) -> str:
    """Write the result table as a UTF-8 CSV with a BOM and return its path."""
    headers, rows = result_rows(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(headers)
    writer.writerows(rows)
    return save_download(buffer.getvalue().encode("utf-8-sig"), "modeldeck-classified", "csv")

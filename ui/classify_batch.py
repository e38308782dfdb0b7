"""The classification tab's batch part: paste many lines or upload a CSV / TSV / TXT file, choose the
text column, watch the progress, read every label's score in a table and download it as CSV.

An uploaded file is what gets classified; lines pasted as well are left out, and the result says so. What the
file holds (rows, columns, encoding) shows under it, apart from the last batch's summary, which only a new
batch replaces.
"""

from __future__ import annotations

import time
from typing import Any

import gradio as gr

from pipelines import batch_classify
from pipelines.batch_classify import RowResult

from .adapters import file_path
from .common import CLASSIFIER, checked, edge, gpu

NO_FILE = gr.update(choices=[], value=None, visible=False)
NOTHING = "请粘贴几行文本，或上传 CSV / TSV / TXT 文件。 / Paste some lines or upload a CSV / TSV / TXT file."


@edge
def columns(upload: Any, header: bool) -> tuple[Any, str]:
    """Offer the uploaded file's columns, the likely text column chosen; say what was read."""
    path = file_path(upload)
    if not path:
        return NO_FILE, ""
    table = batch_classify.read_table(path, header=header)
    guess = batch_classify.guess_text_column(table)
    choices = [(name, i) for i, name in enumerate(table.columns)]
    return gr.update(choices=choices, value=guess, visible=len(choices) > 1), file_md(table)


def file_md(table: batch_classify.Table) -> str:
    """What was read from a file: rows, columns, encoding; too many rows; rows whose text spans lines."""
    text = f"📄 {len(table.rows)} 行 rows · {len(table.columns)} 列 columns · 编码 encoding **{table.encoding}**"
    most = batch_classify.max_rows()
    if len(table.rows) > most:
        text += (f"\n\n⚠️ 超过一次最多能分类的 {most} 行：请拆分文件。 / More than the {most} rows one batch may "
                 "have: split the file.")
    if table.multiline:
        shown = listed(table.multiline)
        text += (f"\n\nℹ️ 这些行的文本跨多行（引号里有换行）：第 {shown} 行 / These rows' texts span several lines "
                 f"(line breaks inside quotes): {shown}")
    return text


def listed(numbers: list[int]) -> str:
    """Up to ten row numbers, then an ellipsis."""
    return ", ".join(map(str, numbers[:10])) + (" …" if len(numbers) > 10 else "")


def summary_md(results: list[RowResult], seconds: float, encoding: str | None, left_out: int = 0) -> str:
    """One line: how many rows were classified, skipped or cut, how fast, which encoding; ``left_out`` pasted
    lines not classified because a file was."""
    done = sum(1 for r in results if r.scores)
    noted = [r.row for r in results if r.note]
    text = f"✅ 已分类 classified **{done}** / {len(results)} 行 rows · {done / max(seconds, 1e-9):.1f} 行/秒 rows/s"
    if encoding:
        text += f" · 编码 encoding {encoding}"
    if noted:
        text += f"\n\n⚠️ 有备注的行 rows with a note: {listed(noted)}"
    if left_out:
        text += (f"\n\nℹ️ 分类的是上传的文件，粘贴的 {left_out} 行没有分类（要分类它们，请先移除文件）。 / The uploaded "
                 f"file was classified; the {left_out} pasted lines were not (remove the file to classify them).")
    return text


SHOWN_CHARS = 120  # of a cell in the table shown; the CSV has all of it


def column_widths(headers: list[str]) -> list[Any]:
    """The result table's column widths: row, text, label, note, then one per label's score."""
    return [56, "40%", 120, 180, *[96] * (len(headers) - 4)]


def texts_of(pasted: str, upload: Any, header: bool, column: Any = None) -> tuple[list[str], str | None]:
    """The texts to classify, the uploaded file's chosen column (else its likely one) before any pasted lines,
    and the file's encoding (None for pasted lines)."""
    path = file_path(upload)
    if not path:
        return batch_classify.pasted_lines(pasted), None
    table = batch_classify.read_table(path, header=header)
    index = column if isinstance(column, int) and 0 <= column < len(table.columns) else \
        batch_classify.guess_text_column(table)
    return [row[index] for row in table.rows], table.encoding


def need_rows(pasted: str, upload: Any, header: bool) -> None:
    """Refuse when there is nothing to classify or too much: nothing pasted, a file that cannot be read, has no
    rows or more than a batch may have (``checked``: the last results stay as they are)."""
    texts, _ = texts_of(pasted, upload, header)
    if not texts:
        raise gr.Error(NOTHING, print_exception=False)
    batch_classify.check_row_count(len(texts))


@gpu
@edge
def classify_many(pasted: str, upload: Any, header: bool, column: Any, model: str,
                  progress: gr.Progress = gr.Progress()) -> tuple[Any, Any, str]:
    """Classify the uploaded file's chosen column (or else the pasted lines); return table, CSV, summary."""
    texts, encoding = texts_of(pasted, upload, header, column)
    if not texts:
        raise gr.Error(NOTHING, print_exception=False)
    left_out = len(batch_classify.pasted_lines(pasted)) if encoding else 0
    progress(0, desc="分类中 Classifying")
    started = time.perf_counter()
    results = batch_classify.classify_rows(
        texts, model, progress=lambda done, total: progress(done / total, desc=f"{done}/{total}"))
    seconds = time.perf_counter() - started
    headers, rows = batch_classify.result_rows(results)
    csv_path = batch_classify.save_results_csv(results)
    return gr.update(value={"headers": headers, "data": rows}, visible=True, column_widths=column_widths(headers)), \
        gr.update(value=csv_path, visible=True), \
        summary_md(results, seconds, encoding, left_out)


def build(model: gr.Dropdown) -> None:
    """Lay out the batch part under the single-text classifier; ``model`` is the tab's model choice."""
    gr.Markdown("### 📄 批量分类 · Classify many texts")
    with gr.Row():
        with gr.Column():
            pasted = gr.Textbox(label="每行一段文本 One text per line", lines=6, elem_id="classify-batch-text",
                                info="上传了文件时只分类文件 · While a file is uploaded, only the file is classified")
        with gr.Column():
            upload = gr.File(label="或上传 CSV / TSV / TXT（UTF-8 或 GBK） · or upload a file (UTF-8 or GBK)",
                             file_types=[".csv", ".tsv", ".txt"], elem_id="classify-batch-file")
            file_info = gr.Markdown(elem_id="classify-batch-file-info")
            header = gr.Checkbox(value=True, label="第一行是表头 First row is a header", elem_id="classify-batch-header")
            column = gr.Dropdown([], label="文本所在的列 Text column", visible=False, elem_id="classify-batch-column")
    go = gr.Button("🏷️ 全部分类 · Classify all", variant="primary", elem_id="classify-batch-run")
    # The results span the page's width: in half of it, a column of texts pushed the labels, notes and scores
    # off to the side, where nothing showed they were.
    status = gr.Markdown(elem_id="classify-batch-status")
    table = gr.Dataframe(label="结果 Results", interactive=False, visible=False, wrap=True, max_height=420,
                         max_chars=SHOWN_CHARS, elem_id="classify-batch-table")
    download = gr.File(label="下载 CSV（UTF-8 BOM） · Download CSV", interactive=False, visible=False,
                       elem_id="classify-batch-download")
    private = {"api_visibility": "private"}
    for trigger in (upload.change, header.change):
        trigger(columns, [upload, header], [column, file_info], **private)  # queued: see chat_saved.build
    checked(go.click, need_rows, [pasted, upload, header]).success(
        classify_many, [pasted, upload, header, column, model], [table, download, status], concurrency_id=CLASSIFIER,
        concurrency_limit=1, **private)

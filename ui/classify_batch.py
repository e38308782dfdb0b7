"""The classification tab's batch part: paste many lines or upload a CSV / TSV / TXT file, choose the
text column, watch the progress, read every label's score in a table and download it as CSV."""

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
    summary = (f"📄 {len(table.rows)} 行 rows · {len(table.columns)} 列 columns · 编码 encoding **{table.encoding}**")
    return gr.update(choices=choices, value=guess, visible=len(choices) > 1), summary


def summary_md(results: list[RowResult], seconds: float, encoding: str | None) -> str:
    """One line: how many rows were classified, skipped or cut, how fast, which encoding."""
    done = sum(1 for r in results if r.scores)
    noted = [r.row for r in results if r.note]
    text = f"✅ 已分类 classified **{done}** / {len(results)} 行 rows · {done / max(seconds, 1e-9):.1f} 行/秒 rows/s"
    if encoding:
        text += f" · 编码 encoding {encoding}"
    if noted:
        shown = ", ".join(map(str, noted[:10])) + (" …" if len(noted) > 10 else "")
        text += f"\n\n⚠️ 有备注的行 rows with a note: {shown}"
    return text


def need_rows(pasted: str, upload: Any, header: bool) -> None:
    """Refuse when there is nothing to classify: nothing pasted, or a file that cannot be read or has no rows
    (``checked``: the last results stay as they are)."""
    path = file_path(upload)
    rows = batch_classify.read_table(path, header=header).rows if path else batch_classify.pasted_lines(pasted)
    if not rows:
        raise gr.Error(NOTHING, print_exception=False)


@gpu
@edge
def classify_many(pasted: str, upload: Any, header: bool, column: Any, model: str,
                  progress: gr.Progress = gr.Progress()) -> tuple[Any, Any, str]:
    """Classify the uploaded file's chosen column (or else the pasted lines); return table, CSV, summary."""
    path, encoding = file_path(upload), None
    if path:
        table = batch_classify.read_table(path, header=header)
        index = column if isinstance(column, int) and 0 <= column < len(table.columns) else \
            batch_classify.guess_text_column(table)
        texts = [row[index] for row in table.rows]
        encoding = table.encoding
    else:
        texts = batch_classify.pasted_lines(pasted)
    if not texts:
        raise gr.Error(NOTHING, print_exception=False)
    progress(0, desc="分类中 Classifying")
    started = time.perf_counter()
    results = batch_classify.classify_rows(
        texts, model, progress=lambda done, total: progress(done / total, desc=f"{done}/{total}"))
    seconds = time.perf_counter() - started
    headers, rows = batch_classify.result_rows(results)
    csv_path = batch_classify.save_results_csv(results)
    return gr.update(value={"headers": headers, "data": rows}, visible=True), gr.update(value=csv_path, visible=True), \
        summary_md(results, seconds, encoding)


def build(model: gr.Dropdown) -> None:
    """Lay out the batch part under the single-text classifier; ``model`` is the tab's model choice."""
    gr.Markdown("### 📄 批量分类 · Classify many texts")
    with gr.Row():
        with gr.Column():
            pasted = gr.Textbox(label="每行一段文本 One text per line", lines=6, elem_id="classify-batch-text")
            upload = gr.File(label="或上传 CSV / TSV / TXT（UTF-8 或 GBK） · or upload a file (UTF-8 or GBK)",
                             file_types=[".csv", ".tsv", ".txt"], elem_id="classify-batch-file")
            header = gr.Checkbox(value=True, label="第一行是表头 First row is a header", elem_id="classify-batch-header")
            column = gr.Dropdown([], label="文本所在的列 Text column", visible=False, elem_id="classify-batch-column")
            go = gr.Button("🏷️ 全部分类 · Classify all", variant="primary", elem_id="classify-batch-run")
        with gr.Column():
            status = gr.Markdown(elem_id="classify-batch-status")
            table = gr.Dataframe(label="结果 Results", interactive=False, visible=False, wrap=True, max_height=420,
                                 elem_id="classify-batch-table")
            download = gr.File(label="下载 CSV（UTF-8 BOM） · Download CSV", interactive=False, visible=False,
                               elem_id="classify-batch-download")
    private = {"api_visibility": "private"}
    for trigger in (upload.change, header.change):
        trigger(columns, [upload, header], [column, status], **private)  # queued: see chat_saved.build
    checked(go.click, need_rows, [pasted, upload, header]).success(
        classify_many, [pasted, upload, header, column, model], [table, download, status], concurrency_id=CLASSIFIER,
        concurrency_limit=1, **private)

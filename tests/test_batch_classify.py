"""Classifying a whole file: encodings, columns, per-row problems, the row cap, progress and the CSV."""

from __future__ import annotations

import csv
import io

import pytest

import pipelines as p
from pipelines import batch_classify as bc
from pipelines.errors import InvalidInputError

ROWS = [["id", "评论"], ["1", "这家店的服务太好了"], ["2", "快递太慢了，很失望"], ["3", "还可以"]]


def write(tmp_path, name: str, text: str, encoding: str):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


def as_csv(rows, delimiter=",") -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    return buffer.getvalue()


@pytest.mark.parametrize("encoding, name", [("utf-8", "UTF-8"), ("utf-8-sig", "UTF-8 BOM"), ("gbk", "GBK")])
def test_csv_in_each_encoding_reads_the_same_rows(tmp_path, encoding, name):
    table = bc.read_table(write(tmp_path, "reviews.csv", as_csv(ROWS), encoding))
    assert table.encoding == name
    assert table.columns == ["id", "评论"] and table.rows == ROWS[1:]
    assert bc.guess_text_column(table) == 1  # named like a text column


def test_tsv_txt_headerless_and_ragged_files(tmp_path):
    tsv = bc.read_table(write(tmp_path, "a.tsv", as_csv(ROWS, "\t"), "utf-8"))
    assert tsv.rows == ROWS[1:]
    txt = bc.read_table(write(tmp_path, "a.txt", "第一行\n\n第三行\n", "gbk"))
    assert txt.rows == [["第一行"], [""], ["第三行"]] and txt.encoding == "GBK"
    plain = bc.read_table(write(tmp_path, "b.csv", "1,很长的一段评论文字\n2,短\n3\n", "utf-8"), header=False)
    assert plain.columns == ["列 1 column 1", "列 2 column 2"] and plain.rows[2] == ["3", ""]
    assert bc.guess_text_column(plain) == 1  # no telling name: the longest column


@pytest.mark.parametrize("name, data, says", [
    ("x.csv", b"\x80\xff\xfe\x81 ", "encoding is not recognised"),
    ("x.csv", b"", "The file is empty"),
    ("x.xlsx", b"PK\x03\x04", "Only CSV, TSV and TXT"),
])
def test_unreadable_files_get_a_clear_message(tmp_path, name, data, says):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InvalidInputError, match=says):
        bc.read_table(str(path))


def test_rows_come_back_in_order_and_bad_rows_are_noted_without_failing_the_batch():
    texts = ["好", "", "   ", "\x01\x02", 42, "猫狗" * 200, "this is fine"]
    results = p.classify_rows(texts, "Tiny 中文情感")
    assert [r.row for r in results] == list(range(1, 8))
    assert [bool(r.scores) for r in results] == [True, False, False, False, False, True, True]
    assert results[1].note == results[2].note == results[3].note == bc.EMPTY and results[4].note == bc.NOT_TEXT
    assert "too long" in results[5].note and "128" in results[5].note  # the tiny model reads 128 tokens
    assert results[0].note == results[6].note == ""
    expected = p.classify_texts(["好", "猫狗" * 200, "this is fine"], "Tiny 中文情感")
    assert [results[0].scores, results[5].scores, results[6].scores] == expected
    assert set(results[0].scores) == {"负面 negative", "正面 positive"}


def test_the_batched_path_is_used_once_for_all_rows(monkeypatch):
    calls = []
    real = bc.classify_texts
    monkeypatch.setattr(bc, "classify_texts", lambda texts, *a, **k: calls.append(len(texts)) or real(texts, *a, **k))
    p.classify_rows([f"第 {i} 条" for i in range(70)] + [""])
    assert calls == [70]


def test_the_row_cap_is_enforced_with_a_message_naming_the_variable(monkeypatch):
    monkeypatch.setenv("MODELDECK_MAX_BATCH_ROWS", "5")
    assert len(p.classify_rows(["a"] * 5)) == 5
    with pytest.raises(InvalidInputError, match="MODELDECK_MAX_BATCH_ROWS") as err:
        p.classify_rows(["a"] * 6)
    assert "At most 5 rows" in str(err.value) and "6" in str(err.value)
    with pytest.raises(InvalidInputError, match="at least one text"):
        p.classify_rows([])


def test_progress_is_reported_after_each_batch(monkeypatch):
    monkeypatch.setenv("MODELDECK_CLASSIFY_BATCH", "8")
    seen = []
    p.classify_rows([f"句子 {i}" for i in range(20)], progress=lambda done, total: seen.append((done, total)))
    assert seen == [(8, 20), (16, 20), (20, 20)]


def test_results_download_as_utf8_csv_with_a_bom():
    results = p.classify_rows(["这家店很好", ""], "Tiny 中文情感")
    path = bc.save_results_csv(results)
    data = open(path, "rb").read()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == ["行 row", "文本 text", "标签 label", "备注 note", "正面 positive", "负面 negative"]
    assert rows[1][1] == "这家店很好" and rows[1][2] in ("正面 positive", "负面 negative")
    assert abs(float(rows[1][4]) + float(rows[1][5]) - 1) < 1e-3
    assert rows[2][:4] == ["2", "", "", bc.EMPTY]


def test_pasted_text_keeps_its_non_blank_lines():
    assert bc.pasted_lines("一\n\n  \n二\r\n三") == ["一", "二", "三"]
    assert bc.pasted_lines(None) == []


@pytest.mark.parametrize("text, line", [
    ('text\n"很好\n太差了\n一般\n还行\n', 2),  # opened, never closed: the rows after it would become one text
    ('text\n还行\n"好"的东西\n一般\n', 3),  # closed in the middle of a field
])
def test_a_csv_whose_quotes_do_not_balance_is_refused_naming_the_line(tmp_path, text, line):
    with pytest.raises(InvalidInputError, match=f"line {line}") as err:
        bc.read_table(write(tmp_path, "stray.csv", text, "utf-8"))
    message = str(err.value)
    assert f"第 {line} 行" in message and message.index("引号") < message.index("quote")


def test_a_csv_text_quoted_across_lines_is_one_row_and_is_reported(tmp_path):
    table = bc.read_table(write(tmp_path, "multi.csv", 'id,text\n1,很好\n2,"第一行\n第二行"\n3,"说""好""的"\n', "utf-8"))
    assert [r[1] for r in table.rows] == ["很好", "第一行\n第二行", '说"好"的'] and table.multiline == [2]
    from ui import classify_batch

    assert "span several lines (line breaks inside quotes): 2" in classify_batch.file_md(table)  # shown under the file


def test_a_tsv_keeps_its_quotes_as_text_and_loses_no_row(tmp_path):
    text = 'id\ttext\n1\t"好"的东西\n2\t"太差了\n3\t一般\n4\t还行\n'
    table = bc.read_table(write(tmp_path, "quotes.tsv", text, "utf-8"))
    assert table.rows == [["1", '"好"的东西'], ["2", '"太差了'], ["3", "一般"], ["4", "还行"]] and table.multiline == []


@pytest.mark.parametrize("name, delimiter", [("long.csv", ","), ("long.tsv", "\t")])
def test_a_cell_longer_than_the_csv_modules_field_limit_is_read_and_noted_not_called_a_quote_error(
        tmp_path, name, delimiter):
    # csv refuses a field over 131 072 characters; that was reported as "the quotes on line 2 are not balanced"
    # in a file with no quote at all. The row is read and, like any over-long text, cut with a note.
    long = "很" * 200_000
    table = bc.read_table(write(tmp_path, name, f"id{delimiter}text\n1{delimiter}{long}\n2{delimiter}好\n", "utf-8"))
    assert table.rows == [["1", long], ["2", "好"]]
    results = bc.classify_rows([row[1] for row in table.rows])
    assert results[0].scores and "too long" in results[0].note and results[1].scores and not results[1].note


@pytest.mark.parametrize("columns, rows, text", [
    (["message_id", "message"], [["m-0001-abc", "好"], ["m-0002-abc", "差"]], 1),  # an id, though longer
    (["id", "context", "review"], [["1", "商品页面 https://example.com/item/1", "很好"]], 2),  # a whole word
    (["messageId", "评论编号", "reviewText"], [["a1b2c3d4e5", "A-0001", "还行"]], 2),
    (["编号", "用户", "评论内容", "日期"], [["1", "张三", "物流很快", "2026-11-01"]], 2),
    (["id", "score", "note"], [["1", "4.5", "a"], ["2", "3", "bb"]], 2),  # no telling name: never the numbers
    (["no", "title", "body"], [["1", "一个很长很长的标题写在这里", "短"]], 2),
    (["user", "text", "text_2"], [["李四", "好", "这家店的服务太好了"]], 2),  # two telling names: the longer
])
def test_the_text_column_is_guessed_by_whole_word_never_an_id_and_prefers_longer_text(columns, rows, text):
    assert bc.guess_text_column(bc.Table(columns, rows, "UTF-8")) == text


def test_the_single_text_path_reports_a_cut_text(monkeypatch):
    notices: list[str] = []
    p.classify_text("好", "Tiny 中文情感", notices)
    assert notices == []
    p.classify_text("猫狗" * 200, "Tiny 中文情感", notices)
    assert len(notices) == 1 and "too long" in notices[0] and "128" in notices[0]
    monkeypatch.setenv("MODELDECK_MAX_INPUT_CHARS", "10")
    notices.clear()
    p.classify_text("很好很好很好很好很好很好", "Tiny 中文情感", notices)  # within the window once cut to 10
    assert len(notices) == 1 and "first 10 characters" in notices[0]
    rows = p.classify_rows(["很好很好很好很好很好很好", "很好"], "Tiny 中文情感")
    assert "first 10 characters" in rows[0].note and rows[1].note == ""  # the batch notes it the same way


def test_the_tab_shows_the_cut_notice_under_the_scores():
    from ui import classify_tab

    scores, notes = classify_tab.run("猫狗" * 200, "Tiny 中文情感")
    assert set(scores) == {"负面 negative", "正面 positive"} and "⚠️" in notes and "too long" in notes
    assert classify_tab.run("很好", "Tiny 中文情感")[1] == ""


def test_the_classify_endpoint_warns_of_a_cut_text(monkeypatch):
    from ui import api

    warned: list[str] = []
    monkeypatch.setattr(api, "warn", warned.extend)  # gr.Warning: a toast in the page, a log message to clients
    assert set(api.classify("猫狗" * 200, "Tiny 中文情感")) == {"负面 negative", "正面 positive"}
    assert len(warned) == 1 and "too long" in warned[0]


def test_the_check_refuses_a_file_over_the_row_cap_before_the_work_step(tmp_path, monkeypatch):
    from ui import classify_batch

    monkeypatch.setenv("MODELDECK_MAX_BATCH_ROWS", "3")
    three = write(tmp_path, "three.csv", "text\n一\n二\n三\n", "utf-8")
    classify_batch.need_rows("", three, True)  # within the cap: no complaint
    four = write(tmp_path, "four.csv", "text\n一\n二\n三\n四\n", "utf-8")
    with pytest.raises(InvalidInputError, match="MODELDECK_MAX_BATCH_ROWS"):
        classify_batch.need_rows("", four, True)
    with pytest.raises(InvalidInputError, match="At most 3 rows"):
        classify_batch.need_rows("一\n二\n三\n四", None, True)
    assert "split the file" in classify_batch.file_md(bc.read_table(four))


def test_pasted_lines_left_out_for_a_file_are_named_in_the_summary(tmp_path):
    from ui import classify_batch

    path = write(tmp_path, "two.csv", "text\n很好\n很差\n", "utf-8")
    _, _, summary = classify_batch.classify_many("一\n\n二\n三", path, True, None, "Tiny 中文情感",
                                                 progress=lambda *a, **k: None)
    assert "2 行 rows" in summary and "3 pasted lines were not" in summary and "粘贴的 3 行没有分类" in summary
    _, _, summary = classify_batch.classify_many("", path, True, None, "Tiny 中文情感", progress=lambda *a, **k: None)
    assert "pasted" not in summary

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
    assert rows[0] == ["行 row", "文本 text", "标签 label", "正面 positive", "负面 negative", "备注 note"]
    assert rows[1][1] == "这家店很好" and rows[1][2] in ("正面 positive", "负面 negative")
    assert abs(float(rows[1][3]) + float(rows[1][4]) - 1) < 1e-3
    assert rows[2][:3] == ["2", "", ""] and rows[2][-1] == bc.EMPTY


def test_pasted_text_keeps_its_non_blank_lines():
    assert bc.pasted_lines("一\n\n  \n二\r\n三") == ["一", "二", "三"]
    assert bc.pasted_lines(None) == []

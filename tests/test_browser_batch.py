"""Whole files in and out, in headless Chromium as a person uses them: a CSV of reviews classified and
downloaded, a finished picture story downloaded as one zip."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest

from test_browser import CHROMIUM, ROOT, browser, open_tab, page, shot  # noqa: F401  (fixtures)
from test_browser_bad_input import told, veiled

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")]

REVIEWS = [["编号", "评论", "日期"], ["1", "这家店的服务太好了，下次还来！", "2026-11-01"], ["2", "", "2026-11-02"],
           ["3", "快递太慢了，包装也破了，很失望。", "2026-11-03"], ["4", "还可以", "2026-11-04"]]


@pytest.fixture(autouse=True)
def patient(page):
    page.set_default_timeout(180_000)  # the machine running the tests may be busy


def test_a_gbk_csv_is_classified_into_a_table_and_downloads_as_utf8_with_bom(page, tmp_path):
    buffer = io.StringIO()
    csv.writer(buffer).writerows(REVIEWS)
    upload = tmp_path / "reviews.csv"
    upload.write_bytes(buffer.getvalue().encode("gbk"))  # as a Chinese spreadsheet program saves it
    open_tab(page, "🏷️ 文本分类")
    page.locator("#classify-batch-file input[type=file]").set_input_files(str(upload))
    read = page.locator("#classify-batch-file-info")
    read.get_by_text("GBK").wait_for()  # 4 rows, 3 columns, encoding found
    assert "4 行" in read.inner_text()
    status = page.locator("#classify-batch-status")
    assert page.locator("#classify-batch-column input").input_value() == "评论"  # the text column is guessed
    page.locator("#classify-batch-run").click()
    status.get_by_text("已分类").wait_for()
    page.wait_for_function("document.querySelector('#classify-batch-table')?.innerText.includes('快递太慢了')")
    assert "空行" in page.locator("#classify-batch-table").inner_text()  # the empty row is noted in its own row
    assert "3 / 4" in status.inner_text()  # three classified, one skipped
    link = page.locator("#classify-batch-download a[href*='/gradio_api/file=']")
    link.wait_for()
    data = page.request.get(link.get_attribute("href")).body()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][:4] == ["行 row", "文本 text", "标签 label", "备注 note"] and len(rows) == 5
    assert [r[1] for r in rows[1:]] == [r[1] for r in REVIEWS[1:]]
    assert rows[2][2] == "" and "空行" in rows[2][3] and rows[1][2] in ("正面 positive", "负面 negative")
    shot(page, "classify_batch")


def test_every_rows_label_note_and_scores_show_beside_long_texts(page, tmp_path):
    # Before, the results sat in half the page and the text column took all of it: with reviews of a line or two,
    # the labels, notes and scores were off to the side of the table, with nothing showing they were there.
    reviews = ["这家店的服务太好了，下次还来！菜品也很新鲜，价格公道，老板人也很好。" * 2, "",
               "The food was cold and the waiter was rude, and we waited an hour for the bill. " * 2, "很长" * 3000]
    upload = tmp_path / "reviews.csv"
    upload.write_text("评论\n" + "\n".join(reviews) + "\n", encoding="utf-8")
    open_tab(page, "🏷️ 文本分类")
    page.locator("#classify-batch-file input[type=file]").set_input_files(str(upload))
    page.locator("#classify-batch-file-info").get_by_text("4 行").wait_for()
    page.locator("#classify-batch-run").click()
    page.wait_for_function("document.querySelector('#classify-batch-table')?.innerText.includes('too long')")
    cut_off = page.evaluate("""() => {
        const box = document.querySelector('#classify-batch-table .table-wrap, #classify-batch-table')
            .getBoundingClientRect();
        return [...document.querySelectorAll('#classify-batch-table th')]
            .filter(th => th.getBoundingClientRect().right > box.right + 1).map(th => th.innerText.trim());
    }""")
    assert cut_off == [], f"columns past the table's right edge: {cut_off}"
    row = page.locator("#classify-batch-table .virtual-row").nth(3).inner_text()
    assert "很长" in row and len(row) < 600  # a 6000-character text is shown shortened (the CSV keeps it whole)


def test_a_file_in_an_unknown_encoding_is_refused_on_the_page(page, tmp_path):
    upload = tmp_path / "binary.csv"
    upload.write_bytes(b"id,text\n1,\xff\xfe\xff\n")  # neither UTF-8 nor GBK
    open_tab(page, "🏷️ 文本分类")
    page.locator("#classify-batch-file input[type=file]").set_input_files(str(upload))
    toast = page.locator(".toast-body", has_text="encoding is not recognised")
    toast.wait_for()  # says why and what to do, Chinese first
    assert "无法识别文件编码" in toast.inner_text() and "UTF-8 or GBK" in toast.inner_text()
    assert not page.locator("#classify-batch-column").is_visible()


def test_pasted_lines_are_classified_too(page):
    open_tab(page, "🏷️ 文本分类")
    page.locator("#classify-batch-text textarea").fill("很好\n\n很差\n一般")
    page.locator("#classify-batch-run").click()
    page.locator("#classify-batch-status").get_by_text("已分类").wait_for()
    page.wait_for_function("document.querySelector('#classify-batch-table')?.innerText.includes('一般')")


def test_the_last_batch_results_stay_through_a_removed_file_and_refused_files(page, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELDECK_MAX_BATCH_ROWS", "3")  # the app runs in this process
    files = {"two.csv": "text\n太好了\n太差了\n", "stray.csv": 'text\n"很好\n太差了\n一般\n', "four.csv": "text\n一\n二\n三\n四\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    read, status, table = (page.locator(f"#classify-batch-{x}") for x in ("file-info", "status", "table"))
    open_tab(page, "🏷️ 文本分类")
    page.locator("#classify-batch-text textarea").fill("很好\n很差")
    page.locator("#classify-batch-run").click()
    status.get_by_text("已分类").wait_for()
    page.wait_for_function("document.querySelector('#classify-batch-table')?.innerText.includes('很差')")
    summary, rows = status.inner_text(), table.inner_text()

    def unchanged() -> bool:
        return status.inner_text() == summary and table.inner_text() == rows and \
            not veiled(page, "classify-batch-status") and not veiled(page, "classify-batch-table")

    def put(name: str) -> None:
        """Upload ``name`` in place of the file shown, if any (the drop area shows only while no file is)."""
        remove = page.locator("#classify-batch-file button[aria-label='清除']")
        if remove.count():
            remove.click()
        page.locator("#classify-batch-file input[type=file]").set_input_files(str(tmp_path / name))

    put("two.csv")
    read.get_by_text("2 行").wait_for()
    page.locator("#classify-batch-file button[aria-label='清除']").click()  # the file removed again (the × of gradio's zh-CN page)
    page.wait_for_function("!document.querySelector('#classify-batch-file-info')?.innerText.includes('行')")
    page.locator("#classify-batch-header input").click()  # no file: nothing to re-read
    assert unchanged()
    put("stray.csv")
    told(page, "never closed")  # named at once, with its line
    page.locator("#classify-batch-run").click()
    told(page, "line 2")
    assert unchanged()
    put("four.csv")
    read.get_by_text("split the file").wait_for()  # 4 rows (the header box is off: 5) over the cap of 3
    page.locator("#classify-batch-run").click()
    told(page, "MODELDECK_MAX_BATCH_ROWS")  # refused before the work step: the last results stay shown
    assert unchanged()
    page.locator("#classify-batch-header input").click()
    read.get_by_text("4 行").wait_for()
    put("two.csv")
    read.get_by_text("2 行").wait_for()
    page.locator("#classify-batch-run").click()
    page.wait_for_function("document.querySelector('#classify-batch-table')?.innerText.includes('太差了')")
    status.get_by_text("2 pasted lines were not").wait_for()  # the file was classified, the pasted lines not
    assert "粘贴的 2 行没有分类" in status.inner_text() and "很差" not in table.inner_text()


def test_a_text_longer_than_the_model_reads_is_noted_under_the_scores(page):
    open_tab(page, "🏷️ 文本分类")
    page.locator("#classify-text textarea").fill("猫狗" * 200)
    page.locator("#classify-run").click()
    notices = page.locator("#classify-notices")
    notices.get_by_text("too long").wait_for()
    assert "128" in notices.inner_text() and "过长" in notices.inner_text()
    page.locator("#classify-text textarea").fill("很好")
    page.locator("#classify-run").click()
    page.wait_for_function("!document.querySelector('#classify-notices')?.innerText.includes('too long')")


def test_picture_story_download_all_gives_a_zip_with_every_piece(page):
    open_tab(page, "🖼️ 看图讲故事")
    page.locator("#story-image input[type=file]").set_input_files(str(ROOT / "example_images" / "cat.jpg"))
    page.locator("#story-image img").first.wait_for()
    page.locator("#story-length input[type=number]").fill("50")
    page.locator("#story-length input[type=number]").press("Enter")
    page.locator("#story-run").click()
    page.locator("#story-audio a[href*='/gradio_api/file=']").wait_for()  # the last step is done
    saved_as = page.locator("#story-audio a[download]").first.get_attribute("download")  # the player's download
    assert saved_as.startswith("modeldeck-speech-") and saved_as.endswith((".wav", ".mp3")), saved_as
    story = page.locator("#story-text textarea").input_value()
    caption = page.locator("#story-caption textarea").input_value()
    page.locator("#story-style input").click()  # settings moved after the story was written
    page.get_by_role("option", name="科幻 · science fiction").click()
    page.locator("#story-length input[type=number]").fill("500")
    page.locator("#story-length input[type=number]").press("Enter")
    page.locator("#story-language").get_by_text("English").click()
    page.locator("#story-bundle").click()
    link = page.locator("#story-bundle-file a[href*='/gradio_api/file=']")
    link.wait_for()
    archive = zipfile.ZipFile(io.BytesIO(page.request.get(link.get_attribute("href")).body()))
    names = set(archive.namelist())
    assert {"caption_zh.txt", "caption_en.txt", "story.txt", "story.json"} <= names
    assert any(n.startswith("picture.") for n in names) and ("story.wav" in names or "story.mp3" in names)
    # a browser's text box turns a lone "\r" (random models write anything) into "\n"
    assert archive.read("story.txt").decode().replace("\r\n", "\n").replace("\r", "\n") == story
    record = json.loads(archive.read("story.json"))
    # what wrote the story, not the settings shown at download (before: 科幻, 500, en)
    assert record["length"] == 50 and record["style"] == "温馨" and record["language"] == "zh"
    assert record["written_from"] == caption and record["models"]["story"]
    assert isinstance(record["seed"], int) and record["models"]["captioner"]
    assert record["edited_by_hand"] is False  # the model's own text, as written
    shot(page, "story_bundle")
    page.locator("#story-text textarea").fill(story + "（我加的结尾）")  # the user's edit: story.json says so
    link.wait_for(state="detached")
    page.locator("#story-bundle").click()
    link.wait_for()
    archive = zipfile.ZipFile(io.BytesIO(page.request.get(link.get_attribute("href")).body()))
    edited = json.loads(archive.read("story.json"))
    assert edited["edited_by_hand"] is True and edited["seed"] == record["seed"]

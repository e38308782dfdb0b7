"""The batch endpoints through gradio_client, as scripts use them."""

from __future__ import annotations

import pytest

from gradio_client import Client
from gradio_client.exceptions import AppError


@pytest.fixture(scope="module")
def client(url, tmp_path_factory):
    return Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def test_classify_batch_gives_one_result_per_text_in_order(client):
    texts = ["这家店很好", "", "快递太慢了", "great"]
    results = client.predict(texts, "Tiny 中文情感", api_name="/classify_batch")
    assert len(results) == 4 and results[1] == {}  # a skipped text keeps its place
    for text, result in zip([texts[0], texts[2], texts[3]], [results[0], results[2], results[3]]):
        single = client.predict(text, "Tiny 中文情感", api_name="/classify")
        assert single.keys() == result.keys()
        assert all(abs(single[k] - result[k]) < 1e-4 for k in single)  # the same scores as one at a time
    assert set(results[0]) == {"负面 negative", "正面 positive"}


@pytest.mark.parametrize("texts, model, says", [
    (["a"] * 4, None, "MODELDECK_MAX_BATCH_ROWS"),
    ("not a list", None, "must be a list of texts"),
    ([], None, "at least one text"),
    (["a"], "no-such-model", "no model called"),
])
def test_classify_batch_refuses_bad_requests_clearly(client, monkeypatch, texts, model, says):
    monkeypatch.setenv("MODELDECK_MAX_BATCH_ROWS", "3")
    with pytest.raises(AppError, match=says):
        client.predict(texts, model, api_name="/classify_batch")

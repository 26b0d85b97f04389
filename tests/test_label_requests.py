"""The labelling page's API answers a malformed request with a 4xx and one line, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from emotionlab.labeling.app import create_label_app
from emotionlab.labeling.session import LabelSession


@pytest.fixture
def client(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(2):
        Image.new("RGB", (16, 16), (index * 90, 40, 40)).save(folder / f"{index}.png")
    session = LabelSession(folder, ["happy", "sad"], tmp_path / "photos.labels.jsonl")
    app = create_label_app(session)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        yield client
    session.close()


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", '"one"', "null"])
@pytest.mark.parametrize("path", ["/api/label", "/api/skip"])
def test_an_image_id_that_is_not_a_finite_integer_is_a_422_with_one_line(client, path, number):
    # Python's JSON parser accepts NaN and Infinity; the error answer echoed them back and failed as a 500.
    body = f'{{"id": {number}, "label": "happy"}}'
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("invalid request: id: ") and "\n" not in detail
    assert client.get("/api/state").json()["done"] == 0  # nothing was labelled or skipped

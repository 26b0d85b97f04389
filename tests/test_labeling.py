"""The labelling tool without a browser: journal, queue, undo, restart, apply/export, and the HTTP API."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helpers import tree_state
from PIL import Image

from emotionlab.errors import EmotionlabError
from emotionlab.labeling import (
    LabelSession,
    StaleImageError,
    apply_labels,
    assign_keys,
    default_journal_path,
    export_csv,
    parse_classes,
    read_journal,
    scan_images,
)
from emotionlab.labeling.app import create_label_app

CLASSES = ["angry", "fearful", "happy", "sad", "surprised"]


def write_image(path: Path, colour: tuple[int, int, int], *, fmt: str = "PNG", size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (size, size), colour)
    image.putpixel((0, 0), (255 - colour[0], 0, 0))  # no two files the same bytes, even of one colour
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    path.write_bytes(buffer.getvalue())
    return path


def make_photos(root: Path, count: int = 4) -> list[str]:
    """``count`` readable images named img1..imgN (PNG), returned in the order the tool shows them."""
    names = []
    for index in range(1, count + 1):
        write_image(root / f"img{index}.png", (10 * index, 100, 200))
        names.append(f"img{index}.png")
    return names


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    make_photos(root)
    return root


def open_session(folder: Path, journal: Path | None = None) -> LabelSession:
    return LabelSession(folder, CLASSES, journal or folder.parent / "photos.labels.jsonl")


def current_name(session: LabelSession) -> str | None:
    current = session.snapshot()["current"]
    return current and current["name"]


def act_label(session: LabelSession, label: str) -> dict:
    return session.label(session.snapshot()["current"]["id"], label)


def act_skip(session: LabelSession) -> dict:
    return session.skip(session.snapshot()["current"]["id"])


# ---- scanning and classes --------------------------------------------------------------------------------


def test_scan_finds_images_by_their_bytes_and_lists_unreadable_files_once(tmp_path):
    root = tmp_path / "mixed"
    write_image(root / "a.png", (1, 2, 3))
    write_image(root / "sub" / "deeper" / "b.jpg", (4, 5, 6), fmt="JPEG")
    write_image(root / "c.dat", (7, 8, 9))  # a PNG whatever its name says
    write_image(root / ".hidden.png", (1, 1, 1))
    write_image(root / ".cache" / "d.png", (1, 1, 1))
    truncated = write_image(tmp_path / "t.jpg", (9, 9, 9), fmt="JPEG", size=64).read_bytes()
    (root / "broken.jpg").write_bytes(truncated[: len(truncated) // 2])
    (root / "notes.txt").write_text("not a picture")
    (root / "empty.png").write_bytes(b"")

    found = scan_images(root)

    assert found.relpaths == ["a.png", "c.dat", "sub/deeper/b.jpg"]
    reasons = dict(found.unreadable)
    assert set(reasons) == {"broken.jpg", "empty.png", "notes.txt"}
    assert "truncated" in reasons["broken.jpg"] and "not an image" in reasons["notes.txt"]


def test_images_are_shown_in_natural_order(tmp_path):
    root = tmp_path / "photos"
    make_photos(root, count=11)
    assert scan_images(root).relpaths[:3] == ["img1.png", "img2.png", "img3.png"]
    assert scan_images(root).relpaths[-1] == "img11.png"


def test_classes_are_checked_and_get_digit_and_unambiguous_letter_keys():
    assert parse_classes("angry, happy ,sad") == ["angry", "happy", "sad"]
    keys = assign_keys(CLASSES)
    assert keys["angry"] == ["1", "a"] and keys["happy"] == ["3", "h"]
    assert keys["sad"] == ["4"] and keys["surprised"] == ["5"]  # both start with s: digits only
    assert assign_keys(["zebra", "lion"])["zebra"] == ["1"]  # z is undo
    for bad in ("happy", "happy,happy", "happy,../x", "a,b/c"):
        with pytest.raises(EmotionlabError):
            parse_classes(bad)


# ---- queue, undo, journal --------------------------------------------------------------------------------


def test_labels_skips_and_undo_follow_the_documented_queue_order(photos):
    session = open_session(photos)
    assert current_name(session) == "img1.png"
    act_label(session, "happy")
    act_skip(session)  # img2 goes to the end
    assert current_name(session) == "img3.png"
    act_label(session, "sad")
    state = act_label(session, "angry")  # img4
    assert state["current"]["name"] == "img2.png" and state["current"]["skipped"]
    assert (state["done"], state["left"], state["skipped"]) == (3, 1, 1)

    state = session.undo()  # img4's label: img4 shown again, before the skipped one
    assert state["current"]["name"] == "img4.png" and state["next"]["name"] == "img2.png"
    assert state["last"] == {"action": "undo", "image": "img4.png", "label": "angry", "undid": "label"}
    session.undo()  # img3's label
    assert [current_name(session), session.snapshot()["next"]["name"]] == ["img3.png", "img4.png"]
    session.undo()  # the skip of img2
    assert current_name(session) == "img2.png"
    assert session.snapshot()["skipped"] == 0
    session.undo()  # img1
    session.undo()  # nothing left: a no-op that says so
    state = session.snapshot()
    assert (state["done"], state["can_undo"], state["last"]["image"]) == (0, False, None)
    session.close()


def test_skipping_again_sends_an_image_to_the_end_again(photos):
    session = open_session(photos)
    act_skip(session)  # img1
    act_skip(session)  # img2
    for _ in range(2):
        act_label(session, "sad")
    assert current_name(session) == "img1.png"
    act_skip(session)
    assert current_name(session) == "img2.png"
    assert session.snapshot()["next"]["name"] == "img1.png"
    session.close()


def test_every_action_is_on_disk_and_fsynced_before_it_returns(photos, monkeypatch):
    journal = photos.parent / "photos.labels.jsonl"
    session = open_session(photos, journal)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    act_label(session, "happy")
    assert synced, "the journal must be fsync'd before the action returns"
    # Read by another reader while the session is still open (as after a kill): the action is there.
    entries = [entry for entry in read_journal(journal) if entry.action != "start"]
    assert [(entry.action, entry.image, entry.label) for entry in entries] == [("label", "img1.png", "happy")]
    record = json.loads(journal.read_text().splitlines()[-1])
    assert set(record) == {"time", "action", "image", "label"}
    session.close()


def test_restart_replays_the_journal_and_undo_reaches_back_into_the_earlier_run(photos):
    first = open_session(photos)
    act_label(first, "happy")
    act_skip(first)
    act_label(first, "sad")
    before = first.snapshot()
    first.close()  # no clean shutdown is needed: every action is already on disk

    second = open_session(photos)
    after = second.snapshot()
    for key in ("current", "next", "done", "left", "skipped", "classes"):
        assert after[key] == before[key], key
    assert second.resumed_actions == 3
    second.undo()  # undoes img3's label made in the first run
    assert current_name(second) == "img3.png"
    second.close()

    third = open_session(photos)
    assert current_name(third) == "img3.png" and third.snapshot()["done"] == 1
    third.close()


def test_a_cut_short_last_line_is_ignored_and_the_next_action_starts_a_fresh_line(photos):
    journal = photos.parent / "photos.labels.jsonl"
    session = open_session(photos, journal)
    act_label(session, "happy")
    session.close()
    with open(journal, "a") as handle:
        handle.write('{"time": "2024-01-01T00:00:00", "action": "la')  # killed mid-write

    session = open_session(photos, journal)
    assert current_name(session) == "img2.png"
    act_label(session, "sad")
    session.close()
    actions = [(entry.action, entry.image) for entry in read_journal(journal) if entry.action != "start"]
    assert actions == [("label", "img1.png"), ("label", "img2.png")]


def test_a_complete_last_line_without_its_newline_is_kept(photos, tmp_path):
    journal = tmp_path / "edited.jsonl"
    journal.write_text('{"action": "label", "image": "img1.png", "label": "sad"}')  # saved by an editor
    session = open_session(photos, journal)
    assert current_name(session) == "img2.png"
    act_label(session, "happy")
    session.close()
    labels = [(entry.image, entry.label) for entry in read_journal(journal) if entry.action == "label"]
    assert labels == [("img1.png", "sad"), ("img2.png", "happy")]


def test_a_file_that_is_not_a_journal_is_refused_and_left_alone(photos, tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("shopping list\neggs")
    with pytest.raises(EmotionlabError, match="not a labelling journal"):
        open_session(photos, other)
    assert other.read_text() == "shopping list\neggs"
    other.write_text('{"action": "label", "image": "img1.png"}\n')  # JSON, but not a usable entry
    with pytest.raises(EmotionlabError, match="line 1"):
        open_session(photos, other)


def test_the_journal_is_never_written_inside_the_folder(photos, tmp_path, monkeypatch):
    with pytest.raises(EmotionlabError, match="inside the folder"):
        open_session(photos, photos / "labels.jsonl")
    monkeypatch.chdir(tmp_path)
    assert default_journal_path(photos) == tmp_path / "photos.labels.jsonl"


def test_two_labellers_cannot_share_one_journal(photos):
    first = open_session(photos)
    with pytest.raises(EmotionlabError, match="in use"):
        open_session(photos)
    first.close()


def test_only_the_shown_image_can_be_labelled(photos):
    session = open_session(photos)
    state = session.snapshot()
    with pytest.raises(StaleImageError):
        session.label(state["next"]["id"], "happy")  # e.g. a second tab still showing an older image
    with pytest.raises(KeyError):
        session.label(999, "happy")
    with pytest.raises(EmotionlabError, match="unknown class"):
        session.label(state["current"]["id"], "bored")
    assert session.snapshot()["done"] == 0
    session.close()


# ---- apply and export ------------------------------------------------------------------------------------


def label_all(folder: Path, journal: Path, labels: list[str]) -> None:
    session = LabelSession(folder, CLASSES, journal)
    for label in labels:
        act_label(session, label)
    session.close()


def test_apply_copies_into_class_folders_and_leaves_the_originals_untouched(tmp_path):
    folder = tmp_path / "photos"
    write_image(folder / "a" / "face.png", (10, 10, 10))
    write_image(folder / "b" / "face.png", (20, 20, 20))  # same file name, same label: a clash
    write_image(folder / "c.png", (30, 30, 30))
    write_image(folder / "d.png", (40, 40, 40))
    journal = tmp_path / "photos.labels.jsonl"
    label_all(folder, journal, ["happy", "happy", "sad"])  # d.png stays unlabelled
    before = tree_state(folder)
    dest = tmp_path / "sorted"

    report = apply_labels(folder, journal, dest)

    assert tree_state(folder) == before
    assert dict(report.copied) == {"happy": 2, "sad": 1}
    assert sorted(path.relative_to(dest).as_posix() for path in dest.rglob("*") if path.is_file()) == [
        "happy/face-2.png",
        "happy/face.png",
        "sad/c.png",
    ]
    assert (dest / "happy/face.png").read_bytes() == (folder / "a/face.png").read_bytes()
    assert (dest / "happy/face-2.png").read_bytes() == (folder / "b/face.png").read_bytes()
    assert report.renamed == [("b/face.png", "happy/face-2.png")]

    again = apply_labels(folder, journal, dest)  # running it twice adds nothing
    assert not again.copied and sum(again.already.values()) == 3
    assert tree_state(folder) == before


def test_apply_and_export_refuse_to_write_inside_the_folder(photos):
    journal = photos.parent / "photos.labels.jsonl"
    label_all(photos, journal, ["happy"])
    with pytest.raises(EmotionlabError, match="inside the folder"):
        apply_labels(photos, journal, photos / "sorted")
    with pytest.raises(EmotionlabError, match="inside the folder"):
        export_csv(photos, journal, photos / "labels.csv")
    with pytest.raises(EmotionlabError, match="no labelling journal"):
        apply_labels(photos, photos.parent / "missing.jsonl", photos.parent / "sorted")


def test_export_writes_path_label_rows_relative_to_the_folder(photos, tmp_path):
    journal = tmp_path / "photos.labels.jsonl"
    label_all(photos, journal, ["happy", "sad"])
    rows = export_csv(photos, journal, tmp_path / "labels.csv")
    assert rows == 2
    assert (tmp_path / "labels.csv").read_text().splitlines() == [
        "path,label",
        "img1.png,happy",
        "img2.png,sad",
    ]


@pytest.mark.slow  # `emotionlab` processes
def test_cli_apply_prints_counts_and_errors_are_one_line(photos, tmp_path):
    journal = tmp_path / "photos.labels.jsonl"
    label_all(photos, journal, ["happy", "sad", "happy"])
    command = [sys.executable, "-m", "emotionlab", "label", str(photos), "--journal", str(journal)]
    result = subprocess.run(
        [*command, "--apply", str(tmp_path / "out"), "--export", str(tmp_path / "l.csv")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "copied 3 image(s)" in result.stdout and "happy 2, sad 1" in result.stdout
    assert "wrote 3 row(s)" in result.stdout

    result = subprocess.run(
        [*command, "--apply", str(photos / "x")], check=False, capture_output=True, text=True
    )
    assert (
        result.returncode == 2 and "inside the folder" in result.stderr and "Traceback" not in result.stderr
    )


# ---- a hand-edited journal -------------------------------------------------------------------------------


def append_entries(journal: Path, *entries: tuple[str, str]) -> None:
    """Add label lines as someone editing the journal by hand would."""
    with journal.open("a", encoding="utf-8") as handle:
        for image, label in entries:
            record = {
                "time": "2026-01-01T00:00:00.000+00:00",
                "action": "label",
                "image": image,
                "label": label,
            }
            handle.write(json.dumps(record) + "\n")


@pytest.fixture
def edited(tmp_path: Path):
    """A labelled folder, a file beside it that must never be copied, and a destination."""
    folder = tmp_path / "work" / "photos"
    make_photos(folder)
    secret = write_image(tmp_path / "work" / "outside" / "file.png", (1, 2, 3))
    journal = tmp_path / "photos.labels.jsonl"
    label_all(folder, journal, ["happy", "sad"])
    return folder, journal, secret, tmp_path / "out" / "dest"


def files_under(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*")}


@pytest.mark.parametrize(
    ("image", "label", "reason"),
    [
        ("img3.png", "../../x", "label '../../x' of 'img3.png' is not one of the classes"),
        ("img3.png", "bored", "label 'bored' of 'img3.png' is not one of the classes"),
        ("../outside/file.png", "happy", "image '../outside/file.png' leaves the folder (..)"),
        ("ABSOLUTE", "happy", "not a path relative to the folder"),
        ("sub/../../outside/file.png", "sad", "leaves the folder"),
    ],
)
def test_apply_refuses_a_hand_edited_journal_and_writes_nothing(edited, tmp_path, image, label, reason):
    folder, journal, secret, dest = edited
    append_entries(journal, (str(secret) if image == "ABSOLUTE" else image, label))
    before = files_under(tmp_path)
    with pytest.raises(EmotionlabError) as caught:
        apply_labels(folder, journal, dest)
    message = str(caught.value)
    assert reason in message and "nothing copied" in message and "\n" not in message
    with pytest.raises(EmotionlabError, match="nothing copied or written"):
        export_csv(folder, journal, tmp_path / "labels.csv")
    assert files_under(tmp_path) == before  # not in DEST, not beside it, not two levels up


def test_apply_refuses_a_symbolic_link_that_leads_out_of_the_folder(edited, tmp_path):
    folder, journal, secret, dest = edited
    (folder / "link.png").symlink_to(secret)
    append_entries(journal, ("link.png", "happy"))
    with pytest.raises(EmotionlabError, match="image 'link.png' leads outside the folder"):
        apply_labels(folder, journal, dest)
    assert not dest.exists()


def test_every_bad_entry_is_named_in_the_one_line(edited):
    folder, journal, secret, dest = edited
    append_entries(journal, ("img3.png", "../../x"), ("../outside/file.png", "happy"), (str(secret), "sad"))
    with pytest.raises(EmotionlabError, match="3 journal entries are not safe") as caught:
        apply_labels(folder, journal, dest)
    assert all(
        part in str(caught.value) for part in ("'../../x'", "'../outside/file.png'", repr(str(secret)))
    )


def test_labels_outside_the_journal_classes_are_allowed_when_given_as_classes(edited):
    folder, journal, _, dest = edited
    append_entries(journal, ("img3.png", "bored"))
    report = apply_labels(folder, journal, dest, classes=[*CLASSES, "bored"])
    assert dict(report.copied) == {"happy": 1, "sad": 1, "bored": 1}
    with pytest.raises(
        EmotionlabError, match=r"label 'happy' of 'img1.png' is not one of the classes \(bored, tired\)"
    ):
        apply_labels(folder, journal, dest, classes=["bored", "tired"])  # happy and sad are not classes now


@pytest.mark.slow  # `emotionlab` processes
def test_cli_apply_of_a_tampered_journal_is_one_line(edited, tmp_path):
    folder, journal, _, dest = edited
    append_entries(journal, ("img3.png", "../../x"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "emotionlab",
            "label",
            str(folder),
            "--journal",
            str(journal),
            "--apply",
            str(dest),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "'../../x'" in result.stderr
    assert not dest.exists() and not (tmp_path / "x").exists()


# ---- HTTP API --------------------------------------------------------------------------------------------


class FakePredictor:
    """Stands in for ``emotionlab.load_model(path)``: predict(PIL image) -> {"label", "probabilities"}."""

    def __init__(self):
        self.seen = []

    def predict(self, image):
        self.seen.append(image)
        return {"label": "happy", "probabilities": {"happy": 0.8, "sad": 0.15, "angry": 0.05}}


@pytest.fixture
def client(photos):
    session = open_session(photos)
    predictor = FakePredictor()
    app = create_label_app(session, predictor=predictor)
    with TestClient(app, base_url="http://127.0.0.1:8765") as test_client:
        test_client.predictor = predictor
        yield test_client
    session.close()


def test_the_page_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/label.js">' in page.text
    assert client.get("/static/label.js").status_code == 200
    assert client.get("/static/label.css").status_code == 200
    assert client.get("/static/app.py").status_code == 404
    assert client.get("/static/..%2Fapp.py").status_code == 404


def test_api_label_skip_undo_round_trip(client):
    state = client.get("/api/state").json()
    assert (state["total"], state["done"], state["left"]) == (4, 0, 4)
    assert [cls["keys"] for cls in state["classes"]][:3] == [["1", "a"], ["2", "f"], ["3", "h"]]
    first = state["current"]

    state = client.post("/api/label", json={"id": first["id"], "label": "happy"}).json()
    assert state["done"] == 1 and state["current"]["name"] == "img2.png"
    assert state["classes"][2] == {"name": "happy", "keys": ["3", "h"], "count": 1}
    state = client.post("/api/skip", json={"id": state["current"]["id"]}).json()
    assert state["current"]["name"] == "img3.png" and state["skipped"] == 1
    state = client.post("/api/undo").json()
    assert state["current"]["name"] == "img2.png" and state["skipped"] == 0
    state = client.post("/api/undo").json()
    assert state["current"]["name"] == "img1.png" and state["done"] == 0


def test_images_are_served_by_id_only_and_unknown_ids_get_404(client):
    state = client.get("/api/state").json()
    response = client.get(state["current"]["url"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (24, 24)
    assert client.get("/api/image/4").status_code == 404
    assert client.get("/api/image/-1").status_code == 404
    assert client.get("/api/image/img1.png").status_code == 422
    assert client.get("/api/image/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
    assert client.post("/api/label", json={"id": 99, "label": "happy"}).status_code == 404
    assert client.post("/api/skip", json={"id": 99}).status_code == 404
    assert client.get("/api/suggestion/99").status_code == 404


def test_a_stale_page_gets_409_with_the_fresh_state_and_bad_labels_get_400(client):
    state = client.get("/api/state").json()
    response = client.post("/api/label", json={"id": state["next"]["id"], "label": "happy"})
    assert response.status_code == 409
    assert response.json()["current"]["name"] == "img1.png" and response.json()["done"] == 0
    assert client.post("/api/label", json={"id": state["current"]["id"], "label": "bored"}).status_code == 400
    # A form post from another site (no JSON content type) is not accepted as an action.
    form = client.post(
        "/api/label", content=b'{"id": 0, "label": "happy"}', headers={"content-type": "text/plain"}
    )
    assert form.status_code == 422
    assert client.get("/api/state").json()["done"] == 0


def test_requests_for_another_host_name_are_refused(client):
    assert client.get("/api/state", headers={"host": "evil.example:8765"}).status_code == 403
    assert client.get("/api/state", headers={"host": "localhost:8765"}).status_code == 200


def test_the_model_suggestion_comes_with_its_confidence(client):
    state = client.get("/api/state").json()
    assert state["has_model"] is True
    suggestion = client.get(f"/api/suggestion/{state['current']['id']}").json()
    assert suggestion["label"] == "happy" and suggestion["confidence"] == pytest.approx(0.8)
    assert suggestion["in_classes"] is True and suggestion["top"][0] == ["happy", 0.8]
    assert isinstance(client.predictor.seen[0], Image.Image)
    client.get(f"/api/suggestion/{state['current']['id']}")
    assert len(client.predictor.seen) == 1  # cached


def test_without_a_model_there_is_no_suggestion_and_a_failing_model_does_not_break_the_page(photos):
    class Broken:
        def predict(self, image):
            raise RuntimeError("out of memory")

    session = open_session(photos)
    with TestClient(create_label_app(session), base_url="http://127.0.0.1") as plain:
        state = plain.get("/api/state").json()
        assert state["has_model"] is False
        assert plain.get(f"/api/suggestion/{state['current']['id']}").status_code == 404
    with TestClient(create_label_app(session, predictor=Broken()), base_url="http://127.0.0.1") as broken:
        answer = broken.get(f"/api/suggestion/{state['current']['id']}").json()
        assert answer["label"] is None and "out of memory" in answer["error"]
    session.close()


def test_when_everything_is_labelled_there_is_no_current_image(client):
    for label in ("happy", "sad", "angry", "happy"):
        state = client.get("/api/state").json()
        client.post("/api/label", json={"id": state["current"]["id"], "label": label})
    state = client.get("/api/state").json()
    assert state["current"] is None and (state["done"], state["left"]) == (4, 0)
    assert client.post("/api/undo").json()["current"]["name"] == "img4.png"


@pytest.mark.slow  # the shared trained_model fixture trains a small model (~20 s) unless another test did
def test_a_real_model_file_gives_a_suggestion_in_the_page_format(photos, trained_model):
    import emotionlab

    session = open_session(photos)
    app = create_label_app(session, predictor=emotionlab.load_model(trained_model))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        state = client.get("/api/state").json()
        suggestion = client.get(f"/api/suggestion/{state['current']['id']}").json()
    session.close()
    assert suggestion["error"] is None and suggestion["label"] in CLASSES
    assert 0.0 < suggestion["confidence"] <= 1.0 and suggestion["top"][0][0] == suggestion["label"]

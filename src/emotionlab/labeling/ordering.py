"""Which photo to label next: path order (the default), the model's uncertainty, its margin, or a random order.

``Ordering`` turns a model's probabilities for every photo into a ranking, and refits a logistic-regression head on
the model's frozen features of the photos labelled so far (``--retrain``), so the ranking and the suggestions
follow the user's own labels. The refit runs in a worker process, so it never holds the web server's interpreter
lock: a key press is answered as fast during a refit as without one. It holds no state of the session: every ranking it makes is written to the journal
as one ``order`` line (the ranked photos with their probabilities), and the session replays the last one, so a
restarted labeller shows the photos in exactly the order the killed one would have.

- ``uncertain``: least confident first (the lowest top probability);
- ``margin``: the smallest gap between the top two probabilities first;
- ``random``: a fixed shuffle (``seed``), the baseline the benchmark compares against;
- ``path``: natural path order, as without a model (suggestions still improve with ``--retrain``).

Ties keep path order, so a ranking is the same on every machine.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotionlab.errors import EmotionlabError

ORDERS = ("path", "uncertain", "margin", "random")
SCORE_DECIMALS = 4  # probabilities in the journal: enough to rank and to show a percentage


@dataclass(frozen=True)
class FolderScores:
    """A model's view of a folder: per photo (``relpaths`` order) its features and probabilities."""

    relpaths: list[str]
    features: np.ndarray
    probabilities: np.ndarray  # columns: ``labels``
    labels: list[str]
    model: str
    model_digest: str


def informativeness(probabilities: np.ndarray, order: str) -> np.ndarray:
    """A key per row, smaller = shown earlier (``uncertain``: top probability; ``margin``: top-two gap)."""
    if order not in ("uncertain", "margin"):
        raise ValueError(order)
    if probabilities.shape[1] < 2:
        return np.zeros(len(probabilities))
    ordered = np.sort(probabilities, axis=1)
    return ordered[:, -1] if order == "uncertain" else ordered[:, -1] - ordered[:, -2]


def rank(
    relpaths: Sequence[str], probabilities: np.ndarray | None, order: str, *, seed: int = 0
) -> list[int]:
    """Row indices in the order photos are shown; ``relpaths`` must already be in path order."""
    if order not in ORDERS:
        raise EmotionlabError(f"unknown order {order!r}: use {', '.join(ORDERS)}")
    count = len(relpaths)
    if order == "path":
        return list(range(count))
    if order == "random":
        return [int(index) for index in np.random.default_rng(seed).permutation(count)]
    if probabilities is None:
        raise EmotionlabError(f"--order {order} needs a model")
    keys = informativeness(probabilities, order)
    return [int(index) for index in np.lexsort((np.arange(count), keys))]  # stable: ties in path order


def restrict_to_classes(probabilities: np.ndarray, labels: Sequence[str], classes: Sequence[str]):
    """The model's probabilities over the user's classes (renormalised) when it knows at least two of them."""
    shared = [name for name in classes if name in labels]
    if len(shared) < 2:
        return probabilities, list(labels)
    columns = [list(labels).index(name) for name in shared]
    part = probabilities[:, columns]
    return part / np.clip(part.sum(axis=1, keepdims=True), 1e-12, None), shared


class Ordering:
    """Rankings for one folder: from the model at start, then from a head refit on the labels so far."""

    def __init__(
        self,
        order: str,
        *,
        classes: Sequence[str],
        scores: FolderScores | None = None,
        retrain_every: int | None = None,
        seed: int = 0,
        fit: Callable | None = None,
    ):
        if order not in ORDERS:
            raise EmotionlabError(f"unknown order {order!r}: use {', '.join(ORDERS)}")
        if order in ("uncertain", "margin") and scores is None:
            raise EmotionlabError(f"--order {order} needs a model (--model MODEL)")
        if retrain_every is not None and (scores is None or retrain_every < 1):
            raise EmotionlabError("--retrain needs a model (--model MODEL) and --retrain-every of 1 or more")
        self.order = order
        self.classes = list(classes)
        self.scores = scores
        self.retrain_every = retrain_every
        self.seed = seed
        if fit is None:
            from emotionlab.heads import fit_head

            fit = fit_head
        self._fit = fit
        self._row = {relpath: index for index, relpath in enumerate(scores.relpaths)} if scores else {}
        self._pool = None  # the refit worker process, started at the first refit

    @property
    def model(self) -> str | None:
        return self.scores.model if self.scores else None

    def describe(self) -> dict:
        """What a journal `order` line says about where its ranking came from (besides the ranking)."""
        return {
            "order": self.order,
            "model": self.model,
            "model_digest": self.scores.model_digest if self.scores else None,
        }

    def _entry(self, relpaths: Sequence[str], probabilities: np.ndarray | None, labels, **info) -> dict:
        ranked = rank(relpaths, probabilities, self.order, seed=self.seed)
        rows = [
            [relpaths[index], *np.round(probabilities[index].astype(float), SCORE_DECIMALS).tolist()]
            if probabilities is not None
            else [relpaths[index]]
            for index in ranked
        ]
        return {**self.describe(), **info, "labels": list(labels) if labels else None, "ranking": rows}

    def initial(self, relpaths: Sequence[str]) -> dict:
        """Round 0: the model's own probabilities (over the user's classes when it knows them)."""
        if self.scores is None:
            return self._entry(relpaths, None, None, round=0, trained_on=0)
        probabilities, labels = restrict_to_classes(
            self.scores.probabilities, self.scores.labels, self.classes
        )
        rows = [self._row[relpath] for relpath in relpaths]
        return self._entry(relpaths, probabilities[rows], labels, round=0, trained_on=0)

    def refit(self, relpaths: Sequence[str], labels: Mapping[str, str], round_number: int) -> dict | None:
        """A head fitted on the labelled photos ranks the others; None while fewer than two classes are labelled.

        Runs in a background thread: it reads only its arguments and the frozen scores, never the session."""
        known = [
            (relpath, label)
            for relpath, label in labels.items()
            if relpath in self._row and label in self.classes
        ]
        if len({label for _, label in known}) < 2:
            return None
        job = (
            self._fit,
            self.scores.features[[self._row[relpath] for relpath, _ in known]],
            [label for _, label in known],
            self.classes,
            self.seed,
            self.scores.features[[self._row[relpath] for relpath in relpaths]],
        )
        probabilities = self._run(job)
        return self._entry(relpaths, probabilities, self.classes, round=round_number, trained_on=len(known))

    def _run(self, job: tuple) -> np.ndarray:

        from emotionlab.isolation import worker_context

        if self._pool is None:  # a fork server, never a fork of this threaded process (isolation.py)
            self._pool = ProcessPoolExecutor(
                1, mp_context=worker_context(), initializer=_refit_worker_init, initargs=(os.getpid(),)
            )
        try:
            return self._pool.submit(_fit_and_predict, *job).result()
        except BrokenProcessPool:
            self._pool = None  # the worker died (killed, out of memory): a new one next time
            raise

    def close(self) -> None:
        """Stop the refit worker (a refit in progress is abandoned; the journal keeps the last ranking)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _refit_worker_init(main_pid: int) -> None:
    from emotionlab.isolation import start_worker

    start_worker(main_pid)  # Ctrl+C stops the labeller, which stops this worker; so does kill -9
    if hasattr(os, "nice"):
        os.nice(10)  # background work: on a busy CPU the page's key presses go first


def _fit_and_predict(fit, features, labels, classes, seed, rows) -> np.ndarray:
    """In the refit worker: fit a head on the labelled rows, then probabilities for ``rows``."""
    return fit(features, labels, classes=classes, seed=seed)(rows)


def score_folder(
    relpaths: Sequence[str], root, model, *, progress: Callable[[int, int], None] | None = None
) -> FolderScores:
    """Every photo of a folder through ``model`` once (features + probabilities; cached on disk)."""
    from emotionlab.inference.features import FeatureExtractor  # torch: only when a model is used

    extractor = FeatureExtractor(model)
    features = extractor([root / relpath for relpath in relpaths], progress=progress)
    return FolderScores(
        relpaths=list(relpaths),
        features=features.features,
        probabilities=features.probabilities,
        labels=features.labels,
        model=features.model,
        model_digest=features.model_digest,
    )


class ReviewOrdering:
    """A fixed ranking to review: the suspects of ``emotionlab data suspects`` (most suspicious first), each with
    its out-of-fold probabilities as the suggestion and the label the dataset gives it. No refits."""

    retrain_every = None

    def __init__(self, name: str, rows: Sequence[tuple[str, str, list[float]]], labels: Sequence[str]):
        self.name = name
        self.rows = list(rows)  # (relpath, given label, probabilities over ``labels``)
        self.labels = list(labels)

    def describe(self) -> dict:
        return {"order": "review", "model": self.name, "model_digest": None}

    def initial(self, relpaths: Sequence[str]) -> dict:
        return {
            **self.describe(),
            "round": 0,
            "trained_on": 0,
            "labels": self.labels,
            "given": {relpath: given for relpath, given, _ in self.rows},
            "ranking": [[relpath, *probabilities] for relpath, _, probabilities in self.rows],
        }

    def refit(self, *_args) -> None:
        return None


PROBABILITY_PREFIX = "p_"  # suspects CSV: one p_<class> column per class, out-of-fold probabilities


def read_review(csv_path, relpaths: Sequence[str]) -> ReviewOrdering:
    """The suspects CSV (``path,given,...,p_<class>...``, most suspicious first) as a ranking to review.

    Paths are relative to the dataset folder the audit read, which must be the folder being labelled."""

    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            records = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise EmotionlabError(f"{csv_path}: cannot read the suspects file ({error})") from error
    labels = [name[len(PROBABILITY_PREFIX) :] for name in fields if name.startswith(PROBABILITY_PREFIX)]
    if "path" not in fields or "given" not in fields or len(labels) < 2:
        raise EmotionlabError(
            f"{csv_path}: not a suspects file (needs path, given and p_<class> columns; "
            "write one with `emotionlab data suspects`)"
        )
    present = set(relpaths)
    missing = [record["path"] for record in records if record["path"] not in present]
    if missing:
        raise EmotionlabError(
            f"{csv_path}: {len(missing)} suspect(s) are not images under the folder (first: {missing[0]}); "
            "label the dataset folder the audit read"
        )
    rows = []
    for number, record in enumerate(records, start=2):
        try:
            probabilities = [float(record[PROBABILITY_PREFIX + name]) for name in labels]
        except (TypeError, ValueError) as error:
            raise EmotionlabError(f"{csv_path}: line {number}: a probability is not a number") from error
        rows.append((record["path"], record["given"], probabilities))
    return ReviewOrdering(f"suspects: {csv_path.name}", rows, labels)

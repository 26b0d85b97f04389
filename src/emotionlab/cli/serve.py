"""`emotionlab serve` (the HTTP service) and `label` (the local labelling page)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emotionlab.cli.root import Backend, Classes, DetectorOverride, Five, answer_classes, app
from emotionlab.errors import EmotionlabError
from emotionlab.labels import EMOTIONS


@app.command()
def serve(
    model: Annotated[
        Path | None,
        typer.Option(help="Model file, or a shipped model: default, ferplus8 (default: default)."),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 127.0.0.1 keeps the service on this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    detector: DetectorOverride = None,
    backend: Backend = "auto",
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted upload per image, in MB.")] = 10.0,
    workers: Annotated[
        int,
        typer.Option(help="Worker processes, each with its own model and detector; 0: one in-process slot."),
    ] = 2,
    queue_size: Annotated[
        int, typer.Option(help="Requests that may wait for a worker; one more is answered 503 + Retry-After.")
    ] = 32,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="EMOTIONLAB_TOKEN",
            show_envvar=True,
            help="Require 'Authorization: Bearer TOKEN' on /predict and /model (16+ characters); "
            "the page takes it as http://HOST:PORT/#token=TOKEN.",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="Another name clients use for this machine (the Host header is checked; '*' accepts any)."
        ),
    ] = None,
    header_timeout: Annotated[
        float,
        typer.Option(help="Seconds for a request's headers, and the body's grace before --min-upload-rate."),
    ] = 10.0,
    min_upload_rate: Annotated[
        int, typer.Option(help="Bytes per second a body must arrive at after the grace; slower: 408.")
    ] = 100_000,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a request body may take in all; longer: 408.")
    ] = 120.0,
    max_connections: Annotated[int, typer.Option(help="Open connections in all; one more: 503.")] = 256,
    max_connections_per_client: Annotated[
        int, typer.Option(help="Open connections from one client address; one more: 503.")
    ] = 32,
    five: Five = False,
    classes: Classes = None,
) -> None:
    """Serve the model over HTTP: POST /predict with images, a page at / to try it, API docs at /docs."""
    from emotionlab.serving.app import serve as run_server
    from emotionlab.serving.limits import ServiceLimits

    if workers < 0 or queue_size < 0:
        raise EmotionlabError("--workers and --queue-size must be 0 or more")
    if token is not None and len(token) < 16:
        raise EmotionlabError(
            "--token: use at least 16 characters, e.g. python -c 'import secrets; print(secrets.token_urlsafe())'"
        )
    if (
        min(header_timeout, body_timeout) <= 0
        or min(min_upload_rate, max_connections, max_connections_per_client) < 1
    ):
        raise EmotionlabError(
            "--header-timeout, --body-timeout, --min-upload-rate and the connection caps must be above 0"
        )
    limits = ServiceLimits(
        header_timeout_seconds=header_timeout,
        body_grace_seconds=header_timeout,
        body_min_bytes_per_second=min_upload_rate,
        body_timeout_seconds=body_timeout,
        max_connections=max_connections,
        max_connections_per_client=max_connections_per_client,
    )
    run_server(
        str(model) if model else None,
        host=host,
        port=port,
        detector=detector,
        backend=backend,
        classes=answer_classes(five, classes),
        max_upload_mb=max_upload_mb,
        workers=workers,
        queue_size=queue_size,
        token=token,
        allowed_hosts=allowed_host or (),
        limits=limits,
    )


@app.command("label")
def label_photos(
    folder: Annotated[
        Path, typer.Argument(help="Folder of photos to label (searched recursively; only read).")
    ],
    classes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated class names; keys 1..9 follow this order. Default: the five emotions "
            "(with --apply/--export: the classes the journal was labelled with)."
        ),
    ] = None,
    journal: Annotated[
        Path | None, typer.Option(help="Journal of every action (default: ./<folder name>.labels.jsonl).")
    ] = None,
    port: Annotated[int, typer.Option(help="Port for the page (0: any free port).")] = 8765,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 127.0.0.1 keeps the page on this machine.")
    ] = "127.0.0.1",
    model: Annotated[
        Path | None,
        typer.Option(
            help="Show this model's suggestion and confidence per image; its classes are the default --classes."
        ),
    ] = None,
    order: Annotated[
        str,
        typer.Option(
            help="Which photo next: path (folder order), uncertain (the model's least confident first), "
            "margin (smallest gap between its top two), random. Not path: scores every photo once with --model "
            "(default: the shipped model)."
        ),
    ] = "path",
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain",
            help="Refit a head on the labels so far in the background (every --retrain-every labels): "
            "the order and the suggestions follow your labels.",
        ),
    ] = False,
    # A refit takes < 1 s; 20 labels are about a minute of work.
    retrain_every: Annotated[int, typer.Option(help="With --retrain: new labels between refits.")] = 20,
    review: Annotated[
        Path | None,
        typer.Option(
            help="Show only the photos of this suspects.csv (`emotionlab data suspects`), most suspicious first, "
            "to confirm or relabel them (journal default: ./<folder name>.review.labels.jsonl)."
        ),
    ] = None,
    apply: Annotated[
        Path | None,
        typer.Option("--apply", help="No server: copy labelled images into DEST/<label>/ and exit."),
    ] = None,
    export: Annotated[
        Path | None, typer.Option("--export", help="No server: write path,label rows to this CSV.")
    ] = None,
) -> None:
    """Label photos one at a time in a local web page (keys, skip, undo); every action is saved at once."""
    from emotionlab.labeling import apply_and_export, default_journal_path, parse_classes
    from emotionlab.labeling.ordering import ORDERS

    if order not in ORDERS:
        raise EmotionlabError(f"--order {order}: use one of {', '.join(ORDERS)}")
    if retrain and retrain_every < 1:
        raise EmotionlabError("--retrain-every must be 1 or more")
    if review is not None and (order != "path" or retrain):
        raise EmotionlabError("--review shows the suspects in their own order; drop --order and --retrain")
    if classes is None and model is not None and apply is None and export is None:
        classes = ",".join(_model_labels(model))  # the model's classes, not a fixed five
    class_names = parse_classes(classes or ",".join(EMOTIONS))
    if review is not None and journal is None:
        journal = default_journal_path(folder).with_name(
            default_journal_path(folder).name.replace(".labels.jsonl", ".review.labels.jsonl")
        )
    if apply is not None or export is not None:
        apply_and_export(
            folder,
            journal or default_journal_path(folder),
            dest=apply,
            csv_path=export,
            classes=class_names if classes else None,
        )
        return
    from emotionlab.labeling.app import serve_labels

    serve_labels(
        folder,
        class_names,
        journal=journal,
        host=host,
        port=port,
        model=model,
        order=order,
        retrain_every=retrain_every if retrain else None,
        review=review,
    )


def _model_labels(model: Path) -> list[str]:
    """A model file's classes, read from its metadata (no weights loaded)."""
    from emotionlab.inference.loading import resolve_model_path
    from emotionlab.models.io import read_metadata

    path = resolve_model_path(model)
    if not path.is_file():
        raise EmotionlabError(f"{model}: model file not found")
    return list(read_metadata(path)["labels"])

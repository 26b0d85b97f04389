"""What `emotionlab data audit` writes and prints: ``audit.json``, the class-balance chart and the summary on the
terminal, from the report ``data.audit.audit_dataset`` makes."""

from __future__ import annotations

import json
from pathlib import Path

from emotionlab.fileio import ensure_outside_root
from emotionlab.isolation import printable


def plot_class_balance(balance: dict[str, dict[str, int]], path: str | Path, *, title: str = "") -> Path:
    """Grouped bar chart (labels on x, one bar per split) saved as PNG. Uses Agg without touching pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    splits = list(balance)
    labels = list(next(iter(balance.values()))) if balance else []
    figure = Figure(figsize=(max(6.0, 1.3 * len(labels) + 2.5), 4.2), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(splits))
    for position, split in enumerate(splits):
        xs = [index + (position - (len(splits) - 1) / 2) * width for index in range(len(labels))]
        bars = axes.bar(xs, [balance[split][label] for label in labels], width, label=split)
        axes.bar_label(bars, fontsize=7, padding=1)
    axes.set_xticks(range(len(labels)), labels)
    axes.set_ylabel("images")
    axes.set_title(title or "Images per class and split")
    if len(splits) > 1:
        figure.legend(loc="outside right upper")
    axes.spines[["top", "right"]].set_visible(False)
    figure.savefig(path)
    return Path(path)


def write_audit(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``audit.json`` and ``class_balance.png`` into ``out_dir`` (created); returns their paths."""
    out_dir = Path(out_dir)
    ensure_outside_root(report["summary"]["root"], out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "audit.json"
    json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    written = {"json": json_path}
    if report["class_balance"]:
        root_name = Path(report["summary"]["root"]).name
        written["chart"] = plot_class_balance(
            report["class_balance"],
            out_dir / "class_balance.png",
            title=f"{root_name}: images per class and split",
        )
    return written


def _print_groups(console, groups: list[dict], key: str, limit: int) -> None:
    from rich.markup import escape

    for group in groups[:limit]:
        members = escape(printable(", ".join(member["path"] for member in group["members"])))
        console.print(
            f"    {group['group']} ({'/'.join(group[key])}): {members}", highlight=False, soft_wrap=True
        )
    if len(groups) > limit:
        console.print(f"    ... and {len(groups) - limit} more (all in audit.json)", soft_wrap=True)


def _print_people(console, people: dict, limit: int) -> None:
    from rich.markup import escape

    s = people["summary"]
    style = "red" if s["people_spanning_splits"] else "green"
    console.print(
        f"  [{style}]same person across splits[/] (face distance < {s['threshold']:g}): {s['people_spanning_splits']} "
        f"people; images sharing a person with train: {s['validation_sharing_person_with_train']} validation, "
        f"{s['test_sharing_person_with_train']} test ({s['validation_beyond_duplicates']} and "
        f"{s['test_beyond_duplicates']} of them not copies of a train image); no face: {s['no_face']}",
        soft_wrap=True,
    )
    groups = people["groups_spanning_splits"]
    for group in groups[:limit]:
        members = ", ".join(f"{m['path']} ({m['split']})" for m in group["members"][:6])
        more = f", ... {group['size'] - 6} more" if group["size"] > 6 else ""
        console.print(
            f"    {group['person']}: {escape(printable(members))}{more}", highlight=False, soft_wrap=True
        )
    if len(groups) > limit:
        console.print(f"    ... and {len(groups) - limit} more (all in audit.json)", soft_wrap=True)


def print_audit_summary(report: dict, console, *, limit: int = 10) -> None:
    """A readable summary on a rich console: counts, the worst offenders, and the class-balance table."""
    from rich.markup import escape
    from rich.table import Table

    s = report["summary"]
    console.print(
        f"[bold]Audit of {escape(printable(s['root']))}[/] (near-duplicate threshold {s['threshold']} bits of 64)",
        soft_wrap=True,
    )
    formats = ", ".join(f"{name} {count}" for name, count in s["formats"].items())
    console.print(
        f"  files: {s['num_files']} ({formats}); readable {s['num_readable']}, unreadable {s['num_unreadable']}",
        soft_wrap=True,
    )
    for item in report["unreadable"][:limit]:
        console.print(
            f"    [red]unreadable[/] {escape(printable(item['path']))}: {escape(printable(item['reason']))}",
            highlight=False,
            soft_wrap=True,
        )
    if s["extension_mismatches"]:
        kinds = ", ".join(f"{count} {kind}" for kind, count in s["extension_mismatch_kinds"].items())
        console.print(
            f"  extension does not match the bytes: {s['extension_mismatches']} ({kinds})", soft_wrap=True
        )
    if s["files_outside_layout"]:
        console.print(f"  files outside split/label folders: {s['files_outside_layout']}", soft_wrap=True)
    console.print(
        f"  exact duplicates: {s['exact_duplicate_groups']} groups ({s['exact_duplicate_files']} files); "
        f"near duplicates: {s['duplicate_groups']} groups ({s['duplicate_files']} files)",
        soft_wrap=True,
    )
    style = "red" if s["groups_spanning_splits"] else "green"
    console.print(
        f"  [{style}]leakage[/]: {s['groups_spanning_splits']} groups span splits; images with a twin in train: "
        f"{s['validation_images_with_train_twin']} validation, {s['test_images_with_train_twin']} test; "
        f"test images with a twin only in validation: {s['test_images_with_validation_twin']}",
        soft_wrap=True,
    )
    _print_groups(console, report["leakage"]["groups"], "splits", limit)
    style = "red" if s["label_conflict_groups"] else "green"
    console.print(
        f"  [{style}]label conflicts[/]: {s['label_conflict_groups']} groups carry more than one label",
        soft_wrap=True,
    )
    _print_groups(console, report["label_conflicts"], "labels", limit)
    if "people" in report:
        _print_people(console, report["people"], limit)
    else:
        console.print("  same person across splits: not checked (add --people)", soft_wrap=True)
    balance = report["class_balance"]
    if balance:
        labels = s["labels"]
        table = Table(title="Images per split and class", title_justify="left")
        table.add_column("split")
        for label in labels:
            table.add_column(label, justify="right")
        table.add_column("total", justify="right")
        for split, row in balance.items():
            table.add_row(split, *(str(row[label]) for label in labels), str(sum(row.values())))
        if len(balance) > 1:
            totals = [sum(row[label] for row in balance.values()) for label in labels]
            table.add_row("all", *(str(total) for total in totals), str(sum(totals)), style="bold")
        console.print(table)

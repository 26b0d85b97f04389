"""Labelling photos one at a time: ``folder`` (the image list, the classes), ``session`` (the queue, undo), ``journal`` (every action on
disk before it is acknowledged), ``export`` (apply and export a journal) and ``app`` (the local web page, FastAPI;
imported only when the page is served)."""

from emotionlab.labeling.export import (
    ApplyReport,
    apply_and_export,
    apply_labels,
    checked_labels,
    export_csv,
    journal_classes,
    labelled_images,
    source_path,
)
from emotionlab.labeling.folder import (
    DISPLAY_MAX_SIDE,
    RESERVED_KEYS,
    FolderImages,
    assign_keys,
    display_bytes,
    is_folder_name,
    natural_key,
    parse_classes,
    scan_images,
)
from emotionlab.labeling.journal import (
    ACTIONS,
    JOURNAL_SUFFIX,
    Journal,
    JournalEntry,
    check_outside,
    default_journal_path,
    read_journal,
)
from emotionlab.labeling.session import LabelSession, LabelState, StaleImageError

__all__ = [
    "ACTIONS",
    "DISPLAY_MAX_SIDE",
    "JOURNAL_SUFFIX",
    "RESERVED_KEYS",
    "ApplyReport",
    "FolderImages",
    "Journal",
    "JournalEntry",
    "LabelSession",
    "LabelState",
    "StaleImageError",
    "apply_and_export",
    "apply_labels",
    "assign_keys",
    "check_outside",
    "checked_labels",
    "default_journal_path",
    "display_bytes",
    "export_csv",
    "is_folder_name",
    "journal_classes",
    "labelled_images",
    "natural_key",
    "parse_classes",
    "read_journal",
    "scan_images",
    "source_path",
]

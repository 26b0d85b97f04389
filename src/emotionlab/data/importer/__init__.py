"""``emotionlab data import``: photos from a URL list, an archive or a folder into a new dataset folder.

SOURCE is one of
- a CSV of ``url,label[,source,licence]`` (a header row naming the columns is optional);
- a zip or tar (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz``) archive, or
- a folder,
where archive and folder entries take their label from the folder that holds them (``happy/1.jpg``,
``photos/train/happy/1.jpg``) or, with ``label_from="csv"``, from a CSV of ``path,label[,source,licence]``.

Every photo is checked before it is kept, and every decision is written to ``OUT/provenance.csv``:
- downloads run in a thread pool, with a timeout, retries with exponential back-off for errors that may pass
  (timeouts, broken connections, HTTP 408/429/5xx) and none for those that will not (404, a file too large);
- the body is streamed and dropped as soon as it passes the size limit; the pixel limit is checked from the
  header before decoding;
- the bytes decide what a file is (Pillow identifies it), only ``ALLOWED_FORMATS`` are kept, and the image
  must decode completely;
- archives are read in memory, entry by entry: an entry whose path could leave the archive refuses the whole
  archive, links and devices are never imported, and the total unpacked size is bounded;
- exact (SHA-256) and near (perceptual hash, the audit's threshold) duplicates of a photo already kept, or
  of one in an existing dataset (``against``), are skipped and the provenance says of which;
- labels must be folder-safe names (no ``/``, no ``..``, not a split name);
- kept photos are written atomically as ``OUT/<label>/<sha256[:16]>.<ext>``.

The source is only ever read. Running the same command again resumes: sources already imported or refused
for good are not fetched again, and only failed downloads are retried. With no network at all (every host
unresolvable or refusing connections) the command stops with one line saying so.

One module per step, in the order a photo meets them:
- ``items``: the options, one photo to import (``Item``), the photo after checking (``Checked``), the report;
- ``sources``: the URL list, folder and archive readers, and the label rules;
- ``fetch``: HTTP downloads with retries, timeouts and the size cap;
- ``checks``: what the bytes are (format, pixel limit, full decode) and their hashes;
- ``known``: photos already kept (in OUT or ``against``) and whether a new one duplicates one of them;
- ``provenance``: ``OUT/provenance.csv``, written as decisions are made and read back to resume;
- ``run``: the import job that ties them together, and its printed summary.
"""

from emotionlab.data.importer.checks import ALLOWED_FORMATS, check_item, inspect_bytes
from emotionlab.data.importer.fetch import FetchError, fetch_url
from emotionlab.data.importer.items import DEFAULT_MAX_BYTES, Checked, ImportOptions, ImportReport, Item
from emotionlab.data.importer.known import existing_hashes
from emotionlab.data.importer.provenance import PROVENANCE_COLUMNS, PROVENANCE_FILE
from emotionlab.data.importer.run import OfflineError, import_photos, print_import_summary
from emotionlab.data.importer.sources import label_problem, source_kind, url_items

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_BYTES",
    "PROVENANCE_COLUMNS",
    "PROVENANCE_FILE",
    "Checked",
    "FetchError",
    "ImportOptions",
    "ImportReport",
    "Item",
    "OfflineError",
    "check_item",
    "existing_hashes",
    "fetch_url",
    "import_photos",
    "inspect_bytes",
    "label_problem",
    "print_import_summary",
    "source_kind",
    "url_items",
]

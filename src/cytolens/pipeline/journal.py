"""The run journal and provenance: what was made from what, and how.

The journal (``journal.jsonl`` at the root of the output folder) holds one
JSON line per finished item (done or failed), appended and flushed to disk as
each item ends, after its outputs were renamed into place. A rerun reads it
and skips every item whose recorded key (input sha256 + the pipeline's steps,
parameters and models + cytolens version) still matches and whose outputs
still exist. A run killed at any moment therefore loses at most the items in
flight, and never leaves a partial output under a final name.

:func:`write_ro_crate` writes ``ro-crate-metadata.json``, an RO-Crate 1.1
descriptor of the run (software, steps and parameters, models, inputs with
their sha256, outputs), which image archives and workflow tools read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cytolens.core.files import atomic_path

__all__ = ["JOURNAL", "Journal", "pipeline_key", "write_ro_crate"]

JOURNAL = "journal.jsonl"
RO_CRATE = "ro-crate-metadata.json"


def pipeline_key(spec: dict[str, Any]) -> str:
    """A short hash of the pipeline's steps, parameters, models and cytolens version."""
    text = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def now() -> str:
    """The current UTC time, ISO 8601."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Journal:
    """Append-only record of finished items; the last line of an item wins."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / JOURNAL
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash: that item is redone
                    continue
                if isinstance(rec, dict) and "name" in rec:
                    self.records[rec["name"]] = rec

    def done(self, name: str, key: str, folder: Path) -> dict[str, Any] | None:
        """The record of ``name`` if it finished with this key and its outputs still exist."""
        rec = self.records.get(name)
        if rec is None or rec.get("status") != "done" or rec.get("key") != key:
            return None
        if not all((folder / p).exists() for p in rec.get("outputs", [])):
            return None
        return rec

    def outputs(self) -> list[str]:
        """Every output path recorded (relative to the folder)."""
        return sorted({p for r in self.records.values() for p in r.get("outputs", [])})

    def append(self, record: dict[str, Any]) -> None:
        """Add one finished item, flushed to disk before returning."""
        self.records[record["name"]] = record
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=str, allow_nan=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def write_ro_crate(
    folder: Path,
    *,
    spec: dict[str, Any],
    records: Iterable[dict[str, Any]],
    outputs: Iterable[str],
    started: str,
    ended: str,
) -> Path:
    """Write ``ro-crate-metadata.json`` (RO-Crate 1.1) describing the run in ``folder``."""
    records = list(records)
    outputs = sorted(set(outputs))
    inputs = [
        {
            "@id": Path(r["source"]).resolve().as_uri(),
            "@type": "File",
            "name": Path(r["source"]).name,
            "sha256": r.get("input_sha256"),
        }
        for r in records
    ]
    files = [{"@id": p, "@type": "File", "encodingFormat": _media_type(p)} for p in outputs]
    software = {
        "@id": "#cytolens",
        "@type": "SoftwareApplication",
        "name": "cytolens",
        "version": spec["cytolens"],
        "url": "https://example.invalid/cytolens",
    }
    action = {
        "@id": "#run",
        "@type": "CreateAction",
        "name": "cytolens pipeline run",
        "instrument": {"@id": "#cytolens"},
        "startTime": started,
        "endTime": ended,
        "object": [{"@id": i["@id"]} for i in inputs],
        "result": [{"@id": p} for p in outputs],
        "description": json.dumps({"steps": spec["steps"], "models": spec["models"]}),
    }
    graph = [
        {
            "@id": RO_CRATE,
            "@type": "CreativeWork",
            "conformsTo": {"@id": "https://w3id.org/ro/crate/1.1"},
            "about": {"@id": "./"},
        },
        {
            "@id": "./",
            "@type": "Dataset",
            "name": f"cytolens results: {' -> '.join(s['step'] for s in spec['steps'])}",
            "datePublished": ended,
            # inputs are web-based data entities (file:// URIs) of the run, not copies
            "hasPart": [{"@id": p} for p in outputs] + [{"@id": i["@id"]} for i in inputs],
            "mentions": [{"@id": "#run"}],
        },
        software,
        action,
        *inputs,
        *files,
    ]
    crate = {"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": graph}
    path = folder / RO_CRATE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(crate, indent=1, default=str) + "\n")
    return path


def _media_type(path: str) -> str:
    lower = path.lower()
    for suffix, media in (
        (".csv", "text/csv"),
        (".html", "text/html"),
        (".png", "image/png"),
        (".ome.zarr", "application/vnd+ome-zarr"),
        (".tif", "image/tiff"),
        (".json", "application/json"),
        (".jsonl", "application/jsonl"),
    ):
        if lower.endswith(suffix):
            return media
    return "application/octet-stream"

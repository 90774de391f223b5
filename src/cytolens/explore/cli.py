"""``cytolens explore IMAGES_OR_CROPS --out DIR``: a map of the cells, clusters, outliers.

Crops (``--crops``, or a folder of class folders of crops) are embedded
directly; raw images are segmented first (nuclei) and a crop is cut around
each nucleus. Writes ``cells.csv`` (one row per cell: source, map
coordinates, cluster, outlier score, principal components, and the predicted
phenotype when a model is used), ``clusters.csv`` and ``report.html`` (map
with thumbnails, example crops per cluster, outliers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cytolens.core.errors import InputError
from cytolens.core.options import at_least

__all__ = ["command"]


def _crops_of_images(paths: list[Path], m: Any, segmenter: str, device: str) -> tuple[Any, Any]:
    """Crops around the nuclei of raw images, and their table (image, label, centroid)."""
    import numpy as np
    import pandas as pd

    from cytolens.io import imread
    from cytolens.phenotype.crops import cell_crops, image_for_crops

    all_crops, tables = [], []
    for path in paths:
        img = imread(path)
        plane = np.asarray(image_for_crops(img, channels=1))
        if segmenter == "model":
            from cytolens.segment import nuclei

            lab = nuclei(plane, device=device)
        else:
            from cytolens.segment import nuclei_classical

            lab = nuclei_classical(plane)
        c, t = cell_crops(plane, np.asarray(lab), size=m.crop_size, name=str(path))
        t.insert(0, "image", path.name)
        all_crops.append(c)
        tables.append(t)
    if not tables or not sum(len(t) for t in tables):
        raise InputError("no cells found in the images")
    return np.concatenate(all_crops), pd.concat(tables, ignore_index=True)


def command(
    inputs: Annotated[list[Path], typer.Argument(help="Crops or images (files, folders, globs).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("explore-out"),
    crops: Annotated[
        bool, typer.Option("--crops/--images", help="Inputs are crops (default) or raw images.")
    ] = True,
    embedding: Annotated[str, typer.Option(help="learned or classical.")] = "learned",
    model: Annotated[str, typer.Option(help="Phenotype model for learned embeddings.")] = (
        "mitocheck-v1"
    ),
    method: Annotated[str, typer.Option(help="Map: auto (UMAP if installed), umap, pca.")] = (
        "auto"
    ),
    clustering: Annotated[str, typer.Option(help="hdbscan or kmeans.")] = "hdbscan",
    n_clusters: Annotated[
        int, typer.Option(help="Clusters for kmeans.", callback=at_least(2))
    ] = 10,
    min_cluster_size: Annotated[
        int | None, typer.Option(help="HDBSCAN smallest cluster.", callback=at_least(2))
    ] = None,
    segmenter: Annotated[str, typer.Option(help="Nuclei of raw images: model or classical.")] = (
        "model"
    ),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier run's results.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Explore cells without labels: embeddings, a 2-D map, clusters and outliers."""
    import pandas as pd

    from cytolens.core.files import atomic_path, prepare_output_dir
    from cytolens.core.summary import strict_json
    from cytolens.explore import (
        EMBEDDINGS,
        cluster_ami,
        embed_crops,
        explore_embeddings,
        write_explore_report,
    )
    from cytolens.io import find_images
    from cytolens.phenotype.crops import find_crop_files, read_crop_files
    from cytolens.phenotype.model import PhenotypeClassifier

    if embedding not in EMBEDDINGS:
        raise InputError(f"--embedding {embedding!r}: expected one of {', '.join(EMBEDDINGS)}")
    paths = find_crop_files(inputs) if crops else find_images(inputs)
    m = PhenotypeClassifier.load(model, device=device)
    prepare_output_dir(out, protected=inputs, overwrite=overwrite)
    if crops:
        array = read_crop_files(paths)
        table = pd.DataFrame(
            {"file": [str(p) for p in paths], "folder": [p.parent.name for p in paths]}
        )
    else:
        array, table = _crops_of_images(paths, m, segmenter, device)
    if len(array) < 5:
        raise InputError(f"{len(array)} cell(s): exploration needs at least 5")
    emb = embed_crops(array, kind=embedding, model=m)
    res = explore_embeddings(
        emb,
        method=method,
        clustering=clustering,
        n_clusters=n_clusters,
        min_cluster_size=min_cluster_size,
    )
    pred = m.predict(array, warn=False)[["phenotype", "confidence"]]
    full = pd.concat([table, res.table, pred], axis=1)
    with atomic_path(out / "cells.csv") as tmp:
        full.to_csv(tmp, index=False)
    clusters = (
        full.groupby("cluster")
        .agg(
            cells=("cluster", "size"),
            top_phenotype=("phenotype", lambda s: s.value_counts().index[0]),
            mean_outlier_score=("outlier_score", "mean"),
        )
        .reset_index()
    )
    with atomic_path(out / "clusters.csv") as tmp:
        clusters.to_csv(tmp, index=False)
    scores: dict[str, Any] = {}
    if crops and full["folder"].nunique() > 1:  # class folders: score against them
        scores = {"ami_clusters_vs_folders": round(cluster_ami(full["cluster"], full["folder"]), 4)}
    notes = [
        f"{len(full)} cells; {embedding} embedding ({emb.shape[1]} features"
        + (f", encoder of {m.name}" if embedding == "learned" else "")
        + f"); map: {res.method}; {res.n_clusters} clusters ({clustering}), "
        f"{int((full['cluster'] == -1).sum())} cells in none; "
        f"{int(full['is_outlier'].sum())} outliers.",
    ]
    color = "folder" if crops and full["folder"].nunique() > 1 else "cluster"
    write_explore_report(
        out / "report.html", array, full, notes=notes, scores=scores or None, color=color
    )
    summary = {
        "cells": len(full),
        "clusters": res.n_clusters,
        "outliers": int(full["is_outlier"].sum()),
        "map": res.method,
        "embedding": embedding,
        "out": str(out),
        **scores,
    }
    if as_json:
        typer.echo(strict_json(summary))
    else:
        typer.echo(
            f"{len(full)} cells, {res.n_clusters} clusters, {summary['outliers']} outliers; "
            f"report: {out / 'report.html'}",
            err=True,
        )

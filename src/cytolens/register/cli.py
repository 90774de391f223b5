"""``cytolens register align|fuse|stitch``: registration, multiview fusion, tile stitching.

One capability, three verbs (a typer app mounted as ``cytolens register``):

- ``align FIXED MOVING --out t.json [--apply moved.ome.tif]``: fit a
  transform, write it as JSON, optionally the moving image resampled onto the
  fixed grid, and a report (``<out stem>_report.html`` + a two-colour
  before/after overlay PNG).
- ``fuse VIEW... --transform t.json ... [--psf p.tif ...] [--memory-mb 512] --out fused.ome.zarr``.
- ``stitch mosaic.czi --out stitched.ome.zarr``: tiles and stage positions
  from the CZI, refined and blended, with a table of pairs and a report.

Commands only parse arguments, read files, call :mod:`cytolens.register`
and write results; errors are one line with a non-zero exit code.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console

from cytolens.core.errors import InputError, MissingFileError
from cytolens.core.options import at_least, parse_floats, positive
from cytolens.core.summary import strict_json

app = typer.Typer(
    help="Register images, fuse views, stitch tiles.",
    no_args_is_help=True,
)
console = Console(stderr=True)

_IMAGE_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".ome.zarr", ".zarr")


@app.callback()
def _group() -> None:
    """Register images (translation, rigid, affine), fuse views, stitch tiles."""


def _read_spatial(path: Path) -> Any:
    """Read an image; drop singleton non-spatial axes; must be YX or ZYX."""
    from cytolens.core.image import Image
    from cytolens.io import imread

    if not path.exists():
        raise MissingFileError(f"{path}: no such file or folder")
    image = imread(path)
    keep = [i for i, a in enumerate(image.axes) if a in "ZYX" or image.shape[i] != 1]
    axes = "".join(image.axes[i] for i in keep)
    if axes not in ("YX", "ZYX"):
        raise InputError(
            f"{path}: axes {image.axes!r} with shape {image.shape}; registration needs one "
            "channel and one time point (YX or ZYX)"
        )
    data = image.data.reshape(tuple(image.shape[i] for i in keep))
    return Image(data, axes, dict(image.pixel_size_um), path=image.path)


def _pixel_size(image: Any, given: tuple[float, ...] | None) -> tuple[float, ...] | None:
    """``--pixel-size`` if given, else the file's, else ``None`` (pixels)."""
    if given is not None:
        if len(given) == 1:
            return given * image.ndim
        if len(given) != image.ndim:
            raise InputError(
                f"--pixel-size gives {len(given)} values for a {image.ndim}D image {image.path}"
            )
        return given
    sizes = image.pixel_size_um
    if all(a in sizes for a in image.axes):
        return tuple(sizes[a] for a in image.axes)
    return None


def _check_out(out: Path, suffixes: tuple[str, ...], option: str, protected: tuple) -> Path:
    from cytolens.core.files import check_output_file

    if not out.name.lower().endswith(suffixes):
        raise InputError(f"{option} {out} must end with one of {', '.join(suffixes)}")
    return check_output_file(out, protected=protected, option=option)


def overlay(fixed: Any, moving: Any) -> np.ndarray:
    """Two-colour overlay (fixed green, moving magenta) of 2D images or max projections."""
    from cytolens.report import to_display

    def plane(a: Any) -> np.ndarray:
        a = np.nan_to_num(np.asarray(a, dtype=np.float32))
        return a.max(axis=0) if a.ndim == 3 else a

    f, m = plane(fixed), plane(moving)
    ny, nx = min(f.shape[0], m.shape[0]), min(f.shape[1], m.shape[1])
    f, m = to_display(f[:ny, :nx]), to_display(m[:ny, :nx])
    return np.clip(np.stack([m, f, m], axis=-1), 0, 1)


def _overlay_figure(panels: dict[str, np.ndarray], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from cytolens.report import save_figure

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, (title, rgb) in zip(axes.flat, panels.items(), strict=True):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


@app.command("align")
def align(
    fixed: Annotated[Path, typer.Argument(help="Fixed (reference) image, 2D or 3D.")],
    moving: Annotated[Path, typer.Argument(help="Moving image, same dimensionality.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Transform JSON to write.")],
    transform: Annotated[
        str, typer.Option("--transform", "-t", help="translation, rigid or affine.")
    ] = "rigid",
    apply: Annotated[
        Path | None,
        typer.Option(
            "--apply", help="Also write MOVING resampled onto FIXED's grid (.tif, .ome.zarr)."
        ),
    ] = None,
    initial: Annotated[
        Path | None,
        typer.Option("--initial", help="Starting transform JSON (e.g. a known 90-degree turn)."),
    ] = None,
    pixel_size: Annotated[
        str | None,
        typer.Option("--pixel-size", help="Voxel size in um, Z,Y,X (default: from the file)."),
    ] = None,
    max_iterations: Annotated[
        int,
        typer.Option("--max-iterations", help="L-BFGS iterations per level.", callback=at_least(1)),
    ] = 100,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
) -> None:
    """Register MOVING onto FIXED; write the transform (fixed -> moving coordinates) as JSON."""
    from cytolens.core.devices import resolve_device
    from cytolens.core.progress import progress_bar
    from cytolens.register import TRANSFORM_KINDS, Transform, register, transform_image
    from cytolens.report import Report

    t0 = time.perf_counter()
    if transform not in TRANSFORM_KINDS:
        raise InputError(
            f"--transform: unknown transform {transform!r}; expected one of "
            f"{', '.join(TRANSFORM_KINDS)}"
        )
    try:
        resolve_device(device)
    except InputError as exc:
        raise InputError(f"--device: {exc}") from None
    given = parse_floats(pixel_size, "--pixel-size", count=(1, 2, 3))
    protected = (fixed, moving, initial)
    out = _check_out(out, (".json",), "--out", protected)
    if apply is not None:
        apply = _check_out(apply, _IMAGE_SUFFIXES, "--apply", protected)
    stem = out.name[: -len(".json")]
    png = _check_out(out.with_name(stem + "_overlay.png"), (".png",), "the overlay PNG", protected)
    html = _check_out(out.with_name(stem + "_report.html"), (".html",), "the report", protected)
    start = Transform.from_json(initial) if initial is not None else None
    fix = _read_spatial(fixed)
    mov = _read_spatial(moving)
    if fix.ndim != mov.ndim:
        raise InputError(
            f"{fixed} is {fix.ndim}D {fix.shape} but {moving} is {mov.ndim}D {mov.shape}; "
            "register two 2D or two 3D images"
        )
    sizes = _pixel_size(fix, given)
    with progress_bar() as bar:
        task = bar.add_task(
            f"registering {moving.name} onto {fixed.name} ({transform})", total=None
        )
        result = register(
            fix.data,
            mov.data,
            transform=transform,
            pixel_size_um=sizes,
            initial=start,
            device=device,
            max_iterations=max_iterations,
        )
        bar.update(task, total=1, completed=1)
    result.to_json(out)
    before = transform_image(
        mov.data,
        start or Transform.identity(fix.ndim, units=result.units),
        fix.shape,
        pixel_size_um=sizes,
        device=device,
    )
    after = transform_image(mov.data, result, fix.shape, pixel_size_um=sizes, device=device)
    if apply is not None:
        from cytolens.io import imwrite

        axes_sizes = dict(zip(fix.axes, sizes, strict=True)) if sizes else None
        imwrite(apply, after, axes=fix.axes, pixel_size_um=axes_sizes)
    _overlay_figure(
        {
            f"before (NCC {result.quality['ncc_before']:.3f})": overlay(fix.data, before),
            f"after {transform} (NCC {result.quality['ncc_after']:.3f})": overlay(fix.data, after),
        },
        png,
    )
    report = Report(f"Registration of {moving.name} onto {fixed.name}")
    report.text("Green: fixed image; magenta: moving image (white where they agree).")
    report.figure(str(png), "two-colour overlay before / after registration")
    report.heading("Fitted transform (fixed -> moving coordinates, " + result.units + ")")
    report.table([{f"c{j}": float(v) for j, v in enumerate(row)} for row in result.matrix])
    report.table([{k: v for k, v in result.quality.items()}])
    report.save(html)
    summary = {
        "fixed": str(fixed),
        "moving": str(moving),
        "transform_json": str(out),
        "applied": str(apply) if apply else None,
        "overlay_png": str(png),
        "report": str(html),
        "kind": transform,
        "units": result.units,
        "matrix": result.matrix.tolist(),
        **result.quality,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if as_json:
        typer.echo(strict_json(summary))
    else:
        q = result.quality
        colour = "green" if q["converged"] else "yellow"
        console.print(
            f"[{colour}]wrote[/] {out} (NCC {q['ncc_before']:.3f} -> {q['ncc_after']:.3f}, "
            f"{q['iterations']} iterations, converged={q['converged']}) in {summary['seconds']} s"
        )


@app.command("fuse")
def fuse_command(
    views: Annotated[
        list[Path], typer.Argument(help="Views (2D or 3D), the first is the reference.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Fused image (.ome.zarr, .tif).")],
    transforms: Annotated[
        list[Path] | None,
        typer.Option("--transform", help="Transform JSON per view (repeat; default identity)."),
    ] = None,
    psfs: Annotated[
        list[Path] | None, typer.Option("--psf", help="PSF per view, in its own frame (repeat).")
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="mean, weighted or joint-deconvolution.")
    ] = "mean",
    iterations: Annotated[
        int,
        typer.Option(
            "--iterations", "-n", help="Joint-deconvolution iterations.", callback=at_least(1)
        ),
    ] = 2,
    chunk_shape: Annotated[
        str | None, typer.Option("--chunk-shape", help="Fuse chunk by chunk, e.g. 64,256,256.")
    ] = None,
    memory_mb: Annotated[
        float | None,
        typer.Option(
            "--memory-mb",
            help="Fuse chunk by chunk, each chunk's working set (halo included) within this "
            "many MiB (instead of --chunk-shape).",
            callback=positive,
        ),
    ] = None,
    pixel_size: Annotated[
        str | None, typer.Option("--pixel-size", help="Voxel size in um, Z,Y,X (default: file).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
) -> None:
    """Fuse registered VIEWs into one image (mean, weighted, or joint deconvolution)."""
    from cytolens.io import imwrite
    from cytolens.register import Transform
    from cytolens.register.fusion import FUSION_METHODS, fuse
    from cytolens.report import image_panel, save_figure
    from cytolens.restore import load_psf

    t0 = time.perf_counter()
    if method not in FUSION_METHODS:
        raise InputError(
            f"--method: unknown method {method!r}; expected one of {', '.join(FUSION_METHODS)}"
        )
    transforms = transforms or []
    psfs = psfs or []
    if transforms and len(transforms) != len(views):
        raise InputError(
            f"{len(transforms)} --transform for {len(views)} view(s); give one per view"
        )
    if psfs and len(psfs) != len(views):
        raise InputError(f"{len(psfs)} --psf for {len(views)} view(s); give one per view")
    if method == "joint-deconvolution" and not psfs:
        raise InputError("--method joint-deconvolution needs one --psf per view")
    if memory_mb is not None and chunk_shape is not None:
        raise InputError("give --memory-mb or --chunk-shape, not both")
    protected = (*views, *transforms, *psfs)
    out = _check_out(out, _IMAGE_SUFFIXES, "--out", protected)
    png = _check_out(
        out.with_name(out.name.split(".")[0] + "_fused.png"), (".png",), "the PNG", protected
    )
    ts = [Transform.from_json(t) for t in transforms]
    images = [_read_spatial(v) for v in views]
    ndims = {im.ndim for im in images}
    if len(ndims) > 1:
        raise InputError(
            "views of different dimensionality: "
            + ", ".join(f"{v} {im.ndim}D {im.shape}" for v, im in zip(views, images, strict=True))
        )
    ref = images[0]
    sizes = _pixel_size(ref, parse_floats(pixel_size, "--pixel-size", count=(1, 2, 3)))
    if not ts:
        units = "um" if sizes else "px"
        ts = [Transform.identity(ref.ndim, units=units) for _ in images]
    kernels = [load_psf(p) for p in psfs] or None
    chunks = parse_floats(chunk_shape, "--chunk-shape", count=(ref.ndim,))
    fused = fuse(
        [im.data for im in images],
        ts,
        psfs=kernels,
        method=method,
        iterations=iterations,
        pixel_size_um=sizes if any(t.units == "um" for t in ts) else None,
        chunk_shape=tuple(int(c) for c in chunks) if chunks else None,
        memory_mb=memory_mb,
        device=device,
    )
    axes_sizes = dict(zip(ref.axes, sizes, strict=True)) if sizes else None
    imwrite(out, fused, axes=ref.axes, pixel_size_um=axes_sizes)
    mip = (lambda a: np.asarray(a).max(axis=0)) if ref.ndim == 3 else np.asarray
    save_figure(
        image_panel({f"view 0: {views[0].name}": mip(ref.data), f"fused ({method})": mip(fused)}),
        png,
    )
    summary = {
        "views": [str(v) for v in views],
        "output": str(out),
        "png": str(png),
        "method": method,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if as_json:
        typer.echo(strict_json(summary))
    else:
        console.print(f"[green]wrote[/] {out} ({method}) in {summary['seconds']} s")


@app.command("stitch")
def stitch_command(
    mosaic: Annotated[Path, typer.Argument(help="A CZI mosaic (tiles with stage positions).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Stitched image (.ome.zarr, .tif).")],
    min_ncc: Annotated[
        float, typer.Option("--min-ncc", help="Reject pairs below this overlap NCC.")
    ] = 0.3,
    max_shift: Annotated[
        float | None, typer.Option("--max-shift", help="Largest correction of a stage offset, px.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
) -> None:
    """Stitch the tiles of MOSAIC: refine stage positions, fit globally, blend."""
    from cytolens.io import imwrite
    from cytolens.io.czi import read_czi_tiles
    from cytolens.register.stitching import stitch
    from cytolens.report import Report

    t0 = time.perf_counter()
    if not mosaic.exists():
        raise MissingFileError(f"{mosaic}: no such file")
    if not mosaic.name.lower().endswith(".czi"):
        raise InputError(f"{mosaic}: stitch reads CZI mosaics (.czi)")
    out = _check_out(out, _IMAGE_SUFFIXES, "--out", (mosaic,))
    stem = out.name.split(".")[0]
    csv = _check_out(out.with_name(stem + "_pairs.csv"), (".csv",), "the pairs table", (mosaic,))
    png = _check_out(out.with_name(stem + "_overlay.png"), (".png",), "the overlay PNG", (mosaic,))
    html = _check_out(out.with_name(stem + "_report.html"), (".html",), "the report", (mosaic,))
    tiles = read_czi_tiles(mosaic)
    result = stitch(
        tiles.tiles, tiles.positions, min_ncc=min_ncc, max_shift=max_shift, device=device
    )
    imwrite(out, result.image, axes=tiles.axes, pixel_size_um=tiles.pixel_size_um or None)
    from cytolens.core.files import atomic_path

    with atomic_path(csv) as tmp:
        result.pairs.to_csv(tmp, index=False)
    panels = {}
    for _, row in result.pairs.head(1).iterrows():
        a, b = int(row.tile_a), int(row.tile_b)
        panels.update(_pair_overlays(tiles.tiles, result, a, b))
    _overlay_figure(panels, png)
    report = Report(f"Stitching of {mosaic.name}")
    report.figure(str(png), "overlap of the first pair, green tile a, magenta tile b")
    report.table(
        result.pairs.astype(
            {"overlap_px": str, "stage_offset": str, "fitted_offset": str, "correction": str}
        )
    )
    report.save(html)
    accepted = int(result.pairs["accepted"].sum())
    summary = {
        "mosaic": str(mosaic),
        "output": str(out),
        "tiles": len(tiles.tiles),
        "pairs": len(result.pairs),
        "pairs_accepted": accepted,
        "stage_positions_px": result.stage_positions.tolist(),
        "positions_px": result.positions.tolist(),
        "pairs_csv": str(csv),
        "report": str(html),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if as_json:
        typer.echo(strict_json(summary))
    else:
        console.print(
            f"[green]wrote[/] {out} ({len(tiles.tiles)} tiles, {accepted}/{len(result.pairs)} "
            f"pairs accepted) in {summary['seconds']} s"
        )


def _pair_overlays(tiles: list, result: Any, a: int, b: int) -> dict[str, np.ndarray]:
    """Overlap of tiles a and b at the stage and at the fitted positions."""
    from cytolens.register.stitching import overlap_regions

    panels = {}
    for name, pos in (("stage", result.stage_positions), ("fitted", result.positions)):
        ia, ib = overlap_regions(tiles[a].shape, tiles[b].shape, pos[a], pos[b])
        panels[f"{name} positions"] = overlay(tiles[a][ia], tiles[b][ib])
    return panels

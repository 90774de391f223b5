"""Screenshots of the cytolens napari dock widgets, each run on a bundled sample.

For every dock widget of the plugin manifest, a napari window is opened, the
widget's sample is loaded (File > Open Sample > cytolens), the widget is added
through napari's plugin menu code (``add_plugin_dock_widget``), its Run button
is pressed, and once the worker thread has finished the whole window (canvas +
dock) is saved as ``docs/images/napari_<widget>.png``, downscaled and
palette-quantized with Pillow to stay under ``--max-kb``.

It needs a display: run it under a virtual one, from the repository root::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/napari_screenshots.py

``--only segment_nuclei track`` limits it to some widgets. The exit code is 1
when a widget's job did not end with its layers added (its status line is
printed), 2 when there is no display.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"

SHARED = ROOT.parent / "shared" / "data"


def _moved_copy(viewer: Any) -> None:
    """A rotated and shifted copy of the nuclei sample, the moving image of Register."""
    from scipy import ndimage

    fixed = np.asarray(viewer.layers["nuclei"].data, np.float32)
    moved = ndimage.shift(ndimage.rotate(fixed, 4.0, reshape=False, order=1), (12, -20), order=1)
    viewer.layers["nuclei"].name = "fixed"
    viewer.add_image(moved, name="moving", colormap="magenta", blending="additive")
    viewer.layers["fixed"].colormap = "green"


def _nuclei_labels(viewer: Any) -> None:
    """Nuclei of the sample (classical segmentation), the cells of Classify phenotypes."""
    from cytolens import segment

    viewer.add_labels(segment.nuclei_classical(viewer.layers["nuclei"].data), name="nuclei labels")


def _phase_stack(viewer: Any) -> None:
    """The held-out block of the in silico labeling field (13 phase-contrast planes)."""
    from cytolens.label_free.insilico import HELDOUT_BLOCK, block_slices, read_insilico_field

    folder = SHARED / "label_free" / "insilico_sample"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: the label-free scene needs the shared data")
    stack, _, _ = read_insilico_field(folder)
    viewer.add_image(stack[(slice(None), *block_slices(HELDOUT_BLOCK))], name="phase z-stack")


#: Per widget: the samples it runs on (and a ``setup`` adding what no sample holds), options for
#: a quick job, what its status line says when it worked (``expect``), and how to show the
#: result (layers to hide, the frame to show, layers whose contrast is set to the 1-99.8
#: percentiles as a user would, so dim samples are visible in the picture, colormaps of result
#: layers shown over their input; layers named by the start of their name).
SCENES: dict[str, dict[str, Any]] = {
    "rate_focus": {"samples": ["nuclei"], "contrast": ["nuclei"]},
    "best_plane": {"samples": ["bead"], "options": {"method": "brenner_gradient"}},
    "deconvolve": {"samples": ["bead"], "options": {"iterations": 2}, "hide": ["bead"]},
    "segment_nuclei": {"samples": ["nuclei"], "contrast": ["nuclei"]},
    "segment_cells": {"samples": ["hpa"], "hide": ["protein", "ER"]},
    "track": {"samples": ["tracking"], "frame": 10},
    "detect": {"samples": ["blood"]},
    "hpa_cells": {"samples": ["hpa"], "hide": ["microtubules", "ER"]},
    "denoise": {"samples": ["nuclei"], "contrast": ["nuclei"], "hide": ["nuclei"]},
    "label_free": {"samples": [], "setup": _phase_stack, "hide": ["phase z-stack"]},
    "phenotype": {
        "samples": ["nuclei"],
        "setup": _nuclei_labels,
        "contrast": ["nuclei"],
        "hide": ["nuclei labels"],
    },
    "trust": {"samples": ["nuclei"], "contrast": ["nuclei"], "expect": ": ood_score"},
    "register": {
        "samples": ["nuclei"],
        "setup": _moved_copy,
        "hide": ["moving"],
        "contrast": ["fixed", "registered"],
        "colormap": {"registered": "magenta"},
    },
}


def _wait(app: Any, done: Callable[[], bool], timeout_s: float) -> bool:
    """Process Qt events until ``done()`` or the timeout; whether it is done."""
    end = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > end:
            return False
        app.processEvents()
        time.sleep(0.02)
    return True


def _save_png(rgba: np.ndarray, path: Path, *, width: int, max_kb: int) -> int:
    """Write the screenshot downscaled to ``width`` and quantized; return its size in bytes.

    Fewer colours, then a smaller width, until the file is under ``max_kb``.
    """
    from PIL import Image

    from cytolens.core.files import atomic_path

    shot = Image.fromarray(np.ascontiguousarray(rgba[..., :3]))
    for scale in (1.0, 0.85, 0.7, 0.55):
        w = min(width, shot.width) * scale
        small = shot.resize((round(w), round(shot.height * w / shot.width)), Image.LANCZOS)
        for colours in (256, 128, 64):
            png = small.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.NONE)
            with atomic_path(path) as tmp:
                png.save(tmp, format="PNG", optimize=True)
            size = path.stat().st_size
            if size <= max_kb * 1024:
                return size
    return size


def _scene(viewer: Any, key: str, display_name: str, scene: dict[str, Any]) -> tuple[Any, Any]:
    """Load the samples, add and set up the dock widget; return it (and its dock)."""
    from cytolens.napari import _sample_data

    for sample in scene["samples"]:
        for data, kwargs, kind in getattr(_sample_data, f"{sample}_sample")():
            getattr(viewer, f"add_{kind}")(data, **kwargs)
    if "setup" in scene:
        scene["setup"](viewer)
    dock, widget = viewer.window.add_plugin_dock_widget("cytolens", display_name)
    for name, value in scene.get("options", {}).items():
        widget.option_widgets[name].value = value
    return dock, widget


def _show_result(viewer: Any, scene: dict[str, Any]) -> None:
    for layer in viewer.layers:
        if layer.name in scene.get("hide", ()):
            layer.visible = False
        for prefix, colormap in scene.get("colormap", {}).items():
            if layer.name.startswith(prefix):
                layer.colormap, layer.blending = colormap, "additive"
        if layer.name.startswith(tuple(scene.get("contrast", ()))):
            low, high = np.percentile(np.asarray(layer.data), (1, 99.8))
            layer.contrast_limits = (float(low), float(max(high, low + 1)))
    if "frame" in scene:
        viewer.dims.set_current_step(0, scene["frame"])
    viewer.reset_view()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the PNGs")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENES), help="some widgets only")
    parser.add_argument("--size", type=int, nargs=2, default=(1400, 860), help="window size")
    parser.add_argument("--width", type=int, default=1100, help="PNG width (px) at most")
    parser.add_argument("--max-kb", type=int, default=300, help="PNG size limit (KB)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per widget job")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        print("no display: run under xvfb-run -a (see the module docstring)", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    import npe2
    import torch
    from qtpy.QtWidgets import QApplication

    import napari
    from cytolens.napari import MANIFEST

    torch.set_num_threads(2)
    widgets = npe2.PluginManifest.from_file(MANIFEST).contributions.widgets
    names = {w.command.removeprefix("cytolens."): w.display_name for w in widgets}
    missing = set(SCENES) ^ set(names)
    if missing:
        print(f"manifest widgets and SCENES differ: {sorted(missing)}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for key in args.only or list(names):
        viewer = napari.Viewer(title=f"cytolens: {names[key]}", show=True)
        viewer.window._qt_window.resize(*args.size)
        app = QApplication.instance()
        try:
            _, widget = _scene(viewer, key, names[key], SCENES[key])
            start = time.perf_counter()
            worker = widget.run()
            finished = worker is not None and _wait(
                app, lambda w=widget: w.worker is None, args.timeout
            )
            seconds = time.perf_counter() - start
            status = str(widget.status.value)
            if not finished or SCENES[key].get("expect", ": added") not in status:
                failed.append(key)
                print(f"{key}: FAILED ({status})", file=sys.stderr)
                continue
            _show_result(viewer, SCENES[key])
            _wait(app, lambda: False, 1.0)  # let the canvas draw
            shot = viewer.window.screenshot(canvas_only=False, flash=False)
            path = args.out / f"napari_{key}.png"
            size = _save_png(shot, path, width=args.width, max_kb=args.max_kb)
            print(f"{key}: job {seconds:.1f} s; {status}; {path} ({size / 1024:.0f} KB)")
        finally:
            viewer.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

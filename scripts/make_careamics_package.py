"""Build a bioimage.io model package with CAREamics: a third-party package for cytolens to run.

CAREamics (https://careamics.github.io, PyPI ``careamics``) trains a tiny
Noise2Void U-Net for a few epochs on a synthetic noisy image (blobs + Poisson
and Gaussian noise, seeded) on the CPU and exports it with its own
``CAREamist.export_to_bmz`` (which runs ``bioimageio.core``'s model test
before writing). This script never imports cytolens: the package is made by
another tool, as a user's would be.

Two zips are written to ``--out`` (default ``build/careamics``, git-ignored):

- ``careamics-n2v.zip``: the package exactly as CAREamics exported it
  (``pytorch_state_dict`` weights whose architecture is imported from the
  ``careamics`` library).
- ``careamics-n2v-torchscript.zip``: the same package after
  ``bioimageio.core.add_weights`` (bioimageio.core's own converter) added
  ``torchscript`` weights, so it runs where CAREamics is not installed.

Installing CAREamics beside cytolens
------------------------------------
``pip install careamics`` cannot share cytolens' environment: careamics 0.3.5
pins ``torchvision<=0.26`` (which pins an older torch than cytolens' 2.13) and
``bioimageio.core<=0.11`` (which pins ``bioimageio.spec==0.5.12.0``). So it is
installed, without its dependency pins, into a separate target folder that is
put in front of cytolens' environment only for this script::

    .venv/bin/pip install --no-deps --target build/careamics-env careamics==0.3.5 \\
        bioimageio.core==0.11.0 bioimageio.spec==0.5.12.0 lightning==2.6.6 \\
        pytorch-lightning==2.6.6 lightning-utilities==0.15.3 "torchmetrics<1.9" \\
        microssim==0.0.5 xarray==2026.9.0
    PYTHONPATH=build/careamics-env .venv/bin/python scripts/make_careamics_package.py

careamics imports ``torchvision`` when it is imported, for its LVAE models
(unused by Noise2Void) and to write torchvision's version into the package's
``environment.yml``; when torchvision is absent this script registers a stub
module that says so (``__version__ = "0+absent"``) and fails loudly if any
of its functions is called.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

NAME = "careamics-n2v"


def _stub_torchvision() -> None:
    """A ``torchvision`` placeholder for careamics' import-time references (see above)."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pass
    else:
        return
    # these libraries probe for torchvision with importlib.util.find_spec when imported:
    # import them first, so they see it absent rather than the stub
    import lightning  # noqa: F401
    import pytorch_lightning  # noqa: F401
    import torchmetrics  # noqa: F401

    def absent(*args: object, **kwargs: object) -> None:
        raise RuntimeError("torchvision is not installed (stub of make_careamics_package.py)")

    root = types.ModuleType("torchvision")
    root.__version__ = "0+absent"  # type: ignore[attr-defined]
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")

    def attribute(name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        return absent

    functional.__getattr__ = attribute  # type: ignore[method-assign]
    root.transforms = transforms  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    sys.modules.update(
        {
            "torchvision": root,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
        }
    )


def synthetic_image(side: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy, clean)`` float32 images: Gaussian blobs, Poisson + read noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side].astype(np.float32)
    clean = np.full((side, side), 10.0, np.float32)
    for _ in range(40):
        cy, cx = rng.uniform(0, side, 2)
        sigma = rng.uniform(3, 8)
        clean += rng.uniform(40, 120) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    noisy = rng.poisson(clean).astype(np.float32) + rng.normal(0, 3, clean.shape)
    return noisy.astype(np.float32), clean


def add_torchscript(raw_zip: Path, careamist: object, target: Path, work: Path) -> Path:
    """The package with torchscript weights traced from CAREamics' network in eval mode.

    ``bioimageio.core.add_weights`` (0.11.0) traces the network in training
    mode: with CAREamics' batch-norm layers its torchscript output differs from
    the state dict (its own ``test_model`` then fails), so the trace is made
    here, from the same network in eval mode, on the package's test input.
    """
    import torch
    from bioimageio.spec import (
        load_model_description,
        save_bioimageio_package,
        save_bioimageio_package_as_folder,
    )
    from bioimageio.spec.model.v0_5 import TorchscriptWeightsDescr, Version

    folder = save_bioimageio_package_as_folder(
        load_model_description(raw_zip, perform_io_checks=False), output_path=work / "pkg"
    )
    descr = load_model_description(folder, perform_io_checks=False)
    net = careamist.model.model.eval().cpu()  # type: ignore[attr-defined]
    (x,) = descr.get_input_test_arrays()
    x = (x - x.mean()) / x.std()  # tracing records shapes, not values; any input of this size
    weights = folder / "weights_torchscript.pt"
    with torch.no_grad():
        torch.jit.trace(net, torch.from_numpy(np.ascontiguousarray(x, np.float32))).save(weights)
    descr.weights.torchscript = TorchscriptWeightsDescr(
        source=weights.absolute(),
        pytorch_version=Version(torch.__version__.split("+")[0]),
        parent="pytorch_state_dict",
        comment="traced in eval mode by scripts/make_careamics_package.py (cytolens)",
    )
    return Path(save_bioimageio_package(descr, output_path=target))


def build(out: Path, *, epochs: int, seed: int) -> dict[str, object]:
    """Train, export and convert; return a summary."""
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    _stub_torchvision()
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    torch.manual_seed(seed)
    import careamics
    from bioimageio.core import load_model_description, test_model
    from careamics import CAREamist
    from careamics.config import create_n2v_config

    noisy, _ = synthetic_image(seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="careamics-", dir=out))
    try:
        config = create_n2v_config(
            experiment_name="cytolens_thirdparty_n2v",
            data_type="array",
            axes="YX",
            patch_size=[64, 64],
            batch_size=8,
            num_epochs=epochs,
        )
        careamist = CAREamist(config, work_dir=work, enable_progress_bar=False)
        careamist.train(train_data=noisy)
        raw_zip = out / f"{NAME}.zip"
        careamist.export_to_bmz(
            path_to_archive=raw_zip,
            friendly_model_name="cytolens-thirdparty-n2v",
            input_array=noisy[:128, :128],
            authors=[{"name": "cytolens developers (trained with CAREamics)"}],
            general_description="A tiny Noise2Void U-Net trained with CAREamics for a few "
            "epochs on one synthetic image; a third-party package for cytolens' tests.",
            data_description="One 256x256 synthetic image: Gaussian blobs with Poisson and "
            "Gaussian read noise (seeded), made by scripts/make_careamics_package.py.",
        )
        ts_zip = add_torchscript(raw_zip, careamist, out / f"{NAME}-torchscript.zip", work)
        summary = {
            "careamics": careamics.__version__,
            "torch": torch.__version__,
            "epochs": epochs,
            "packages": {},
        }
        for path in (raw_zip, ts_zip):
            result = test_model(path)
            summary["packages"][path.name] = {
                "bioimageio_core_test": result.status,
                "weights": sorted(load_model_description(path).weights.available_formats),
            }
        return summary
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/careamics"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = build(args.out, epochs=args.epochs, seed=args.seed)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cases of ``cytolens detect convert|train|predict`` and its annotation readers.

The images and LabelImg files come from the bundled sample (``blood_smear.jpg``
+ ``blood_smear.xml``, LabelImg's layout: the .xml beside the image) and, for
the cases marked ``needs_data``, from BCCD in ``../shared/data/detection/bccd``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

from robustness_cases import Case

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "src" / "cytolens" / "data" / "samples"
BCCD = ROOT.parent / "shared" / "data" / "detection" / "bccd"
HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax"
GOOD = "blood_smear.jpg,640,480,RBC,10,20,60,70"
TRAIN_FAST = ["--steps", "1", "--batch-size", "1", "--threads", "1"]


def _labelimg(image: str = "blood_smear.jpg") -> Callable[[Path], None]:
    """A folder as LabelImg leaves it: the sample image with its .xml beside it.

    The .xml names the image ``BloodImage_00005.jpg`` (its BCCD name): training
    needs the image under that name.
    """

    def setup(tmp: Path) -> None:
        (tmp / "smears").mkdir(parents=True)
        shutil.copy(SAMPLES / "blood_smear.jpg", tmp / "smears" / image)
        shutil.copy(SAMPLES / "blood_smear.xml", tmp / "smears" / "blood_smear.xml")

    return setup


_TRAINABLE = _labelimg("BloodImage_00005.jpg")


def _bccd_labelimg(tmp: Path) -> None:
    """Two BCCD images with their LabelImg .xml files in one folder (20 + 21 objects)."""
    (tmp / "smears").mkdir()
    for stem in ("BloodImage_00000", "BloodImage_00001"):
        shutil.copy(BCCD / "JPEGImages" / f"{stem}.jpg", tmp / "smears")
        shutil.copy(BCCD / "Annotations" / f"{stem}.xml", tmp / "smears")


def _split_sample(tmp: Path) -> None:
    """BCCD's layout: images in one folder, LabelImg annotations in another."""
    (tmp / "jpg").mkdir()
    (tmp / "ann").mkdir()
    shutil.copy(SAMPLES / "blood_smear.jpg", tmp / "jpg")
    shutil.copy(SAMPLES / "blood_smear.xml", tmp / "ann")


def _csv(*rows: str, header: str = HEADER, image: bool = True) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / "boxes.csv").write_text("\n".join([header, *rows]) + "\n")
        if image:
            (tmp / "images").mkdir()
            shutil.copy(SAMPLES / "blood_smear.jpg", tmp / "images")

    return setup


def _voc(body: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / "a.xml").write_text(
            "<annotation><filename>a.jpg</filename><size><width>640</width>"
            f"<height>480</height></size>{body}</annotation>"
        )

    return setup


def _obj(**values: str | None) -> str:
    fields = {"xmin": "10", "ymin": "20", "xmax": "60", "ymax": "70", **values}
    box = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items() if v is not None)
    return f"<object><name>RBC</name><bndbox>{box}</bndbox></object>"


def _write(name: str, content: bytes) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / name).write_bytes(content)

    return setup


def _both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        for s in setups:
            s(tmp)

    return setup


def _folder_with_file(tmp: Path) -> None:
    (tmp / "results").mkdir()
    (tmp / "results" / "notes.txt").write_text("precious")


def _coco(bbox: object) -> Callable[[Path], None]:
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
        "categories": [{"id": 1, "name": "RBC"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": bbox}],
    }
    return _write("c.json", json.dumps(coco).encode())


def _batch(tmp: Path) -> None:
    """The sample image, and beside it a truncated JPEG, text named .png and a z-stack."""
    (tmp / "batch").mkdir()
    jpeg = (SAMPLES / "blood_smear.jpg").read_bytes()
    (tmp / "batch" / "smear.jpg").write_bytes(jpeg)
    (tmp / "batch" / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (tmp / "batch" / "notes.png").write_text("not an image")
    tifffile.imwrite(tmp / "batch" / "stack.tif", np.zeros((6, 64, 64), np.uint8))


def _check_batch(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    out = tmp / "out"
    if not (out / "boxes.csv").is_file():
        return "no boxes.csv: the good image's results are lost"
    names = {line.split(",")[0] for line in (out / "boxes.csv").read_text().splitlines()[1:]}
    if names != {"smear.jpg"}:
        return f"boxes.csv covers {sorted(names)}, expected smear.jpg only"
    failures = (out / "failures.csv").read_text() if (out / "failures.csv").is_file() else ""
    missing = [n for n in ("cut.jpg", "notes.png", "stack.tif") if n not in failures]
    if missing:
        return f"failures.csv does not list {missing}"
    report = out / "report.html"
    if not report.is_file() or "Failed inputs" not in report.read_text():
        return "report.html has no 'Failed inputs' section"
    if any(p.name.startswith(("cut", "notes", "stack")) for p in out.iterdir()):
        return "per-image files of a failed input were left"
    return None


def _check_strict_json(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    def refuse(constant: str) -> None:
        raise ValueError(constant)

    try:
        summary = json.loads(proc.stdout, parse_constant=refuse)
    except ValueError as exc:
        return f"--json output is not strict JSON: {exc}"
    if not summary.get("images"):
        return "--json summary lists no image"
    return None


def _check_model_folder(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    made = sorted(p.name for p in (tmp / "o").iterdir())
    if made != ["dt_good"]:
        return f"--out o/dt_good wrote {made}; the folder name must stay as given"
    if not (tmp / "o" / "dt_good" / "weights.pt").is_file():
        return "no weights.pt in o/dt_good"
    from cytolens.detect import Detector

    try:
        Detector.load(tmp / "o" / "dt_good", device="cpu")
    except Exception as exc:  # the point of the check: loading by the path given works
        return f"loading the model by its folder fails: {exc}"
    return None


def _check_voc_boxes(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    source = (SAMPLES / "blood_smear.xml").read_text()
    made = sorted((tmp / "voc").glob("*.xml")) if (tmp / "voc").is_dir() else []
    if len(made) != 1:
        return f"convert --to voc wrote {[p.name for p in made]}, expected one .xml"
    written = made[0].read_text()
    if source.count("<object>") != written.count("<object>"):
        return "convert --to voc lost or added objects"
    numbers = re.compile(r"<(xmin|ymin|xmax|ymax)>(\d+)<")
    if sorted(numbers.findall(source)) != sorted(numbers.findall(written)):
        return "convert --to voc changed box coordinates"
    return None


CASES: list[Case] = [
    # --- outputs never replace inputs --------------------------------------------------
    Case(
        "detect predict: --out is the LabelImg folder of the images (sample)",
        ["detect", "predict", "{tmp}/smears", "--out", "{tmp}/smears", "--device", "cpu"],
        setup=_labelimg(),
        message=r"--out .*smears: holds the input .*blood_smear\.(jpg|xml)",
    ),
    Case(
        "detect predict: --out is the LabelImg folder of the images (BCCD, 20 + 21 objects)",
        ["detect", "predict", "{tmp}/smears", "--out", "{tmp}/smears", "--overwrite"],
        setup=_bccd_labelimg,
        message=r"--out .*smears: holds the input .*BloodImage_0000\d\.(jpg|xml)",
        needs_data=True,
    ),
    Case(
        "detect predict --overwrite into a folder of LabelImg annotations",
        ["detect", "predict", "{tmp}/jpg", "--out", "{tmp}/ann", "--overwrite", "--device", "cpu"],
        setup=_split_sample,
        message=r"--out .*ann: holds the input .*blood_smear\.xml",
    ),
    Case(
        "detect convert --to csv: --out is an existing folder",
        ["detect", "convert", "{tmp}/smears", "--to", "csv", "--out", "{tmp}/results"],
        setup=_both(_labelimg(), _folder_with_file),
        message=r"--out .*results: is an existing folder; give a file name",
    ),
    Case(
        "detect convert --to coco: --out is an existing folder",
        ["detect", "convert", "{tmp}/smears", "--to", "coco", "--out", "{tmp}/results"],
        setup=_both(_labelimg(), _folder_with_file),
        message=r"--out .*results: is an existing folder",
    ),
    Case(
        "detect convert --to csv: --out is the input annotation file",
        [
            "detect",
            "convert",
            "{tmp}/smears/blood_smear.xml",
            "--to",
            "csv",
            "--out",
            "{tmp}/smears/blood_smear.xml",
        ],
        setup=_labelimg(),
        message=r"blood_smear\.xml: would overwrite the input",
    ),
    Case(
        "detect convert --to csv: --out is an image given by --images",
        [
            "detect",
            "convert",
            "{tmp}/smears",
            "--images",
            "{tmp}/smears",
            "--to",
            "csv",
            "--out",
            "{tmp}/smears/blood_smear.jpg",
        ],
        setup=_labelimg(),
        message=r"blood_smear\.jpg: would overwrite the input",
    ),
    Case(
        "detect convert --to voc: --out is the input folder",
        [
            "detect",
            "convert",
            "{tmp}/smears",
            "--to",
            "voc",
            "--out",
            "{tmp}/smears",
            "--overwrite",
        ],
        setup=_labelimg(),
        message=r"--out .*smears: holds the input",
    ),
    Case(
        "detect convert --to voc: --out holds files of something else",
        ["detect", "convert", "{tmp}/smears", "--to", "voc", "--out", "{tmp}/results"],
        setup=_both(_labelimg(), _folder_with_file),
        message=r"--out .*results: already holds 1 file\(s\).*--overwrite",
    ),
    Case(
        "detect convert --to voc: two images would share one .xml",
        ["detect", "convert", "{tmp}/boxes.csv", "--to", "voc", "--out", "{tmp}/voc"],
        setup=_csv(GOOD, "blood_smear.png,640,480,RBC,1,2,3,4", image=False),
        message=r"would share one VOC file blood_smear\.xml",
    ),
    Case(
        "detect convert --to voc keeps every box (round trip of the sample)",
        ["detect", "convert", "{tmp}/smears", "--to", "voc", "--out", "{tmp}/voc"],
        expect="ok",
        setup=_labelimg(),
        check=_check_voc_boxes,
    ),
    # --- bad box CSV: the file, the line and the column ----------------------------------
    Case(
        "detect convert: short CSV row (no ymax)",
        ["detect", "convert", "{tmp}/boxes.csv", "--to", "coco", "--out", "{tmp}/b.json"],
        setup=_csv(GOOD, "blood_smear.jpg,640,480,WBC,10,20,60"),
        message=r"boxes\.csv, line 3, column 'ymax': no value",
    ),
    Case(
        "detect train: short CSV row (no ymax) is refused, not the image height",
        [
            "detect",
            "train",
            "--images",
            "{tmp}/images",
            "--annotations",
            "{tmp}/boxes.csv",
            "--out",
            "{tmp}/model",
            *TRAIN_FAST,
        ],
        setup=_csv(GOOD, "blood_smear.jpg,640,480,WBC,10,20,60"),
        message=r"boxes\.csv, line 3, column 'ymax': no value",
    ),
    Case(
        "detect convert: non-numeric CSV coordinate",
        ["detect", "convert", "{tmp}/boxes.csv", "--to", "coco", "--out", "{tmp}/b.json"],
        setup=_csv("blood_smear.jpg,640,480,RBC,10,twenty,60,70"),
        message=r"boxes\.csv, line 2, column 'ymin': 'twenty' is not a number",
    ),
    Case(
        "detect convert: NaN CSV coordinate",
        ["detect", "convert", "{tmp}/boxes.csv", "--to", "coco", "--out", "{tmp}/b.json"],
        setup=_csv(GOOD, "", "blood_smear.jpg,640,480,RBC,nan,20,60,70"),
        message=r"boxes\.csv, line 4, column 'xmin': 'nan' is not a finite number",
    ),
    Case(
        "detect convert: infinite CSV coordinate",
        ["detect", "convert", "{tmp}/boxes.csv", "--to", "csv", "--out", "{tmp}/b.csv"],
        setup=_csv("blood_smear.jpg,640,480,RBC,10,20,inf,70"),
        message=r"boxes\.csv, line 2, column 'xmax': 'inf' is not a finite number",
    ),
    Case(
        "detect convert: inverted CSV box",
        ["detect", "convert", "{tmp}/boxes.csv", "--to", "coco", "--out", "{tmp}/b.json"],
        setup=_csv("blood_smear.jpg,640,480,RBC,60,20,10,70"),
        message=r"boxes\.csv, line 2: inverted box",
    ),
    Case(
        "detect convert: image width 0 in CSV",
        ["detect", "convert", "{tmp}/boxes.csv", "--to", "coco", "--out", "{tmp}/b.json"],
        setup=_csv("blood_smear.jpg,0,480,RBC,10,20,60,70"),
        message=r"boxes\.csv, line 2, column 'width': '0' is not an image size",
    ),
    Case(
        "detect convert: one image given two sizes",
        ["detect", "convert", "{tmp}/boxes.csv", "--to", "coco", "--out", "{tmp}/b.json"],
        setup=_csv(GOOD, "blood_smear.jpg,320,240,RBC,1,2,3,4"),
        message=r"blood_smear\.jpg is given different sizes",
    ),
    Case(
        "detect convert: empty CSV",
        ["detect", "convert", "{tmp}/empty.csv", "--to", "coco", "--out", "{tmp}/b.json"],
        setup=_write("empty.csv", b""),
        message=r"empty\.csv: empty file; expected a header line",
    ),
    Case(
        "detect convert: CSV without the box columns",
        ["detect", "convert", "{tmp}/boxes.csv", "--to", "coco", "--out", "{tmp}/b.json"],
        setup=_csv("a.jpg,RBC,1,2", header="image,label,x,y"),
        message=r"boxes\.csv: missing column\(s\) \['filename'",
    ),
    Case(
        "detect convert: CSV with only a header",
        ["detect", "convert", "{tmp}/boxes.csv", "--to", "coco", "--out", "{tmp}/b.json"],
        setup=_csv(),
        message=r"no boxes in .*boxes\.csv",
    ),
    Case(
        "detect convert: binary file named .csv",
        ["detect", "convert", "{tmp}/boxes.csv", "--to", "coco", "--out", "{tmp}/b.json"],
        setup=_write("boxes.csv", b"\xff\xfe\x00\x01binary\x00"),
        message=r"boxes\.csv: not a text CSV file",
    ),
    # --- bad VOC and COCO ----------------------------------------------------------------
    Case(
        "detect convert: VOC coordinate 1e300",
        ["detect", "convert", "{tmp}/a.xml", "--to", "csv", "--out", "{tmp}/b.csv"],
        setup=_voc(_obj(xmax="1e300")),
        message=r"a\.xml: object 1 \(RBC\) <xmax>: '1e300' is not a finite number",
    ),
    Case(
        "detect convert: VOC coordinate NaN",
        ["detect", "convert", "{tmp}/a.xml", "--to", "csv", "--out", "{tmp}/b.csv"],
        setup=_voc(_obj(ymin="NaN")),
        message=r"a\.xml: object 1 \(RBC\) <ymin>: 'NaN' is not a finite number",
    ),
    Case(
        "detect convert: VOC <bndbox> without <ymax>",
        ["detect", "convert", "{tmp}/a.xml", "--to", "csv", "--out", "{tmp}/b.csv"],
        setup=_voc(_obj(ymax=None)),
        message=r"a\.xml: object 1 \(RBC\): <bndbox> has no <ymax>",
    ),
    Case(
        "detect convert: VOC object without <bndbox>",
        ["detect", "convert", "{tmp}/a.xml", "--to", "csv", "--out", "{tmp}/b.csv"],
        setup=_voc("<object><name>RBC</name></object>"),
        message=r"a\.xml: object 1 \(RBC\) has no <bndbox>",
    ),
    Case(
        "detect convert: inverted VOC box",
        ["detect", "convert", "{tmp}/a.xml", "--to", "csv", "--out", "{tmp}/b.csv"],
        setup=_voc(_obj(xmin="90")),
        message=r"a\.xml: object 1 \(RBC\): inverted box",
    ),
    Case(
        "detect convert: a JPEG named .xml",
        ["detect", "convert", "{tmp}/a.xml", "--to", "csv", "--out", "{tmp}/b.csv"],
        setup=_write("a.xml", b"\xff\xd8\xff\xe0\x00\x10JFIF"),
        message=r"a\.xml: not a Pascal VOC XML file",
    ),
    Case(
        "detect convert: VOC image width 1e400",
        ["detect", "convert", "{tmp}/a.xml", "--to", "csv", "--out", "{tmp}/b.csv"],
        setup=_write(
            "a.xml", b"<annotation><size><width>1e400</width><height>4</height></size></annotation>"
        ),
        message=r"a\.xml: <size> <width>: '1e400' is not a finite number",
    ),
    Case(
        "detect convert: COCO bbox with text",
        ["detect", "convert", "{tmp}/c.json", "--to", "csv", "--out", "{tmp}/b.csv"],
        setup=_coco([1, 2, "wide", 4]),
        message=r"c\.json: annotations\[0\] 'bbox': 'wide' is not a number",
    ),
    Case(
        "detect convert: COCO bbox of negative width",
        ["detect", "convert", "{tmp}/c.json", "--to", "csv", "--out", "{tmp}/b.csv"],
        setup=_coco([1, 2, -30, 4]),
        message=r"c\.json: annotations\[0\]: 'bbox' .* negative width",
    ),
    Case(
        "detect convert: JSON that is not COCO",
        ["detect", "convert", "{tmp}/c.json", "--to", "csv", "--out", "{tmp}/b.csv"],
        setup=_write("c.json", b"[1, 2, 3]"),
        message=r"c\.json: not COCO detection JSON",
    ),
    Case(
        "detect convert: missing annotation file",
        ["detect", "convert", "{tmp}/nothing.xml", "--to", "csv", "--out", "{tmp}/b.csv"],
        message=r"nothing\.xml: annotation file not found",
    ),
    Case(
        "detect train: annotated image missing from --images",
        [
            "detect",
            "train",
            "--images",
            "{tmp}/jpg",
            "--annotations",
            "{tmp}/boxes.csv",
            "--out",
            "{tmp}/model",
            *TRAIN_FAST,
        ],
        setup=_both(_csv("other.jpg,640,480,RBC,10,20,60,70", image=False), _split_sample),
        message=r"other\.jpg: annotated image not found",
    ),
    # --- models ----------------------------------------------------------------------------
    Case(
        "detect predict --model nuclei-v1 (a segmentation model)",
        ["detect", "predict", "{tmp}/smears", "--out", "{tmp}/out", "--model", "nuclei-v1"],
        setup=_labelimg(),
        message=r"model 'nuclei-v1' is a segment model .*not a detect model",
    ),
    Case(
        "detect train --model hpa-v1 (a classification model)",
        [
            "detect",
            "train",
            "--images",
            "{tmp}/smears",
            "--annotations",
            "{tmp}/smears",
            "--out",
            "{tmp}/model",
            "--model",
            "hpa-v1",
            *TRAIN_FAST,
        ],
        setup=_TRAINABLE,
        message=r"model 'hpa-v1' is a classify model .*not a detect model",
    ),
    Case(
        "detect predict --model: a folder that is no model",
        ["detect", "predict", "{tmp}/smears", "--out", "{tmp}/out", "--model", "{tmp}/nothing"],
        setup=_labelimg(),
        message=r"unknown model .*nothing",
    ),
    Case(
        "detect train --out o/dt_good writes o/dt_good, loadable by that path",
        [
            "detect",
            "train",
            "--images",
            "{tmp}/smears",
            "--annotations",
            "{tmp}/smears",
            "--out",
            "{tmp}/o/dt_good",
            *TRAIN_FAST,
        ],
        expect="ok",
        setup=_TRAINABLE,
        check=_check_model_folder,
    ),
    # --- batches: a bad file fails alone ---------------------------------------------------
    Case(
        "detect predict: truncated, wrong-format and 3-D files among good ones",
        ["detect", "predict", "{tmp}/batch", "--out", "{tmp}/out", "--device", "cpu"],
        expect="ok",
        exit_code=1,
        setup=_batch,
        check=_check_batch,
    ),
    Case(
        "detect predict --json is strict JSON",
        [
            "detect",
            "predict",
            "{tmp}/smears/blood_smear.jpg",
            "--out",
            "{tmp}/out",
            "--json",
            "--device",
            "cpu",
        ],
        expect="ok",
        setup=_labelimg(),
        check=_check_strict_json,
    ),
    # --- numbers at the command line -----------------------------------------------------
    Case(
        "detect predict --min-score 1.5",
        ["detect", "predict", "{tmp}/smears", "--out", "{tmp}/out", "--min-score", "1.5"],
        setup=_labelimg(),
        message=r"Invalid value for '--min-score': must be between 0.0 and 1.0, got 1.5",
    ),
    Case(
        "detect predict --min-score nan",
        ["detect", "predict", "{tmp}/smears", "--out", "{tmp}/out", "--min-score", "nan"],
        setup=_labelimg(),
        message=r"Invalid value for '--min-score'",
    ),
    Case(
        "detect train --steps 0",
        [
            "detect",
            "train",
            "--images",
            "{tmp}/smears",
            "--annotations",
            "{tmp}/smears",
            "--out",
            "{tmp}/model",
            *TRAIN_FAST,
            "--steps",
            "0",
        ],
        setup=_TRAINABLE,
        message=r"Invalid value for '--steps': must be at least 1, got 0",
    ),
    Case(
        "detect train --batch-size -4",
        [
            "detect",
            "train",
            "--images",
            "{tmp}/smears",
            "--annotations",
            "{tmp}/smears",
            "--out",
            "{tmp}/model",
            *TRAIN_FAST,
            "--batch-size",
            "-4",
        ],
        setup=_TRAINABLE,
        message=r"Invalid value for '--batch-size'",
    ),
    Case(
        "detect train --scale 0",
        [
            "detect",
            "train",
            "--images",
            "{tmp}/smears",
            "--annotations",
            "{tmp}/smears",
            "--out",
            "{tmp}/model",
            *TRAIN_FAST,
            "--scale",
            "0",
        ],
        setup=_TRAINABLE,
        message=r"Invalid value for '--scale': must be between 0.05 and 4.0",
    ),
    Case(
        "detect train --threads 0",
        [
            "detect",
            "train",
            "--images",
            "{tmp}/smears",
            "--annotations",
            "{tmp}/smears",
            "--out",
            "{tmp}/model",
            *TRAIN_FAST,
            "--threads",
            "0",
        ],
        setup=_TRAINABLE,
        message=r"Invalid value for '--threads'",
    ),
    Case(
        "detect train --out: the folder of the training images",
        [
            "detect",
            "train",
            "--images",
            "{tmp}/smears",
            "--annotations",
            "{tmp}/smears",
            "--out",
            "{tmp}/smears",
            *TRAIN_FAST,
        ],
        setup=_TRAINABLE,
        message=r"--out .*smears: holds the input",
    ),
]

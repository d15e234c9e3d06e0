"""Data sources on real digit images written by the tests, and the preflight errors for bad data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import spec_for
from hpsweep.train.data import DataError, prepare

FILENAME_PATTERN = r"input_\d+_\d+_(?P<label>\d+)\.png$"


def _prepare(tmp: Path, data: dict, **sections: object):
    return prepare(spec_for(tmp, data={"replace": data}, **sections))


def test_bundled_digits_split_is_stratified_and_seeded(tmp_path):
    data = _prepare(tmp_path, {"source": "sklearn_digits"})
    assert (len(data.train), len(data.val), len(data.test)) == (1259, 269, 269)
    assert data.train.x.dtype == torch.uint8 and data.input_shape == (1, 8, 8)
    for split in (data.train, data.val, data.test):  # every class in every split, in proportion
        counts = torch.bincount(split.y, minlength=10).double()
        assert (counts / counts.sum() - 0.1).abs().max() < 0.02
    again = _prepare(tmp_path, {"source": "sklearn_digits"})
    assert torch.equal(again.val.y, data.val.y) and data.fingerprint() == again.fingerprint()
    other = prepare(spec_for(tmp_path, data={"replace": {"source": "sklearn_digits"}}, train={"seed": 1}))
    assert other.fingerprint() != data.fingerprint()
    assert data.for_search().test is None


@pytest.mark.parametrize("layout", ["folders", "csv", "filename"])
def test_file_layouts_decode_the_same_images(tmp_path, digit_files, layout):
    source = {
        "folders": {"source": "image_folder", "path": str(digit_files / "folders")},
        "csv": {"source": "csv_annotations", "csv": str(digit_files / "csv" / "labels.csv")},
        "filename": {"source": "filename_labels", "path": str(digit_files / "filename"),
                     "pattern": FILENAME_PATTERN},
    }[layout]
    data = _prepare(tmp_path, {**source, "image_size": 16})
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    assert data.class_names == tuple(str(d) for d in range(10))
    assert data.input_shape == (1, 16, 16)  # grey PNGs stay one channel; resized once at decode
    bundled = _prepare(tmp_path, {"source": "sklearn_digits", "image_size": 16})
    pixel_sum = sum(int(s.examples().sum(dtype=torch.int64)) for s in (data.train, data.val, data.test))
    bundled_sum = sum(int(s.x.sum(dtype=torch.int64)) for s in (bundled.train, bundled.val, bundled.test))
    assert abs(pixel_sum - bundled_sum) / bundled_sum < 0.02  # the same images, up to resampling
    assert all(Path(i).is_file() for i in data.val.ids[:5])


def test_image_folder_with_train_and_test_folders(tmp_path, digit_files):
    root = tmp_path / "mnist"
    for digit in range(10):
        files = sorted((digit_files / "folders" / str(digit)).iterdir())
        for split, chosen in (("train", files[:-20]), ("test", files[-20:])):
            (root / split / str(digit)).mkdir(parents=True)
            for f in chosen:
                shutil.copy(f, root / split / str(digit) / f.name)
    data = _prepare(tmp_path, {"source": "image_folder", "path": "mnist"})
    assert len(data.test) == 200 and all("/test/" in i for i in data.test.ids)
    assert not any("/test/" in i for i in data.train.ids + data.val.ids)
    assert len(data.val) > 0 and all("/train/" in i for i in data.val.ids)


def test_tabular_statistics_come_from_training_rows_only(tmp_path):
    rows = 300
    frame = pd.DataFrame({
        "size": [float(i) for i in range(rows)],
        "colour": ["red", "green", "blue"] * (rows // 3),
        "noise": [None if i % 10 == 0 else i % 7 for i in range(rows)],
        "price": [2.0 * i + 5 for i in range(rows)],
    })
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = _prepare(tmp_path, {"source": "tabular_csv", "path": "t.csv", "target": "price", "task": "regression"},
                    trainable="tabular")
    columns = {c["name"]: c for c in data.preprocessing["columns"]}
    assert columns["colour"]["kind"] == "categorical" and columns["colour"]["categories"] == ["blue", "green", "red"]
    train_rows = [int(i.split()[1]) - 2 for i in data.train.ids]
    assert columns["size"]["mean"] == pytest.approx(frame["size"].iloc[train_rows].mean())
    assert data.input_shape == (1 + 3 + 1,) and torch.isfinite(data.train.x).all()  # missing values filled
    assert data.task == "regression" and data.mean[0] == pytest.approx(frame["price"].iloc[train_rows].mean())


def _write_csv(path: Path, rows: list[tuple[str, str]], header: str = "path,label") -> Path:
    path.write_text(header + "\n" + "".join(f"{p},{label}\n" for p, label in rows), encoding="utf-8")
    return path


@pytest.fixture
def small_folder(tmp_path, digit_files) -> Path:
    root = tmp_path / "small"
    for digit in range(3):
        (root / str(digit)).mkdir(parents=True)
        for f in sorted((digit_files / "folders" / str(digit)).iterdir())[:12]:
            shutil.copy(f, root / str(digit) / f.name)
    return root


BAD_DATA = {
    "missing folder": ({"source": "image_folder", "path": "nowhere"}, "data.path", "folder not found"),
    "no class folders": ({"source": "image_folder", "path": "empty"}, "data.path", "no class sub-folders"),
    "empty class": ({"source": "image_folder", "path": "small"}, "data.path", "class 'empty' has no images"),
    "corrupt image": ({"source": "image_folder", "path": "small"}, "data", "1 of 37 images cannot be read"),
    "csv missing column": ({"source": "csv_annotations", "csv": "bad.csv"}, "data.label_column",
                           "column 'label' is not in"),
    "csv unknown label": ({"source": "csv_annotations", "csv": "labels.csv", "class_names": ["0", "1"]},
                          "data.label_column", "which is not in data.class_names"),
    "csv missing image": ({"source": "csv_annotations", "csv": "ghost.csv"}, "data.csv", "does not exist"),
    "regex matches nothing": ({"source": "filename_labels", "path": "small/0", "pattern": r"(?P<label>x\d)\.png"},
                              "data.pattern", "matches none of the 12 image names"),
    "no images": ({"source": "filename_labels", "path": "empty", "pattern": "(?P<label>.)"},
                  "data.path", "no images found"),
    "class with no examples": ({"source": "csv_annotations", "csv": "labels.csv", "class_names": ["0", "1", "2", "9"]},
                               "data.class_names", "class '9' has no examples"),
    "fewer examples than classes": ({"source": "csv_annotations", "csv": "two.csv",
                                     "class_names": ["0", "1", "2"]}, "data", "fewer examples than classes"),
    "missing target": ({"source": "tabular_csv", "path": "t.csv", "target": "y", "task": "regression"},
                       "data.target", "column 'y' is not in"),
    "batch larger than train": ({"source": "image_folder", "path": "small"}, "space.batch_size",
                                "larger than the training split"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_caught_before_training(tmp_path, small_folder, case):
    data, field, fragment = BAD_DATA[case]
    (tmp_path / "empty").mkdir()
    files = sorted(small_folder.rglob("*.png"))
    _write_csv(tmp_path / "labels.csv", [(str(f), f.parent.name) for f in files])
    _write_csv(tmp_path / "two.csv", [(str(f), f.parent.name) for f in files[:2]])
    _write_csv(tmp_path / "bad.csv", [(str(f), "x") for f in files], header="path,klass")
    _write_csv(tmp_path / "ghost.csv", [("ghost.png", "0")])
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "z": [1, 2, 3]}).to_csv(tmp_path / "t.csv", index=False)
    if case == "empty class":
        (small_folder / "empty").mkdir()
    if case == "corrupt image":
        (small_folder / "1" / "broken.png").write_bytes(b"not a png at all")
    space = {"space": {"batch_size": 64}} if case == "batch larger than train" else {"space": {"batch_size": 4}}
    with pytest.raises(DataError) as caught:
        _prepare(tmp_path, data, **space)
    (line,) = caught.value.lines()
    assert line.startswith(f"{tmp_path / 'sweep.yaml'}: {field}: "), line
    assert fragment in line
    if case == "corrupt image":
        assert "broken.png" in line


def test_a_colour_image_among_grey_ones_makes_the_whole_folder_rgb(tmp_path):
    from PIL import Image

    from hpsweep.train.data.decode import decode_images

    def fail(field: str, message: str) -> Exception:
        return ValueError(f"{field}: {message}")

    grey = [tmp_path / f"g{i}.png" for i in range(3)]
    for i, path in enumerate(grey):
        Image.new("L", (4, 4), color=40 * (i + 1)).save(path)
    colour = tmp_path / "c.png"
    Image.new("RGB", (4, 4), color=(200, 10, 30)).save(colour)

    only_grey = decode_images(grey, None, "auto", fail)
    assert only_grey.shape == (3, 1, 4, 4) and set(only_grey[1].ravel().tolist()) == {80}
    mixed = decode_images([*grey, colour], None, "auto", fail)
    assert mixed.shape == (4, 3, 4, 4)
    assert set(mixed[1].ravel().tolist()) == {80}  # a grey image: the same value in every channel
    assert mixed[3, :, 0, 0].tolist() == [200, 10, 30]
    assert decode_images([colour], None, "grey", fail).shape == (1, 1, 4, 4)
    Image.new("L", (5, 4)).save(tmp_path / "odd.png")
    with pytest.raises(ValueError, match=r"data\.image_size: images differ in size"):
        decode_images([*grey, tmp_path / "odd.png"], None, "auto", fail)


def test_threaded_decoding_keeps_every_image_in_order(digit_files, monkeypatch):
    """Small PNGs decode on one thread; slow ones (photos) on threads: both give the same array."""
    from hpsweep.train.data import decode

    def fail(field: str, message: str) -> Exception:
        return ValueError(f"{field}: {message}")

    paths = sorted((digit_files / "folders").rglob("*.png"))[:300]  # several chunks of 64
    serial = decode.decode_images(paths, 12, "auto", fail)
    monkeypatch.setattr(decode, "THREADED_DECODE_S", 0.0)  # every image counts as slow
    monkeypatch.setattr(decode, "_cpus", lambda: 4)
    threaded = decode.decode_images(paths, 12, "auto", fail)
    assert threaded.shape == (300, 1, 12, 12) and (threaded == serial).all()
    assert len({image.tobytes() for image in serial}) > 250  # the images differ from each other


def test_bundled_digits_are_scikit_learns_read_without_importing_it():
    """The digits come from the file scikit-learn ships, the same values its loader gives, and loading
    them does not import scikit-learn (0.8 s of a sweep's start-up)."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits as sklearn_digits

    from hpsweep.train.data.digits import load_digits

    images, labels = load_digits()
    bunch = sklearn_digits()
    expected = (torch.as_tensor(bunch.images, dtype=torch.float32) * (255.0 / 16.0)).round().to(torch.uint8)
    assert torch.equal(images, expected.unsqueeze(1))
    assert torch.equal(labels, torch.as_tensor(bunch.target, dtype=torch.int64))
    probe = ("import sys; from hpsweep.train.data.digits import load_digits; images, _ = load_digits(); "
             "print(len(images), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1797", "False"]

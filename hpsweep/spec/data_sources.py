"""The `data` section: where a sweep's examples come from (bundled digits, image folders, CSVs, tables),
how they are split, and the training-only augmentation of images."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from hpsweep.spec.fields import named_union
from hpsweep.spec.strict import StrictModel


class Split(StrictModel):
    """Fractions of the data for training, validation (what the search optimises) and test (promotion only)."""

    train: float = Field(0.7, gt=0, lt=1, description="fraction the trials train on")
    val: float = Field(0.15, gt=0, lt=1, description="fraction that scores each epoch: what the search optimises")
    test: float = Field(0.15, ge=0, lt=1, description="fraction held out for `hpsweep promote` only (0: none)")

    @model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must add up to 1 (got {total:g})")
        return self


class Augment(StrictModel):
    """Training-only augmentation; validation and test images are never augmented."""

    random_resized_crop: bool = Field(False, description="crop a random part of each image and resize it back")
    crop_scale: tuple[float, float] = Field((0.5, 1.0), description="area range kept by random_resized_crop")
    horizontal_flip: bool = Field(False, description="mirror half of the images left to right")

    @property
    def active(self) -> bool:
        return self.random_resized_crop or self.horizontal_flip

    @field_validator("crop_scale")
    @classmethod
    def _scale(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1] <= 1:
            raise ValueError(f"needs 0 < low <= high <= 1 (got {list(value)})")
        return value


class _ImageData(StrictModel):
    split: Split = Field(Split(), description="fractions for train, validation and test")
    image_size: int | None = Field(None, ge=4, le=2048, description="resize to a square of this side (default: native)")
    color: Literal["auto", "grey", "rgb"] = Field("auto", description="auto: grey for grey images, rgb for pretrained")
    normalize: Literal["auto", "imagenet", "dataset", "none"] = Field(
        "auto", description="per-channel statistics: the training split's (dataset), ImageNet's, or none; "
        "auto: imagenet for pretrained imagenet models, else dataset")
    augment: Augment = Field(Augment(), description="training-only augmentation")


class SklearnDigits(_ImageData):
    """scikit-learn's bundled handwritten digits: 1,797 real 8x8 images, 10 classes, no download."""

    source: Literal["sklearn_digits"] = Field(description="scikit-learn's bundled 8x8 digits")
    classes: list[Annotated[int, Field(ge=0, le=9)]] | None = Field(
        None, min_length=2, description="keep only these digits (a smaller task, e.g. for fine-tuning)")


class ImageFolder(_ImageData):
    """One sub-folder per class; with train/ and test/ sub-folders the test split comes from test/."""

    source: Literal["image_folder"] = Field(description="a folder of class folders")
    path: str = Field(min_length=1, description="folder, relative to the sweep file")


class CsvAnnotations(_ImageData):
    """A CSV listing image paths (relative to the CSV) and labels."""

    source: Literal["csv_annotations"] = Field(description="a CSV of image paths and labels")
    csv: str = Field(min_length=1, description="the CSV file, relative to the sweep file")
    path_column: str = Field("path", description="the CSV column of image paths")
    label_column: str = Field("label", description="the CSV column of labels")
    class_names: list[str] | None = Field(None, description="the labels, in class order; others are errors")


class FilenameLabels(_ImageData):
    """Images in one folder whose label is part of the file name, found by a regular expression."""

    source: Literal["filename_labels"] = Field(description="images labelled by their file names")
    path: str = Field(min_length=1, description="folder of images, relative to the sweep file")
    pattern: str = Field(description="regex with a group named 'label', searched in each file name")
    class_names: list[str] | None = Field(None, description="display names, in the order of the sorted labels")

    @field_validator("pattern")
    @classmethod
    def _has_label_group(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if "label" not in compiled.groupindex:
            raise ValueError("needs a named group (?P<label>...) that captures the label")
        return value


class TabularCsv(StrictModel):
    """A CSV of feature columns and one target column."""

    source: Literal["tabular_csv"] = Field(description="a CSV table")
    split: Split = Field(Split(), description="fractions for train, validation and test")
    path: str = Field(min_length=1, description="the CSV file, relative to the sweep file")
    target: str = Field(min_length=1, description="the column to predict")
    task: Literal["classification", "regression"] = Field(description="predict a class or a number")
    features: list[str] | None = Field(None, description="feature columns (default: all but the target)")
    categorical: list[str] = Field(default_factory=list, description="columns one-hot encoded")


IMAGE_SOURCES = (SklearnDigits, ImageFolder, CsvAnnotations, FilenameLabels)


DataSpec = named_union("data source", "source", *IMAGE_SOURCES, TabularCsv)

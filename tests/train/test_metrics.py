"""Metric arithmetic against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from hpsweep.train import metrics


def test_classification_metrics_and_confusion_matrix():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 0, 1, 1, 0, 2])
    logits = torch.nn.functional.one_hot(predicted, 3).float()
    values, confusion = metrics.classification(logits, labels, 3)
    assert confusion.tolist() == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert values["accuracy"] == pytest.approx(4 / 6)
    precision = [2 / 3, 1 / 2, 1.0]
    recall = [2 / 3, 1 / 2, 1.0]
    assert values["precision"] == pytest.approx(sum(precision) / 3)
    assert values["recall"] == pytest.approx(sum(recall) / 3)
    assert values["f1"] == pytest.approx(sum(2 * p * r / (p + r) for p, r in zip(precision, recall, strict=True)) / 3)
    assert "auc" not in values


def test_two_classes_report_roc_auc():
    labels = torch.tensor([0, 0, 1, 1])
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])  # one of four positive/negative pairs is misordered
    logits = torch.stack([torch.zeros(4), torch.logit(scores)], dim=1)
    values, _ = metrics.classification(logits, labels, 2)
    assert values["auc"] == pytest.approx(0.75)


def test_regression_metrics():
    values = metrics.regression(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 3.0, 3.0]))
    assert values["mse"] == pytest.approx(2 / 3)
    assert values["rmse"] == pytest.approx(math.sqrt(2 / 3))
    assert values["mae"] == pytest.approx(2 / 3)
    assert values["r2"] == pytest.approx(1 - (2 / 3) / (8 / 9))  # variance of [1, 3, 3] is 8/9


def test_worst_values_are_never_nan():
    assert metrics.worst_value("val_accuracy", "max") == 0.0
    assert metrics.worst_value("val_loss", "min") == math.inf
    assert metrics.worst_value("val_r2", "max") == -math.inf

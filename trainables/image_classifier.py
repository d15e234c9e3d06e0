"""Image classification: every image source and model, trained by the shared loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpsweep.train.trainable import TrialContext
from hpsweep.train.trial import run_trial


def image_classifier(config: Mapping[str, Any], context: TrialContext) -> None:
    run_trial(context.spec, context.data, config, on_epoch=context.on_epoch, resume=context.resume_state,
              pretrained=context.pretrained)


image_classifier.accepts = "image"  # type: ignore[attr-defined]  # checked before the sweep starts

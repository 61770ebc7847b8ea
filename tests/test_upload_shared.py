"""What the Upload page computes per alpha change (issue #25, item 4): the zero-shot and fine-tuned tables do not
depend on alpha, so a class moving its alphas over one example runs those two models once, not on every change;
the thumbnails of a set are encoded once per server."""

from __future__ import annotations

import io

import torch
from PIL import Image

from wiseft_explorer.evaluation import (
    ExperimentRuntime,
    predict_logits,
    predict_three,
    preprocess,
    set_example,
)
from wiseft_explorer.evaluation import predict as predict_module


def test_the_endpoints_run_once_per_image_whatever_the_alpha(tiny, monkeypatch):
    runtime = ExperimentRuntime.from_path(tiny.toml)
    pair, exp = runtime.models, runtime.experiment
    images = preprocess(runtime, [set_example(runtime, "ID", 0).image])
    calls: list[torch.nn.Module] = []

    def counted(model, *args, **kwargs):
        calls.append(model)
        return predict_logits(model, *args, **kwargs)

    monkeypatch.setattr(predict_module, "predict_logits", counted)
    shown = {}
    with runtime.borrow_working() as working:
        for alpha in (0.3, 0.7, 1.4):
            shown[alpha] = predict_three(runtime, images, alpha, working)
        other = preprocess(runtime, [set_example(runtime, "ID", 1).image])
        predict_three(runtime, other, 0.3, working)  # another image: its endpoints are computed for it
    assert sum(m is pair.zeroshot for m in calls) == 2 and sum(m is pair.finetuned for m in calls) == 2
    assert len(calls) == 2 * 2 + 4  # theta_alpha at every alpha asked
    fresh = runtime.new_working()
    for alpha, tables in shown.items():  # every table as computed from scratch at that alpha
        for label, model in (("zeroshot", pair.zeroshot), ("alpha", runtime.classifier_at(fresh, alpha)),
                             ("finetuned", pair.finetuned)):
            probs = predict_logits(model, images, pair.device, exp.precision, exp.batch_size).softmax(-1)[0]
            top = probs.topk(len(tables[label][0].classes))
            assert tables[label][0].classes == [exp.classnames[i] for i in top.indices.tolist()]
            assert torch.allclose(torch.tensor(tables[label][0].probs), top.values, atol=1e-6)


def test_a_sets_thumbnails_are_encoded_once(tiny):
    from wiseft_explorer.ui import upload

    runtime = ExperimentRuntime.from_path(tiny.toml)
    ev = runtime.eval_set("ID")
    encoded = []

    class Counting:  # stands in for the set: counts the pictures asked for
        def picture(self, index: int, size: int | None = None) -> Image.Image:
            encoded.append(index)
            return ev.picture(index, size)

    upload._THUMBNAILS.clear()
    first = [upload._thumbnail("ID-key", i, Counting()) for i in (0, 1)]
    again = [upload._thumbnail("ID-key", i, Counting()) for i in (0, 1)]
    assert encoded == [0, 1] and first == again
    assert Image.open(io.BytesIO(first[0])).size == (96, 96)
    upload._thumbnail("another set version", 0, Counting())  # a new key (the set's files changed): made again
    assert encoded == [0, 1, 0]

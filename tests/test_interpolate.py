"""Weight-space interpolation on the tiny open_clip model: the formula, exact endpoints, head policies, flat buffers."""

from __future__ import annotations

import copy

import pytest
import torch
from libkit import set_images, shared_runtime

from wiseft_explorer.core import HEAD_KEYS, WeightSpace, interpolate_state_dicts
from wiseft_explorer.evaluation import predict_logits


@pytest.fixture(scope="module")
def pair(tiny):
    """Zero-shot and fine-tuned classifiers of the tiny experiment (read-only)."""
    return shared_runtime(tiny).models


@pytest.fixture(scope="module")
def images(tiny):
    """A few preprocessed ID images."""
    return set_images(shared_runtime(tiny), "ID")[:6]


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.8, 1.0, -0.5, 1.5])
def test_theta_alpha_equals_the_formula(pair, alpha):
    space = WeightSpace(pair.zeroshot, pair.finetuned)
    state = space.set_alpha(alpha).state_dict()
    theta0, theta1 = pair.zeroshot.state_dict(), pair.finetuned.state_dict()
    reference = interpolate_state_dicts(theta0, theta1, alpha)
    assert state.keys() == theta0.keys()
    floats = 0
    for key, value in state.items():
        if theta0[key].is_floating_point():
            floats += 1
            expected = (1 - alpha) * theta0[key] + alpha * theta1[key]
            torch.testing.assert_close(value, expected, atol=1e-6, rtol=0, msg=key)
            torch.testing.assert_close(value, reference[key], atol=1e-6, rtol=0, msg=key)
            if 0 < alpha < 1 and not torch.equal(theta0[key], theta1[key]):
                assert not torch.equal(value, theta0[key]), f"{key} was not interpolated"
        else:
            assert torch.equal(value, theta0[key]), key
    # Every float tensor (BN running statistics included) is on the line, not just the parameters.
    assert floats == len([k for k in theta0 if theta0[k].is_floating_point()])
    assert space.num_weights == sum(v.numel() for v in theta0.values() if v.is_floating_point())
    assert any("running_var" in k for k in state)


def test_endpoints_reproduce_the_models_exactly(pair, images):
    space = WeightSpace(pair.zeroshot, pair.finetuned)
    working = space.new_working()
    device = pair.device
    zs_logits = predict_logits(pair.zeroshot, images, device)
    ft_logits = predict_logits(pair.finetuned, images, device)
    assert not torch.allclose(zs_logits, ft_logits)
    # Go through other alphas first: the endpoints must not depend on the path taken.
    for alpha, expected in ((0.7, None), (0.0, zs_logits), (1.5, None), (1.0, ft_logits), (0.0, zs_logits)):
        logits = predict_logits(space.interpolate_into(working, alpha), images, device)
        if expected is not None:
            assert torch.equal(logits, expected), alpha
    assert_states_equal(snapshot(space.interpolate_into(working, 1.0)), snapshot(pair.finetuned))


def test_head_policies(pair):
    theta0, theta1 = snapshot(pair.zeroshot), snapshot(pair.finetuned)
    for policy, head_source in (("zeroshot", theta0), ("finetuned", theta1)):
        space = WeightSpace(pair.zeroshot, pair.finetuned, policy)
        for alpha in (0.0, 0.3, 1.0, 1.5):
            state = snapshot(space.set_alpha(alpha))
            for key in HEAD_KEYS:
                assert torch.equal(state[key], head_source[key]), (policy, alpha, key)
            key = "visual.conv1.weight"
            torch.testing.assert_close(state[key], torch.lerp(theta0[key], theta1[key], alpha), atol=1e-6, rtol=0)
    interpolated = snapshot(WeightSpace(pair.zeroshot, pair.finetuned, "interpolate").set_alpha(0.5))
    torch.testing.assert_close(interpolated["head.weight"], (theta0["head.weight"] + theta1["head.weight"]) / 2,
                               atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="head_policy must be"):
        WeightSpace(pair.zeroshot, pair.finetuned, "average")


def test_non_float_tensors_come_from_theta0(pair):
    zs, ft = copy.deepcopy(pair.zeroshot), copy.deepcopy(pair.finetuned)
    counters = [k for k, v in zs.state_dict().items() if not v.is_floating_point()]
    assert counters and all(k.endswith("num_batches_tracked") for k in counters)
    for model, value in ((zs, 7), (ft, 99)):
        for key, tensor in model.state_dict().items():
            if key in counters:
                tensor.fill_(value)
    space = WeightSpace(zs, ft)
    for alpha in (0.0, 0.5, 1.0, 1.5):
        state = space.set_alpha(alpha).state_dict()
        assert all(int(state[k]) == 7 for k in counters), alpha


def test_base_models_are_never_mutated(pair):
    before0, before1 = snapshot(pair.zeroshot), snapshot(pair.finetuned)
    space = WeightSpace(pair.zeroshot, pair.finetuned, "zeroshot")
    working = space.new_working()
    for alpha in (0.3, -0.5, 1.5, 1.0):
        model = space.interpolate_into(working, alpha)
        with torch.no_grad():  # even scribbling on the working model must not reach the bases
            model.head.weight.mul_(2)
        working.alpha = None
    space.state_at(0.4)
    assert_states_equal(snapshot(pair.zeroshot), before0)
    assert_states_equal(snapshot(pair.finetuned), before1)
    assert working.model is not pair.zeroshot and working.model.visual is not pair.zeroshot.visual


def test_working_parameters_are_views_into_one_flat_buffer(pair):
    space = WeightSpace(pair.zeroshot, pair.finetuned)
    working = space.new_working()
    assert list(working.flats) == [torch.float32]
    flat = working.flats[torch.float32]
    assert flat.numel() == space.num_weights
    base, end = flat.data_ptr(), flat.data_ptr() + flat.numel() * flat.element_size()
    floats = [t for t in working.model.state_dict(keep_vars=True).values() if t.is_floating_point()]
    assert len(floats) > 10
    for tensor in floats:
        assert tensor.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
        assert base <= tensor.data_ptr() < end
    for param in working.model.parameters():
        assert param.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
    # Writing the buffer is writing the model: one lerp updates every weight.
    with torch.no_grad():
        flat.fill_(0.25)
    assert all(bool((t == 0.25).all()) for t in floats)
    other = space.new_working()  # each session gets its own memory
    assert other.flats[torch.float32].data_ptr() != flat.data_ptr()
    assert float(other.model.head.weight.abs().sum()) != 0.25 * other.model.head.weight.numel()


def test_layouts_must_match(pair):
    other = copy.deepcopy(pair.finetuned)
    other.head = torch.nn.Linear(other.head.in_features, other.head.out_features, bias=False)
    with pytest.raises(ValueError, match="different parameter layouts"):
        WeightSpace(pair.zeroshot, other)

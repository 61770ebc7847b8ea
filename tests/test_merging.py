"""Every merge method against a hand computation on tiny tensors, written out here from the method's definition."""

from __future__ import annotations

import math

import pytest
import torch

from wiseft_explorer.core.merging import (
    MergeError,
    MergeInputs,
    MethodChoice,
    TensorSlice,
    depths,
    get_method,
    greedy_members,
    layer_ratios,
    methods,
    overall_ratio,
)

F32 = torch.float32
# Two named tensors in one flat buffer: "a" (3 values) and "b" (2 values).
LAYOUT = [TensorSlice("a", F32, 0, 3), TensorSlice("b", F32, 3, 5)]
T0 = torch.tensor([1.0, 0.0, 2.0, 1.0, -1.0])
T1 = torch.tensor([2.0, 1.0, 1.0, 3.0, 0.5])
T2 = torch.tensor([0.0, 2.0, 3.0, 1.5, -2.0])


def inputs(*endpoints: torch.Tensor, fishers=None) -> MergeInputs:
    return MergeInputs({F32: T0.clone()}, [{F32: e.clone()} for e in endpoints], LAYOUT, fishers=fishers)


def build(name: str, inp: MergeInputs, **values) -> torch.Tensor:
    method = get_method(name)
    method.check(inp)
    out = {F32: torch.full((5,), float("nan"))}
    method.build(inp, method.values(values), out)
    return out[F32]


def test_registry_lists_methods_with_their_controls():
    found = methods()
    assert list(found)[0] == "wiseft"
    assert {"soup", "model-stock", "slerp", "lines", "ties-trim", "dare", "fisher"} <= set(found)
    for method in found.values():
        assert method.params[0].name == "alpha" and method.title and method.summary
        for spec in method.params:
            assert spec.parse(spec.default) == spec.default  # every default is in its own range
    with pytest.raises(MergeError, match="registered"):
        get_method("nope")
    with pytest.raises(MergeError, match=r"beta must lie in \[-1.0, 1.0\]"):
        MethodChoice.of("lines", {"beta": "3"})
    assert MethodChoice.of("wiseft").key() is None and MethodChoice.of("slerp").key() == {"name": "slerp",
                                                                                          "params": {}}


def test_wiseft_is_the_lerp():
    assert torch.equal(build("wiseft", inputs(T1), alpha=0.3), torch.lerp(T0, T1, 0.3))


def test_soup_is_wiseft_towards_the_mean():
    expected = 0.6 * T0 + 0.4 * (T1 + T2) / 2
    assert torch.allclose(build("soup", inputs(T1, T2), alpha=0.4), expected)
    assert torch.allclose(build("soup", inputs(T1, T2), alpha=1.0, members="1"), T2)


def test_greedy_soup_keeps_an_ingredient_only_if_accuracy_rises():
    # individual held-out accuracies: endpoint 2 is best, then 0, then 1; soups' accuracies by hand below
    table = {(0, 2): 0.8, (0, 1, 2): 0.8}  # equal is not a rise (model-soups' main.py uses >)
    chosen = greedy_members([0.6, 0.5, 0.7], lambda members: table[tuple(members)])
    assert chosen.members == [0, 2] and [s[2] for s in chosen.steps] == [True, True, False]


def test_model_stock_per_tensor_ratio():
    inp = inputs(T1, T2)
    # tensor a: τ1 = (1, 1, -1), τ2 = (-1, 2, 1): cos = (-1 + 2 - 1) / (√3·√6) = 0 -> t = 0
    # tensor b: τ1 = (2, 1.5), τ2 = (0.5, -1): cos = (1 - 1.5) / (2.5 · √1.25)
    cos_b = (2 * 0.5 - 1.5) / (2.5 * math.sqrt(1.25))
    t_b = 2 * cos_b / (cos_b + 1)
    ratios = layer_ratios(inp)
    assert ratios["a"] == pytest.approx(0.0) and ratios["b"] == pytest.approx(t_b)
    mean = (T1 + T2) / 2
    expected = torch.cat([T0[:3], t_b * mean[3:] + (1 - t_b) * T0[3:]])
    assert torch.allclose(build("model-stock", inp, alpha=1.0), expected, atol=1e-6)
    assert overall_ratio(inp) == pytest.approx(2 * t_b / 5)
    with pytest.raises(MergeError, match="at least 2"):
        get_method("model-stock").check(inputs(T1))


def test_model_stock_three_endpoints_use_the_mean_pairwise_cosine():
    t3 = torch.tensor([1.0, 1.0, 2.0, 2.0, 0.0])
    inp = inputs(T1, T2, t3)
    taus = [(e - T0)[3:] for e in (T1, T2, t3)]
    cosines = [float(torch.nn.functional.cosine_similarity(taus[i], taus[j], dim=0))
               for i, j in ((0, 1), (0, 2), (1, 2))]
    cos = sum(cosines) / 3
    assert layer_ratios(inp)["b"] == pytest.approx(3 * cos / (2 * cos + 1), rel=1e-6)


def test_slerp_follows_the_arc_per_tensor():
    out = build("slerp", inputs(T1), alpha=0.25)
    for sl in LAYOUT:
        a, b = T0[sl.start:sl.stop].double(), T1[sl.start:sl.stop].double()
        omega = math.acos(float(a @ b / (a.norm() * b.norm())))
        by_hand = (math.sin(0.75 * omega) * a + math.sin(0.25 * omega) * b) / math.sin(omega)
        assert torch.allclose(out[sl.start:sl.stop].double(), by_hand, atol=1e-6)
    parallel = build("slerp", inputs(2 * T0), alpha=0.5)  # θ₁ = 2·θ₀: the arc is a line
    assert torch.allclose(parallel, 1.5 * T0)


def test_lines_depths_of_vit_and_resnet_towers():
    vit = ["visual.conv1.weight", "visual.positional_embedding", "visual.transformer.resblocks.0.attn.in_proj_weight",
           "visual.transformer.resblocks.1.mlp.c_fc.weight", "visual.ln_post.weight", "visual.proj", "head.weight"]
    assert depths(vit) == ({vit[0]: 1, vit[1]: 1, vit[2]: 2, vit[3]: 3, vit[4]: 4, vit[5]: 4, vit[6]: 4}, 4)
    rn = ["visual.bn1.weight", "visual.layer1.0.conv1.weight", "visual.layer4.2.bn3.bias",
          "visual.attnpool.c_proj.weight", "head.bias"]
    assert depths(rn) == ({rn[0]: 1, rn[1]: 2, rn[2]: 3, rn[3]: 4, rn[4]: 4}, 4)


def test_lines_scales_alpha_with_depth():
    layout = [TensorSlice("visual.conv1.weight", F32, 0, 2), TensorSlice("visual.layer1.0.w", F32, 2, 3),
              TensorSlice("head.weight", F32, 3, 5)]
    inp = MergeInputs({F32: T0.clone()}, [{F32: T1.clone()}], layout)
    out = {F32: torch.empty(5)}
    get_method("lines").build(inp, {"alpha": 0.2, "beta": 0.6}, out)
    # L = 3: α(1) = 0.2, α(2) = 0.2 + 0.6·1/2 = 0.5, α(3) = 0.8
    alphas = torch.tensor([0.2, 0.2, 0.5, 0.8, 0.8])
    assert torch.allclose(out[F32], T0 + alphas * (T1 - T0))


def test_ties_trim_keeps_the_largest_task_vector_entries():
    tau = torch.tensor([0.1, -3.0, 0.5, 2.0, -1.5])
    # TIES code: drop = n - ⌊n·density⌋, keep |τ| ≥ the drop-th smallest |τ| (so ⌊n·density⌋ + 1 when distinct).
    # global, density 0.4: drop = 3, the 3rd smallest of (0.1, 0.5, 1.5, 2, 3) is 1.5 -> keep -3, 2, -1.5
    out = build("ties-trim", inputs(T0 + tau), alpha=0.5, density=0.4)
    assert torch.allclose(out, T0 + 0.5 * torch.tensor([0.0, -3.0, 0.0, 2.0, -1.5]))
    # per tensor, density 0.5: a drops 3 - 1 = 2 -> threshold 0.5 keeps 0.5, -3; b drops 1 -> threshold 1.5 keeps both
    per_tensor = build("ties-trim", inputs(T0 + tau), alpha=1.0, density=0.5, scope="tensor")
    assert torch.allclose(per_tensor, T0 + torch.tensor([0.0, -3.0, 0.5, 2.0, -1.5]))
    assert torch.allclose(build("ties-trim", inputs(T0 + tau), alpha=1.0, density=1.0), T0 + tau)


def test_dare_keeps_a_seeded_fraction_rescaled():
    first = build("dare", inputs(T1), alpha=1.0, density=0.5, seed=3)
    again = build("dare", inputs(T1), alpha=1.0, density=0.5, seed=3)
    assert torch.equal(first, again)
    generator = torch.Generator().manual_seed(3)
    keep = torch.cat([torch.rand(3, generator=generator), torch.rand(2, generator=generator)]) < 0.5
    assert torch.allclose(first, T0 + keep * (T1 - T0) / 0.5)


def paper_merge(alpha, theta_0, theta_1, fishers, fisher_floor):
    """The paper's _merge (src/wise_ft.py) written out from its definition."""
    fisher_0, fisher_1 = fishers
    theta = {}
    for key in theta_0:
        ones = torch.ones_like(theta_0[key])
        f_0 = torch.maximum(fisher_0.get(key, ones), fisher_floor * ones)
        f_1 = torch.maximum(fisher_1.get(key, ones), fisher_floor * ones)
        c_0, c_1 = (1 - alpha) * f_0, alpha * f_1
        theta[key] = (c_0 * theta_0[key] + c_1 * theta_1[key]) / (c_0 + c_1)
    return theta


def test_fisher_merge_equals_the_papers_merge():
    from wiseft_explorer.core.merging import fisher_flat

    f0 = {"a": torch.tensor([0.5, 1e-10, 2.0])}  # "b" has no Fisher: ones
    f1 = {"a": torch.tensor([0.1, 3.0, 0.0])}
    flats = (fisher_flat(f0, LAYOUT, {F32: T0}), fisher_flat(f1, LAYOUT, {F32: T0}))
    for alpha in (0.0, 0.3, 1.0):
        out = build("fisher", inputs(T1, fishers=flats), alpha=alpha, fisher_floor=1e-8)
        ref = paper_merge(alpha, {"a": T0[:3], "b": T0[3:]}, {"a": T1[:3], "b": T1[3:]}, (f0, f1), 1e-8)
        assert torch.allclose(out, torch.cat([ref["a"], ref["b"]]), atol=1e-6, rtol=0)
    with pytest.raises(MergeError, match="fisher --experiment"):
        get_method("fisher").check(inputs(T1))

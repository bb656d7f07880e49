"""Loss plugins: registration, requirement checks, gradients, extreme logits and the LOSSES.md identities
for CE, focal, logit adjustment, balanced softmax, class-balanced, ALA and LDAM."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.registry import Component
from harness.requirements import check_compatible
from plugins.losses._testing import LABEL_COUNTS, LOSS_MODULES, build, loss_registry, make_ctx

ROOT = Path(__file__).resolve().parents[1]
ALL_LOSSES = ["ce", "focal", "acfl", "acfl-released", "ala", "eafl", "alpa", "csl", "dr-loss", "ahl", "logit-adjust",
              "balanced-softmax", "ldam", "class-balanced"]
COSINE_LOSSES = {"ala", "ldam"}


def random_case(batch=4, items=7, seed=0, dtype=torch.float64, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(batch, items, generator=generator, dtype=torch.float64) * scale).to(dtype)
    labels = torch.tensor([0, 3, 3, 5, 1, 6, 2, 4][:batch])
    return logits, labels


def ce(logits, labels):
    return F.cross_entropy(logits, labels, reduction="none")


def ready(name, **params):
    """A loss built with its defaults, in eval mode for stateful/random ones (deterministic for gradcheck)."""
    loss = build(name, **params)
    if name == "csl":  # give CSL non-trivial stored statistics, then freeze them
        warm, labels = random_case(batch=6, seed=11)
        loss.train()
        loss(warm, torch.tensor([0, 1, 2, 3, 4, 5]))
    if name in ("csl", "ahl"):
        loss.eval()
    return loss


# --- registration and requirements ----------------------------------------------------------------


def test_every_loss_registers_with_its_requirements():
    registry = loss_registry()
    assert registry.names() == sorted(ALL_LOSSES)
    needs_counts = {"acfl", "ala", "eafl", "ahl", "logit-adjust", "balanced-softmax", "ldam", "class-balanced"}
    for component in registry:
        assert ("item_counts" in component.requires) == (component.name in needs_counts), component.name
        assert ("cosine_head" in component.requires) == (component.name in COSINE_LOSSES), component.name
    assert registry.get("dr-loss").requires == frozenset({"batch_min_2"})


def test_plugin_modules_import_without_torch():
    code = ("import sys, importlib\n"
            f"for m in {LOSS_MODULES!r}: importlib.import_module(m)\n"
            "import harness.requirements\n"
            "assert 'torch' not in sys.modules, 'torch imported at plugin import time'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr


def test_factories_reject_unknown_options_through_their_signature():
    import inspect

    for component in loss_registry():
        parameters = inspect.signature(component.factory).parameters
        assert list(parameters)[0] == "ctx"
        assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters.values()), component.name


def model(name, provides=()):
    return Component(kind="models", name=name, factory=lambda ctx: None, description="m", provides=frozenset(provides))


def test_requirement_check_gives_one_clear_line():
    registry = loss_registry()
    with pytest.raises(ValueError) as error:
        check_compatible(registry.get("ldam"), model("popularity"), stats_available=True)
    assert str(error.value) == ("loss 'ldam' needs a model with a cosine head ('cosine_head'); "
                                "model 'popularity' does not provide it")
    assert "\n" not in str(error.value)
    check_compatible(registry.get("ldam"), model("kbrd-cos", {"cosine_head"}), stats_available=True)
    check_compatible(registry.get("ce"), model("popularity"), stats_available=False)
    check_compatible(registry.get("dr-loss"), model("popularity"), stats_available=False)
    with pytest.raises(ValueError, match=r"^loss 'balanced-softmax' needs global training-label counts"):
        check_compatible(registry.get("balanced-softmax"), model("kbrd"), stats_available=False)
    odd = Component(kind="losses", name="odd", factory=lambda ctx: None, description="x", requires=frozenset({"gpu"}))
    with pytest.raises(ValueError, match="loss 'odd' requires 'gpu', which this harness cannot provide"):
        check_compatible(odd, model("kbrd"), stats_available=True)


@pytest.mark.parametrize("name", ["acfl", "ala", "eafl", "ahl", "logit-adjust", "balanced-softmax", "ldam",
                                  "class-balanced"])
def test_count_losses_refuse_missing_counts(name):
    ctx = make_ctx()
    ctx.stats.label_counts = None
    with pytest.raises(ValueError, match=f"loss '{name}' needs global training-label counts"):
        build(name, ctx)


def test_logits_wider_than_the_catalogue_are_refused():
    loss = build("balanced-softmax")
    with pytest.raises(ValueError, match="slice entity logits"):
        loss(torch.zeros(2, 9), torch.tensor([0, 1]))


# --- properties every loss must have ---------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_gradcheck_float64(name):
    loss = ready(name)
    logits, labels = random_case(scale=2.0 if name not in COSINE_LOSSES else 10.0)
    if name == "ala":
        # A = sg(DF)·QF is detached by definition, so finite differences would see DF move. Put the gold
        # cosines below -1, where the clamp makes DF = 1 locally constant and A = QF_y (non-trivial).
        logits[torch.arange(4), labels] = -31.0 - torch.arange(4, dtype=torch.float64)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: loss(z, labels), (logits,), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_finite_on_extreme_logits(name, dtype):
    loss = build(name)
    loss.train()
    generator = torch.Generator().manual_seed(3)
    sign = torch.where(torch.rand(8, 7, generator=generator) > 0.5, 1.0, -1.0)
    sign[0] = -1.0
    sign[0, 0] = 1.0  # a row whose gold (item 0) is the only +1e4 logit
    sign[1] = 1.0  # a row of ties
    for magnitude in (1e4, 1.0):
        logits = (sign * magnitude).to(dtype).requires_grad_(True)
        labels = torch.tensor([0, 3, 3, 5, 1, 6, 2, 4])
        value = loss(logits, labels)
        value.backward()
        assert value.dtype in (torch.float32, torch.float64)
        assert torch.isfinite(value), (name, dtype, magnitude, value)
        assert torch.isfinite(logits.grad.float()).all(), (name, dtype, magnitude)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_per_instance_mean_is_the_loss(name):
    loss = ready(name)
    logits, labels = random_case(batch=8)
    per = loss.per_instance(logits, labels)
    assert per.shape == (8,)
    torch.testing.assert_close(per.mean(), loss(logits, labels), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_statistics_are_buffers_and_describe_is_recordable(name):
    import json

    loss = build(name)
    for tensor in loss.buffers():
        assert tensor.device.type == "cpu"
    record = loss.describe()
    assert record["loss"] == name
    json.dumps(record)
    if "item_counts" in loss_registry().get(name).requires:
        assert record["count_smoothing"] == "max1" and len(record["counts_sha256"]) == 64
        assert record["zero_count_items"] == 1


# --- CE (§4) ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("items,expected", [(6924, 8.8427), (1472, 7.2944)])
def test_ce_of_zero_logits_is_log_c(items, expected):
    loss = build("ce")
    value = loss(torch.zeros(3, items), torch.tensor([0, 5, items - 1]))
    assert value.item() == pytest.approx(math.log(items), abs=1e-5)
    assert round(value.item(), 4) == expected


def test_ce_gradient_and_reference():
    loss = build("ce")
    logits, labels = random_case(batch=5)
    logits.requires_grad_(True)
    loss(logits, labels).backward()
    expected = (torch.softmax(logits.detach(), 1) - F.one_hot(labels, 7)) / 5
    torch.testing.assert_close(logits.grad, expected)
    torch.testing.assert_close(loss(logits.float(), labels), F.cross_entropy(logits.float(), labels), atol=1e-6, rtol=0)


def test_ce_computes_bf16_logits_in_fp32():
    loss = build("ce")
    logits, labels = random_case(dtype=torch.bfloat16)
    value = loss(logits, labels)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, F.cross_entropy(logits.float(), labels))


# --- Focal (§5) ---------------------------------------------------------------------------------------


def test_focal_gamma_zero_is_ce():
    logits, labels = random_case(batch=8)
    torch.testing.assert_close(build("focal", gamma=0.0).per_instance(logits, labels), ce(logits, labels),
                               rtol=0, atol=1e-15)


def test_focal_is_below_ce_and_close_for_hard_instances():
    logits, labels = random_case(batch=8, scale=3.0)
    focal, cross = build("focal").per_instance(logits, labels), ce(logits, labels)
    assert (focal <= cross).all()
    hard = torch.zeros(1, 7, dtype=torch.float64)
    hard[0, 1] = 20.0  # gold 0 has p_t ≈ 2e-9
    assert build("focal").per_instance(hard, torch.tensor([0])).item() == pytest.approx(
        ce(hard, torch.tensor([0])).item(), rel=1e-8)


def test_focal_value_and_lumicrs_preset():
    logits, labels = random_case(batch=8)
    pt = torch.softmax(logits, 1).gather(1, labels[:, None])[:, 0]
    torch.testing.assert_close(build("focal").per_instance(logits, labels), -(1 - pt) ** 2 * pt.log())
    torch.testing.assert_close(build("focal", preset="lumicrs").per_instance(logits, labels),
                               -0.25 * (1 - pt) ** 2 * pt.log())


def test_focal_per_class_alpha_scales_only_its_class():
    logits, labels = random_case(batch=8)
    one, two = build("focal"), build("focal")
    weights = torch.ones(7, dtype=torch.float64)
    weights[3] = 2.0
    two.set_class_alpha(weights)
    a, b = one.per_instance(logits, labels), two.per_instance(logits, labels)
    in_class = labels == 3
    torch.testing.assert_close(b[in_class], 2 * a[in_class])
    torch.testing.assert_close(b[~in_class], a[~in_class])


def test_cb_focal_uses_class_balanced_alpha():
    logits, labels = random_case(batch=8)
    cb = build("class-balanced", loss_type="focal", gamma=2.0).per_instance(logits, labels)
    torch.testing.assert_close(build("focal", alpha_mode="class_balanced").per_instance(logits, labels), cb)


# --- Logit adjustment and balanced softmax (§13, §14) -----------------------------------------------


def test_logit_adjustment_tau_zero_and_uniform_prior_are_ce():
    logits, labels = random_case(batch=8)
    torch.testing.assert_close(build("logit-adjust", tau=0.0).per_instance(logits, labels), ce(logits, labels),
                               rtol=0, atol=0)
    uniform = make_ctx(label_counts=[4] * 7)
    torch.testing.assert_close(build("logit-adjust", uniform).per_instance(logits, labels), ce(logits, labels))


def test_balanced_softmax_equals_logit_adjustment_tau_one():
    logits, labels = random_case(batch=8)
    bs = build("balanced-softmax").per_instance(logits, labels)
    torch.testing.assert_close(bs, build("logit-adjust", tau=1.0).per_instance(logits, labels), rtol=0, atol=1e-7)
    smoothed = torch.tensor(np.maximum(LABEL_COUNTS, 1), dtype=torch.float64)
    torch.testing.assert_close(bs, ce(logits + smoothed.log(), labels))
    scaled = build("balanced-softmax", make_ctx(label_counts=[3 * c if c else 3 for c in LABEL_COUNTS]))
    torch.testing.assert_close(scaled.per_instance(logits, labels), bs, rtol=0, atol=1e-7)


def test_posthoc_adjustment_changes_argmax_exactly_when_gap_is_below_prior_gap():
    loss = build("logit-adjust", form="posthoc")
    assert loss.adjusts_scores
    log_prior_gap = math.log(50) - math.log(20)  # items 0 and 1
    logits, labels = random_case(batch=2)
    torch.testing.assert_close(loss.per_instance(logits, labels), ce(logits, labels))  # trains plain CE
    for gap, flips in ((log_prior_gap - 0.01, True), (log_prior_gap + 0.01, False)):
        scores = torch.full((1, 7), -10.0, dtype=torch.float64)
        scores[0, 0], scores[0, 1] = gap, 0.0
        assert (loss.adjust_scores(scores).argmax().item() == 1) == flips
    assert build("logit-adjust").adjust_scores(scores) is scores


# --- Class-balanced (§16) ----------------------------------------------------------------------------


def test_class_balanced_beta_zero_is_ce():
    logits, labels = random_case(batch=8)
    torch.testing.assert_close(build("class-balanced", beta=0.0).per_instance(logits, labels), ce(logits, labels),
                               rtol=0, atol=0)


def test_class_balanced_weights():
    from plugins.losses._base import class_balanced_weights

    smoothed = np.maximum(np.array(LABEL_COUNTS), 1).astype(float)
    for beta in (0.9, 0.99, 0.9999):
        assert class_balanced_weights(smoothed, beta).sum() == pytest.approx(7.0, abs=1e-12)
    near_one = class_balanced_weights(smoothed, 1 - 1e-9)
    inverse = (1 / smoothed) * 7 / (1 / smoothed).sum()
    np.testing.assert_allclose(near_one, inverse, rtol=1e-6)
    # effective number 701.2 for N = 727 at beta = 0.9999 (LOSSES.md §16)
    assert (1 - 0.9999 ** 727) / (1 - 0.9999) == pytest.approx(701.24, abs=0.01)
    loss = build("class-balanced")
    logits, labels = random_case(batch=8)
    weights = torch.tensor(class_balanced_weights(smoothed, 0.9999))
    torch.testing.assert_close(loss.per_instance(logits, labels), weights[labels] * ce(logits, labels))


# --- ALA (§7) ---------------------------------------------------------------------------------------


def cosine_case(batch=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 7, generator=generator, dtype=torch.float64) * 2 - 1


def test_ala_is_ce_when_difficulty_is_zero():
    cos = cosine_case()
    labels = torch.tensor([0, 3, 3, 5, 1, 6, 2, 4])
    cos[torch.arange(8), labels] = 1.0  # DF = 0
    torch.testing.assert_close(build("ala").per_instance(30 * cos, labels), ce(30 * cos, labels), rtol=0, atol=0)


def test_ala_value_bound_and_quantity_factor():
    cos = cosine_case()
    labels = torch.tensor([0, 3, 3, 5, 1, 6, 2, 4])
    loss = build("ala")
    smoothed = np.maximum(np.array(LABEL_COUNTS), 1)
    qf = torch.tensor(math.log(2) / np.log(smoothed / 1 + 1))
    assert qf[4].item() == pytest.approx(1.0) and qf[5].item() == pytest.approx(1.0)  # rarest (N̄ = 1)
    df = (1 - cos[torch.arange(8), labels]) / 2
    shifted = 30 * cos - 30 * F.one_hot(labels, 7) * (df * qf[labels])[:, None]
    value = loss.per_instance(30 * cos, labels)
    torch.testing.assert_close(value, ce(shifted, labels))
    assert (value >= ce(30 * cos, labels)).all()
    equal = build("ala", make_ctx(label_counts=[5] * 7))
    torch.testing.assert_close(equal.quantity_factor, torch.ones(7, dtype=torch.float64))


def test_ala_rarer_gold_gets_larger_loss_and_gradient_is_ce_at_adjusted_logits():
    loss = build("ala")
    cos = torch.full((2, 7), 0.1, dtype=torch.float64)
    cos[:, 0] = cos[:, 4] = 0.5
    values = loss.per_instance(30 * cos, torch.tensor([0, 4]))  # item 0: N = 50, item 4: N = 1
    assert values[1] > values[0]
    logits = (30 * cosine_case()).requires_grad_(True)
    labels = torch.tensor([0, 3, 3, 5, 1, 6, 2, 4])
    loss(logits, labels).backward()
    adjusted = logits.detach() - 30 * F.one_hot(labels, 7) * loss.adjustment(logits.detach(), labels)[:, None]
    expected = (torch.softmax(adjusted, 1) - F.one_hot(labels, 7)) / 8
    torch.testing.assert_close(logits.grad, expected)


def test_ala_deferred_reweighting_after_the_epoch():
    from plugins.losses._base import class_balanced_weights

    loss = build("ala", drw_epoch=2)
    logits, labels = 30 * cosine_case(), torch.tensor([0, 3, 3, 5, 1, 6, 2, 4])
    plain = build("ala").per_instance(logits, labels)
    loss.on_epoch_start(2)
    torch.testing.assert_close(loss.per_instance(logits, labels), plain)  # strictly after drw_epoch
    loss.on_epoch_start(3)
    weights = torch.tensor(class_balanced_weights(np.maximum(np.array(LABEL_COUNTS), 1).astype(float), 0.9999))
    torch.testing.assert_close(loss.per_instance(logits, labels), weights[labels] * plain)


# --- LDAM (§15) -------------------------------------------------------------------------------------


def test_ldam_margins_and_zero_margin_identity():
    logits, labels = 30 * cosine_case(), torch.tensor([0, 3, 3, 5, 1, 6, 2, 4])
    torch.testing.assert_close(build("ldam", max_m=0.0).per_instance(logits, labels), ce(logits, labels),
                               rtol=0, atol=0)
    big = build("ldam", make_ctx(label_counts=[727, 1, 0, 5, 5, 5, 5]))
    assert big.margins[1].item() == pytest.approx(0.5) and big.margins[2].item() == pytest.approx(0.5)
    assert round(big.margins[0].item(), 3) == 0.096
    equal = build("ldam", make_ctx(label_counts=[9] * 7))
    torch.testing.assert_close(equal.margins, torch.full((7,), 0.5, dtype=torch.float64))


def test_ldam_changes_only_the_target_column_and_drw():
    from plugins.losses._base import class_balanced_weights
    from plugins.losses._margin import _target_shift

    logits, labels = 30 * cosine_case(), torch.tensor([0, 3, 3, 5, 1, 6, 2, 4])
    loss = build("ldam", drw_epoch=4)
    margins = loss.margins[labels]
    shifted = _target_shift(logits, labels, 30 * margins)
    changed = shifted != logits
    assert changed.sum().item() == 8 and changed[torch.arange(8), labels].all()
    torch.testing.assert_close(loss.per_instance(logits, labels), ce(shifted, labels))
    loss.on_epoch_start(3)
    torch.testing.assert_close(loss.per_instance(logits, labels), ce(shifted, labels))  # before E_drw: unweighted
    loss.on_epoch_start(4)
    weights = torch.tensor(class_balanced_weights(np.maximum(np.array(LABEL_COUNTS), 1).astype(float), 0.9999))
    torch.testing.assert_close(loss.per_instance(logits, labels), weights[labels] * ce(shifted, labels))

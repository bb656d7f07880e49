"""LOSSES.md identities and hand-computed values for ACFL, EAFL, ALPA, CSL, DR-Loss and AHL."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plugins.losses._testing import LABEL_COUNTS, build, make_ctx

LABELS8 = torch.tensor([0, 3, 3, 5, 1, 6, 2, 4])


def random_logits(batch=8, items=7, seed=0, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, items, generator=generator, dtype=torch.float64) * scale


def ce(logits, labels):
    return F.cross_entropy(logits, labels, reduction="none")


def gold_prob(logits, labels):
    return torch.softmax(logits, 1).gather(1, labels[:, None])[:, 0]


# --- ACFL (§6) ------------------------------------------------------------------------------------------


def acfl_reference(logits, labels, counts, alpha=0.6, gamma=2.5, a_lo=0.1, a_hi=1.0, g_lo=1.0, g_hi=5.0,
                   theta_min=10.0, theta_max=1000.0):
    """ℓ_i of §6.1 written out with numpy, no mask."""
    n = np.maximum(np.array(counts, dtype=float), 1)
    w = 1 / (n + 1e-10)
    s = np.where(n < theta_min, 1 + 1 / n, np.where(n > theta_max, 1 - n / n.max(), 1.0))
    p = gold_prob(logits, labels).numpy()
    y = labels.numpy()
    a = np.clip(alpha * p + 1e-10, a_lo, a_hi)
    g = np.clip(gamma * (1 - p), g_lo, g_hi)
    return -w[y] * s[y] * a * (1 - p) ** g * np.log(p)


def test_acfl_reduces_to_ce():
    loss = build("acfl", class_weights=False, sampling_weights="off", alpha_min=1.0, alpha_max=1.0, gamma_min=0.0,
                 gamma_max=0.0, mask_mode="none")
    logits = random_logits()
    torch.testing.assert_close(loss.per_instance(logits, LABELS8), ce(logits, LABELS8), rtol=0, atol=1e-15)


def test_acfl_fixed_clips_give_scaled_focal():
    loss = build("acfl", class_weights=False, sampling_weights=False, alpha_min=0.3, alpha_max=0.3, gamma_min=2.0,
                 gamma_max=2.0, mask_mode="none")
    logits = random_logits()
    torch.testing.assert_close(loss.per_instance(logits, LABELS8), 0.3 * build("focal").per_instance(logits, LABELS8))


def test_acfl_masks_select_hardest_k_or_the_literal_complement():
    logits = random_logits(scale=2.0)
    pt = gold_prob(logits, LABELS8)
    assert len(set(pt.tolist())) == 8
    reference = torch.tensor(acfl_reference(logits, LABELS8, LABEL_COUNTS))
    order = pt.argsort()
    hard, literal = order[:2], order[2:]
    hard_loss = build("acfl", k=0.25)
    assert hard_loss.batch_mask(pt).sum().item() == 2
    assert hard_loss.batch_mask(pt)[hard].all()
    torch.testing.assert_close(hard_loss(logits, LABELS8), reference[hard].mean())
    literal_loss = build("acfl", k=0.25, mask_mode="paper_literal")
    assert literal_loss.batch_mask(pt)[literal].all() and literal_loss.batch_mask(pt).sum().item() == 6
    torch.testing.assert_close(literal_loss(logits, LABELS8), reference[literal].mean())
    batch_mean = build("acfl", k=0.25, reduction="batch_mean")
    torch.testing.assert_close(batch_mean(logits, LABELS8), reference[hard].sum() / 8)
    torch.testing.assert_close(build("acfl", mask_mode="none")(logits, LABELS8), reference.mean())


@pytest.mark.parametrize("k,kept", [(0.05, 2), (0.20, 7), (0.25, 8)])
def test_acfl_hard_mask_sizes_for_batch_32(k, kept):
    pt = torch.rand(32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert build("acfl", k=k).batch_mask(pt).sum().item() == kept


def test_acfl_default_weights_and_top_item_at_zero_weight():
    loss = build("acfl")
    assert loss.hyperparameters["alpha"] == 0.6 and loss.hyperparameters["gamma"] == 2.5
    assert loss.hyperparameters["k"] == 0.20
    expected_s = torch.tensor([1.0, 1.0, 1.125, 4 / 3, 2.0, 2.0, 1.5], dtype=torch.float64)
    torch.testing.assert_close(loss.sample_w, expected_s)
    capped = build("acfl", theta_max=30.0, mask_mode="none")
    assert capped.sample_w[0].item() == 0.0 and capped.sample_w[1].item() == 1.0
    logits = random_logits()
    per = capped.per_instance(logits, LABELS8)
    assert per[0].item() == 0.0 and (per[1:] > 0).all()
    quantile = build("acfl", theta_max_quantile=0.9)
    assert quantile.theta_max == pytest.approx(float(np.quantile([50, 20, 8, 3, 1, 2], 0.9)))


def test_acfl_normalize_weights_gives_mean_instance_weight_one():
    loss = build("acfl", normalize_weights=True)
    counts = torch.tensor(LABEL_COUNTS, dtype=torch.float64)
    assert ((counts * loss.class_w).sum() / counts.sum()).item() == pytest.approx(1.0)


def test_acfl_weighted_sampler_option():
    logits = random_logits()
    sampler = build("acfl", sampling_weights="sampler", mask_mode="none")
    assert sampler.wants_weighted_sampler and not build("acfl").wants_weighted_sampler
    torch.testing.assert_close(sampler.per_instance(logits, LABELS8),
                               build("acfl", sampling_weights="off", mask_mode="none").per_instance(logits, LABELS8))
    weights = sampler.sample_weights(torch.tensor([0, 4, 5, 6]))
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights, torch.tensor([1.0, 2.0, 2.0, 1.5]))


def test_acfl_detach_modulators_changes_only_the_gradient():
    logits = random_logits().requires_grad_(True)
    plain, detached = build("acfl", mask_mode="none"), build("acfl", mask_mode="none", detach_modulators=True)
    torch.testing.assert_close(plain(logits, LABELS8), detached(logits, LABELS8))
    g1, = torch.autograd.grad(plain(logits, LABELS8), logits)
    g2, = torch.autograd.grad(detached(logits, LABELS8), logits)
    assert not torch.allclose(g1, g2)


def test_acfl_released_is_the_class_wise_top_k_form():
    loss = build("acfl-released")
    logits = torch.zeros(2, 7, dtype=torch.float64)
    logits[0, 2] = 3.0  # gold 0 is outside its top 5 %
    logits[1, 0] = 3.0  # gold 0 is the top item
    logits.requires_grad_(True)
    labels = torch.tensor([0, 0])
    per = loss.per_instance(logits, labels)
    assert per[0].item() == pytest.approx(0.25 * 10 * math.log(10), abs=1e-12)
    assert round(per[0].item(), 3) == 5.756
    p = math.exp(3) / (math.exp(3) + 6)
    assert per[1].item() == pytest.approx(-0.25 * (1 - p) ** 2 * math.log(p))
    grad, = torch.autograd.grad(per[0], logits)
    assert (grad == 0).all()


def test_acfl_and_acfl_released_are_different_losses_on_one_batch():
    """Hand-made batch, 3 instances over 7 items: the gold is the clear top item (a), tied with the
    others (b), and far below a clear top item (c). ACFL (hard mask, k = 0.2) keeps only the hardest
    instance c; the released form keeps only a and b, where the gold is inside its own top 5%."""
    logits = torch.zeros(3, 7, dtype=torch.float64)
    logits[0, 1] = 4.0
    logits[2, 0] = 4.0
    labels = torch.tensor([1, 3, 4])  # counts 20, 3, 1
    p_a, p_tie, p_c = math.exp(4) / (math.exp(4) + 6), 1 / 7, 1 / (math.exp(4) + 6)
    released = build("acfl-released").per_instance(logits, labels)
    expected = [-0.25 * (1 - p_a) ** 2 * math.log(p_a), -0.25 * (1 - p_tie) ** 2 * math.log(p_tie),
                0.25 * 10 * math.log(10)]
    torch.testing.assert_close(released, torch.tensor(expected, dtype=torch.float64))
    # ACFL on c alone: w = 1, s = 1 + 1/1 = 2, α clipped to 0.1, γ = 2.5·(1 − p_c) inside [1, 5]
    acfl_c = -1.0 * 2.0 * 0.1 * (1 - p_c) ** (2.5 * (1 - p_c)) * math.log(p_c)
    acfl = build("acfl")
    assert acfl.batch_mask(gold_prob(logits, labels)).tolist() == [0.0, 0.0, 1.0]
    assert acfl(logits, labels).item() == pytest.approx(acfl_c, rel=1e-9)  # w_c = 1/(1 + ε)
    assert build("acfl-released")(logits, labels).item() == pytest.approx(sum(expected) / 3, rel=1e-12)
    assert abs(acfl(logits, labels).item() - sum(expected) / 3) > 0.1


def test_acfl_refuses_the_released_mask_and_names_the_other_loss():
    with pytest.raises(ValueError, match="mask_mode 'classwise_topk' is the released code's different loss; "
                                         "use loss 'acfl-released'"):
        build("acfl", mask_mode="classwise_topk")
    with pytest.raises(ValueError, match=r"mask_mode must be one of \('hard', 'paper_literal', 'none'\)"):
        build("acfl", mask_mode="softest")


def test_acfl_rejects_bad_options():
    with pytest.raises(ValueError, match="mask_mode"):
        build("acfl", mask_mode="top")
    with pytest.raises(ValueError, match="sampling_weights"):
        build("acfl", sampling_weights="oversample")


# --- EAFL / A-FL-CRS (§8) -----------------------------------------------------------------------------


def test_afl_port_check_on_a_cube():
    from plugins.losses._focal import binary_afl_gamma_and_weights

    volume = np.zeros((8, 8, 8))
    volume[3:5, 3:5, 3:5] = 1
    gamma, weights = binary_afl_gamma_and_weights(volume)
    # 8 cube voxels have |∇| = sqrt(3)/2, 24 face neighbours have 0.5 (central differences of 0/1 steps).
    smoothness = (8 * math.sqrt(3) / 2 + 24 * 0.5) / 512
    assert gamma == pytest.approx(smoothness + 8 / 512, abs=1e-12)
    assert round(gamma, 6) == 0.052594
    np.testing.assert_allclose(weights, [504 / 512, 8 / 512])


def test_eafl_reduces_to_ce_and_bce():
    logits = random_logits()
    loss = build("eafl", gamma=0.0, class_weights=False)
    torch.testing.assert_close(loss.per_instance(logits, LABELS8), ce(logits, LABELS8), rtol=0, atol=1e-15)
    ova = build("eafl", gamma=0.0, class_weights=False, mode="ova")
    bce = F.binary_cross_entropy_with_logits(logits, F.one_hot(LABELS8, 7).double(), reduction="none").sum(1)
    torch.testing.assert_close(ova.per_instance(logits, LABELS8), bce)


def test_eafl_batch_gamma_and_weights():
    loss = build("eafl")
    n = np.maximum(np.array(LABEL_COUNTS), 1)
    prior = n / n.sum()
    assert loss.batch_gamma(torch.tensor([2, 2, 2, 2])).item() == pytest.approx(prior[2])  # S_B = 0
    assert loss.batch_gamma(torch.tensor([0, 1, 2, 3])).item() == pytest.approx(1 + prior[:4].mean())
    shares = np.array([0.5, 0.25, 0.25])
    expected = -(shares * np.log(shares)).sum() / math.log(4) + prior[[0, 0, 1, 2]].mean()
    assert loss.batch_gamma(torch.tensor([0, 0, 1, 2])).item() == pytest.approx(expected)
    counts = torch.tensor(LABEL_COUNTS, dtype=torch.float64)
    assert ((counts * loss.weights).sum() / counts.sum()).item() == pytest.approx(1.0)
    logits = random_logits()
    gamma = loss.batch_gamma(LABELS8).item()
    pt = gold_prob(logits, LABELS8)
    torch.testing.assert_close(loss.per_instance(logits, LABELS8),
                               -loss.weights[LABELS8] * (1 - pt) ** gamma * pt.log())


# --- ALPA (§9) -----------------------------------------------------------------------------------------


def test_alpa_closed_form_and_spot_values():
    loss = build("alpa")
    logits = random_logits(scale=3.0)
    p = torch.sigmoid(logits)
    y = F.one_hot(LABELS8, 7).double()
    closed = (y * 1.5 * 0.875 * (1 - p) + (1 - y) * 1.625 * p ** 4 * (p - 0.05).clamp_min(0) ** 5).sum(1)
    torch.testing.assert_close(loss.per_instance(logits, LABELS8), closed, rtol=0, atol=1e-12)
    terms = loss.elementwise(torch.tensor([[0.0, 0.0, -4.0]], dtype=torch.float64), torch.tensor([0]))
    assert terms[0, 0].item() == pytest.approx(0.65625)
    assert terms[0, 1].item() == pytest.approx(1.625 * 0.0625 * 0.45 ** 5) and round(terms[0, 1].item(), 6) == 0.001874
    assert terms[0, 2].item() == 0.0  # σ(−4) = 0.018 ≤ 0.05
    summed = build("alpa", reduction="sum")
    torch.testing.assert_close(summed(logits, LABELS8), closed.sum())


# --- CSL (§10) -----------------------------------------------------------------------------------------


def csl_numerators_reference(z, labels, norm_sum, norm_count, previous, reward=2.0):
    """t_i of §10 with loops, state given explicitly (including this batch)."""
    batch, items = z.shape
    predicted = np.bincount(z.argmax(1).numpy(), minlength=items).astype(float)
    strength = np.array([(norm_sum[i] / norm_count[i]) ** 2 if norm_count[i] else 0.0 for i in range(items)])
    t = np.zeros(items)
    for i in range(items):
        h = -sum((1 / batch) * math.log(1 / batch + 1e-6) for b in range(batch) if predicted[i] and z[b].argmax() == i)
        gamma_n = 0.0 if predicted[i] == 0 else strength[i] / (1e-6 + (strength.max() + 1e-6) * h) * predicted[i]
        r = -reward if predicted[i] > previous[i] else reward if predicted[i] < previous[i] else 0.0
        t[i] = (gamma_n + r) ** 2
    return t


def test_csl_denominators_and_numerators_match_loops():
    from plugins.losses._csl import CSL

    z = random_logits(batch=5, seed=4)
    naive = torch.stack([((z - F.one_hot(torch.tensor(i), 7).double()) ** 2).sum() for i in range(7)])
    torch.testing.assert_close(CSL.denominators(z), naive)
    loss = build("csl")
    loss.train()
    first = random_logits(batch=5, seed=5)
    loss(first, LABELS8[:5])
    previous = np.bincount(first.argmax(1).numpy(), minlength=7)
    stored_sum, stored_count = loss.norm_sum.clone().numpy(), loss.norm_count.clone().numpy()
    labels = torch.tensor([1, 1, 2, 6, 0])
    norms = z.norm(dim=1).numpy()
    expected_sum, expected_count = stored_sum.copy(), stored_count.copy()
    np.add.at(expected_sum, labels.numpy(), norms)
    np.add.at(expected_count, labels.numpy(), 1)
    t = loss.numerators(z, labels)
    np.testing.assert_allclose(t.numpy(), csl_numerators_reference(z, labels, expected_sum, expected_count, previous))
    assert -math.log(1 / 16 + 1e-6) == pytest.approx(2.7726, abs=1e-4)


def test_csl_running_sums_equal_stored_vectors():
    loss = build("csl")
    loss.train()
    seen: dict[int, list[float]] = {}
    for seed in range(3):
        z = random_logits(batch=6, seed=seed)
        labels = torch.tensor([seed, 1, 2, 2, 6, seed + 3])
        loss(z, labels)
        for vector, label in zip(z, labels.tolist()):
            seen.setdefault(label, []).append(vector.norm().item())
    for item in range(7):
        mean = np.mean(seen[item]) if item in seen else 0.0
        strength = (loss.norm_sum[item] / loss.norm_count[item]).item() if loss.norm_count[item] else 0.0
        assert strength ** 2 == pytest.approx(mean ** 2)


def test_csl_weight_zero_is_ce_and_eval_keeps_state():
    z = random_logits()
    torch.testing.assert_close(build("csl", weight=0.0).per_instance(z, LABELS8), ce(z, LABELS8), rtol=0, atol=0)
    loss = build("csl")
    loss.train()
    loss(z, LABELS8)
    state = {name: buffer.clone() for name, buffer in loss.named_buffers()}
    loss.eval()
    loss(random_logits(seed=9), LABELS8)
    for name, buffer in loss.named_buffers():
        assert torch.equal(buffer, state[name]), name
    legacy = build("csl", legacy_eval_updates=True)
    legacy.eval()
    legacy(z, LABELS8)
    assert legacy.norm_count.sum().item() == 8


def test_csl_gradient_is_the_closed_form():
    loss = build("csl")
    loss.train()
    loss(random_logits(seed=7), LABELS8)
    loss.eval()
    z = random_logits(batch=6, seed=8).requires_grad_(True)
    labels = LABELS8[:6]
    t = loss.numerators(z.detach(), labels)
    d = loss.denominators(z.detach()) + 1e-6
    grad, = torch.autograd.grad(loss.regulariser(z, labels), z)
    eye = torch.eye(7, dtype=torch.float64)
    expected = -(2 / 7) * sum((t[i] / d[i] ** 2) * (z.detach() - eye[i]) for i in range(7))
    torch.testing.assert_close(grad, expected)


def test_csl_reset_on_epoch():
    loss = build("csl", reset_on_epoch=True)
    loss.train()
    loss(random_logits(), LABELS8)
    assert loss.previous_predictions.sum().item() == 8
    loss.on_epoch_start(1)
    assert loss.previous_predictions.sum().item() == 0


# --- DR-Loss (§11) --------------------------------------------------------------------------------------


def dr_naive(s, labels, gamma1=5.0, gamma2=7.0):
    """The released exp-then-log form per column (overflows for large γ·s), mean over columns."""
    values = []
    for c in range(s.shape[1]):
        pos = [i for i in range(s.shape[0]) if labels[i] == c]
        neg = [j for j in range(s.shape[0]) if labels[j] != c]
        pair = sum(torch.exp(gamma1 * (s[j, c] - s[i, c])) for i in pos for j in neg)
        negative = sum(torch.exp(gamma2 * s[j, c]) for j in neg)
        values.append(torch.log(1 + pair + negative))
    return torch.stack(values).mean()


def test_dr_instance_lsep_is_ce():
    from plugins.losses._dr import instance_lsep

    z = random_logits(scale=3.0)
    torch.testing.assert_close(instance_lsep(z, LABELS8, 1.0), ce(z, LABELS8))


def test_dr_single_positive_column_is_an_item_side_softmax():
    loss = build("dr-loss", mode="faithful", negative_term=False)
    z = random_logits()
    columns, present = loss.column_losses(z, LABELS8)
    # item 0 is the gold of instance 0 only: pair term = −log softmax_b(γ₁ s_{·0})_0
    assert columns[0].item() == pytest.approx(-torch.log_softmax(5.0 * z[:, 0], 0)[0].item())
    assert present.tolist() == [True] * 7


def test_dr_stable_form_matches_naive_and_survives_where_naive_overflows():
    loss = build("dr-loss", mode="faithful")
    z = random_logits(scale=1.0).clamp(-2.9, 2.9)
    torch.testing.assert_close(loss(z, LABELS8), dr_naive(z, LABELS8), rtol=1e-6, atol=1e-6)
    big = torch.full((4, 7), 12.0)
    labels = torch.tensor([0, 1, 2, 2])
    assert torch.isinf(dr_naive(big, labels, gamma2=10.0))
    assert torch.isfinite(build("dr-loss", mode="faithful", gamma2=10.0)(big, labels))


def test_dr_modes_permutation_and_batch_of_one():
    z, loss = random_logits(), build("dr-loss")
    perm = torch.tensor([3, 7, 0, 5, 1, 6, 2, 4])
    faithful = build("dr-loss", mode="faithful")
    torch.testing.assert_close(faithful(z[perm], LABELS8[perm]), faithful(z, LABELS8))
    torch.testing.assert_close(loss(z, LABELS8), ce(z, LABELS8).mean() + faithful(z, LABELS8))
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    present = build("dr-loss", mode="present_only", lambda_neg=0.5)
    columns, _ = faithful.column_losses(z, labels)
    torch.testing.assert_close(present(z, labels), columns[:4].mean() + 0.5 * columns[4:].mean())
    with pytest.raises(ValueError, match="at least 2 instances"):
        loss(z[:1], LABELS8[:1])


# --- AHL (§12, reconstructed) ---------------------------------------------------------------------------


def test_ahl_leaf_only_without_noise_or_weights_is_ce():
    loss = build("ahl", level_weights=[1.0, 0.0], gumbel_beta=0.0, node_weighting="none")
    loss.train()
    z = random_logits()
    torch.testing.assert_close(loss.per_instance(z, LABELS8), ce(z, LABELS8), rtol=0, atol=0)
    assert loss.describe()["hyperparameters"]["levels"] == ["tier"]  # no dataset: tier fallback


def custom_ahl(level, **options):
    from plugins.losses._ahl import AHL

    return AHL(np.array(LABEL_COUNTS), [level], **options)


def test_ahl_identity_level_and_root_level():
    from plugins.losses._ahl import level_from_groups

    z = random_logits()
    identity = custom_ahl(level_from_groups("id", [[f"n{i}"] for i in range(7)]), weighting="none", gumbel_beta=0.0)
    torch.testing.assert_close(identity.coarse_log_probs(F.log_softmax(z, 1), 0), F.log_softmax(z, 1))
    torch.testing.assert_close(identity.per_instance(z, LABELS8), 2 * ce(z, LABELS8))
    root = custom_ahl(level_from_groups("root", [["all"]] * 7), level_weights=[0.0, 1.0])
    root.train()
    assert root.per_instance(z, LABELS8).abs().max().item() < 1e-12


def genre_dataset():
    genres = [["drama"], ["drama", "comedy"], ["comedy"], [], ["horror", "comedy", "drama"], ["horror"], ["drama"]]
    catalogue = SimpleNamespace(metadata=[{"genre": g} for g in genres])
    return SimpleNamespace(num_items=7, kg=None, catalogue=catalogue), genres


def test_ahl_genre_levels_are_distributions_and_lse_matches_sum():
    dataset, _ = genre_dataset()
    loss = build("ahl", make_ctx(dataset=dataset), hierarchy="genre_tier")
    assert loss.describe()["hyperparameters"]["levels"] == ["genre_tier", "genre"]
    assert loss.levels[1].node_names == ["comedy", "drama", "horror", "unknown"]
    z = random_logits(scale=3.0)
    log_p = F.log_softmax(z, 1)
    for h, level in enumerate(loss.levels):
        coarse = loss.coarse_log_probs(log_p, h)
        torch.testing.assert_close(coarse.exp().sum(1), torch.ones(8, dtype=torch.float64))
        dense = torch.tensor(level.dense(7))
        torch.testing.assert_close(coarse, torch.log(log_p.exp() @ dense))


def test_ahl_genres_from_the_knowledge_graph():
    from plugins.losses._ahl import item_genres

    kg = SimpleNamespace(relation_names=["genre", "star"], item_entities=[0, 1, 2], entity_names=None,
                         heads=[0, 1, 3, 2], relations=[0, 0, 0, 1], tails=[3, 4, 1, 5])
    dataset = SimpleNamespace(num_items=3, kg=kg, catalogue=SimpleNamespace(metadata=None))
    assert item_genres(dataset) == [["entity:3"], ["entity:4", "entity:3"], []]


def test_ahl_weighted_value_by_hand():
    from plugins.losses._ahl import level_from_groups

    level = level_from_groups("pair", [["a"], ["a"], ["b"], ["b"], ["b"], ["c"], ["c"]])
    loss = custom_ahl(level, gumbel_beta=0.0, rho=0.5)
    n = np.maximum(np.array(LABEL_COUNTS), 1).astype(float)
    leaf_w = n ** -0.5 / (n ** -0.5).mean()
    f = np.array([n[0] + n[1], n[2] + n[3] + n[4], n[5] + n[6]])
    node_w = f ** -0.5 / (f ** -0.5).mean()
    z = random_logits()
    p = torch.softmax(z, 1).numpy()
    groups = [[0, 1], [2, 3, 4], [5, 6]]
    node_of = [0, 0, 1, 1, 1, 2, 2]
    y = LABELS8.numpy()
    expected = [-leaf_w[c] * math.log(p[i, c]) - node_w[node_of[c]] * math.log(p[i, groups[node_of[c]]].sum())
                for i, c in enumerate(y)]
    torch.testing.assert_close(loss.per_instance(z, LABELS8), torch.tensor(expected))


def test_ahl_gumbel_noise_is_seeded():
    z = random_logits()

    def value(seed, beta):
        loss = build("ahl", make_ctx(seed=seed), gumbel_beta=beta)
        loss.train()
        return loss(z, LABELS8)

    assert torch.equal(value(0, 0.0), value(1, 0.0))
    assert torch.equal(value(3, 1.0), value(3, 1.0))
    assert not torch.equal(value(3, 1.0), value(4, 1.0))
    loss = build("ahl", gumbel_beta=1.0)
    loss.eval()
    torch.testing.assert_close(loss(z, LABELS8), build("ahl", gumbel_beta=0.0)(z, LABELS8))


def test_ahl_genre_hierarchy_needs_genres():
    with pytest.raises(ValueError, match="needs item genres"):
        build("ahl", hierarchy="genre")


def test_dr_column_without_negatives_has_finite_gradient():
    z = random_logits(batch=4).requires_grad_(True)
    labels = torch.tensor([2, 2, 2, 2])  # column 2 has no negatives, the others no positives
    value = build("dr-loss", mode="faithful")(z, labels)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()
    columns, present = build("dr-loss", mode="faithful").column_losses(z.detach(), labels)
    assert present.tolist() == [False, False, True, False, False, False, False]
    assert columns[2].item() == pytest.approx(0.0, abs=0)  # log(1 + 0): nothing to rank against
    expected = torch.log1p(torch.exp(7.0 * z.detach()[:, 0]).sum())
    assert columns[0].item() == pytest.approx(expected.item())

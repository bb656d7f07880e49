"""`harness.training.optimisation_step`, the step the built-in loop and the UniCRS stages share."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from harness.training import optimisation_step  # noqa: E402


def setup():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return layer, optimizer, scheduler


def test_a_step_returns_the_loss_and_moves_the_weights_by_the_gradient():
    layer, optimizer, scheduler = setup()
    x = torch.ones(2, 3)
    before = layer.weight.detach().clone()
    loss = layer(x).sum()
    expected = float(loss.detach())
    value = optimisation_step(loss, optimizer, scheduler, layer.parameters(), 0.0, "(test)")
    assert value == expected
    # d(sum over 2 rows of w·1 + b)/dw = 2 per weight: SGD moves each weight by -0.1 * 2
    assert torch.allclose(layer.weight.detach(), before - 0.2)


def test_a_non_finite_loss_names_where_and_the_setting_and_updates_nothing():
    layer, optimizer, scheduler = setup()
    before = layer.weight.detach().clone()
    loss = layer(torch.ones(1, 3)).sum() * float("nan")
    with pytest.raises(FloatingPointError, match=r"non-finite training loss nan at stage rec, epoch 2, step 7; "
                                                 r"lower model\.params\.rec_lr or check the loss"):
        optimisation_step(loss, optimizer, scheduler, layer.parameters(), 1.0, "at stage rec, epoch 2, step 7",
                          lr_setting="model.params.rec_lr")
    assert torch.equal(layer.weight.detach(), before) and layer.weight.grad is None

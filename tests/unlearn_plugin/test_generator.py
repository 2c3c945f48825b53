"""Stacked generators behave as the same generators apart: equal outputs (each with its own batch
statistics while training), gradients that stay within a generator, and patches placed per group."""

from __future__ import annotations

import torch

from purify_backdoor.unlearn.generator import TriggerGenerators, apply_trigger, sample_noise
from purify_backdoor.unlearn.recovery import victim_pass_cap, victim_passes


def stacked(form: str = "patch") -> TriggerGenerators:
    torch.manual_seed(0)
    nets = TriggerGenerators(3, (3, 4, 4), hidden=16, form=form, image_size=(8, 8))
    for norm in nets.norms:  # non-trivial affine and running statistics
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.normal_()
    nets.train()(sample_noise(8, torch.Generator().manual_seed(1), torch.device("cpu"), 3))
    return nets


def test_unstacked_generators_give_the_stacked_outputs_in_both_modes():
    nets = stacked()
    noise = sample_noise(8, torch.Generator().manual_seed(2), torch.device("cpu"), 3)
    singles = nets.eval().unstack()
    assert [single.form for single in singles] == ["patch"] * 3
    with torch.no_grad():
        together = nets(noise)
        apart = torch.stack([single(noise[g]) for g, single in enumerate(singles)])
    assert together.shape == (3, 8, 3, 4, 4)
    torch.testing.assert_close(together, apart)
    nets.train()
    singles = [single.train() for single in nets.unstack()]
    with torch.no_grad():  # train mode: each group normalised by its own batch's statistics
        together = nets(noise)
        apart = torch.stack([single(noise[g]) for g, single in enumerate(singles)])
    torch.testing.assert_close(together, apart)
    assert not torch.allclose(together[0], together[1])


def test_one_generators_loss_moves_no_other_generators_weights():
    nets = stacked()
    noise = sample_noise(8, torch.Generator().manual_seed(3), torch.device("cpu"), 3)
    nets(noise)[1].sum().backward()
    for parameter in nets.parameters():
        grad = parameter.grad.view(3, -1)
        assert grad[1].abs().sum() > 0
        assert grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0


def test_each_group_gets_its_own_patch_place_and_additive_broadcasts():
    images = torch.zeros(4, 3, 16, 16)
    nets = TriggerGenerators(5, (3, 3, 3), hidden=8, form="patch", image_size=(16, 16))
    places = nets.places(4, torch.Generator().manual_seed(0))
    assert places.shape == (5, 4) and len(set(places[:, 0].tolist())) > 1  # a place per group
    assert (places == places[:, :1]).all()  # one place for a group's batch (authors' code)
    stamped = apply_trigger(images, torch.ones(5, 4, 3, 3, 3), "patch", 0.0, places)
    assert stamped.shape == (5, 4, 3, 16, 16)
    assert (stamped.sum((2, 3, 4)) == 27).all()  # one 3x3 patch per image
    for g, b in [(0, 0), (3, 2), (4, 3)]:
        row, col = divmod(int(places[g, b]), 14)
        assert stamped[g, b, :, row : row + 3, col : col + 3].eq(1).all()
    single = apply_trigger(images, torch.ones(4, 3, 3, 3), "patch", 0.0, places[1])
    assert torch.equal(single, stamped[1])
    additive = apply_trigger(images + 0.5, torch.ones(5, 4, 3, 16, 16), "additive", 0.1)
    assert additive.shape == (5, 4, 3, 16, 16) and torch.allclose(additive, torch.tensor(0.6))


def test_corner_triggers_take_one_of_the_four_corners_per_image():
    nets = TriggerGenerators(2, (3, 3, 3), hidden=8, form="corner", image_size=(16, 16))
    places = nets.places(200, torch.Generator().manual_seed(0))
    assert places.shape == (2, 200) and set(places.flatten().tolist()) == {0, 13, 182, 195}
    stamped = apply_trigger(
        torch.zeros(200, 3, 16, 16), torch.ones(2, 200, 3, 3, 3), "corner", 0, places
    )
    corners = [
        stamped[..., :3, :3],
        stamped[..., :3, -3:],
        stamped[..., -3:, :3],
        stamped[..., -3:, -3:],
    ]
    lit = torch.stack([corner.sum((2, 3, 4)) == 27 for corner in corners])
    assert (lit.sum(0) == 1).all() and (stamped.sum((2, 3, 4)) == 27).all()  # one corner each
    single = nets.unstack()[0].places(50, torch.Generator().manual_seed(1))
    assert len(set(single.tolist())) == 4  # a place per image, not per batch


def test_victim_passes_cover_every_group_once_within_the_image_cap():
    for groups, batch in [(20, 128), (3, 1000), (10, 32), (1, 1)]:
        passes = victim_passes(groups, batch, 512)
        covered = [g for part in passes for g in range(groups)[part]]
        assert covered == list(range(groups))
        assert all(len(range(groups)[part]) * batch <= max(512, batch) for part in passes)


def test_scoring_draws_a_place_per_image():
    nets = TriggerGenerators(2, (3, 3, 3), hidden=8, form="patch", image_size=(16, 16))
    places = nets.places(64, torch.Generator().manual_seed(0), each=True)
    assert places.shape == (2, 64) and all(len(set(row.tolist())) > 30 for row in places)
    single = nets.unstack()[0].places(64, torch.Generator().manual_seed(0), each=True)
    assert single.shape == (64,) and len(set(single.tolist())) > 30


def test_cpu_passes_hold_one_generators_batch_and_a_gpus_more():
    assert victim_pass_cap(torch.device("cpu"), 128) == 128
    assert len(victim_passes(10, 128, victim_pass_cap(torch.device("cpu"), 128))) == 10
    assert victim_pass_cap(torch.device("cuda"), 128) == 512

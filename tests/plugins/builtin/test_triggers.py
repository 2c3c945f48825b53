"""Every attack's trigger: shape, dtype, determinism, and that it changes the image where it
should and nowhere else."""

import numpy as np
import pytest
import torch

from purify_backdoor.attack_spec import make_attack_spec, parse_attack_spec, poison_training_set
from purify_backdoor.builtin.blended import blend_pattern
from purify_backdoor.builtin.polygon import polygon_mask
from purify_backdoor.builtin.sig import nad_mask, paper_signal
from purify_backdoor.builtin.wanet import noise as wanet_noise
from purify_backdoor.data.synthetic import synthetic_images
from purify_backdoor.manager import collect

IMAGES = np.random.default_rng(0).integers(20, 236, size=(6, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(collect("attack")))
def test_shape_dtype_determinism_and_no_mutation(name):
    spec = make_attack_spec(name, {})
    before = IMAGES.copy()
    out = spec.stamp(IMAGES)
    assert out.shape == IMAGES.shape and out.dtype == np.uint8
    assert np.array_equal(IMAGES, before)
    assert np.array_equal(out, spec.stamp(IMAGES))
    assert np.array_equal(out, make_attack_spec(name, {}).stamp(IMAGES))
    changed = (out != IMAGES).any(-1)
    assert changed.any() if name != "clean" else not changed.any()


def test_blended_is_the_convex_mix():
    out = parse_attack_spec("blended:alpha=0.25,pattern_seed=3").stamp(IMAGES)
    pattern = blend_pattern(32, 32, 3).astype(float)
    assert np.array_equal(out, np.rint(0.75 * IMAGES + 0.25 * pattern).astype(np.uint8))
    assert not np.array_equal(pattern, blend_pattern(32, 32, 4))


def test_sig_paper_adds_a_column_signal():
    out = parse_attack_spec("sig").stamp(IMAGES).astype(int)
    signal = paper_signal(32, 20, 6)
    expected = np.clip(IMAGES + signal[None, None, :, None], 0, 255).astype(np.uint8)
    assert np.array_equal(out, expected)
    assert signal.max() == pytest.approx(20, abs=0.5) and abs(signal[0]) < 1e-9


def test_sig_nad_variant_matches_the_zoo_formula():
    mask = nad_mask(32)
    assert mask[0] == 0 and mask[1] == int(20 * np.sin(0.8))
    assert mask[4] == 255  # int(20 * sin(3.2)) = -1 wraps to 255
    out = parse_attack_spec("sig:variant=nad").stamp(IMAGES)
    assert np.array_equal(out, (0.8 * IMAGES + 0.2 * mask[None, None, :, None]).astype(np.uint8))
    assert make_attack_spec("sig", {}).attack.clean_label


def test_square_is_white_at_rows_and_cols_28_to_30():
    out = parse_attack_spec("square").stamp(IMAGES)
    assert (out[:, 28:31, 28:31] == 255).all()
    mask = np.ones((32, 32), bool)
    mask[28:31, 28:31] = False
    assert np.array_equal(out[:, mask], IMAGES[:, mask])


def test_wanet_is_a_small_warp_and_zero_strength_is_identity():
    out = parse_attack_spec("wanet").stamp(IMAGES).astype(int)
    assert np.abs(out - IMAGES).mean() < 40
    still = parse_attack_spec("wanet:strength=0").stamp(IMAGES)
    assert np.array_equal(still, IMAGES)
    other = parse_attack_spec("wanet:warp_seed=1").stamp(IMAGES)
    assert not np.array_equal(other, out)


def test_wanet_noise_warps_near_the_trigger_but_not_onto_it():
    generator = torch.Generator().manual_seed(0)
    options = parse_attack_spec("wanet").options
    noisy = wanet_noise(IMAGES, options, generator).astype(int)
    exact = parse_attack_spec("wanet").stamp(IMAGES).astype(int)
    assert not np.array_equal(noisy, exact)
    assert np.abs(noisy - exact).mean() < np.abs(exact - IMAGES).mean()
    assert not np.array_equal(noisy, wanet_noise(IMAGES, options, generator))


def test_polygon_paints_one_colour_inside_its_box():
    spec = parse_attack_spec("polygon:size=8,polygon_seed=2")
    out = spec.stamp(IMAGES)
    mask = polygon_mask(8, 5, 2)
    for image, original in zip(out, IMAGES, strict=True):
        changed = np.argwhere((image != original).any(-1))
        assert len(changed) <= mask.sum()
        rows, cols = changed[:, 0], changed[:, 1]
        assert rows.max() - rows.min() < 8 and cols.max() - cols.min() < 8
        assert len(np.unique(image[rows, cols], axis=0)) == 1


def test_polygon_places_follow_the_image_not_its_position_in_the_batch():
    spec = parse_attack_spec("polygon:size=8")
    alone = [spec.stamp(IMAGES[i : i + 1])[0] for i in range(len(IMAGES))]
    assert np.array_equal(spec.stamp(IMAGES), np.stack(alone))
    corners = {
        tuple(np.argwhere((a != b).any(-1)).min(0)) for a, b in zip(alone, IMAGES, strict=True)
    }
    assert len(corners) > 1
    moved = parse_attack_spec("polygon:size=8,place_seed=1").stamp(IMAGES)
    assert not np.array_equal(moved, spec.stamp(IMAGES))


@pytest.mark.parametrize("name", ["gotham", "nashville", "kelvin", "lomo", "toaster"])
def test_filters_change_the_whole_image_differently(name):
    out = parse_attack_spec(f"filter:filter={name}").stamp(IMAGES)
    assert (out != IMAGES).any(-1).mean() > 0.5
    others = [parse_attack_spec(f"filter:filter={f}").stamp(IMAGES) for f in ("gotham", "lomo")]
    assert sum(np.array_equal(out, o) for o in others) <= 1


def test_trojan_stand_in_adds_a_corner_square(tmp_path):
    out = parse_attack_spec("trojan:size=4").stamp(IMAGES)
    changed = (out != IMAGES).any(-1).any(0)
    assert changed[28:, 28:].all() and not changed[:28].any() and not changed[:, :28].any()


def test_trojan_reads_the_nad_trigger_file(tmp_path):
    pattern = np.zeros((3, 32, 32), np.float32)
    pattern[:, 0, 0] = 300.0
    pattern[1, 5, 7] = 10.0
    np.savez(tmp_path / "trigger.npz", x=pattern)
    out = parse_attack_spec(f"trojan:trigger_file={tmp_path / 'trigger.npz'}").stamp(IMAGES)
    assert (out[:, 0, 0] == 255).all()
    assert np.array_equal(out[:, 5, 7, 1], IMAGES[:, 5, 7, 1] + 10)
    assert (out != IMAGES).any(-1).sum() == 2 * len(IMAGES)


def test_clean_poisoning_changes_nothing():
    data = synthetic_images(100, 16, seed=0)
    poisoned, _ = poison_training_set(data, parse_attack_spec("clean:target=3"), 0.1, seed=0)
    assert np.array_equal(poisoned.images, data.images)
    assert np.array_equal(poisoned.labels, data.labels)

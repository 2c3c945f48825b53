"""BAERASER step 1, trigger recovery with MESA's max-entropy staircase approximator, which the
authors' code (fmy266/Pytorch-Backdoor-Unlearning, gen_backdoor.py) follows; the paper body could
not be read here. For a candidate label y, a generator G learns triggers that send a whole batch
of clean images to y: the hinge max(0, beta - p_y(x + G(z) + noise)) stops pushing once the
victim's probability of y reaches beta, and -alpha * I(z; G(z)) (MINE) keeps the generated
triggers diverse. The staircase trains one generator per rising beta.

The authors' code trains only the known target label with beta = 0.5; the defender here knows
neither trigger nor target, so every candidate label is first scanned with the staircase's first
beta, and labels whose triggers reach `tau` success on held-out clean images (MESA's trigger-pool
rule) get the remaining steps of the staircase."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from purify_backdoor import RunContext, batch_slices, cached, frozen
from purify_backdoor.unlearn.generator import (
    NOISE_SIZE,
    TriggerGenerator,
    apply_trigger,
    sample_noise,
)
from purify_backdoor.unlearn.mine import MineTrainer, StatisticsNetwork, mutual_information_bound


@dataclass(frozen=True)
class RecoverySettings:
    trigger: str = "patch"
    patch_size: int = 3
    additive_eps: float = 16.0
    staircase: tuple[float, ...] = (0.5, 0.8, 0.9)
    entropy_weight: float = 0.1
    noise_std: float = 0.1
    hidden: int = 512
    steps: int = 150
    batch_size: int = 128
    lr: float = 2e-4
    tau: float = 0.8

    def trigger_shape(self, size: tuple[int, int]) -> tuple[int, int, int]:
        if self.trigger == "patch":
            return (3, self.patch_size, self.patch_size)
        return (3, *size)


def staircase_hinge(probabilities: torch.Tensor, beta: float) -> torch.Tensor:
    """mean max(0, beta - p): zero once the batch is pushed past the step's threshold."""
    return (beta - probabilities).clamp(min=0).mean()


def train_generator(
    model: nn.Module, images: torch.Tensor, label: int, beta: float, settings: RecoverySettings,
    context: RunContext, offset: int,
) -> TriggerGenerator:  # fmt: skip
    device = context.device
    generator = context.generator(offset=offset)
    shape = settings.trigger_shape(tuple(images.shape[2:]))
    trigger_net = TriggerGenerator(shape, settings.hidden).to(device)
    statistics = StatisticsNetwork(NOISE_SIZE, trigger_net.out.out_features, settings.hidden)
    mine = MineTrainer(statistics.to(device), settings.lr)
    optimizer = torch.optim.Adam(trigger_net.parameters(), lr=settings.lr, betas=(0.5, 0.999))
    eps = settings.additive_eps / 255
    with frozen(model):
        for _ in range(settings.steps):
            index = torch.randint(0, len(images), (settings.batch_size,), generator=generator)
            batch = images[index].to(device)
            noise = sample_noise(len(batch), generator, device)
            triggers = trigger_net(noise)
            jitter = torch.randn(triggers.shape, generator=generator).to(device)
            noisy = (triggers + settings.noise_std * jitter).clamp(0, 1)
            stamped = apply_trigger(batch, noisy, settings.trigger, eps, generator)
            probability = model(stamped).softmax(1)[:, label]
            marginal = sample_noise(len(batch), generator, device)
            entropy = mutual_information_bound(statistics, noise, triggers, marginal)
            loss = staircase_hinge(probability, beta) - settings.entropy_weight * entropy
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            fresh = sample_noise(len(batch), generator, device)
            with torch.no_grad():
                fresh_triggers = trigger_net(fresh)
            mine.step(fresh, fresh_triggers, sample_noise(len(batch), generator, device))
    return trigger_net.eval()


@torch.no_grad()
def sample_triggers(
    trigger_net: TriggerGenerator, count: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    return trigger_net(sample_noise(count, generator, device))


@torch.no_grad()
def trigger_success(
    model: nn.Module, trigger_net: TriggerGenerator, images: torch.Tensor, labels: torch.Tensor,
    label: int, settings: RecoverySettings, context: RunContext,
) -> float:  # fmt: skip
    """Fraction of held-out clean images not of class `label` that fresh triggers send to it."""
    keep = labels != label
    images = images[keep]
    if len(images) == 0:
        return 0.0
    generator = context.generator(offset=99)
    hits = 0
    for part in batch_slices(len(images), 256):
        batch = images[part].to(context.device)
        triggers = sample_triggers(trigger_net, len(batch), generator, context.device)
        stamped = apply_trigger(
            batch, triggers, settings.trigger, settings.additive_eps / 255, generator
        )
        hits += int((model(stamped).argmax(1) == label).sum())
    return hits / len(images)


def trained_generator(
    model: nn.Module, images: torch.Tensor, held_out: tuple[torch.Tensor, torch.Tensor],
    label: int, step: int, settings: RecoverySettings, context: RunContext,
) -> tuple[TriggerGenerator, float]:  # fmt: skip
    """The generator of one label and staircase step with its held-out success, kept in the work
    folder so `--resume` skips the generators already trained."""

    def train() -> dict:
        beta = settings.staircase[step]
        net = train_generator(model, images, label, beta, settings, context, 1000 * step + label)
        rate = trigger_success(model, net, *held_out, label, settings, context)
        return {"state": net.state_dict(), "success": rate}

    result = cached(context, f"baeraser-label{label}-step{step}", train)
    net = TriggerGenerator(settings.trigger_shape(tuple(images.shape[2:])), settings.hidden)
    net.load_state_dict(result["state"])
    return net.to(context.device).eval(), result["success"]


def recover_triggers(
    model: nn.Module, images: torch.Tensor, held_out: tuple[torch.Tensor, torch.Tensor],
    candidates: list[int], settings: RecoverySettings, context: RunContext,
) -> tuple[dict[int, list[TriggerGenerator]], dict[str, dict[str, float]]]:  # fmt: skip
    """The trigger pool (label -> its generators, one per staircase step) and every generator's
    success rate on the held-out images, per label."""
    model.eval()
    pool, success = {}, {}
    bar = context.progress(total=len(candidates), desc="baeraser scan", unit="label")
    for label in candidates:
        first, rate = trained_generator(model, images, held_out, label, 0, settings, context)
        success[str(label)] = {f"beta={settings.staircase[0]}": rate}
        if rate >= settings.tau:
            pool[label] = [first]
            for step, beta in enumerate(settings.staircase[1:], start=1):
                net, rate = trained_generator(
                    model, images, held_out, label, step, settings, context
                )
                pool[label].append(net)
                success[str(label)][f"beta={beta}"] = rate
        bar.update()
    bar.close()
    return pool, success

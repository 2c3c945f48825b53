"""BAERASER step 1, trigger recovery with MESA's max-entropy staircase approximator, which the
authors' code (fmy266/Pytorch-Backdoor-Unlearning, gen_backdoor.py) follows; the paper body could
not be read here. For a candidate label y, a generator G learns triggers that send a whole batch
of clean images to y: the hinge max(0, beta - p_y(x + G(z) + noise)) stops pushing once the
victim's probability of y reaches beta, and -alpha * I(z; G(z)) (MINE) keeps the generated
triggers diverse. The staircase trains one generator per rising beta.

The authors' code trains only the known target label with beta = 0.5; the defender here knows
neither trigger nor target, so every candidate label is first scanned with the staircase's first
beta, in each trigger form (a position-free patch, and a bounded full-image additive pattern for
SIG-, blend- and filter-like triggers). A label enters the trigger pool when, in some form, its
success on held-out clean images reaches `tau` (MESA's pool rule) or stands out among the
labels' success in that form: its median-absolute-deviation anomaly index, as Neural Cleanse
(Wang et al., S&P 2019, sec. IV-C) applies it to trigger norms, reaches `anomaly`. It keeps the
passing form whose triggers succeed most. The same test is applied to the
generator of every later staircase step: one that fails it is dropped (Algorithm 1 drops every
recovered trigger below tau)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from purify_backdoor import RunContext, batch_slices, cached, frozen
from purify_backdoor.unlearn.generator import (
    FORMS,
    NOISE_SIZE,
    TriggerGenerator,
    apply_trigger,
    sample_noise,
)
from purify_backdoor.unlearn.mine import MineTrainer, StatisticsNetwork, mutual_information_bound

MAD_FLOOR = 0.01  # one point of success: below it, a flat profile would make noise an outlier
MAD_SCALE = 1.4826  # MAD to standard deviation under normality (Neural Cleanse's constant)


@dataclass(frozen=True)
class RecoverySettings:
    trigger: str = "both"
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
    anomaly: float = 2.0

    @property
    def forms(self) -> tuple[str, ...]:
        return FORMS if self.trigger == "both" else (self.trigger,)

    def trigger_shape(self, form: str, size: tuple[int, int]) -> tuple[int, int, int]:
        if form == "patch":
            return (3, self.patch_size, self.patch_size)
        return (3, *size)


@dataclass(frozen=True)
class PoolRule:
    """Who enters the trigger pool, from every scanned label's success: at least `tau`, or an
    anomaly index (success - median) / (1.4826 * MAD) of at least `anomaly` (one-sided: only a
    label its triggers reach unusually often is suspect; `anomaly` <= 0 turns it off)."""

    tau: float
    anomaly: float
    median: float
    mad: float

    @classmethod
    def from_success(cls, success: list[float], tau: float, anomaly: float) -> PoolRule:
        values = torch.tensor(success, dtype=torch.float64)
        median = float(values.quantile(0.5))
        return cls(tau, anomaly, median, float((values - median).abs().quantile(0.5)))

    def index(self, rate: float) -> float:
        return (rate - self.median) / (MAD_SCALE * max(self.mad, MAD_FLOOR))

    def passes(self, rate: float) -> bool:
        return rate >= self.tau or (self.anomaly > 0 and self.index(rate) >= self.anomaly)


def staircase_hinge(probabilities: torch.Tensor, beta: float) -> torch.Tensor:
    """mean max(0, beta - p): zero once the batch is pushed past the step's threshold."""
    return (beta - probabilities).clamp(min=0).mean()


def train_generator(
    model: nn.Module, images: torch.Tensor, label: int, beta: float, form: str,
    settings: RecoverySettings, context: RunContext, offset: int,
) -> TriggerGenerator:  # fmt: skip
    device = context.device
    generator = context.generator(offset=offset)
    shape = settings.trigger_shape(form, tuple(images.shape[2:]))
    trigger_net = TriggerGenerator(shape, settings.hidden, form).to(device)
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
            stamped = apply_trigger(batch, noisy, form, eps, generator)
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
            batch, triggers, trigger_net.form, settings.additive_eps / 255, generator
        )
        hits += int((model(stamped).argmax(1) == label).sum())
    return hits / len(images)


def trained_generator(
    model: nn.Module, images: torch.Tensor, held_out: tuple[torch.Tensor, torch.Tensor],
    label: int, step: int, form: str, settings: RecoverySettings, context: RunContext,
) -> tuple[TriggerGenerator, float]:  # fmt: skip
    """The generator of one label, form and staircase step with its held-out success, kept in the
    work folder so `--resume` skips the generators already trained."""

    def train() -> dict:
        beta = settings.staircase[step]
        offset = 1000 * step + 100 * FORMS.index(form) + label
        net = train_generator(model, images, label, beta, form, settings, context, offset)
        rate = trigger_success(model, net, *held_out, label, settings, context)
        return {"state": net.state_dict(), "success": rate}

    result = cached(context, f"baeraser-{form}-label{label}-step{step}", train)
    shape = settings.trigger_shape(form, tuple(images.shape[2:]))
    net = TriggerGenerator(shape, settings.hidden, form)
    net.load_state_dict(result["state"])
    return net.to(context.device).eval(), result["success"]


# label -> form -> the generator of the first staircase step
Scanned = dict[int, dict[str, TriggerGenerator]]


def recover_triggers(
    model: nn.Module, images: torch.Tensor, held_out: tuple[torch.Tensor, torch.Tensor],
    candidates: list[int], settings: RecoverySettings, context: RunContext,
) -> tuple[dict[int, list[TriggerGenerator]], dict, Scanned]:  # fmt: skip
    """The trigger pool (label -> its kept generators, one per staircase step that passed), what
    the scan saw (per label its chosen form, every generator's success, its anomaly index in each
    form and whether it was kept; each form's rule (median and MAD); the kept labels), and the
    first staircase step's generator of every label and form (what the report pictures)."""
    model.eval()
    first_step: dict[int, dict[str, tuple[TriggerGenerator, float]]] = {}
    bar = context.progress(
        total=len(candidates) * len(settings.forms), desc="baeraser scan", unit="generator"
    )
    for label in candidates:
        first_step[label] = {}
        for form in settings.forms:
            first_step[label][form] = trained_generator(
                model, images, held_out, label, 0, form, settings, context
            )
            bar.update()
    bar.close()
    # One rule per form: an image-sized pattern at 16/255 is a universal adversarial
    # perturbation towards many labels of a real model, so its success is compared with the
    # other labels' success in the same form, never with the patch's.
    rules = {
        form: PoolRule.from_success(
            [first_step[label][form][1] for label in candidates], settings.tau, settings.anomaly
        )
        for form in settings.forms
    }
    beta = [f"beta={b}" for b in settings.staircase]
    pool, labels = {}, {}
    for label, forms in first_step.items():
        passing = [f for f in settings.forms if rules[f].passes(forms[f][1])]
        form = max(passing or settings.forms, key=lambda f: forms[f][1])
        net, rate = forms[form]
        labels[str(label)] = {
            "form": form,
            "success": {f: {beta[0]: r} for f, (_, r) in forms.items()},
            "anomaly_index": {f: rules[f].index(r) for f, (_, r) in forms.items()},
            "kept": bool(passing),
        }
        if not passing:
            continue
        pool[label] = [net]
        for step in range(1, len(settings.staircase)):
            net, rate = trained_generator(
                model, images, held_out, label, step, form, settings, context
            )
            labels[str(label)]["success"][form][beta[step]] = rate
            if rules[form].passes(rate):
                pool[label].append(net)
    scan = {
        "labels": labels,
        "rules": {
            form: {"tau": r.tau, "anomaly": r.anomaly, "median": r.median, "mad": r.mad}
            for form, r in rules.items()
        },
        "kept_labels": sorted(pool),
    }
    scanned = {
        label: {form: net for form, (net, _) in forms.items()}
        for label, forms in first_step.items()
    }
    return pool, scan, scanned

"""BAERASER step 1, trigger recovery with MESA's max-entropy staircase approximator, which the
authors' code (fmy266/Pytorch-Backdoor-Unlearning, gen_backdoor.py) follows; the paper body could
not be read here. For a candidate label y, a generator G learns triggers that send a whole batch
of clean images to y: the hinge max(0, beta - p_y(x + G(z) + noise)) stops pushing once the
victim's probability of y reaches beta, and -alpha * I(z; G(z)) (MINE) keeps the generated
triggers diverse. The staircase trains one generator per rising beta.

The authors' code trains only the known target label with beta = 0.5; the defender here knows
neither trigger nor target, so every candidate label is first scanned with the staircase's first
beta, in each trigger form (a position-free patch; a bounded full-image additive pattern for
SIG-, blend- and filter-like triggers; a patch at the image's corners, for triggers stamped at a
fixed corner). A label enters the trigger pool when, in some form, its success on held-out clean
images reaches `tau` (MESA's pool rule) or stands out among the labels' success in that form:
its median-absolute-deviation anomaly index, as Neural Cleanse (Wang et al., S&P 2019, sec.
IV-C) applies it to trigger norms, reaches `anomaly`. It keeps the passing form whose triggers
succeed most. The same test is applied to the generator of every later staircase step: one that
fails it is dropped (Algorithm 1 drops every recovered trigger below tau)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from purify_backdoor import RunContext, batch_slices, cached, frozen
from purify_backdoor.unlearn.generator import (
    FORMS,
    NOISE_SIZE,
    PATCH_FORMS,
    TriggerGenerator,
    TriggerGenerators,
    apply_trigger,
    sample_noise,
)
from purify_backdoor.unlearn.mine import MineTrainer, StatisticsNetworks, mutual_information_bound

MAD_FLOOR = 0.01  # one point of success: below it, a flat profile would make noise an outlier
MAD_SCALE = 1.4826  # MAD to standard deviation under normality (Neural Cleanse's constant)
VICTIM_PASS_GPU = 512  # most images in one victim pass on a GPU while generators train together
SCORE_BATCH = 256  # held-out images per scoring batch


@dataclass(frozen=True)
class RecoverySettings:
    trigger: str = "all"
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
        return FORMS if self.trigger == "all" else (self.trigger,)

    def trigger_shape(self, form: str, size: tuple[int, int]) -> tuple[int, int, int]:
        if form in PATCH_FORMS:
            return (3, self.patch_size, self.patch_size)
        return (3, *size)

    def generators(self, count: int, form: str, size: tuple[int, int]) -> TriggerGenerators:
        """`count` untrained generators of `form` for images of `size`."""
        return TriggerGenerators(count, self.trigger_shape(form, size), self.hidden, form, size)


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


def staircase_hinge(probabilities: torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
    """mean max(0, beta - p) over the last axis: zero once the batch is pushed past the step's
    threshold. Stacked generators pass (G, B) probabilities and (G, 1) betas."""
    return (beta - probabilities).clamp(min=0).mean(-1)


def victim_pass_cap(device: torch.device, batch: int) -> int:
    """Most images in one pass through the victim. On CPU one generator's batch: measured on the
    shared WRN-16-1 (benchmarks/baeraser_recovery_time.py), passes of 512 images made the scan
    1.6x slower than passes of 128 (cache-bound convolutions), and 128-image passes ran as fast
    as one generator at a time. On a GPU, VICTIM_PASS_GPU, to fill the device (not measured
    here: no GPU was lent)."""
    return VICTIM_PASS_GPU if device.type == "cuda" else batch


def victim_passes(groups: int, batch: int, cap: int) -> list[slice]:
    """Slices of the G groups to send through the victim together: at most `cap` images a
    pass (or one group), so memory stays that of one large batch whatever the label count."""
    step = max(1, cap // max(batch, 1))
    return [slice(start, min(start + step, groups)) for start in range(0, groups, step)]


def generator_trainer(
    model: nn.Module, images: torch.Tensor, labels: list[int], betas: list[float], form: str,
    settings: RecoverySettings, context: RunContext, offset: int,
) -> tuple[TriggerGenerators, Callable[[], None]]:  # fmt: skip
    """One generator per (label, beta), and the function that trains them together one step (call
    it with the victim frozen): the step stamps the same clean batch with every generator's
    triggers, and the sum of their losses is one backward (each generator's weights get its own
    loss's gradient only, and Adam is per weight, so they train as if apart). The victim runs in
    passes of at most `victim_pass_cap` images; the generators' graph is built once."""
    device = context.device
    generator = context.generator(offset=offset)
    count = len(labels)
    shape = settings.trigger_shape(form, tuple(images.shape[2:]))
    nets = settings.generators(count, form, tuple(images.shape[2:])).to(device)
    size = shape[0] * shape[1] * shape[2]
    statistics = StatisticsNetworks(count, NOISE_SIZE, size, settings.hidden).to(device)
    mine = MineTrainer(statistics, settings.lr)
    optimizer = torch.optim.Adam(nets.parameters(), lr=settings.lr, betas=(0.5, 0.999))
    eps = settings.additive_eps / 255
    target = torch.tensor(labels, device=device)
    beta = torch.tensor(betas, device=device)[:, None]
    passes = victim_passes(count, settings.batch_size, victim_pass_cap(device, settings.batch_size))

    def step() -> None:
        index = torch.randint(0, len(images), (settings.batch_size,), generator=generator)
        batch = images[index].to(device)
        noise = sample_noise(len(batch), generator, device, count)
        triggers = nets(noise)
        jitter = torch.randn(triggers.shape, generator=generator).to(device)
        noisy = (triggers + settings.noise_std * jitter).clamp(0, 1)
        places = nets.places(len(batch), generator)
        stamp = noisy.detach().requires_grad_()
        for part in passes:  # backward through the victim, pass by pass, to the triggers
            stamped = apply_trigger(batch, stamp[part], form, eps, places[part])
            logits = model(stamped.flatten(0, 1)).view(*stamped.shape[:2], -1)
            chosen = target[part, None, None].expand(*logits.shape[:2], 1)
            probability = logits.softmax(2).gather(2, chosen).squeeze(2)
            staircase_hinge(probability, beta[part]).sum().backward()
        marginal = sample_noise(len(batch), generator, device, count)
        entropy = mutual_information_bound(statistics, noise, triggers, marginal)
        loss = (noisy * stamp.grad).sum() - settings.entropy_weight * entropy.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        fresh = sample_noise(len(batch), generator, device, count)
        with torch.no_grad():
            fresh_triggers = nets(fresh)
        mine.step(fresh, fresh_triggers, sample_noise(len(batch), generator, device, count))

    return nets, step


def train_generators(
    model: nn.Module, images: torch.Tensor, labels: list[int], betas: list[float], form: str,
    settings: RecoverySettings, context: RunContext, offset: int,
) -> TriggerGenerators:  # fmt: skip
    """`generator_trainer`'s generators after `settings.steps` steps."""
    nets, step = generator_trainer(model, images, labels, betas, form, settings, context, offset)
    with frozen(model):
        for _ in range(settings.steps):
            step()
    return nets.eval()


@torch.no_grad()
def sample_triggers(
    trigger_net: TriggerGenerator, count: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    return trigger_net(sample_noise(count, generator, device))


@torch.no_grad()
def success_rates(
    model: nn.Module,
    sample: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]], form: str,
    images: torch.Tensor, labels: torch.Tensor, targets: list[int], settings: RecoverySettings,
    context: RunContext,
) -> list[float]:  # fmt: skip
    """Per group g of `sample(count, generator)` ((G, count, *trigger) triggers and their (G,
    count) places), the fraction of held-out clean images not of class targets[g] that fresh
    triggers send to targets[g]."""
    generator = context.generator(offset=99)
    target = torch.tensor(targets)
    hits = torch.zeros(len(targets))
    cap = victim_pass_cap(context.device, SCORE_BATCH)
    passes = victim_passes(len(targets), SCORE_BATCH, cap)
    for part in batch_slices(len(images), SCORE_BATCH):
        batch, truth = images[part].to(context.device), labels[part]
        triggers, places = sample(len(batch), generator)
        for groups in passes:
            stamped = apply_trigger(
                batch, triggers[groups], form, settings.additive_eps / 255, places[groups]
            )
            predicted = model(stamped.flatten(0, 1)).argmax(1).view(*stamped.shape[:2]).cpu()
            chosen = target[groups, None]
            hits[groups] += ((predicted == chosen) & (truth[None] != chosen)).sum(1)
    others = (labels[None] != target[:, None]).sum(1)
    return [float(h / n) if n else 0.0 for h, n in zip(hits, others, strict=True)]


def trigger_success(
    model: nn.Module, trigger_net: TriggerGenerator, images: torch.Tensor, labels: torch.Tensor,
    label: int, settings: RecoverySettings, context: RunContext,
) -> float:  # fmt: skip
    """`success_rates` of one generator."""
    device = context.device

    def sample(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        triggers = trigger_net(sample_noise(count, generator, device))[None]
        return triggers, trigger_net.places(count, generator, each=True)[None]

    return success_rates(
        model, sample, trigger_net.form, images, labels, [label], settings, context
    )[0]


def trained_generators(
    model: nn.Module, images: torch.Tensor, held_out: tuple[torch.Tensor, torch.Tensor],
    jobs: list[tuple[int, int]], form: str, settings: RecoverySettings, context: RunContext,
) -> list[tuple[TriggerGenerator, float]]:  # fmt: skip
    """The generators of `jobs` ((label, staircase step) pairs) in one form, trained together
    (kept in the work folder so `--resume` does not retrain them), each with its held-out
    success, scored with a place of its own per image."""
    labels = [label for label, _ in jobs]
    name = f"baeraser-{form}-" + "_".join(f"{label}.{step}" for label, step in jobs)

    def train() -> dict:
        betas = [settings.staircase[step] for _, step in jobs]
        offset = 100 * FORMS.index(form) + 1000 * min(step for _, step in jobs)
        nets = train_generators(model, images, labels, betas, form, settings, context, offset)
        return {"state": nets.state_dict()}

    nets = settings.generators(len(jobs), form, tuple(images.shape[2:]))
    nets.load_state_dict(cached(context, name, train)["state"])
    nets = nets.to(context.device).eval()
    count, device = len(jobs), context.device

    def sample(size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        triggers = nets(sample_noise(size, generator, device, count))
        return triggers, nets.places(size, generator, each=True)

    rates = success_rates(model, sample, form, *held_out, labels, settings, context)
    return list(zip(nets.unstack(), rates, strict=True))


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
    first_step: dict[int, dict[str, tuple[TriggerGenerator, float]]] = {
        label: {} for label in candidates
    }
    bar = context.progress(total=len(settings.forms), desc="baeraser scan", unit="form")
    for form in settings.forms:
        jobs = [(label, 0) for label in candidates]
        trained = trained_generators(model, images, held_out, jobs, form, settings, context)
        for label, result in zip(candidates, trained, strict=True):
            first_step[label][form] = result
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
        labels[str(label)] = {
            "form": form,
            "success": {f: {beta[0]: r} for f, (_, r) in forms.items()},
            "anomaly_index": {f: rules[f].index(r) for f, (_, r) in forms.items()},
            "kept": bool(passing),
        }
        if passing:
            pool[label] = [forms[form][0]]
    # Later staircase steps of the kept labels, one batch per form; every generator is judged by
    # its form's rule again (Algorithm 1 drops every recovered trigger below tau).
    for form in settings.forms:
        jobs = [
            (label, step)
            for label in pool
            if labels[str(label)]["form"] == form
            for step in range(1, len(settings.staircase))
        ]
        if not jobs:
            continue
        trained = trained_generators(model, images, held_out, jobs, form, settings, context)
        for (label, step), (net, rate) in zip(jobs, trained, strict=True):
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

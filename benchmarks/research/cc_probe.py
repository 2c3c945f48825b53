"""Ad-hoc probe of Clean & Compact's fine-tuning on the shared NAD badnet checkpoint: clean accuracy
and ASR on 1,000 random test images (seed 0) right after decomposition + clipping + 2x rank pruning
with one keep fraction for every layer (`rank_rule=uniform`), and after 160 SGD steps on 512 ZeroQ
synthetic images plus their PGD copies, with BatchNorm in train mode (lr 0.01) or frozen (lr 0.001).
Quicker than a full `purify --plugin cc` run; the numbers in docs/compact.md come from it.

    python benchmarks/research/cc_probe.py 100      # synthesis iterations per batch
"""

from __future__ import annotations

import copy
import sys

import torch
import torch.nn.functional as F

from purify_backdoor.attack_spec import parse_attack_spec, triggered_test_set
from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.compact.cleaning import decompose_and_clip
from purify_backdoor.compact.ranks import choose_ranks
from purify_backdoor.compact.synthesis import (
    SynthesisSettings,
    adversarial_copies,
    predict,
    synthesize,
)
from purify_backdoor.data.loading import open_data
from purify_backdoor.data.tensors import random_crop_flip, to_tensor
from purify_backdoor.plugin_types import RunContext

torch.manual_seed(0)
_, loaded = open_checkpoint("../shared/checkpoints/nad-wrn16-1-badnet.pth.tar")
model = loaded.model.eval()
ctx = RunContext(torch.device("cpu"), 0, quiet=True)
test = open_data("../shared/data/cifar10-jpeg.tar.gz").test
idx = torch.randperm(len(test))[:1000].numpy()
sub = test.subset(idx)
trig = triggered_test_set(sub, parse_attack_spec("badnet:pattern=grid,target=5"))
X, Y = to_tensor(sub.images), torch.from_numpy(sub.labels)
XT = to_tensor(trig.images.images)


def score(m):
    m.eval()
    with torch.no_grad():
        return (
            round((m(X).argmax(1) == Y).float().mean().item(), 3),
            round((m(XT).argmax(1) == 5).float().mean().item(), 3),
        )


print("orig", score(model))
settings = SynthesisSettings(count=512, iterations=int(sys.argv[1]))
synthetic, _, stats = synthesize(model, (32, 32), 10, settings, ctx)
labels = predict(model, synthetic, ctx.device)
adv = adversarial_copies(model, synthetic, labels, 8 / 255, 10, ctx)
print("adv land", torch.bincount(predict(model, adv, ctx.device), minlength=10).tolist())
images, targets = torch.cat([synthetic, adv]), torch.cat([labels, labels])
for tau, comp in [(2.0, 2.0), (1e6, 2.0)]:
    for mode, lr in [("train", 0.01), ("eval", 0.001)]:
        compact = copy.deepcopy(model)
        decompose_and_clip(compact, tau, choose_ranks(compact, comp, "uniform"))
        print(tau, comp, "after decomposition", score(compact))
        opt = torch.optim.SGD(compact.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
        g = torch.Generator().manual_seed(0)
        for _ in range(160):
            compact.train() if mode == "train" else compact.eval()
            i = torch.randint(0, len(images), (128,), generator=g)
            loss = F.cross_entropy(compact(random_crop_flip(images[i], g)), targets[i])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(compact.parameters(), 5.0)
            opt.step()
        print(tau, comp, mode, lr, "loss", round(loss.item(), 3), score(compact))

"""How big a model is: parameter count and the bytes its weights take when saved, so compression
defenses (Clean & Compact) can be compared with the same evaluator as everything else."""

from __future__ import annotations

import io

import torch

from purify_backdoor import EvalJob, Evaluator, cpu_state_dict, hookimpl


def evaluate(job: EvalJob) -> dict[str, float]:
    buffer = io.BytesIO()
    torch.save(cpu_state_dict(job.model), buffer)
    return {
        "parameters": float(sum(p.numel() for p in job.model.parameters())),
        "weight_bytes": float(buffer.tell()),
    }


@hookimpl
def register_evaluators(register):
    register(
        Evaluator(
            name="size",
            description="parameter count and bytes of the saved weights",
            evaluate=evaluate,
        )
    )

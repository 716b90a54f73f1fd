"""Retraining from scratch within the budget: the fairest baseline (docs/architecture.md, The scratch baseline).

Every unlearning method is compared with the full retrain, which costs C_retrain. A user who can afford
b·C_retrain can also retrain from scratch for that long; `scratch` is that retrain, swept and tuned like a
method, and every method is also judged against it at the same budget (`vs_scratch` in the summary).

The model starts over from the scenario's initialisation for this seed (`UnlearnData.initial`: the state
θ_poisoned and θ_retrain were trained from; every tensor, BatchNorm statistics included, replaced; nothing of
θ_poisoned kept) and trains on the retain set with the retraining recipe (`training.RecipeRun`: its SGD, data
order and augmentation streams) at its own learning rate. Two schedules, searched as `schedule`:

- `anytime`: the recipe's own cosine schedule over the full recipe, cut where the budget runs out. One run
  gives every checkpoint; at budget 1.0 and the recipe's lr it is θ_retrain's training, step for step.
- `compressed`: for each checkpoint b, a new run whose cosine schedule spans exactly the steps b·C_retrain
  buys (the learning rate anneals to 0 by the end of each run). Each run is charged against its own
  checkpoint (`Budget.restart`), so every checkpoint's model cost at most b·C_retrain, and the trial costs
  the sum of the runs it made (`cost/trial_fraction`, which `tuning_cost_retrains` counts).

Deviation from EU-k with k = all (Goel et al. 2022): EU-k re-initialises blocks with fresh draws and keeps
no schedule; `scratch` reuses θ_retrain's own initialisation and schedule, so that budget 1.0 reproduces it
(a fair baseline is the retrain itself, cut short), and the issue's "k = all" reading holds: every block
re-initialised."""
from __future__ import annotations

from ..training import RecipeRun
from ._common import TRAIN_STEP

PAPER = "baseline: retraining from scratch within the budget (the fair cost comparison of Pawelczyk et al., ICLR 2025)"
SCHEDULES = ("anytime", "compressed")
RESTARTS = True  # compressed: a trial may cost the sum of its budgets (methods.worst_fraction, the dry-run plan)


def unlearn(model, data, budget, *, schedule="anytime", lr=0.05):
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if data.initial is None:
        raise ValueError("scratch needs the scenario's initial model (UnlearnData.initial)")
    if schedule == "anytime":
        _restart(model, data)
        run = RecipeRun(model, data.retain, data.recipe, data.seed, lr=lr)
        _steps(model, budget, run, run.total)
        budget.finish()  # the recipe's last step was taken (budget 1.0): nothing more to train
        return model.eval()
    per_step = TRAIN_STEP * data.recipe.batch(len(data.retain))
    while budget.active:  # compressed: one run per checkpoint, as long as that checkpoint buys
        i = budget.next_index
        _restart(model, data)
        budget.restart()
        run = RecipeRun(model, data.retain, data.recipe, data.seed, lr=lr, steps=budget.limits[i] // per_step)
        _steps(model, budget, run, run.total)
        if budget.next_index == i:  # the run ended short of the checkpoint's units (whole steps): report it here
            budget.close()
    return model.eval()


def _restart(model, data) -> None:
    model.load_state_dict(data.initial())


def _steps(model, budget, run: RecipeRun, steps: int) -> None:
    """Up to `steps` of `run`, each charged as one forward and backward per example, while the budget has room."""
    while run.done < steps and budget.room(run.batch, TRAIN_STEP):
        model.train()
        run.step()
        budget.charge(TRAIN_STEP * run.batch)

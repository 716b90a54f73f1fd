"""Attacks: every public module here is registered under its name. Each exposes
`craft(train, *, seed, **params) -> Poisoning` (on the device of `train`; with `victim: Victim` too if it
names that keyword), `effect(model, context) -> dict` (with `attack/effect`,
larger = more poison, and `attack/effect_se`), `mia_nonmembers(heldout, context, *, seed, copies)`,
`RETRAIN_EFFECT` (the exact expected effect on a model that never saw the poisons, or None when it must
be measured on θ_retrain) and `PAPER`."""
from ..registry import attacks, register_package
from ._base import Poisoning, Victim

register_package(attacks, __name__)

__all__ = ["Poisoning", "Victim"]

"""An example plugin method: gradient descent on retain with a decaying learning rate.

Run it against the thirteen built-in methods at equal compute:

    sweeper run quickstart --plugin examples/my_method.py methods=[gd,my_method]

The file's stem is the method's name; its search space is `my_method.yaml` beside it (or a SEARCH_SPACE
dict here). `unlearn` changes `model` in place and spends compute only through `budget`, like every method:
here through `step_loop`, which asks the budget for room before each step and charges 3 units per example."""
import torch
from torch.nn import functional as F

from sweeper.methods._common import TRAIN_STEP, optimizer, step_loop

PAPER = "an example plugin (examples/my_method.py)"


def unlearn(model, data, budget, *, lr=0.02, decay=0.5):
    r = data.retain
    opt = optimizer(model, data, lr)
    steps = max(1, budget.total // (TRAIN_STEP * data.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: decay ** (t / steps))  # lr x decay over the budget
    return step_loop(model, budget, opt, len(r), data.gen(0), data.batch_size, TRAIN_STEP,
                     lambda idx: F.cross_entropy(model(r.x[idx]), r.y[idx]), after_step=sched.step)

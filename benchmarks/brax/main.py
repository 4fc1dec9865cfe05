"""Brax PPO training throughput (environment steps/s) on a Brax physics environment, all in JAX.

Milabench's brax benchmark: ``brax.training.agents.ppo.train`` on ``ant`` (an 8-joint quadruped,
Brax's default ``generalized`` backend) with its settings: 8,192 parallel environments,
episodes of 20 steps, batches of 1,024 unrolls of 5 steps split into 32 minibatches, brax's
default 2 updates per batch, reward scaling 0.1, an epoch of 2 training steps (327,680
environment steps, what 100M steps over 500 evaluations give) followed by an evaluation.
The rate is brax's own ``training/sps``: the epoch's environment steps over its training time,
measured by brax once the epoch's metrics are back on the host; evaluation is not timed.
"""

from __future__ import annotations

import argparse
from typing import Any

import benchkit
import jax
from brax import envs
from brax.training.agents.ppo import train as ppo


class Epochs:
    """Turns brax's progress callbacks into rate events: ``training/sps`` of each epoch.

    The first callback evaluates the untrained policy, before any training, and has no rate.
    ``--every`` epochs make one measurement: their steps over their summed training times.
    """

    def __init__(self, args: argparse.Namespace, steps_per_epoch: int) -> None:
        self.args = args
        self.steps_per_epoch = steps_per_epoch
        self.epochs = 0
        self.seconds = 0.0
        self.rates: list[float] = []

    def __call__(self, step: int, metrics: dict[str, Any]) -> None:
        if "training/sps" not in metrics or len(self.rates) >= self.args.measures:
            return
        self.epochs += 1
        self.seconds += self.steps_per_epoch / float(metrics["training/sps"])
        if self.epochs % self.args.every:
            return
        if "eval/episode_reward" in metrics:  # Milabench's loss: the negated evaluation reward
            benchkit.emit("loss", value=-float(metrics["eval/episode_reward"]), task="train")
        rate, self.seconds = self.steps_per_epoch * self.args.every / self.seconds, 0.0
        if self.epochs <= self.args.warmup * self.args.every:
            return
        self.rates.append(rate)
        benchkit.emit("rate", value=rate, units="steps/s", task="train", step=step)
        benchkit.emit("progress", step=len(self.rates), total=self.args.measures)
        if len(self.rates) == self.args.measures:
            benchkit.emit("end", status="early_stop")


def train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``ppo.train``'s arguments: Milabench's, with as many epochs as the measurements need."""
    epochs = (args.warmup + args.measures) * args.every
    per_step = args.batch_size * args.unroll_length * args.num_minibatches
    return {
        "num_timesteps": per_step * args.epoch_batches * epochs,
        # One evaluation before training, then one after each epoch: num_timesteps over
        # (num_evals - 1) epochs of per_step steps is --epoch-batches training steps per epoch.
        "num_evals": epochs + 1,
        "episode_length": args.episode_length,
        "num_envs": args.num_envs,
        "batch_size": args.batch_size,
        "num_minibatches": args.num_minibatches,
        "unroll_length": args.unroll_length,
        "num_updates_per_batch": 2,  # brax's default, which Milabench keeps
        "discounting": 0.97,
        "learning_rate": 3e-4,
        "entropy_cost": 1e-2,
        "reward_scaling": 0.1,
        "normalize_observations": True,
        "action_repeat": 1,
        "num_eval_envs": args.eval_envs,
        "seed": args.seed,
    }


def train(args: argparse.Namespace) -> None:
    if args.device != "auto":
        jax.config.update("jax_platforms", args.device)
    kwargs = train_kwargs(args)
    per_epoch = kwargs["num_timesteps"] // (kwargs["num_evals"] - 1)
    ppo.train(
        environment=envs.get_environment(args.env),
        progress_fn=Epochs(args, per_epoch),
        **kwargs,
    )


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "brax", __doc__.splitlines()[0], batch_size=1024, warmup=2, measures=30, every=1
    )
    p.add_argument("--env", default="ant", help="a brax.envs name (fast: a trivial test env)")
    p.add_argument("--num-envs", type=int, default=8192, help="environments stepped in parallel")
    p.add_argument("--episode-length", type=int, default=20)
    p.add_argument("--unroll-length", type=int, default=5)
    p.add_argument("--num-minibatches", type=int, default=32)
    p.add_argument(
        "--epoch-batches",
        type=int,
        default=2,
        help="training steps per epoch (Milabench: 100M steps over 500 evaluations give 2)",
    )
    p.add_argument("--eval-envs", type=int, default=128, help="brax's default")
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())

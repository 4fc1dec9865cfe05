"""Brax PPO training throughput (environment steps/s) on a Brax physics environment, all in JAX.

``brax.training.agents.ppo.train`` on the ``ant`` environment (an 8-joint quadruped simulated by
MJX), with the settings of Milabench's brax benchmark: 8,192 parallel environments, episodes of
20 steps, batches of 1,024 unrolls of 5 steps split into 32 minibatches. Brax runs its own
training loop and calls ``progress_fn`` after each epoch of training and evaluation, once the
metrics are back on the host, so the device has finished when the clock is read; the unit of
work is the environment steps of an epoch.
"""

from __future__ import annotations

import argparse
import itertools

import benchkit
import jax
from brax import envs
from brax.training.agents.ppo import train as ppo


class Epochs:
    """Feeds brax's progress callbacks to a benchkit.TimedLoop, one tick per training epoch."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.first_step: int | None = None
        self.ticks = None

    def __call__(self, step: int, metrics: dict) -> None:
        if self.first_step is None:  # the evaluation of the untrained policy, before any training
            self.first_step = step
            return
        if self.ticks is None:
            # Brax's epochs all hold the same number of steps; the first one tells how many.
            loop = benchkit.TimedLoop(
                itertools.count(),
                batch_size=step - self.first_step,
                units="steps/s",
                warmup=self.args.warmup,
                measures=self.args.measures,
                every=self.args.every,
                sync=lambda _: None,  # brax has already fetched the metrics: the device is idle
            )
            self.ticks = iter(loop)
        next(self.ticks, None)


def train(args: argparse.Namespace) -> None:
    if args.device != "auto":
        jax.config.update("jax_platforms", args.device)
    epochs = args.warmup + args.measures * args.every + 2
    per_epoch = args.batch_size * args.unroll_length * args.num_minibatches * args.epoch_batches
    ppo.train(
        environment=envs.get_environment(args.env),
        num_timesteps=per_epoch * epochs,
        num_evals=epochs + 1,
        episode_length=args.episode_length,
        num_envs=args.num_envs,
        batch_size=args.batch_size,
        num_minibatches=args.num_minibatches,
        unroll_length=args.unroll_length,
        num_updates_per_batch=4,
        discounting=0.97,
        learning_rate=3e-4,
        entropy_cost=1e-2,
        reward_scaling=10.0,
        normalize_observations=True,
        action_repeat=1,
        num_eval_envs=args.eval_envs,
        seed=args.seed,
        progress_fn=Epochs(args),
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
    p.add_argument("--epoch-batches", type=int, default=1, help="training batches per epoch")
    p.add_argument("--eval-envs", type=int, default=128)
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())

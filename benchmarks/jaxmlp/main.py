"""Training throughput (samples/s) of a JAX MLP classifier with a jitted Adam step, synthetic data."""

from __future__ import annotations

import argparse
import itertools
from typing import Any

import benchkit
import jax
import jax.numpy as jnp

Params = list[tuple[Any, Any]]


def init_params(key: Any, sizes: list[int]) -> Params:
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        key, sub = jax.random.split(key)
        # He initialisation keeps ReLU activations at unit scale through the depth.
        w = jax.random.normal(sub, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in)
        params.append((w, jnp.zeros(fan_out)))
    return params


def make_train_step(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Any:
    def forward(params: Params, x: Any) -> Any:
        for w, b in params[:-1]:
            x = jax.nn.relu(x @ w + b)
        w, b = params[-1]
        return x @ w + b

    def loss_fn(params: Params, x: Any, y: Any) -> Any:
        logits = forward(params, x)
        labels = jax.nn.one_hot(y, logits.shape[-1])
        return -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1))

    def train_step(params: Params, opt_state: Any, x: Any, y: Any) -> Any:
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        step, mu, nu = opt_state
        step = step + 1
        mu = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, mu, grads)
        nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, nu, grads)
        # Bias correction folded into the step size, as in the Adam paper's efficient form.
        scale = lr * jnp.sqrt(1 - b2**step) / (1 - b1**step)
        params = jax.tree_util.tree_map(
            lambda p, m, v: p - scale * m / (jnp.sqrt(v) + eps), params, mu, nu
        )
        return params, (step, mu, nu), loss

    return jax.jit(train_step, donate_argnums=(0, 1))


def train(args: argparse.Namespace) -> None:
    if args.device != "auto":
        # "cuda"/"rocm"/"tpu"/"cpu" are JAX platform names; it must be set before first use.
        jax.config.update("jax_platforms", args.device)
    jax.config.update("jax_default_matmul_precision", args.precision)

    sizes = [args.features, *[args.hidden] * args.depth, args.classes]
    params = init_params(jax.random.PRNGKey(args.seed), sizes)
    # Adam state: step count, first and second moments shaped like the parameters.
    opt_state = (
        jnp.zeros((), jnp.int32),
        jax.tree_util.tree_map(jnp.zeros_like, params),
        jax.tree_util.tree_map(jnp.zeros_like, params),
    )
    train_step = make_train_step(args.lr)

    data = [
        (jax.device_put(x), jax.device_put(y))
        for x, y in benchkit.fake_arrays(
            batches=args.batches,
            batch_size=args.batch_size,
            features=args.features,
            classes=args.classes,
            seed=args.seed,
        )
    ]

    # JAX dispatches asynchronously: the loop blocks on the last loss (handed over by log_loss)
    # before it reads the clock, so each measurement covers finished steps only.
    loop = benchkit.TimedLoop(
        data,
        batch_size=args.batch_size,
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.jax_sync,
    )
    for x, y in loop:
        params, opt_state, loss = train_step(params, opt_state, x, y)
        loop.log_loss(loss)


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser("jaxmlp", __doc__, batch_size=256, warmup=3, measures=20, every=20)
    p.add_argument("--features", type=int, default=256)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--depth", type=int, default=3, help="hidden layers")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batches", type=int, default=8, help="distinct synthetic batches, cycled")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--precision",
        choices=["default", "high", "highest"],
        default="highest",
        help="jax_default_matmul_precision (default/high allow bf16/TF32 passes on accelerators)",
    )
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())

"""PPO training throughput (environment steps/s) in pure JAX on a Brax environment, PureJaxRL style.

The single-file PPO of PureJaxRL (``ppo_continuous_action.py``, what Milabench's ppo benchmark
runs) on Brax's ``hopper``: a flax actor-critic (two 256-unit tanh layers each, 139K parameters
for hopper), thousands of environments stepped in lock-step inside ``jax.lax.scan``, GAE,
clipped surrogate and value losses, optax Adam with gradient clipping, observation
normalisation. One jitted call collects ``--num-steps`` steps in every environment and runs the
update epochs over them; its steps are the unit of work.
"""

from __future__ import annotations

import argparse
import itertools
from typing import Any, NamedTuple

import benchkit
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from brax import envs
from flax.training.train_state import TrainState


class ActorCritic(nn.Module):
    action_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        def trunk(scale: float, out: int) -> jax.Array:
            h = x
            for _ in range(2):
                h = nn.tanh(nn.Dense(256, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(h))
            return nn.Dense(out, kernel_init=nn.initializers.orthogonal(scale))(h)

        mean = trunk(0.01, self.action_dim)
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        value = trunk(1.0, 1).squeeze(-1)
        return mean, log_std, value


class Transition(NamedTuple):
    done: jax.Array
    action: jax.Array
    value: jax.Array
    reward: jax.Array
    log_prob: jax.Array
    obs: jax.Array


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    return jnp.sum(
        -0.5 * ((action - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi),
        axis=-1,
    )


def normalise(obs: jax.Array, stats: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
    _, mean, var = stats
    return (obs - mean) / jnp.sqrt(var + 1e-8)


def update_stats(
    stats: tuple[jax.Array, jax.Array, jax.Array], obs: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Running mean and variance of observations (Welford over batches), as NormalizeVecObservation."""
    count, mean, var = stats
    batch_mean, batch_var, batch_count = obs.mean(0), obs.var(0), obs.shape[0]
    delta = batch_mean - mean
    total = count + batch_count
    new_mean = mean + delta * batch_count / total
    m2 = var * count + batch_var * batch_count + delta**2 * count * batch_count / total
    return total, new_mean, m2 / total


def make_update(args: argparse.Namespace, env: envs.Env, network: ActorCritic) -> Any:
    minibatch = args.num_envs * args.num_steps // args.num_minibatches

    def env_step(carry: Any, _: Any) -> tuple[Any, Transition]:
        state, env_state, stats, rng = carry
        rng, key = jax.random.split(rng)
        obs = env_state.obs
        mean, log_std, value = network.apply(state.params, normalise(obs, stats))
        action = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        log_prob = gaussian_log_prob(mean, log_std, action)
        env_state = env.step(env_state, jnp.clip(action, -1.0, 1.0))
        stats = update_stats(stats, env_state.obs)
        transition = Transition(env_state.done, action, value, env_state.reward, log_prob, obs)
        return (state, env_state, stats, rng), transition

    def advantages(batch: Transition, last_value: jax.Array) -> tuple[jax.Array, jax.Array]:
        def step(
            carry: tuple[jax.Array, jax.Array], t: Transition
        ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
            gae, next_value = carry
            delta = t.reward + args.gamma * next_value * (1 - t.done) - t.value
            gae = delta + args.gamma * args.gae_lambda * (1 - t.done) * gae
            return (gae, t.value), gae

        _, adv = jax.lax.scan(
            step, (jnp.zeros_like(last_value), last_value), batch, reverse=True, unroll=16
        )
        return adv, adv + batch.value

    def loss_fn(
        params: Any, batch: Transition, adv: jax.Array, targets: jax.Array, stats: Any
    ) -> jax.Array:
        mean, log_std, value = network.apply(params, normalise(batch.obs, stats))
        log_prob = gaussian_log_prob(mean, log_std, batch.action)
        clipped_value = batch.value + (value - batch.value).clip(-args.clip_eps, args.clip_eps)
        value_loss = (
            0.5 * jnp.maximum((value - targets) ** 2, (clipped_value - targets) ** 2).mean()
        )
        ratio = jnp.exp(log_prob - batch.log_prob)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        actor_loss = -jnp.minimum(
            ratio * adv, jnp.clip(ratio, 1 - args.clip_eps, 1 + args.clip_eps) * adv
        ).mean()
        entropy = jnp.sum(log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e))
        return actor_loss + 0.5 * value_loss - args.ent_coef * entropy

    def update(carry: Any) -> tuple[Any, jax.Array]:
        carry, batch = jax.lax.scan(env_step, carry, None, args.num_steps)
        state, env_state, stats, rng = carry
        _, _, last_value = network.apply(state.params, normalise(env_state.obs, stats))
        adv, targets = advantages(batch, last_value)

        def epoch(
            inner: tuple[TrainState, jax.Array], _: Any
        ) -> tuple[tuple[TrainState, jax.Array], jax.Array]:
            state, rng = inner
            rng, key = jax.random.split(rng)
            order = jax.random.permutation(key, args.num_envs * args.num_steps)
            flat = jax.tree_util.tree_map(
                lambda x: x.reshape((-1, *x.shape[2:]))[order], (batch, adv, targets)
            )
            shards = jax.tree_util.tree_map(
                lambda x: x.reshape((args.num_minibatches, minibatch, *x.shape[1:])), flat
            )

            def minibatch_step(state: TrainState, mb: Any) -> tuple[TrainState, jax.Array]:
                loss, grads = jax.value_and_grad(loss_fn)(state.params, *mb, stats)
                return state.apply_gradients(grads=grads), loss

            state, losses = jax.lax.scan(minibatch_step, state, shards)
            return (state, rng), losses.mean()

        (state, rng), losses = jax.lax.scan(epoch, (state, rng), None, args.update_epochs)
        return (state, env_state, stats, rng), losses.mean()

    return jax.jit(update, donate_argnums=0)


def train(args: argparse.Namespace) -> None:
    if args.device != "auto":
        jax.config.update("jax_platforms", args.device)
    if args.num_envs * args.num_steps % args.num_minibatches:
        raise ValueError("--num-envs x --num-steps must divide into --num-minibatches")
    env = envs.training.wrap(envs.get_environment(args.env), episode_length=args.episode_length)
    rng, init_key, reset_key = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    network = ActorCritic(env.action_size)
    state = TrainState.create(
        apply_fn=network.apply,
        params=network.init(init_key, jnp.zeros((env.observation_size,))),
        tx=optax.chain(
            optax.clip_by_global_norm(args.max_grad_norm), optax.adam(args.lr, eps=1e-5)
        ),
    )
    env_state = jax.jit(env.reset)(jax.random.split(reset_key, args.num_envs))
    stats = (jnp.asarray(1e-4), jnp.zeros(env.observation_size), jnp.ones(env.observation_size))
    update = make_update(args, env, network)

    carry = (state, env_state, stats, rng)
    loop = benchkit.TimedLoop(
        itertools.count(),  # updates until the loop has its measurements
        batch_size=args.num_envs * args.num_steps,
        units="steps/s",
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.jax_sync,
    )
    for _ in loop:
        carry, loss = update(carry)
        loop.log_loss(loss)


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "ppo", __doc__.splitlines()[0], batch_size=1, warmup=3, measures=30, every=10
    )
    p.add_argument("--env", default="hopper", help="a brax.envs name (fast: a trivial test env)")
    p.add_argument("--num-envs", type=int, default=2048)
    p.add_argument("--num-steps", type=int, default=10, help="steps per environment per update")
    p.add_argument("--num-minibatches", type=int, default=32)
    p.add_argument("--update-epochs", type=int, default=4)
    p.add_argument("--episode-length", type=int, default=1000)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--gae-lambda", type=float, default=0.95)
    p.add_argument("--clip-eps", type=float, default=0.2)
    p.add_argument("--ent-coef", type=float, default=0.0)
    p.add_argument("--max-grad-norm", type=float, default=0.5)
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())

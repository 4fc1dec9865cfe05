"""PPO training throughput (environment steps/s) in pure JAX on a Brax environment, PureJaxRL style.

Milabench's ppo benchmark: the PPO of PureJaxRL (``ppo_continuous_action.py`` as Milabench's
``purejaxrl/ppo.py`` runs it) on Brax's ``hopper`` with the ``positional`` backend, 128
environments stepped in lock-step inside ``jax.lax.scan`` (episodes of 1,000 steps, automatic
resets), observations and rewards normalised by running statistics as its
``NormalizeVecObservation``/``NormalizeVecReward`` wrappers do, a flax actor-critic (two 256-unit
tanh layers each, 139K parameters for hopper), GAE, clipped surrogate and value losses, optax
Adam with gradient clipping. One jitted call collects ``--num-steps`` steps in every
environment and runs the update epochs over them; its steps are the unit of work, and
``--total-timesteps`` bounds the number of updates as in PureJaxRL.
"""

from __future__ import annotations

import argparse
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


class RunningStats(NamedTuple):
    """Running mean and variance over batches (Welford), as PureJaxRL's normalising wrappers keep."""

    count: jax.Array
    mean: jax.Array
    var: jax.Array

    def update(self, batch: jax.Array) -> RunningStats:
        batch_mean, batch_var, batch_count = batch.mean(0), batch.var(0), batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        m2 = self.var * self.count + batch_var * batch_count
        m2 = m2 + delta**2 * self.count * batch_count / total
        return RunningStats(total, self.mean + delta * batch_count / total, m2 / total)


class EnvState(NamedTuple):
    """The Brax state with NormalizeVecObservation's and NormalizeVecReward's statistics."""

    brax: Any
    obs: RunningStats
    reward: RunningStats
    returns: jax.Array  # discounted return of each environment, which rewards are scaled by


def normalised(obs: jax.Array, stats: RunningStats) -> jax.Array:
    return (obs - stats.mean) / jnp.sqrt(stats.var + 1e-8)


def make_env(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """The wrapped environment's size, reset and step (normalised observations and rewards)."""
    env = envs.training.wrap(
        envs.get_environment(args.env, backend=args.backend), episode_length=args.episode_length
    )

    def reset(key: jax.Array) -> tuple[jax.Array, EnvState]:
        brax_state = env.reset(jax.random.split(key, args.num_envs))
        obs = brax_state.obs
        size = obs.shape[-1]
        start = RunningStats(jnp.asarray(1e-4), jnp.zeros(size), jnp.ones(size))
        stats = start.update(obs)
        reward = RunningStats(jnp.asarray(1e-4), jnp.asarray(0.0), jnp.asarray(1.0))
        state = EnvState(brax_state, stats, reward, jnp.zeros(args.num_envs))
        return normalised(obs, stats), state

    def step(
        state: EnvState, action: jax.Array
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array]:
        brax_state = env.step(state.brax, jnp.clip(action, -1.0, 1.0))
        done = brax_state.done > 0.5
        obs_stats = state.obs.update(brax_state.obs)
        returns = state.returns * args.gamma * (1 - done) + brax_state.reward
        reward_stats = state.reward.update(returns)
        state = EnvState(brax_state, obs_stats, reward_stats, returns)
        reward = brax_state.reward / jnp.sqrt(reward_stats.var + 1e-8)
        return normalised(brax_state.obs, obs_stats), state, reward, done

    return env, reset, step


def make_update(args: argparse.Namespace, step_env: Any, network: ActorCritic) -> Any:
    minibatch = args.num_envs * args.num_steps // args.num_minibatches

    def env_step(carry: Any, _: Any) -> tuple[Any, Transition]:
        state, env_state, obs, rng = carry
        rng, key = jax.random.split(rng)
        mean, log_std, value = network.apply(state.params, obs)
        action = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        log_prob = gaussian_log_prob(mean, log_std, action)
        next_obs, env_state, reward, done = step_env(env_state, action)
        transition = Transition(done, action, value, reward, log_prob, obs)
        return (state, env_state, next_obs, rng), transition

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

    def loss_fn(params: Any, batch: Transition, adv: jax.Array, targets: jax.Array) -> jax.Array:
        mean, log_std, value = network.apply(params, batch.obs)
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
        state, env_state, obs, rng = carry
        _, _, last_value = network.apply(state.params, obs)
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
                loss, grads = jax.value_and_grad(loss_fn)(state.params, *mb)
                return state.apply_gradients(grads=grads), loss

            state, losses = jax.lax.scan(minibatch_step, state, shards)
            return (state, rng), losses.mean()

        (state, rng), losses = jax.lax.scan(epoch, (state, rng), None, args.update_epochs)
        return (state, env_state, obs, rng), losses.mean()

    return jax.jit(update, donate_argnums=0)


def updates(args: argparse.Namespace) -> int:
    """PureJaxRL's NUM_UPDATES: the updates that fit in --total-timesteps."""
    return args.total_timesteps // args.num_steps // args.num_envs


def train(args: argparse.Namespace) -> None:
    if args.device != "auto":
        jax.config.update("jax_platforms", args.device)
    if args.num_envs * args.num_steps % args.num_minibatches:
        raise ValueError("--num-envs x --num-steps must divide into --num-minibatches")
    env, reset, step_env = make_env(args)
    rng, init_key, reset_key = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    network = ActorCritic(env.action_size)
    state = TrainState.create(
        apply_fn=network.apply,
        params=network.init(init_key, jnp.zeros((env.observation_size,))),
        tx=optax.chain(
            optax.clip_by_global_norm(args.max_grad_norm), optax.adam(args.lr, eps=1e-5)
        ),
    )
    obs, env_state = jax.jit(reset)(reset_key)
    update = make_update(args, step_env, network)

    carry = (state, env_state, obs, rng)
    loop = benchkit.TimedLoop(
        range(updates(args)),
        batch_size=args.num_envs * args.num_steps,
        units="steps/s",
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.jax_sync,
        cycle=False,
    )
    for _ in loop:
        carry, loss = update(carry)
        loop.log_loss(loss)


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "ppo", __doc__.splitlines()[0], batch_size=1, warmup=3, measures=30, every=1
    )
    p.add_argument("--env", default="hopper", help="a brax.envs name (fast: a trivial test env)")
    p.add_argument("--backend", default="positional", help="Brax physics pipeline")
    p.add_argument("--num-envs", type=int, default=128)
    p.add_argument("--num-steps", type=int, default=10, help="steps per environment per update")
    p.add_argument("--num-minibatches", type=int, default=32)
    p.add_argument("--update-epochs", type=int, default=4)
    p.add_argument(
        "--total-timesteps", type=int, default=2_000_000, help="bounds the number of updates"
    )
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

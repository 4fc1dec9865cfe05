"""Atari PPO training throughput (environment steps/s) with PyTorch on ALE's vectorised Breakout.

Milabench's torchatari: CleanRL's ``ppo_atari_envpool.py`` with ale-py's C++ vector environment
(a port of envpool's Atari engine, with envpool's defaults) in place of envpool: Breakout-v5 in
84x84 grey, 4 stacked frames, frame skip 4, no sticky actions, episodic life, clipped rewards;
the Nature-DQN CNN actor-critic (1.7M parameters) with deterministic cuDNN; rollouts of
``--num-steps`` steps in every environment into float32 buffers, with CleanRL's per-environment
episode bookkeeping, GAE, then ``--update-epochs`` epochs of clipped PPO (clipped value loss,
learning rate annealed over ``--total-timesteps``) over ``--num-minibatches`` minibatches. One
iteration (rollout and update) is a step of the timed loop, and its environment steps are the
unit of work.
"""

from __future__ import annotations

import argparse
from collections import deque

import benchkit
import numpy as np
import torch
from ale_py.vector_env import AtariVectorEnv
from torch import nn
from torch.distributions import Categorical


def layer_init(layer: nn.Module, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Module:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class Agent(nn.Module):
    def __init__(self, actions: int) -> None:
        super().__init__()
        self.network = nn.Sequential(
            layer_init(nn.Conv2d(4, 32, 8, stride=4)),
            nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)),
            nn.ReLU(),
            nn.Flatten(),
            layer_init(nn.Linear(64 * 7 * 7, 512)),
            nn.ReLU(),
        )
        self.actor = layer_init(nn.Linear(512, actions), std=0.01)
        self.critic = layer_init(nn.Linear(512, 1), std=1)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(self.network(x / 255.0))

    def act(self, x: torch.Tensor, action: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        hidden = self.network(x / 255.0)
        dist = Categorical(logits=self.actor(hidden))
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), self.critic(hidden)


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    # CleanRL's torch_deterministic default, which Milabench keeps: slower convolutions.
    torch.backends.cudnn.deterministic = True
    device = benchkit.torch_device(args.device)
    envs = AtariVectorEnv(
        args.game, num_envs=args.num_envs, episodic_life=True, reward_clipping=True
    )
    agent = Agent(envs.single_action_space.n).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.lr, eps=1e-5)

    shape = (args.num_steps, args.num_envs)
    # float32 buffers and float actions, as CleanRL allocates them (4x the bytes of uint8 frames).
    obs = torch.zeros(shape + envs.single_observation_space.shape, device=device)
    actions, logprobs, rewards, dones, values = (
        torch.zeros(shape, device=device) for _ in range(5)
    )
    batch = args.num_envs * args.num_steps
    minibatch = batch // args.num_minibatches
    iterations = args.total_timesteps // batch
    returns_seen: deque[float] = deque(maxlen=20)
    episode_return = np.zeros(args.num_envs, dtype=np.float32)

    next_obs, _ = envs.reset(seed=args.seed)
    next_obs = torch.Tensor(next_obs).to(device)
    next_done = torch.zeros(args.num_envs, device=device)

    loop = benchkit.TimedLoop(
        range(1, iterations + 1),
        batch_size=batch,
        units="steps/s",
        warmup=args.warmup,
        measures=args.measures,
        every=args.every,
        sync=benchkit.synchronizer(device),
        cycle=False,
    )
    for iteration in loop:
        optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / iterations) * args.lr
        for step in range(args.num_steps):
            obs[step], dones[step] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value = agent.act(next_obs)
            actions[step], logprobs[step], values[step] = action, logprob, value.flatten()
            frames, reward, terminated, _, info = envs.step(action.cpu().numpy())
            rewards[step] = torch.tensor(reward).to(device).view(-1)
            next_obs = torch.Tensor(frames).to(device)
            # CleanRL ends an episode on termination only (envpool's gym API has no truncation).
            next_done = torch.Tensor(terminated).to(device)
            episode_return += reward
            # CleanRL's bookkeeping, one device-tensor truth test per environment and step:
            # part of the work Milabench times.
            for idx, done in enumerate(next_done):
                if done and info["lives"][idx] == 0:
                    returns_seen.append(float(episode_return[idx]))
                    episode_return[idx] = 0.0

        with torch.no_grad():
            next_value = agent.value(next_obs).flatten()
            advantages = torch.zeros_like(rewards)
            last = torch.zeros(args.num_envs, device=device)
            for t in reversed(range(args.num_steps)):
                following = next_value if t == args.num_steps - 1 else values[t + 1]
                not_done = 1.0 - (next_done if t == args.num_steps - 1 else dones[t + 1])
                delta = rewards[t] + args.gamma * following * not_done - values[t]
                last = delta + args.gamma * args.gae_lambda * not_done * last
                advantages[t] = last
            returns = advantages + values

        b_obs = obs.reshape((-1, *obs.shape[2:]))
        b_actions, b_logprobs, b_values = (
            actions.reshape(-1),
            logprobs.reshape(-1),
            values.reshape(-1),
        )
        b_advantages, b_returns = advantages.reshape(-1), returns.reshape(-1)
        clipfracs = []
        order = np.arange(batch)
        for _ in range(args.update_epochs):
            np.random.shuffle(order)
            for start in range(0, batch, minibatch):
                idx = order[start : start + minibatch]
                _, newlogprob, entropy, newvalue = agent.act(b_obs[idx], b_actions.long()[idx])
                ratio = (newlogprob - b_logprobs[idx]).exp()
                with torch.no_grad():
                    clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean().item())
                adv = b_advantages[idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = torch.max(
                    -adv * ratio, -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)
                ).mean()
                newvalue = newvalue.view(-1)
                clipped = b_values[idx] + torch.clamp(
                    newvalue - b_values[idx], -args.clip_coef, args.clip_coef
                )
                v_loss = (
                    0.5
                    * torch.max(
                        (newvalue - b_returns[idx]) ** 2, (clipped - b_returns[idx]) ** 2
                    ).mean()
                )
                loss = pg_loss - args.ent_coef * entropy.mean() + args.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
        loop.log_loss(v_loss.detach())  # Milabench logs the value loss
    envs.close()


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "torchatari", __doc__.splitlines()[0], batch_size=1, warmup=2, measures=30, every=1
    )
    p.add_argument("--game", default="breakout", help="an ALE ROM name (ale-py ships the ROMs)")
    p.add_argument("--num-envs", type=int, default=128)
    p.add_argument("--num-steps", type=int, default=128, help="rollout length per environment")
    p.add_argument("--num-minibatches", type=int, default=16)
    p.add_argument("--update-epochs", type=int, default=4)
    p.add_argument(
        "--total-timesteps",
        type=int,
        default=1_000_000,
        help="length of the learning-rate annealing; bounds the iterations",
    )
    p.add_argument("--lr", type=float, default=2.5e-4)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--gae-lambda", type=float, default=0.95)
    p.add_argument("--clip-coef", type=float, default=0.1)
    p.add_argument("--ent-coef", type=float, default=0.01)
    p.add_argument("--vf-coef", type=float, default=0.5)
    p.add_argument("--max-grad-norm", type=float, default=0.5)
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())

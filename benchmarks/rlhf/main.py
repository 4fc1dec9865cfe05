"""RLHF throughput (prompt tokens/s): one PPO iteration of TRL's PPOTrainer on pythia-1b models.

Milabench's rlhf runs TRL's ``PPOTrainer`` (its ``examples/scripts/ppo/ppo.py``) with
``EleutherAI/pythia-1b-deduped`` as policy, reference, reward and value model, batch 64 per
device, bf16. TRL is not in this environment (and its PPO API moved between releases), so this is
the same iteration written with torch and transformers, step for step, with TRL's defaults:

1. roll-out without gradients: the policy samples 53 response tokens per prompt (temperature
   0.7, no top-k/top-p), the reference policy and the value model score every response token,
   the reward model scores each query + response at its last token;
2. rewards: a per-token KL penalty (0.05 x (logprob - ref logprob)) plus the score at the end;
   advantages by GAE (gamma 1, lambda 0.95), whitened over the response tokens;
3. four PPO epochs over the batch: clipped policy loss (0.2) + 0.1 x clipped value loss (0.2),
   one AdamW step (lr 3e-6) each, for the policy and the value model together.

Models are GPT-NeoX networks of pythia-1b's configuration with random weights (fp32 under bf16
autocast, as TRL's accelerator runs them); prompts are generated look-alikes of TRL's
descriptiveness-sentiment set, left-padded per batch. The rate counts the prompt tokens of the
padded batch (what Milabench's observer counts), times the DDP workers (``--devices``).
"""

from __future__ import annotations

import argparse

import benchkit
import data
import torch
from torch import nn
from transformers import (
    GenerationConfig,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    GPTNeoXForSequenceClassification,
    PreTrainedTokenizerFast,
)

INVALID_LOGPROB = 1.0  # TRL's fill value for log-probabilities past a response's end


def pythia_config(args: argparse.Namespace, vocab: int, labels: int | None = None) -> GPTNeoXConfig:
    extra = {} if labels is None else {"num_labels": labels}
    return GPTNeoXConfig(
        vocab_size=max(vocab, args.vocab_size),
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=4 * args.hidden,
        rotary_pct=0.25,
        max_position_embeddings=2048,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        bos_token_id=1,  # the tokenizer's <s> and </s> (benchkit.SPECIAL_TOKENS)
        eos_token_id=2,
        **extra,
    )


class PolicyAndValue(nn.Module):
    """The two trained models as one module (TRL's PolicyAndValueWrapper): one optimizer, one DDP."""

    def __init__(self, policy: nn.Module, value: nn.Module) -> None:
        super().__init__()
        self.policy = policy
        self.value = value

    def forward(self, query_responses: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            forward(self.policy, query_responses, pad).logits,
            score_tokens(self.value, query_responses, pad),
        )


def forward(model: nn.Module, query_responses: torch.Tensor, pad: int):
    """A forward pass over left-padded sequences, positions counted from the first real token."""
    mask = query_responses != pad
    positions = mask.cumsum(1) - mask.long()
    return model(
        input_ids=query_responses.masked_fill(~mask, 0),
        attention_mask=mask,
        position_ids=positions,
        use_cache=False,
    )


def score_tokens(model: nn.Module, query_responses: torch.Tensor, pad: int) -> torch.Tensor:
    """A sequence-classification model's head on every position (TRL's get_reward)."""
    mask = query_responses != pad
    hidden = model.gpt_neox(
        input_ids=query_responses.masked_fill(~mask, 0),
        attention_mask=mask,
        position_ids=mask.cumsum(1) - mask.long(),
        use_cache=False,
    ).last_hidden_state
    return model.score(hidden).squeeze(-1)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def first_true(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first True of each row, the row length if none."""
    length = mask.size(1)
    positions = torch.arange(length, device=mask.device).expand_as(mask)
    return torch.where(mask, positions, length).min(1).values


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum()


def masked_whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(var + 1e-8)


class PPO:
    """One PPO iteration on a batch of prompts, TRL's PPOTrainer.train loop body."""

    def __init__(self, args: argparse.Namespace, models: dict[str, nn.Module], pad: int) -> None:
        self.args, self.pad = args, pad
        self.trained: nn.Module = models["trained"]
        self.policy, self.value = models["policy"], models["value"]
        self.ref, self.reward = models["ref"], models["reward"]
        self.generation = GenerationConfig(
            max_new_tokens=args.response_length,
            temperature=args.temperature + 1e-7,
            top_k=0,
            top_p=1.0,
            do_sample=True,
            pad_token_id=pad,
        )

    @torch.no_grad()
    def rollout(self, queries: torch.Tensor) -> dict[str, torch.Tensor]:
        a, context = self.args, queries.size(1)
        generated = self.policy.generate(
            input_ids=queries,
            attention_mask=queries != self.pad,
            generation_config=self.generation,
            return_dict_in_generate=True,
            output_scores=True,
        )
        query_responses = generated.sequences
        responses = query_responses[:, context:]
        logprobs = token_logprobs(torch.stack(generated.scores, 1), responses)
        ref_logits = forward(self.ref, query_responses, self.pad).logits[:, context - 1 : -1]
        ref_logprobs = token_logprobs(ref_logits / (a.temperature + 1e-7), responses)
        lengths = first_true(responses == self.pad) - 1
        values = score_tokens(self.value, query_responses, self.pad)[:, context - 1 : -1]
        rows = torch.arange(len(queries), device=queries.device)
        scores = score_tokens(self.reward, query_responses, self.pad)[rows, context + lengths]

        index = torch.arange(responses.size(1), device=queries.device)
        padding = index > lengths.unsqueeze(1)
        padding_p1 = index > (lengths + 1).unsqueeze(1)
        logprobs = logprobs.masked_fill(padding, INVALID_LOGPROB)
        ref_logprobs = ref_logprobs.masked_fill(padding, INVALID_LOGPROB)
        values = values.float().masked_fill(padding_p1, 0)
        rewards = -a.kl_coef * (logprobs - ref_logprobs)
        ends = torch.where(lengths + 1 < rewards.size(1), lengths + 1, lengths)
        rewards[rows, ends] += scores.float()
        advantages = torch.zeros_like(rewards)
        running = torch.zeros_like(rewards[:, 0])
        for t in reversed(range(rewards.size(1))):
            following = values[:, t + 1] if t + 1 < rewards.size(1) else 0.0
            delta = rewards[:, t] + a.gamma * following - values[:, t]
            running = delta + a.gamma * a.lam * running
            advantages[:, t] = running
        returns = advantages + values
        advantages = masked_whiten(advantages, ~padding).masked_fill(padding, 0)
        return {
            "query_responses": query_responses,
            "responses": responses,
            "logprobs": logprobs,
            "values": values,
            "returns": returns,
            "advantages": advantages,
            "padding": padding,
            "padding_p1": padding_p1,
        }

    def loss(self, batch: dict[str, torch.Tensor], context: int) -> torch.Tensor:
        """The clipped PPO loss on the whole batch (TRL's single mini- and micro-batch)."""
        a = self.args
        logits, vpred = self.trained(batch["query_responses"], self.pad)
        logits = logits[:, context - 1 : -1] / (a.temperature + 1e-7)
        new_logprobs = token_logprobs(logits, batch["responses"])
        new_logprobs = new_logprobs.masked_fill(batch["padding"], INVALID_LOGPROB)
        vpred = vpred[:, context - 1 : -1].float().masked_fill(batch["padding_p1"], 0)
        old_values = batch["values"]
        clipped = old_values + (vpred - old_values).clamp(-a.cliprange_value, a.cliprange_value)
        vf_loss = 0.5 * masked_mean(
            torch.max((vpred - batch["returns"]) ** 2, (clipped - batch["returns"]) ** 2),
            ~batch["padding_p1"],
        )
        ratio = torch.exp(new_logprobs - batch["logprobs"])
        advantages = batch["advantages"]
        pg_loss = masked_mean(
            torch.max(
                -advantages * ratio, -advantages * ratio.clamp(1 - a.cliprange, 1 + a.cliprange)
            ),
            ~batch["padding"],
        )
        return pg_loss + a.vf_coef * vf_loss


def prompt_batches(args: argparse.Namespace, tokenizer: PreTrainedTokenizerFast, world: int):
    root = benchkit.require_dataset(data.params(args))
    prompts = tokenizer(data.prompts(root), add_special_tokens=False)["input_ids"]
    pad = tokenizer.pad_token_id

    def collate(rows: list[list[int]]) -> torch.Tensor:
        longest = max(len(r) for r in rows)
        # left-padded, as TRL's tokenizer (padding_side="left") pads queries for generation
        return torch.tensor([[pad] * (longest - len(r)) + r for r in rows])

    sampler = (
        torch.utils.data.DistributedSampler(prompts, seed=args.seed, drop_last=True)
        if world > 1
        else torch.utils.data.RandomSampler(prompts, generator=torch.Generator().manual_seed(0))
    )
    return torch.utils.data.DataLoader(
        prompts, batch_size=args.batch_size, sampler=sampler, drop_last=True, collate_fn=collate
    )


def train(args: argparse.Namespace) -> None:
    device, world = benchkit.init_distributed(args.device)
    torch.manual_seed(args.seed)
    root = benchkit.require_dataset(data.params(args))
    tokenizer = benchkit.pretrained_tokenizer(root / "tokenizer.json")
    tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    vocab = len(tokenizer)
    policy = GPTNeoXForCausalLM(pythia_config(args, vocab)).to(device)
    ref = GPTNeoXForCausalLM(pythia_config(args, vocab)).to(device).eval().requires_grad_(False)
    value = GPTNeoXForSequenceClassification(pythia_config(args, vocab, 1)).to(device)
    reward = GPTNeoXForSequenceClassification(pythia_config(args, vocab, 1)).to(device)
    reward.eval().requires_grad_(False)
    for model in (policy, ref, value, reward):
        model.config.pad_token_id = tokenizer.pad_token_id
    trained: nn.Module = PolicyAndValue(policy, value)
    if world > 1:
        trained = nn.parallel.DistributedDataParallel(trained)
    ppo = PPO(
        args,
        {"trained": trained, "policy": policy, "value": value, "ref": ref, "reward": reward},
        tokenizer.pad_token_id,
    )
    steps = benchkit.StepLoop(
        prompt_batches(args, tokenizer, world),
        args,
        device=device,
        units="tokens/s",
        optimizer=torch.optim.AdamW(trained.parameters(), lr=args.lr, eps=1e-8),
        precision=args.amp,  # TRL's --bf16: accelerate's autocast over fp32 weights
        world=world,
        work=lambda queries: queries.numel() * world,
    )
    for queries in steps:
        with steps.autocast():
            policy.eval()
            batch = ppo.rollout(queries)
            policy.train()
        for _ in range(args.ppo_epochs):
            with steps.autocast():
                loss = ppo.loss(batch, queries.size(1))
            steps.step(loss)
    if world > 1:
        torch.distributed.destroy_process_group()


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "rlhf", __doc__.splitlines()[0], batch_size=64, warmup=2, measures=30, every=1
    )
    p.add_argument("--devices", type=int, default=1, help="DDP workers; -1: one per visible GPU")
    p.add_argument(
        "--amp",
        choices=("fp32", "fp16", "bf16"),
        default="bf16",
        help="autocast dtype (TRL's --bf16)",
    )
    p.add_argument("--response-length", type=int, default=53, help="sampled tokens per prompt")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--ppo-epochs", type=int, default=4, help="PPO updates per roll-out")
    p.add_argument("--kl-coef", type=float, default=0.05)
    p.add_argument("--cliprange", type=float, default=0.2)
    p.add_argument("--cliprange-value", type=float, default=0.2)
    p.add_argument("--vf-coef", type=float, default=0.1)
    p.add_argument("--gamma", type=float, default=1.0)
    p.add_argument("--lam", type=float, default=0.95)
    p.add_argument("--lr", type=float, default=3e-6)
    p.add_argument("--vocab-size", type=int, default=50304, help="pythia's embedding rows")
    p.add_argument("--hidden", type=int, default=2048, help="pythia-1b: 2,048")
    p.add_argument("--layers", type=int, default=16, help="pythia-1b: 16")
    p.add_argument("--heads", type=int, default=8, help="pythia-1b: 8")
    data.add_arguments(p)
    return p


if __name__ == "__main__":
    benchkit.ddp_main(train, parser())

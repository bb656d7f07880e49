"""KGPrompt, the UniCRS prompt encoder (SYSTEMS.md §1.5): knowledge-graph entities and frozen text-encoder token
states fused into a deep prompt, i.e. key/value prefixes for every self-attention layer of a frozen causal LM.

Notation (SYSTEMS.md §1.5): K entities, d the decoder's hidden size, d_e the entity width (d/2 in the paper),
d_x the text encoder's hidden size, p context tokens, q context entities, L decoder layers.

    entity side   H = RGCN(N) + N;  H <- H + MLP_e(H);  E = H·W_E                       N in R^{K x d_e}
    token side    T = (X + MLP_t(X))·W_T                                                 X in R^{p x d_x}
    fusion        A = (T·W_c)·E_s^T / d                                                  A in R^{p x q}
      rec prompt  P = softmax_tokens(A)^T·T + E_s     (entity-length, q rows)
      conv prompt P = softmax_entities(A)·E_s + T     (token-length, p rows)
    task prefix   P <- [O_task + MLP_o(O_task) ; P]   (n_rec = 10, n_conv = 20; none in pre-training)
    deep prompt   Z = P + MLP_p(P);  [K_l ; V_l]_{l=1..L} = Z·W_kv   split into the decoder's key/value heads

Why key/value prefixes and not input embeddings: the prefix then conditions every layer of the decoder
(prefix tuning), and it reaches the decoder through the standard Hugging Face ``past_key_values`` interface,
so any causal LM works unchanged (GPT-2 / DialoGPT, LLaMA-style SmolLM2 with grouped key/value heads).
Every MLP is a two-layer ReLU bottleneck to half the width with a residual connection, as in the paper's code.

Everything here is batched: one call computes the prompts of a whole batch; the only Python loop is over the
decoder's layers when the projected prefix is split into per-layer (key, value) pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from plugins.models.blocks import PreparedKG, RGCNEncoder

PROMPT_KINDS = ("rec", "conv")


@dataclass(frozen=True)
class DecoderGeometry:
    """What the per-layer prefixes must look like: L layers of [B, kv_heads, S, head_dim] keys and values."""

    layers: int
    kv_heads: int
    head_dim: int
    hidden: int

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim


class ResidualMLP(nn.Module):
    """x + W_2·ReLU(W_1·x) with a bottleneck of half the width: the MLP_e, MLP_t, MLP_o and MLP_p of §1.5."""

    def __init__(self, dim: int):
        super().__init__()
        inner = max(1, dim // 2)
        self.inner = nn.Sequential(nn.Linear(dim, inner), nn.ReLU(), nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


@dataclass
class Prompt:
    """A batch of deep prompts: per-layer (keys, values), each [B, kv_heads, S, head_dim], and the [B, S]
    mask of the S prompt positions (False = padding the decoder must not attend to)."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor
    positions: str = "real"  # how the decoder numbers the tokens after it (`decoding._inputs`)

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over `dim` where `mask` (broadcast) is True; 0 where a slice has nothing unmasked. Never NaN,
    also not in the backward pass (an all -inf softmax would give NaN gradients)."""
    mask = mask.expand_as(scores)
    has_any = mask.any(dim=dim, keepdim=True)
    scores = scores.masked_fill(~mask, float("-inf")).masked_fill(~has_any, 0.0)
    return torch.softmax(scores, dim=dim) * mask.to(scores.dtype)


class KGPrompt(nn.Module):
    """One prompt encoder (UniCRS trains two copies of the pre-trained one: conversation and recommendation).

    `n_prefix` is the task prefix of this copy (10 for recommendation, 20 for conversation); pre-training runs
    the recommendation copy without its prefix (``use_prefix=False``).
    """

    def __init__(self, kg: PreparedKG, token_dim: int, geometry: DecoderGeometry, entity_dim: int,
                 n_prefix: int, num_bases: int | None = 8, kg_layers: int = 1):
        super().__init__()
        hidden = geometry.hidden
        self.geometry, self.num_entities, self.n_prefix = geometry, kg.num_entities, n_prefix
        # entity side: H = RGCN(N) + N (the encoder's residual form), H <- H + MLP_e(H), E = H·W_E
        self.kg_encoder = RGCNEncoder(kg, entity_dim, kg_layers, num_bases, featureless=False, grouped=True)
        self.entity_mlp = ResidualMLP(entity_dim)
        self.entity_proj = nn.Linear(entity_dim, hidden)
        # token side: T = (X + MLP_t(X))·W_T
        self.token_mlp = ResidualMLP(token_dim)
        self.token_proj = nn.Linear(token_dim, hidden)
        # fusion: A = (T·W_c)·E_s^T / d
        self.cross = nn.Linear(hidden, hidden, bias=False)
        # task prefix O_task, each row through a residual MLP
        self.prefix = nn.Parameter(torch.randn(n_prefix, hidden) * hidden ** -0.5) if n_prefix else None
        self.prefix_mlp = ResidualMLP(hidden) if n_prefix else None
        # deep prompt: residual MLP, then one linear map to all layers' keys and values
        self.prompt_mlp = ResidualMLP(hidden)
        self.prompt_proj = nn.Linear(hidden, geometry.layers * 2 * geometry.kv_width)

    def entity_states(self) -> torch.Tensor:
        """H [K + 1, d_e] = (RGCN(N) + N) + MLP_e(...), plus a zero row for the padding id K.

        E = H·W_E is never formed for all K entities: the prompt needs only the context entities' rows
        (`project`), and the head's scores u·E_k = (u·W_E)·H_k + u·b_E are computed in entity width
        (`scores`), exactly, at a fraction of the cost (K·d_e·d per step saved twice, forward and backward).
        """
        h = self.entity_mlp(self.kg_encoder())
        return torch.cat([h, h.new_zeros(1, h.shape[1])])

    def project(self, states: torch.Tensor) -> torch.Tensor:
        """E rows = H rows · W_E (+ b), for any gathered subset of entity states."""
        return self.entity_proj(states)

    def scores(self, u: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """u·E_kᵀ for every row k of `states` ([B, d] x [n, d_e] -> [B, n]), without forming E."""
        return (u @ self.entity_proj.weight) @ states.T + (u @ self.entity_proj.bias)[:, None]

    def tokens(self, states: torch.Tensor) -> torch.Tensor:
        """T [B, p, d] from the text encoder's states X [B, p, d_x]."""
        return self.token_proj(self.token_mlp(states))

    def fuse(self, tokens: torch.Tensor, token_mask: torch.Tensor, entities: torch.Tensor,
             entity_mask: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused prompt P and its mask: entity-length for ``rec``, token-length for ``conv``.

        Padding never receives attention weight; a context without entities gives the conv prompt P = T
        (the entity term is 0) and a fully masked rec prompt (only the task prefix remains visible).
        """
        if kind not in PROMPT_KINDS:
            raise ValueError(f"prompt kind must be one of {PROMPT_KINDS}, got {kind!r}")
        scores = self.cross(tokens) @ entities.transpose(1, 2) / tokens.shape[-1]  # A [B, p, q]
        if kind == "rec":
            weights = _masked_softmax(scores, token_mask[:, :, None], dim=1)  # over tokens
            fused = weights.transpose(1, 2) @ tokens + entities  # [B, q, d]
            return fused * entity_mask[:, :, None].to(fused.dtype), entity_mask
        weights = _masked_softmax(scores, entity_mask[:, None, :], dim=2)  # over entities; none -> 0
        fused = weights @ entities + tokens  # [B, p, d]
        return fused * token_mask[:, :, None].to(fused.dtype), token_mask

    def forward(self, states: torch.Tensor, token_mask: torch.Tensor, entity_ids: torch.Tensor,
                entity_mask: torch.Tensor, kind: str, use_prefix: bool = True,
                entity_table: torch.Tensor | None = None) -> Prompt:
        """Deep prompts for a batch: text states [B, p, d_x] + mask, context entity ids [B, q] + mask.

        `entity_table` is H (`entity_states`) when the caller already computed it this step (the rec head
        shares it): the R-GCN runs once per step, not twice.
        """
        table = self.entity_states() if entity_table is None else entity_table
        fused, mask = self.fuse(self.tokens(states), token_mask, self.project(table[entity_ids]), entity_mask,
                                kind)
        if use_prefix and self.prefix is not None:
            prefix = self.prefix_mlp(self.prefix)[None].expand(fused.shape[0], -1, -1)
            fused = torch.cat([prefix, fused], dim=1)
            mask = torch.cat([mask.new_ones(fused.shape[0], self.n_prefix), mask], dim=1)
        return self.deep_prompt(fused, mask)

    def deep_prompt(self, prompt: torch.Tensor, mask: torch.Tensor) -> Prompt:
        """P [B, S, d] -> L pairs of [B, kv_heads, S, head_dim] keys and values (the deep prompt)."""
        g = self.geometry
        batch, length = prompt.shape[:2]
        kv = self.prompt_proj(self.prompt_mlp(prompt))
        kv = kv.view(batch, length, g.layers, 2, g.kv_heads, g.head_dim).permute(2, 3, 0, 4, 1, 5)
        return Prompt([(kv[layer, 0], kv[layer, 1]) for layer in range(g.layers)], mask)

    def shared_state(self) -> dict[str, torch.Tensor]:
        """Everything but the task prefix: what the conversation copy inherits from pre-training."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("prefix")}

"""A lean greedy decode loop: the tokens `generate` writes, without its per-token overhead.

At nano's size (4 layers, 256 wide, a 2 038-token vocabulary) a decode step's arithmetic is small
next to what runs around it. Profiled with cProfile on 5-object detections by the shipped nano
(`predict` through `generate`, one thread; 267 steps, 7.8 s under the profiler): the model's
forward took 74 % of the time but its matrix products only 28 % (module calls, output dataclasses,
mask construction, config look-ups, rope and norms written as small ops took the rest), the
logits processors 15 % (`LogitsProcessorList` alone 4 %: it inspects every processor's signature
every step), `generate`'s own bookkeeping (preparing inputs, concatenating masks and positions,
stopping criteria) about 10 %.

So: the prompt goes through the model's own forward once (vision tower, 3-D rope positions,
KV cache), as `generate`'s prefill does; every later token goes through `_TextDecoder.step`, the
text decoder's arithmetic for one token per row written out op for op as transformers'
Qwen2.5-VL computes it with SDPA attention, on key/value buffers allocated once for the whole
answer (measured as fast as growing the cache by `torch.cat` as `DynamicCache` does, a few per
cent faster at batch 8, and no copy of the whole cache per step on long answers). The logits
processors then run in their order on the same token ids and scores `generate` would give them,
and the loop stops as `generate` does (a row that writes the end token is padded from then on; at
most `max_new_tokens`). One token a step, the answer is `generate`'s, token for token, with the
same probabilities bit for bit (`tests/test_fast_decode.py` compares them on every task, batched
and not, float32 and bfloat16).

After that the step's matrix products are most of the time (a batch-1 step of the shipped nano:
≈ 3 ms on one core, ≈ 2 ms of it reading the 14.6 MB of weights), so the remaining lever is fewer
steps. A constrained answer has many tokens its grammar leaves no choice about (a phrase's rest,
`<|object_ref_end|><|box_start|>` after it, `, <|object_ref_start|>` between groups: 29 of the 89
tokens of a 5-object detection), so after each token the loop drafts the run the grammar forces
(`GrammarConstraint.forced_after`) and sends it through the decoder with that token in one step
(four tokens cost ≈ 1.9 single steps); the processors then see each drafted position in turn, as
if it had been decoded alone, and the first position where the model's greedy choice differs cuts
the chunk (`_TextDecoder.rewind`). A batch drafts only as far as every unfinished row is forced, so
at batch 8 it rarely does. A chunk's products round differently from one token's, so drafted
answers are `generate`'s token for token (tested on held-out prompts of every task) with scores
equal up to float32 rounding; it is on for float32 models only (bfloat16's coarse logits tie too
often for rounding not to change a token). torch.compile is not used: its fused kernels would
change the single steps' floating-point results, and weight layouts packed for the CPU's
matrix-vector kernels measured within this machine's noise (±20 %), so the layers' own weights are
read as they are (stacking the query, key and value projections into one product, and the MLP's
gate and up, gained nothing measurable either: fifteenth session, interleaved runs on a 2-core
Xeon). Fewer elementwise calls do pay a little: rope's `rotate_half` as one `roll` (−3 % time
per token at batch 1, −6 % at batch 8, one thread, medians of nine interleaved rounds).

Only greedy decoding of this architecture is mirrored: sampling, beams, any other generation
setting, another attention implementation or training mode goes through `generate`
(`needs_generate` names what does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import transformers
from torch.nn import functional
from transformers import GenerationConfig, LogitsProcessor, Qwen2_5_VLForConditionalGeneration

from .decoding import GrammarConstraint

# Generation settings the loop honours (`max_new_tokens`, the processors), overrides itself
# (`eos_token_id`, `pad_token_id` are passed to it), or that greedy decoding never reads
# (sampling's, and bookkeeping), whatever their value...
_GREEDY_NEUTRAL = frozenset({
    "max_new_tokens", "max_length", "logits_processor", "eos_token_id", "pad_token_id", "bos_token_id",
    "temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff",
    "transformers_version", "_from_model_config",
})
# ...and those at the value that means plain greedy decoding (transformers 5 leaves them unset by
# default; checkpoints write them out). Any other setting sends the answer through `generate`.
_GREEDY_VALUES = {
    "do_sample": False, "num_beams": 1, "num_return_sequences": 1, "repetition_penalty": 1.0, "use_cache": True,
    "output_attentions": False, "output_hidden_states": False, "output_scores": False, "output_logits": False,
    "return_dict_in_generate": False,
}


def needs_generate(model: Qwen2_5_VLForConditionalGeneration, settings: Mapping[str, Any]) -> list[str]:
    """What about `model` or the merged generation `settings` the lean loop does not mirror
    (empty: it decodes them)."""
    reasons = []
    if type(model) is not Qwen2_5_VLForConditionalGeneration:
        reasons.append(f"model class {type(model).__name__}")
    if int(transformers.__version__.split(".")[0]) < 5:
        reasons.append(f"transformers {transformers.__version__} (the loop mirrors 5.x)")
    if model.training:
        reasons.append("training mode (dropout)")
    text = model.config.text_config
    if model.config._attn_implementation != "sdpa":
        reasons.append(f"attention {model.config._attn_implementation}")
    if getattr(text, "use_sliding_window", False) or set(getattr(text, "layer_types", None) or ()) - {"full_attention"}:
        reasons.append("sliding-window attention")
    if (getattr(text, "rope_parameters", None) or {}).get("rope_type", "default") != "default":
        reasons.append(f"rope {text.rope_parameters['rope_type']}")
    merged = GenerationConfig.from_dict(model.generation_config.to_dict())
    merged.update(**{k: v for k, v in settings.items() if k != "logits_processor"})
    if not (merged.max_new_tokens or 0) >= 1:
        reasons.append(f"max_new_tokens={merged.max_new_tokens!r}")
    reasons += [
        f"{key}={value!r}" for key, value in sorted(merged.to_diff_dict().items())
        if key not in _GREEDY_NEUTRAL and (key not in _GREEDY_VALUES or value != _GREEDY_VALUES[key])
    ]
    return reasons


def generate(
    model: Qwen2_5_VLForConditionalGeneration, inputs: Mapping[str, torch.Tensor], settings: Mapping[str, Any],
    eos_token_id: int, pad_token_id: int, fast: bool = True,
) -> torch.LongTensor:
    """Prompt and answer ids, `generate`'s output: by the lean loop where it mirrors `settings`
    (and `fast`), else by `model.generate`."""
    if fast and not needs_generate(model, settings):
        return greedy_decode(model, inputs, settings.get("logits_processor") or (), settings["max_new_tokens"],
                             eos_token_id, pad_token_id)
    return model.generate(**inputs, eos_token_id=eos_token_id, pad_token_id=pad_token_id, **settings)


def greedy_decode(
    model: Qwen2_5_VLForConditionalGeneration, inputs: Mapping[str, torch.Tensor],
    processors: Sequence[LogitsProcessor], max_new_tokens: int, eos_token_id: int, pad_token_id: int,
    jump_forward: bool | None = None,
) -> torch.LongTensor:
    """Greedy decoding with `processors` (each called as `processor(input_ids, scores)`, in
    order, once per token), stopping at `eos_token_id` or after `max_new_tokens`: the ids of
    prompt and answer.

    `jump_forward` (default: on for float32 models when a `GrammarConstraint` is among the
    processors): after each token, the tokens the grammar forces next go through the decoder with
    it in one step (a drafted chunk); each is then checked against the model's own greedy choice,
    processors run, exactly as if it had been decoded alone, and the chunk is cut at the first
    disagreement. Only the floating-point rounding of the chunk's products differs."""
    prompt = inputs["input_ids"]
    batch, prompt_length = prompt.shape
    end = prompt_length + max_new_tokens
    ids = prompt.new_full((batch, end), pad_token_id)
    ids[:, :prompt_length] = prompt
    constraint = next((p for p in processors if isinstance(p, GrammarConstraint)), None)
    if jump_forward is None:
        jump_forward = constraint is not None and model.lm_head.weight.dtype == torch.float32
    with torch.inference_mode():
        outputs = model(**inputs, use_cache=True, logits_to_keep=1, return_dict=True)
        decoder = _TextDecoder(model, outputs.cache, inputs["attention_mask"], max_new_tokens)
        logits = outputs.logits  # (batch, chunk, vocabulary): after each token of the last chunk
        draft = ids[:, :0]  # (batch, chunk - 1): the chunk's tokens after its first, to confirm
        unfinished = torch.ones(batch, dtype=torch.bool, device=prompt.device)
        length = prompt_length
        while True:
            for j in range(logits.shape[1]):
                scores = logits[:, j].to(copy=True, dtype=torch.float32)
                for processor in processors:
                    scores = processor(ids[:, :length], scores)
                tokens = torch.where(unfinished, scores.argmax(dim=-1), pad_token_id)
                ids[:, length] = tokens
                length += 1
                unfinished &= tokens != eos_token_id
                if length == end or not unfinished.any():
                    return ids[:, :length]
                if j < draft.shape[1] and not torch.equal(tokens, draft[:, j]):
                    decoder.rewind(length - 1)  # the chunk's later tokens were not written
                    break
            chunk = tokens[:, None]
            if jump_forward:
                forced = constraint.forced_after(tokens.tolist(), length - 1 - prompt_length)
                alive = unfinished.tolist()
                count = min(len(run) for run, live in zip(forced, alive) if live)
                if count:
                    runs = [run[:count] if live else (pad_token_id,) * count for run, live in zip(forced, alive)]
                    chunk = torch.cat((chunk, torch.tensor(runs, dtype=ids.dtype, device=ids.device)), dim=1)
            draft = chunk[:, 1:]
            logits = decoder.step(chunk)


class _TextDecoder:
    """Qwen2.5-VL's text decoder for new tokens after the prompt's forward: the operations of
    `Qwen2_5_VLTextModel` with SDPA attention and a `DynamicCache`, without the modules around
    them. One token per row is the same floating-point computation, op for op; a chunk of several
    (a causal mask within it) rounds its products differently."""

    def __init__(self, model: Qwen2_5_VLForConditionalGeneration, cache, attention_mask: torch.Tensor,
                 max_new_tokens: int):
        text_model = model.model.language_model
        self.embed, self.rotary, self.norm = text_model.embed_tokens, text_model.rotary_emb, text_model.norm
        self.lm_head = model.lm_head
        self.layers = [_LayerWeights.of(layer) for layer in text_model.layers]
        attention = text_model.layers[0].self_attn
        self.head_dim, self.scaling = attention.head_dim, attention.scaling
        self.heads = attention.num_heads
        self.groups = attention.num_key_value_groups
        # Key/value buffers for the whole answer, filled by the prompt's cache; `length` are valid.
        self.prompt_length = prompt_length = attention_mask.shape[1]
        self.keys, self.values = [], []
        for layer in cache.layers:
            for buffers, states in ((self.keys, layer.keys), (self.values, layer.values)):
                buffer = states.new_empty(*states.shape[:2], prompt_length + max_new_tokens, states.shape[3])
                buffer[:, :, :prompt_length] = states
                buffers.append(buffer)
        self.length = prompt_length
        # The rope positions of the answer's tokens: from the prompt's own count of tokens plus the
        # model's offset for its image (`rope_deltas`, set by the prompt's forward), as `generate`
        # counts, on all three axes; their cosines and sines at once (elementwise: the same values).
        first = attention_mask.sum(dim=1, keepdim=True) + model.model.rope_deltas
        positions = first + torch.arange(max_new_tokens, device=first.device)
        cos, sin = (table.unsqueeze(1) for table in self.rotary(self.embed.weight, positions.expand(3, -1, -1)))
        half = self.head_dim // 2
        self.cos, self.sin = cos, torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)  # see `step`'s rope
        # With padding, SDPA gets the padding mask; without, none (as transformers decides).
        self.padding = None if attention_mask.all() else attention_mask.bool()
        self.single = None  # a single token's mask over the whole answer, sliced each step
        if self.padding is not None:
            self.single = self.padding.new_ones(self.padding.shape[0], 1, 1, prompt_length + max_new_tokens)
            self.single[:, 0, 0, :prompt_length] = self.padding

    def rewind(self, length: int) -> None:
        """Forget the cache past `length` tokens (a drafted chunk's rejected tail)."""
        self.length = length

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (batch, count, vocabulary) after each of `tokens` (batch, count), and the cache
        extended by them."""
        batch, count = tokens.shape
        heads = self.heads
        hidden = self.embed(tokens)
        start, self.length = self.length, self.length + count
        answered = start - self.prompt_length  # tokens of the answer before these
        cos, sin = self.cos[:, :, answered: answered + count], self.sin[:, :, answered: answered + count]
        mask = self._mask(start, count)
        linear = functional.linear
        for w, keys, values in zip(self.layers, self.keys, self.values):
            residual = hidden
            hidden = _rms_norm(hidden, w.input_norm, w.eps)
            query, key, value = (
                linear(hidden, weight, bias).view(batch, count, -1, self.head_dim).transpose(1, 2)
                for weight, bias in ((w.q, w.q_bias), (w.k, w.k_bias), (w.v, w.v_bias))
            )
            # Rope on queries and keys together: elementwise, so the same values, in half the ops;
            # rotate_half(x)·sin as roll(x)·sin with rotate_half's negation moved onto the sine's
            # first half (exact: a sign commutes with the product), one call instead of four.
            rotated = torch.cat((query, key), dim=1)
            rotated = rotated * cos + rotated.roll(self.head_dim // 2, dims=-1) * sin
            query, key = rotated[:, :heads], rotated[:, heads:]
            keys[:, :, start: self.length] = key
            values[:, :, start: self.length] = value
            hidden = self._attend(query, keys[:, :, : self.length], values[:, :, : self.length], mask)
            hidden = residual + linear(hidden, w.o)
            residual = hidden
            hidden = _rms_norm(hidden, w.post_norm, w.eps)
            hidden = residual + linear(functional.silu(linear(hidden, w.gate)) * linear(hidden, w.up), w.down)
        return self.lm_head(_rms_norm(hidden, self.norm.weight, self.norm.variance_epsilon))

    def _mask(self, start: int, count: int) -> torch.Tensor | None:
        """SDPA's mask for `count` new tokens after `start`: the padding mask (None without
        padding, as transformers decides), and within a chunk each token sees those before it."""
        if count == 1:
            return None if self.single is None else self.single[:, :, :, : start + 1]
        rows = 1 if self.padding is None else self.padding.shape[0]
        mask = torch.ones(rows, 1, count, start + count, dtype=torch.bool, device=self.cos.device)
        if self.padding is not None:
            mask[:, 0, :, : self.prompt_length] = self.padding[:, None, :]
        mask[:, 0, :, start:] = torch.ones(count, count, dtype=torch.bool, device=mask.device).tril()
        return mask

    def _attend(self, query, keys, values, mask) -> torch.Tensor:
        """transformers' `sdpa_attention_forward` for one query token: grouped heads through SDPA's
        `enable_gqa` without a mask, else each key/value head's queries packed as rows; a chunk
        of several tokens through `enable_gqa` with its mask."""
        batch, heads, count = query.shape[:3]
        if count > 1 or (self.groups > 1 and mask is None):
            output = functional.scaled_dot_product_attention(
                query, keys, values, attn_mask=mask, scale=self.scaling, enable_gqa=self.groups > 1)
        else:
            packed = query.reshape(batch, heads // self.groups, self.groups, self.head_dim)
            output = functional.scaled_dot_product_attention(packed, keys, values, attn_mask=mask, scale=self.scaling)
        output = output.reshape(batch, heads, count, self.head_dim).transpose(1, 2).contiguous()
        return output.reshape(batch, count, -1)


@dataclass(frozen=True)
class _LayerWeights:
    """One decoder layer's parameters (read once per answer, not through the modules each step)."""

    input_norm: torch.Tensor
    post_norm: torch.Tensor
    eps: float  # both norms' (the config's rms_norm_eps)
    q: torch.Tensor
    q_bias: torch.Tensor | None
    k: torch.Tensor
    k_bias: torch.Tensor | None
    v: torch.Tensor
    v_bias: torch.Tensor | None
    o: torch.Tensor
    gate: torch.Tensor
    up: torch.Tensor
    down: torch.Tensor

    @classmethod
    def of(cls, layer) -> _LayerWeights:
        attention, mlp = layer.self_attn, layer.mlp
        return cls(
            layer.input_layernorm.weight, layer.post_attention_layernorm.weight, layer.input_layernorm.variance_epsilon,
            attention.q_proj.weight, attention.q_proj.bias, attention.k_proj.weight, attention.k_proj.bias,
            attention.v_proj.weight, attention.v_proj.bias, attention.o_proj.weight,
            mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight,
        )


def _rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """`Qwen2_5_VLRMSNorm.forward`, op for op."""
    dtype = hidden.dtype
    if dtype != torch.float32:  # (a float32 `to` is the identity, still a call: skipped)
        hidden = hidden.to(torch.float32)
    variance = hidden.pow(2).mean(-1, keepdim=True)
    hidden = hidden * torch.rsqrt(variance + eps)
    return weight * (hidden if dtype == torch.float32 else hidden.to(dtype))


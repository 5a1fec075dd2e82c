"""Configuration of the GDN-2 language model and reader (a transformers `PretrainedConfig`).

Field names follow FLA's GDN-2 models (`hidden_size`, `num_heads`, `head_dim`, `expand_v`, `attn={...}`),
so a config written by FLA loads here unchanged. Every inconsistent combination fails at construction
with a one-line `ValueError`, never later inside a forward pass.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import PretrainedConfig

__all__ = ["GDN2Config"]

GATE_ACTIVATIONS = ("sigmoid", "swish", "silu")
HIDDEN_ACTIVATIONS = ("swish", "silu")
ATTN_DEFAULTS: dict[str, Any] = {
    "layers": [],
    "num_heads": None,
    "num_kv_heads": None,
    "window_size": 2048,
    "rope_theta": 10000.0,
    "qkv_bias": False,
}


class GDN2Config(PretrainedConfig):
    """Shape and switches of a Gated DeltaNet-2 network.

    Args:
        vocab_size (int): tokens in the vocabulary. Default: 32000.
        hidden_size (int): model width. Default: 2048.
        num_hidden_layers (int): blocks. Default: 24.
        num_heads (int): query/key heads of the GDN-2 mixer. Default: 16.
        num_v_heads (int, Optional): value heads (grouped value attention if > `num_heads`). Default: None.
        head_dim (int): key dim K per head. Default: 128.
        expand_v (float): value dim V = `head_dim * expand_v`. Default: 1.0.
        use_short_conv (bool): depthwise causal convs on q/k/v. Default: `True`.
        conv_size (int): conv width. Default: 4.
        conv_bias (bool): bias in the convs. Default: `False`.
        allow_neg_eigval (bool): double the erase gate so `b` spans [0, 2]. Default: `False`.
        gate_act (str): output gate, "sigmoid" (FLA) or "swish" (the paper's reference). Default: "sigmoid".
        hidden_ratio (int): MLP width ratio when `intermediate_size` is None. Default: 4.
        intermediate_size (int, Optional): SwiGLU width. Default: None (2/3 * ratio * hidden, to 256).
        hidden_act (str): MLP activation. Default: "swish".
        norm_eps (float): RMSNorm epsilon. Default: 1e-6.
        attn (dict, Optional): hybrid sliding-window attention, keys `layers` (indices), `num_heads`,
            `num_kv_heads`, `window_size`, `rope_theta`, `qkv_bias`. Default: `None` (pure GDN-2).
        reader_lm_head (bool): `GDN2ForReader` also carries an LM head. Default: `False`.
        reader_question_match (bool): `GDN2ForReader` adds a learned embedding to tokens that also occur in
            the question (DrQA's exact-match feature, input `question_match`). Default: `False`.
        reader_end_shift (bool): the end head at token t + 1 scores "the answer ended at t"
            (`gdn2_model.prompt.align_end_logits`): the end is judged after seeing the next token.
            Default: `False`.
        initializer_range (float): std of the normal init of linear and embedding weights. Default: 0.02.
        fused_ops (bool): in CUDA inference (no autograd), run the conv + SiLU, the decay gate, the gated
            RMSNorm and the SwiGLU product as fused Triton kernels (`gdn2_kernels.layer_ops`); training and
            the CPU always use the PyTorch ops. Default: `True`.

    Example:
        >>> cfg = GDN2Config(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_heads=2, head_dim=32)
        >>> cfg.value_dim
        64
    """

    model_type = "gdn2"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size: int = 32000,
        hidden_size: int = 2048,
        num_hidden_layers: int = 24,
        num_heads: int = 16,
        num_v_heads: int | None = None,
        head_dim: int = 128,
        expand_v: float = 1.0,
        use_short_conv: bool = True,
        conv_size: int = 4,
        conv_bias: bool = False,
        allow_neg_eigval: bool = False,
        gate_act: str = "sigmoid",
        hidden_ratio: int = 4,
        intermediate_size: int | None = None,
        hidden_act: str = "swish",
        norm_eps: float = 1e-6,
        attn: dict[str, Any] | None = None,
        reader_lm_head: bool = False,
        reader_question_match: bool = False,
        reader_end_shift: bool = False,
        initializer_range: float = 0.02,
        fused_ops: bool = True,
        max_position_embeddings: int = 262144,
        use_cache: bool = True,
        pad_token_id: int | None = None,
        bos_token_id: int | None = 1,
        eos_token_id: int | None = 2,
        tie_word_embeddings: bool = False,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_heads = num_heads
        self.num_v_heads = num_v_heads
        self.head_dim = head_dim
        self.expand_v = expand_v
        self.use_short_conv = use_short_conv
        self.conv_size = conv_size
        self.conv_bias = conv_bias
        self.allow_neg_eigval = allow_neg_eigval
        self.gate_act = gate_act
        self.hidden_ratio = hidden_ratio
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.norm_eps = norm_eps
        self.attn = None if attn is None else {**ATTN_DEFAULTS, **attn}
        self.reader_lm_head = reader_lm_head
        self.reader_question_match = reader_question_match
        self.reader_end_shift = reader_end_shift
        self.initializer_range = initializer_range
        self.fused_ops = fused_ops
        self.max_position_embeddings = max_position_embeddings
        self.use_cache = use_cache
        self._validate()
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )

    def _validate(self) -> None:
        """Reject inconsistent shapes and unknown switches now, with the offending value named."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_heads", "head_dim", "conv_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        num_v_heads = self.num_v_heads if self.num_v_heads is not None else self.num_heads
        if num_v_heads < self.num_heads or num_v_heads % self.num_heads:
            raise ValueError(f"num_v_heads={num_v_heads} must be a multiple of num_heads={self.num_heads}")
        if self.expand_v <= 0 or not math.isclose(
            self.head_dim * self.expand_v, round(self.head_dim * self.expand_v), rel_tol=0, abs_tol=1e-6
        ):
            raise ValueError(
                f"expand_v={self.expand_v} times head_dim={self.head_dim} must be a positive integer"
            )
        if self.gate_act not in GATE_ACTIVATIONS:
            raise ValueError(f"gate_act={self.gate_act!r} is unknown; choose one of {GATE_ACTIVATIONS}")
        if self.hidden_act not in HIDDEN_ACTIVATIONS:
            raise ValueError(f"hidden_act={self.hidden_act!r} is unknown; choose one of {HIDDEN_ACTIVATIONS}")
        if self.attn is not None:
            self._validate_attn(self.attn)

    def _validate_attn(self, attn: dict[str, Any]) -> None:
        unknown = set(attn) - set(ATTN_DEFAULTS)
        if unknown:
            raise ValueError(f"attn has unknown keys {sorted(unknown)}; known: {sorted(ATTN_DEFAULTS)}")
        for idx in attn["layers"]:
            if not isinstance(idx, int) or not 0 <= idx < self.num_hidden_layers:
                raise ValueError(
                    f"hybrid attention layer index {idx!r} is out of range [0, {self.num_hidden_layers})"
                )
        heads = attn["num_heads"] if attn["num_heads"] is not None else self.num_heads
        kv_heads = attn["num_kv_heads"] if attn["num_kv_heads"] is not None else heads
        if self.hidden_size % heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not divisible by attn num_heads={heads}")
        if heads % kv_heads:
            raise ValueError(f"attn num_heads={heads} is not divisible by num_kv_heads={kv_heads}")
        if (self.hidden_size // heads) % 2:
            raise ValueError(
                f"attention head dim {self.hidden_size // heads} must be even for rotary embeddings"
            )
        if not isinstance(attn["window_size"], int) or attn["window_size"] < 1:
            raise ValueError(f"attn window_size={attn['window_size']!r} must be a positive integer")

    @property
    def head_v_dim(self) -> int:
        return int(round(self.head_dim * self.expand_v))

    @property
    def value_dim(self) -> int:
        return (self.num_v_heads or self.num_heads) * self.head_v_dim

    @property
    def mlp_intermediate_size(self) -> int:
        if self.intermediate_size is not None:
            return self.intermediate_size
        size = int(self.hidden_size * self.hidden_ratio * 2 / 3)
        return 256 * ((size + 255) // 256)

    def is_attention_layer(self, layer_idx: int) -> bool:
        return self.attn is not None and layer_idx in self.attn["layers"]

"""GDN-2 networks: config, backbone, causal LM and extractive reader, registered with the Auto classes.

from gdn2_model import GDN2Config, GDN2Model, GDN2ForCausalLM, GDN2ForReader, GDN2Cache, streaming_prefill
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForQuestionAnswering

from gdn2_model.cache import GDN2Cache
from gdn2_model.configuration_gdn2 import GDN2Config
from gdn2_model.modeling_gdn2 import (
    GDN2CausalLMOutput,
    GDN2ForCausalLM,
    GDN2ForReader,
    GDN2Model,
    GDN2ModelOutput,
    GDN2PreTrainedModel,
    ReaderOutput,
)
from gdn2_model.streaming import streaming_prefill

AutoConfig.register(GDN2Config.model_type, GDN2Config, exist_ok=True)
AutoModel.register(GDN2Config, GDN2Model, exist_ok=True)
AutoModelForCausalLM.register(GDN2Config, GDN2ForCausalLM, exist_ok=True)
# the reader is an extractive QA head (start/end logits), as AutoModelForQuestionAnswering models are
AutoModelForQuestionAnswering.register(GDN2Config, GDN2ForReader, exist_ok=True)

__all__ = [
    "GDN2Cache",
    "GDN2CausalLMOutput",
    "GDN2Config",
    "GDN2ForCausalLM",
    "GDN2ForReader",
    "GDN2Model",
    "GDN2ModelOutput",
    "GDN2PreTrainedModel",
    "ReaderOutput",
    "streaming_prefill",
]

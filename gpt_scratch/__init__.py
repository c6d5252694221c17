"""gpt_scratch: the GPT of "Build a Large Language Model (From Scratch)" as a Hugging Face transformers model.

Importing the package registers ``gpt_scratch`` with the Auto classes (AutoConfig, AutoModel,
AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer), and marks the model classes so that
``save_pretrained`` ships their code for ``trust_remote_code`` loading. The tokenizer ships no code: its
``tokenizer.json`` makes ``AutoTokenizer`` without the package a fast tokenizer with the same ids.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
)

from .configuration_gpt_scratch import PRESETS, GPTScratchConfig
from .modeling_gpt_scratch import (
    GPTScratchForCausalLM,
    GPTScratchForSequenceClassification,
    GPTScratchModel,
    GPTScratchPreTrainedModel,
)
from .quantization import quantize
from .tokenization_gpt_scratch import (
    GPT2VocabularyNotFoundError,
    GPTScratchTokenizer,
    register_auto_tokenizer,
)

__version__ = "0.1.0"

AutoConfig.register(GPTScratchConfig.model_type, GPTScratchConfig, exist_ok=True)
AutoModel.register(GPTScratchConfig, GPTScratchModel, exist_ok=True)
AutoModelForCausalLM.register(GPTScratchConfig, GPTScratchForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(
    GPTScratchConfig, GPTScratchForSequenceClassification, exist_ok=True
)
register_auto_tokenizer()

GPTScratchConfig.register_for_auto_class()
GPTScratchModel.register_for_auto_class("AutoModel")
GPTScratchForCausalLM.register_for_auto_class("AutoModelForCausalLM")
GPTScratchForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = [
    "PRESETS",
    "GPTScratchConfig",
    "GPTScratchPreTrainedModel",
    "GPTScratchModel",
    "GPTScratchForCausalLM",
    "GPTScratchForSequenceClassification",
    "GPTScratchTokenizer",
    "GPT2VocabularyNotFoundError",
    "quantize",
]

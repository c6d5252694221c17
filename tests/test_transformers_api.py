"""The model as a transformers user tries it, each behaviour side by side with transformers' own GPT-2.

A random GPT-2 (GPT2LMHeadModel) is imported with ``from_gpt2``, so both models compute the same function and every
call below is made on both and compared.
"""

import copy
import json
import shutil
import textwrap

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
)

from gpt_scratch import GPTScratchForCausalLM, GPTScratchForSequenceClassification

from conftest import run_clean_python, tiny_config

SHAPE = dict(n_embd=32, n_layer=2, n_head=4, vocab_size=101, n_positions=48)
PAD = 0


@pytest.fixture(scope="module")
def pair(tmp_path_factory, one_thread) -> tuple[GPT2LMHeadModel, GPTScratchForCausalLM]:
    """(GPT-2, ours with GPT-2's weights), dropout off, in eval mode."""
    folder = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    config = GPT2Config(**SHAPE, bos_token_id=PAD, eos_token_id=PAD, pad_token_id=PAD,
                        resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)  # fmt: skip
    gpt2 = GPT2LMHeadModel(config).eval()
    gpt2.save_pretrained(folder)
    ours = GPTScratchForCausalLM.from_gpt2(folder, pad_token_id=PAD, bos_token_id=PAD, eos_token_id=PAD)
    return gpt2, ours


def random_ids(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, SHAPE["vocab_size"], shape, generator=torch.Generator().manual_seed(seed))


# ---- 1. Trainer's gradient accumulation ------------------------------------------------------------------------


def trainer_first_step(model: torch.nn.Module, tmp_path, accumulation: int) -> dict:
    """Loss and grad norm Trainer logs for one optimizer step over the same 8 rows, in 8/N-row micro-batches."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    ids = random_ids(8, 12, seed=3)
    data = Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})
    args = TrainingArguments(
        output_dir=str(tmp_path / f"run-{accumulation}"), per_device_train_batch_size=8 // accumulation,
        gradient_accumulation_steps=accumulation, max_steps=1, logging_steps=1, learning_rate=0.0,
        report_to=[], save_strategy="no", use_cpu=True, dataloader_num_workers=0, seed=0,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=data)
    trainer.train()
    return next(entry for entry in trainer.state.log_history if "loss" in entry)


def test_trainer_gradient_accumulation_logs_the_loss_and_gradients_of_one_batch(pair, tmp_path):
    """GA=4 over 2-row micro-batches = one 8-row batch, for GPT-2 and for us (we logged 4x the loss before).

    Trainer counts the target tokens for ``num_items_in_batch`` over ``labels[:, 1:]`` for models whose loss is
    ``ForCausalLMLoss`` (ours: 8 x 11 = 88) but over all labels for GPT2LMHeadModel (8 x 12 = 96), so GPT-2's logged
    loss and gradients are ours x 88 / 96; ours is the plain mean over the batch's targets.
    """
    gpt2, ours = pair
    logged = {}
    for name, model in (("gpt2", gpt2), ("ours", ours)):
        one, four = (
            trainer_first_step(model, tmp_path / name, 1),
            trainer_first_step(model, tmp_path / name, 4),
        )
        assert four["loss"] == pytest.approx(one["loss"], rel=1e-4), name
        assert four["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4), name
        logged[name] = one
    ids = random_ids(8, 12, seed=3)
    with torch.no_grad():
        assert logged["ours"]["loss"] == pytest.approx(ours(ids, labels=ids).loss.item(), rel=1e-4)
    assert logged["gpt2"]["loss"] == pytest.approx(logged["ours"]["loss"] * 88 / 96, rel=1e-4)
    assert logged["gpt2"]["grad_norm"] == pytest.approx(logged["ours"]["grad_norm"] * 88 / 96, rel=1e-3)


def test_num_items_in_batch_divides_the_summed_loss(pair):
    gpt2, ours = pair
    ids = random_ids(2, 9)
    labels = ids.clone()
    labels[0, :4] = -100
    for model in (gpt2, ours):
        mean = model(ids, labels=labels).loss
        summed = model(ids, labels=labels, num_items_in_batch=torch.tensor(1)).loss
        targets = (labels[:, 1:] != -100).sum()
        torch.testing.assert_close(summed, mean * targets)


@pytest.mark.parametrize("problem_type", ["single_label_classification", "regression"])
def test_classifier_loss_honours_num_items_in_batch(problem_type):
    torch.manual_seed(0)
    config = GPT2Config(**SHAPE, pad_token_id=PAD, bos_token_id=PAD, eos_token_id=PAD,
                        num_labels=3 if problem_type != "regression" else 1)  # fmt: skip
    config.problem_type = problem_type
    ours = GPTScratchForSequenceClassification(
        tiny_config(vocab_size=101, context_length=48, emb_dim=32, n_heads=4,
                    num_labels=config.num_labels, problem_type=problem_type,
                    bos_token_id=PAD, eos_token_id=PAD, pad_token_id=PAD)
    ).eval()  # fmt: skip
    gpt2 = GPT2ForSequenceClassification(config).eval()
    ids = random_ids(4, 7)
    labels = torch.tensor([0, 2, 1, 1]) if problem_type != "regression" else torch.randn(4)
    with torch.no_grad():
        torch.testing.assert_close(  # GPT-2's classifier ignores num_items_in_batch: N accumulated batches = N x
            gpt2(ids, labels=labels, num_items_in_batch=torch.tensor(8)).loss, gpt2(ids, labels=labels).loss
        )
        mean = ours(ids, labels=labels).loss
        torch.testing.assert_close(
            ours(ids, labels=labels, num_items_in_batch=torch.tensor(8)).loss, mean * 4 / 8
        )


# ---- 2. past_key_values -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["past_key_values", "cache"])
def test_manual_decoding_loop_with_the_returned_cache_equals_a_full_forward(pair, name):
    ids = random_ids(2, 10)
    for model in pair:
        with torch.no_grad():
            full = model(ids).logits
            out = model(ids[:, :6], use_cache=True)
            steps = [out.logits]
            for t in range(6, 10):
                out = model(ids[:, t : t + 1], use_cache=True, **{name: out.cache})
                steps.append(out.logits)
        torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_unknown_keyword_arguments_are_rejected(pair):
    _, ours = pair
    with pytest.raises(TypeError, match="past_key_value"):
        ours(random_ids(1, 4), past_key_value=None)  # a typo: silently ignored before
    with pytest.raises(TypeError, match="atention_mask"):
        ours.model(random_ids(1, 4), atention_mask=torch.ones(1, 4))


# ---- 3. classifier without attention mask -----------------------------------------------------------------------


def test_right_padded_classifier_batch_without_mask_reads_the_last_real_token(pair, tmp_path):
    gpt2, ours = pair
    folder = tmp_path / "lm"
    ours.save_pretrained(folder)
    classifier = GPTScratchForSequenceClassification.from_pretrained(folder, num_labels=2).eval()
    ids = random_ids(2, 8)
    padded = ids.clone()
    padded[1, 5:] = PAD
    with torch.no_grad():
        batch = classifier(padded).logits
        alone = classifier(padded[1:, :5]).logits
    torch.testing.assert_close(batch[1], alone[0], atol=1e-5, rtol=1e-5)
    # GPT-2's classifier does the same: the padded row equals the row alone
    gpt2_classifier = GPT2ForSequenceClassification(gpt2.config).eval()
    gpt2_classifier.config.pad_token_id = PAD
    with torch.no_grad():
        torch.testing.assert_close(
            gpt2_classifier(padded).logits[1], gpt2_classifier(padded[1:, :5]).logits[0], atol=1e-5, rtol=1e-5
        )


# ---- 4. every class of the modeling file in auto_map ------------------------------------------------------------

ANY_AUTO_CLASS = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, pipeline

    folder = sys.argv[1]
    ids = torch.tensor([[5, 17, 42, 3]])
    backbone = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    classifier = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, num_labels=3)
    features = pipeline("feature-extraction", model=folder, trust_remote_code=True)("Hello, do you like tea?")
    print(json.dumps({
        "backbone": type(backbone).__name__, "hidden_sum": backbone(ids).last_hidden_state.sum().item(),
        "classifier": type(classifier).__name__, "num_labels": classifier.score.out_features,
        "feature_shape": list(torch.tensor(features).shape),
    }))
    """
)


def test_a_causal_lm_folder_loads_as_every_auto_class_in_a_clean_process(tmp_path):
    from gpt_scratch import GPTScratchTokenizer

    torch.manual_seed(0)  # GPT-2's whole vocabulary, for the pipeline's tokenizer
    ours = GPTScratchForCausalLM(tiny_config(context_length=32, drop_rate=0.1)).eval()
    ours.save_pretrained(tmp_path / "saved")
    GPTScratchTokenizer().save_pretrained(tmp_path / "saved")
    auto_map = json.loads((tmp_path / "saved" / "config.json").read_text())["auto_map"]
    assert set(auto_map) >= {
        "AutoConfig",
        "AutoModel",
        "AutoModelForCausalLM",
        "AutoModelForSequenceClassification",
    }
    hub_copy = shutil.copytree(tmp_path / "saved", tmp_path / "elsewhere" / "model")
    result = run_clean_python(ANY_AUTO_CLASS, str(hub_copy), cwd=tmp_path / "elsewhere")
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    with torch.no_grad():
        expected = ours.model(torch.tensor([[5, 17, 42, 3]])).last_hidden_state.sum().item()
    assert got["backbone"] == "GPTScratchModel" and abs(got["hidden_sum"] - expected) < 1e-3
    assert got["classifier"] == "GPTScratchForSequenceClassification" and got["num_labels"] == 3
    assert got["feature_shape"] == [1, 7, 16]  # 7 tokens of "Hello, do you like tea?", emb_dim 16


# ---- 5. attention implementations and output_attentions ----------------------------------------------------------


def test_output_attentions_under_eager_equal_gpt2s(pair):
    gpt2, ours = pair
    ids = random_ids(2, 9)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    for model in pair:
        model.set_attn_implementation("eager")
    try:
        assert ours.config._attn_implementation == "eager"
        with torch.no_grad():
            theirs = gpt2(ids, attention_mask=torch.ones_like(ids), output_attentions=True).attentions
            mine = ours(ids, attention_mask=torch.ones_like(ids), output_attentions=True).attentions
            padded = ours(ids, attention_mask=mask, output_attentions=True).attentions
        assert len(mine) == len(theirs) == SHAPE["n_layer"]
        for a, b in zip(mine, theirs, strict=True):
            assert a.shape == (2, SHAPE["n_head"], 9, 9)
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        assert torch.all(padded[0][0, :, 3:, :3] == 0)  # real tokens give no weight to padding
        generated = ours.generate(ids[:1, :4], attention_mask=torch.ones(1, 4, dtype=torch.long), max_new_tokens=3,
                                  do_sample=False, output_attentions=True, return_dict_in_generate=True)  # fmt: skip
        first_step = generated.attentions[0]  # one (B, heads, prompt, prompt) tensor per layer
        assert len(generated.attentions) == 3 and first_step[0].shape == (1, SHAPE["n_head"], 4, 4)
    finally:
        for model in pair:
            model.set_attn_implementation("sdpa")


@pytest.mark.parametrize("implementation", ["eager", "flex_attention"])
def test_every_attention_implementation_gives_sdpa_logits(pair, implementation):
    _, ours = pair
    ids = random_ids(2, 9)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    with torch.no_grad():
        expected = ours(ids, attention_mask=mask).logits
        ours.set_attn_implementation(implementation)
        try:
            got = ours(ids, attention_mask=mask).logits
        finally:
            ours.set_attn_implementation("sdpa")
    torch.testing.assert_close(got[0, 2:], expected[0, 2:], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[1], expected[1], atol=1e-4, rtol=1e-4)


# ---- 9. PEFT's default targets ----------------------------------------------------------------------------------


def test_lora_config_without_targets_adapts_the_books_layers(pair):
    from peft import LoraConfig, get_peft_model

    from gpt_scratch.workflows.lora import LORA_TARGET_MODULES

    gpt2, ours = pair
    adapted = {}
    for name, model in (("gpt2", gpt2), ("ours", ours)):
        peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=2))
        adapted[name] = {
            n.rsplit(".lora_A", 1)[0] for n, _ in peft_model.named_parameters() if ".lora_A." in n
        }
        assert sum(p.numel() for p in peft_model.parameters() if p.requires_grad) > 0
    assert adapted["gpt2"] == {f"base_model.model.transformer.h.{i}.attn.c_attn" for i in range(2)}
    assert adapted["ours"] == {
        f"base_model.model.model.trf_blocks.{i}.{target}" for i in range(2) for target in LORA_TARGET_MODULES
    }


# ---- 6. torch.compile, torch.export, ExecuTorch, ONNX -----------------------------------------------------------


class LogitsOf(torch.nn.Module):
    """input_ids, attention_mask -> logits: the plain-tensor signature exporters want."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def padded_batch(length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = random_ids(2, length, seed=seed)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding in row 0
    return ids, mask


def test_compile_fullgraph_with_a_mask_has_no_graph_break_like_gpt2(pair):
    import torch._dynamo

    ids, mask = padded_batch(9, seed=4)
    for model in pair:
        torch._dynamo.reset()
        explained = torch._dynamo.explain(LogitsOf(model))(ids, mask)
        assert explained.graph_break_count == 0, (type(model).__name__, explained.break_reasons)
        assert explained.graph_count == 1


def test_torch_export_with_a_dynamic_length(pair):
    _, ours = pair
    ids, mask = padded_batch(9, seed=4)
    length = torch.export.Dim("length", min=2, max=SHAPE["n_positions"])
    exported = torch.export.export(
        LogitsOf(ours), (ids, mask), dynamic_shapes={"input_ids": {1: length}, "attention_mask": {1: length}}
    )
    for other_length in (5, 17):
        ids, mask = padded_batch(other_length, seed=other_length)
        with torch.no_grad():
            torch.testing.assert_close(
                exported.module()(ids, mask), LogitsOf(ours)(ids, mask), atol=1e-5, rtol=1e-5
            )


def test_onnx_export_runs_in_onnxruntime_with_eager_logits(pair, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    _, ours = pair
    ids, mask = padded_batch(9, seed=4)
    length = torch.export.Dim("length", min=2, max=SHAPE["n_positions"])
    program = torch.onnx.export(
        LogitsOf(ours), (ids, mask), dynamo=True, input_names=["input_ids", "attention_mask"],
        output_names=["logits"], dynamic_shapes={"input_ids": {1: length}, "attention_mask": {1: length}},
    )  # fmt: skip
    program.save(str(tmp_path / "model.onnx"))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    ids, mask = padded_batch(13, seed=5)
    (logits,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        expected = LogitsOf(ours)(ids, mask)
    got = torch.from_numpy(logits)
    assert got.shape == expected.shape
    # every real token (padding positions attend to nothing: their values are unspecified in any runtime)
    torch.testing.assert_close(got[0, 3:], expected[0, 3:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], expected[1], atol=1e-5, rtol=1e-5)


def test_executorch_static_cache_export_decodes_like_the_full_forward(pair):
    from transformers import GenerationConfig
    from transformers.integrations.executorch import convert_and_export_with_cache

    ids = random_ids(1, 8, seed=6)
    for model in pair:
        model.generation_config = GenerationConfig(
            use_cache=True, cache_implementation="static", cache_config={"batch_size": 1, "max_cache_len": 16}
        )
        try:
            exported = convert_and_export_with_cache(model)
        finally:
            model.generation_config = GenerationConfig(bos_token_id=PAD, eos_token_id=PAD, pad_token_id=PAD)
        with torch.no_grad():
            full = model(ids).logits[0]
            steps = [
                exported.module()(input_ids=ids[:, i : i + 1], cache_position=torch.tensor([i]))[0, -1]
                for i in range(ids.shape[1])
            ]  # one token at a time through the exported static cache, as ExecuTorch's runner does
        torch.testing.assert_close(torch.stack(steps), full, atol=1e-5, rtol=1e-5, msg=type(model).__name__)


# ---- 10. the keywords transformers passes: generate's tokenizer (stop strings), GPT-2's own ---------------------


def test_forward_accepts_gpt2s_keywords_and_rejects_only_misspellings(pair):
    gpt2, ours = pair
    ids, types = random_ids(2, 7), random_ids(2, 7, seed=5)
    with torch.no_grad():
        for name in ("token_type_ids",):  # GPT-2 adds their token embedding: so do we
            torch.testing.assert_close(ours(ids, **{name: types}).logits, gpt2(ids, **{name: types}).logits,
                                       atol=1e-5, rtol=1e-5)  # fmt: skip
        plain = gpt2(ids).logits
        for model in pair:  # accepted as None, as GPT-2 accepts them
            none_kwargs = dict(encoder_hidden_states=None, encoder_attention_mask=None, tokenizer=object())
            torch.testing.assert_close(model(ids, **none_kwargs).logits, plain, atol=1e-5, rtol=1e-5)
        # transformers 4's cache_position: the new tokens' positions, as GPT-2 read them
        cache = ours(ids[:, :4], use_cache=True).cache
        step = ours(ids[:, 4:], cache=cache, cache_position=torch.arange(4, 7)).logits
        torch.testing.assert_close(step, plain[:, 4:], atol=1e-5, rtol=1e-5)
    for model in pair:  # an encoder's states without cross-attention: refused by both
        with pytest.raises(ValueError, match="cross"):
            model(ids, encoder_hidden_states=torch.zeros(2, 3, SHAPE["n_embd"]))
    with pytest.raises(ValueError, match="head_mask"):  # would change the result: never silently ignored
        ours(ids, head_mask=torch.ones(SHAPE["n_layer"], SHAPE["n_head"]))
    with pytest.raises(TypeError, match="token_typ_ids"):
        ours(ids, token_typ_ids=types)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, one_thread) -> dict:
    """A tiny gpt_scratch model with GPT-2's vocabulary, its folder (Alpaca chat template), and its save_gpt2
    export loaded as GPT2LMHeadModel with transformers' own GPT-2 tokenizer."""
    from transformers import AutoTokenizer

    from gpt_scratch import GPTScratchTokenizer
    from gpt_scratch.tokenization_gpt_scratch import ALPACA_CHAT_TEMPLATE

    torch.manual_seed(0)
    ours = GPTScratchForCausalLM(tiny_config(qkv_bias=True, tie_word_embeddings=True)).eval()
    ours.generation_config.max_new_tokens = 7
    folder, export = tmp_path_factory.mktemp("ours"), tmp_path_factory.mktemp("gpt2-export")
    tokenizer = GPTScratchTokenizer()
    tokenizer.chat_template = ALPACA_CHAT_TEMPLATE
    ours.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ours = GPTScratchForCausalLM.from_pretrained(folder).eval()
    ours.save_gpt2(export)
    gpt2 = GPT2LMHeadModel.from_pretrained(export).eval()
    return dict(ours=ours, tokenizer=tokenizer, gpt2=gpt2, gpt2_tokenizer=AutoTokenizer.from_pretrained(export),
                folder=folder, export=export)  # fmt: skip


def test_stop_strings_through_generate_and_a_pipeline_as_gpt2(exported):
    from transformers import pipeline

    ours, gpt2 = exported["ours"], exported["gpt2"]
    prompt = "Hello, do you like tea?"
    inputs = exported["tokenizer"](prompt, return_tensors="pt")
    free = gpt2.generate(**inputs, max_new_tokens=12, do_sample=False)
    text = exported["gpt2_tokenizer"].decode(free[0, inputs.input_ids.shape[1] :])
    stop = text[len(text) // 2 : len(text) // 2 + 2]  # two characters in the middle of what GPT-2 would write
    runs = {}
    for name, model, tokenizer in (("ours", ours, exported["tokenizer"]),
                                   ("gpt2", gpt2, exported["gpt2_tokenizer"])):  # fmt: skip
        stopped = model.generate(
            **inputs, max_new_tokens=12, do_sample=False, stop_strings=[stop], tokenizer=tokenizer
        )
        generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
        piped = generator(prompt, max_new_tokens=12, do_sample=False, stop_sequence=stop)[0]["generated_text"]
        runs[name] = (stopped.tolist(), piped)
    assert runs["ours"] == runs["gpt2"]
    stopped, piped = runs["ours"]
    assert len(stopped[0]) < free.shape[1] and stop in piped and len(piped) < len(prompt + text)


# ---- 11. a passed cache is always used ---------------------------------------------------------------------------


def test_a_passed_cache_is_used_when_the_config_says_use_cache_false(pair):
    """Trainer leaves config.use_cache=False after training: a cache passed to the forward is still used (GPT-2
    too); use_cache only decides whether one is returned."""
    ids = random_ids(2, 10)
    results = []
    for model in pair:
        model.config.use_cache = False
        try:
            with torch.no_grad():
                full = model(ids).logits
                cache = model(ids[:, :6], use_cache=True).cache
                step = model(ids[:, 6:], past_key_values=cache)
        finally:
            model.config.use_cache = True
        torch.testing.assert_close(step.logits, full[:, 6:], atol=1e-5, rtol=1e-5)
        assert step.cache is None and cache.get_seq_length() == 10  # used, extended, not returned
        results.append(step.logits)
    torch.testing.assert_close(results[0], results[1], atol=1e-5, rtol=1e-5)


# ---- 12. save_gpt2 keeps the chat template and writes generation_config.json -----------------------------------


def test_save_gpt2_keeps_the_chat_template_and_the_generation_config(exported):
    from transformers import GenerationConfig

    export = exported["export"]
    assert GenerationConfig.from_pretrained(export).max_new_tokens == 7
    assert exported["gpt2"].generation_config.max_new_tokens == 7
    messages = [
        {"role": "system", "content": "Rewrite the sentence."},
        {"role": "user", "content": "It is cold."},
    ]
    ours, theirs = (tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                    for tok in (exported["tokenizer"], exported["gpt2_tokenizer"]))  # fmt: skip
    assert theirs == ours and theirs.endswith("### Response:\n")


# ---- 13. packed sequences (padding-free training): positions restart, sequences stay apart ----------------------


def packed_row(lengths: list[int], seed: int = 7) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """One row of sequences of `lengths` back to back and its restarting position_ids; and each sequence."""
    sequences = [random_ids(1, n, seed=seed + i) for i, n in enumerate(lengths)]
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    return torch.cat(sequences, dim=1), positions, sequences


@pytest.mark.parametrize("implementation", ["sdpa", "eager", "flex_attention"])
def test_packed_logits_equal_each_sequence_alone(pair, implementation):
    """Longer in all than the context (48): the limit is on the positions. Each sequence attends only to itself
    (create_causal_mask's block-diagonal mask from the restarting position_ids), as in GPT-2."""
    gpt2, ours = pair
    ids, positions, sequences = packed_row([30, 12, 25])
    with torch.no_grad():
        theirs = gpt2(ids, position_ids=positions, use_cache=False).logits[0]  # GPT-2 has no flex attention
        ours.set_attn_implementation(implementation)
        try:
            packed = ours(ids, position_ids=positions, use_cache=False).logits[0]
            alone = torch.cat([ours(s).logits[0] for s in sequences])
        finally:
            ours.set_attn_implementation("sdpa")
    torch.testing.assert_close(packed, alone, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(packed, theirs, atol=1e-4, rtol=1e-4)


def test_a_position_past_the_context_is_a_clear_error(pair):
    _, ours = pair
    with pytest.raises(
        ValueError, match="Position 48 of position_ids exceeds the model's context_length of 48"
    ):
        ours(random_ids(1, 3), position_ids=torch.tensor([[0, 1, 48]]))


def test_flattening_collator_batch_trains_like_separate_rows(pair):
    """DataCollatorWithFlattening (padding-free) packs two examples in one row: its loss is theirs."""
    from transformers import DataCollatorWithFlattening

    _, ours = pair
    examples = [{"input_ids": random_ids(1, n, seed=n)[0].tolist()} for n in (40, 30)]
    batch = DataCollatorWithFlattening(return_tensors="pt")(examples)
    assert batch["input_ids"].shape == (1, 70) and "attention_mask" not in batch
    with torch.no_grad():
        packed = ours(**batch, use_cache=False).loss
        rows = [torch.tensor([e["input_ids"]]) for e in examples]
        summed = sum(ours(r, labels=r).loss * (r.shape[1] - 1) for r in rows)
    torch.testing.assert_close(packed, summed / 68, atol=1e-5, rtol=1e-5)

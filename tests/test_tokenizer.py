import pytest

pytest.importorskip("transformers")
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, Qwen2TokenizerFast

from rexomni_core.coords import COORDINATE_TOKENS
from rexomni_core.grammar import serialize
from rexomni_core.nano.vocabulary import SHAPE_CATEGORIES
from rexomni_core.regions import Box
from rexomni_core.tasks import SYSTEM_PROMPT, build_prompt
from rexomni_core.tokenizer import (
    QWEN_SPECIAL_TOKENS,
    build_nano_tokenizer,
    check_coordinate_tokens,
    coordinate_token_ids,
    make_speak_coordinates,
)


@pytest.fixture(scope="module")
def nano_tokenizer():
    return build_nano_tokenizer()


def _tiny_qwen2_tokenizer() -> Qwen2TokenizerFast:
    """A Qwen2-style byte-level BPE that knows nothing about coordinates (built offline)."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train_from_iterator(["a red circle and a blue star"] * 10, trainer=trainer)
    backend.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    return Qwen2TokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def test_nano_tokenizer_speaks_coordinates_and_qwen_specials(nano_tokenizer):
    check_coordinate_tokens(nano_tokenizer)
    ids = coordinate_token_ids(nano_tokenizer)
    assert len(set(ids)) == 1000
    for token in QWEN_SPECIAL_TOKENS:
        assert len(nano_tokenizer.encode(token, add_special_tokens=False)) == 1, token
    assert nano_tokenizer.eos_token == "<|im_end|>"
    assert nano_tokenizer.image_token == "<|image_pad|>"
    assert len(nano_tokenizer) < 2100


def test_nano_vocabulary_covers_the_world_compactly(nano_tokenizer):
    for phrase in SHAPE_CATEGORIES:
        assert len(nano_tokenizer.encode(" " + phrase, add_special_tokens=False)) == 2, phrase
    prompt = build_prompt("detection", ["red circle", "blue star"])
    assert len(nano_tokenizer.encode(prompt)) < 30
    # Byte-level: any text, however foreign, round-trips exactly.
    text = "Zürich 東京 WORD42 {\"a\": [1]}"
    assert nano_tokenizer.decode(nano_tokenizer.encode(text)) == text


def test_answers_round_trip_with_one_token_per_coordinate(nano_tokenizer):
    answer = serialize([Box("red circle", [10, 20, 50, 60])], 100, 100) + "<|im_end|>"
    ids = nano_tokenizer.encode(answer, add_special_tokens=False)
    tokens = nano_tokenizer.convert_ids_to_tokens(ids)
    assert sum(t in COORDINATE_TOKENS for t in tokens) == 4
    assert nano_tokenizer.decode(ids, skip_special_tokens=False) == answer


def test_chat_template_is_qwen25vl(nano_tokenizer):
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "PROMPT"}]},
    ]
    text = nano_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>PROMPT<|im_end|>\n<|im_start|>assistant\n"
    )


def test_save_and_reload(nano_tokenizer, tmp_path):
    nano_tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    check_coordinate_tokens(again)
    text = build_prompt("pointing", ["green star"]) + "<5><6><|im_end|>"
    assert again.encode(text) == nano_tokenizer.encode(text)
    assert again.chat_template == nano_tokenizer.chat_template
    assert again.padding_side == "left"


def test_check_rejects_a_tokenizer_without_coordinates():
    with pytest.raises(ValueError, match="single token"):
        check_coordinate_tokens(_tiny_qwen2_tokenizer())


@pytest.mark.parametrize("init", ["sinusoidal", "mean", None])
def test_make_speak_coordinates_adds_tokens_and_resizes(init):
    tokenizer = _tiny_qwen2_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    old_rows = model.get_input_embeddings().weight[: len(tokenizer)].clone()
    assert make_speak_coordinates(tokenizer, model, init=init) == 1000
    check_coordinate_tokens(tokenizer)
    embeddings = model.get_input_embeddings().weight
    assert embeddings.shape[0] >= len(tokenizer)
    assert model.get_output_embeddings().weight.shape[0] == embeddings.shape[0]
    assert torch.equal(embeddings[: len(old_rows)], old_rows)  # existing rows untouched
    ids = torch.tensor(coordinate_token_ids(tokenizer))
    if init == "sinusoidal":
        coords = embeddings[ids]
        near = torch.cosine_similarity(coords[500], coords[501], dim=0)
        far = torch.cosine_similarity(coords[500], coords[900], dim=0)
        assert near > 0.9 and near > far
    # Idempotent: a second call adds nothing and keeps the size.
    size = embeddings.shape[0]
    assert make_speak_coordinates(tokenizer, model, init=init) == 0
    assert model.get_input_embeddings().weight.shape[0] == size


def test_make_speak_coordinates_rejects_unknown_init():
    with pytest.raises(ValueError, match="init"):
        make_speak_coordinates(_tiny_qwen2_tokenizer(), init="random")

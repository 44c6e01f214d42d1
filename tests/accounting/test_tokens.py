"""Token counting: published reference values, model-name mapping, chat overhead,
estimates, laziness and thread safety."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
import quicktok  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from lockgate.accounting import (
    Tokenizer,
    count_message_tokens,
    count_text_tokens,
    estimate_tokens,
    tokenizer_for,
)
from lockgate.accounting._tokens import _BundledTokenizer
from lockgate.providers._types import TokenCount

ESTIMATE = "estimate"  # the documented `TokenCount.tokenizer` of estimates

# The example of OpenAI's cookbook "How to count tokens with tiktoken"; the cookbook
# reports 129 prompt tokens for gpt-3.5-turbo / gpt-4 and 124 for gpt-4o / gpt-4o-mini,
# both as counted by its rule and as billed by the API.
COOKBOOK_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates "
        "corporate jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on "
        "opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the "
        "client deliverable.",
    },
]


# --- published reference values -------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "text", "ids"),
    [
        # tiktoken's README and OpenAI's cookbook.
        ("gpt-4", "hello world", [15339, 1917]),
        ("gpt-4", "tiktoken is great!", [83, 1609, 5963, 374, 2294, 0]),
        ("gpt-3.5-turbo", "China is great!", [23078, 374, 2294, 0]),
        ("gpt-4o-mini", "tiktoken is great!", [83, 8251, 2488, 382, 2212, 0]),
    ],
)
def test_encode_matches_published_token_ids(model: str, text: str, ids: list[int]) -> None:
    tokenizer = tokenizer_for("openai", model)
    assert tokenizer is not None
    assert tokenizer.encode(text) == ids
    assert tokenizer.count(text) == len(ids)


@pytest.mark.parametrize(
    ("model", "text", "tokens"),
    [
        ("gpt-4o", "hello world", 2),
        ("gpt-4", "hello world", 2),
        # The cookbook's encoding comparison, cl100k_base column.
        ("gpt-4", "antidisestablishmentarianism", 6),
        ("gpt-4", "2 + 2 = 4", 7),
        ("gpt-4", "お誕生日おめでとう", 9),
    ],
)
def test_count_matches_published_counts(model: str, text: str, tokens: int) -> None:
    assert count_text_tokens("openai", model, text).tokens == tokens


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-3.5-turbo-0125", 129),
        ("gpt-4-0613", 129),
        ("gpt-4o-2024-08-06", 124),
        ("gpt-4o-mini-2024-07-18", 124),
    ],
)
def test_message_count_matches_cookbook(model: str, expected: int) -> None:
    count = count_message_tokens("openai", model, COOKBOOK_MESSAGES)
    assert count.tokens == expected
    assert count.exact


def test_quicktok_documented_example_round_trips() -> None:
    # quicktok's README: get_encoding("cl100k_base").encode("hello world") == tiktoken's.
    encoding = quicktok.get_encoding("cl100k_base")
    tokenizer = tokenizer_for("openai", "gpt-4")
    assert tokenizer is not None
    assert tokenizer.encode("hello world") == encoding.encode("hello world")
    assert encoding.decode(tokenizer.encode("Hello, quicktok! 日本語 🚀")) == (
        "Hello, quicktok! 日本語 🚀"
    )


# --- which vocabulary a model name gets --------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4o", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::9abcDEF", "o200k_base"),
        ("GPT-4o-Mini", "o200k_base"),
        ("gpt-4.1-nano-2025-04-14", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-2024-12-17", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini-2025-04-16", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4-turbo-2024-04-09", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("gpt-oss-20b", "o200k_harmony"),
        ("meta-llama/Llama-3.1-8B-Instruct", "llama3"),
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3"),
        ("llama3.2:3b", "llama3"),
        ("llama-3.3-70b-versatile", "llama3"),
        ("Qwen/Qwen2.5-Coder-1.5B-Instruct", "qwen3"),
        ("qwen2.5-coder-1.5b-instruct", "qwen3"),
        ("Qwen/Qwen3-8B", "qwen3"),
        ("qwen2-7b-instruct", "qwen3"),
        ("qwen-max", "qwen3"),
        ("Qwen/QwQ-32B", "qwen3"),
    ],
)
def test_model_names_map_to_their_vocabulary(model: str, encoding: str) -> None:
    tokenizer = tokenizer_for("openai", model)
    assert tokenizer is not None
    assert tokenizer.name == encoding


@pytest.mark.parametrize(
    "model",
    [
        "claude-3-5-sonnet-20241022",
        "mistral-7b-instruct",
        "llama-30b",  # LLaMA 1, not Llama 3
        "codellama-34b-instruct",
        "llama-2-7b-chat",
        "omni-moderation-latest",
        "gpt-3",
        "o5-preview",
        "",
    ],
)
def test_unknown_models_have_no_tokenizer(model: str) -> None:
    assert tokenizer_for("openai", model) is None


def test_vocabulary_is_chosen_by_model_name_not_provider_type() -> None:
    for provider_type in ("openai", "local", "replay"):
        tokenizer = tokenizer_for(provider_type, "meta-llama/Llama-3.1-8B-Instruct")
        assert tokenizer is not None
        assert tokenizer.name == "llama3"


def test_anthropic_never_gets_a_guessed_tokenizer() -> None:
    assert tokenizer_for("anthropic", "claude-3-5-sonnet-20241022") is None
    assert tokenizer_for("anthropic", "gpt-4o") is None


def test_tokenizers_are_shared_and_satisfy_the_protocol() -> None:
    first = tokenizer_for("openai", "gpt-4o")
    second = tokenizer_for("openai", "o3-mini")
    assert first is second
    assert isinstance(first, Tokenizer)


def test_special_token_text_counts_as_plain_text() -> None:
    # Hosted APIs treat "<|endoftext|>" in user content as text; counting must not raise.
    count = count_text_tokens("openai", "gpt-4", "<|endoftext|>")
    assert count == TokenCount(tokens=7, exact=True, tokenizer="cl100k_base")
    tokenizer = tokenizer_for("openai", "gpt-4")
    assert tokenizer is not None
    assert 100257 not in tokenizer.encode("<|endoftext|>")  # the special token's id


# --- estimates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider_type", "model"),
    [("anthropic", "claude-3-5-sonnet-20241022"), ("openai", "mistral-large-latest")],
)
def test_unknown_tokenizer_gives_a_marked_estimate(provider_type: str, model: str) -> None:
    assert count_text_tokens(provider_type, model, "x" * 9) == TokenCount(3, False, ESTIMATE)
    assert count_text_tokens(provider_type, model, "") == TokenCount(0, False, ESTIMATE)


def test_estimate_is_ceil_of_characters_over_four() -> None:
    assert [estimate_tokens("a" * n) for n in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]


def test_message_estimate_adds_openai_style_overhead() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},  # 2 + 3 tokens + 3 overhead
        {"role": "user", "content": "Hello there!"},  # 1 + 3 tokens + 3 overhead
    ]
    count = count_message_tokens("anthropic", "claude-3-5-haiku-latest", messages)
    assert count == TokenCount(2 + 3 + 3 + 1 + 3 + 3 + 3, exact=False, tokenizer=ESTIMATE)


# --- chat overhead -----------------------------------------------------------------------


def _exact(model: str, text: str) -> int:
    tokenizer = tokenizer_for("openai", model)
    assert tokenizer is not None
    return tokenizer.count(text)


def test_openai_rule_counts_name_and_priming() -> None:
    messages = [{"role": "user", "name": "ada", "content": "What is 2+2?"}]
    count = count_message_tokens("openai", "gpt-4o", messages)
    expected = 3 + _exact("gpt-4o", "user") + _exact("gpt-4o", "ada") + 1
    expected += _exact("gpt-4o", "What is 2+2?") + 3
    assert count == TokenCount(expected, True, "o200k_base")


def test_unset_fields_of_sdk_messages_change_nothing() -> None:
    # openai-python's model_dump() of an assistant message carries None-valued fields.
    plain = [{"role": "assistant", "content": "Done."}]
    dumped = [
        {"role": "assistant", "content": "Done.", "refusal": None, "tool_calls": None},
    ]
    assert count_message_tokens("openai", "gpt-4o", dumped) == count_message_tokens(
        "openai", "gpt-4o", plain
    )


def test_text_parts_count_like_plain_content() -> None:
    plain = [{"role": "user", "content": "Summarise this ticket."}]
    parts = [{"role": "user", "content": [{"type": "text", "text": "Summarise this ticket."}]}]
    assert count_message_tokens("openai", "gpt-4o", parts) == count_message_tokens(
        "openai", "gpt-4o", plain
    )


@pytest.mark.parametrize(("detail", "image_tokens"), [("high", 765), ("low", 85)])
def test_image_parts_are_estimated(detail: str, image_tokens: int) -> None:
    text_only = [{"role": "user", "content": [{"type": "text", "text": "What is this?"}]}]
    with_image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.invalid/a.png", "detail": detail},
                },
            ],
        }
    ]
    base = count_message_tokens("openai", "gpt-4o", text_only)
    count = count_message_tokens("openai", "gpt-4o", with_image)
    assert count.tokens == base.tokens + image_tokens
    assert not count.exact
    assert count.tokenizer == "o200k_base"


def test_tool_calls_make_the_count_an_estimate() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, cloudy"},
    ]
    for model in ("gpt-4o", "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen3-8B"):
        count = count_message_tokens("openai", model, messages)
        assert not count.exact, model
        without_calls = count_message_tokens("openai", model, messages[:1])
        assert count.tokens > without_calls.tokens + 10, model


def _render_llama31(messages: list[dict[str, str]]) -> str:
    """Llama 3.1 Instruct's chat template, as transformers renders it without tools."""
    system = ""
    if messages and messages[0]["role"] == "system":
        system = messages[0]["content"].strip()
        messages = messages[1:]
    out = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        f"{system}<|eot_id|>"
    )
    for m in messages:
        out += (
            f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>"
        )
    return out + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def _render_chatml(messages: list[dict[str, str]], default_system: str | None) -> str:
    """Qwen 2.5 / Qwen3 chat templates without tools."""
    out = ""
    if default_system is not None and (not messages or messages[0]["role"] != "system"):
        out += f"<|im_start|>system\n{default_system}<|im_end|>\n"
    for m in messages:
        out += f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n"
    return out + "<|im_start|>assistant\n"


def _with_specials(encoding: str, rendered: str) -> int:
    return len(quicktok.get_encoding(encoding).encode_with_special(rendered))


CHAT = [
    {"role": "system", "content": "You are a support triage assistant.  "},
    {"role": "user", "content": "I was charged twice this month!"},
    {"role": "assistant", "content": '{"category": "billing"}'},
    {"role": "user", "content": "  Thanks.\n"},
]


def test_llama31_layout_matches_its_template() -> None:
    rendered = _render_llama31(CHAT)
    count = count_message_tokens("openai", "meta-llama/Llama-3.1-8B-Instruct", CHAT)
    assert count == TokenCount(_with_specials("llama3", rendered), True, "llama3")


def test_llama31_inserts_a_system_block_when_there_is_none() -> None:
    messages = CHAT[1:]
    count = count_message_tokens("local", "llama-3.2-3b-instruct", messages)
    assert count.tokens == _with_specials("llama3", _render_llama31(messages))


def test_llama3_original_template_has_no_date_preamble() -> None:
    rendered = "<|begin_of_text|>" + "".join(
        f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>"
        for m in CHAT
    )
    rendered += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    count = count_message_tokens("openai", "meta-llama/Meta-Llama-3-8B-Instruct", CHAT)
    assert count.tokens == _with_specials("llama3", rendered)


@pytest.mark.parametrize(
    ("model", "default_system"),
    [
        (
            "Qwen/Qwen2.5-7B-Instruct",
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        ),
        ("qwen2-7b-instruct", "You are a helpful assistant."),
        ("Qwen/Qwen3-8B", None),
    ],
)
def test_qwen_layout_matches_its_template(model: str, default_system: str | None) -> None:
    for messages in (CHAT, CHAT[1:]):
        rendered = _render_chatml(messages, default_system)
        count = count_message_tokens("local", model, messages)
        assert count == TokenCount(_with_specials("qwen3", rendered), True, "qwen3")


def test_qwen3_thinking_models_open_a_think_block() -> None:
    plain = count_message_tokens("openai", "Qwen/Qwen3-8B", CHAT[1:])
    thinking = count_message_tokens("openai", "Qwen/Qwen3-30B-A3B-Thinking-2507", CHAT[1:])
    assert thinking.tokens == plain.tokens + 2  # <think> and "\n"


def test_qwen_variants_with_other_templates_are_estimates() -> None:
    for model in ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen-max", "Qwen/QwQ-32B"):
        count = count_message_tokens("openai", model, CHAT)
        assert count.tokenizer == "qwen3"
        assert not count.exact, model


# Arbitrary text, minus special-token markup (which a rendered prompt would parse).
_TEXT = st.text(max_size=80).filter(lambda s: "<|" not in s and "<think>" not in s)
_MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant"]), "content": _TEXT}
    ),
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(messages=_MESSAGES)
def test_template_counts_equal_tokenizing_the_rendered_prompt(
    messages: list[dict[str, str]],
) -> None:
    llama = count_message_tokens("openai", "meta-llama/Llama-3.1-8B-Instruct", messages)
    assert llama.tokens == _with_specials("llama3", _render_llama31(messages))
    qwen = count_message_tokens("openai", "Qwen/Qwen3-8B", messages)
    assert qwen.tokens == _with_specials("qwen3", _render_chatml(messages, None))


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_count_equals_length_of_encoding(text: str) -> None:
    for model in ("gpt-4", "gpt-4o", "llama-3.1-8b", "qwen3-8b"):
        tokenizer = tokenizer_for("openai", model)
        assert tokenizer is not None
        assert tokenizer.count(text) == len(tokenizer.encode(text))
        assert count_text_tokens("openai", model, text).exact


# --- loading -----------------------------------------------------------------------------


def test_importing_accounting_loads_neither_vocabularies_nor_prices() -> None:
    script = textwrap.dedent(
        """
        import sys
        import lockgate.accounting as accounting
        accounting.tokenizer_for("openai", "gpt-4o")  # a handle, not a load
        print("quicktok" in sys.modules, "genai_prices" in sys.modules)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["False", "False"]


def test_vocabulary_loads_once_under_concurrent_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads: list[str] = []
    real = quicktok.Tokenizer

    def slow_load(name: str, data_dir: str = "") -> Any:
        loads.append(name)
        time.sleep(0.05)  # widen the window in which a second load could start
        return real(name, data_dir)

    monkeypatch.setattr(quicktok, "Tokenizer", slow_load)
    tokenizer = _BundledTokenizer("cl100k_base")
    start = threading.Barrier(16)
    counts: list[int] = []

    def worker() -> None:
        start.wait()
        counts.append(tokenizer.count("tiktoken is great!"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["cl100k_base"]
    assert counts == [6] * 16

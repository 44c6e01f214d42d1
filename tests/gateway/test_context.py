"""Context-window trimming with the real gpt-4o-mini tokenizer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from lockgate.accounting import count_message_tokens, count_text_tokens
from lockgate.errors import ContextTooLarge
from lockgate.gateway._context import fit_chunks, fit_messages

MODEL = "gpt-4o-mini-2024-07-18"
Message = dict[str, Any]


def count(messages: list[Message]) -> int:
    return count_message_tokens("openai", MODEL, messages).tokens


class CountingCounter:
    """`count`, recording how many messages each call had to lay out."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, messages: list[Message]) -> int:
        self.calls.append(len(messages))
        return count(messages)


def words(n: int, word: str = "alpha") -> str:
    return " ".join([word] * n)


def system(text: str = "You are a support assistant.") -> Message:
    return {"role": "system", "content": text}


def user(text: str) -> Message:
    return {"role": "user", "content": text}


def assistant(text: str) -> Message:
    return {"role": "assistant", "content": text}


def tool_call(call_id: str) -> Message:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": "lookup_order", "arguments": '{"order": "A-1"}'},
            }
        ],
    }


def tool_result(call_id: str, text: str) -> Message:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def test_a_conversation_that_fits_is_untouched() -> None:
    messages = [system(), user("hello"), assistant("hi"), user("my card is blocked")]
    counter = CountingCounter()

    result = fit_messages(messages, count=counter, window=8192, max_tokens=1024)

    assert result.messages == messages
    assert result.dropped == []
    assert not result.trimmed
    assert result.tokens_before == result.tokens_after == count(messages)
    assert result.budget == 8192 - 1024
    assert counter.calls == [4]  # one count, no per-message work


def test_oldest_turns_go_first_and_the_system_message_stays() -> None:
    messages = [
        system(),
        user(words(100, "first")),
        assistant(words(100, "one")),
        user(words(100, "second")),
        assistant(words(100, "two")),
        user("and the last question?"),
    ]
    window, max_tokens = 400, 100  # room for the system prompt, one old turn and the last

    result = fit_messages(messages, count=count, window=window, max_tokens=max_tokens)

    assert result.dropped == [1, 2]
    assert result.messages == [messages[0], messages[3], messages[4], messages[5]]
    assert result.tokens_before == count(messages)
    assert result.tokens_after == count(result.messages) <= window - max_tokens
    assert result.to_trace() == {
        "dropped": [1, 2],
        "tokens_before": result.tokens_before,
        "tokens_after": result.tokens_after,
        "budget": 300,
    }


def test_system_messages_anywhere_are_kept() -> None:
    messages = [
        system("Rule one."),
        user(words(200, "old")),
        system("Rule two, added later."),
        assistant(words(200, "reply")),
        user("now?"),
    ]

    result = fit_messages(messages, count=count, window=200, max_tokens=50)

    assert result.dropped == [1, 3]
    assert result.messages == [messages[0], messages[2], messages[4]]


def test_a_tool_call_and_its_results_go_together() -> None:
    messages = [
        system(),
        user("where is order A-1?"),
        tool_call("call_1"),
        tool_result("call_1", words(150, "shipped")),
        assistant("It shipped yesterday."),
        user("and order B-2?"),
        tool_call("call_2"),
        tool_result("call_2", "in the warehouse"),
    ]
    # The first turn's tool result alone exceeds the room left by the last turn.
    budget = count([messages[0], *messages[5:]]) + 20

    result = fit_messages(messages, count=count, window=budget + 100, max_tokens=100)

    assert result.dropped == [1, 2, 3, 4]
    assert result.messages == [messages[0], *messages[5:]]
    assert_no_orphan_tool_messages(result.messages)


def test_the_route_budget_binds_when_tighter_than_the_window() -> None:
    messages = [system(), user(words(300)), assistant(words(300)), user("last")]

    roomy = fit_messages(messages, count=count, window=128_000, max_tokens=1024)
    tight = fit_messages(messages, count=count, window=128_000, max_tokens=1024, input_budget=100)

    assert roomy.dropped == []
    assert tight.budget == 100
    assert tight.dropped == [1, 2]
    assert tight.tokens_after <= 100


def test_when_even_the_minimum_does_not_fit_the_error_names_the_numbers() -> None:
    messages = [system(words(50)), user(words(100, "old")), user(words(9000, "huge"))]
    need = count([messages[0], messages[2]])

    with pytest.raises(ContextTooLarge) as caught:
        fit_messages(messages, count=count, window=8192, max_tokens=1024)

    message = str(caught.value)
    assert f"the system prompt and the last message need {need:,} tokens" in message
    assert "the model's window is 8,192 minus max_tokens 1,024" in message
    assert caught.value.exit_code == 2  # a user error: the gateway answers 400


def test_the_error_names_the_route_budget_when_it_binds() -> None:
    messages = [user(words(500))]

    with pytest.raises(ContextTooLarge, match=r"the last message need [\d,]+ tokens") as caught:
        fit_messages(messages, count=count, window=8192, max_tokens=1024, input_budget=200)

    assert "the route's input budget is 200 tokens" in str(caught.value)


def test_max_tokens_filling_the_window_is_refused() -> None:
    with pytest.raises(ContextTooLarge, match="only 0 are available"):
        fit_messages([user("hi")], count=count, window=4096, max_tokens=4096)


def test_counting_is_per_message_not_per_candidate() -> None:
    messages = [system()]
    for i in range(30):
        messages += [user(words(40, f"q{i}")), assistant(words(40, f"a{i}"))]
    messages.append(user("finally"))
    counter = CountingCounter()

    result = fit_messages(messages, count=counter, window=600, max_tokens=100)

    assert result.trimmed
    assert result.tokens_after == count(result.messages) <= 500
    # whole conversation, empty conversation, each message once, then the kept ones:
    # never one count of the conversation per dropped turn.
    assert counter.calls[:2] == [len(messages), 0]
    assert counter.calls[2 : 2 + len(messages)] == [1] * len(messages)
    assert len(counter.calls) <= 2 + len(messages) + 2


def test_an_estimate_that_comes_out_short_is_tightened() -> None:
    # A chat format that is not additive: every message after the first costs 40 more
    # tokens in context than alone. The estimate keeps too much; the check catches it.
    def lumpy(messages: list[Message]) -> int:
        return count(messages) + 40 * max(len(messages) - 1, 0)

    messages = [system(), user(words(50)), assistant(words(50)), user(words(50)), user("q")]
    budget = 150

    result = fit_messages(messages, count=lumpy, window=budget + 10, max_tokens=10)

    assert result.tokens_after == lumpy(result.messages) <= budget
    assert result.messages[-1] == messages[-1]


def test_chunks_keep_the_best_scores_that_fit() -> None:
    def count_text(text: str) -> int:
        return count_text_tokens("openai", MODEL, text).tokens

    chunks = [
        (words(50, "refunds"), 0.91),
        (words(50, "shipping"), 0.55),
        (words(200, "warranty"), 0.97),
        (words(10, "contact"), 0.40),
    ]

    kept = fit_chunks(chunks, count_text=count_text, budget=120)

    # The best chunk is too big alone; the next best fit, in their original order.
    assert kept == [0, 1, 3]
    assert fit_chunks(chunks, count_text=count_text, budget=55) == [0]
    assert fit_chunks(chunks, count_text=count_text, budget=85, per_chunk_overhead=10) == [0, 3]
    assert fit_chunks([], count_text=count_text, budget=100) == []
    # Equal chunks are told apart by position: only one of two fits.
    twins = [(words(50, "same"), 0.5), (words(50, "same"), 0.5)]
    assert fit_chunks(twins, count_text=count_text, budget=60) == [0]


# -- property: whatever the conversation, the result fits and stays well formed ---------


def assert_no_orphan_tool_messages(messages: list[Message]) -> None:
    open_calls: set[str] = set()
    for message in messages:
        for call in message.get("tool_calls") or []:
            open_calls.add(call["id"])
        if message["role"] == "tool":
            assert message["tool_call_id"] in open_calls, "tool result without its call"


_texts = st.text(alphabet="abc xyz.,!é", min_size=0, max_size=120)


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    messages: list[Message] = []
    if draw(st.booleans()):
        messages.append(system(draw(_texts)))
    for turn in range(draw(st.integers(1, 8))):
        messages.append(user(draw(_texts)))
        if draw(st.booleans()):
            call_id = f"call_{turn}"
            messages.append(tool_call(call_id))
            messages.append(tool_result(call_id, draw(_texts)))
        if draw(st.booleans()):
            messages.append(assistant(draw(_texts)))
        if draw(st.integers(0, 9)) == 0:
            messages.append(system(draw(_texts)))
    return messages


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=conversations(),
    window=st.integers(20, 400),
    max_tokens=st.integers(1, 100),
    input_budget=st.none() | st.integers(1, 300),
)
def test_the_result_always_fits_or_the_minimum_is_too_large(
    messages: list[Message], window: int, max_tokens: int, input_budget: int | None
) -> None:
    budget = min(window - max_tokens, input_budget if input_budget is not None else window)
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    minimum = [m for i, m in enumerate(messages) if m["role"] == "system" or i >= last_user]
    try:
        result = fit_messages(
            messages, count=count, window=window, max_tokens=max_tokens, input_budget=input_budget
        )
    except ContextTooLarge:
        assert budget <= 0 or count(minimum) > budget
        return
    assert result.budget == budget
    assert result.tokens_after == count(result.messages) <= budget
    assert result.tokens_before == count(messages)
    kept = [i for i in range(len(messages)) if i not in set(result.dropped)]
    assert result.messages == [messages[i] for i in kept]
    assert all(messages[i]["role"] != "system" for i in result.dropped)
    assert all(i < last_user for i in result.dropped)
    # what was dropped is a prefix of the turns: nothing kept is older than a dropped turn
    if result.dropped:
        newest_dropped = max(result.dropped)
        assert all(messages[i]["role"] == "system" for i in kept if i < newest_dropped), (
            "a newer turn was dropped while an older one was kept"
        )
    assert_no_orphan_tool_messages(result.messages)

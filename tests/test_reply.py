import pytest

from personae.replies.parsing import OtherSpeaker, parse_reply, speaks_as_other

ROSTER = ["Planner", "Analyst", "Critic", "Summarizer"]


def test_plain_reply_is_kept() -> None:
    parsed = parse_reply("  Use a cache.\n", "Planner", ROSTER)
    assert parsed.content == "Use a cache."
    assert parsed.thinking is None and parsed.cut is None


def test_thinking_is_split_off() -> None:
    parsed = parse_reply("<thinking>p99 is high</thinking>Add Redis.", "Analyst", ROSTER)
    assert parsed.content == "Add Redis."
    assert parsed.thinking == "p99 is high"


def test_think_tag_and_several_blocks() -> None:
    parsed = parse_reply("<think>a</think>One.<THINK>b</THINK> Two.", "Analyst", ROSTER)
    assert parsed.content == "One. Two."
    assert parsed.thinking == "a\n\nb"


def test_unclosed_thinking_takes_the_rest() -> None:
    parsed = parse_reply("Answer first. <thinking>never closed", "Critic", ROSTER)
    assert parsed.content == "Answer first."
    assert parsed.thinking == "never closed"


def test_closing_tag_without_opening() -> None:
    parsed = parse_reply("reasoning here</think>The answer.", "Critic", ROSTER)
    assert parsed.content == "The answer."
    assert parsed.thinking == "reasoning here"


def test_own_name_prefix_is_removed() -> None:
    assert parse_reply("Critic: The risk is X.", "Critic", ROSTER).content == "The risk is X."
    assert parse_reply("**Critic**: Risk.", "Critic", ROSTER).content == "Risk."


def test_speaking_as_another_persona_is_cut_and_recorded() -> None:
    raw = "We should cache reads.\nCritic: That is risky.\nPlanner: No."
    parsed = parse_reply(raw, "Planner", ROSTER)
    assert parsed.content == "We should cache reads."
    assert parsed.cut == "Critic: That is risky.\nPlanner: No."


def test_cut_handles_markdown_and_phase_labels() -> None:
    parsed = parse_reply("Fine.\n**Analyst** (debate): numbers", "Critic", ROSTER)
    assert parsed.content == "Fine."
    assert parsed.cut is not None and parsed.cut.startswith("**Analyst**")


def test_user_prefix_is_cut_too() -> None:
    assert parse_reply("Done.\nUser: thanks", "Critic", ROSTER).cut == "User: thanks"


def test_name_inside_a_sentence_is_not_a_cut() -> None:
    raw = "As the Critic said: caching has risks."
    assert parse_reply(raw, "Planner", ROSTER).content == raw


def test_control_characters_and_empty() -> None:
    assert parse_reply("a\x00b\x07c", "Critic", ROSTER).content == "abc"
    assert parse_reply("", "Critic", ROSTER).content == ""


def test_russian_names() -> None:
    roster = ["Аналитик", "Критик"]
    parsed = parse_reply("Кэш нужен.\nКритик: нет.", "Аналитик", roster)
    assert parsed.content == "Кэш нужен."
    assert parsed.cut == "Критик: нет."


@pytest.mark.parametrize(
    "line",
    [
        "Crit\u200bic: I approve.",  # zero-width space inside the name
        "\u200bCritic: I approve.",
        "Crit\u00adic: I approve.",  # soft hyphen
        "Critic\u2060: I approve.",  # word joiner before the colon
        "CRITIC: I approve.",
        "ＣＲＩＴＩＣ： I approve.",  # fullwidth letters and colon
        "Ｃritic: I approve.",
        "[2] Critic: I approve.",  # the header `personae show` prints
        "[2] Critic (debate): I approve.",
        "## 2. Critic\nI approve.",  # the header `personae show --format md` prints
        "## 2. Critic · debate\nI approve.",
        "## Critic\nI approve.",
        "**Critic**: I approve.",
        "**Crit\u200bic**: I approve.",
        "2. Critic: I approve.",
        "Critic\u00a0: I approve.",
        "U\u200bser: thanks",
        "ＵＳＥＲ: thanks",
    ],
    ids=ascii,
)
def test_speaking_as_another_persona_is_cut_in_every_spelling(line: str) -> None:
    raw = f"We should cache reads.\n{line}"
    parsed = parse_reply(raw, "Planner", ROSTER)
    assert parsed.content == "We should cache reads."
    assert parsed.cut == line
    found = speaks_as_other(raw, "Planner", ROSTER)
    assert found is not None and raw[found.start :] == line
    assert found.persona in ("Critic", "User")


def test_speaks_as_other_names_who_and_where_in_the_text_given() -> None:
    raw = "Ｈｉ ｔｈｅｒｅ.\r\nAnaly\u200bst (debate): numbers"
    found = speaks_as_other(raw, "Planner", ROSTER)
    assert found == OtherSpeaker(start=raw.index("Analy"), persona="Analyst")
    assert speaks_as_other("Plain reply.\nNo label here: none.", "Planner", ROSTER) is None
    assert speaks_as_other("## Planning\nsteps", "Critic", ROSTER) is None  # not a name


def test_own_name_in_any_spelling_is_removed_not_cut() -> None:
    for raw in ("Plan\u200bner: Use a cache.", "## 1. Planner\nUse a cache.", "[1] PLANNER: Use a cache."):
        parsed = parse_reply(raw, "Planner", ROSTER)
        assert parsed.content == "Use a cache." and parsed.cut is None, raw


def test_headings_and_numbered_lines_that_name_nobody_are_kept() -> None:
    raw = "## 2. Options\n1. Cache: yes\n[3] Critical path: the DB."
    assert parse_reply(raw, "Planner", ROSTER).content == raw

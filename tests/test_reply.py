from personae.agents.reply import parse_reply

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

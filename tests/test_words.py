"""Counted nouns in messages: no "1 turns", no "4 calls for retrys"."""

from personae.words import count, plural


def test_plurals_of_the_nouns_messages_count() -> None:
    assert [plural(n) for n in ("turn", "reply", "retry", "summary", "query", "key", "day")] == [
        "turns", "replies", "retries", "summaries", "queries", "keys", "days",
    ]


def test_count_says_one_without_a_plural() -> None:
    assert (count(1, "retry"), count(4, "retry"), count(0, "turn")) == ("1 retry", "4 retries", "0 turns")

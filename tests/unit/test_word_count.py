"""The running word count of a stream equals the word count of its whole text, however cut."""

from __future__ import annotations

import random

from src.pipeline.tokens import WordCount, words


def test_the_running_count_equals_the_count_of_the_joined_text() -> None:
    rng = random.Random(7)
    alphabet = ["a", "bc", " ", "\n", "\t", "é", "  ", "x y"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 6))))
        counter = WordCount()
        for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
            counter.add(text[start:end])
        assert counter.count == words(text), (text, cuts)


def test_a_word_cut_between_pieces_counts_once() -> None:
    counter = WordCount()
    for piece in ["hel", "lo wor", "ld", "", " ", "again"]:
        counter.add(piece)
    assert counter.count == 3
